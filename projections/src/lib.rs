//! The read side's builders: projections that fold events from the log into the read
//! models of SPEC §5, and the projector worker that runs them. Each projection owns its
//! tables (see [`read_model::tables`]) and writes rows with the version of the event that produced
//! them, so a batch applied twice changes nothing; the projector writes each batch with
//! its checkpoint in one `ReadStore::apply`.

mod accounts;
mod deliveries;
mod drones;
mod error;
mod invoices;
mod metrics;
mod projection;
mod projector;
mod rebuild;

pub use accounts::AccountsProjection;
pub use deliveries::DeliveriesProjection;
pub use drones::DronesProjection;
pub use error::ProjectionError;
pub use invoices::InvoicesProjection;
pub use metrics::ProjectorMetrics;
pub use projection::{Projection, Source, Staged, Writes};
pub use projector::{CaughtUp, Projector};
pub use rebuild::{Host, RebuildOptions, RebuildProgress, Rebuilt, model_named, rebuild};

use std::sync::Arc;

/// Every projection, by name.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(AccountsProjection),
        Arc::new(DeliveriesProjection),
        Arc::new(InvoicesProjection),
        Arc::new(DronesProjection),
    ]
}
