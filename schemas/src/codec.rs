//! Avro encoding of [`Envelope`]s in the Confluent wire format: byte 0 is the magic byte
//! `0`, bytes 1..5 the schema id (big-endian `u32`), then the Avro binary datum.
//!
//! Schema ids come from the checked-in `avro/manifest.json`. A message is always written
//! with the current (highest) version of its event type's schema; any version listed in
//! the manifest stays readable: the datum is decoded with the schema it was written with
//! and resolved to the current one (Avro schema resolution fills in added fields'
//! defaults).

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::types::Value;
use apache_avro::{GenericSingleObjectWriter, Schema};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::events::*;

/// Magic byte of the Confluent wire format.
const MAGIC: u8 = 0;
/// Magic byte + schema id.
const HEADER_LEN: usize = 5;
/// Namespace of every event record (`drone_delivery.events.<Subject>`).
const NAMESPACE: &str = "drone_delivery.events";

const MANIFEST: &str = include_str!("../avro/manifest.json");

macro_rules! schema_files {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../avro/", $file)))),*]
    };
}

/// Every schema file, embedded so neither the build nor the binary depends on the working
/// directory. Tests check that every file in `avro/` is in the manifest, and `Codec::new`
/// that every manifest entry is here.
const SCHEMA_FILES: &[(&str, &str)] = schema_files![
    "AccountRegistered.v1.avsc",
    "AccountSuspended.v1.avsc",
    "AccountReactivated.v1.avsc",
    "DroneRegistered.v1.avsc",
    "DronePositionReported.v1.avsc",
    "DroneGrounded.v1.avsc",
    "DroneReturned.v1.avsc",
    "PackageRegistered.v1.avsc",
    "DeliveryCreated.v1.avsc",
    "DeliveryCreated.v2.avsc",
    "DeliveryRescheduled.v1.avsc",
    "DroneAssigned.v1.avsc",
    "DeliveryPickedUp.v1.avsc",
    "DeliveryCompleted.v1.avsc",
    "DeliveryCancelled.v1.avsc",
    "DeliveryFailed.v1.avsc",
    "DroneUnassigned.v1.avsc",
    "NotificationRequested.v1.avsc",
    "NotificationRequested.v2.avsc",
];

/// Why an event could not be encoded or decoded (or the schemas could not be loaded).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "message of {len} bytes is shorter than the {HEADER_LEN}-byte header (magic byte + schema id)"
    )]
    Truncated { len: usize },
    #[error("bad magic byte {0:#04x}: expected 0x00 (Confluent wire format)")]
    BadMagic(u8),
    #[error("unknown schema id {0}: not in the schema manifest")]
    UnknownSchemaId(u32),
    #[error("no schema for event type {0} in the schema manifest")]
    UnknownSubject(String),
    #[error("Avro {subject} (schema id {id}): {error}")]
    Avro {
        subject: String,
        id: u32,
        error: apache_avro::Error,
    },
    #[error("{subject} (schema id {id}): {count} bytes left after the Avro datum")]
    TrailingBytes {
        subject: String,
        id: u32,
        count: usize,
    },
    /// The value does not fit its schema or its Rust type (e.g. an out-of-range timestamp).
    #[error("{subject}: {detail}")]
    Invalid { subject: String, detail: String },
    #[error("schema manifest: {0}")]
    Manifest(String),
}

/// Encodes and decodes [`Envelope`]s. Schemas are parsed once in [`Codec::new`]; clones
/// share them.
#[derive(Clone)]
pub struct Codec {
    inner: Arc<Registry>,
}

struct Registry {
    schemas: Vec<SchemaEntry>,
    by_id: HashMap<u32, usize>,
    /// Subject -> index of its current (highest) version.
    current: HashMap<String, usize>,
}

struct SchemaEntry {
    id: u32,
    subject: String,
    version: u32,
    schema: Schema,
    /// Index of the current version of the same subject (itself when it is current).
    current: usize,
    /// Validates and encodes with the schema's names resolved once; `to_avro_datum`
    /// resolves them twice on every call, which was most of the cost of an encode.
    writer: Mutex<GenericSingleObjectWriter>,
    /// Length of the Avro single-object header the writer puts before the datum.
    single_object_header: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    id: u32,
    subject: String,
    version: u32,
    file: String,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.inner.schemas.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        f.debug_struct("Codec").field("schema_ids", &ids).finish()
    }
}

