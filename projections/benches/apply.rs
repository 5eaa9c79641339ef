//! Projection apply: `Projector::catch_up` of the deliveries projection (the heaviest:
//! the delivery folded with the domain's `apply`, its timeline entry, its line in the
//! owner's history and in its stage's list) over events already in the embedded log,
//! into a fresh embedded read store each iteration (opening the store is not timed).
//!
//! * `projection_apply/deliveries/created`: 10 000 deliveries created, one event each.
//! * `projection_apply/deliveries/lifecycle`: 2 500 deliveries through their whole life
//!   (created, assigned, picked up, completed): 10 000 events, in the order of their
//!   times as a real log holds them (a delivery is assigned a minute after it is created,
//!   picked up 31 minutes after, completed 45 minutes after, one created a second), so
//!   most of them read the row an earlier batch wrote.
//!
//! * `…/rebuild`: the same logs through `replay`'s blue/green path
//!   (`projections::rebuild`: a new generation's projector in consumer groups, watched
//!   every 50 ms until it passes the log's end, then the switch).
//!
//! Throughput is events applied per second. `APPLY_EVENTS` sets the events in each log
//! (10 000 by default; the rebuild goal is about 1M):
//!
//!   cargo bench -p projections --bench apply
//!   APPLY_EVENTS=1000000 cargo bench -p projections --bench apply -- lifecycle/rebuild

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use projections::{DeliveriesProjection, Projection, Projector, ProjectorMetrics, RebuildOptions};
use prometheus::Registry;
use read_model::generations::Current;
use read_model::models;
use read_model::tables::{DELIVERIES, SINGLE_ROW};
use schemas::Codec;
use schemas::events::{
    ConfirmationType, DeliveryCompleted, DeliveryCreated, DeliveryPickedUp, DroneAssigned,
    Envelope, Event, EventMetadata, Location, Topic,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{EventLog, NewRecord, ReadStore, TopicSpec};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};
use tempfile::TempDir;
use uuid::Uuid;

// The allocator the server and the CLI run with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: u32 = 8;

/// Events in the log of each benchmark: `APPLY_EVENTS`, else 10 000.
fn events() -> usize {
    std::env::var("APPLY_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}
/// Owners the deliveries are spread over (rows of the owners' histories).
const OWNERS: usize = 100;
/// Records per append while the log is filled.
const APPEND_CHUNK: usize = 1_000;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0)
        .single()
        .expect("time")
}

/// A point in a 60 × 60 km square around Seattle, the same for the same `n`.
fn point(n: usize, salt: u64) -> Location {
    let mut x = (n as u64 ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    let unit = |bits: u64| (bits & 0xffff) as f64 / 65_536.0;
    Location {
        latitude: 47.35 + unit(x) * 0.54,
        longitude: -122.70 + unit(x >> 16) * 0.80,
        altitude: 0.0,
    }
}

fn delivery_id(n: usize) -> String {
    Uuid::from_u128(0xde11_0000_0000_0000_0000_0000_0000_0000 | n as u128).to_string()
}

fn envelope(id: &str, version: u64, at: DateTime<Utc>, event: Event, n: usize) -> Envelope {
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::from_u128(((n as u128) << 8) | u128::from(version)),
            aggregate_id: id.to_owned(),
            aggregate_version: version,
            occurred_at: at,
            causation_id: format!("key:order-{n}"),
            correlation_id: format!("key:order-{n}"),
            principal: "operator".into(),
        },
        event,
    }
}

fn created(n: usize) -> Event {
    let at = start() + TimeDelta::seconds(n as i64);
    Event::DeliveryCreated(DeliveryCreated {
        owner_id: format!("owner-{}", n % OWNERS),
        pickup: point(n, 1),
        dropoff: point(n, 2),
        pickup_time: Some(at + TimeDelta::minutes(30)),
        deadline: Some(at + TimeDelta::hours(3)),
        expedited: n.is_multiple_of(10),
        confirmation_required: ConfirmationType::None,
        package_id: format!("package-{n}"),
        package_weight_kg: 1.2,
    })
}

/// Delivery `n`'s stream from its creation on, `events` of it (1 to 4).
fn stream(n: usize, events: usize) -> Vec<Envelope> {
    let id = delivery_id(n);
    let drone_id = format!("drone-{}", n % 1_000);
    let at = start() + TimeDelta::seconds(n as i64);
    let picked_up_at = at + TimeDelta::minutes(31);
    let completed_at = at + TimeDelta::minutes(45);
    let life = [
        (at, created(n)),
        (
            at + TimeDelta::minutes(1),
            Event::DroneAssigned(DroneAssigned {
                delivery_id: id.clone(),
                drone_id: drone_id.clone(),
                route_km: 12.5,
                attempt: format!("attempt-{n}"),
            }),
        ),
        (
            picked_up_at,
            Event::DeliveryPickedUp(DeliveryPickedUp {
                delivery_id: id.clone(),
                drone_id: drone_id.clone(),
                at: picked_up_at,
            }),
        ),
        (
            completed_at,
            Event::DeliveryCompleted(DeliveryCompleted {
                delivery_id: id.clone(),
                drone_id,
                confirmation_type: ConfirmationType::None,
                location: point(n, 2),
                at: completed_at,
                blob: None,
            }),
        ),
    ];
    life.into_iter()
        .take(events)
        .zip(1..)
        .map(|((at, event), version)| envelope(&id, version, at, event, n))
        .collect()
}

