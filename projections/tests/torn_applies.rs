//! Projections are correct on a store without atomic batches: a store that lands part
//! of an apply's writes (and checkpoints) and then fails, with the projector
//! restarted after each failure, ends with every read model equal to a clean run's,
//! row for row, over random workloads.
//!
//! Each read-store adapter runs [`torn_applies_complete_on_replay`] with a factory of
//! fresh stores: the embedded one (its own applies are atomic, so the tearing is all the
//! wrapper's) and ScyllaDB's when `SCYLLA_URI` is set (a keyspace per store).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use domain::{DroneStatus, Stage};
use projections::{Projector, ProjectorMetrics};
use prometheus::Registry;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use read_model::tables::{
    ACCOUNT_DELIVERIES, ACCOUNT_KEYS, ACCOUNTS, DELIVERIES, DELIVERIES_BY_STAGE, DELIVERY_TIMELINE,
    DRONE_POSITIONS, DRONES, FLEET, INVOICE_LINES, INVOICE_TRIPS, SINGLE_ROW, WHOLE_FLEET,
    invoice_partition,
};
use schemas::Codec;
use schemas::events::*;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::conformance::unique_name;
use storage::{
    Checkpoint, EventLog, NewRecord, Offset, Order, ReadStore, Row, Scan, StorageError, TopicSpec,
    Write,
};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};
use storage_scylla::{Migration, ScyllaReadStore, ScyllaSettings};
use uuid::Uuid;

const PARTITIONS: u32 = 3;
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

/// One step of a workload; the builder turns it into events when it is valid for the
/// state so far and skips it otherwise. `pick` chooses the aggregate, `value` a time or
/// a variant.
#[derive(Clone, Debug)]
struct Step {
    kind: u8,
    pick: u16,
    value: u16,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0u8..14, any::<u16>(), any::<u16>()).prop_map(|(kind, pick, value)| Step {
            kind,
            pick,
            value,
        }),
        10..90,
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Leg {
    Open,
    Assigned(usize),
    PickedUp(usize),
    Closed,
}

struct Account {
    id: String,
    version: u64,
    suspended: bool,
}

struct Drone {
    id: String,
    version: u64,
    busy: bool,
    returning: bool,
}

struct Delivery {
    id: String,
    version: u64,
    leg: Leg,
    attempts: u32,
}

/// Builds a workload's records and remembers every key the read models can hold.
struct Workload {
    codec: Codec,
    records: Vec<NewRecord>,
    minute: i64,
    accounts: Vec<Account>,
    drones: Vec<Drone>,
    deliveries: Vec<Delivery>,
    key_hashes: BTreeSet<String>,
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0)
        .single()
        .expect("time")
}

fn place(n: u16) -> Location {
    Location {
        latitude: 47.5 + f64::from(n % 100) / 1000.0,
        longitude: -122.4 + f64::from(n % 77) / 1000.0,
        altitude: 0.0,
    }
}

