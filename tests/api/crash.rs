//! A crash loses no acknowledged command, and the read models a crashed process left
//! equal the ones rebuilt from its log alone.

use crate::helpers::{Api, Server, temp_dir};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Waits until every projection of the server has applied the whole log.
pub(crate) async fn settled(api: &Api) {
    let started = Instant::now();
    loop {
        let text = api.get("/metrics").await.text().await.expect("metrics");
        let lags: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("projector_lag_events"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if lags.len() == read_model::models::ALL.len() && lags.iter().all(|l| *l == 0.0) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "projectors settle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every read model a client can see, keyed by the path that served it.
pub(crate) async fn snapshot(
    api: &Api,
    account: &str,
    deliveries: &[String],
) -> BTreeMap<String, Value> {
    let mut paths = vec![
        format!("/api/v1/accounts/{account}/deliveries?limit=500"),
        "/api/v1/drones?limit=500".to_string(),
        "/api/v1/deliveries?stage=HeadedToPickup&limit=500".to_string(),
    ];
    let now = chrono::Utc::now();
    use chrono::Datelike;
    paths.push(format!(
        "/api/v1/accounts/{account}/invoice?year={}&month={}",
        now.year(),
        now.month()
    ));
    for d in deliveries {
        paths.push(format!("/api/v1/deliveries/{d}"));
        paths.push(format!("/api/v1/deliveries/{d}/events"));
    }
    let mut all = BTreeMap::new();
    for path in paths {
        let (status, body) = api.get_json(&path).await;
        all.insert(
            path,
            serde_json::json!({"status": status.as_u16(), "body": body}),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_burst_loses_no_acknowledged_command() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let api = Api::of(&server);
    let (account, _) = api.register_account("Contoso").await;
    for i in 0..4 {
        api.register_drone(&format!("d{i}"), 5.0).await;
    }

    // Workers schedule deliveries and move some of them on; every 2xx is remembered
    // with the version it acknowledged.
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (api, account, acked) = (api.clone(), account.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = crate::helpers::schedule_body(&account, 1.0);
                let Ok(r) = api
                    .client
                    .post(api.url("/api/v1/deliveries"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return; // the server is gone
                };
                if r.status() != StatusCode::ACCEPTED {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let id = v["deliveryId"].as_str().expect("id").to_string();
                acked.lock().expect("lock").insert(id.clone(), 1);
                let next = match (w + i) % 3 {
                    0 => api
                        .client
                        .delete(api.url(&format!("/api/v1/deliveries/{id}"))),
                    1 => api
                        .client
                        .post(api.url(&format!("/api/v1/deliveries/{id}/notify-me")))
                        .json(&serde_json::json!({"email": "a@b.example"})),
                    _ => continue,
                };
                let Ok(r) = next.send().await else { return };
                if r.status() == StatusCode::OK {
                    let Ok(v) = r.json::<Value>().await else {
                        return;
                    };
                    acked
                        .lock()
                        .expect("lock")
                        .insert(id, v["version"].as_u64().expect("v"));
                }
            }
        }));
    }
    while acked.lock().expect("lock").len() < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for worker in workers {
        worker.await.expect("worker");
    }
    let acked = acked.lock().expect("lock").clone();

    // Restarted on the same directory: every acknowledged version is there.
    let mut server = Server::start(dir.path());
    let api = Api::of(&server);
    for (id, version) in &acked {
        let (status, view) = api
            .get_json(&format!("/api/v1/deliveries/{id}?minVersion={version}"))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged delivery {id} survived"
        );
        assert!(view["version"].as_u64().expect("version") >= *version);
    }
    settled(&api).await;
    let ids: Vec<String> = acked.keys().cloned().collect();
    let live = snapshot(&api, &account, &ids).await;
    server.stop();

    // The same log alone, projected from scratch, gives the same read models.
    let rebuilt_dir = temp_dir();
    copy_dir(&dir.path().join("log"), &rebuilt_dir.path().join("log"));
    let rebuilt = Server::start(rebuilt_dir.path());
    let rebuilt_api = Api::of(&rebuilt);
    settled(&rebuilt_api).await;
    let from_log = snapshot(&rebuilt_api, &account, &ids).await;
    assert_eq!(live.len(), from_log.len());
    for (path, body) in &live {
        assert_eq!(Some(body), from_log.get(path), "{path} equals its rebuild");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_directory_fails_fast() {
    let dir = temp_dir();
    let _first = Server::start(dir.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use") || stderr.contains("locked"),
        "a clear message: {stderr}"
    );
}
