//! The codec against the checked-in schemas: every event type round-trips, the wire
//! framing is Confluent's, bad input is an error, and every schema version ever checked in
//! stays readable by the current one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use chrono::{DateTime, Duration, TimeZone, Utc};
use schemas::*;
use uuid::Uuid;

// ---- fixtures ----------------------------------------------------------------------

fn avro_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("avro")
}

#[derive(Debug, Clone)]
struct ManifestEntry {
    id: u32,
    subject: String,
    version: u32,
    file: String,
}

fn manifest() -> Vec<ManifestEntry> {
    let text = std::fs::read_to_string(avro_dir().join("manifest.json")).expect("manifest");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    json.as_array()
        .expect("manifest is a list")
        .iter()
        .map(|e| ManifestEntry {
            id: u32::try_from(e["id"].as_u64().expect("id")).expect("id fits u32"),
            subject: e["subject"].as_str().expect("subject").to_owned(),
            version: u32::try_from(e["version"].as_u64().expect("version")).expect("u32"),
            file: e["file"].as_str().expect("file").to_owned(),
        })
        .collect()
}

fn schema_file(file: &str) -> Schema {
    let text = std::fs::read_to_string(avro_dir().join(file)).expect("schema file");
    Schema::parse_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The manifest entry of the current (highest) version of `subject`.
fn current(manifest: &[ManifestEntry], subject: &str) -> ManifestEntry {
    manifest
        .iter()
        .filter(|e| e.subject == subject)
        .max_by_key(|e| e.version)
        .cloned()
        .expect("subject in manifest")
}

fn codec() -> Codec {
    Codec::new().expect("embedded schemas load")
}

/// A time with microsecond precision (what Avro `timestamp-micros` keeps).
fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 5, 1, 12, minute, 7)
        .single()
        .expect("valid date")
        + Duration::microseconds(123_456)
}

fn here() -> Location {
    Location {
        latitude: 47.6062,
        longitude: -122.3321,
        altitude: 56.5,
    }
}

fn there() -> Location {
    Location {
        latitude: -33.8688,
        longitude: 151.2093,
        altitude: 0.0,
    }
}

fn envelope(aggregate_id: &str, version: u64, event: Event) -> Envelope {
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0 + version as u128),
            aggregate_id: aggregate_id.to_owned(),
            aggregate_version: version,
            occurred_at: at(0),
            causation_id: format!("cmd-{version}"),
            correlation_id: "req-42".to_owned(),
            principal: "operator".into(),
        },
        event,
    }
}

// Adding an `Event` variant breaks this match: a reminder to add it to `samples()`.
fn _every_variant_has_a_sample(event: &Event) {
    match event {
        Event::AccountRegistered(_)
        | Event::AccountSuspended(_)
        | Event::AccountReactivated(_)
        | Event::AccountKeyRotated(_)
        | Event::DroneRegistered(_)
        | Event::DronePositionReported(_)
        | Event::DroneGrounded(_)
        | Event::DroneReturned(_)
        | Event::DroneDocked(_)
        | Event::PackageRegistered(_)
        | Event::DeliveryCreated(_)
        | Event::DeliveryRescheduled(_)
        | Event::DroneAssigned(_)
        | Event::DeliveryPickedUp(_)
        | Event::DeliveryCompleted(_)
        | Event::DeliveryCancelled(_)
        | Event::DeliveryFailed(_)
        | Event::DroneUnassigned(_)
        | Event::AssignmentAbandoned(_)
        | Event::NotificationRequested(_) => {}
    }
}

