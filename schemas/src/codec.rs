//! Avro encoding of [`Envelope`]s in the Confluent wire format: byte 0 is the magic byte
//! `0`, bytes 1..5 the schema id (big-endian `u32`), then the Avro binary datum.
//!
//! Schema ids come from the checked-in `avro/manifest.json`, or, for a deployment with a
//! schema registry, from the registry ([`Codec::with_registry_ids`]: the manifest id of
//! each schema mapped to the id the registry gave it, in both directions; the rest of the
//! codec works on manifest ids; see `crate::registry` and ADR 7). A message is always
//! written with the current (highest) version of its event type's schema, by the code
//! `build.rs` generates from it. Any version listed in the manifest stays readable: a datum
//! of the current version is read by the generated code directly; an older one is decoded
//! with the schema it was written with, resolved to the current one by apache-avro (Avro's
//! schema resolution fills in added fields' defaults), and then read the same way.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use apache_avro::Schema;

use crate::avro::{AvroRecord, DecodeError, Reader, Writer};
use crate::events::*;

/// Magic byte of the Confluent wire format.
const MAGIC: u8 = 0;
/// Magic byte + schema id.
const HEADER_LEN: usize = 5;
/// Namespace of every event record (`drone_delivery.events.<Subject>`).
const NAMESPACE: &str = "drone_delivery.events";

/// Why an event could not be encoded or decoded (or the schemas could not be loaded).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "message of {len} bytes is shorter than the {HEADER_LEN}-byte header (magic byte + schema id)"
    )]
    Truncated { len: usize },
    #[error("bad magic byte {0:#04x}: expected 0x00 (Confluent wire format)")]
    BadMagic(u8),
    #[error("unknown schema id {0}: not one of the schema manifest (or of the schema registry)")]
    UnknownSchemaId(u32),
    /// The datum is not a valid encoding of the schema its id names.
    #[error("{subject} (schema id {id}): {detail}")]
    Datum {
        subject: String,
        id: u32,
        detail: String,
    },
    /// An older version's datum could not be resolved to the current schema.
    #[error("Avro {subject} (schema id {id}): {error}")]
    Avro {
        subject: String,
        id: u32,
        error: Box<apache_avro::Error>,
    },
    #[error("{subject} (schema id {id}): {count} bytes left after the Avro datum")]
    TrailingBytes {
        subject: String,
        id: u32,
        count: usize,
    },
    /// The value does not fit its schema (e.g. a version beyond Avro's `long`).
    #[error("{subject}: {detail}")]
    Invalid { subject: String, detail: String },
    #[error("schema manifest: {0}")]
    Manifest(String),
}

/// Encodes and decodes [`Envelope`]s. Schemas of older versions are parsed once in
/// [`Codec::new`]; clones share them.
#[derive(Clone)]
pub struct Codec {
    inner: Arc<Schemas>,
}

struct Schemas {
    /// Every schema of the manifest, by manifest id.
    by_id: HashMap<u32, &'static SchemaFile>,
    /// Parsed schemas of older versions, by manifest id.
    older: HashMap<u32, Resolution>,
    wire: Wire,
}

/// A writer schema other than the current one of its subject, resolved to that one.
struct Resolution {
    subject: &'static str,
    writer: Schema,
    reader: Schema,
    /// The manifest id of the current schema.
    current: u32,
}

/// The ids the records carry in their frame.
enum Wire {
    /// The manifest's own.
    Manifest,
    /// A schema registry's.
    Registry {
        /// Manifest id → the registry's id of the same schema.
        to_wire: HashMap<u32, u32>,
        /// The registry's id → manifest id.
        from_wire: HashMap<u32, u32>,
    },
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self
            .inner
            .by_id
            .keys()
            .map(|&id| (id, self.wire_id(id).unwrap_or(id)))
            .collect();
        ids.sort_unstable();
        let registry = matches!(self.inner.wire, Wire::Registry { .. });
        f.debug_struct("Codec")
            .field("registry", &registry)
            .field("schema_ids", &ids)
            .finish()
    }
}

