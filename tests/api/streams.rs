//! The live streams (SSE) and the tracking tokens that open them: a delivery's stream
//! follows it to its end and resumes with `Last-Event-ID`; the fleet stream sends every
//! drone, then changes and reports; a token opens what it names and nothing else.

use crate::helpers::{Api, schedule_body};
use crate::helpers::{OPERATOR_KEY, Server, location, temp_dir};
use chrono::Utc;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// One server-sent event, or a comment (`event` = `:`).
#[derive(Debug)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// Reads a stream's events one at a time.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    pub async fn open(url: &str, last_event_id: Option<&str>) -> reqwest::Response {
        // No overall timeout: a stream lasts as long as it lasts.
        let mut request = Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send().await.expect("the stream opens")
    }

    pub fn of(response: reqwest::Response) -> Sse {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event or comment; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("", comment)) => {
                            event.event = ":".into();
                            event.data = json!(comment);
                        }
                        Some(("event", v)) => event.event = v.trim().into(),
                        Some(("id", v)) => event.id = v.trim().into(),
                        Some(("data", v)) => {
                            event.data = serde_json::from_str(v.trim()).expect("JSON data")
                        }
                        _ => {}
                    }
                }
                return Some(event);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// The next event of kind `kind`, skipping heartbeats and other kinds.
    pub async fn next_of(&mut self, kind: &str) -> SseEvent {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.event == kind {
                return event;
            }
        }
    }
}

/// A tenant's delivery and its tracking token.
async fn tracked(api: &Api) -> (Api, String, String, String) {
    let (account, _, key) = api.register_tenant("Contoso").await;
    let tenant = api.with_key(&key);
    let response = tenant
        .post("/api/v1/deliveries", schedule_body(&account, 1.5))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    let id = body["deliveryId"].as_str().expect("id").to_string();
    let url = body["trackingUrl"].as_str().expect("a tracking URL");
    assert!(url.starts_with(&format!("/track/{id}?t=")), "{url}");
    let token = url.split_once("?t=").expect("a token").1.to_string();
    (tenant, account, id, token)
}

