//! The happy path of SPEC §5: register, schedule, assign, track, pick up, complete,
//! then read history, timeline, invoice and fleet — each read with the consistency
//! token of the write before it (read-your-writes).

use crate::helpers::{location, spawn_app};
use chrono::{Datelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_goes_from_scheduled_to_invoiced() {
    let (_dir, _server, api) = spawn_app();

    let (account, _) = api.register_account("Contoso").await;
    api.register_drone("drone-1", 5.0).await;
    let (delivery, token) = api.schedule(&account, 1.5).await;

    let (status, view) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["stage"], "Created");
    assert_eq!(view["ownerId"], account.as_str());
    assert_eq!(view["packageWeightKg"], 1.5);

    let assigned = api.assign(&delivery, "drone-1").await;
    assert_eq!(assigned.status(), StatusCode::OK);
    let assigned: Value = assigned.json().await.expect("json");
    assert_eq!(assigned["version"], 2);

    // Telemetry moves the drone; the status shows the position and an ETA from it.
    let now = Utc::now();
    let report = api
        .post(
            "/api/v1/drones/drone-1/telemetry",
            json!({"position": location(47.605, -122.32), "batteryPct": 93.5, "at": now}),
        )
        .await;
    assert_eq!(report.status(), StatusCode::ACCEPTED);
    let report: Value = report.json().await.expect("json");
    // The status reads the delivery (assigned) and the drone (reported): wait for both.
    let token = format!(
        "{},{}",
        assigned["consistencyToken"].as_str().expect("token"),
        report["consistencyToken"].as_str().expect("token")
    );
    let (_, tracking) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/status?consistencyToken={token}"
        ))
        .await;
    assert_eq!(tracking["stage"], "HeadedToPickup");
    assert_eq!(tracking["droneId"], "drone-1");
    assert_eq!(tracking["lastKnownLocation"]["latitude"], 47.605);
    let pickup_eta: chrono::DateTime<Utc> =
        serde_json::from_value(tracking["pickupEta"].clone()).expect("a pickup ETA");
    let delivery_eta: chrono::DateTime<Utc> =
        serde_json::from_value(tracking["deliveryEta"].clone()).expect("a delivery ETA");
    assert!(pickup_eta > now && delivery_eta > pickup_eta);

    let (_, drone) = api.get_json("/api/v1/drones/drone-1").await;
    assert_eq!(drone["status"], "assigned");
    assert_eq!(drone["deliveryId"], delivery.as_str());
    assert_eq!(drone["batteryPct"], 93.5);

    let picked = api
        .post(&format!("/api/v1/deliveries/{delivery}/pickup"), json!({}))
        .await;
    assert_eq!(picked.status(), StatusCode::OK);
    let done = api
        .post(
            &format!("/api/v1/deliveries/{delivery}/confirmations"),
            json!({"confirmationType": "None", "location": location(47.65, -122.30), "at": Utc::now()}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.expect("json");
    assert_eq!(done["version"], 4);
    let token = done["consistencyToken"].as_str().expect("token");

    let (_, view) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/status?consistencyToken={token}"
        ))
        .await;
    assert_eq!(view["stage"], "Completed");

    let (_, timeline) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/events?consistencyToken={token}"
        ))
        .await;
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "DeliveryCreated",
            "DroneAssigned",
            "DeliveryPickedUp",
            "DeliveryCompleted"
        ]
    );

    let (_, history) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?stage=Completed&consistencyToken={token}"
        ))
        .await;
    assert_eq!(history["items"][0]["deliveryId"], delivery.as_str());
    assert_eq!(history["items"][0]["stage"], "Completed");

    let today = Utc::now();
    let (_, invoice) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/invoice?year={}&month={}&consistencyToken={token}",
            today.year(),
            today.month()
        ))
        .await;
    assert_eq!(invoice["deliveries"], 1);
    assert_eq!(invoice["totalWeightKg"], 1.5);
    assert!(invoice["droneKm"].as_f64().expect("km") > 5.0);
    assert!(invoice["droneHours"].as_f64().expect("hours") >= 0.0);

    let (_, drone) = api
        .get_json(&format!("/api/v1/drones/drone-1?consistencyToken={token}"))
        .await;
    assert_eq!(drone["status"], "returning");
    let ret = api.post("/api/v1/drones/drone-1/return", json!({})).await;
    assert_eq!(ret.status(), StatusCode::OK);
    let ret: Value = ret.json().await.expect("json");
    let token = ret["consistencyToken"].as_str().expect("token");
    let (_, fleet) = api
        .get_json(&format!(
            "/api/v1/drones?status=idle&consistencyToken={token}"
        ))
        .await;
    assert_eq!(fleet["items"][0]["droneId"], "drone-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_and_filters_an_accounts_deliveries() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Fabrikam").await;
    let mut ids = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let (id, t) = api.schedule(&account, 1.0).await;
        ids.push(id);
        token = t;
    }
    let cancelled = api
        .client
        .delete(api.url(&format!("/api/v1/deliveries/{}", ids[0])))
        .send()
        .await
        .expect("sent");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancel: Value = cancelled.json().await.expect("json");
    let cancel_token = cancel["consistencyToken"].as_str().expect("token");

    // Newest first, two at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path =
            format!("/api/v1/accounts/{account}/deliveries?limit=2&consistencyToken={token}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = api.get_json(&path).await;
        assert_eq!(status, StatusCode::OK);
        for item in page["items"].as_array().expect("items") {
            seen.push(item["deliveryId"].as_str().expect("id").to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let (_, cancelled) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?stage=Cancelled&consistencyToken={cancel_token}"
        ))
        .await;
    let items = cancelled["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["deliveryId"], ids[0].as_str());

    let (_, none) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?to=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(none["items"].as_array().expect("items").len(), 0);

    // Time bounds are inclusive, at microsecond precision.
    let (_, all) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?consistencyToken={cancel_token}"
        ))
        .await;
    let created = |i: usize| {
        all["items"][4 - i]["createdAt"]
            .as_str()
            .expect("createdAt")
            .to_string()
    };
    let ids_of = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|d| d["deliveryId"].as_str().expect("id").to_string())
            .collect()
    };
    let (_, early) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?to={}",
            created(2)
        ))
        .await;
    assert_eq!(
        ids_of(&early),
        [ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    let (_, late) = api
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?from={}",
            created(3)
        ))
        .await;
    assert_eq!(ids_of(&late), [ids[4].clone(), ids[3].clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rescheduling_or_cancelling_an_assigned_delivery_releases_its_drone() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Contoso").await;
    api.register_drone("d1", 5.0).await;
    let (delivery, _) = api.schedule(&account, 1.0).await;
    assert_eq!(api.assign(&delivery, "d1").await.status(), StatusCode::OK);

    let moved = api
        .client
        .patch(api.url(&format!("/api/v1/deliveries/{delivery}")))
        .header("if-match", "\"2\"")
        .json(&json!({"dropoff": location(47.66, -122.31), "deadline": "2031-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.expect("json");
    let token = moved["consistencyToken"].as_str().expect("token");
    let (_, view) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}?consistencyToken={token}"
        ))
        .await;
    assert_eq!(view["stage"], "Rescheduled");
    assert_eq!(view["droneId"], Value::Null);
    assert_eq!(view["dropoff"]["latitude"], 47.66);
    let (_, drone) = api
        .get_json(&format!("/api/v1/drones/d1?consistencyToken={token}"))
        .await;
    assert_eq!(drone["status"], "idle");

    // Assigned again, then cancelled: the drone is free for another delivery.
    assert_eq!(api.assign(&delivery, "d1").await.status(), StatusCode::OK);
    let cancelled = api
        .client
        .delete(api.url(&format!("/api/v1/deliveries/{delivery}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let (other, _) = api.schedule(&account, 1.0).await;
    assert_eq!(api.assign(&other, "d1").await.status(), StatusCode::OK);

    // Grounded and back in service.
    let (third, _) = api.schedule(&account, 1.0).await;
    let ground = api
        .post("/api/v1/drones/d1/ground", json!({"reason": "rotor check"}))
        .await;
    assert_eq!(ground.status(), StatusCode::OK);
    assert_eq!(
        api.assign(&third, "d1").await.status(),
        StatusCode::CONFLICT,
        "a grounded drone is not idle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_telemetry_batch_moves_many_drones_in_one_request() {
    let (_dir, _server, api) = spawn_app();
    for i in 0..3 {
        api.register_drone(&format!("d{i}"), 5.0).await;
    }
    let batch: Vec<Value> = (0..3)
        .map(|i| {
            json!({"droneId": format!("d{i}"), "position": location(47.0 + f64::from(i), -122.0),
                   "batteryPct": 70 + i, "at": Utc::now()})
        })
        .collect();
    let response = api.post("/api/v1/telemetry", json!(batch)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["accepted"], 3);
    let token = body["consistencyToken"].as_str().expect("token");
    let (_, fleet) = api
        .get_json(&format!(
            "/api/v1/drones?status=idle&consistencyToken={token}"
        ))
        .await;
    let positions: Vec<f64> = fleet["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["position"]["latitude"].as_f64().expect("a position"))
        .collect();
    assert_eq!(positions, [47.0, 48.0, 49.0]);
}

/// A batch's reports of one partition are one log record (a commit): with 40 drones over
/// 16 partitions many share one, and two reports of a drone always do. Every report is
/// read back, the newer of a drone's two wins, and a restarted server reads the same.
#[tokio::test(flavor = "multi_thread")]
async fn every_report_of_a_batch_is_folded_when_a_partition_holds_many() {
    let dir = crate::helpers::temp_dir();
    let mut server = crate::helpers::Server::start(dir.path());
    let api = crate::helpers::Api::of(&server);
    for i in 0..40 {
        api.register_drone(&format!("b{i}"), 5.0).await;
    }
    let now = Utc::now();
    let mut batch: Vec<Value> = Vec::new();
    for i in 0..40 {
        for (age, lat) in [(5, 40.0), (0, 41.0)] {
            batch.push(json!({"droneId": format!("b{i}"),
                "position": location(lat + f64::from(i) / 100.0, -122.0),
                "batteryPct": 50, "at": now - chrono::TimeDelta::seconds(age)}));
        }
    }
    let response = api.post("/api/v1/telemetry", json!(batch)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["accepted"], 80);
    let token = body["consistencyToken"]
        .as_str()
        .expect("token")
        .to_string();
    let latitudes = |api: crate::helpers::Api, token: String| async move {
        let (_, fleet) = api
            .get_json(&format!(
                "/api/v1/drones?status=idle&limit=100&consistencyToken={token}"
            ))
            .await;
        let mut seen: Vec<(String, f64)> = fleet["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|d| {
                (
                    d["droneId"].as_str().expect("id").to_string(),
                    d["position"]["latitude"].as_f64().expect("a position"),
                )
            })
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen
    };
    let before = latitudes(api.clone(), token.clone()).await;
    assert_eq!(before.len(), 40);
    for (id, lat) in &before {
        let i: f64 = id[1..].parse().expect("number");
        assert!((lat - (41.0 + i / 100.0)).abs() < 1e-9, "{id}: {lat}");
    }
    server.stop();
    let server = crate::helpers::Server::start(dir.path());
    let api = crate::helpers::Api::of(&server);
    assert_eq!(latitudes(api, token).await, before);
}
