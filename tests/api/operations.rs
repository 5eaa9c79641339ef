//! Operations endpoints and the API description.

use crate::helpers::spawn_app;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_answer() {
    let (_dir, _server, api) = spawn_app();
    assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
    api.ready().await;
    api.register_account("Contoso").await;
    let metrics = api.get("/metrics").await.text().await.expect("text");
    for name in [
        "commands_total{command=\"register-account\",outcome=\"accepted\"} 1",
        "event_append_latency_seconds_bucket",
        "projector_lag_events{projection=\"deliveries\"}",
        "workflow_queued_deliveries",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_every_route() {
    let (_dir, _server, api) = spawn_app();
    let (status, doc) = api.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let routes = [
        ("post", "/api/v1/accounts"),
        ("post", "/api/v1/accounts/{id}/suspend"),
        ("post", "/api/v1/accounts/{id}/reactivate"),
        ("post", "/api/v1/accounts/{id}/keys"),
        ("put", "/api/v1/drones/{id}"),
        ("post", "/api/v1/drones/{id}/telemetry"),
        ("post", "/api/v1/telemetry"),
        ("post", "/api/v1/drones/{id}/ground"),
        ("post", "/api/v1/drones/{id}/return"),
        ("post", "/api/v1/drones/{id}/dock"),
        ("post", "/api/v1/deliveries"),
        ("post", "/api/v1/deliveries/{id}/assign-drone"),
        ("post", "/api/v1/deliveries/{id}/unassign-drone"),
        ("post", "/api/v1/deliveries/{id}/fail"),
        ("get", "/api/v1/deliveries"),
        ("patch", "/api/v1/deliveries/{id}"),
        ("delete", "/api/v1/deliveries/{id}"),
        ("post", "/api/v1/deliveries/{id}/pickup"),
        ("post", "/api/v1/deliveries/{id}/confirmations"),
        ("post", "/api/v1/deliveries/{id}/notify-me"),
        ("get", "/api/v1/deliveries/{id}"),
        ("get", "/api/v1/deliveries/{id}/status"),
        ("get", "/api/v1/deliveries/{id}/events"),
        ("get", "/api/v1/deliveries/{id}/status/stream"),
        ("get", "/api/v1/drones/stream"),
        ("post", "/api/v1/stream-tokens"),
        ("get", "/api/v1/accounts/{id}/deliveries"),
        ("get", "/api/v1/accounts/{id}/invoice"),
        ("get", "/api/v1/drones/{id}"),
        ("get", "/api/v1/drones"),
        ("get", "/api/v1/dead-letters"),
        ("get", "/api/v1/notifications/failures"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
    ];
    for (method, path) in routes {
        let operation: &Value = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is described");
        assert!(
            operation["responses"].is_object(),
            "{method} {path} has responses"
        );
    }
}