/// One sample of every event type; types with optional fields appear with them all set
/// and all unset.
fn samples() -> Vec<Envelope> {
    let delivery = |pickup_time, deadline, expedited, confirmation_required| {
        Event::DeliveryCreated(DeliveryCreated {
            owner_id: "acct-1".into(),
            pickup: here(),
            dropoff: there(),
            pickup_time,
            deadline,
            expedited,
            confirmation_required,
            package_id: "pkg-1".into(),
            package_weight_kg: 2.5,
        })
    };
    vec![
        envelope(
            "acct-1",
            1,
            Event::AccountRegistered(AccountRegistered {
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into(),
                api_key_hash: "ab12".into(),
            }),
        ),
        envelope(
            "acct-1",
            2,
            Event::AccountSuspended(AccountSuspended {
                reason: Some("unpaid invoices".into()),
            }),
        ),
        envelope(
            "acct-1",
            3,
            Event::AccountSuspended(AccountSuspended { reason: None }),
        ),
        envelope(
            "acct-1",
            4,
            Event::AccountReactivated(AccountReactivated {}),
        ),
        envelope(
            "acct-1",
            5,
            Event::AccountKeyRotated(AccountKeyRotated {
                api_key_hash: "cd34".into(),
            }),
        ),
        envelope(
            "drone-1",
            1,
            Event::DroneRegistered(DroneRegistered {
                model: "DJI-Δ 🚁".into(),
                payload_kg: 5.0,
                range_km: 30.25,
                speed_mps: 16.7,
                home: here(),
            }),
        ),
        envelope(
            "drone-1",
            1,
            Event::DronePositionReported(DronePositionReported {
                position: there(),
                battery_pct: 87.5,
                at: at(3),
            }),
        ),
        envelope(
            "drone-1",
            2,
            Event::DroneGrounded(DroneGrounded {
                reason: Some("storm".into()),
            }),
        ),
        envelope(
            "drone-1",
            3,
            Event::DroneGrounded(DroneGrounded { reason: None }),
        ),
        envelope("drone-1", 4, Event::DroneReturned(DroneReturned {})),
        envelope("drone-1", 4, Event::DroneDocked(DroneDocked {})),
        envelope(
            "pkg-1",
            1,
            Event::PackageRegistered(PackageRegistered {
                size: PackageSize::Small,
                weight_kg: 0.4,
                tag: Some("fragile".into()),
            }),
        ),
        envelope(
            "pkg-2",
            1,
            Event::PackageRegistered(PackageRegistered {
                size: PackageSize::Medium,
                weight_kg: 3.0,
                tag: None,
            }),
        ),
        envelope(
            "pkg-3",
            1,
            Event::PackageRegistered(PackageRegistered {
                size: PackageSize::Large,
                weight_kg: 12.0,
                tag: Some(String::new()),
            }),
        ),
        envelope(
            "dlv-1",
            1,
            delivery(Some(at(10)), Some(at(40)), true, ConfirmationType::Picture),
        ),
        envelope(
            "dlv-2",
            1,
            delivery(None, None, false, ConfirmationType::None),
        ),
        envelope(
            "dlv-3",
            1,
            delivery(None, Some(at(50)), false, ConfirmationType::FingerPrint),
        ),
        envelope(
            "dlv-1",
            2,
            Event::DeliveryRescheduled(DeliveryRescheduled {
                pickup: there(),
                dropoff: here(),
                pickup_time: Some(at(20)),
                deadline: Some(at(55)),
            }),
        ),
        envelope(
            "dlv-2",
            2,
            Event::DeliveryRescheduled(DeliveryRescheduled {
                pickup: there(),
                dropoff: here(),
                pickup_time: None,
                deadline: None,
            }),
        ),
        envelope(
            "dlv-1",
            3,
            Event::DroneAssigned(DroneAssigned {
                delivery_id: "dlv-1".into(),
                drone_id: "drone-1".into(),
                route_km: 12.75,
                attempt: "0b8c7c7e-52b1-4f4e-9a55-3f6d4c1e2a10".into(),
            }),
        ),
        envelope(
            "drone-1",
            5,
            Event::DroneAssigned(DroneAssigned {
                delivery_id: "dlv-1".into(),
                drone_id: "drone-1".into(),
                route_km: 12.75,
                attempt: "0b8c7c7e-52b1-4f4e-9a55-3f6d4c1e2a10".into(),
            }),
        ),
        envelope(
            "dlv-1",
            4,
            Event::DeliveryPickedUp(DeliveryPickedUp {
                delivery_id: "dlv-1".into(),
                drone_id: "drone-1".into(),
                at: at(22),
            }),
        ),
        envelope(
            "dlv-1",
            5,
            Event::DeliveryCompleted(DeliveryCompleted {
                delivery_id: "dlv-1".into(),
                drone_id: "drone-1".into(),
                confirmation_type: ConfirmationType::Voice,
                location: there(),
                at: at(34),
                blob: Some("base64:AAAA".into()),
            }),
        ),
        envelope(
            "drone-1",
            7,
            Event::DeliveryCompleted(DeliveryCompleted {
                delivery_id: "dlv-1".into(),
                drone_id: "drone-1".into(),
                confirmation_type: ConfirmationType::None,
                location: there(),
                at: at(34),
                blob: None,
            }),
        ),
        envelope(
            "dlv-2",
            3,
            Event::DeliveryCancelled(DeliveryCancelled {
                reason: Some("changed my mind".into()),
            }),
        ),
        envelope(
            "dlv-3",
            2,
            Event::DeliveryCancelled(DeliveryCancelled { reason: None }),
        ),
        envelope(
            "dlv-3",
            3,
            Event::DeliveryFailed(DeliveryFailed {
                reason: "no drone in range".into(),
            }),
        ),
        envelope(
            "drone-1",
            8,
            Event::DroneUnassigned(DroneUnassigned {
                delivery_id: "dlv-2".into(),
                drone_id: "drone-1".into(),
                reason: "delivery rescheduled".into(),
                attempt: "0b8c7c7e-52b1-4f4e-9a55-3f6d4c1e2a10".into(),
            }),
        ),
        envelope(
            "dlv-1",
            4,
            Event::AssignmentAbandoned(AssignmentAbandoned {
                delivery_id: "dlv-1".into(),
                drone_id: "drone-1".into(),
                attempt: "0b8c7c7e-52b1-4f4e-9a55-3f6d4c1e2a10".into(),
                reason: "the reservation's commit was in doubt".into(),
            }),
        ),
        envelope(
            "dlv-1",
            6,
            Event::NotificationRequested(NotificationRequested {
                email: Some("ada@example.com".into()),
                sms: Some("+15550100".into()),
                webhook: Some("https://hooks.example.com/dlv-1".into()),
            }),
        ),
        envelope(
            "dlv-2",
            4,
            Event::NotificationRequested(NotificationRequested {
                email: None,
                sms: None,
                webhook: None,
            }),
        ),
    ]
}

fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(datum);
    bytes
}

fn record_fields(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Record(fields) => fields,
        other => panic!("expected a record, got {other:?}"),
    }
}

// ---- round trips and framing ---------------------------------------------------------

#[test]
fn every_event_type_round_trips() {
    let codec = codec();
    for sample in samples() {
        let bytes = codec.encode(&sample).expect("encodes");
        let decoded = codec.decode(&bytes).expect("decodes");
        assert_eq!(decoded, sample);
    }
}

/// Records of the manifest that frame events rather than being one.
const FRAMES: [&str; 3] = ["Commit", "WriterHeartbeat", "WriterMarker"];

#[test]
fn samples_cover_every_subject_in_the_manifest() {
    let subjects: BTreeSet<_> = manifest()
        .into_iter()
        .map(|e| e.subject)
        .filter(|s| !FRAMES.contains(&s.as_str()))
        .collect();
    let sampled: BTreeSet<_> = samples()
        .iter()
        .map(|s| s.event.type_name().to_owned())
        .collect();
    assert_eq!(sampled, subjects);
}

#[test]
fn messages_use_the_confluent_framing_with_the_current_schema_id() {
    let codec = codec();
    let manifest = manifest();
    for sample in samples() {
        let subject = sample.event.type_name();
        let current = current(&manifest, subject);
        assert_eq!(codec.schema_id(subject), Some(current.id), "{subject}");

        let bytes = codec.encode(&sample).expect("encodes");
        assert_eq!(bytes[0], 0, "magic byte");
        assert_eq!(
            bytes[1..5],
            current.id.to_be_bytes(),
            "schema id, big-endian"
        );

        // The datum is plain Avro of the checked-in file: any Avro reader can read it.
        let schema = schema_file(&current.file);
        let mut datum = &bytes[5..];
        let value = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("datum");
        assert!(
            datum.is_empty(),
            "{subject}: the datum is the rest of the message"
        );
        assert!(
            value.validate(&schema),
            "{subject}: datum matches the schema"
        );
    }
}

/// The encoding is generated from the `.avsc` files: an independent Avro library reading
/// a message with the checked-in file and writing it again gets the same bytes, so the
/// generated shape (field order, types, unions, enums) is exactly the file's.
#[test]
fn the_generated_encoding_is_byte_for_byte_apache_avros() {
    let codec = codec();
    let manifest = manifest();
    for sample in samples() {
        let subject = sample.event.type_name();
        let schema = schema_file(&current(&manifest, subject).file);
        let ours = codec.encode(&sample).expect("encodes");
        let value = apache_avro::from_avro_datum(&schema, &mut &ours[5..], None).expect("datum");
        let theirs = apache_avro::to_avro_datum(&schema, value).expect("re-encodes");
        assert_eq!(ours[5..], theirs[..], "{subject}");
        // And their encoding decodes to the sample.
        let decoded = codec
            .decode(&frame(current(&manifest, subject).id, &theirs))
            .expect("decodes");
        assert_eq!(decoded, sample, "{subject}");
    }
}

