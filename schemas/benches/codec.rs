//! Encode and decode of one event, by the generated code and, for comparison, by
//! apache-avro's generic reader (the path older schema versions take).

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use schemas::{
    Codec, ConfirmationType, DeliveryCreated, DronePositionReported, Envelope, Event,
    EventMetadata, Location, SCHEMA_FILES,
};
use std::hint::black_box;
use uuid::Uuid;

fn envelope(event: Event) -> Envelope {
    let at = Utc
        .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .expect("date");
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::from_u128(42),
            aggregate_id: "3f6c1f0e-8d4b-4c1e-9a57-2b7e5a3f1c88".into(),
            aggregate_version: 1,
            occurred_at: at,
            causation_id: "key:order-1001".into(),
            correlation_id: "key:order-1001".into(),
            principal: "operator".into(),
        },
        event,
    }
}

fn here() -> Location {
    Location {
        latitude: 47.61,
        longitude: -122.33,
        altitude: 0.0,
    }
}

fn bench(c: &mut Criterion) {
    let codec = Codec::new().expect("schemas load");
    let created = envelope(Event::DeliveryCreated(DeliveryCreated {
        owner_id: "0c7d2a8e-1f3b-4a5c-9d6e-7f8a9b0c1d2e".into(),
        pickup: here(),
        dropoff: here(),
        pickup_time: None,
        deadline: Some(
            Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0)
                .single()
                .expect("date"),
        ),
        expedited: false,
        confirmation_required: ConfirmationType::None,
        package_id: "5e4d3c2b-1a09-4f8e-8d7c-6b5a4f3e2d1c".into(),
        package_weight_kg: 1.2,
    }));
    let report = envelope(Event::DronePositionReported(DronePositionReported {
        position: here(),
        battery_pct: 88.0,
        at: Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 1)
            .single()
            .expect("date"),
    }));
    for (name, sample) in [
        ("DeliveryCreated", &created),
        ("DronePositionReported", &report),
    ] {
        let bytes = codec.encode(sample).expect("encodes");
        c.bench_function(&format!("codec/encode/{name}"), |b| {
            b.iter(|| codec.encode(black_box(sample)))
        });
        c.bench_function(&format!("codec/decode/{name}"), |b| {
            b.iter(|| codec.decode(black_box(&bytes)))
        });
        let file = SCHEMA_FILES
            .iter()
            .find(|f| f.current && f.subject == name)
            .expect("schema");
        let schema = apache_avro::Schema::parse_str(file.text).expect("parses");
        c.bench_function(&format!("codec/apache-avro-generic-decode/{name}"), |b| {
            b.iter(|| apache_avro::from_avro_datum(&schema, &mut black_box(&bytes[5..]), None))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
