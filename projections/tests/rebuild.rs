//! A rebuild (blue/green) gives every read model exactly what a clean build from the log
//! gives, row for row and checkpoint for checkpoint, while records keep arriving during
//! it; readers switch to the new generation and the old one is dropped.

mod workload;

use projections::{Host, Projector, ProjectorMetrics, RebuildOptions};
use prometheus::Registry;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use read_model::generations::{Current, Generational};
use read_model::models;
use read_model::tables::DELIVERIES;
use schemas::Codec;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{EventLog, ReadStore};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};
use tokio::sync::watch;
use workload::{PARTITIONS, Workload, log_in, read_models, steps};

const CASES: u32 = 10;

fn projector(log: &Arc<EmbeddedLog>, store: &Arc<dyn ReadStore>, codec: &Codec) -> Projector {
    let metrics = ProjectorMetrics::new(&Registry::new()).expect("metrics");
    Projector::new(
        log.clone(),
        store.clone(),
        codec.clone(),
        metrics,
        Duration::ZERO,
    )
}

/// Waits until every model, as `view` reads it, has applied the whole log.
async fn caught_up(log: &EmbeddedLog, view: &dyn ReadStore) {
    let started = Instant::now();
    'again: loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the host caught up"
        );
        for model in models::ALL {
            for topic in model.topics {
                for partition in 0..PARTITIONS {
                    let end = log.end_offset(topic.name(), partition).await.expect("end");
                    let next = view
                        .checkpoint(model.name, topic.name(), partition)
                        .await
                        .expect("checkpoint")
                        .unwrap_or(0);
                    if next < end {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue 'again;
                    }
                }
            }
        }
        return;
    }
}

#[test]
fn a_rebuild_under_load_equals_a_clean_build_and_replaces_the_old_generation() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let inputs = (steps(), 0.0f64..1.0);
    let mut runner = TestRunner::new(config);
    runner
        .run(&inputs, |(steps, before)| {
            runtime.block_on(async {
                let codec = Codec::new().expect("codec");
                let dir = tempfile::tempdir().expect("dir");
                let log = log_in(&dir.path().join("log")).await;
                let mut workload = Workload::new(codec.clone());
                for step in &steps {
                    workload.step(step);
                }
                let records = std::mem::take(&mut workload.records);
                let split = (records.len() as f64 * before) as usize;
                let (first, rest) = records.split_at(split);
                log.append(first.to_vec()).await.expect("append");

                // The live host, as a server runs it.
                let raw: Arc<dyn ReadStore> =
                    Arc::new(EmbeddedReadStore::open(&dir.path().join("store")).expect("store"));
                let current = Current::new();
                let host = Host::new(
                    projector(&log, &raw, &codec),
                    projections::all(),
                    current.clone(),
                );
                let (stop, stopped) = watch::channel(false);
                let (hosting, _) = host.spawn(stopped).await.expect("host");

                // Records keep coming while every model is rebuilt.
                let appending = {
                    let (log, rest) = (log.clone(), rest.to_vec());
                    tokio::spawn(async move {
                        for chunk in rest.chunks(3) {
                            log.append(chunk.to_vec()).await.expect("append");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    })
                };
                for model in models::ALL {
                    let options = RebuildOptions {
                        build_here: None,
                        // The host stops generation 0 as soon as it hears of the switch.
                        grace: Duration::from_millis(300),
                    };
                    let rebuilt =
                        projections::rebuild(log.as_ref(), &raw, model, &current, options, |_| {})
                            .await
                            .expect("rebuilt");
                    prop_assert_eq!(rebuilt.generation, 1);
                    prop_assert_eq!(current.of(&model), 1);
                }
                appending.await.expect("appended");
                let view = Generational::current(raw.clone(), current.clone());
                caught_up(&log, &view).await;

                let clean: Arc<dyn ReadStore> =
                    Arc::new(EmbeddedReadStore::open(&dir.path().join("clean")).expect("store"));
                let building = projector(&log, &clean, &codec);
                for projection in projections::all() {
                    building.catch_up(&projection).await.expect("clean build");
                }
                let want = read_models(clean.as_ref(), &workload).await;
                let got = read_models(&view, &workload).await;
                let differ: Vec<&String> = want
                    .iter()
                    .filter(|(key, rows)| got.get(*key) != Some(rows))
                    .map(|(key, _)| key)
                    .collect();
                prop_assert!(differ.is_empty(), "the rebuilt models differ in {differ:?}");
                // Generation 0 is gone: its rows and its checkpoints.
                for d in &workload.deliveries {
                    let row = raw.get(DELIVERIES, &d.id, "").await.expect("get");
                    prop_assert!(row.is_none(), "generation 0 still holds {}", d.id);
                }
                for model in models::ALL {
                    let next = raw.checkpoint(model.name, model.topics[0].name(), 0).await;
                    prop_assert_eq!(next.expect("checkpoint"), None);
                }
                let _ = stop.send(true);
                hosting.await.expect("host stopped");
                Ok(())
            })
        })
        .expect("rebuilt read models equal a clean build");
}