impl Codec {
    /// Loads the embedded manifest and parses every schema in it.
    pub fn new() -> Result<Codec, CodecError> {
        let manifest: Vec<ManifestEntry> = serde_json::from_str(MANIFEST)
            .map_err(|e| CodecError::Manifest(format!("manifest.json: {e}")))?;
        let mut schemas = Vec::with_capacity(manifest.len());
        let mut by_id = HashMap::new();
        let mut current: HashMap<String, usize> = HashMap::new();
        for (index, m) in manifest.into_iter().enumerate() {
            let schema = parse_entry(&m)?;
            if by_id.insert(m.id, index).is_some() {
                return Err(CodecError::Manifest(format!(
                    "schema id {} is used twice",
                    m.id
                )));
            }
            match current.entry(m.subject.clone()) {
                MapEntry::Vacant(slot) => {
                    slot.insert(index);
                }
                MapEntry::Occupied(mut slot) => {
                    let other: &SchemaEntry = &schemas[*slot.get()];
                    if other.version == m.version {
                        return Err(CodecError::Manifest(format!(
                            "{} v{} is listed twice",
                            m.subject, m.version
                        )));
                    }
                    if m.version > other.version {
                        slot.insert(index);
                    }
                }
            }
            let avro = |error| CodecError::Avro {
                subject: m.subject.clone(),
                id: m.id,
                error,
            };
            let writer =
                GenericSingleObjectWriter::new_with_capacity(&schema, 256).map_err(avro)?;
            let single_object_header = RabinFingerprintHeader::from_schema(&schema)
                .build_header()
                .len();
            schemas.push(SchemaEntry {
                id: m.id,
                subject: m.subject,
                version: m.version,
                schema,
                current: index,
                writer: Mutex::new(writer),
                single_object_header,
            });
        }
        for entry in &mut schemas {
            if let Some(&index) = current.get(&entry.subject) {
                entry.current = index;
            }
        }
        Ok(Codec {
            inner: Arc::new(Registry {
                schemas,
                by_id,
                current,
            }),
        })
    }

    /// The id of the current schema version of `subject` (an event type name).
    pub fn schema_id(&self, subject: &str) -> Option<u32> {
        let index = *self.inner.current.get(subject)?;
        Some(self.inner.schemas[index].id)
    }

    /// Encodes with the current schema of the event's type, framed with its id.
    pub fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
        let subject = envelope.event.type_name();
        let entry = self
            .inner
            .current
            .get(subject)
            .map(|&index| &self.inner.schemas[index])
            .ok_or_else(|| CodecError::UnknownSubject(subject.to_owned()))?;
        let value = to_value(envelope).map_err(|detail| invalid(subject, detail))?;
        // The writer validates the value against the schema, so a mismatch between this
        // file and the .avsc is an error rather than a corrupt message. It frames the
        // datum with Avro's single-object header, which is swapped for Confluent's.
        let mut framed = Vec::with_capacity(256);
        entry
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_value_ref(&value, &mut framed)
            .map_err(|error| CodecError::Avro {
                subject: entry.subject.clone(),
                id: entry.id,
                error,
            })?;
        if framed.len() < entry.single_object_header {
            return Err(invalid(
                subject,
                "the Avro writer left out its header".into(),
            ));
        }
        let [a, b, c, d] = entry.id.to_be_bytes();
        framed.splice(..entry.single_object_header, [MAGIC, a, b, c, d]);
        Ok(framed)
    }

    /// Decodes a framed message written with any schema version in the manifest.
    pub fn decode(&self, bytes: &[u8]) -> Result<Envelope, CodecError> {
        let (&[magic, id @ ..], datum) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(CodecError::Truncated { len: bytes.len() })?;
        if magic != MAGIC {
            return Err(CodecError::BadMagic(magic));
        }
        let id = u32::from_be_bytes(id);
        let index = *self
            .inner
            .by_id
            .get(&id)
            .ok_or(CodecError::UnknownSchemaId(id))?;
        let writer = &self.inner.schemas[index];
        // Written with the current version: there is nothing to resolve.
        let reader = (writer.current != index).then(|| &self.inner.schemas[writer.current].schema);
        let mut datum = StrictReader(datum);
        let value =
            apache_avro::from_avro_datum(&writer.schema, &mut datum, reader).map_err(|error| {
                CodecError::Avro {
                    subject: writer.subject.clone(),
                    id,
                    error,
                }
            })?;
        if !datum.0.is_empty() {
            return Err(CodecError::TrailingBytes {
                subject: writer.subject.clone(),
                id,
                count: datum.0.len(),
            });
        }
        from_value(&writer.subject, value).map_err(|detail| invalid(&writer.subject, detail))
    }
}

