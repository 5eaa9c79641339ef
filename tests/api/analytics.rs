//! `drone-delivery analytics` on a stopped data directory: what an HTTP workload did,
//! read back from the log (the fold's known-answer test is `analytics/tests`).

use crate::helpers::{Api, OPERATOR_KEY, Server, location, temp_dir};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;

fn analytics(dir: &std::path::Path, format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
        .args(["analytics", "--data-dir"])
        .arg(dir)
        .args(["--format", format])
        .env("DRONE_DELIVERY_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .expect("analytics runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_reports_what_the_workload_did() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let api = Api::of(&server);
    let (account, _) = api.register_account("Contoso").await;
    api.register_drone("drone-1", 5.0).await;
    api.register_drone("drone-2", 5.0).await;
    let mut scheduled = Vec::new();
    for _ in 0..3 {
        scheduled.push(api.schedule(&account, 1.0).await.0);
    }
    // One delivered by drone-1, one cancelled, one still waiting.
    assert_eq!(
        api.assign(&scheduled[0], "drone-1").await.status(),
        StatusCode::OK
    );
    let picked = api
        .post(
            &format!("/api/v1/deliveries/{}/pickup", scheduled[0]),
            json!({}),
        )
        .await;
    assert_eq!(picked.status(), StatusCode::OK);
    let done = api
        .post(
            &format!("/api/v1/deliveries/{}/confirmations", scheduled[0]),
            json!({"confirmationType": "None", "location": location(47.65, -122.30), "at": Utc::now()}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let cancelled = api
        .client
        .delete(api.url(&format!("/api/v1/deliveries/{}", scheduled[1])))
        .send()
        .await
        .expect("sent");
    assert!(cancelled.status().is_success(), "{}", cancelled.status());

    // The embedded log is the server's while it runs.
    let busy = analytics(dir.path(), "json");
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("stop the server"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    server.stop();

    let out = analytics(dir.path(), "json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        report["deliveries"],
        json!({"scheduled": 3, "completed": 1, "cancelled": 1, "failed": 0, "inProgress": 1})
    );
    assert_eq!(report["toAssignment"]["count"], 1);
    assert_eq!(report["toDelivery"]["count"], 1);
    assert_eq!(report["fleet"]["drones"], 2);
    let drone_1 = report["drones"]
        .as_array()
        .expect("drones")
        .iter()
        .find(|d| d["droneId"] == "drone-1")
        .expect("drone-1");
    assert!(drone_1["kmFlown"].as_f64().expect("km") > 0.0);
    assert_eq!(report["accounts"][0]["accountId"], account.as_str());
    assert_eq!(report["accounts"][0]["scheduled"], 3);

    let table = analytics(dir.path(), "table");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("3 scheduled, 1 completed, 1 cancelled, 0 failed, 1 in progress"),
        "{table}"
    );
    let csv = analytics(dir.path(), "csv");
    assert!(String::from_utf8_lossy(&csv.stdout).contains("deliveries,,completed,1"));
    let chart = dir.path().join("history.svg");
    let drawn = Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
        .args(["analytics", "--data-dir"])
        .arg(dir.path())
        .arg("--chart")
        .arg(&chart)
        .output()
        .expect("analytics runs");
    assert!(
        drawn.status.success(),
        "{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    let svg = std::fs::read_to_string(&chart).expect("the chart is written");
    assert!(svg.contains("Deliveries per day"));
}
