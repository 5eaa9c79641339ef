//! The command side: every command endpoint of SPEC §5. It owns the write model (the
//! aggregates folded from the log, see `state`), turns requests into domain decisions and
//! appends the resulting events durably before answering.

pub mod bodies;
mod completion;
mod error;
mod fence;
pub mod http;
mod lease;
mod metrics;
mod service;
mod state;
mod steps;

pub use error::CommandError;
pub use lease::{ACTIVE_WORKFLOW, COMMAND_WRITER, Lease, LeaseError, LeaseOf, WRITERS_TOPIC};
pub use metrics::CommandMetrics;
pub use service::{
    Accepted, CommandContext, CommandService, KeySettings, Reading, ScheduleDelivery,
    idempotency_key_of,
};
