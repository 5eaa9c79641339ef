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
