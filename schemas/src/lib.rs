//! The event schemas of the drone delivery system and their wire encoding.
//!
//! This crate owns the Avro schemas in `schemas/avro/` (the source of truth, one record
//! per event type, every version ever used kept with its id in `avro/manifest.json`), the
//! Rust event types generated from them by `build.rs` ([`events`]), and the [`Codec`]
//! that turns an [`Envelope`] into a Confluent-framed Avro message and back ([`codec`]),
//! with the checked-in ids or those a schema registry gives ([`registry`]).

pub mod avro;
pub mod codec;
pub mod events;
pub mod registry;

pub use codec::{Codec, CodecError};
// Every event type, so other crates can write `schemas::DroneAssigned`.
pub use events::*;