fn parse(file: &SchemaFile) -> Result<Schema, CodecError> {
    let schema = Schema::parse_str(file.text)
        .map_err(|e| CodecError::Manifest(format!("{}: {e}", file.file)))?;
    let name = schema.name().map(|n| n.fullname(None));
    let expected = format!("{NAMESPACE}.{}", file.subject);
    if name.as_deref() != Some(expected.as_str()) || !matches!(schema, Schema::Record(_)) {
        return Err(CodecError::Manifest(format!(
            "{} should hold the record {expected}",
            file.file
        )));
    }
    Ok(schema)
}

impl Codec {
    /// Loads the embedded schemas: every file parses, and older versions are ready to be
    /// resolved to the current one. Records carry the manifest's ids.
    pub fn new() -> Result<Codec, CodecError> {
        Codec::load(Wire::Manifest)
    }

    /// A codec whose records carry a schema registry's ids: `ids` gives, for every
    /// manifest id, the id the registry gave that schema (every manifest schema needs
    /// one, and no two share one). A record framed with an id outside the mapping is an
    /// unknown id, as it is with the manifest's ids.
    ///
    /// Manifest ids and a registry's are two numberings of one range: a log is written
    /// with one of them from its first record, and read with the same (ADR 7).
    pub fn with_registry_ids(
        ids: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<Codec, CodecError> {
        let mut to_wire = HashMap::new();
        let mut from_wire = HashMap::new();
        for (manifest, wire) in ids {
            let file = SCHEMA_FILES
                .iter()
                .find(|f| f.id == manifest)
                .ok_or_else(|| {
                    CodecError::Manifest(format!("registry ids: {manifest} is no manifest id"))
                })?;
            if i32::try_from(wire).is_err() {
                return Err(CodecError::Manifest(format!(
                    "registry id {wire} of {} v{} does not fit an Avro int",
                    file.subject, file.version
                )));
            }
            if let Some(other) = from_wire.insert(wire, manifest).filter(|&o| o != manifest) {
                return Err(CodecError::Manifest(format!(
                    "registry id {wire} is given to manifest ids {other} and {manifest}"
                )));
            }
            to_wire.insert(manifest, wire);
        }
        if let Some(missing) = SCHEMA_FILES.iter().find(|f| !to_wire.contains_key(&f.id)) {
            return Err(CodecError::Manifest(format!(
                "registry ids: no id for {} v{} (manifest id {})",
                missing.subject, missing.version, missing.id
            )));
        }
        Codec::load(Wire::Registry { to_wire, from_wire })
    }

    fn load(wire: Wire) -> Result<Codec, CodecError> {
        let mut by_id = HashMap::new();
        let mut older = HashMap::new();
        for file in SCHEMA_FILES {
            by_id.insert(file.id, file);
            let schema = parse(file)?;
            if file.current {
                continue;
            }
            let current = SCHEMA_FILES
                .iter()
                .find(|f| f.current && f.subject == file.subject)
                .ok_or_else(|| {
                    CodecError::Manifest(format!("{} has no current version", file.subject))
                })?;
            let resolution = Resolution {
                subject: file.subject,
                writer: schema,
                reader: parse(current)?,
                current: current.id,
            };
            older.insert(file.id, resolution);
        }
        Ok(Codec {
            inner: Arc::new(Schemas { by_id, older, wire }),
        })
    }

    /// The id records of `subject` (an event type name) carry: its current schema's.
    pub fn schema_id(&self, subject: &str) -> Option<u32> {
        SCHEMA_FILES
            .iter()
            .find(|f| f.current && f.subject == subject)
            .and_then(|f| self.wire_id(f.id))
    }

    /// The id in the frame of a record written with the manifest's schema `manifest_id`.
    pub fn wire_id(&self, manifest_id: u32) -> Option<u32> {
        match &self.inner.wire {
            Wire::Manifest => self
                .inner
                .by_id
                .contains_key(&manifest_id)
                .then_some(manifest_id),
            Wire::Registry { to_wire, .. } => to_wire.get(&manifest_id).copied(),
        }
    }

    /// The manifest id of the schema a frame's id names, if it is one of the manifest's.
    fn manifest_id(&self, wire_id: u32) -> Option<u32> {
        match &self.inner.wire {
            Wire::Manifest => self.inner.by_id.contains_key(&wire_id).then_some(wire_id),
            Wire::Registry { from_wire, .. } => from_wire.get(&wire_id).copied(),
        }
    }

    /// The frame id of a manifest schema the generated code names.
    fn wire(&self, manifest_id: u32) -> Result<u32, CodecError> {
        self.wire_id(manifest_id)
            .ok_or(CodecError::UnknownSchemaId(manifest_id))
    }

    /// Encodes with the current schema of the event's type, framed with its id.
    pub fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(256);
        w.raw(&[MAGIC]);
        w.raw(&self.wire(envelope.event.schema_id())?.to_be_bytes());
        write_envelope(envelope, &mut w)?;
        Ok(w.into_bytes())
    }

