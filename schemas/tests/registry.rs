//! Registering the schemas with a live Confluent-compatible schema registry: run only
//! when `SCHEMA_REGISTRY_URL` names one (with `DRONE_DELIVERY_SCHEMA_REGISTRY_USERNAME` /
//! `_PASSWORD` when it wants a login), like the ScyllaDB suite with `SCYLLA_URI`; without
//! it the test says it was skipped. The pure parts (bodies, URLs, answers, errors, id
//! mapping) are unit-tested in `src/registry.rs` without a registry.

#[cfg(feature = "registry")]
#[tokio::test]
async fn every_schema_registers_and_frames_records_with_the_registrys_ids() {
    use schemas::registry::{self, RegistryConfig};
    use schemas::*;

    let Ok(url) = std::env::var("SCHEMA_REGISTRY_URL") else {
        eprintln!("skipped: SCHEMA_REGISTRY_URL is not set, so no schema was registered");
        return;
    };
    let login = |name: &str| std::env::var(format!("DRONE_DELIVERY_SCHEMA_REGISTRY_{name}")).ok();
    let config = RegistryConfig {
        url: url.clone(),
        basic_auth: login("USERNAME").map(|user| (user, login("PASSWORD").unwrap_or_default())),
    };

    let ids = registry::register_all(&config).await.expect("registered");
    assert_eq!(
        ids.len(),
        SCHEMA_FILES.len(),
        "every schema of the manifest"
    );
    let again = registry::register_all(&config)
        .await
        .expect("registered again");
    assert_eq!(
        again, ids,
        "registering what the subject has returns the same ids"
    );

    // The registry has each schema under its id, with the subject's full record name.
    let client = reqwest::Client::new();
    for (manifest_id, registry_id) in &ids {
        let file = SCHEMA_FILES
            .iter()
            .find(|f| f.id == *manifest_id)
            .expect("a manifest id");
        let mut request = client.get(format!(
            "{}/schemas/ids/{registry_id}",
            url.trim_end_matches('/')
        ));
        if let Some((user, password)) = &config.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let answer: serde_json::Value = request
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        let schema: serde_json::Value =
            serde_json::from_str(answer["schema"].as_str().expect("a schema")).expect("JSON");
        let name = schema["name"].as_str().expect("a name");
        let full = match schema["namespace"].as_str() {
            Some(namespace) if !name.contains('.') => format!("{namespace}.{name}"),
            _ => name.to_owned(),
        };
        assert_eq!(
            full,
            format!("drone_delivery.events.{}", file.subject),
            "{}",
            file.file
        );
    }

    let codec = registry::register(&config).await.expect("a codec");
    let envelope = Envelope {
        metadata: EventMetadata {
            event_id: uuid::Uuid::from_u128(1),
            aggregate_id: "acct-1".into(),
            aggregate_version: 1,
            occurred_at: chrono::Utc::now(),
            causation_id: "cmd-1".into(),
            correlation_id: "req-1".into(),
            principal: "operator".into(),
        },
        event: Event::AccountSuspended(AccountSuspended {
            reason: Some("registry test".into()),
        }),
    };
    let bytes = codec.encode(&envelope).expect("encodes");
    let manifest_id = Codec::new()
        .expect("codec")
        .schema_id("AccountSuspended")
        .expect("an id");
    let registry_id = ids
        .iter()
        .find(|(m, _)| *m == manifest_id)
        .map(|(_, r)| *r)
        .expect("registered");
    assert_eq!(bytes[1..5], registry_id.to_be_bytes());
    assert_eq!(codec.decode(&bytes).expect("decodes"), envelope);
}

#[cfg(not(feature = "registry"))]
#[test]
fn every_schema_registers_and_frames_records_with_the_registrys_ids() {
    eprintln!(
        "skipped: built without the `registry` feature (cargo test -p schemas --features registry)"
    );
}
