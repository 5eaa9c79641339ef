//! One writer per partition: racing commands on the same aggregates never both win.

use crate::helpers::{Api, spawn_app};
use reqwest::StatusCode;

/// The status, and the consistency token when it won.
async fn assign(api: &Api, delivery: &str, drone: &str) -> (StatusCode, Option<String>) {
    let response = api.assign(delivery, drone).await;
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("json");
    (
        status,
        body["consistencyToken"].as_str().map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_deliveries_racing_for_one_drone_make_exactly_one_winner() {
    let (_dir, _server, api) = spawn_app();
    let (owner, _) = api.register_account("Contoso").await;
    api.register_drone("only-drone", 5.0).await;
    let mut deliveries = Vec::new();
    for _ in 0..20 {
        deliveries.push(api.schedule(&owner, 1.0).await.0);
    }
    let tasks: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let (api, d) = (api.clone(), d.clone());
            tokio::spawn(async move { (d.clone(), assign(&api, &d, "only-drone").await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (delivery, (status, _)) = task.await.expect("task");
        match status {
            StatusCode::OK => winners.push(delivery),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one assignment wins");
    let (_, drone) = api.get_json("/api/v1/drones/only-drone?minVersion=2").await;
    assert_eq!(drone["deliveryId"], winners[0].as_str());
    assert_eq!(drone["version"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_drones_racing_for_one_delivery_make_exactly_one_winner() {
    let (_dir, _server, api) = spawn_app();
    let (owner, _) = api.register_account("Contoso").await;
    let (delivery, _) = api.schedule(&owner, 1.0).await;
    for i in 0..20 {
        api.register_drone(&format!("drone-{i}"), 5.0).await;
    }
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (api, delivery) = (api.clone(), delivery.clone());
            tokio::spawn(async move {
                let drone = format!("drone-{i}");
                (drone.clone(), assign(&api, &delivery, &drone).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut token = String::new();
    for task in tasks {
        let (drone, (status, won)) = task.await.expect("task");
        match status {
            StatusCode::OK => {
                winners.push(drone);
                token = won.expect("a token");
            }
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one assignment wins");
    let (_, view) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}?minVersion=2"))
        .await;
    assert_eq!(view["droneId"], winners[0].as_str());
    assert_eq!(view["version"], 2);
    // The losers' releases come after the winner's token (a 409 carries none): the fleet
    // shows them idle again once the drones' read model has applied them.
    let started = std::time::Instant::now();
    loop {
        let (_, idle) = api
            .get_json(&format!(
                "/api/v1/drones?status=idle&limit=500&consistencyToken={token}"
            ))
            .await;
        let idle = idle["items"].as_array().expect("items").len();
        if idle == 19 {
            break;
        }
        assert!(
            idle < 19 && started.elapsed() < std::time::Duration::from_secs(10),
            "{idle} idle drones"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Commands on one aggregate wait for each other's records: with `If-Match`, each
/// round of racing commands has exactly one winner and no version is written twice.
#[tokio::test(flavor = "multi_thread")]
async fn racing_commands_with_if_match_win_each_version_once() {
    let (_dir, _server, api) = spawn_app();
    let (owner, _) = api.register_account("Contoso").await;
    let (delivery, _) = api.schedule(&owner, 1.0).await;
    let path = format!("/api/v1/deliveries/{delivery}/notify-me");
    for version in 1..=5u64 {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (api, path) = (api.clone(), path.clone());
                tokio::spawn(async move {
                    api.client
                        .post(api.url(&path))
                        .header("if-match", format!("\"{version}\""))
                        .json(&serde_json::json!({"email": format!("c{i}@contoso.example")}))
                        .send()
                        .await
                        .expect("sent")
                        .status()
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.expect("task") {
                status if status.is_success() => won += 1,
                StatusCode::CONFLICT => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(won, 1, "one winner at version {version}");
    }
    let (_, timeline) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/events?minVersion=6"
        ))
        .await;
    let versions: Vec<u64> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    assert_eq!(versions, (1..=6).collect::<Vec<_>>(), "{timeline}");
}

/// Retries of one key sent at once wait for the first: one delivery, one answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_sent_fifty_times_at_once_makes_one_delivery() {
    let (_dir, _server, api) = spawn_app();
    let (owner, _) = api.register_account("Contoso").await;
    let before = api.events_appended().await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (api, owner) = (api.clone(), owner.clone());
            tokio::spawn(async move {
                let response = api
                    .client
                    .post(api.url("/api/v1/deliveries"))
                    .header("idempotency-key", "order-1")
                    .json(&crate::helpers::schedule_body(&owner, 1.0))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                let body: serde_json::Value = response.json().await.expect("json");
                body["deliveryId"].as_str().expect("id").to_string()
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    // The delivery and its package, once.
    assert_eq!(api.events_appended().await, before + 2.0);
}

/// Schedules for one account do not wait for each other, nor does a suspension wait
/// for them: once the suspension is acknowledged, no later schedule is accepted, and
/// every accepted one is there.
#[tokio::test(flavor = "multi_thread")]
async fn a_suspension_racing_a_crowd_of_schedules_stops_the_later_ones() {
    let (_dir, _server, api) = spawn_app();
    let (owner, _) = api.register_account("Contoso").await;
    let schedules: Vec<_> = (0..200)
        .map(|_| {
            let (api, owner) = (api.clone(), owner.clone());
            tokio::spawn(async move {
                let response = api
                    .post(
                        "/api/v1/deliveries",
                        crate::helpers::schedule_body(&owner, 1.0),
                    )
                    .await;
                let status = response.status();
                let body: serde_json::Value = response.json().await.expect("json");
                (
                    status,
                    body["consistencyToken"].as_str().map(str::to_string),
                )
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let suspended = api
        .post(
            &format!("/api/v1/accounts/{owner}/suspend"),
            serde_json::json!({}),
        )
        .await;
    assert!(suspended.status().is_success(), "{}", suspended.status());
    let late = api
        .post(
            "/api/v1/deliveries",
            crate::helpers::schedule_body(&owner, 1.0),
        )
        .await;
    assert_eq!(late.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut accepted = Vec::new();
    for task in schedules {
        match task.await.expect("task") {
            (StatusCode::ACCEPTED, Some(token)) => accepted.push(token),
            (StatusCode::UNPROCESSABLE_ENTITY, _) => {}
            (other, _) => panic!("unexpected {other}"),
        }
    }
    let token = accepted.join(",");
    let (status, listed) = api
        .get_json(&format!(
            "/api/v1/accounts/{owner}/deliveries?limit=500&consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), accepted.len());
}
