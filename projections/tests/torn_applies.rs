//! Projections are correct on a store without atomic batches: a store that lands part
//! of an apply's writes (and checkpoints) and then fails, with the projector
//! restarted after each failure, ends with every read model equal to a clean run's,
//! row for row, over random workloads.
//!
//! Each read-store adapter runs [`torn_applies_complete_on_replay`] with a factory of
//! fresh stores: the embedded one (its own applies are atomic, so the tearing is all the
//! wrapper's) and ScyllaDB's when `SCYLLA_URI` is set (a keyspace per store).

mod workload;

use async_trait::async_trait;
use projections::{Projector, ProjectorMetrics};
use prometheus::Registry;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use read_model::tables::{DELIVERIES, SINGLE_ROW};
use schemas::Codec;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::conformance::unique_name;
use storage::{Checkpoint, EventLog, Offset, ReadStore, Row, Scan, StorageError, Write};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};
use storage_scylla::{Migration, ScyllaReadStore, ScyllaSettings};
use workload::{Workload, log_in, read_models, steps};

/// Random workloads per adapter.
const CASES: u32 = 24;
/// Fewer on ScyllaDB, where each store is a keyspace created with its tables.
const SCYLLA_CASES: u32 = 6;

/// A fresh, empty store, and what must live as long as it does.
type Fresh =
    dyn Fn() -> Pin<Box<dyn Future<Output = (Option<tempfile::TempDir>, Arc<dyn ReadStore>)>>>;

/// A read store that, now and then, lands part of an apply (any subset of the writes;
/// checkpoints only after all of them) and reports a failure, as a store without
/// atomic batches does when the projector crashes mid-apply.
struct TornStore {
    inner: Arc<dyn ReadStore>,
    rng: Mutex<u64>,
    faults_left: AtomicUsize,
    torn: AtomicUsize,
}

impl TornStore {
    fn new(inner: Arc<dyn ReadStore>, seed: u64, faults: usize) -> TornStore {
        TornStore {
            inner,
            rng: Mutex::new(seed | 1),
            faults_left: AtomicUsize::new(faults),
            torn: AtomicUsize::new(0),
        }
    }