/// A datum reader that fails past the end instead of reporting EOF: apache-avro decodes a
/// union (or boolean) at EOF as null, which would turn a truncated message into one whose
/// last optional fields are unset.
struct StrictReader<'a>(&'a [u8]);

impl Read for StrictReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() && !buf.is_empty() {
            return Err(io::Error::other("truncated: the datum ends early"));
        }
        self.0.read(buf)
    }
}

/// Finds the entry's embedded file, parses it and checks it is the record it claims to be.
fn parse_entry(m: &ManifestEntry) -> Result<Schema, CodecError> {
    let expected_file = format!("{}.v{}.avsc", m.subject, m.version);
    if m.file != expected_file {
        return Err(CodecError::Manifest(format!(
            "id {}: file {} should be named {expected_file}",
            m.id, m.file
        )));
    }
    let text = SCHEMA_FILES
        .iter()
        .find(|(file, _)| *file == m.file)
        .map(|(_, text)| *text)
        .ok_or_else(|| CodecError::Manifest(format!("{} is not embedded in the crate", m.file)))?;
    let schema =
        Schema::parse_str(text).map_err(|e| CodecError::Manifest(format!("{}: {e}", m.file)))?;
    let name = schema.name().map(|n| n.fullname(None));
    let expected_name = format!("{NAMESPACE}.{}", m.subject);
    if name.as_deref() != Some(expected_name.as_str()) || !matches!(schema, Schema::Record(_)) {
        return Err(CodecError::Manifest(format!(
            "{} should hold the record {expected_name}",
            m.file
        )));
    }
    Ok(schema)
}

fn invalid(subject: &str, detail: String) -> CodecError {
    CodecError::Invalid {
        subject: subject.to_owned(),
        detail,
    }
}

// ---- Rust -> Avro value ------------------------------------------------------------

// Enums are encoded as the symbol's index in the schema; the tests check the order.
fn package_size(size: PackageSize) -> Value {
    let (index, symbol) = match size {
        PackageSize::Small => (0, "small"),
        PackageSize::Medium => (1, "medium"),
        PackageSize::Large => (2, "large"),
    };
    Value::Enum(index, symbol.to_owned())
}

fn confirmation(confirmation: ConfirmationType) -> Value {
    let (index, symbol) = match confirmation {
        ConfirmationType::None => (0, "None"),
        ConfirmationType::FingerPrint => (1, "FingerPrint"),
        ConfirmationType::Picture => (2, "Picture"),
        ConfirmationType::Voice => (3, "Voice"),
    };
    Value::Enum(index, symbol.to_owned())
}

/// A record's fields in schema order.
struct RecordBuilder(Vec<(String, Value)>);

impl RecordBuilder {
    fn with_capacity(capacity: usize) -> Self {
        RecordBuilder(Vec::with_capacity(capacity))
    }

    fn put(&mut self, name: &str, value: Value) -> &mut Self {
        self.0.push((name.to_owned(), value));
        self
    }

    fn build(self) -> Value {
        Value::Record(self.0)
    }
}

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// `["null", T]`: branch 0 is null, branch 1 the value.
fn optional<T>(value: Option<T>, to_value: impl FnOnce(T) -> Value) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(to_value(v))),
    }
}

fn timestamp(at: &DateTime<Utc>) -> Value {
    // Every chrono date fits in i64 microseconds; sub-microsecond precision is dropped.
    Value::TimestampMicros(at.timestamp_micros())
}

fn location(l: &Location) -> Value {
    let mut r = RecordBuilder::with_capacity(3);
    r.put("latitude", Value::Double(l.latitude))
        .put("longitude", Value::Double(l.longitude))
        .put("altitude", Value::Double(l.altitude));
    r.build()
}