    /// Encodes the events of one record: one event as itself, several as a
    /// [`Commit`] that holds each framed with its schema id (readers get all or none).
    pub fn encode_all<'a>(
        &self,
        envelopes: impl IntoIterator<Item = &'a Envelope>,
    ) -> Result<Vec<u8>, CodecError> {
        let envelopes: Vec<&Envelope> = envelopes.into_iter().collect();
        if let [one] = envelopes[..] {
            return self.encode(one);
        }
        let mut events = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let mut datum = Writer::with_capacity(192);
            write_envelope(envelope, &mut datum)?;
            let id = self.wire(envelope.event.schema_id())?;
            events.push(CommittedEvent {
                // Manifest ids are small, and registry ids were checked to fit.
                schema_id: i32::try_from(id).map_err(|_| {
                    CodecError::Manifest(format!("schema id {id} does not fit an Avro int"))
                })?,
                datum: datum.into_bytes(),
            });
        }
        let mut w =
            Writer::with_capacity(64 + events.iter().map(|e| e.datum.len() + 4).sum::<usize>());
        w.raw(&[MAGIC]);
        w.raw(&self.wire(COMMIT_SCHEMA_ID)?.to_be_bytes());
        Commit { events }
            .write_avro(&mut w)
            .map_err(|e| CodecError::Invalid {
                subject: "Commit".into(),
                detail: e.0,
            })?;
        Ok(w.into_bytes())
    }

    /// Encodes a record that is not an event (a heartbeat), framed with the id of the
    /// manifest's schema `id`.
    pub fn encode_frame<T: AvroRecord>(&self, id: u32, frame: &T) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(128);
        w.raw(&[MAGIC]);
        w.raw(&self.wire(id)?.to_be_bytes());
        frame.write_avro(&mut w).map_err(|e| CodecError::Invalid {
            subject: format!("schema id {id}"),
            detail: e.0,
        })?;
        Ok(w.into_bytes())
    }

    /// Decodes a record that is not an event, written with the manifest's schema `id`.
    pub fn decode_frame<T: AvroRecord>(&self, id: u32, bytes: &[u8]) -> Result<T, CodecError> {
        let (found, datum) = split_frame(bytes)?;
        if self.manifest_id(found) != Some(id) {
            return Err(CodecError::UnknownSchemaId(found));
        }
        read_frame(&format!("schema id {id}"), id, datum)
    }

    /// Decodes a record: one event, or every event of a commit, in order.
    pub fn decode_all(&self, bytes: &[u8]) -> Result<Vec<Envelope>, CodecError> {
        let (id, datum) = split_frame(bytes)?;
        let commit_id = self.wire(COMMIT_SCHEMA_ID)?;
        if id != commit_id {
            return Ok(vec![self.decode_datum(id, datum)?]);
        }
        let commit = read_frame::<Commit>("Commit", id, datum)?;
        commit
            .events
            .iter()
            .map(|event| {
                let inner = u32::try_from(event.schema_id)
                    .map_err(|_| CodecError::UnknownSchemaId(event.schema_id as u32))?;
                if inner == commit_id {
                    return Err(CodecError::Datum {
                        subject: "Commit".into(),
                        id,
                        detail: "a commit inside a commit".into(),
                    });
                }
                self.decode_datum(inner, &event.datum)
            })
            .collect()
    }

    /// Decodes a framed message of one event written with any schema version in the
    /// manifest (a commit is an error here: see [`Codec::decode_all`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Envelope, CodecError> {
        let (id, datum) = split_frame(bytes)?;
        if id == self.wire(COMMIT_SCHEMA_ID)? {
            return Err(CodecError::Datum {
                subject: "Commit".into(),
                id,
                detail: "a commit holds several events: decode it with decode_all".into(),
            });
        }
        self.decode_datum(id, datum)
    }

    /// Decodes the datum of one event written with the schema the frame's `wire_id` names.
    fn decode_datum(&self, wire_id: u32, datum: &[u8]) -> Result<Envelope, CodecError> {
        let id = self
            .manifest_id(wire_id)
            .ok_or(CodecError::UnknownSchemaId(wire_id))?;
        match self.inner.older.get(&id) {
            None => {
                let file = self
                    .inner
                    .by_id
                    .get(&id)
                    .ok_or(CodecError::UnknownSchemaId(wire_id))?;
                read_current(file, id, datum)
            }
            Some(older) => self.resolve(older, wire_id, datum),
        }
    }

    /// Reads a datum of another version than the current one: apache-avro resolves it to
    /// the current schema, which the generated code then reads.
    fn resolve(
        &self,
        resolution: &Resolution,
        wire_id: u32,
        datum: &[u8],
    ) -> Result<Envelope, CodecError> {
        let avro = |error| CodecError::Avro {
            subject: resolution.subject.to_owned(),
            id: wire_id,
            error: Box::new(error),
        };
        let mut strict = StrictReader(datum);
        let value =
            apache_avro::from_avro_datum(&resolution.writer, &mut strict, Some(&resolution.reader))
                .map_err(avro)?;
        if !strict.0.is_empty() {
            return Err(CodecError::TrailingBytes {
                subject: resolution.subject.to_owned(),
                id: wire_id,
                count: strict.0.len(),
            });
        }
        let resolved = apache_avro::to_avro_datum(&resolution.reader, value).map_err(avro)?;
        let current = self.inner.by_id[&resolution.current];
        read_current(current, resolution.current, &resolved)
    }
}

