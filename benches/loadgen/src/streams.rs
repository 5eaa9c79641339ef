//! `--scenario streams`: many customers watching their deliveries live. It schedules
//! `--deliveries` deliveries, assigns each a drone of its own (the server must run with
//! `--dispatch manual`), opens `--streams` status streams spread over them with their
//! tracking tokens, then reports every drone's position once a second in telemetry
//! batches, and measures, for every stream, the time from a batch's acknowledgement to
//! the status event that carries its report (the event id names the report's time).
//! With `--spawn` it also reports the server's resident memory.

use crate::client::{Connection, Outcome, Target};
use crate::stats::histogram;
use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the run was told.
pub struct Plan {
    pub streams: usize,
    pub deliveries: usize,
    pub duration: Duration,
    /// Reports per telemetry batch; a second's batches are spread over the second, as
    /// drones report each at its own moment (all in one batch: the worst burst).
    pub batch: usize,
    /// The server's process, for its memory.
    pub server_pid: Option<u32>,
}

/// When each report's batch was acknowledged, by the report's time (µs).
type Acked = Arc<Mutex<HashMap<i64, Instant>>>;

async fn call(
    c: &mut Connection,
    method: Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    match c
        .send(method, path, Some(Bytes::from(body.to_string())))
        .await
    {
        Outcome::Status(status, body) if status.is_success() => {
            Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
        }
        Outcome::Status(status, body) => Err(anyhow!(
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        )),
        _ => Err(anyhow!("{path}: no answer")),
    }
}

fn location(i: usize) -> Value {
    let (row, col) = ((i / 100) as f64, (i % 100) as f64);
    json!({"latitude": 47.55 + row * 0.001, "longitude": -122.40 + col * 0.001, "altitude": 0})
}

/// Deliveries, each with its drone, and their tracking tokens.
async fn set_up(
    target: &Target,
    deliveries: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut operator = Connection::new(target.clone());
    let account = call(
        &mut operator,
        Method::POST,
        "/api/v1/accounts",
        json!({"name": "Streams", "email": "streams@example.com"}),
    )
    .await?;
    let owner = account["accountId"]
        .as_str()
        .context("accountId")?
        .to_owned();
    let key = account["apiKey"].as_str().context("apiKey")?.to_owned();
    let mut tenant = Connection::new(target.clone().with_key(Some(key)));
    let mut tracked = Vec::with_capacity(deliveries);
    for i in 0..deliveries {
        let drone = format!("stream-drone-{i}");
        call(
            &mut operator,
            Method::PUT,
            &format!("/api/v1/drones/{drone}"),
            json!({"model": "X8", "payloadKg": 5, "rangeKm": 60, "speedMps": 15, "home": location(i)}),
        )
        .await?;
        let scheduled = call(
            &mut tenant,
            Method::POST,
            "/api/v1/deliveries",
            json!({"ownerId": owner, "pickup": location(i + 1), "dropoff": location(i + 2),
                   "expedited": false, "confirmationRequired": "None",
                   "packageInfo": {"size": "small", "weight": 1.0}}),
        )
        .await?;
        let id = scheduled["deliveryId"]
            .as_str()
            .context("deliveryId")?
            .to_owned();
        let url = scheduled["trackingUrl"].as_str().context("trackingUrl")?;
        let token = url.split_once("?t=").context("a token")?.1.to_owned();
        call(
            &mut operator,
            Method::POST,
            &format!("/api/v1/deliveries/{id}/assign-drone"),
            json!({"droneId": drone}),
        )
        .await
        .context("assign-drone (run the server with --dispatch manual)")?;
        tracked.push((id, token, drone));
    }
    Ok(tracked)
}