    /// xorshift64*: the test's own, so a case replays from its seed.
    fn next(&self) -> u64 {
        let mut x = self.rng.lock().expect("rng");
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[async_trait]
impl ReadStore for TornStore {
    async fn apply(
        &self,
        mut writes: Vec<Write>,
        mut checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StorageError> {
        let tear = self.faults_left.load(Ordering::SeqCst) > 0 && self.next().is_multiple_of(2);
        if !tear {
            return self.inner.apply(writes, checkpoints).await;
        }
        self.faults_left.fetch_sub(1, Ordering::SeqCst);
        // Any subset of the writes, as concurrent writes that a crash cut short leave;
        // the checkpoints (any of them) only once every write is in.
        let keep = self.next() % 4; // how likely each write is to land, in quarters
        let all = writes.len();
        writes.retain(|_| self.next() % 4 < keep.max(1));
        if writes.len() == all {
            checkpoints.retain(|_| self.next().is_multiple_of(2));
        } else {
            checkpoints.clear();
        }
        self.inner.apply(writes, checkpoints).await?;
        self.torn.fetch_add(1, Ordering::SeqCst);
        Err(StorageError::Unavailable("injected: a torn apply".into()))
    }
    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, StorageError> {
        self.inner.get(table, partition, clustering).await
    }
    async fn scan(
        &self,
        table: &str,
        partition: &str,
        scan: Scan,
    ) -> Result<Vec<Row>, StorageError> {
        self.inner.scan(table, partition, scan).await
    }
    async fn checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        self.inner.checkpoint(projection, topic, partition).await
    }
    async fn checkpoint_writer(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, StorageError> {
        self.inner
            .checkpoint_writer(projection, topic, partition)
            .await
    }
    async fn drop_tables(
        &self,
        tables: &[String],
        checkpoints: &[(String, String, u32)],
    ) -> Result<(), StorageError> {
        self.inner.drop_tables(tables, checkpoints).await
    }
}

/// Catches every projection up with the log; after each failure the projector is
/// made anew (a restart: nothing kept in memory) and resumes from the checkpoints.
async fn catch_up(log: &Arc<EmbeddedLog>, store: &Arc<dyn ReadStore>, codec: &Codec) {
    for projection in projections::all() {
        let mut restarts = 0;
        loop {
            let metrics = ProjectorMetrics::new(&Registry::new()).expect("metrics");
            let projector = Projector::new(
                log.clone(),
                store.clone(),
                codec.clone(),
                metrics,
                Duration::ZERO,
            );
            match projector.catch_up(&projection).await {
                Ok(_) => break,
                Err(error) => {
                    restarts += 1;
                    assert!(restarts < 100, "no progress after {restarts}: {error}");
                }
            }
        }
    }
}

/// Runs random workloads, appended in random chunks with a catch-up after each, into a
/// clean store and a tearing one, and compares their read models after every chunk.
fn torn_applies_complete_on_replay(fresh: &Fresh, cases: u32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let torn_total = AtomicUsize::new(0);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let inputs = (
        steps(),
        prop::collection::vec(1usize..25, 1..8),
        any::<u64>(),
    );
    let mut runner = TestRunner::new(config);
    runner
        .run(&inputs, |(steps, chunks, seed)| {
            runtime.block_on(async {
                let codec = Codec::new().expect("codec");
                let dir = tempfile::tempdir().expect("dir");
                let log = log_in(dir.path()).await;
                let (_clean_dir, clean) = fresh().await;
                let (_torn_dir, inner) = fresh().await;
                let faults = 1 + (seed % 6) as usize;
                let torn = Arc::new(TornStore::new(inner, seed, faults));
                let tearing: Arc<dyn ReadStore> = torn.clone();

                let mut workload = Workload::new(codec.clone());
                for step in &steps {
                    workload.step(step);
                }
                let records = std::mem::take(&mut workload.records);
                let mut rest = records.as_slice();
                let mut chunk = chunks.iter().cycle();
                while !rest.is_empty() {
                    let take = (*chunk.next().unwrap_or(&1)).min(rest.len());
                    let (now, later) = rest.split_at(take);
                    rest = later;
                    log.append(now.to_vec()).await.expect("append");
                    catch_up(&log, &clean, &codec).await;
                    catch_up(&log, &tearing, &codec).await;
                    let want = read_models(clean.as_ref(), &workload).await;
                    let got = read_models(tearing.as_ref(), &workload).await;
                    let differ: Vec<&String> = want
                        .iter()
                        .filter(|(key, rows)| got.get(*key) != Some(rows))
                        .map(|(key, _)| key)
                        .collect();
                    prop_assert!(differ.is_empty(), "torn store differs in {differ:?}");
                }
                // The clean run did project the workload.
                let models = read_models(clean.as_ref(), &workload).await;
                for d in &workload.deliveries {
                    let rows = &models[&format!("{DELIVERIES}/{}", d.id)];
                    prop_assert_eq!(rows.len(), 1, "delivery {} projected", d.id);
                    prop_assert_eq!(rows[0].1, d.version);
                    prop_assert_eq!(&rows[0].0, SINGLE_ROW);
                }
                torn_total.fetch_add(torn.torn.load(Ordering::SeqCst), Ordering::SeqCst);
                Ok(())
            })
        })
        .expect("the torn store's read models equal the clean store's");
    assert!(
        torn_total.load(Ordering::SeqCst) >= cases as usize,
        "the store tore too few applies to test anything"
    );
}

#[test]
fn embedded_read_store_completes_torn_applies_on_replay() {
    let fresh = || -> Pin<Box<dyn Future<Output = _>>> {
        Box::pin(async {
            let dir = tempfile::tempdir().expect("dir");
            let store: Arc<dyn ReadStore> =
                Arc::new(EmbeddedReadStore::open(dir.path()).expect("store"));
            (Some(dir), store)
        })
    };
    torn_applies_complete_on_replay(&fresh, CASES);
}

#[test]
fn scylla_read_store_completes_torn_applies_on_replay() {
    let Ok(uri) = std::env::var("SCYLLA_URI") else {
        eprintln!("skipped: SCYLLA_URI is not set, so the torn-apply test did not run on ScyllaDB");
        return;
    };
    let nodes = uri.strip_prefix("scylla://").unwrap_or(&uri);
    let nodes = nodes.split('/').next().unwrap_or(nodes).to_owned();
    let fresh = move || -> Pin<Box<dyn Future<Output = _>>> {
        let settings = ScyllaSettings::new(&nodes, &unique_name("torn"));
        Box::pin(async move {
            let migrations = [Migration {
                version: 1,
                description: "the read models",
                tables: &read_model::tables::ALL,
            }];
            let store: Arc<dyn ReadStore> = Arc::new(
                ScyllaReadStore::connect(&settings, &migrations)
                    .await
                    .expect("ScyllaDB"),
            );
            (None, store)
        })
    };
    torn_applies_complete_on_replay(&fresh, SCYLLA_CASES);
}
