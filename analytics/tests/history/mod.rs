//! What the tests' histories are made of.

use chrono::{DateTime, Utc};
use schemas::events::{Envelope, Event, EventMetadata};
use uuid::Uuid;

/// An event of aggregate `id` at `version`, as the log holds it.
pub fn envelope(id: &str, version: u64, when: DateTime<Utc>, event: Event) -> Envelope {
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            aggregate_id: id.to_owned(),
            aggregate_version: version,
            occurred_at: when,
            causation_id: "test".into(),
            correlation_id: "test".into(),
            principal: "operator".into(),
        },
        event,
    }
}