fn metadata(m: &EventMetadata) -> Result<Value, String> {
    let version = i64::try_from(m.aggregate_version).map_err(|_| {
        format!(
            "metadata.aggregateVersion {} does not fit an Avro long",
            m.aggregate_version
        )
    })?;
    let mut r = RecordBuilder::with_capacity(6);
    r.put("eventId", Value::Uuid(m.event_id))
        .put("aggregateId", string(&m.aggregate_id))
        .put("aggregateVersion", Value::Long(version))
        .put("occurredAt", timestamp(&m.occurred_at))
        .put("causationId", string(&m.causation_id))
        .put("correlationId", string(&m.correlation_id));
    Ok(r.build())
}

fn to_value(envelope: &Envelope) -> Result<Value, String> {
    let mut r = RecordBuilder::with_capacity(10);
    r.put("metadata", metadata(&envelope.metadata)?);
    let opt_string = |s: &Option<String>| optional(s.as_deref(), string);
    let opt_time = |t: &Option<DateTime<Utc>>| optional(t.as_ref(), timestamp);
    match &envelope.event {
        Event::AccountRegistered(e) => {
            r.put("name", string(&e.name))
                .put("email", string(&e.email));
        }
        Event::AccountSuspended(e) => {
            r.put("reason", opt_string(&e.reason));
        }
        Event::AccountReactivated(AccountReactivated {}) => {}
        Event::DroneRegistered(e) => {
            r.put("model", string(&e.model))
                .put("payloadKg", Value::Double(e.payload_kg))
                .put("rangeKm", Value::Double(e.range_km))
                .put("speedMps", Value::Double(e.speed_mps))
                .put("home", location(&e.home));
        }
        Event::DronePositionReported(e) => {
            r.put("position", location(&e.position))
                .put("batteryPct", Value::Double(e.battery_pct))
                .put("at", timestamp(&e.at));
        }
        Event::DroneGrounded(e) => {
            r.put("reason", opt_string(&e.reason));
        }
        Event::DroneReturned(DroneReturned {}) => {}
        Event::PackageRegistered(e) => {
            r.put("size", package_size(e.size))
                .put("weightKg", Value::Double(e.weight_kg))
                .put("tag", opt_string(&e.tag));
        }
        Event::DeliveryCreated(e) => {
            r.put("ownerId", string(&e.owner_id))
                .put("pickup", location(&e.pickup))
                .put("dropoff", location(&e.dropoff))
                .put("pickupTime", opt_time(&e.pickup_time))
                .put("deadline", opt_time(&e.deadline))
                .put("expedited", Value::Boolean(e.expedited))
                .put(
                    "confirmationRequired",
                    confirmation(e.confirmation_required),
                )
                .put("packageId", string(&e.package_id))
                .put("packageWeightKg", Value::Double(e.package_weight_kg));
        }
        Event::DeliveryRescheduled(e) => {
            r.put("pickup", location(&e.pickup))
                .put("dropoff", location(&e.dropoff))
                .put("pickupTime", opt_time(&e.pickup_time))
                .put("deadline", opt_time(&e.deadline));
        }
        Event::DroneAssigned(e) => {
            r.put("deliveryId", string(&e.delivery_id))
                .put("droneId", string(&e.drone_id))
                .put("routeKm", Value::Double(e.route_km))
                .put("pickupEta", opt_time(&e.pickup_eta))
                .put("deliveryEta", opt_time(&e.delivery_eta));
        }
        Event::DeliveryPickedUp(e) => {
            r.put("deliveryId", string(&e.delivery_id))
                .put("droneId", string(&e.drone_id))
                .put("at", timestamp(&e.at));
        }
        Event::DeliveryCompleted(e) => {
            r.put("deliveryId", string(&e.delivery_id))
                .put("droneId", string(&e.drone_id))
                .put("confirmationType", confirmation(e.confirmation_type))
                .put("location", location(&e.location))
                .put("at", timestamp(&e.at))
                .put("blob", opt_string(&e.blob));
        }
        Event::DeliveryCancelled(e) => {
            r.put("reason", opt_string(&e.reason));
        }
        Event::DeliveryFailed(e) => {
            r.put("reason", string(&e.reason));
        }
        Event::DroneUnassigned(e) => {
            r.put("deliveryId", string(&e.delivery_id))
                .put("droneId", string(&e.drone_id))
                .put("reason", string(&e.reason));
        }
        Event::NotificationRequested(e) => {
            r.put("email", opt_string(&e.email))
                .put("sms", opt_string(&e.sms));
        }
    }
    Ok(r.build())
}

// ---- Avro value -> Rust ------------------------------------------------------------
// Errors are plain strings naming the field path; `Codec::decode` adds the subject.

