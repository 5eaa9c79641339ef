//! Bad input gets a clear problem response and changes nothing (SPEC §5, §7); a log that
//! cannot take the write gets 503, never a 2xx (that test, on a log with injected
//! faults, is in `faults.rs`).

use crate::helpers::{Api, drone_spec, location, schedule_body, spawn_app};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// Sends the request; checks the status, the problem body, and that the log did not grow.
async fn refused(api: &Api, request: RequestBuilder, status: StatusCode) -> Value {
    let before = api.events_appended().await;
    let response = request.send().await.expect("sent");
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("problem json");
    assert_eq!(problem["status"], status.as_u16());
    assert!(problem["title"].is_string() && problem["type"].is_string());
    assert!(!problem["detail"].as_str().unwrap_or_default().is_empty());
    assert_eq!(api.events_appended().await, before, "nothing was appended");
    problem
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_400() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Contoso").await;
    let c = &api.client;

    let not_json = c
        .post(api.url("/api/v1/accounts"))
        .header("content-type", "application/json")
        .body("{\"name\": ");
    refused(&api, not_json, StatusCode::BAD_REQUEST).await;

    let missing_field = c
        .post(api.url("/api/v1/accounts"))
        .json(&json!({"name": "x"}));
    refused(&api, missing_field, StatusCode::BAD_REQUEST).await;

    let bad_email = c
        .post(api.url("/api/v1/accounts"))
        .json(&json!({"name": "x", "email": "nope"}));
    refused(&api, bad_email, StatusCode::BAD_REQUEST).await;

    let mut body = schedule_body(&account, 1.0);
    body["pickup"] = location(91.0, 0.0);
    let bad_latitude = c.post(api.url("/api/v1/deliveries")).json(&body);
    let problem = refused(&api, bad_latitude, StatusCode::BAD_REQUEST).await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("latitude")
    );

    let mut body = schedule_body(&account, 1.0);
    body["packageInfo"]["weight"] = json!(-2);
    let negative_weight = c.post(api.url("/api/v1/deliveries")).json(&body);
    refused(&api, negative_weight, StatusCode::BAD_REQUEST).await;

    let mut body = schedule_body(&account, 1.0);
    body["packageInfo"]["weight"] = json!(1e308);
    let absurd_weight = c.post(api.url("/api/v1/deliveries")).json(&body);
    refused(&api, absurd_weight, StatusCode::BAD_REQUEST).await;

    let mut spec = drone_spec(5.0);
    spec["speedMps"] = json!(1e308);
    let absurd_speed = c.put(api.url("/api/v1/drones/fast-one")).json(&spec);
    refused(&api, absurd_speed, StatusCode::BAD_REQUEST).await;

    for name in ["Con\u{0}toso", "\u{1b}[2J"] {
        let control = c
            .post(api.url("/api/v1/accounts"))
            .json(&json!({"name": name, "email": "x@example.com"}));
        refused(&api, control, StatusCode::BAD_REQUEST).await;
    }

    let mut body = schedule_body(&account, 1.0);
    body["packageInfo"]["size"] = json!("huge");
    let unknown_size = c.post(api.url("/api/v1/deliveries")).json(&body);
    refused(&api, unknown_size, StatusCode::BAD_REQUEST).await;

    let bad_if_match = c
        .post(api.url(&format!("/api/v1/accounts/{account}/suspend")))
        .header("if-match", "\"seven\"");
    refused(&api, bad_if_match, StatusCode::BAD_REQUEST).await;

    // A correlation id is copied into every event: bounded, visible ASCII only.
    for bad in ["x".repeat(129), "has space".to_owned(), String::new()] {
        let request = c
            .post(api.url("/api/v1/accounts"))
            .header("x-correlation-id", bad)
            .json(&json!({"name": "x", "email": "x@example.com"}));
        let problem = refused(&api, request, StatusCode::BAD_REQUEST).await;
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains("X-Correlation-Id")
        );
    }
    let fine = c
        .post(api.url("/api/v1/accounts"))
        .header("x-correlation-id", "x".repeat(128))
        .json(&json!({"name": "x", "email": "x@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(fine.status(), StatusCode::CREATED);

    let bad_id = c
        .put(api.url("/api/v1/drones/bad%20id"))
        .json(&drone_spec(5.0));
    refused(&api, bad_id, StatusCode::BAD_REQUEST).await;

    let bad_battery = c
        .post(api.url("/api/v1/telemetry"))
        .json(&json!([{"droneId": "d", "position": location(1.0, 1.0), "batteryPct": 140, "at": "2026-01-01T00:00:00Z"}]));
    refused(&api, bad_battery, StatusCode::BAD_REQUEST).await;

    let bad_query = c.get(api.url(&format!(
        "/api/v1/accounts/{account}/invoice?year=2026&month=13"
    )));
    let response = bad_query.send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_a_resource_does_not_take_is_405_with_allow() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Contoso").await;
    let (delivery, _) = api.schedule(&account, 1.0).await;
    let c = &api.client;
    for (request, allow) in [
        (c.delete(api.url("/api/v1/deliveries")), "GET, HEAD, POST"),
        (
            c.post(api.url(&format!("/api/v1/deliveries/{delivery}/status"))),
            "GET, HEAD",
        ),
        (
            c.get(api.url(&format!("/api/v1/accounts/{account}/suspend"))),
            "POST",
        ),
    ] {
        let before = api.events_appended().await;
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], allow);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(api.events_appended().await, before, "nothing was appended");
    }
    // A path the API does not have is still 404, whatever the method.
    let response = c
        .delete(api.url("/api/v1/nothing-here"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_by_its_content_type_is_415() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Contoso").await;
    let c = &api.client;
    let body = r#"{"name": "x", "email": "x@example.com"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = c.post(api.url("/api/v1/accounts")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        refused(&api, request, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    // JSON with parameters is fine; no body needs no type.
    let charset = c
        .post(api.url("/api/v1/accounts"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(charset.status(), StatusCode::CREATED);
    let no_body = c
        .post(api.url(&format!("/api/v1/accounts/{account}/suspend")))
        .send()
        .await
        .expect("sent");
    assert_eq!(no_body.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_resources_are_404() {
    let (_dir, _server, api) = spawn_app();
    let c = &api.client;
    refused(
        &api,
        c.post(api.url("/api/v1/deliveries/no-such-delivery/assign-drone"))
            .json(&json!({"droneId": "d1"})),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &api,
        c.post(api.url("/api/v1/accounts/nobody/suspend")),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &api,
        c.post(api.url("/api/v1/drones/ghost/telemetry")).json(
            &json!({"position": location(1.0, 1.0), "batteryPct": 50, "at": "2026-01-01T00:00:00Z"}),
        ),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &api,
        c.get(api.url("/api/v1/deliveries/nope")),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &api,
        c.get(api.url("/api/v1/drones/nope")),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &api,
        c.get(api.url("/api/v1/accounts/nope/deliveries")),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &api,
        c.get(api.url("/api/v1/no/such/route")),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_versions_and_wrong_states_are_409() {
    let (_dir, _server, api) = spawn_app();
    let c = &api.client;
    let (account, _) = api.register_account("Contoso").await;
    let (delivery, _) = api.schedule(&account, 1.0).await;

    // The account is at version 1; a caller that saw version 0 is refused.
    refused(
        &api,
        c.post(api.url(&format!("/api/v1/accounts/{account}/suspend")))
            .header("if-match", "\"0\""),
        StatusCode::CONFLICT,
    )
    .await;
    let ok = c
        .post(api.url(&format!("/api/v1/accounts/{account}/suspend")))
        .header("if-match", "\"1\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["etag"], "\"2\"");

    // Pick-up before a drone is assigned.
    refused(
        &api,
        c.post(api.url(&format!("/api/v1/deliveries/{delivery}/pickup"))),
        StatusCode::CONFLICT,
    )
    .await;
    // Registering the same drone id with another specification.
    api.register_drone("d1", 5.0).await;
    refused(
        &api,
        c.put(api.url("/api/v1/drones/d1")).json(&drone_spec(9.0)),
        StatusCode::CONFLICT,
    )
    .await;
    // The same specification again is an idempotent PUT.
    let again = c
        .put(api.url("/api/v1/drones/d1"))
        .json(&drone_spec(5.0))
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_business_rules_are_422() {
    let (_dir, _server, api) = spawn_app();
    let c = &api.client;
    let (account, _) = api.register_account("Contoso").await;
    api.register_drone("small-drone", 1.0).await;
    let (heavy, _) = api.schedule(&account, 4.0).await;

    let problem = refused(
        &api,
        c.post(api.url(&format!("/api/v1/deliveries/{heavy}/assign-drone")))
            .json(&json!({"droneId": "small-drone"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("payload")
    );

    refused(
        &api,
        c.post(api.url(&format!("/api/v1/deliveries/{heavy}/assign-drone")))
            .json(&json!({"droneId": "no-such-drone"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    refused(
        &api,
        c.post(api.url("/api/v1/deliveries"))
            .json(&schedule_body("no-such-account", 1.0)),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // A deadline at or before the pickup time is a rule of the delivery (SPEC §5).
    let mut body = schedule_body(&account, 1.0);
    body["pickupTime"] = json!("2030-01-01T12:00:00Z");
    body["deadline"] = json!("2030-01-01T12:00:00Z");
    let problem = refused(
        &api,
        c.post(api.url("/api/v1/deliveries")).json(&body),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("deadline")
    );

    let suspend = api
        .post(&format!("/api/v1/accounts/{account}/suspend"), json!({}))
        .await;
    assert_eq!(suspend.status(), StatusCode::OK);
    refused(
        &api,
        c.post(api.url("/api/v1/deliveries"))
            .json(&schedule_body(&account, 1.0)),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_are_413() {
    let (_dir, _server, api) = spawn_app();
    let huge = format!(
        "{{\"name\": \"{}\", \"email\": \"a@b.c\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    // Its own client, so the connection of the refused upload is not reused.
    let uploader = crate::helpers::client();
    refused(
        &api,
        uploader
            .post(api.url("/api/v1/accounts"))
            .header("content-type", "application/json")
            .body(huge),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
}

/// An event log whose appends fail while `broken` is set (a full disk, a lost broker).
#[tokio::test(flavor = "multi_thread")]
async fn a_telemetry_batch_naming_an_unknown_drone_is_refused_whole() {
    let (_dir, _server, api) = spawn_app();
    api.register_drone("known", 5.0).await;
    let reading = |drone: &str| json!({"droneId": drone, "position": location(47.0, -122.0), "batteryPct": 50, "at": "2026-11-24T12:00:00Z"});
    let problem = refused(
        &api,
        api.client
            .post(api.url("/api/v1/telemetry"))
            .json(&json!([reading("known"), reading("unknown")])),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("unknown")
    );
    refused(
        &api,
        api.client
            .post(api.url("/api/v1/telemetry"))
            .json(&json!([])),
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_after_pickup_is_409() {
    let (_dir, _server, api) = spawn_app();
    let (account, _) = api.register_account("Contoso").await;
    api.register_drone("d1", 5.0).await;
    let (delivery, _) = api.schedule(&account, 1.0).await;
    let assigned = api.assign(&delivery, "d1").await;
    assert_eq!(assigned.status(), StatusCode::OK);
    let picked = api
        .post(&format!("/api/v1/deliveries/{delivery}/pickup"), json!({}))
        .await;
    assert_eq!(picked.status(), StatusCode::OK);
    refused(
        &api,
        api.client
            .delete(api.url(&format!("/api/v1/deliveries/{delivery}"))),
        StatusCode::CONFLICT,
    )
    .await;
    refused(
        &api,
        api.client
            .patch(api.url(&format!("/api/v1/deliveries/{delivery}")))
            .json(&json!({"deadline": "2031-01-01T00:00:00Z"})),
        StatusCode::CONFLICT,
    )
    .await;
}
