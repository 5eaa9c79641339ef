//! A disk that fills up and empties again (issue 10, item 6): while the embedded log has
//! less than its reserve free, commands answer 503 and `/readyz` says why at once; when
//! space returns both recover without a restart, and a retry with the same
//! `Idempotency-Key` makes the command exactly once.

use crate::helpers::{Api, OPERATOR_KEY, schedule_body, temp_dir};
use drone_delivery::settings::Role;
use drone_delivery::{App, Settings};
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};

const RESERVE: u64 = 1_000_000;

async fn schedule_keyed(api: &Api, owner: &str, key: &str) -> (StatusCode, serde_json::Value) {
    let response = api
        .client
        .post(api.url("/api/v1/deliveries"))
        .header("idempotency-key", key)
        .json(&schedule_body(owner, 1.0))
        .send()
        .await
        .expect("sent");
    (response.status(), response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_writes_and_readiness_and_both_come_back_with_the_space() {
    let dir = temp_dir();
    let free = Arc::new(AtomicU64::new(u64::MAX));
    let reported = free.clone();
    let log = EmbeddedLog::open_with_reserve(
        &dir.path().join("log"),
        RESERVE,
        Some(Box::new(move || Ok(reported.load(Ordering::Acquire)))),
    )
    .expect("log");
    let store = Arc::new(EmbeddedReadStore::open(&dir.path().join("views")).expect("store"));
    let mut settings = Settings::new("127.0.0.1:0".parse().expect("addr"), dir.path().into());
    settings.roles = vec![Role::CommandApi, Role::Projector, Role::QueryApi];
    settings.operator_key = Some(OPERATOR_KEY.into());
    let app = App::start_with(settings, Arc::new(log), Some(store))
        .await
        .expect("app");
    let api = Api {
        base: format!("http://{}", app.addr),
        client: crate::helpers::client(),
    };
    api.ready().await;
    let (owner, _) = api.register_account("Contoso").await;
    let before = api.events_appended().await;

    // The disk fills up: no write, no readiness, and nothing appended.
    free.store(RESERVE / 2, Ordering::Release);
    let (status, problem) = schedule_keyed(&api, &owner, "order-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    let response = api.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let why = response.text().await.expect("body");
    assert!(why.contains("disk"), "{why}");
    let (status, _) = schedule_keyed(&api, &owner, "order-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.events_appended().await, before);

    // Space returns: ready again without a write, and the retried key makes one delivery.
    free.store(u64::MAX, Ordering::Release);
    api.ready().await;
    let (status, first) = schedule_keyed(&api, &owner, "order-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = schedule_keyed(&api, &owner, "order-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["deliveryId"], first["deliveryId"]);
    // One delivery with its package; the writer's settling marker is no event.
    assert_eq!(api.events_appended().await, before + 2.0);
    let (status, _) = api
        .get_json(&format!(
            "/api/v1/deliveries/{}?consistencyToken={}",
            first["deliveryId"].as_str().expect("id"),
            first["consistencyToken"].as_str().expect("token")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_read_store_holds_the_projectors_back_until_space_returns() {
    let dir = temp_dir();
    let free = Arc::new(AtomicU64::new(u64::MAX));
    let reported = free.clone();
    let log = EmbeddedLog::open(&dir.path().join("log")).expect("log");
    let store = EmbeddedReadStore::open_with_reserve(
        &dir.path().join("views"),
        RESERVE,
        Some(Box::new(move || Ok(reported.load(Ordering::Acquire)))),
    )
    .expect("store");
    let mut settings = Settings::new("127.0.0.1:0".parse().expect("addr"), dir.path().into());
    settings.roles = vec![Role::CommandApi, Role::Projector, Role::QueryApi];
    settings.operator_key = Some(OPERATOR_KEY.into());
    settings.max_consistency_wait = std::time::Duration::from_millis(300);
    let app = App::start_with(settings, Arc::new(log), Some(Arc::new(store)))
        .await
        .expect("app");
    let api = Api {
        base: format!("http://{}", app.addr),
        client: crate::helpers::client(),
    };
    api.ready().await;
    let (owner, _) = api.register_account("Contoso").await;

    // The read store's disk fills up: commands still land in the log, the read model
    // waits.
    free.store(RESERVE / 2, Ordering::Release);
    let (status, scheduled) = schedule_keyed(&api, &owner, "order-7").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{scheduled}");
    let path = format!(
        "/api/v1/deliveries/{}?consistencyToken={}",
        scheduled["deliveryId"].as_str().expect("id"),
        scheduled["consistencyToken"].as_str().expect("token")
    );
    // Not there after the read's whole wait (the answer is a 404, as for any delivery
    // the read model does not hold yet).
    assert_eq!(api.get(&path).await.status(), StatusCode::NOT_FOUND);

    // Space returns: the projectors catch up by themselves, no restart.
    free.store(u64::MAX, Ordering::Release);
    let mut visible = false;
    for _ in 0..50 {
        if api.get(&path).await.status() == StatusCode::OK {
            visible = true;
            break;
        }
    }
    assert!(visible, "the delivery became visible once space returned");
    app.stop().await;
}
