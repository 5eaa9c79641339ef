//! Speed of the write path on the embedded default, and the limits beneath it.
//!
//! * `limits/serial_fdatasync`: one 200-byte write + `fdatasync` per event: what a log
//!   without group commit could do at best on this disk.
//! * `limits/fjall_batched_writes`: the raw engine, 1000 records per batch + one fsync.
//! * `event_log/...`: `EventLog::append` of the embedded adapter, single-record appends
//!   from many concurrent appenders sharing fsyncs (group commit).
//! * `http/...`: one HTTP client issuing durable commands one at a time.
//!
//! Run with `cargo bench --bench throughput`; numbers are in BENCHMARKS.md.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drone_delivery::{App, Settings};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{EventLog, NewRecord, TopicSpec};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};

const VALUE_BYTES: usize = 200;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));

    let dir = tempfile::tempdir().expect("dir");
    let mut file = std::fs::File::create(dir.path().join("fsync.bin")).expect("file");
    let value = [7u8; VALUE_BYTES];
    group.throughput(Throughput::Elements(1));
    group.bench_function("serial_fdatasync", |b| {
        b.iter(|| {
            file.write_all(&value).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });

    let db = fjall::Database::builder(dir.path().join("fjall"))
        .open()
        .expect("fjall");
    let keyspace = db
        .keyspace("records", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let mut next: u64 = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("fjall_serial_durable_writes/1_per_fsync", |b| {
        b.iter(|| {
            next += 1;
            let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncData));
            batch.insert(&keyspace, next.to_be_bytes(), value);
            batch.commit().expect("commit");
        })
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("fjall_batched_writes/1000_per_fsync", |b| {
        b.iter(|| {
            let mut batch = db.batch();
            for _ in 0..1000 {
                next += 1;
                batch.insert(&keyspace, next.to_be_bytes(), value);
            }
            batch.commit().expect("commit");
            db.persist(fjall::PersistMode::SyncData).expect("fsync");
        })
    });
    group.finish();
}

fn event_log(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    rt.block_on(log.create_topics(&[TopicSpec {
        name: "bench".into(),
        partitions: 16,
    }]))
    .expect("topic");
    let value = Bytes::from(vec![7u8; VALUE_BYTES]);

    let mut group = c.benchmark_group("event_log");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    for appenders in [1usize, 64, 1024] {
        group.bench_function(format!("durable_appends/{appenders}_appenders"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (log, value) = (log.clone(), value.clone());
                async move {
                    let per_task = (iters as usize).div_ceil(appenders);
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|t| {
                            let (log, value) = (log.clone(), value.clone());
                            tokio::spawn(async move {
                                for i in 0..per_task {
                                    let record = NewRecord {
                                        topic: "bench".into(),
                                        key: format!("aggregate-{t}-{}", i % 8),
                                        value: value.clone(),
                                        headers: Vec::new(),
                                    };
                                    log.append(vec![record]).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("task");
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

fn http_commands(c: &mut Criterion) {
    // The server runs on its own runtime, the client on another, as two processes would.
    let server = runtime();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let dir = tempfile::tempdir().expect("dir");
    let app = server.block_on(async {
        let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("log"));
        let store = Arc::new(EmbeddedReadStore::open(&dir.path().join("views")).expect("store"));
        let settings = Settings::new("127.0.0.1:0".parse().expect("addr"), dir.path().into());
        App::start_with(settings, log, Some(store))
            .await
            .expect("app")
    });
    let base = format!("http://{}/api/v1", app.addr);
    let client = reqwest::Client::new();
    rt.block_on(async {
        let spec = json!({"model": "X8", "payloadKg": 5, "rangeKm": 60, "speedMps": 15,
            "home": {"latitude": 47.6, "longitude": -122.3, "altitude": 0}});
        let r = client
            .put(format!("{base}/drones/bench-drone"))
            .json(&spec)
            .send()
            .await
            .expect("register");
        assert!(r.status().is_success());
    });

    let mut group = c.benchmark_group("http");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    let account = json!({"name": "Contoso", "email": "ops@contoso.example"});
    group.bench_function("one_client_sequential/register_account", |b| {
        b.to_async(&rt).iter(|| async {
            let r = client
                .post(format!("{base}/accounts"))
                .json(&account)
                .send()
                .await
                .expect("sent");
            assert_eq!(r.status(), 201);
        })
    });
    let reading = json!({"position": {"latitude": 47.61, "longitude": -122.31, "altitude": 80},
        "batteryPct": 80, "at": "2026-11-24T12:00:00Z"});
    group.bench_function("one_client_sequential/drone_telemetry", |b| {
        b.to_async(&rt).iter(|| async {
            let r = client
                .post(format!("{base}/drones/bench-drone/telemetry"))
                .json(&reading)
                .send()
                .await
                .expect("sent");
            assert_eq!(r.status(), 202);
        })
    });
    group.finish();
    server.block_on(app.stop());
}

criterion_group!(benches, limits, event_log, http_commands);
criterion_main!(benches);
