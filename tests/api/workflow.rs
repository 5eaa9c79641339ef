//! The workflow, black-box over HTTP: automatic dispatch by its rules, the flight driven
//! by telemetry alone, the compensations, and a restarted workflow that assigns nothing
//! twice. The servers run with the product's defaults unless a test needs a shorter time.

use crate::helpers::{Api, Server, location, schedule_body, temp_dir};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const HOME: (f64, f64) = (47.60, -122.30);
const PICKUP: (f64, f64) = (47.61, -122.33);
const DROPOFF: (f64, f64) = (47.65, -122.30);

/// A server with automatic dispatch (the default) and `options`.
fn auto(options: &[&str]) -> (tempfile::TempDir, Server, Api) {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), options);
    let api = Api::of(&server);
    (dir, server, api)
}

fn drone_at(payload_kg: f64, home: (f64, f64)) -> Value {
    json!({
        "model": "X8", "payloadKg": payload_kg, "rangeKm": 60, "speedMps": 15,
        "home": location(home.0, home.1),
    })
}

async fn put_drone(api: &Api, id: &str, spec: Value) {
    let response = api
        .client
        .put(api.url(&format!("/api/v1/drones/{id}")))
        .json(&spec)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED, "register {id}");
}

/// Telemetry at a point, 60 m up unless on the ground, stamped now.
async fn report(api: &Api, drone: &str, at: (f64, f64), battery: f64) -> Value {
    let response = api
        .post(
            &format!("/api/v1/drones/{drone}/telemetry"),
            json!({"position": {"latitude": at.0, "longitude": at.1, "altitude": 60},
                   "batteryPct": battery, "at": Utc::now()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "report of {drone}");
    response.json().await.expect("json")
}

/// Schedules a delivery and waits until the read side shows it, so that a later plain
/// read of its status never races the projection.
async fn schedule(api: &Api, body: Value) -> String {
    let response = api.post("/api/v1/deliveries", body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    let delivery = body["deliveryId"].as_str().expect("id").to_string();
    let token = body["consistencyToken"].as_str().expect("token");
    let (status, _) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/status?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{delivery} is visible");
    delivery
}

/// Polls `path` until `done` holds (up to 20 s); returns the last answer.
async fn until(api: &Api, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = api.get_json(path).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_until(api: &Api, delivery: &str, stage: &str) -> Value {
    until(
        api,
        &format!("/api/v1/deliveries/{delivery}/status"),
        &format!("{delivery} reaches {stage}"),
        |s| s["stage"] == stage,
    )
    .await
}

async fn drone_until(api: &Api, drone: &str, status: &str) -> Value {
    until(
        api,
        &format!("/api/v1/drones/{drone}"),
        &format!("{drone} is {status}"),
        |d| d["status"] == status,
    )
    .await
}

fn at(body: &Value, field: &str) -> DateTime<Utc> {
    serde_json::from_value(body[field].clone()).unwrap_or_else(|_| panic!("{field} in {body}"))
}

async fn timeline_kinds(api: &Api, delivery: &str) -> Vec<String> {
    let (_, timeline) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}/events"))
        .await;
    timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_string())
        .collect()
}

async fn metric(api: &Api, name: &str) -> f64 {
    let text = api.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_delivery_gets_a_drone_by_itself_with_etas_that_move_with_telemetry() {
    let (_dir, _server, api) = auto(&[]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 1.2)).await;

    let assigned = status_until(&api, &delivery, "HeadedToPickup").await;
    assert_eq!(assigned["droneId"], "drone-1");
    let first_pickup = at(&assigned, "pickupEta");
    assert!(at(&assigned, "deliveryEta") > first_pickup);

    // A report stamped in whole seconds (as many clients send them), halfway to the
    // pickup: the ETA is now from there, earlier than from home with a take-off.
    let halfway = ((HOME.0 + PICKUP.0) / 2.0, (HOME.1 + PICKUP.1) / 2.0);
    let response = api
        .post(
            "/api/v1/drones/drone-1/telemetry",
            json!({"position": {"latitude": halfway.0, "longitude": halfway.1, "altitude": 60},
                   "batteryPct": 95, "at": Utc::now().trunc_subsecs(0)}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let moved = until(
        &api,
        &format!("/api/v1/deliveries/{delivery}/status"),
        "the ETA moves with the report",
        |s| s["lastKnownLocation"]["latitude"] == halfway.0,
    )
    .await;
    assert!(
        at(&moved, "pickupEta") < first_pickup,
        "{moved} vs {first_pickup}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_flight_runs_on_telemetry_alone_and_the_drone_charges_back_to_idle() {
    // Charging is quick here so the drone is ready again within the test.
    let (_dir, _server, api) = auto(&["--charge-pct-per-minute", "600"]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 1.2)).await;
    status_until(&api, &delivery, "HeadedToPickup").await;

    report(&api, "drone-1", PICKUP, 90.0).await;
    status_until(&api, &delivery, "HeadedToDropoff").await;
    report(&api, "drone-1", DROPOFF, 70.0).await;
    let done = status_until(&api, &delivery, "Completed").await;
    assert_eq!(done["lastKnownLocation"]["latitude"], DROPOFF.0);
    drone_until(&api, "drone-1", "returning").await;

    // Home with a low battery: it docks, charges, and is idle again.
    report(&api, "drone-1", HOME, 30.0).await;
    drone_until(&api, "drone-1", "charging").await;
    drone_until(&api, "drone-1", "idle").await;
    assert_eq!(
        timeline_kinds(&api, &delivery).await,
        [
            "DeliveryCreated",
            "DroneAssigned",
            "DeliveryPickedUp",
            "DeliveryCompleted"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_that_requires_a_confirmation_waits_for_it_at_the_dropoff() {
    let (_dir, _server, api) = auto(&[]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let mut body = schedule_body(&account, 1.2);
    body["confirmationRequired"] = json!("Picture");
    let delivery = schedule(&api, body).await;
    status_until(&api, &delivery, "HeadedToPickup").await;
    report(&api, "drone-1", PICKUP, 90.0).await;
    status_until(&api, &delivery, "HeadedToDropoff").await;
    let at_dropoff = report(&api, "drone-1", DROPOFF, 80.0).await;
    let token = at_dropoff["consistencyToken"].as_str().expect("token");

    // Seen at the drop-off, it waits.
    let (_, status) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/status?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status["stage"], "HeadedToDropoff");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, status) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}/status"))
        .await;
    assert_eq!(status["stage"], "HeadedToDropoff");

    let done = api
        .post(
            &format!("/api/v1/deliveries/{delivery}/confirmations"),
            json!({"confirmationType": "Picture", "location": location(DROPOFF.0, DROPOFF.1),
                   "at": Utc::now(), "blob": "aGVsbG8="}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    status_until(&api, &delivery, "Completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nearest_drone_that_fits_is_chosen() {
    let (_dir, _server, api) = auto(&[]);
    let (account, _) = api.register_account("Contoso").await;
    // At the pickup but too small; near but nearly empty; farther and able.
    put_drone(&api, "small", drone_at(0.5, PICKUP)).await;
    put_drone(&api, "empty", drone_at(5.0, (47.612, -122.332))).await;
    put_drone(&api, "able", drone_at(5.0, (47.58, -122.28))).await;
    report(&api, "empty", (47.612, -122.332), 15.0).await;
    let delivery = schedule(&api, schedule_body(&account, 1.2)).await;
    let assigned = status_until(&api, &delivery, "HeadedToPickup").await;
    assert_eq!(assigned["droneId"], "able");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_deliveries_go_expedited_first_when_the_drone_frees_up() {
    let (_dir, _server, api) = auto(&[]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let first = schedule(&api, schedule_body(&account, 1.0)).await;
    status_until(&api, &first, "HeadedToPickup").await;

    let mut normal = schedule_body(&account, 1.0);
    normal["deadline"] = json!("2030-01-01T00:00:00Z");
    let normal = schedule(&api, normal).await;
    let mut urgent = schedule_body(&account, 1.0);
    urgent["expedited"] = json!(true);
    urgent["deadline"] = json!("2031-01-01T00:00:00Z");
    let urgent = schedule(&api, urgent).await;

    // Both wait; cancelling the first frees the drone, and the expedited one gets it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for waiting in [&normal, &urgent] {
        let (_, status) = api
            .get_json(&format!("/api/v1/deliveries/{waiting}/status"))
            .await;
        assert_eq!(status["stage"], "Created", "{waiting} waits");
    }
    let cancelled = api
        .client
        .delete(api.url(&format!("/api/v1/deliveries/{first}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let assigned = status_until(&api, &urgent, "HeadedToPickup").await;
    assert_eq!(assigned["droneId"], "drone-1");
    let (_, status) = api
        .get_json(&format!("/api/v1/deliveries/{normal}/status"))
        .await;
    assert_eq!(status["stage"], "Created");

    // A new drone takes the one still waiting.
    put_drone(&api, "drone-2", drone_at(5.0, HOME)).await;
    let assigned = status_until(&api, &normal, "HeadedToPickup").await;
    assert_eq!(assigned["droneId"], "drone-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_no_drone_could_ever_carry_is_accepted_then_failed_with_the_reason() {
    let (_dir, _server, api) = auto(&[]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 50.0)).await;
    status_until(&api, &delivery, "Failed").await;
    let (_, view) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}"))
        .await;
    assert!(
        view["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no drone")),
        "{view}"
    );
    // Operators see it among the failed deliveries.
    let failed = until(&api, "/api/v1/deliveries?stage=Failed", "listed", |page| {
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["deliveryId"] == delivery.as_str()))
    })
    .await;
    assert_eq!(failed["items"][0]["stage"], "Failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drone_grounded_before_pickup_is_replaced_and_after_pickup_the_delivery_fails() {
    let (_dir, _server, api) = auto(&[]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 1.0)).await;
    status_until(&api, &delivery, "HeadedToPickup").await;
    put_drone(&api, "drone-2", drone_at(5.0, (47.59, -122.31))).await;

    let grounded = api.post("/api/v1/drones/drone-1/ground", json!({})).await;
    assert_eq!(grounded.status(), StatusCode::OK);
    let reassigned = until(
        &api,
        &format!("/api/v1/deliveries/{delivery}/status"),
        "re-dispatched to drone-2",
        |s| s["stage"] == "HeadedToPickup" && s["droneId"] == "drone-2",
    )
    .await;
    assert_eq!(reassigned["droneId"], "drone-2");
    let kinds = timeline_kinds(&api, &delivery).await;
    assert_eq!(
        kinds,
        [
            "DeliveryCreated",
            "DroneAssigned",
            "DroneUnassigned",
            "DroneAssigned"
        ]
    );

    // After pickup, grounding fails the delivery.
    report(&api, "drone-2", PICKUP, 90.0).await;
    status_until(&api, &delivery, "HeadedToDropoff").await;
    let grounded = api.post("/api/v1/drones/drone-2/ground", json!({})).await;
    assert_eq!(grounded.status(), StatusCode::OK);
    status_until(&api, &delivery, "Failed").await;
    // The workflow counts a compensation once its command is answered, which may be
    // just after the failure is visible.
    let started = Instant::now();
    while metric(&api, "workflow_compensations_total").await < 2.0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "two compensations counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_drone_is_grounded_and_its_delivery_dispatched_again() {
    let (_dir, _server, api) = auto(&["--silent-after-secs", "1"]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 1.0)).await;
    status_until(&api, &delivery, "HeadedToPickup").await;
    put_drone(&api, "drone-2", drone_at(5.0, HOME)).await;
    // drone-2 keeps talking; drone-1 says nothing.
    let reassigned = until(
        &api,
        &format!("/api/v1/deliveries/{delivery}/status"),
        "re-dispatched",
        |s| s["droneId"] == "drone-2",
    )
    .await;
    assert_eq!(reassigned["stage"], "HeadedToPickup");
    drone_until(&api, "drone-1", "grounded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_with_a_later_pickup_time_is_dispatched_in_time_not_at_once() {
    // A fast drone and short margins, so "in time" is a few seconds from now.
    let (_dir, _server, api) = auto(&[
        "--dispatch-margin-secs",
        "1",
        "--takeoff-secs",
        "1",
        "--landing-secs",
        "1",
    ]);
    let (account, _) = api.register_account("Contoso").await;
    // 300 m/s, near the bound on speeds: ~8 s to the pickup, ~11 s with take-off,
    // landing and the margin, so the drone must leave ~9 s from now.
    let mut spec = drone_at(5.0, HOME);
    spec["speedMps"] = json!(300);
    put_drone(&api, "drone-1", spec).await;
    let pickup_time = Utc::now() + TimeDelta::seconds(20);
    let mut body = schedule_body(&account, 1.0);
    body["pickupTime"] = json!(pickup_time);
    let delivery = schedule(&api, body).await;

    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, status) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}/status"))
        .await;
    assert_eq!(status["stage"], "Created", "not dispatched at once");
    let assigned = status_until(&api, &delivery, "HeadedToPickup").await;
    assert!(
        Utc::now() < pickup_time,
        "dispatched before the pickup time"
    );
    assert!(at(&assigned, "pickupEta") <= pickup_time + TimeDelta::seconds(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_clients_against_few_drones_never_double_assign() {
    let (_dir, _server, api) = auto(&["--charge-pct-per-minute", "6000"]);
    let (account, _) = api.register_account("Contoso").await;
    let drones = ["d-1", "d-2", "d-3"];
    for drone in drones {
        put_drone(&api, drone, drone_at(5.0, HOME)).await;
    }
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let api = api.clone();
        let account = account.clone();
        tasks.push(tokio::spawn(async move {
            schedule(&api, schedule_body(&account, 1.0)).await
        }));
    }
    let mut deliveries = Vec::new();
    for task in tasks {
        deliveries.push(task.await.expect("scheduled"));
    }

    // Fly rounds: whatever is assigned is flown by telemetry; no drone ever has two.
    let mut completed = BTreeSet::new();
    let started = Instant::now();
    while completed.len() < 6 {
        assert!(started.elapsed() < Duration::from_secs(60), "rounds finish");
        let mut carried: BTreeMap<String, String> = BTreeMap::new();
        for delivery in &deliveries {
            let (_, status) = api
                .get_json(&format!("/api/v1/deliveries/{delivery}/status"))
                .await;
            if status["stage"] == "HeadedToPickup" || status["stage"] == "HeadedToDropoff" {
                let drone = status["droneId"].as_str().expect("drone").to_string();
                if let Some(other) = carried.insert(drone.clone(), delivery.clone()) {
                    panic!("{drone} carries {other} and {delivery}");
                }
            }
        }
        for (drone, delivery) in &carried {
            report(&api, drone, PICKUP, 95.0).await;
            status_until(&api, delivery, "HeadedToDropoff").await;
            report(&api, drone, DROPOFF, 90.0).await;
            status_until(&api, delivery, "Completed").await;
            report(&api, drone, HOME, 90.0).await;
            // Docked and charged, it is idle, or already on the next delivery.
            until(
                &api,
                &format!("/api/v1/drones/{drone}"),
                &format!("{drone} is back in service"),
                |d| {
                    d["status"] == "idle"
                        || (d["status"] == "assigned" && d["deliveryId"] != delivery.as_str())
                },
            )
            .await;
            completed.insert(delivery.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for delivery in &deliveries {
        let kinds = timeline_kinds(&api, delivery).await;
        let assigned = kinds.iter().filter(|k| *k == "DroneAssigned").count();
        assert!(assigned <= 1, "{delivery}: {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_killed_mid_flight_and_restarted_assigns_nothing_twice() {
    let dir = temp_dir();
    let mut server = Server::start_with(dir.path(), &[]);
    let api = Api::of(&server);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 1.0)).await;
    status_until(&api, &delivery, "HeadedToPickup").await;
    report(&api, "drone-1", PICKUP, 90.0).await;
    status_until(&api, &delivery, "HeadedToDropoff").await;

    server.kill9();
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::of(&server);
    report(&api, "drone-1", DROPOFF, 80.0).await;
    status_until(&api, &delivery, "Completed").await;
    assert_eq!(
        timeline_kinds(&api, &delivery).await,
        [
            "DeliveryCreated",
            "DroneAssigned",
            "DeliveryPickedUp",
            "DeliveryCompleted"
        ]
    );
    let (_, drone) = api.get_json("/api/v1/drones/drone-1").await;
    assert_eq!(
        drone["version"], 4,
        "registered, assigned, picked up, completed: {drone}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_report_is_accepted_but_does_not_move_the_drone_back_and_a_future_one_is_422() {
    let (_dir, _server, api) = auto(&["--dispatch", "manual"]);
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let now = Utc::now();
    let post = |at: DateTime<Utc>, lat: f64| {
        let api = api.clone();
        async move {
            api.post(
                "/api/v1/drones/drone-1/telemetry",
                json!({"position": location(lat, -122.3), "batteryPct": 80, "at": at}),
            )
            .await
        }
    };
    assert_eq!(post(now, 47.62).await.status(), StatusCode::ACCEPTED);
    let older = post(now - TimeDelta::minutes(10), 47.50).await;
    assert_eq!(older.status(), StatusCode::ACCEPTED);
    let token = older.json::<Value>().await.expect("json")["consistencyToken"]
        .as_str()
        .expect("token")
        .to_string();
    let (_, drone) = api
        .get_json(&format!("/api/v1/drones/drone-1?consistencyToken={token}"))
        .await;
    assert_eq!(drone["position"]["latitude"], 47.62);
    assert!(metric(&api, "telemetry_out_of_order_total").await >= 1.0);

    let appended = api.events_appended().await;
    let future = post(now + TimeDelta::minutes(5), 47.70).await;
    assert_eq!(future.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.events_appended().await, appended, "nothing appended");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_manual_dispatch_nothing_is_assigned_by_itself() {
    let (_dir, _server, api) = auto(&["--dispatch", "manual"]);
    let (account, _) = api.register_account("Contoso").await;
    put_drone(&api, "drone-1", drone_at(5.0, HOME)).await;
    let delivery = schedule(&api, schedule_body(&account, 1.0)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, status) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}/status"))
        .await;
    assert_eq!(status["stage"], "Created");
    assert_eq!(
        api.assign(&delivery, "drone-1").await.status(),
        StatusCode::OK
    );
}