/// The schema id and the datum of a Confluent-framed message.
fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    let (&[magic, id @ ..], datum) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(CodecError::Truncated { len: bytes.len() })?;
    if magic != MAGIC {
        return Err(CodecError::BadMagic(magic));
    }
    Ok((u32::from_be_bytes(id), datum))
}

fn write_envelope(envelope: &Envelope, w: &mut Writer) -> Result<(), CodecError> {
    envelope
        .metadata
        .write_avro(w)
        .and_then(|()| envelope.event.write_avro(w))
        .map_err(|e| CodecError::Invalid {
            subject: envelope.event.type_name().to_owned(),
            detail: e.0,
        })
}

/// Reads a whole datum of a record that is not an event (a frame such as [`Commit`]).
fn read_frame<T: AvroRecord>(subject: &str, id: u32, datum: &[u8]) -> Result<T, CodecError> {
    let mut r = Reader::new(datum);
    let value = T::read_avro(&mut r).map_err(|e| CodecError::Datum {
        subject: subject.to_owned(),
        id,
        detail: e.0,
    })?;
    if !r.rest().is_empty() {
        return Err(CodecError::TrailingBytes {
            subject: subject.to_owned(),
            id,
            count: r.rest().len(),
        });
    }
    Ok(value)
}

/// Reads a datum of the current schema `id` with the generated code.
fn read_current(file: &SchemaFile, id: u32, datum: &[u8]) -> Result<Envelope, CodecError> {
    let error = |e: DecodeError| CodecError::Datum {
        subject: file.subject.to_owned(),
        id,
        detail: e.0,
    };
    let mut r = Reader::new(datum);
    let metadata = EventMetadata::read_avro(&mut r).map_err(error)?;
    let event = Event::read_current(id, &mut r)
        .ok_or(CodecError::UnknownSchemaId(id))?
        .map_err(error)?;
    if !r.rest().is_empty() {
        return Err(CodecError::TrailingBytes {
            subject: file.subject.to_owned(),
            id,
            count: r.rest().len(),
        });
    }
    Ok(Envelope { metadata, event })
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
