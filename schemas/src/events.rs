//! The Rust side of the event schemas in `schemas/avro/`: one struct per event type and
//! per named type, generated from the `.avsc` files by `build.rs` (the files are the one
//! definition of every field), wrapped with its metadata in an [`Envelope`]. Field names
//! are camelCase, the same in Avro and in JSON, so the timeline API shows events exactly
//! as they are stored.

use serde::{Deserialize, Serialize};

/// Topics of the log (SPEC §4). Every event is keyed by its aggregate id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    Accounts,
    Drones,
    Packages,
    Deliveries,
    DroneTelemetry,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::Accounts,
        Topic::Drones,
        Topic::Packages,
        Topic::Deliveries,
        Topic::DroneTelemetry,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Accounts => "accounts",
            Topic::Drones => "drones",
            Topic::Packages => "packages",
            Topic::Deliveries => "deliveries",
            Topic::DroneTelemetry => "drone-telemetry",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The stream an event read from this topic belongs to: this topic's, except for a
    /// package, which lives with its delivery (its events are in the delivery's record,
    /// so a schedule is one record) and has a stream of its own.
    pub fn stream_of(self, event: &Event) -> Topic {
        match event {
            Event::PackageRegistered(_) => Topic::Packages,
            _ => self,
        }
    }
}

/// An event with its metadata: the unit written to and read from the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub metadata: EventMetadata,
    pub event: Event,
}

include!(concat!(env!("OUT_DIR"), "/events.rs"));