impl Workload {
    fn new(codec: Codec) -> Workload {
        Workload {
            codec,
            records: Vec::new(),
            minute: 0,
            accounts: Vec::new(),
            drones: Vec::new(),
            deliveries: Vec::new(),
            key_hashes: BTreeSet::new(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        base() + TimeDelta::minutes(self.minute)
    }

    fn emit(&mut self, topic: Topic, id: &str, version: u64, event: Event) {
        let envelope = Envelope {
            metadata: EventMetadata {
                event_id: Uuid::new_v4(),
                aggregate_id: id.into(),
                aggregate_version: version,
                occurred_at: self.now(),
                causation_id: "cmd:torn".into(),
                correlation_id: "cmd:torn".into(),
                principal: "operator".into(),
            },
            event,
        };
        self.records.push(NewRecord {
            topic: topic.name().into(),
            key: id.into(),
            value: Bytes::from(self.codec.encode(&envelope).expect("encode")),
            headers: Vec::new(),
        });
    }

    fn account_event(&mut self, at: usize, event: Event) {
        let account = &mut self.accounts[at];
        account.version += 1;
        let (id, version) = (account.id.clone(), account.version);
        self.emit(Topic::Accounts, &id, version, event);
    }

    fn drone_event(&mut self, at: usize, event: Event) {
        let drone = &mut self.drones[at];
        drone.version += 1;
        let (id, version) = (drone.id.clone(), drone.version);
        self.emit(Topic::Drones, &id, version, event);
    }

    fn delivery_event(&mut self, at: usize, event: Event) {
        let delivery = &mut self.deliveries[at];
        delivery.version += 1;
        let (id, version) = (delivery.id.clone(), delivery.version);
        self.emit(Topic::Deliveries, &id, version, event);
    }

    /// An event both aggregates record, on both topics (as the two-step commands do).
    fn both(&mut self, delivery: usize, drone: usize, event: Event) {
        self.delivery_event(delivery, event.clone());
        self.drone_event(drone, event);
    }

    fn hash(&mut self, n: u16) -> String {
        let hash = format!("{:064x}", u64::from(n) + 1_000 * self.records.len() as u64);
        self.key_hashes.insert(hash.clone());
        hash
    }

    fn step(&mut self, step: &Step) {
        self.minute += 1;
        let pick = usize::from(step.pick);
        let account = (!self.accounts.is_empty()).then(|| pick % self.accounts.len());
        let drone = (!self.drones.is_empty()).then(|| pick % self.drones.len());
        let delivery = (!self.deliveries.is_empty()).then(|| pick % self.deliveries.len());
        match step.kind {
            0 => {
                let id = format!("acct-{}", self.accounts.len());
                let api_key_hash = self.hash(step.value);
                self.accounts.push(Account {
                    id: id.clone(),
                    version: 0,
                    suspended: false,
                });
                let at = self.accounts.len() - 1;
                let event = Event::AccountRegistered(AccountRegistered {
                    name: format!("Account {id}"),
                    email: format!("{id}@example.com"),
                    api_key_hash,
                });
                self.account_event(at, event);
            }
            1 | 2 => {
                let Some(at) = account else { return };
                let suspend = !self.accounts[at].suspended;
                self.accounts[at].suspended = suspend;
                let event = if suspend {
                    Event::AccountSuspended(AccountSuspended {
                        reason: step.value.is_multiple_of(2).then(|| "unpaid".into()),
                    })
                } else {
                    Event::AccountReactivated(AccountReactivated {})
                };
                self.account_event(at, event);
            }
            3 => {
                let Some(at) = account else { return };
                let api_key_hash = self.hash(step.value);
                self.account_event(
                    at,
                    Event::AccountKeyRotated(AccountKeyRotated { api_key_hash }),
                );
            }
            4 => {
                let id = format!("drone-{}", self.drones.len());
                self.drones.push(Drone {
                    id,
                    version: 0,
                    busy: false,
                    returning: false,
                });
                let at = self.drones.len() - 1;
                let event = Event::DroneRegistered(DroneRegistered {
                    model: "X8".into(),
                    payload_kg: 5.0,
                    range_km: 40.0,
                    speed_mps: 15.0,
                    home: place(step.value),
                });
                self.drone_event(at, event);
            }
            5 => {
                // Reports arrive out of order: any time in the workload's ten hours.
                let Some(at) = drone else { return };
                let id = self.drones[at].id.clone();
                let version = self.drones[at].version;
                let reported = base() + TimeDelta::minutes(i64::from(step.value % 600));
                let event = Event::DronePositionReported(DronePositionReported {
                    position: place(step.value),
                    battery_pct: f64::from(step.value % 101),
                    at: reported,
                });
                self.emit(Topic::DroneTelemetry, &id, version, event);
            }
            6 | 7 => {
                let Some(owner) = account else { return };
                let id = format!("del-{}", self.deliveries.len());
                self.deliveries.push(Delivery {
                    id: id.clone(),
                    version: 0,
                    leg: Leg::Open,
                    attempts: 0,
                });
                let at = self.deliveries.len() - 1;
                let deadline = step
                    .value
                    .is_multiple_of(3)
                    .then(|| self.now() + TimeDelta::hours(2));
                let event = Event::DeliveryCreated(DeliveryCreated {
                    owner_id: self.accounts[owner].id.clone(),
                    pickup: place(step.value),
                    dropoff: place(step.value / 3),
                    pickup_time: None,
                    deadline,
                    expedited: step.value.is_multiple_of(5),
                    confirmation_required: ConfirmationType::None,
                    package_id: format!("pkg-{at}"),
                    package_weight_kg: 1.0 + f64::from(step.value % 4),
                });
                self.delivery_event(at, event);
            }
            8 => {
                let Some(at) = delivery else { return };
                let free = self.drones.iter().position(|d| !d.busy && !d.returning);
                let (Leg::Open, Some(drone)) = (self.deliveries[at].leg, free) else {
                    return;
                };
                self.deliveries[at].attempts += 1;
                self.deliveries[at].leg = Leg::Assigned(drone);
                self.drones[drone].busy = true;
                let event = Event::DroneAssigned(DroneAssigned {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    route_km: 1.0 + f64::from(step.value % 30),
                    attempt: format!("attempt-{}", self.deliveries[at].attempts),
                });
                self.both(at, drone, event);
            }
            9 => {
                let Some(at) = delivery else { return };
                let Leg::Assigned(drone) = self.deliveries[at].leg else {
                    return;
                };
                self.deliveries[at].leg = Leg::Open;
                self.drones[drone].busy = false;
                let event = Event::DroneUnassigned(DroneUnassigned {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    reason: "battery".into(),
                    attempt: format!("attempt-{}", self.deliveries[at].attempts),
                });
                self.both(at, drone, event);
            }
            10 => {
                let Some(at) = delivery else { return };
                let Leg::Assigned(drone) = self.deliveries[at].leg else {
                    return;
                };
                self.deliveries[at].leg = Leg::PickedUp(drone);
                let event = Event::DeliveryPickedUp(DeliveryPickedUp {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    at: self.now(),
                });
                self.both(at, drone, event);
            }
            11 => {
                let Some(at) = delivery else { return };
                let Leg::PickedUp(drone) = self.deliveries[at].leg else {
                    return;
                };
                self.deliveries[at].leg = Leg::Closed;
                self.drones[drone].busy = false;
                self.drones[drone].returning = true;
                let event = Event::DeliveryCompleted(DeliveryCompleted {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    confirmation_type: ConfirmationType::None,
                    location: place(step.value),
                    at: self.now(),
                    blob: None,
                });
                self.both(at, drone, event);
            }
            12 => {
                if let Some(drone) = self.drones.iter().position(|d| d.returning) {
                    self.drones[drone].returning = false;
                    self.drone_event(drone, Event::DroneDocked(DroneDocked {}));
                } else if let Some(at) = delivery.filter(|&d| self.deliveries[d].leg == Leg::Open) {
                    let event = Event::DeliveryRescheduled(DeliveryRescheduled {
                        pickup: place(step.value),
                        dropoff: place(step.value / 7),
                        pickup_time: Some(self.now() + TimeDelta::hours(1)),
                        deadline: Some(self.now() + TimeDelta::hours(4)),
                    });
                    self.delivery_event(at, event);
                }
            }
            _ => {
                let Some(at) = delivery else { return };
                if self.deliveries[at].leg != Leg::Open {
                    return;
                }
                self.deliveries[at].leg = Leg::Closed;
                let event = if step.value.is_multiple_of(2) {
                    Event::DeliveryCancelled(DeliveryCancelled {
                        reason: Some("changed my mind".into()),
                    })
                } else {
                    Event::DeliveryFailed(DeliveryFailed {
                        reason: "no landing spot".into(),
                    })
                };
                self.delivery_event(at, event);
            }
        }
    }
}

type Rows = Vec<(String, u64, Bytes)>;

/// Every row of every read-model table the workload can have touched, and every
/// checkpoint, read through the port.
async fn read_models(store: &dyn ReadStore, workload: &Workload) -> BTreeMap<String, Rows> {
    let mut partitions: Vec<(&str, String)> = Vec::new();
    for d in &workload.deliveries {
        for table in [DELIVERIES, DELIVERY_TIMELINE, INVOICE_TRIPS] {
            partitions.push((table, d.id.clone()));
        }
    }
    for a in &workload.accounts {
        partitions.push((ACCOUNTS, a.id.clone()));
        partitions.push((ACCOUNT_DELIVERIES, a.id.clone()));
        for month in [11, 12] {
            partitions.push((INVOICE_LINES, invoice_partition(&a.id, 2026, month)));
        }
    }
    for hash in &workload.key_hashes {
        partitions.push((ACCOUNT_KEYS, hash.clone()));
    }
    for d in &workload.drones {
        partitions.push((DRONES, d.id.clone()));
    }
    partitions.push((DRONE_POSITIONS, WHOLE_FLEET.into()));
    for stage in Stage::ALL {
        partitions.push((DELIVERIES_BY_STAGE, stage.as_str().into()));
    }
    for status in DroneStatus::ALL {
        partitions.push((FLEET, status.as_str().into()));
    }
    let mut all = BTreeMap::new();
    for (table, partition) in partitions {
        let scan = Scan {
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            order: Order::Ascending,
            limit: 100_000,
        };
        let rows = store.scan(table, &partition, scan).await.expect("scan");
        let rows = rows
            .into_iter()
            .map(|r| (r.clustering, r.version, r.value))
            .collect();
        all.insert(format!("{table}/{partition}"), rows);
    }
    for projection in projections::all() {
        for topic in projection.topics() {
            for partition in 0..PARTITIONS {
                let name = (projection.name(), topic.name(), partition);
                let next = store.checkpoint(name.0, name.1, partition).await;
                let writer = store.checkpoint_writer(name.0, name.1, partition).await;
                let key = format!("checkpoint/{}/{}/{partition}", name.0, name.1);
                let value = format!("{:?} {:?}", next.expect("next"), writer.expect("writer"));
                all.insert(key, vec![(String::new(), 0, Bytes::from(value))]);
            }
        }
    }
    all
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
                let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
                let specs: Vec<TopicSpec> = Topic::ALL
                    .iter()
                    .map(|t| TopicSpec {
                        name: t.name().into(),
                        partitions: PARTITIONS,
                    })
                    .collect();
                log.create_topics(&specs).await.expect("topics");
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