/// One stream: sends the latency of every report it sees.
async fn watch(
    authority: String,
    path: String,
    acked: Acked,
    latencies: mpsc::UnboundedSender<Duration>,
    opened: mpsc::UnboundedSender<()>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(&authority).await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        return Err(anyhow!("stream: {}", response.status()));
    }
    let _ = opened.send(());
    let mut body = response.into_body();
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            // `id:<version>.<report µs>` of a status event.
            let report = event
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .and_then(|id| id.split_once('.'))
                .and_then(|(_, at)| at.trim().parse::<i64>().ok())
                .filter(|at| *at > 0 && event.contains("event:status"));
            if let Some(at) = report {
                let acked_at = acked.lock().map(|a| a.get(&at).copied()).ok().flatten();
                // Seen before its acknowledgement came back: no wait at all.
                let latency = acked_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let _ = latencies.send(latency);
            }
        }
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub async fn run(target: Target, plan: Plan) -> anyhow::Result<()> {
    // Streams that broke while measuring (the server stopping afterwards breaks them all).
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let deliveries = plan.deliveries.clamp(1, plan.streams.max(1));
    eprintln!("setting up {deliveries} deliveries, each with its drone");
    let tracked = set_up(&target, deliveries).await?;
    let rss_before = plan.server_pid.and_then(rss_kib);
    let acked: Acked = Arc::new(Mutex::new(HashMap::new()));
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel();
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    eprintln!("opening {} streams", plan.streams);
    let started = Instant::now();
    for i in 0..plan.streams {
        let (id, token, _) = &tracked[i % tracked.len()];
        let path = format!("/api/v1/deliveries/{id}/status/stream?t={token}");
        let (authority, acked, latency_tx, opened_tx) = (
            target.authority.clone(),
            acked.clone(),
            latency_tx.clone(),
            opened_tx.clone(),
        );
        let (failed, measuring) = (failed.clone(), measuring.clone());
        tokio::spawn(async move {
            if let Err(error) = watch(authority, path, acked, latency_tx, opened_tx).await
                && measuring.load(std::sync::atomic::Ordering::Relaxed)
                && failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5
            {
                eprintln!("a stream failed: {error:#}");
            }
        });
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(opened_tx);
    let mut open = 0;
    while open < plan.streams {
        match tokio::time::timeout(Duration::from_secs(30), opened_rx.recv()).await {
            Ok(Some(())) => open += 1,
            _ => break,
        }
    }
    eprintln!(
        "{open} streams open after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rss_open = plan.server_pid.and_then(rss_kib);

    // A report for every drone once a second, in batches spread over the second.
    let mut operator = Connection::new(target.clone());
    let deadline = Instant::now() + plan.duration;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reports = 0u64;
    let mut step = 0.0;
    while Instant::now() < deadline {
        let second = tick.tick().await;
        step += 1.0;
        let chunks = tracked.len().div_ceil(plan.batch.max(1));
        for (n, chunk) in tracked.chunks(plan.batch.max(1)).enumerate() {
            tokio::time::sleep_until(second + Duration::from_secs(1) * n as u32 / chunks as u32)
                .await;
            // Each batch's reports share one time, unique to the batch.
            let at = chrono::Utc::now();
            let batch: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, _, drone))| {
                    json!({"droneId": drone, "at": at, "batteryPct": 90.0 - step * 0.1,
                           "position": {"latitude": 47.55 + (i as f64) * 0.0001 + step * 0.0002,
                                        "longitude": -122.40, "altitude": 60}})
                })
                .collect();
            call(
                &mut operator,
                Method::POST,
                "/api/v1/telemetry",
                json!(batch),
            )
            .await?;
            if let Ok(mut acked) = acked.lock() {
                acked.insert(at.timestamp_micros(), Instant::now());
            }
            reports += chunk.len() as u64;
        }
    }
    // The last updates on their way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_end = plan.server_pid.and_then(rss_kib);
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = histogram(3);
    while let Ok(latency) = latency_rx.try_recv() {
        let _ = latencies.record((latency.as_micros() as u64).max(1));
    }
    let expected = reports * (plan.streams / tracked.len()) as u64;
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "streams: {open} open on {} deliveries, {} broke; {reports} reports sent, {} updates received (of ~{expected}); \
         latency from telemetry ack: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        tracked.len(),
        failed.load(std::sync::atomic::Ordering::Relaxed),
        latencies.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        latencies.max() as f64 / 1000.0
    );
    if let (Some(before), Some(open), Some(end)) = (rss_before, rss_open, rss_end) {
        println!(
            "server RSS: {:.0} MiB before the streams, {:.0} MiB with them open, {:.0} MiB at the end ({:.1} KiB per stream)",
            before as f64 / 1024.0,
            open as f64 / 1024.0,
            end as f64 / 1024.0,
            (end.saturating_sub(before)) as f64 / plan.streams.max(1) as f64
        );
    }
    Ok(())
}
