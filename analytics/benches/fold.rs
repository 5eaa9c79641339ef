//! Analytics decode-and-fold on one core (goal ≥ 1M events/s): 10 000 deliveries through
//! their whole life (created, assigned, picked up, completed: 40 000 events), encoded as
//! the log holds them (Confluent framing, Avro), decoded and folded each iteration.
//!
//! `analytics/read/readers_N`: the same records in an embedded log of 8 partitions, read
//! through `Analytics::read` by 1 and by 2 readers (one per core here), to show the read
//! scaling with the partitions read in parallel.
//!
//!   cargo bench -p analytics --bench fold

use analytics::Analytics;
use bytes::Bytes;
use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schemas::Codec;
use schemas::events::*;
use std::hint::black_box;
use std::sync::Arc;
use storage::{EventLog, NewRecord, TopicSpec};
use storage_embedded::EmbeddedLog;
use uuid::Uuid;

const DELIVERIES: usize = 10_000;
const PARTITIONS: u32 = 8;

fn records(codec: &Codec) -> Vec<Vec<u8>> {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 1, 8, 0, 0)
        .single()
        .expect("a time");
    let place = Location {
        latitude: 47.6,
        longitude: -122.3,
        altitude: 0.0,
    };
    let mut out = Vec::with_capacity(DELIVERIES * 4);
    for i in 0..DELIVERIES {
        let id = format!("delivery-{i}");
        let drone = format!("drone-{}", i % 100);
        let at = start + TimeDelta::seconds(i as i64 * 30);
        let events = [
            Event::DeliveryCreated(DeliveryCreated {
                owner_id: format!("account-{}", i % 50),
                pickup: place,
                dropoff: place,
                pickup_time: None,
                deadline: Some(at + TimeDelta::minutes(40)),
                expedited: false,
                confirmation_required: ConfirmationType::None,
                package_id: format!("package-{i}"),
                package_weight_kg: 1.0,
            }),
            Event::DroneAssigned(DroneAssigned {
                delivery_id: id.clone(),
                drone_id: drone.clone(),
                route_km: 7.5,
                attempt: String::new(),
            }),
            Event::DeliveryPickedUp(DeliveryPickedUp {
                delivery_id: id.clone(),
                drone_id: drone.clone(),
                at: at + TimeDelta::minutes(8),
            }),
            Event::DeliveryCompleted(DeliveryCompleted {
                delivery_id: id.clone(),
                drone_id: drone.clone(),
                confirmation_type: ConfirmationType::None,
                location: place,
                at: at + TimeDelta::minutes(30),
                blob: None,
            }),
        ];
        for (n, event) in events.into_iter().enumerate() {
            let envelope = Envelope {
                metadata: EventMetadata {
                    event_id: Uuid::new_v4(),
                    aggregate_id: id.clone(),
                    aggregate_version: n as u64 + 1,
                    occurred_at: at + TimeDelta::minutes(n as i64 * 10),
                    causation_id: "bench".into(),
                    correlation_id: "bench".into(),
                    principal: "workflow".into(),
                },
                event,
            };
            out.push(codec.encode(&envelope).expect("encodes"));
        }
    }
    out
}

fn fold(c: &mut Criterion) {
    let codec = Codec::new().expect("the codec");
    let records = records(&codec);
    let mut group = c.benchmark_group("analytics");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("decode_and_fold", |b| {
        b.iter(|| {
            let mut analytics = Analytics::default();
            for record in &records {
                for envelope in codec.decode_all(record).expect("decodes") {
                    analytics.fold(Topic::Deliveries, envelope);
                }
            }
            black_box(analytics.report(None, None))
        })
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let codec = Codec::new().expect("the codec");
    let records = records(&codec);
    let dir = tempfile::tempdir().expect("dir");
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    runtime.block_on(async {
        let topics = [(Topic::Deliveries, PARTITIONS), (Topic::Drones, 1)];
        let specs: Vec<TopicSpec> = topics
            .iter()
            .map(|(t, partitions)| TopicSpec {
                name: t.name().into(),
                partitions: *partitions,
            })
            .collect();
        log.create_topics(&specs).await.expect("topics");
        let keyed: Vec<NewRecord> = records
            .iter()
            .enumerate()
            .map(|(n, value)| NewRecord {
                topic: Topic::Deliveries.name().into(),
                key: format!("delivery-{}", n / 4),
                value: Bytes::from(value.clone()),
                headers: Vec::new(),
            })
            .collect();
        for chunk in keyed.chunks(1_000) {
            log.append(chunk.to_vec()).await.expect("append");
        }
    });
    let report = |readers| {
        runtime.block_on(async {
            let read = Analytics::read(log.clone(), &codec, readers, |_, _| {});
            read.await.expect("read").report(None, None)
        })
    };
    let one = serde_json::to_value(report(1)).expect("json");
    assert_eq!(
        one,
        serde_json::to_value(report(2)).expect("json"),
        "same report"
    );
    let mut group = c.benchmark_group("analytics/read");
    group.throughput(Throughput::Elements(records.len() as u64));
    for readers in [1, 2] {
        group.bench_function(format!("readers_{readers}"), |b| {
            b.iter(|| black_box(report(readers)))
        });
    }
    group.finish();
}

criterion_group!(benches, fold, read);
criterion_main!(benches);
