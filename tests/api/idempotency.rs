//! A command retried with the same idempotency key appends nothing new and returns the
//! first result — also across a restart, since the key travels with the events.

use crate::helpers::{Api, Server, schedule_body, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn schedule_with_key(api: &Api, owner: &str, key: &str) -> (StatusCode, Value, bool) {
    let response = api
        .client
        .post(api.url("/api/v1/deliveries"))
        .header("idempotency-key", key)
        .json(&schedule_body(owner, 2.0))
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, response.json().await.expect("json"), replayed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_command_returns_the_first_result_and_appends_nothing() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let api = Api::of(&server);
    let (owner, _) = api.register_account("Contoso").await;

    let (status, first, replayed) = schedule_with_key(&api, &owner, "order-42").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!replayed);
    let appended = api.events_appended().await;

    let (status, again, replayed) = schedule_with_key(&api, &owner, "order-42").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(replayed);
    assert_eq!(again, first);
    assert_eq!(api.events_appended().await, appended);

    // Concurrent retries of one new key: one delivery, one set of events.
    let before = api.events_appended().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (api, owner) = (api.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            schedule_with_key(&api, &owner, "order-43").await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (status, body, _) = task.await.expect("task");
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(body["deliveryId"].as_str().expect("id").to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(api.events_appended().await, before + 2.0); // PackageRegistered + DeliveryCreated

    // A keyed assignment, retried after a restart.
    api.register_drone("d1", 5.0).await;
    let delivery = first["deliveryId"].as_str().expect("id").to_string();
    let assign = |api: Api| {
        let delivery = delivery.clone();
        async move {
            let r = api
                .client
                .post(api.url(&format!("/api/v1/deliveries/{delivery}/assign-drone")))
                .header("idempotency-key", "assign-1")
                .json(&json!({"droneId": "d1"}))
                .send()
                .await
                .expect("sent");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, assigned) = assign(api.clone()).await;
    assert_eq!(status, StatusCode::OK);

    server.stop();
    let server = Server::start(dir.path());
    let api = Api::of(&server);
    let (status, retried) = assign(api.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retried, assigned);
    let (status, replayed, _) = schedule_with_key(&api, &owner, "order-42").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(replayed, first);
    assert_eq!(
        api.events_appended().await,
        0.0,
        "nothing appended since the restart"
    );
}

async fn post_keyed(api: &Api, path: &str, key: &str, body: &Value) -> (StatusCode, Value, bool) {
    let response = api
        .client
        .post(api.url(path))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        replayed,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_reused_for_another_request_is_refused_and_appends_nothing() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let api = Api::of(&server);
    let (owner, _) = api.register_account("Contoso").await;
    let (status, first, _) = schedule_with_key(&api, &owner, "order-7").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let before = api.events_appended().await;

    let heavier = schedule_body(&owner, 3.5);
    let (status, problem, _) = post_keyed(&api, "/api/v1/deliveries", "order-7", &heavier).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Idempotency-Key"),
        "{problem}"
    );
    // The same body, its keys in another order and spaced otherwise, is the same request.
    let text = serde_json::to_string_pretty(&schedule_body(&owner, 2.0)).expect("json");
    let reordered: Value = serde_json::from_str(&text).expect("json");
    let (status, again, replayed) =
        post_keyed(&api, "/api/v1/deliveries", "order-7", &reordered).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(replayed);
    assert_eq!(again["deliveryId"], first["deliveryId"]);
    assert_eq!(api.events_appended().await, before);

    // The fingerprint travels with the events: after a restart it still tells them apart.
    server.stop();
    let server = Server::start(dir.path());
    let api = Api::of(&server);
    let (status, _, _) = post_keyed(&api, "/api/v1/deliveries", "order-7", &heavier).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, replayed) = schedule_with_key(&api, &owner, "order-7").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(replayed);
    assert_eq!(api.events_appended().await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_scoped_per_principal_and_route() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let operator = Api::of(&server);
    let (a, _, a_key) = operator.register_tenant("A").await;
    let (b, _, b_key) = operator.register_tenant("B").await;
    let (tenant_a, tenant_b) = (operator.with_key(&a_key), operator.with_key(&b_key));

    // One key, two tenants: two deliveries, each its own tenant's.
    let (status, of_a, _) = schedule_with_key(&tenant_a, &a, "order-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, of_b, replayed) = schedule_with_key(&tenant_b, &b, "order-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!replayed, "B's key is not A's");
    assert_ne!(of_a["deliveryId"], of_b["deliveryId"]);
    let (status, _) = tenant_b
        .get_json(&format!(
            "/api/v1/deliveries/{}?consistencyToken={}",
            of_b["deliveryId"].as_str().expect("id"),
            of_b["consistencyToken"].as_str().expect("token")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);

    // One key, two routes: a cancel keyed like a schedule is a command of its own.
    let id = of_a["deliveryId"].as_str().expect("id");
    let response = tenant_a
        .client
        .delete(tenant_a.url(&format!("/api/v1/deliveries/{id}")))
        .header("idempotency-key", "order-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("idempotent-replayed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_honours_the_key_and_ids_are_each_deployments_own() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let api = Api::of(&server);
    api.register_drone("d1", 5.0).await;
    let reading = json!({
        "position": crate::helpers::location(47.605, -122.32),
        "batteryPct": 90,
        "at": chrono::Utc::now(),
    });
    let before = api.events_appended().await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (status, body, replayed) =
            post_keyed(&api, "/api/v1/drones/d1/telemetry", "report-1", &reading).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        answers.push((body, replayed));
    }
    assert_eq!(
        api.events_appended().await,
        before + 1.0,
        "five retries, one report"
    );
    assert!(!answers[0].1 && answers[1..].iter().all(|(_, r)| *r));
    assert!(answers.iter().all(|(b, _)| *b == answers[0].0));

    // The same key on another deployment (another operator key) makes another account.
    let other_dir = temp_dir();
    let other = Server::start_with(
        other_dir.path(),
        &[
            "--dispatch",
            "manual",
            "--operator-key",
            "another-operator-key-987654",
        ],
    );
    let other = Api::of(&other).with_key("another-operator-key-987654");
    let account = json!({"name": "Contoso", "email": "ops@contoso.example"});
    let (status, here, _) = post_keyed(&api, "/api/v1/accounts", "acct-1", &account).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, there, _) = post_keyed(&other, "/api/v1/accounts", "acct-1", &account).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(here["accountId"], there["accountId"]);
    // A retried registration shows the same key again (it was lost with the first answer).
    let (_, again, replayed) = post_keyed(&api, "/api/v1/accounts", "acct-1", &account).await;
    assert!(replayed);
    assert_eq!(again["apiKey"], here["apiKey"]);
}