/// A decoded record's fields, taken out by name (resolution orders them as the reader
/// schema does, but looking them up by name does not depend on it).
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn new(value: Value) -> Result<Fields, String> {
        match value {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(format!("expected a record, found {other:?}")),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, String> {
        self.0
            .iter_mut()
            .find(|(field, _)| field == name)
            .map(|(_, value)| std::mem::replace(value, Value::Null))
            .ok_or_else(|| format!("field `{name}` is missing"))
    }

    fn get<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<T, String> {
        convert(self.take(name)?).map_err(|e| format!("field `{name}`: {e}"))
    }

    /// A `["null", T]` field.
    fn get_opt<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        let value = match self.take(name)? {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        match value {
            Value::Null => Ok(None),
            other => convert(other)
                .map(Some)
                .map_err(|e| format!("field `{name}`: {e}")),
        }
    }
}

fn mismatch<T>(expected: &str, found: Value) -> Result<T, String> {
    Err(format!("expected {expected}, found {found:?}"))
}

fn as_string(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        other => mismatch("a string", other),
    }
}

fn as_double(value: Value) -> Result<f64, String> {
    match value {
        Value::Double(x) => Ok(x),
        other => mismatch("a double", other),
    }
}

fn as_bool(value: Value) -> Result<bool, String> {
    match value {
        Value::Boolean(b) => Ok(b),
        other => mismatch("a boolean", other),
    }
}

fn as_uuid(value: Value) -> Result<Uuid, String> {
    match value {
        Value::Uuid(id) => Ok(id),
        Value::String(s) => Uuid::parse_str(&s).map_err(|e| format!("bad uuid {s:?}: {e}")),
        other => mismatch("a uuid", other),
    }
}

fn as_version(value: Value) -> Result<u64, String> {
    match value {
        Value::Long(v) => u64::try_from(v).map_err(|_| format!("negative version {v}")),
        other => mismatch("a long", other),
    }
}

fn as_timestamp(value: Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::TimestampMicros(us) | Value::Long(us) => DateTime::from_timestamp_micros(us)
            .ok_or_else(|| format!("timestamp {us} µs is out of range")),
        other => mismatch("a timestamp-micros", other),
    }
}

fn as_location(value: Value) -> Result<Location, String> {
    let mut r = Fields::new(value)?;
    Ok(Location {
        latitude: r.get("latitude", as_double)?,
        longitude: r.get("longitude", as_double)?,
        altitude: r.get("altitude", as_double)?,
    })
}

/// Enums are matched by symbol: resolution maps a writer's symbol to the reader's.
fn as_symbol(value: Value) -> Result<String, String> {
    match value {
        Value::Enum(_, symbol) | Value::String(symbol) => Ok(symbol),
        other => mismatch("an enum symbol", other),
    }
}

fn as_package_size(value: Value) -> Result<PackageSize, String> {
    match as_symbol(value)?.as_str() {
        "small" => Ok(PackageSize::Small),
        "medium" => Ok(PackageSize::Medium),
        "large" => Ok(PackageSize::Large),
        other => Err(format!("unknown PackageSize symbol {other:?}")),
    }
}

fn as_confirmation(value: Value) -> Result<ConfirmationType, String> {
    match as_symbol(value)?.as_str() {
        "None" => Ok(ConfirmationType::None),
        "FingerPrint" => Ok(ConfirmationType::FingerPrint),
        "Picture" => Ok(ConfirmationType::Picture),
        "Voice" => Ok(ConfirmationType::Voice),
        other => Err(format!("unknown ConfirmationType symbol {other:?}")),
    }
}

fn as_metadata(value: Value) -> Result<EventMetadata, String> {
    let mut r = Fields::new(value)?;
    Ok(EventMetadata {
        event_id: r.get("eventId", as_uuid)?,
        aggregate_id: r.get("aggregateId", as_string)?,
        aggregate_version: r.get("aggregateVersion", as_version)?,
        occurred_at: r.get("occurredAt", as_timestamp)?,
        causation_id: r.get("causationId", as_string)?,
        correlation_id: r.get("correlationId", as_string)?,
    })
}

