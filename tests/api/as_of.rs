//! State at any time (SPEC §6, issue 12): `GET /deliveries/{id}?at=` and its status
//! return the delivery as it was at that moment, folded from its events with the
//! domain's own `apply`.

use crate::helpers::{location, spawn_app};
use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_past_moment_shows_the_stage_the_delivery_was_in_then() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Contoso").await;
    api.register_drone("drone-1", 5.0).await;
    let (delivery, _) = api.schedule(&account, 1.5).await;
    assert_eq!(
        api.assign(&delivery, "drone-1").await.status(),
        StatusCode::OK
    );
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
    let token = done["consistencyToken"].as_str().expect("token");
    let (_, timeline) = api
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/events?consistencyToken={token}"
        ))
        .await;
    let moments: Vec<DateTime<Utc>> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| serde_json::from_value(e["occurredAt"].clone()).expect("a time"))
        .collect();
    assert_eq!(moments.len(), 4);

    let at = |t: DateTime<Utc>| {
        let api = api.clone();
        let delivery = delivery.clone();
        async move {
            let when = urlencode(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            let (status, view) = api
                .get_json(&format!("/api/v1/deliveries/{delivery}?at={when}"))
                .await;
            let (status_of_status, of_status) = api
                .get_json(&format!("/api/v1/deliveries/{delivery}/status?at={when}"))
                .await;
            assert_eq!(status, status_of_status);
            if status == StatusCode::OK {
                assert_eq!(view["stage"], of_status["stage"]);
                assert_eq!(view["version"], of_status["version"]);
            }
            (status, view)
        }
    };
    let micro = Duration::microseconds(1);
    let (status, _) = at(moments[0] - micro).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not created yet");
    let expected = [
        ("Created", 1, Value::Null),
        ("HeadedToPickup", 2, json!("drone-1")),
        ("HeadedToDropoff", 3, json!("drone-1")),
        ("Completed", 4, json!("drone-1")),
    ];
    for (i, (stage, version, drone)) in expected.into_iter().enumerate() {
        // From the moment of its event up to just before the next one.
        let until = moments.get(i + 1).map_or(Utc::now(), |next| *next - micro);
        for t in [moments[i], until] {
            let (status, view) = at(t).await;
            assert_eq!(status, StatusCode::OK, "at {t}");
            assert_eq!(view["stage"], stage, "at {t}");
            assert_eq!(view["version"], version, "at {t}");
            assert_eq!(view["droneId"], drone, "at {t}");
        }
    }

    // A time that is not one is a 400; another tenant sees nothing, then or now.
    let (status, _) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}?at=yesterday"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, key) = api.register_tenant("Fabrikam").await;
    let when = urlencode(&moments[3].to_rfc3339());
    let (status, _) = api
        .with_key(&key)
        .get_json(&format!("/api/v1/deliveries/{delivery}?at={when}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
