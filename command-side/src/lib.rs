//! The command side: every command endpoint of SPEC §5. It owns the write model (the
//! aggregates folded from the log, see `state`), turns requests into domain decisions and
//! appends the resulting events durably before answering.

pub mod bodies;
mod completion;
mod error;
mod fence;
pub mod group;
pub mod http;
mod lease;
mod metrics;
pub mod ownership;
pub mod peers;
mod service;
mod state;
mod steps;

pub use error::CommandError;
pub use lease::{ACTIVE_WORKFLOW, Lease, LeaseError, LeaseOf};
pub use metrics::CommandMetrics;
pub use service::{
    Accepted, CommandContext, CommandService, KeySettings, Reading, ScheduleDelivery, Writers,
    idempotency_key_of,
};
