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
