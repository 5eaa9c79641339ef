//! What-if replay speed: the demand of a busy day — 3,000 deliveries over 10 hours (one
//! every 12 s, a tenth expedited, each due within 45 minutes) for 40 drones around a
//! city — re-dispatched twice per iteration (the recorded settings, and `fleet=30`),
//! flights, telemetry every second and batteries simulated.
//!
//!   cargo bench -p analytics --bench what_if

use analytics::{Changes, Fold, Recording};
use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::{DispatchPolicy, FlightModel, toward};
use schemas::events::*;
use std::hint::black_box;
use uuid::Uuid;

const DELIVERIES: usize = 3_000;
const DRONES: usize = 40;

fn envelope(id: &str, at: chrono::DateTime<Utc>, event: Event) -> Envelope {
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::nil(),
            aggregate_id: id.to_owned(),
            aggregate_version: 1,
            occurred_at: at,
            causation_id: String::new(),
            correlation_id: String::new(),
            principal: "bench".into(),
        },
        event,
    }
}

fn recording() -> Recording {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 2, 8, 0, 0)
        .single()
        .expect("a time");
    let centre = Location {
        latitude: 47.61,
        longitude: -122.33,
        altitude: 0.0,
    };
    // A point within about 3 km of the centre, from a reproducible sequence.
    let mut seed = 7u64;
    let mut near = |km: f64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (a, b) = (
            (seed >> 40) as f64 / 16_777_216.0,
            (seed >> 16 & 0xff_ffff) as f64 / 16_777_216.0,
        );
        let edge = Location {
            latitude: centre.latitude + 0.03 * (a * std::f64::consts::TAU).cos(),
            longitude: centre.longitude + 0.045 * (a * std::f64::consts::TAU).sin(),
            altitude: 0.0,
        };
        toward(&centre, &edge, km * b)
    };
    let mut r = Recording::default();
    for i in 0..DRONES {
        let home = near(3.0);
        r.fold(
            Topic::Drones,
            envelope(
                &format!("drone-{i:02}"),
                start,
                Event::DroneRegistered(DroneRegistered {
                    model: "X8".into(),
                    payload_kg: 5.0,
                    range_km: 60.0,
                    speed_mps: 15.0,
                    home,
                }),
            ),
        );
    }
    for i in 0..DELIVERIES {
        let at = start + TimeDelta::milliseconds(i as i64 * 12_000);
        let (pickup, dropoff) = (near(3.0), near(3.0));
        r.fold(
            Topic::Deliveries,
            envelope(
                &format!("delivery-{i:05}"),
                at,
                Event::DeliveryCreated(DeliveryCreated {
                    owner_id: "acme".into(),
                    pickup,
                    dropoff,
                    pickup_time: None,
                    deadline: Some(at + TimeDelta::minutes(45)),
                    expedited: i % 10 == 0,
                    confirmation_required: ConfirmationType::None,
                    package_id: format!("package-{i}"),
                    package_weight_kg: 1.0,
                }),
            ),
        );
    }
    r
}

fn what_if(c: &mut Criterion) {
    let recording = recording();
    let changes: Changes = "fleet=30".parse().expect("changes");
    let mut group = c.benchmark_group("analytics/what-if");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * DELIVERIES as u64));
    group.bench_function("busy_day", |b| {
        b.iter(|| {
            black_box(recording.what_if(
                &FlightModel::default(),
                &DispatchPolicy::default(),
                &changes,
                None,
                None,
            ))
        })
    });
    group.finish();
    let report = recording.what_if(
        &FlightModel::default(),
        &DispatchPolicy::default(),
        &changes,
        None,
        None,
    );
    eprintln!("{}", report.table());
}

criterion_group!(benches, what_if);
criterion_main!(benches);
