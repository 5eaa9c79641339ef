//! The read side: a `View` of a delivery's status, kept by cqrs-es's `GenericQuery` in a
//! `PostgresViewRepository` table. cqrs-es dispatches to it inside `execute`, right after the
//! events commit, so a status read after a `202` finds the row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cqrs_es::persist::GenericQuery;
use cqrs_es::{EventEnvelope, View};
use postgres_es::PostgresViewRepository;
use serde::{Deserialize, Serialize};
use sqlx::{Pool, Postgres};

use crate::domain::{ConfirmationType, Delivery, DeliveryEvent, Location, PackageInfo};

/// The view table's name (see `schema.sql`).
pub const DELIVERY_STATUS_TABLE: &str = "delivery_status_view";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatusView {
    pub delivery_id: String,
    pub owner_id: String,
    pub stage: String,
    pub pickup: Option<Location>,
    pub dropoff: Option<Location>,
    pub deadline: Option<String>,
    pub expedited: bool,
    pub confirmation_required: ConfirmationType,
    pub package_info: Option<PackageInfo>,
    /// The sequence of the last event folded in.
    pub version: usize,
}

impl View<Delivery> for DeliveryStatusView {
    fn update(&mut self, event: &EventEnvelope<Delivery>) {
        self.delivery_id.clone_from(&event.aggregate_id);
        self.version = event.sequence;
        match &event.payload {
            DeliveryEvent::DeliveryScheduled(plan) => {
                self.owner_id.clone_from(&plan.owner_id);
                self.stage = "Scheduled".to_string();
                self.pickup = Some(plan.pickup);
                self.dropoff = Some(plan.dropoff);
                self.deadline.clone_from(&plan.deadline);
                self.expedited = plan.expedited;
                self.confirmation_required = plan.confirmation_required;
                self.package_info = Some(plan.package_info.clone());
            }
        }
    }
}

pub type StatusRepository = PostgresViewRepository<DeliveryStatusView, Delivery>;
pub type StatusQuery = GenericQuery<StatusRepository, DeliveryStatusView, Delivery>;

/// The query to register with the delivery framework, the repository to read the view
/// from, and a count of view updates that failed (GenericQuery swallows those errors, so
/// without a handler a lost view row would go unnoticed).
pub fn delivery_status(
    pool: Pool<Postgres>,
) -> (StatusQuery, Arc<StatusRepository>, Arc<AtomicU64>) {
    let repository = Arc::new(PostgresViewRepository::new(DELIVERY_STATUS_TABLE, pool));
    let failures = Arc::new(AtomicU64::new(0));
    let mut query = GenericQuery::new(repository.clone());
    let counted = failures.clone();
    query.use_error_handler(Box::new(move |e| {
        counted.fetch_add(1, Ordering::Relaxed);
        eprintln!("delivery status view update failed: {e}");
    }));
    (query, repository, failures)
}