/// An embedded log in a temp dir holding `envelopes` on the deliveries topic, one
/// record each, keyed by the delivery as the command side keys them.
struct Filled {
    _dir: TempDir,
    log: Arc<EmbeddedLog>,
    events: u64,
    /// A delivery the projection must have written.
    sample_id: String,
}

async fn filled(codec: &Codec, envelopes: Vec<Envelope>) -> Filled {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    log.create_topics(&[TopicSpec {
        name: Topic::Deliveries.name().into(),
        partitions: PARTITIONS,
    }])
    .await
    .expect("topics");
    let events = envelopes.len() as u64;
    let sample_id = envelopes
        .last()
        .expect("some events")
        .metadata
        .aggregate_id
        .clone();
    let records: Vec<NewRecord> = envelopes
        .iter()
        .map(|envelope| NewRecord {
            topic: Topic::Deliveries.name().into(),
            key: envelope.metadata.aggregate_id.clone(),
            value: Bytes::from(codec.encode(envelope).expect("encode")),
            headers: Vec::new(),
        })
        .collect();
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let chunk: Vec<NewRecord> = records.by_ref().take(APPEND_CHUNK).collect();
        log.append(chunk).await.expect("append");
    }
    Filled {
        _dir: dir,
        log,
        events,
        sample_id,
    }
}

/// `iters` catch-ups of `projection` over the whole log, each into a fresh read store;
/// only the catch-ups are timed.
async fn catch_ups(
    filled: &Filled,
    codec: &Codec,
    projection: &Arc<dyn Projection>,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (dir, store, projector) = fresh_projector(filled, codec);
        let started = Instant::now();
        let applied = projector
            .catch_up(black_box(projection))
            .await
            .expect("catch up");
        total += started.elapsed();
        assert_eq!(applied, filled.events, "every record applied");
        drop(projector);
        drop(store);
        drop(dir);
    }
    total
}

/// A projector over the filled log into a fresh read store (in the directory returned).
fn fresh_projector(
    filled: &Filled,
    codec: &Codec,
) -> (tempfile::TempDir, Arc<EmbeddedReadStore>, Projector) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(EmbeddedReadStore::open(dir.path()).expect("read store"));
    let metrics = ProjectorMetrics::new(&Registry::new()).expect("metrics");
    let projector = Projector::new(
        filled.log.clone(),
        store.clone(),
        codec.clone(),
        metrics,
        Duration::ZERO,
    );
    (dir, store, projector)
}

/// One catch-up outside the measurements: the projection wrote what it should.
async fn check(filled: &Filled, codec: &Codec, projection: &Arc<dyn Projection>) {
    let (_dir, store, projector) = fresh_projector(filled, codec);
    let applied = projector.catch_up(projection).await.expect("catch up");
    assert_eq!(applied, filled.events, "every record applied");
    let row = store
        .get(DELIVERIES, &filled.sample_id, SINGLE_ROW)
        .await
        .expect("get");
    assert!(row.is_some(), "the deliveries were projected");
}

fn apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let codec = Codec::new().expect("codec");
    let projection: Arc<dyn Projection> = Arc::new(DeliveriesProjection);

    let events = events();
    let created_only: Vec<Envelope> = (0..events).flat_map(|n| stream(n, 1)).collect();
    let mut lifecycles: Vec<Envelope> = (0..events / 4).flat_map(|n| stream(n, 4)).collect();
    // As the command side appends them: in the order they happened.
    lifecycles.sort_by_key(|e| e.metadata.occurred_at);

    let mut group = c.benchmark_group("projection_apply/deliveries");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for (name, envelopes) in [("created", created_only), ("lifecycle", lifecycles)] {
        let filled = runtime.block_on(filled(&codec, envelopes));
        runtime.block_on(check(&filled, &codec, &projection));
        group.throughput(Throughput::Elements(filled.events));
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter_custom(|iters| catch_ups(&filled, &codec, &projection, iters));
        });
        // The same history through `replay`'s path: a projector of a new generation in
        // consumer groups, watched until it passes the log's end, then the switch.
        group.bench_function(format!("{name}/rebuild"), |b| {
            b.to_async(&runtime)
                .iter_custom(|iters| rebuilds(&filled, &codec, iters));
        });
    }
    group.finish();
}

/// `iters` blue/green rebuilds of the deliveries model over the whole log, each on a
/// fresh read store; only the rebuilds are timed.
async fn rebuilds(filled: &Filled, codec: &Codec, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (_dir, store, projector) = fresh_projector(filled, codec);
        let store: Arc<dyn ReadStore> = store;
        let options = RebuildOptions {
            build_here: Some(projector),
            grace: Duration::ZERO,
        };
        let current = Current::new();
        let log: &dyn EventLog = filled.log.as_ref();
        let rebuilt =
            projections::rebuild(log, &store, models::DELIVERIES, &current, options, |_| {})
                .await
                .expect("rebuild");
        // From the start to the switch, when the new generation serves.
        total += rebuilt.took;
        assert_eq!(rebuilt.records, filled.events, "every record applied");
    }
    total
}

criterion_group!(benches, apply);
criterion_main!(benches);
