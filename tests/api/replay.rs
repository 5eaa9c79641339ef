//! `replay --projection NAME` rebuilds a read model beside the serving one and switches
//! over: the queries keep answering (no errors, no empty reads) while it runs, and
//! every read model reads the same after it as before, through the running server's
//! operator endpoint and on a stopped data directory.

use crate::crash::{settled, snapshot};
use crate::helpers::{Api, Server, replay, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A tenant with deliveries in several stages; the deliveries' ids.
async fn workload(api: &Api) -> (String, Vec<String>) {
    let (account, _) = api.register_account("Contoso").await;
    for i in 0..4 {
        api.register_drone(&format!("d{i}"), 5.0).await;
    }
    let mut deliveries = Vec::new();
    for i in 0..24 {
        let (id, _) = api.schedule(&account, 1.0 + f64::from(i % 3)).await;
        deliveries.push(id);
    }
    for (i, id) in deliveries.iter().take(4).enumerate() {
        assert!(api.assign(id, &format!("d{i}")).await.status().is_success());
    }
    let r = api
        .client
        .delete(api.url(&format!("/api/v1/deliveries/{}", deliveries[5])))
        .send()
        .await
        .expect("sent");
    assert!(r.status().is_success(), "cancel: {}", r.status());
    (account, deliveries)
}

/// Rebuilds `projection` through the endpoint and waits for it to finish.
async fn rebuild(api: &Api, projection: &str) -> Value {
    let r = api
        .post("/api/v1/replays", json!({ "projection": projection }))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "replay {projection}");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let started = Instant::now();
    loop {
        let (status, body) = api.get_json(&location).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["state"] != "building" && body["state"] != "switched" {
            assert_eq!(body["state"], "done", "{body}");
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{projection} rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_serves_throughout_and_reads_the_same_after() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let api = Api::of(&server);
    let (account, deliveries) = workload(&api).await;
    settled(&api).await;
    let before = snapshot(&api, &account, &deliveries).await;

    // Readers of every read model while the rebuilds run: each read answers, in full.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (api, stop, reads) = (api.clone(), stop.clone(), reads.clone());
        let (account, deliveries) = (account.clone(), deliveries.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                let id = &deliveries[i % deliveries.len()];
                i += 1;
                let (status, body) = api.get_json(&format!("/api/v1/deliveries/{id}")).await;
                assert_eq!(status, 200, "delivery {id} during the rebuild: {body}");
                let (status, body) = api
                    .get_json(&format!("/api/v1/accounts/{account}/deliveries?limit=500"))
                    .await;
                assert_eq!(status, 200, "history during the rebuild: {body}");
                let items = body["items"].as_array().map_or(0, Vec::len);
                assert_eq!(items, deliveries.len(), "the whole history: {body}");
                let (status, body) = api.get_json("/api/v1/drones?limit=500").await;
                assert_eq!(status, 200, "fleet during the rebuild: {body}");
                let drones = body["items"].as_array().map_or(0, Vec::len);
                assert_eq!(drones, 4, "the whole fleet: {body}");
                let (status, body) = api
                    .get_json(&format!(
                        "/api/v1/accounts/{account}/invoice?year=2026&month=12"
                    ))
                    .await;
                assert_eq!(status, 200, "invoice during the rebuild: {body}");
                reads.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    let mut generations = Vec::new();
    for model in read_model::models::ALL {
        let done = rebuild(&api, model.name).await;
        generations.push(done["generation"].as_u64());
    }
    stop.store(true, Ordering::Release);
    reader.await.expect("the reads never failed");
    assert!(
        reads.load(Ordering::Acquire) > 0,
        "reads ran during the rebuilds"
    );
    assert_eq!(generations, vec![Some(1); 4]);

    // The same answers from the new generations, and they go on taking writes.
    settled(&api).await;
    assert_eq!(snapshot(&api, &account, &deliveries).await, before);
    let (tenant, _, key) = api.register_tenant("Fabrikam").await;
    let (id, _) = api.with_key(&key).schedule(&tenant, 1.0).await;
    let (status, _) = api
        .with_key(&key)
        .get_json(&format!("/api/v1/deliveries/{id}?minVersion=1"))
        .await;
    assert_eq!(status, 200, "a write after the switch is read back");

    // On the stopped data directory: the command line rebuilds there.
    server.stop();
    let data_dir = dir.path().to_string_lossy().into_owned();
    for model in ["deliveries", "drones"] {
        let said = replay(&["--projection", model, "--data-dir", &data_dir]);
        assert!(said.contains("generation 2"), "{said}");
    }
    let server = Server::start(dir.path());
    let api = Api::of(&server);
    api.ready().await;
    let mut after = snapshot(&api, &account, &deliveries).await;
    let mut want = before;
    // Only what the later writes added may differ: the tenant's own reads are the same.
    want.retain(|path, _| !path.contains("drones?") && !path.contains("stage="));
    after.retain(|path, _| want.contains_key(path));
    assert_eq!(after, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_requests_are_checked_and_change_nothing_when_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let api = Api::of(&server);
    let (_, _, key) = api.register_tenant("Contoso").await;
    let tenant = api.with_key(&key);
    let r = tenant
        .post("/api/v1/replays", json!({"projection": "deliveries"}))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "only the operator");
    let r = api
        .post("/api/v1/replays", json!({"projection": "nope"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = api.post("/api/v1/replays", json!({"projection": 5})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api
        .client
        .post(api.url("/api/v1/replays"))
        .header("content-type", "text/plain")
        .body("deliveries")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = api.get_json("/api/v1/replays/deliveries").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "none was started");
    let (status, _) = api.get_json("/api/v1/replays/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A server on a running data directory refuses the command line's own rebuild.
    let out = Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
        .env("DRONE_DELIVERY_OPERATOR_KEY", crate::helpers::OPERATOR_KEY)
        .args(["replay", "--projection", "deliveries", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("replay runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
}
