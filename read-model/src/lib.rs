//! The read models as both sides of the read store know them: the tables and their keys
//! ([`tables`]), the rows' views ([`views`]), each model's name and topics ([`Model`]),
//! and how far a model is built ([`caught_up`], [`Progress`]). The projections write
//! them and the query side reads them; neither needs the other's code.

pub mod generations;
pub mod tables;
pub mod views;

use api::ConsistencyToken;
use schemas::events::Topic;
use std::time::Duration;
use storage::{ReadStore, StorageError};
use tokio::sync::watch;

/// A read model's name and the topics it is built from: what a query needs to know to
/// wait for it, without the code that builds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    /// Stable name: checkpoints and `projector --only` use it.
    pub name: &'static str,
    pub topics: &'static [Topic],
    /// The tables it owns: a rebuild writes a new generation of them (see
    /// [`generations`]).
    pub tables: &'static [&'static str],
}

/// The read models.
pub mod models {
    use super::Model;
    use crate::tables;
    use schemas::events::Topic;

    pub const ACCOUNTS: Model = Model {
        name: "accounts",
        topics: &[Topic::Accounts],
        tables: &[tables::ACCOUNTS, tables::ACCOUNT_KEYS],
    };
    pub const DELIVERIES: Model = Model {
        name: "deliveries",
        topics: &[Topic::Deliveries],
        tables: &[
            tables::DELIVERIES,
            tables::DELIVERY_TIMELINE,
            tables::ACCOUNT_DELIVERIES,
            tables::DELIVERIES_BY_STAGE,
        ],
    };
    pub const INVOICES: Model = Model {
        name: "invoices",
        topics: &[Topic::Deliveries],
        tables: &[tables::INVOICE_TRIPS, tables::INVOICE_LINES],
    };
    pub const DRONES: Model = Model {
        name: "drones",
        topics: &[Topic::Drones, Topic::DroneTelemetry],
        tables: &[tables::DRONES, tables::DRONE_POSITIONS, tables::FLEET],
    };
    pub const ALL: [Model; 4] = [ACCOUNTS, DELIVERIES, INVOICES, DRONES];

    /// The model named `name`.
    pub fn named(name: &str) -> Option<Model> {
        ALL.into_iter().find(|model| model.name == name)
    }
}

/// True when the read model has applied every position of `token` in its topics.
pub async fn caught_up(
    store: &dyn ReadStore,
    model: Model,
    token: &ConsistencyToken,
) -> Result<bool, StorageError> {
    for position in &token.positions {
        if !model.topics.contains(&position.topic) {
            continue;
        }
        let next = store
            .checkpoint(model.name, position.topic.name(), position.partition)
            .await?
            .unwrap_or(0);
        if next <= position.offset {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checkpoint progress within one process: projectors tell it after every apply, and a
/// read that waits for its own write wakes then instead of polling the store. A query
/// side in another process than its projectors has none and polls with a capped backoff.
#[derive(Clone, Debug)]
pub struct Progress {
    applied: watch::Sender<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            applied: watch::Sender::new(0),
        }
    }

    /// A projector applied rows and checkpoints: wakes every waiter.
    pub fn advanced(&self) {
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Subscribe before checking the store, then wait with [`Watcher::next`]: an apply
    /// after the subscription is never missed.
    pub fn watch(&self) -> Watcher {
        Watcher {
            applied: self.applied.subscribe(),
        }
    }
}

/// A waiter for the next apply (see [`Progress::watch`]).
#[derive(Debug)]
pub struct Watcher {
    applied: watch::Receiver<u64>,
}

impl Watcher {
    /// Waits for an apply since the last call (or the subscription), up to `timeout`.
    pub async fn next(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.applied.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_watcher_wakes_on_an_apply_after_it_subscribed_and_waits_otherwise() {
        let progress = Progress::new();
        progress.advanced(); // before the subscription: not news to the watcher
        let mut watcher = progress.watch();
        let started = Instant::now();
        watcher.next(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "nothing applied yet"
        );

        let notifier = progress.clone();
        let apply = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            notifier.advanced();
        });
        let started = Instant::now();
        watcher.next(Duration::from_secs(10)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken by the apply"
        );
        apply.await.expect("apply");

        // An apply between two waits is not missed.
        progress.advanced();
        let started = Instant::now();
        watcher.next(Duration::from_secs(10)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the apply was kept"
        );
    }
}
