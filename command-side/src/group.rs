//! Several `command-api` processes on Kafka: which partition numbers each takes, who
//! owns the others, and the account keys of every partition.
//!
//! - The instances are members of one consumer group over the owners topic; each takes
//!   the numbers the group assigns it ([`CommandService::take`]) and lets go of those it
//!   moves away ([`CommandService::let_go`]). A number lost to another writer's marker
//!   (this process was paused past its session and the group moved it) is not taken
//!   back while the assignment it was lost under stands: the group's next assignment
//!   says who owns it, and only a loss the group never corrects is taken back, after
//!   [`RETAKE_AFTER`].
//! - Every instance reads the owners topic whole: the latest marker of each partition
//!   names its owner and the address requests for it are forwarded to.
//! - Account keys are looked up by the edge before any route runs, so every instance
//!   follows the accounts topic whole (through the one validity fold) for the key index.

use crate::ownership::{ADDRESS_HEADER, OWNERS_TOPIC, Owner, Ownership};
use crate::service::CommandService;
use async_trait::async_trait;
use schemas::events::Topic;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Admitted, EventLog, Offset, StartAt, StorageError, Validity};
use tokio::sync::watch;

/// A number lost to another writer's marker but still assigned here is taken back
/// after this long: a member whose assignment was stale learns it within a heartbeat
/// or two, so a number still assigned after this is the group's word (the other writer
/// was the stale one, or a write of the old assignment met the interim owner's marker).
pub const RETAKE_AFTER: Duration = Duration::from_secs(5);

/// How often the group's assignment is looked at (each look polls the membership).
const POLL: Duration = Duration::from_millis(200);

/// Under an eager protocol a rebalance takes every number away before it hands them
/// out again: an empty assignment is let go only once it has lasted this long (what
/// this process decides meanwhile is fenced by the markers like any other decision).
const REBALANCE_GRACE: Duration = Duration::from_secs(10);

/// The group's members start at the end of the owners topic: they read nothing from it
/// (the owners follower does).
struct AtTheEnd {
    log: Arc<dyn EventLog>,
}

#[async_trait]
impl StartAt for AtTheEnd {
    async fn positions(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<Offset>, StorageError> {
        let mut offsets = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            offsets.push(self.log.end_offset(topic, partition).await?);
        }
        Ok(offsets)
    }
}

/// Takes and lets go of partition numbers as the group assigns them, until `stop`.
pub async fn follow_the_group(
    service: Arc<CommandService>,
    log: Arc<dyn EventLog>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StorageError> {
    let start = Arc::new(AtTheEnd { log: log.clone() });
    let mut member = log.subscribe(OWNERS_TOPIC, OWNERS_TOPIC, start).await?;
    let ownership = service.ownership().clone();
    let mut empty_since: Option<Instant> = None;
    // The handover last looked at (losses are forgotten when it changes).
    let mut seen: Option<u64> = None;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        // Polling keeps the membership alive and lets rebalances happen.
        tokio::select! {
            polled = member.poll(64, POLL) => {
                if let Err(e) = polled {
                    tracing::warn!(error = %e, "the owners group cannot be polled");
                    tokio::time::sleep(POLL).await;
                }
            }
            _ = stop.changed() => return Ok(()),
        }
        if !member.assigned() {
            continue;
        }
        let assigned: BTreeSet<u32> = member.assignment().into_iter().collect();
        // A new assignment is the group's fresh word: what was lost before it is the
        // group's to give again, and a number kept across it that another process
        // marked meanwhile (this one was paused, the group moved it away and back) is
        // marked again, or its requests would be sent back here by the other.
        if seen != Some(member.handovers()) {
            seen = Some(member.handovers());
            (0..ownership.partitions()).for_each(|n| ownership.forget_loss(n));
            let marked_elsewhere: Vec<u32> = ownership
                .owned()
                .into_iter()
                .filter(|&n| assigned.contains(&n) && ownership.owner_of(n).is_some())
                .collect();
            if !marked_elsewhere.is_empty()
                && let Err(e) = service.take(&marked_elsewhere).await
            {
                tracing::warn!(partitions = ?marked_elsewhere, error = %e, "cannot mark kept partitions again yet");
                seen = None;
            }
        }
        let owned: BTreeSet<u32> = ownership.owned().into_iter().collect();
        if assigned.is_empty() && !owned.is_empty() {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() < REBALANCE_GRACE {
                continue;
            }
        } else {
            empty_since = None;
        }
        let gone: Vec<u32> = owned.difference(&assigned).copied().collect();
        if !gone.is_empty() {
            service.let_go(&gone).await;
        }
        let new: Vec<u32> = assigned
            .difference(&owned)
            .copied()
            .filter(|&n| {
                ownership
                    .lost_at(n)
                    .is_none_or(|at| at.elapsed() >= RETAKE_AFTER)
            })
            .collect();
        if new.is_empty() {
            ownership.set_joined();
            continue;
        }
        match service.take(&new).await {
            Ok(()) => {
                new.iter().for_each(|&n| ownership.forget_loss(n));
                ownership.set_joined();
            }
            Err(e) => {
                tracing::warn!(instance = ownership.instance(), partitions = ?new, error = %e, "cannot take partitions yet; trying again")
            }
        }
    }
}

/// Reads the owners topic whole and notes each partition's latest marker, until `stop`.
pub async fn follow_owners(
    ownership: Arc<Ownership>,
    log: Arc<dyn EventLog>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StorageError> {
    let positions: Vec<(u32, Offset)> = (0..ownership.partitions()).map(|p| (p, 0)).collect();
    let mut consumer = log.consume(OWNERS_TOPIC, &positions).await?;
    let mut validity = Validity::default();
    loop {
        let records = tokio::select! {
            polled = consumer.poll(256, Duration::from_millis(500)) => polled,
            _ = stop.changed() => return Ok(()),
        };
        let records = match records {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "the owners topic cannot be read");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        for record in &records {
            let Admitted::Marker { writer } = validity.admit(record) else {
                continue;
            };
            let address = record
                .header(ADDRESS_HEADER)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default();
            // A writer id is the instance and a fresh incarnation (`fence::fresh_writer`).
            let instance = writer
                .rsplit_once('/')
                .map_or(writer.as_str(), |(instance, _)| instance);
            ownership.note_owner(
                record.partition,
                Owner {
                    instance: instance.to_owned(),
                    address,
                },
            );
        }
    }
}

/// Follows the accounts topic whole for the key index, until `stop`.
pub async fn follow_account_keys(
    service: Arc<CommandService>,
    log: Arc<dyn EventLog>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StorageError> {
    let partitions = service.ownership().partitions();
    let positions: Vec<(u32, Offset)> = (0..partitions).map(|p| (p, 0)).collect();
    let mut consumer = log.consume(Topic::Accounts.name(), &positions).await?;
    let mut validity = Validity::default();
    loop {
        let records = tokio::select! {
            polled = consumer.poll(1024, Duration::from_millis(500)) => polled,
            _ = stop.changed() => return Ok(()),
        };
        match records {
            Ok(records) => {
                for record in &records {
                    if validity.admit(record) == Admitted::Valid {
                        service.follow_account(record);
                    }
                    service.keys_read_to(record.partition, record.offset + 1);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the accounts topic cannot be read for keys");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}
