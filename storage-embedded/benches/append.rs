//! Append throughput of the embedded log: a lone appender (one fsync per append) and
//! many concurrent appenders sharing fsyncs through the writer's group commit.
//! Values are 200 bytes, about the size of an Avro-encoded event.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{EventLog, NewRecord, TopicSpec};
use storage_embedded::EmbeddedLog;

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 8;
/// Records per measured iteration: enough that starting and draining the appenders
/// is a small part of it. Divisible by every `appenders × batch` below.
const RECORDS_PER_ITERATION: usize = 20_480;

fn records(task: usize, n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            topic: TOPIC.to_owned(),
            key: format!("aggregate-{task}-{}", i % 4),
            value: Bytes::from(vec![b'x'; 200]),
            headers: Vec::new(),
        })
        .collect()
}

/// Appends `total` records from `appenders` concurrent tasks, `batch` records per append.
async fn run(log: &Arc<EmbeddedLog>, total: usize, appenders: usize, batch: usize) -> Duration {
    let appends_per_task = total / (appenders * batch);
    let started = Instant::now();
    let handles: Vec<_> = (0..appenders)
        .map(|task| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                for _ in 0..appends_per_task {
                    log.append(records(task, batch)).await.expect("append");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    started.elapsed()
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("open"));
    runtime
        .block_on(log.create_topics(&[TopicSpec {
            name: TOPIC.to_owned(),
            partitions: PARTITIONS,
        }]))
        .expect("create topic");

    let mut group = c.benchmark_group("embedded_log_append");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    // A lone appender: the latency of one durable append.
    group.throughput(Throughput::Elements(1));
    group.bench_function("lone_appender", |b| {
        b.to_async(&runtime)
            .iter(|| async { log.append(records(0, 1)).await.expect("append") });
    });

    group.throughput(Throughput::Elements(RECORDS_PER_ITERATION as u64));
    for (appenders, batch) in [(16, 1), (64, 1), (256, 1), (64, 10)] {
        let id = BenchmarkId::new(
            format!("records_per_append_{batch}"),
            format!("{appenders}_appenders"),
        );
        group.bench_with_input(id, &(appenders, batch), |b, &(appenders, batch)| {
            b.to_async(&runtime).iter_custom(|iters| {
                let total = RECORDS_PER_ITERATION * iters as usize;
                run(&log, total, appenders, batch)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
