//! API keys and tenants (SPEC §5): no key or a bad one is 401 with a challenge; an
//! account key acts on its own account only; another tenant's resources do not exist for
//! it; an analyst reads everything and changes nothing; every event names its principal.

use crate::helpers::{
    Api, OPERATOR_KEY, Server, drone_spec, location, schedule_body, spawn_app, temp_dir,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ANALYST_KEY: &str = "test-analyst-key-0123456789";

fn telemetry() -> Value {
    json!({"position": location(47.605, -122.32), "batteryPct": 90, "at": chrono::Utc::now()})
}

async fn send(api: &Api, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = api.client.request(method, api.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("sent")
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_valid_key_every_route_but_the_probes_is_401_and_nothing_is_written() {
    let (_dir, _server, operator) = spawn_app();
    operator.ready().await;
    let (account, _) = operator.register_account("Contoso").await;
    let before = operator.events_appended().await;

    let anonymous = Api {
        base: operator.base.clone(),
        client: reqwest::Client::new(),
    };
    let strangers = [
        ("none", anonymous.clone()),
        (
            "unknown",
            operator.with_key("dd_acct_not-a-key-anyone-was-given"),
        ),
    ];
    for (who, api) in &strangers {
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/accounts".to_string(),
                Some(json!({"name": "X", "email": "x@x.example"})),
            ),
            (
                Method::POST,
                "/api/v1/deliveries".into(),
                Some(schedule_body(&account, 1.0)),
            ),
            (
                Method::GET,
                format!("/api/v1/accounts/{account}/deliveries"),
                None,
            ),
            (Method::GET, "/api/v1/drones".into(), None),
            (Method::GET, "/metrics".into(), None),
            (Method::GET, "/api/v1/openapi.json".into(), None),
            (Method::GET, "/no/such/route".into(), None),
        ] {
            let response = send(api, method.clone(), &path, body).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{who}: {method} {path}"
            );
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            assert!(
                challenge.starts_with("Bearer"),
                "{who}: {method} {path}: {challenge}"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
    }
    // A header that is not a bearer token.
    let response = anonymous
        .client
        .get(anonymous.url("/api/v1/drones"))
        .header("authorization", format!("Basic {OPERATOR_KEY}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The probes need no key.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(anonymous.get(path).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(operator.events_appended().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_key_schedules_and_reads_its_own_and_a_rotated_key_replaces_it() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let operator = Api::of(&server);
    let (account, registered, key) = operator.register_tenant("Contoso").await;
    assert!(key.starts_with("dd_acct_"), "{key}");
    let tenant = operator.with_key(&key);

    // Its own deliveries: scheduled, read, cancelled.
    let (delivery, scheduled) = tenant.schedule(&account, 1.0).await;
    // The history reads two read models: the account's and its deliveries'.
    let token = format!("{registered},{scheduled}");
    let (status, body) = tenant
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, history) = tenant
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history["items"][0]["deliveryId"], delivery.as_str());

    // Fleet and accounts are the operator's.
    let before = operator.events_appended().await;
    let refused = [
        (
            Method::POST,
            "/api/v1/accounts".to_string(),
            json!({"name": "Y", "email": "y@y.example"}),
        ),
        (Method::PUT, "/api/v1/drones/mine".into(), drone_spec(5.0)),
        (
            Method::POST,
            format!("/api/v1/accounts/{account}/suspend"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/deliveries/{delivery}/assign-drone"),
            json!({"droneId": "d1"}),
        ),
    ];
    for (method, path, body) in refused {
        let response = send(&tenant, method.clone(), &path, Some(body)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(operator.events_appended().await, before);

    // Rotation by the account itself: the old key stops working at once.
    let response = send(
        &tenant,
        Method::POST,
        &format!("/api/v1/accounts/{account}/keys"),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    let rotated = body["apiKey"].as_str().expect("a new key").to_string();
    assert_ne!(rotated, key);
    assert_eq!(
        tenant
            .get(&format!("/api/v1/deliveries/{delivery}"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let tenant = operator.with_key(&rotated);
    assert_eq!(
        tenant
            .get(&format!("/api/v1/deliveries/{delivery}"))
            .await
            .status(),
        StatusCode::OK
    );
    // And by the operator; the key survives a restart (it is an event, not memory).
    let response = send(
        &operator,
        Method::POST,
        &format!("/api/v1/accounts/{account}/keys"),
        None,
    )
    .await;
    let body: Value = response.json().await.expect("json");
    let third = body["apiKey"].as_str().expect("a new key").to_string();
    drop(server);
    let server = Server::start(dir.path());
    let tenant = Api::of(&server).with_key(&third);
    tenant.ready().await;
    assert_eq!(
        tenant
            .get(&format!("/api/v1/deliveries/{delivery}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        Api::of(&server)
            .with_key(&rotated)
            .get(&format!("/api/v1/deliveries/{delivery}"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

/// What tenant B sends to each route of the OpenAPI document, aimed at tenant A's
/// resources, with a valid body so that only tenancy can refuse it.
fn aimed_at(
    method: &str,
    route: &str,
    account: &str,
    delivery: &str,
    drone: &str,
) -> (String, Option<Value>) {
    let path = route
        .replace("/accounts/{id}", &format!("/accounts/{account}"))
        .replace("/deliveries/{id}", &format!("/deliveries/{delivery}"))
        .replace("/drones/{id}", &format!("/drones/{drone}"));
    let body = match (method, route) {
        ("get", "/api/v1/deliveries") => return (format!("{path}?stage=Created"), None),
        ("get", "/api/v1/accounts/{id}/invoice") => {
            return (format!("{path}?year=2030&month=1"), None);
        }
        ("get", _) => None,
        ("post", "/api/v1/accounts") => Some(json!({"name": "B2", "email": "b2@b.example"})),
        ("put", "/api/v1/drones/{id}") => Some(drone_spec(5.0)),
        ("post", "/api/v1/drones/{id}/telemetry") => Some(telemetry()),
        ("post", "/api/v1/telemetry") => {
            let mut reading = telemetry();
            reading["droneId"] = json!(drone);
            Some(json!([reading]))
        }
        ("post", "/api/v1/deliveries") => Some(schedule_body(account, 1.0)),
        ("post", "/api/v1/deliveries/{id}/assign-drone") => Some(json!({"droneId": drone})),
        ("post", "/api/v1/deliveries/{id}/unassign-drone" | "/api/v1/deliveries/{id}/fail") => {
            Some(json!({"reason": "mine now"}))
        }
        ("post", "/api/v1/deliveries/{id}/confirmations") => Some(json!({
            "confirmationType": "None",
            "location": location(47.65, -122.30),
            "at": chrono::Utc::now(),
        })),
        ("post", "/api/v1/deliveries/{id}/notify-me") => Some(json!({"email": "b@b.example"})),
        ("patch", "/api/v1/deliveries/{id}") => Some(json!({"deadline": "2031-01-01T00:00:00Z"})),
        ("post" | "delete", _) => Some(json!({})),
        other => panic!("no request for {other:?}: add one for the new route"),
    };
    (path, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_tenant_gets_nothing_of_the_first_on_any_route() {
    let (_dir, _server, operator) = spawn_app();
    let (a, _, a_key) = operator.register_tenant("Contoso-A").await;
    let (_b, _, b_key) = operator.register_tenant("Fabrikam-B").await;
    operator.register_drone("drone-a", 5.0).await;
    let tenant_a = operator.with_key(&a_key);
    let (delivery, token) = tenant_a.schedule(&a, 1.0).await;
    let (_, seen) = operator
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}?consistencyToken={token}"
        ))
        .await;
    let before = operator.events_appended().await;

    let b = operator.with_key(&b_key);
    let (_, doc) = operator.get_json("/api/v1/openapi.json").await;
    let mut walked = 0;
    for (route, item) in doc["paths"].as_object().expect("paths") {
        if ["/healthz", "/readyz", "/api/v1/openapi.json"].contains(&route.as_str()) {
            continue;
        }
        for method in item.as_object().expect("operations").keys() {
            let (path, body) = aimed_at(method, route, &a, &delivery, "drone-a");
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let response = send(&b, verb, &path, body).await;
            let status = response.status();
            let text = response.text().await.expect("body");
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                "{method} {path}: {status} {text}"
            );
            assert!(
                !text.contains("Contoso-A") && !text.contains("books"),
                "{method} {path}: {text}"
            );
            walked += 1;
        }
    }
    assert!(walked >= 25, "walked {walked} operations");
    assert_eq!(
        operator.events_appended().await,
        before,
        "nothing was written"
    );
    let (_, now) = operator
        .get_json(&format!("/api/v1/deliveries/{delivery}"))
        .await;
    assert_eq!(now, seen, "A's delivery is as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_analyst_reads_every_tenant_and_changes_nothing() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &["--dispatch", "manual", "--analyst-key", ANALYST_KEY],
    );
    let operator = Api::of(&server);
    let (account, registered, key) = operator.register_tenant("Contoso").await;
    operator.register_drone("d1", 5.0).await;
    let (delivery, scheduled) = operator.with_key(&key).schedule(&account, 1.0).await;
    let token = format!("{registered},{scheduled}");
    let analyst = operator.with_key(ANALYST_KEY);
    for path in [
        format!("/api/v1/deliveries/{delivery}?consistencyToken={token}"),
        format!("/api/v1/deliveries/{delivery}/events"),
        format!("/api/v1/accounts/{account}/deliveries?consistencyToken={token}"),
        "/api/v1/deliveries?stage=Created".into(),
        "/api/v1/drones".into(),
        "/metrics".into(),
    ] {
        assert_eq!(analyst.get(&path).await.status(), StatusCode::OK, "{path}");
    }
    let before = operator.events_appended().await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/deliveries".to_string(),
            schedule_body(&account, 1.0),
        ),
        (
            Method::DELETE,
            format!("/api/v1/deliveries/{delivery}"),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v1/drones/d1/ground".to_string(),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{account}/keys"),
            json!({}),
        ),
    ] {
        let response = send(&analyst, method.clone(), &path, Some(body)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(operator.events_appended().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_names_the_principal_that_caused_it() {
    let (_dir, _server, operator) = spawn_app();
    let (account, _, key) = operator.register_tenant("Contoso").await;
    operator.register_drone("d1", 5.0).await;
    let (delivery, _) = operator.with_key(&key).schedule(&account, 1.0).await;
    let response = operator.assign(&delivery, "d1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let token = body["consistencyToken"].as_str().expect("token");
    let (_, timeline) = operator
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}/events?consistencyToken={token}"
        ))
        .await;
    let principals: Vec<(&str, &str)> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["principal"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let tenant = format!("account:{account}");
    assert_eq!(
        principals,
        [
            ("DeliveryCreated", tenant.as_str()),
            ("DroneAssigned", "operator")
        ]
    );
}