#[test]
fn fields_keep_their_camel_case_names_and_values() {
    let codec = codec();
    // DeliveryCreated with every optional field set.
    let sample = samples()
        .into_iter()
        .find(|s| matches!(&s.event, Event::DeliveryCreated(d) if d.expedited && d.pickup_time.is_some()))
        .expect("a full DeliveryCreated sample");
    let sample = &sample;
    let bytes = codec.encode(sample).expect("encodes");
    let schema = schema_file("DeliveryCreated.v3.avsc");
    let value = apache_avro::from_avro_datum(&schema, &mut &bytes[5..], None).expect("datum");
    let fields: HashMap<_, _> = record_fields(value).into_iter().collect();
    let metadata: HashMap<_, _> = record_fields(fields["metadata"].clone())
        .into_iter()
        .collect();
    assert_eq!(metadata["aggregateId"], Value::String("dlv-1".into()));
    assert_eq!(metadata["aggregateVersion"], Value::Long(1));
    assert_eq!(
        metadata["occurredAt"],
        Value::TimestampMicros(at(0).timestamp_micros())
    );
    assert_eq!(fields["ownerId"], Value::String("acct-1".into()));
    assert_eq!(fields["expedited"], Value::Boolean(true));
    assert_eq!(
        fields["pickupTime"],
        Value::Union(
            1,
            Box::new(Value::TimestampMicros(at(10).timestamp_micros()))
        )
    );
    assert_eq!(
        fields["confirmationRequired"],
        Value::Enum(2, "Picture".into())
    );
}

#[test]
fn unknown_subject_has_no_schema_id() {
    assert_eq!(codec().schema_id("NoSuchEvent"), None);
}

#[test]
fn codec_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Codec>();
}

// ---- bad input -------------------------------------------------------------------------

#[test]
fn short_messages_are_truncated() {
    let codec = codec();
    for len in 0..5 {
        let err = codec.decode(&vec![0; len]).expect_err("too short");
        assert!(
            matches!(err, CodecError::Truncated { len: l } if l == len),
            "{err}"
        );
    }
}