/// `value` is resolved to the current schema of `subject`.
fn from_value(subject: &str, value: Value) -> Result<Envelope, String> {
    let mut r = Fields::new(value)?;
    let metadata = r.get("metadata", as_metadata)?;
    let event = match subject {
        "AccountRegistered" => Event::AccountRegistered(AccountRegistered {
            name: r.get("name", as_string)?,
            email: r.get("email", as_string)?,
        }),
        "AccountSuspended" => Event::AccountSuspended(AccountSuspended {
            reason: r.get_opt("reason", as_string)?,
        }),
        "AccountReactivated" => Event::AccountReactivated(AccountReactivated {}),
        "DroneRegistered" => Event::DroneRegistered(DroneRegistered {
            model: r.get("model", as_string)?,
            payload_kg: r.get("payloadKg", as_double)?,
            range_km: r.get("rangeKm", as_double)?,
            speed_mps: r.get("speedMps", as_double)?,
            home: r.get("home", as_location)?,
        }),
        "DronePositionReported" => Event::DronePositionReported(DronePositionReported {
            position: r.get("position", as_location)?,
            battery_pct: r.get("batteryPct", as_double)?,
            at: r.get("at", as_timestamp)?,
        }),
        "DroneGrounded" => Event::DroneGrounded(DroneGrounded {
            reason: r.get_opt("reason", as_string)?,
        }),
        "DroneReturned" => Event::DroneReturned(DroneReturned {}),
        "PackageRegistered" => Event::PackageRegistered(PackageRegistered {
            size: r.get("size", as_package_size)?,
            weight_kg: r.get("weightKg", as_double)?,
            tag: r.get_opt("tag", as_string)?,
        }),
        "DeliveryCreated" => Event::DeliveryCreated(DeliveryCreated {
            owner_id: r.get("ownerId", as_string)?,
            pickup: r.get("pickup", as_location)?,
            dropoff: r.get("dropoff", as_location)?,
            pickup_time: r.get_opt("pickupTime", as_timestamp)?,
            deadline: r.get_opt("deadline", as_timestamp)?,
            expedited: r.get("expedited", as_bool)?,
            confirmation_required: r.get("confirmationRequired", as_confirmation)?,
            package_id: r.get("packageId", as_string)?,
            package_weight_kg: r.get("packageWeightKg", as_double)?,
        }),
        "DeliveryRescheduled" => Event::DeliveryRescheduled(DeliveryRescheduled {
            pickup: r.get("pickup", as_location)?,
            dropoff: r.get("dropoff", as_location)?,
            pickup_time: r.get_opt("pickupTime", as_timestamp)?,
            deadline: r.get_opt("deadline", as_timestamp)?,
        }),
        "DroneAssigned" => Event::DroneAssigned(DroneAssigned {
            delivery_id: r.get("deliveryId", as_string)?,
            drone_id: r.get("droneId", as_string)?,
            route_km: r.get("routeKm", as_double)?,
            pickup_eta: r.get_opt("pickupEta", as_timestamp)?,
            delivery_eta: r.get_opt("deliveryEta", as_timestamp)?,
        }),
        "DeliveryPickedUp" => Event::DeliveryPickedUp(DeliveryPickedUp {
            delivery_id: r.get("deliveryId", as_string)?,
            drone_id: r.get("droneId", as_string)?,
            at: r.get("at", as_timestamp)?,
        }),
        "DeliveryCompleted" => Event::DeliveryCompleted(DeliveryCompleted {
            delivery_id: r.get("deliveryId", as_string)?,
            drone_id: r.get("droneId", as_string)?,
            confirmation_type: r.get("confirmationType", as_confirmation)?,
            location: r.get("location", as_location)?,
            at: r.get("at", as_timestamp)?,
            blob: r.get_opt("blob", as_string)?,
        }),
        "DeliveryCancelled" => Event::DeliveryCancelled(DeliveryCancelled {
            reason: r.get_opt("reason", as_string)?,
        }),
        "DeliveryFailed" => Event::DeliveryFailed(DeliveryFailed {
            reason: r.get("reason", as_string)?,
        }),
        "DroneUnassigned" => Event::DroneUnassigned(DroneUnassigned {
            delivery_id: r.get("deliveryId", as_string)?,
            drone_id: r.get("droneId", as_string)?,
            reason: r.get("reason", as_string)?,
        }),
        "NotificationRequested" => Event::NotificationRequested(NotificationRequested {
            email: r.get_opt("email", as_string)?,
            sms: r.get_opt("sms", as_string)?,
        }),
        other => return Err(format!("no Rust event type named {other}")),
    };
    Ok(Envelope { metadata, event })
}
