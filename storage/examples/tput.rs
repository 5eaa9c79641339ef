use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use storage::embedded::EmbeddedLog;
use storage::{EventLog, NewRecord, TopicSpec};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("x"))
        .collect();
    let (tasks, batch, total) = (args[0], args[1], args[2]);
    let dir = tempfile::tempdir_in("/work/main/target").expect("x");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("x"));
    log.create_topics(&[TopicSpec {
        name: "bench".into(),
        partitions: 8,
    }])
    .await
    .expect("x");
    let per_task = total / tasks / batch;
    let started = Instant::now();
    let f0 = log.fsyncs();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let recs = (0..batch)
                        .map(|j| NewRecord {
                            topic: "bench".into(),
                            key: format!("agg-{t}-{}", (i + j) % 4),
                            value: Bytes::from(vec![b'x'; 200]),
                        })
                        .collect();
                    log.append(recs).await.expect("x");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("x");
    }
    let el = started.elapsed();
    let n = per_task * tasks * batch;
    let fs = log.fsyncs() - f0;
    println!(
        "tasks={tasks} batch={batch} records={n} {:.0} rec/s, fsyncs={fs} ({:.1} rec/fsync, {:.0} fsync/s)",
        n as f64 / el.as_secs_f64(),
        n as f64 / fs as f64,
        fs as f64 / el.as_secs_f64()
    );
}