#[test]
fn bad_magic_byte_is_an_error() {
    let codec = codec();
    let mut bytes = codec.encode(&samples()[0]).expect("encodes");
    bytes[0] = 1;
    let err = codec.decode(&bytes).expect_err("bad magic");
    assert!(matches!(err, CodecError::BadMagic(1)), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn unknown_schema_id_is_an_error() {
    let codec = codec();
    let bytes = codec.encode(&samples()[0]).expect("encodes");
    let unknown = frame(999_999, &bytes[5..]);
    let err = codec.decode(&unknown).expect_err("unknown id");
    assert!(matches!(err, CodecError::UnknownSchemaId(999_999)), "{err}");
    assert!(err.to_string().contains("999999"), "{err}");
}

#[test]
fn every_truncated_datum_is_an_error_not_a_panic() {
    let codec = codec();
    for sample in samples() {
        let bytes = codec.encode(&sample).expect("encodes");
        for len in 5..bytes.len() {
            assert!(
                codec.decode(&bytes[..len]).is_err(),
                "{} cut to {len} of {} bytes decoded",
                sample.event.type_name(),
                bytes.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let codec = codec();
    let mut bytes = codec.encode(&samples()[0]).expect("encodes");
    bytes.push(0);
    let err = codec.decode(&bytes).expect_err("trailing byte");
    assert!(
        matches!(err, CodecError::TrailingBytes { count: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_datum_of_another_schema_is_an_error() {
    let codec = codec();
    // An AccountRegistered datum framed with DeliveryFailed's id: the fields do not line up.
    let bytes = codec.encode(&samples()[0]).expect("encodes");
    let id = codec.schema_id("DeliveryFailed").expect("id");
    assert!(codec.decode(&frame(id, &bytes[5..])).is_err());
}

#[test]
fn an_aggregate_version_beyond_avro_long_is_an_error() {
    let mut sample = samples()[0].clone();
    sample.metadata.aggregate_version = u64::MAX;
    let err = codec().encode(&sample).expect_err("out of range");
    assert!(matches!(err, CodecError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("aggregateVersion"), "{err}");
}

// ---- schema evolution -------------------------------------------------------------------

/// A `DeliveryCreated` datum of schema version 1, as an old producer wrote it, with the
/// manifest id of that version.
fn delivery_created_v1(event_id: Uuid) -> (u32, Vec<u8>) {
    let manifest = manifest();
    let v1 = manifest
        .iter()
        .find(|e| e.subject == "DeliveryCreated" && e.version == 1)
        .expect("v1 in manifest");
    let schema = schema_file(&v1.file);
    let location = |lat: f64, lon: f64| {
        Value::Record(vec![
            ("latitude".into(), Value::Double(lat)),
            ("longitude".into(), Value::Double(lon)),
            ("altitude".into(), Value::Double(0.0)),
        ])
    };
    let old = Value::Record(vec![
        (
            "metadata".into(),
            Value::Record(vec![
                ("eventId".into(), Value::Uuid(event_id)),
                ("aggregateId".into(), Value::String("dlv-old".into())),
                ("aggregateVersion".into(), Value::Long(1)),
                (
                    "occurredAt".into(),
                    Value::TimestampMicros(at(1).timestamp_micros()),
                ),
                ("causationId".into(), Value::String("cmd-old".into())),
                ("correlationId".into(), Value::String("req-old".into())),
            ]),
        ),
        ("ownerId".into(), Value::String("acct-1".into())),
        ("pickup".into(), location(1.0, 2.0)),
        ("dropoff".into(), location(3.0, 4.0)),
        ("pickupTime".into(), Value::Union(0, Box::new(Value::Null))),
        (
            "deadline".into(),
            Value::Union(
                1,
                Box::new(Value::TimestampMicros(at(30).timestamp_micros())),
            ),
        ),
        (
            "confirmationRequired".into(),
            Value::Enum(3, "Voice".into()),
        ),
        ("packageId".into(), Value::String("pkg-9".into())),
        ("packageWeightKg".into(), Value::Double(1.5)),
    ]);
    let datum = apache_avro::to_avro_datum(&schema, old).expect("valid v1 datum");
    (v1.id, datum)
}

#[test]
fn delivery_created_v1_reads_as_not_expedited() {
    let event_id = Uuid::from_u128(7);
    let (v1, datum) = delivery_created_v1(event_id);

    let decoded = codec().decode(&frame(v1, &datum)).expect("v1 decodes");

    assert_eq!(decoded.metadata.event_id, event_id);
    assert_eq!(decoded.metadata.aggregate_id, "dlv-old");
    assert_eq!(decoded.metadata.occurred_at, at(1));
    assert_eq!(
        decoded.event,
        Event::DeliveryCreated(DeliveryCreated {
            owner_id: "acct-1".into(),
            pickup: Location {
                latitude: 1.0,
                longitude: 2.0,
                altitude: 0.0
            },
            dropoff: Location {
                latitude: 3.0,
                longitude: 4.0,
                altitude: 0.0
            },
            pickup_time: None,
            deadline: Some(at(30)),
            expedited: false, // the v2 default
            confirmation_required: ConfirmationType::Voice,
            package_id: "pkg-9".into(),
            package_weight_kg: 1.5,
        })
    );
}

/// Writes each sample with every older schema version of its subject (the fields that
/// version has) and checks the current reader gets the sample back, with the fields the
/// old version lacks at their defaults.
#[test]
fn every_older_version_decodes_with_the_current_reader() {
    let codec = codec();
    let manifest = manifest();
    let samples = samples();
    let mut checked = 0;
    for old in &manifest {
        let current = current(&manifest, &old.subject);
        if old.version == current.version {
            continue;
        }
        let old_schema = schema_file(&old.file);
        let current_schema = schema_file(&current.file);
        let Schema::Record(old_record) = &old_schema else {
            panic!("{}: not a record", old.file)
        };
        let Schema::Record(current_record) = &current_schema else {
            panic!("{}: not a record", current.file)
        };
        for sample in samples
            .iter()
            .filter(|s| s.event.type_name() == old.subject)
        {
            let bytes = codec.encode(sample).expect("encodes");
            let value = apache_avro::from_avro_datum(&current_schema, &mut &bytes[5..], None)
                .expect("current datum");
            let mut by_name: HashMap<_, _> = record_fields(value).into_iter().collect();
            // Fields the current version dropped get their default in the old datum.
            let old_value = Value::Record(
                old_record
                    .fields
                    .iter()
                    .map(|f| {
                        if f.name == "metadata" {
                            let current_meta = field_schema(current_record, "metadata");
                            let value = reshape(&by_name["metadata"], current_meta, &f.schema);
                            return (f.name.clone(), value);
                        }
                        let value = by_name.get(&f.name).cloned().unwrap_or_else(|| {
                            let default = f.default.clone().unwrap_or_else(|| {
                                panic!("{}: dropped field {} has no default", old.file, f.name)
                            });
                            Value::from(default)
                                .resolve(&f.schema)
                                .expect("default fits the field")
                        });
                        (f.name.clone(), value)
                    })
                    .collect(),
            );
            let old_datum = apache_avro::to_avro_datum(&old_schema, old_value)
                .unwrap_or_else(|e| panic!("{}: {e}", old.file));

            let decoded = codec
                .decode(&frame(old.id, &old_datum))
                .unwrap_or_else(|e| panic!("{} read as current: {e}", old.file));

            // What the current reader should see: the sample's values for the fields the
            // old version has, the current schema's defaults for the others.
            for field in &current_record.fields {
                if old_record.fields.iter().all(|f| f.name != field.name) {
                    let default = field.default.clone().unwrap_or_else(|| {
                        panic!("{}: new field {} has no default", current.file, field.name)
                    });
                    let default = Value::from(default)
                        .resolve(&field.schema)
                        .expect("default fits the field");
                    by_name.insert(field.name.clone(), default);
                }
            }
            // Metadata fields the old version lacks read as their defaults too.
            let old_meta = field_schema(old_record, "metadata");
            let current_meta = field_schema(current_record, "metadata");
            let metadata = reshape(&by_name["metadata"], old_meta, current_meta);
            by_name.insert("metadata".into(), metadata);
            let expected = Value::Record(
                current_record
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), by_name[&f.name].clone()))
                    .collect(),
            );
            let reencoded = codec.encode(&decoded).expect("re-encodes");
            let actual = apache_avro::from_avro_datum(&current_schema, &mut &reencoded[5..], None)
                .expect("current datum");
            assert_eq!(actual, expected, "{} read as {}", old.file, current.file);
            checked += 1;
        }
    }
    assert!(checked > 0, "at least one older version is checked in");
}

fn field_schema<'a>(record: &'a apache_avro::schema::RecordSchema, name: &str) -> &'a Schema {
    &record
        .fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .schema
}

/// A record value of schema `from` as schema `to` has it: the fields both have keep
/// their values, the others of `to` take their defaults.
fn reshape(value: &Value, from: &Schema, to: &Schema) -> Value {
    let (Value::Record(fields), Schema::Record(from), Schema::Record(to)) = (value, from, to)
    else {
        panic!("records expected")
    };
    Value::Record(
        to.fields
            .iter()
            .map(|f| {
                let kept = from
                    .fields
                    .iter()
                    .any(|g| g.name == f.name)
                    .then(|| fields.iter().find(|(n, _)| *n == f.name))
                    .flatten();
                let value = match kept {
                    Some((_, v)) => v.clone(),
                    None => Value::from(f.default.clone().expect("a default"))
                        .resolve(&f.schema)
                        .expect("default fits the field"),
                };
                (f.name.clone(), value)
            })
            .collect(),
    )
}

#[test]
fn every_checked_in_version_is_compatible_with_the_current_one() {
    let manifest = manifest();
    for entry in &manifest {
        let current = current(&manifest, &entry.subject);
        let writer = schema_file(&entry.file);
        let reader = schema_file(&current.file);
        SchemaCompatibility::can_read(&writer, &reader).unwrap_or_else(|e| {
            panic!(
                "{} (id {}) cannot be read as {} (id {}): {e}",
                entry.file, entry.id, current.file, current.id
            )
        });
    }
}

// ---- the manifest ---------------------------------------------------------------------

#[test]
fn manifest_ids_are_unique_and_every_schema_file_is_listed() {
    let manifest = manifest();
    let mut ids = HashSet::new();
    let mut versions = HashSet::new();
    for e in &manifest {
        assert!(ids.insert(e.id), "id {} is used twice", e.id);
        assert!(
            versions.insert((e.subject.clone(), e.version)),
            "{} v{} is listed twice",
            e.subject,
            e.version
        );
        assert_eq!(e.file, format!("{}.v{}.avsc", e.subject, e.version));
        let schema = schema_file(&e.file);
        let name = schema.name().expect("named").fullname(None);
        assert_eq!(name, format!("drone_delivery.events.{}", e.subject));
    }

    let listed: BTreeSet<_> = manifest.iter().map(|e| e.file.clone()).collect();
    let on_disk: BTreeSet<_> = std::fs::read_dir(avro_dir())
        .expect("avro dir")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .filter(|name| name.ends_with(".avsc"))
        .collect();
    assert_eq!(
        on_disk, listed,
        "every .avsc file is in the manifest and back"
    );
}

#[test]
fn every_schema_starts_with_the_metadata_record() {
    for e in manifest()
        .into_iter()
        .filter(|e| !FRAMES.contains(&e.subject.as_str()))
    {
        let Schema::Record(record) = schema_file(&e.file) else {
            panic!("{}: not a record", e.file)
        };
        let first = record.fields.first().expect("fields");
        assert_eq!(first.name, "metadata", "{}", e.file);
        let Schema::Record(metadata) = &first.schema else {
            panic!("{}: metadata is not a record", e.file)
        };
        let names: Vec<_> = metadata.fields.iter().map(|f| f.name.as_str()).collect();
        let base = [
            "eventId",
            "aggregateId",
            "aggregateVersion",
            "occurredAt",
            "causationId",
            "correlationId",
        ];
        // The versions that carry API keys also name the principal.
        let with_principal: Vec<_> = base.iter().copied().chain(["principal"]).collect();
        assert!(
            names == base || names == with_principal,
            "{}: {names:?}",
            e.file
        );
        if e.version == current(&manifest(), &e.subject).version {
            assert_eq!(names, with_principal, "{}: the current version", e.file);
        }
    }
}

#[test]
fn the_codec_loads_every_manifest_entry() {
    // `Codec::new` embeds the files with include_str!; its ids must be the manifest's.
    let codec = codec();
    let manifest = manifest();
    let subjects: BTreeSet<_> = manifest.iter().map(|e| e.subject.clone()).collect();
    for subject in subjects {
        assert_eq!(
            codec.schema_id(&subject),
            Some(current(&manifest, &subject).id),
            "{subject}"
        );
    }
}

// ---- commits: several events in one record -------------------------------------------

#[test]
fn one_event_is_encoded_as_itself_and_several_as_a_commit_that_decodes_to_all() {
    let codec = codec();
    let samples = samples();
    let one = codec.encode_all(&samples[..1]).expect("encodes");
    assert_eq!(one, codec.encode(&samples[0]).expect("encodes"));
    assert_eq!(codec.decode_all(&one).expect("decodes"), samples[..1]);

    let all = codec.encode_all(&samples).expect("encodes");
    assert_eq!(all[1..5], COMMIT_SCHEMA_ID.to_be_bytes());
    assert_eq!(codec.decode_all(&all).expect("decodes"), samples);
    assert!(
        codec.decode(&all).is_err(),
        "a commit is not one event: decode refuses it"
    );
}

/// Any Avro reader can take a commit apart: the outer record with `Commit.v1.avsc`, each
/// event with the file of the schema id it carries.
#[test]
fn a_commit_is_plain_avro_of_the_checked_in_files() {
    let codec = codec();
    let manifest = manifest();
    let samples = samples();
    let bytes = codec.encode_all(&samples).expect("encodes");
    let commit = schema_file("Commit.v1.avsc");
    let value = apache_avro::from_avro_datum(&commit, &mut &bytes[5..], None).expect("commit");
    let fields: HashMap<_, _> = record_fields(value).into_iter().collect();
    let Value::Array(events) = &fields["events"] else {
        panic!("events is an array")
    };
    assert_eq!(events.len(), samples.len());
    for (event, sample) in events.iter().zip(&samples) {
        let inner: HashMap<_, _> = record_fields(event.clone()).into_iter().collect();
        let (Value::Int(id), Value::Bytes(datum)) = (&inner["schemaId"], &inner["datum"]) else {
            panic!("schemaId and datum")
        };
        let entry = manifest
            .iter()
            .find(|e| i64::from(e.id) == i64::from(*id))
            .expect("a manifest id");
        assert_eq!(entry.subject, sample.event.type_name());
        let schema = schema_file(&entry.file);
        let mut rest = &datum[..];
        let value = apache_avro::from_avro_datum(&schema, &mut rest, None).expect("event datum");
        assert!(rest.is_empty() && value.validate(&schema), "{}", entry.file);
    }
}

#[test]
fn a_truncated_or_nested_commit_is_an_error_not_a_panic() {
    let codec = codec();
    let samples = samples();
    let bytes = codec.encode_all(&samples[..3]).expect("encodes");
    for len in 5..bytes.len() {
        assert!(codec.decode_all(&bytes[..len]).is_err(), "cut to {len}");
    }
    // A commit whose event claims to be a commit.
    let nested = Commit {
        events: vec![CommittedEvent {
            schema_id: COMMIT_SCHEMA_ID as i32,
            datum: bytes[5..].to_vec(),
        }],
    };
    let schema = schema_file("Commit.v1.avsc");
    let value = Value::Record(vec![(
        "events".into(),
        Value::Array(vec![Value::Record(vec![
            ("schemaId".into(), Value::Int(nested.events[0].schema_id)),
            ("datum".into(), Value::Bytes(nested.events[0].datum.clone())),
        ])]),
    )]);
    let datum = apache_avro::to_avro_datum(&schema, value).expect("valid commit");
    assert!(codec.decode_all(&frame(COMMIT_SCHEMA_ID, &datum)).is_err());
}

// ---- schema registry ids -------------------------------------------------------------

/// A registry's numbering: unrelated to the manifest's, and overlapping it (registry id 5
/// is not manifest id 5's schema).
fn registry_ids() -> Vec<(u32, u32)> {
    manifest().iter().map(|e| (e.id, e.id * 7 + 3)).collect()
}

fn registry_codec() -> Codec {
    Codec::with_registry_ids(registry_ids()).expect("a codec on registry ids")
}

#[test]
fn with_registry_ids_records_are_framed_with_the_registrys_id() {
    let codec = registry_codec();
    let manifest = manifest();
    for sample in samples() {
        let subject = sample.event.type_name();
        let registry_id = current(&manifest, subject).id * 7 + 3;
        assert_eq!(codec.schema_id(subject), Some(registry_id), "{subject}");
        let bytes = codec.encode(&sample).expect("encodes");
        assert_eq!(bytes[0], 0, "magic byte");
        assert_eq!(bytes[1..5], registry_id.to_be_bytes(), "{subject}");
        let plain = Codec::new()
            .expect("codec")
            .encode(&sample)
            .expect("encodes");
        assert_eq!(bytes[5..], plain[5..], "{subject}: the same datum");
        assert_eq!(codec.decode(&bytes).expect("decodes"), sample);
    }
}

#[test]
fn with_registry_ids_commits_and_frames_carry_the_registrys_ids_inside_too() {
    let codec = registry_codec();
    let samples = samples();
    let bytes = codec.encode_all(&samples).expect("encodes");
    assert_eq!(bytes[1..5], (COMMIT_SCHEMA_ID * 7 + 3).to_be_bytes());
    assert_eq!(codec.decode_all(&bytes).expect("decodes"), samples);
    let commit = schema_file("Commit.v1.avsc");
    let value = apache_avro::from_avro_datum(&commit, &mut &bytes[5..], None).expect("commit");
    let fields: HashMap<_, _> = record_fields(value).into_iter().collect();
    let Value::Array(events) = &fields["events"] else {
        panic!("events is an array")
    };
    for (event, sample) in events.iter().zip(&samples) {
        let inner: HashMap<_, _> = record_fields(event.clone()).into_iter().collect();
        let manifest_id = Codec::new()
            .expect("codec")
            .schema_id(sample.event.type_name())
            .expect("an id");
        assert_eq!(inner["schemaId"], Value::Int((manifest_id * 7 + 3) as i32));
    }

    let marker = WriterMarker {
        writer: "marker-1".into(),
        instance: "command-api-1".into(),
        at: at(2),
    };
    let bytes = codec
        .encode_frame(WRITERMARKER_SCHEMA_ID, &marker)
        .expect("encodes");
    assert_eq!(bytes[1..5], (WRITERMARKER_SCHEMA_ID * 7 + 3).to_be_bytes());
    let back: WriterMarker = codec
        .decode_frame(WRITERMARKER_SCHEMA_ID, &bytes)
        .expect("decodes by the manifest's id");
    assert_eq!(back, marker);
}

#[test]
fn with_registry_ids_an_older_version_is_read_by_its_registry_id() {
    let codec = registry_codec();
    let (v1, datum) = delivery_created_v1(Uuid::from_u128(8));
    let decoded = codec
        .decode(&frame(v1 * 7 + 3, &datum))
        .expect("v1 decodes");
    assert_eq!(decoded.metadata.aggregate_id, "dlv-old");
    let Event::DeliveryCreated(created) = decoded.event else {
        panic!("a DeliveryCreated")
    };
    assert!(!created.expedited, "resolved to the current version");
}

#[test]
fn with_registry_ids_a_manifest_id_outside_the_mapping_is_unknown() {
    let codec = registry_codec();
    let bytes = Codec::new()
        .expect("codec")
        .encode(&samples()[0])
        .expect("encodes");
    let manifest_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let registry: Vec<u32> = registry_ids().iter().map(|(_, r)| *r).collect();
    assert!(
        !registry.contains(&manifest_id),
        "the fixture keeps them apart"
    );
    let err = codec
        .decode(&bytes)
        .expect_err("a manifest id is no registry id");
    assert!(
        matches!(err, CodecError::UnknownSchemaId(id) if id == manifest_id),
        "{err}"
    );
}

#[test]
fn registry_ids_must_cover_the_manifest_once_each_and_fit_an_avro_int() {
    let ids = registry_ids();
    let message = |ids: Vec<(u32, u32)>| {
        Codec::with_registry_ids(ids)
            .expect_err("refused")
            .to_string()
    };
    let text = message(ids[1..].to_vec());
    assert!(text.contains("no id for"), "{text}");
    let mut twice = ids.clone();
    twice[1].1 = twice[0].1;
    let text = message(twice);
    assert!(text.contains("is given to manifest ids"), "{text}");
    let mut huge = ids.clone();
    huge[0].1 = u32::MAX;
    let text = message(huge);
    assert!(text.contains("does not fit an Avro int"), "{text}");
    let mut stranger = ids.clone();
    stranger.push((999_999, 5));
    let text = message(stranger);
    assert!(text.contains("999999 is no manifest id"), "{text}");
}