fn stream_url(api: &Api, id: &str, token: &str) -> String {
    api.url(&format!("/api/v1/deliveries/{id}/status/stream?t={token}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_stream_follows_a_delivery_to_its_end_and_resumes() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &["--dispatch", "manual", "--stream-heartbeat-secs", "1"],
    );
    let api = Api::of(&server);
    api.register_drone("drone-1", 5.0).await;
    let (_, _, id, token) = tracked(&api).await;

    // A customer's browser: the token, no key.
    let mut stream = Sse::of(Sse::open(&stream_url(&api, &id, &token), None).await);
    let first = stream.next_of("status").await;
    assert_eq!(first.data["stage"], "Created");
    assert_eq!(first.data["pickup"]["latitude"], 47.61);
    assert_eq!(first.id, "1.0");

    assert_eq!(api.assign(&id, "drone-1").await.status(), StatusCode::OK);
    let change = stream.next_of("change").await;
    assert_eq!(change.data["type"], "DroneAssigned");
    assert_eq!(change.data["version"], 2);
    let assigned = stream.next_of("status").await;
    assert_eq!(assigned.data["stage"], "HeadedToPickup");
    assert_eq!(assigned.data["droneId"], "drone-1");

    // Each report moves the drone and its ETAs.
    let mut etas = Vec::new();
    for (i, longitude) in [-122.31, -122.32].into_iter().enumerate() {
        let at = Utc::now();
        let report = api
            .post(
                "/api/v1/drones/drone-1/telemetry",
                json!({"position": location(47.605, longitude), "batteryPct": 90 - i, "at": at}),
            )
            .await;
        assert_eq!(report.status(), StatusCode::ACCEPTED);
        let moved = stream.next_of("status").await;
        assert_eq!(moved.data["lastKnownLocation"]["longitude"], longitude);
        assert_eq!(moved.id, format!("2.{}", at.timestamp_micros()));
        etas.push(moved.data["pickupEta"].clone());
    }
    assert!(etas[0].is_string() && etas[0] != etas[1], "{etas:?}");

    // With nothing to say, a heartbeat.
    assert_eq!(stream.next().await.expect("a heartbeat").event, ":");

    let picked = api
        .post(&format!("/api/v1/deliveries/{id}/pickup"), json!({}))
        .await;
    assert_eq!(picked.status(), StatusCode::OK);
    assert_eq!(
        stream.next_of("change").await.data["type"],
        "DeliveryPickedUp"
    );
    assert_eq!(
        stream.next_of("status").await.data["stage"],
        "HeadedToDropoff"
    );
    let done = api
        .post(
            &format!("/api/v1/deliveries/{id}/confirmations"),
            json!({"confirmationType": "None", "location": location(47.65, -122.30), "at": Utc::now()}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        stream.next_of("change").await.data["type"],
        "DeliveryCompleted"
    );
    let last = stream.next_of("status").await;
    assert_eq!(last.data["stage"], "Completed");
    // Completed: the stream ends.
    loop {
        match stream.next().await {
            None => break,
            Some(event) => assert_eq!(event.event, ":", "only heartbeats after the end"),
        }
    }

    // A reconnect after the end: 204, so an EventSource stops.
    let again = Sse::open(&stream_url(&api, &id, &token), Some(&last.id)).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    // A client that saw only the first event gets the changes it missed, then the status.
    let mut resumed = Sse::of(Sse::open(&stream_url(&api, &id, &token), Some("1.0")).await);
    let mut missed = Vec::new();
    loop {
        let event = resumed.next().await.expect("the resumed stream goes on");
        match event.event.as_str() {
            "change" => missed.push(event.data["type"].as_str().expect("type").to_string()),
            "status" => {
                assert_eq!(event.data["stage"], "Completed");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        missed,
        ["DroneAssigned", "DeliveryPickedUp", "DeliveryCompleted"]
    );
    assert!(resumed.next().await.is_none(), "and it ends");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tracking_token_opens_what_it_names_and_nothing_else() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &["--dispatch", "manual"]);
    let api = Api::of(&server);
    let (tenant, account, id, token) = tracked(&api).await;
    let (_, _, other, other_token) = tracked(&api).await;
    let anonymous = Client::new();
    let get = |path: String| {
        let anonymous = anonymous.clone();
        let url = api.url(&path);
        async move { anonymous.get(url).send().await.expect("sent").status() }
    };
    assert_eq!(
        get(format!("/api/v1/deliveries/{id}/status?t={token}")).await,
        StatusCode::OK
    );
    // The token reads this delivery's status and stream only.
    for path in [
        format!("/api/v1/deliveries/{id}?t={token}"),
        format!("/api/v1/deliveries/{id}/events?t={token}"),
        format!("/api/v1/accounts/{account}/deliveries?t={token}"),
        format!("/api/v1/drones?t={token}"),
    ] {
        assert_eq!(get(path.clone()).await, StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in [
        format!("/api/v1/deliveries/{other}/status?t={token}"),
        format!("/api/v1/deliveries/{other}/status/stream?t={token}"),
    ] {
        assert_eq!(get(path.clone()).await, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        get(format!("/api/v1/drones/stream?t={token}")).await,
        StatusCode::FORBIDDEN
    );
    // A changed or forged token is refused.
    let forged = other_token.replace(&other, &id);
    assert_eq!(
        get(format!("/api/v1/deliveries/{id}/status?t={forged}")).await,
        StatusCode::UNAUTHORIZED
    );
    // It changes nothing: a command with a token is a command without a key.
    let cancel = anonymous
        .delete(api.url(&format!("/api/v1/deliveries/{id}?t={token}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(cancel.status(), StatusCode::UNAUTHORIZED);

    // Stream tokens: an account mints them for its own deliveries, not another's, and
    // not for the fleet; the operator for the fleet.
    let minted = tenant
        .post("/api/v1/stream-tokens", json!({"deliveryId": id}))
        .await;
    assert_eq!(minted.status(), StatusCode::CREATED);
    let minted: Value = minted.json().await.expect("json");
    let fresh = minted["token"].as_str().expect("token");
    assert_eq!(
        get(format!("/api/v1/deliveries/{id}/status?t={fresh}")).await,
        StatusCode::OK
    );
    let theirs = tenant
        .post("/api/v1/stream-tokens", json!({"deliveryId": other}))
        .await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let fleet = tenant.post("/api/v1/stream-tokens", json!({})).await;
    assert_eq!(fleet.status(), StatusCode::FORBIDDEN);
    let bad = tenant
        .post("/api/v1/stream-tokens", json!({"deliveryID": id}))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let fleet = api.post("/api/v1/stream-tokens", json!({})).await;
    assert_eq!(fleet.status(), StatusCode::CREATED);
    let fleet: Value = fleet.json().await.expect("json");
    let fleet_token = fleet["token"].as_str().expect("token");
    let response = Sse::open(
        &api.url(&format!("/api/v1/drones/stream?t={fleet_token}")),
        None,
    )
    .await;
    Sse::of(response);
    // A fleet token is not a key either.
    assert_eq!(
        get(format!("/api/v1/drones?t={fleet_token}")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_stream_sends_every_drone_then_changes_and_reports() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &["--dispatch", "manual"]);
    let api = Api::of(&server);
    api.register_drone("drone-a", 5.0).await;
    let (account, _) = api.register_account("Contoso").await;
    let (delivery, _) = api.schedule(&account, 1.0).await;

    // Only operators and analysts watch the fleet.
    let (_, _, key) = api.register_tenant("Fabrikam").await;
    assert_eq!(
        api.with_key(&key)
            .get("/api/v1/drones/stream")
            .await
            .status(),
        StatusCode::FORBIDDEN
    );

    let open = Client::new()
        .get(api.url("/api/v1/drones/stream"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("sent");
    let mut stream = Sse::of(open);
    let first = stream.next_of("drone").await;
    assert_eq!(first.data["droneId"], "drone-a");
    assert_eq!(first.data["status"], "idle");

    // A drone registered later, an assignment and a report arrive as they happen.
    api.register_drone("drone-b", 5.0).await;
    let added = stream.next_of("drone").await;
    assert_eq!(added.data["droneId"], "drone-b");
    assert_eq!(
        api.assign(&delivery, "drone-a").await.status(),
        StatusCode::OK
    );
    let assigned = stream.next_of("drone").await;
    assert_eq!(assigned.data["droneId"], "drone-a");
    assert_eq!(assigned.data["status"], "assigned");
    assert_eq!(assigned.data["deliveryId"], delivery.as_str());
    let report = api
        .post(
            "/api/v1/drones/drone-a/telemetry",
            json!({"position": location(47.606, -122.31), "batteryPct": 97, "at": Utc::now()}),
        )
        .await;
    assert_eq!(report.status(), StatusCode::ACCEPTED);
    let moved = stream.next_of("position").await;
    assert_eq!(moved.data["droneId"], "drone-a");
    assert_eq!(moved.data["position"]["latitude"], 47.606);
    assert_eq!(moved.data["batteryPct"], 97.0);
}
