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

/// The workflow's settings of the recorded run: the simulator's drones take off, land and
/// load at once, and are ready again as soon as they dock.
const FLIGHT: [&str; 10] = [
    "--takeoff-secs",
    "0",
    "--landing-secs",
    "0",
    "--handling-secs",
    "0",
    "--ready-pct",
    "10",
    "--charge-pct-per-minute",
    "100",
];

fn what_if(dir: &std::path::Path, changes: &str, format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
        .args(["analytics", "--data-dir"])
        .arg(dir)
        .args(["--what-if", changes, "--format", format])
        .args(FLIGHT)
        .env("DRONE_DELIVERY_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .expect("analytics runs")
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn what_if_re_dispatches_a_flown_history_and_the_recorded_settings_reproduce_it() {
    let dir = temp_dir();
    let mut server = Server::start_with(dir.path(), &FLIGHT);
    Api::of(&server).ready().await;
    // One drone, so each delivery's route (home, pickup, drop-off, home) is the same
    // whatever the order it is flown in.
    let flown = crate::simulate::simulate(
        &server.base,
        &[
            "--drones",
            "1",
            "--rate",
            "2",
            "--speedup",
            "100",
            "--deliveries",
            "3",
            "--charge-pct-per-minute",
            "100",
            "--duration",
            "90s",
            "--seed",
            "5",
        ],
    )
    .await;
    assert!(
        flown.status.success(),
        "{}",
        String::from_utf8_lossy(&flown.stderr)
    );
    server.stop();

    let first = what_if(dir.path(), "fleet=1", "json");
    let report = json_of(&first);
    // Deterministic: the same history and settings, the same report.
    assert_eq!(first.stdout, what_if(dir.path(), "fleet=1", "json").stdout);
    let (recorded, replayed) = (&report["recorded"], &report["replayed"]);
    assert_eq!(recorded["deliveries"]["completed"], 3, "{report:#}");
    assert_eq!(replayed["deliveries"], recorded["deliveries"], "{report:#}");
    assert_eq!(replayed["droneKm"], recorded["droneKm"], "{report:#}");
    assert_eq!(
        report["whatIf"], report["replayed"],
        "one drone is the fleet"
    );
    // Speeds as flown: the simulator flew at 100 times the registered 15 m/s (its
    // reports' stamps carry the jitter of its ticks).
    let speed = report["asFlown"]["medianSpeedMps"].as_f64().expect("speed");
    assert!((1200.0..=1800.0).contains(&speed), "{report:#}");
    // The recorded times carry the simulator's and the workflow's reaction to each
    // report (up to a second each way); the replay flies the same legs.
    let mean = |o: &Value| o["toDelivery"]["meanSecs"].as_f64().expect("a mean");
    assert!((mean(replayed) - mean(recorded)).abs() <= 5.0, "{report:#}");

    // No trip keeps a 99 % reserve: every delivery fails, nothing is flown.
    let strict = json_of(&what_if(dir.path(), "battery-reserve=99", "json"));
    assert_eq!(strict["whatIf"]["deliveries"]["failed"], 3, "{strict:#}");
    assert_eq!(strict["whatIf"]["droneKm"], 0.0);
    assert_eq!(strict["replayed"], report["replayed"]);
    // A second drone (a copy of the first, at its home) takes the waiting ones.
    let two = json_of(&what_if(dir.path(), "fleet=2", "json"));
    assert_eq!(two["whatIf"]["drones"], 2);
    assert_eq!(two["whatIf"]["deliveries"]["completed"], 3, "{two:#}");
    let to_pickup = |o: &Value| o["toPickup"]["meanSecs"].as_f64().expect("a mean");
    assert!(
        to_pickup(&two["whatIf"]) <= to_pickup(&two["replayed"]),
        "{two:#}"
    );

    let table = what_if(dir.path(), "fleet=2", "table");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("recorded"), "{table}");
    assert!(table.contains("what-if fleet=2"), "{table}");
    let csv = what_if(dir.path(), "expedited-first=off", "csv");
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.starts_with("metric,recorded,replayed,whatIf\n"),
        "{csv}"
    );
    assert!(csv.contains("\ncompleted,3,3,3\n"), "{csv}");

    // A bad setting is a clear error, and nothing is read.
    for (bad, says) in [
        ("fleet=0", "fleet is a number of drones"),
        ("reserve=10", "unknown setting \"reserve\""),
        ("fleet=2,fleet=3", "fleet is given twice"),
        ("expedited-first=maybe", "on or off"),
        ("battery-reserve=100", "below 100"),
    ] {
        let out = what_if(dir.path(), bad, "json");
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}
