//! Avro encoding of [`Envelope`]s in the Confluent wire format: byte 0 is the magic byte
//! `0`, bytes 1..5 the schema id (big-endian `u32`), then the Avro binary datum.
//!
//! Schema ids come from the checked-in `avro/manifest.json`. A message is always written
//! with the current (highest) version of its event type's schema, by the code `build.rs`
//! generates from it. Any version listed in the manifest stays readable: a datum of the
//! current version is read by the generated code directly; an older one is decoded with
//! the schema it was written with, resolved to the current one by apache-avro (Avro's
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
    #[error("unknown schema id {0}: not in the schema manifest")]
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
    inner: Arc<Registry>,
}

struct Registry {
    by_id: HashMap<u32, &'static SchemaFile>,
    /// Parsed schemas of older versions, with the current schema of their subject.
    older: HashMap<u32, (Schema, Schema, u32)>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.inner.by_id.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("Codec").field("schema_ids", &ids).finish()
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
    /// resolved to the current one.
    pub fn new() -> Result<Codec, CodecError> {
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
            older.insert(file.id, (schema, parse(current)?, current.id));
        }
        Ok(Codec {
            inner: Arc::new(Registry { by_id, older }),
        })
    }

    /// The id of the current schema version of `subject` (an event type name).
    pub fn schema_id(&self, subject: &str) -> Option<u32> {
        SCHEMA_FILES
            .iter()
            .find(|f| f.current && f.subject == subject)
            .map(|f| f.id)
    }

    /// Encodes with the current schema of the event's type, framed with its id.
    pub fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(256);
        w.raw(&[MAGIC]);
        w.raw(&envelope.event.schema_id().to_be_bytes());
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
            events.push(CommittedEvent {
                // Manifest ids are small; one beyond an Avro int is a manifest error.
                schema_id: i32::try_from(envelope.event.schema_id()).map_err(|_| {
                    CodecError::Manifest(format!(
                        "schema id {} does not fit an Avro int",
                        envelope.event.schema_id()
                    ))
                })?,
                datum: datum.into_bytes(),
            });
        }
        let mut w =
            Writer::with_capacity(64 + events.iter().map(|e| e.datum.len() + 4).sum::<usize>());
        w.raw(&[MAGIC]);
        w.raw(&COMMIT_SCHEMA_ID.to_be_bytes());
        Commit { events }
            .write_avro(&mut w)
            .map_err(|e| CodecError::Invalid {
                subject: "Commit".into(),
                detail: e.0,
            })?;
        Ok(w.into_bytes())
    }

    /// Encodes a record that is not an event (a heartbeat), framed with its schema id.
    pub fn encode_frame<T: AvroRecord>(&self, id: u32, frame: &T) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(128);
        w.raw(&[MAGIC]);
        w.raw(&id.to_be_bytes());
        frame.write_avro(&mut w).map_err(|e| CodecError::Invalid {
            subject: format!("schema id {id}"),
            detail: e.0,
        })?;
        Ok(w.into_bytes())
    }

    /// Decodes a record that is not an event, written with schema `id`.
    pub fn decode_frame<T: AvroRecord>(&self, id: u32, bytes: &[u8]) -> Result<T, CodecError> {
        let (found, datum) = split_frame(bytes)?;
        if found != id {
            return Err(CodecError::UnknownSchemaId(found));
        }
        read_frame(&format!("schema id {id}"), id, datum)
    }

    /// Decodes a record: one event, or every event of a commit, in order.
    pub fn decode_all(&self, bytes: &[u8]) -> Result<Vec<Envelope>, CodecError> {
        let (id, datum) = split_frame(bytes)?;
        if id != COMMIT_SCHEMA_ID {
            return Ok(vec![self.decode_datum(id, datum)?]);
        }
        let commit = read_frame::<Commit>("Commit", id, datum)?;
        commit
            .events
            .iter()
            .map(|event| {
                let inner = u32::try_from(event.schema_id)
                    .map_err(|_| CodecError::UnknownSchemaId(event.schema_id as u32))?;
                if inner == COMMIT_SCHEMA_ID {
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
        if id == COMMIT_SCHEMA_ID {
            return Err(CodecError::Datum {
                subject: "Commit".into(),
                id,
                detail: "a commit holds several events: decode it with decode_all".into(),
            });
        }
        self.decode_datum(id, datum)
    }

    /// Decodes the datum of one event written with schema `id`.
    fn decode_datum(&self, id: u32, datum: &[u8]) -> Result<Envelope, CodecError> {
        let file = *self
            .inner
            .by_id
            .get(&id)
            .ok_or(CodecError::UnknownSchemaId(id))?;
        match self.inner.older.get(&id) {
            None => read_current(file, id, datum),
            Some((writer, reader, current_id)) => {
                let avro = |error| CodecError::Avro {
                    subject: file.subject.to_owned(),
                    id,
                    error: Box::new(error),
                };
                let mut strict = StrictReader(datum);
                let value = apache_avro::from_avro_datum(writer, &mut strict, Some(reader))
                    .map_err(avro)?;
                if !strict.0.is_empty() {
                    return Err(CodecError::TrailingBytes {
                        subject: file.subject.to_owned(),
                        id,
                        count: strict.0.len(),
                    });
                }
                let resolved = apache_avro::to_avro_datum(reader, value).map_err(avro)?;
                let current = self.inner.by_id[current_id];
                read_current(current, *current_id, &resolved)
            }
        }
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
