//! The simulator, black-box: `simulate` against a running server (automatic dispatch)
//! flies deliveries to completion by telemetry alone; bad input is a clear error, not a
//! panic; `serve --demo` flies its own fleet and stops with the server.

use crate::helpers::{Api, OPERATOR_KEY, Server, temp_dir};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `drone-delivery simulate --url base ARGS` to its end (the operator key from the
/// environment, as an operator's shell would have it).
pub(crate) async fn simulate(base: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drone-delivery"));
    command
        .env("DRONE_DELIVERY_OPERATOR_KEY", OPERATOR_KEY)
        .env("RUST_LOG", "warn")
        .args(["simulate", "--url", base])
        .args(args);
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .expect("joined")
}

/// The number just before `word` in the summary line (`…, 5 completed, …`).
fn count_before(summary: &str, word: &str) -> u64 {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap_or_else(|| panic!("no {word:?} in {summary:?}"));
    words[at - 1]
        .parse()
        .unwrap_or_else(|_| panic!("no count before {word:?} in {summary:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn simulated_drones_fly_deliveries_to_completion_on_automatic_dispatch() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::of(&server);
    api.ready().await;
    let started = Instant::now();
    let output = simulate(
        &server.base,
        &[
            "--drones",
            "3",
            "--rate",
            "2",
            "--speedup",
            "50",
            "--duration",
            "15s",
            "--seed",
            "11",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "bounded in time"
    );
    let summary = stdout.lines().last().expect("a summary line");
    assert!(summary.contains("3 drones"), "{summary}");
    let scheduled = count_before(summary, "deliveries");
    let completed = count_before(summary, "completed");
    assert_eq!(count_before(summary, "errors"), 0, "{summary}\n{stderr}");
    assert!(
        (20..=32).contains(&scheduled),
        "about 2 a second: {summary}"
    );
    assert!(completed >= 1, "{summary}");
    assert!(count_before(summary, "telemetry") > 0, "{summary}");

    // The server agrees: completed deliveries, each picked up and completed by the
    // workflow from the fleet's telemetry.
    let (status, body) = api.get_json("/api/v1/deliveries?stage=Completed").await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().expect("items");
    assert!(items.len() as u64 >= completed, "{body}");
    let delivery = items[0]["deliveryId"].as_str().expect("id");
    let (_, timeline) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}/events"))
        .await;
    let events = timeline["events"].as_array().expect("events");
    let by_workflow = |kind: &str| {
        events
            .iter()
            .any(|e| e["type"] == kind && e["principal"] == "workflow")
    };
    for kind in ["DroneAssigned", "DeliveryPickedUp", "DeliveryCompleted"] {
        assert!(by_workflow(kind), "{kind} by the workflow: {timeline}");
    }
    // The fleet it registered, and the drone that flew it among them.
    let (_, fleet) = api.get_json("/api/v1/drones").await;
    let drones: Vec<&str> = fleet["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["droneId"].as_str())
        .collect();
    assert_eq!(drones.len(), 3, "{fleet}");
    assert!(drones.iter().all(|id| id.starts_with("sim-")), "{fleet}");
    assert!(drones.contains(&items[0]["droneId"].as_str().expect("drone")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_a_bad_url_or_no_server_is_a_clear_error() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &[]);
    Api::of(&server).ready().await;
    let cases: [(&str, &[&str], &str); 4] = [
        (
            &server.base,
            &["--operator-key", "not-the-operator-key"],
            "refused the operator key (401)",
        ),
        (
            "localhost:8080",
            &[],
            "must be an http:// or https:// address",
        ),
        ("not a url", &[], "is not a URL"),
        ("http://127.0.0.1:1", &[], "cannot reach the server"),
    ];
    for (url, args, expected) in cases {
        let output = simulate(url, args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
    }
    let output = simulate(&server.base, &["--duration", "soon"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--duration"), "{stderr}");
}

/// The demo's drones as the fleet page shows them: id → (status, position).
async fn demo_fleet(api: &Api) -> Vec<(String, String, Value)> {
    let (_, fleet) = api.get_json("/api/v1/drones").await;
    fleet["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|d| {
                    d["droneId"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("demo-"))
                })
                .map(|d| {
                    (
                        d["droneId"].as_str().unwrap_or_default().to_owned(),
                        d["status"].as_str().unwrap_or_default().to_owned(),
                        d["position"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_demo_flies_a_fleet_at_once_and_stops_with_the_server() {
    let dir = temp_dir();
    let mut server = Server::start_with(dir.path(), &["--demo"]);
    let api = Api::of(&server);
    // A demo drone takes off with the first delivery and moves from report to report.
    let started = Instant::now();
    let mut first: Option<(String, Value)> = None;
    loop {
        let fleet = demo_fleet(&api).await;
        if let Some((id, position)) = &first {
            let now = fleet.iter().find(|(d, _, _)| d == id).map(|(_, _, p)| p);
            if now.is_some_and(|p| p != position) {
                break;
            }
        } else if let Some((id, _, position)) = fleet
            .iter()
            .find(|(_, _, p)| p["altitude"].as_f64().is_some_and(|a| a > 0.0))
        {
            assert_eq!(fleet.len(), 12, "{fleet:?}");
            first = Some((id.clone(), position.clone()));
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no demo drone flew: {fleet:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // SIGTERM: the server and the demo inside it stop, promptly.
    let stopping = tokio::task::spawn_blocking(move || server.stop());
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the server stops with its demo")
        .expect("joined");
}
