//! The write side's view of every aggregate: folded from the log at start-up (the
//! command topics only: telemetry is an observation no command decides on), then kept
//! current by the commands this process appends. It is sharded exactly like the log's
//! partitions. A shard's lock is held while a command decides; an aggregate whose
//! record is on its way to the log is *marked*, and a command on it waits until the
//! record is durable and folded (or failed), so every decision rests on state that
//! includes every record before it (SPEC §4). A package lives with its delivery: its
//! events are in the delivery's records, on the deliveries topic.

use crate::fence::PartitionWriter;
use api::{ConsistencyToken, Position};
use chrono::{DateTime, Utc};
use domain::{Account, Delivery, Drone, Package};
use schemas::events::{Envelope, Topic};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, futures::OwnedNotified};

/// A locked shard.
pub type Guard<A> = OwnedMutexGuard<Shard<A>>;

/// An aggregate the command side keeps: where its stream lives and what to call it.
pub trait Kept: domain::Aggregate + Send + 'static {
    const KIND: &'static str;
    const TOPIC: Topic;

    /// The account it belongs to, for aggregates a tenant owns.
    fn owner(&self) -> Option<&str> {
        None
    }
}

impl Kept for Account {
    const KIND: &'static str = "account";
    const TOPIC: Topic = Topic::Accounts;
}

impl Kept for Drone {
    const KIND: &'static str = "drone";
    const TOPIC: Topic = Topic::Drones;
}

impl Kept for Package {
    const KIND: &'static str = "package";
    // Its own stream, written in its delivery's records (`Topic::stream_of`).
    const TOPIC: Topic = Topic::Packages;
}

impl Kept for Delivery {
    const KIND: &'static str = "delivery";
    const TOPIC: Topic = Topic::Deliveries;

    fn owner(&self) -> Option<&str> {
        Some(&self.owner_id)
    }
}

/// What a command that carried an idempotency key produced, to answer its retries.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub version: u64,
    pub token: ConsistencyToken,
    /// Of the request (`CommandContext::fingerprint`): a retry must be the same request.
    pub fingerprint: String,
    /// When it was written: keys are remembered for a retention window only.
    pub at: DateTime<Utc>,
}

/// One aggregate's state, version and the outcomes of its keyed commands.
#[derive(Default)]
pub struct Stream<A> {
    pub state: A,
    pub version: u64,
    outcomes: HashMap<String, Outcome>,
}

impl<A: Kept> Stream<A> {
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// The outcome of a key used since `since`.
    pub fn outcome(&self, idempotency_key: &str, since: DateTime<Utc>) -> Option<&Outcome> {
        self.outcomes.get(idempotency_key).filter(|o| o.at >= since)
    }

    /// Forgets the keys used before `since`.
    pub fn forget_before(&mut self, since: DateTime<Utc>) {
        self.outcomes.retain(|_, o| o.at >= since);
    }

    /// Folds events of this aggregate that are durable in the log.
    pub fn record<'a>(&mut self, envelopes: impl IntoIterator<Item = &'a Envelope>) {
        for envelope in envelopes {
            self.state
                .apply(&envelope.event, envelope.metadata.occurred_at);
            self.version = self.version.max(envelope.metadata.aggregate_version);
        }
    }

    pub fn remember(&mut self, idempotency_key: String, outcome: Outcome) {
        self.outcomes.insert(idempotency_key, outcome);
    }
}

/// The aggregates of one log partition, and this process's writer of it.
pub struct Shard<A> {
    streams: HashMap<String, Stream<A>>,
    pub writer: Arc<PartitionWriter>,
    /// Aggregates whose record is on its way to the log.
    marked: HashSet<String>,
    /// Told whenever a mark is lifted.
    unmarked: Arc<Notify>,
}

/// Resolves once a mark of the shard has been lifted (created under the shard's lock,
/// so no lift between the check and the wait is missed).
type Unmarked = Pin<Box<OwnedNotified>>;

impl<A: Kept> Shard<A> {
    fn new(writer: Arc<PartitionWriter>) -> Shard<A> {
        Shard {
            streams: HashMap::new(),
            writer,
            marked: HashSet::new(),
            unmarked: Arc::new(Notify::new()),
        }
    }

    /// Marks `id`: its record is on its way, so commands on it wait.
    pub fn mark(&mut self, id: &str) {
        self.marked.insert(id.to_string());
    }

    pub fn unmark(&mut self, id: &str) {
        if self.marked.remove(id) {
            self.unmarked.notify_waiters();
        }
    }

    /// When `id` is marked: what to wait on, after letting go of every lock held.
    pub fn busy(&self, id: &str) -> Option<Unmarked> {
        if !self.marked.contains(id) {
            return None;
        }
        let mut wait = Box::pin(self.unmarked.clone().notified_owned());
        wait.as_mut().enable();
        Some(wait)
    }

    pub fn get(&self, id: &str) -> Option<&Stream<A>> {
        self.streams.get(id)
    }

    pub fn streams(&self) -> impl Iterator<Item = (&String, &Stream<A>)> {
        self.streams.iter()
    }

    pub fn entry(&mut self, id: &str) -> &mut Stream<A> {
        self.streams.entry(id.to_string()).or_default()
    }

    pub fn forget_keys_before(&mut self, since: DateTime<Utc>) {
        for stream in self.streams.values_mut() {
            stream.forget_before(since);
        }
    }
}

/// All shards of one aggregate type: one per partition of its topic.
pub struct Shards<A> {
    shards: Vec<Arc<Mutex<Shard<A>>>>,
    writers: Vec<Arc<PartitionWriter>>,
}

impl<A: Kept> Shards<A> {
    /// One shard per writer, in partition order.
    pub fn new(writers: Vec<Arc<PartitionWriter>>) -> Shards<A> {
        Shards {
            shards: writers
                .iter()
                .map(|writer| Arc::new(Mutex::new(Shard::new(writer.clone()))))
                .collect(),
            writers,
        }
    }

    /// The writer of a partition.
    pub fn writer(&self, partition: u32) -> &Arc<PartitionWriter> {
        &self.writers[partition as usize % self.writers.len()]
    }

    pub fn partitions(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn partition_of(&self, id: &str) -> u32 {
        storage::partition_for(id, self.shards.len() as u32)
    }

    /// The shard of `id`, once `id` is not marked. Holding another shard while waiting
    /// here is safe only when no one marks both that shard and this one (a command that
    /// marks two, like scheduling, waits with [`Shard::busy`] holding nothing).
    pub async fn lock(&self, id: &str) -> Guard<A> {
        loop {
            let shard = self.lock_partition(self.partition_of(id)).await;
            match shard.busy(id) {
                None => return shard,
                Some(unmarked) => {
                    drop(shard);
                    unmarked.await;
                }
            }
        }
    }

    /// [`Shards::lock`] for a decision: refused (`Elsewhere`, `Moving`) when another
    /// process owns the partition, since this one's state of it is not current.
    pub async fn lock_owned(&self, id: &str) -> Result<Guard<A>, crate::CommandError> {
        let shard = self.lock(id).await;
        shard.writer.owned()?;
        Ok(shard)
    }

    /// The shard of a partition, whatever is marked in it.
    pub async fn lock_partition(&self, partition: u32) -> Guard<A> {
        let shard = &self.shards[partition as usize % self.shards.len()];
        shard.clone().lock_owned().await
    }

    /// Forgets idempotency keys used before `since`, one shard at a time.
    pub async fn forget_keys_before(&self, since: DateTime<Utc>) {
        for shard in &self.shards {
            shard.lock().await.forget_keys_before(since);
        }
    }
}

/// A mark on an aggregate whose record is on its way, held while its shard is not:
/// [`Mark::lift`] takes the shard again and lifts it. Dropped unlifted (its command was
/// dropped half-way), it is lifted by a task of its own, so no command waits for ever.
pub struct Mark<A: Kept> {
    shard: Arc<Mutex<Shard<A>>>,
    id: String,
    lifted: bool,
}

impl<A: Kept> Mark<A> {
    /// Marks `id` in the locked `shard` and lets go of the shard.
    pub fn set(mut shard: Guard<A>, id: &str) -> Mark<A> {
        shard.mark(id);
        Mark {
            shard: OwnedMutexGuard::mutex(&shard).clone(),
            id: id.to_string(),
            lifted: false,
        }
    }

    /// The shard again, with the mark lifted (waiters go on once it is let go).
    pub async fn lift(mut self) -> Guard<A> {
        let mut shard = self.shard.clone().lock_owned().await;
        shard.unmark(&self.id);
        self.lifted = true;
        shard
    }
}

impl<A: Kept> Drop for Mark<A> {
    fn drop(&mut self) {
        if self.lifted {
            return;
        }
        let (shard, id) = (self.shard.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shard.lock().await.unmark(&id) });
        }
    }
}

/// Account keys by hash, and each account's current hash (to drop the old on rotation).
#[derive(Default)]
pub struct KeyIndex {
    by_hash: HashMap<String, String>,
    /// Each account's current key hash and the version of the account that set it.
    by_account: HashMap<String, (String, u64)>,
}

impl KeyIndex {
    /// Notes the key of an account at `version`; an older version (a follower behind the
    /// process's own fold) changes nothing.
    pub fn set(&mut self, account_id: &str, key_hash: &str, version: u64) {
        if key_hash.is_empty()
            || self
                .by_account
                .get(account_id)
                .is_some_and(|(_, at)| *at > version)
        {
            return;
        }
        if let Some((old, _)) = self
            .by_account
            .insert(account_id.to_string(), (key_hash.to_string(), version))
        {
            self.by_hash.remove(&old);
        }
        self.by_hash
            .insert(key_hash.to_string(), account_id.to_string());
    }

    pub fn account_of(&self, key_hash: &str) -> Option<&String> {
        self.by_hash.get(key_hash)
    }
}

/// Idempotency keys seen while folding the log, with the positions of their records,
/// so that a retry after a restart gets the same answer as before it.
#[derive(Default)]
pub struct KeyedCommands {
    positions: HashMap<String, Vec<Position>>,
    /// The outcome each (stream, key) had so far; the positions are added at the end.
    outcomes: HashMap<(Topic, String, String), Outcome>,
}

impl KeyedCommands {
    pub fn note(&mut self, topic: Topic, envelope: &Envelope, position: Position) {
        let Some((key, fingerprint)) =
            crate::service::idempotency_key_of(&envelope.metadata.causation_id)
        else {
            return;
        };
        self.positions
            .entry(key.to_string())
            .or_default()
            .push(position);
        if topic == Topic::DroneTelemetry {
            return;
        }
        let meta = &envelope.metadata;
        // The last event of a command on a stream gives its version.
        let outcome = self
            .outcomes
            .entry((topic, meta.aggregate_id.clone(), key.to_string()))
            .or_insert_with(|| Outcome {
                version: 0,
                token: ConsistencyToken::default(),
                fingerprint: fingerprint.to_string(),
                at: meta.occurred_at,
            });
        outcome.version = outcome.version.max(meta.aggregate_version);
    }

    /// Adds what another partition's fold noted (a key's records in several partitions
    /// give one outcome whose token covers them all).
    pub fn merge(&mut self, other: KeyedCommands) {
        for (key, positions) in other.positions {
            self.positions.entry(key).or_default().extend(positions);
        }
        self.outcomes.extend(other.outcomes);
    }

    /// Outcomes per (topic, aggregate id, key); keys used before `since` are left out.
    pub fn into_outcomes(self, since: DateTime<Utc>) -> Vec<(Topic, String, String, Outcome)> {
        let positions = self.positions;
        self.outcomes
            .into_iter()
            .filter(|(_, outcome)| outcome.at >= since)
            .map(|((topic, id, key), outcome)| {
                let token = ConsistencyToken::from_positions(
                    positions.get(&key).cloned().unwrap_or_default(),
                );
                (topic, id, key, Outcome { token, ..outcome })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use schemas::events::{AccountSuspended, Event, EventMetadata};

    fn keyed(version: u64, at: DateTime<Utc>, causation: &str) -> Envelope {
        Envelope {
            metadata: EventMetadata {
                event_id: uuid::Uuid::new_v4(),
                aggregate_id: "acct-1".into(),
                aggregate_version: version,
                occurred_at: at,
                causation_id: causation.into(),
                correlation_id: causation.into(),
                principal: "operator".into(),
            },
            event: Event::AccountSuspended(AccountSuspended { reason: None }),
        }
    }

    fn at(offset: u64) -> Position {
        Position {
            topic: Topic::Accounts,
            partition: 0,
            offset,
        }
    }

    #[test]
    fn keys_older_than_the_retention_are_not_remembered_from_the_log() {
        let now = Utc::now();
        let mut keyed_commands = KeyedCommands::default();
        keyed_commands.note(
            Topic::Accounts,
            &keyed(2, now - TimeDelta::hours(30), "key:old/f1"),
            at(1),
        );
        keyed_commands.note(Topic::Accounts, &keyed(3, now, "key:new/f2"), at(2));
        keyed_commands.note(Topic::Accounts, &keyed(4, now, "cmd:no-key"), at(3));
        let outcomes = keyed_commands.into_outcomes(now - TimeDelta::hours(24));
        assert_eq!(outcomes.len(), 1);
        let (_, id, key, outcome) = &outcomes[0];
        assert_eq!((id.as_str(), key.as_str()), ("acct-1", "new"));
        assert_eq!((outcome.version, outcome.fingerprint.as_str()), (3, "f2"));
        assert_eq!(outcome.token, ConsistencyToken::from_positions([at(2)]));
    }

    #[test]
    fn a_stream_forgets_keys_past_the_retention() {
        let now = Utc::now();
        let mut stream = Stream::<Account>::default();
        let outcome = |at| Outcome {
            version: 1,
            token: ConsistencyToken::default(),
            fingerprint: "f".into(),
            at,
        };
        stream.remember("old".into(), outcome(now - TimeDelta::hours(30)));
        stream.remember("new".into(), outcome(now));
        let since = now - TimeDelta::hours(24);
        assert!(
            stream.outcome("old", since).is_none(),
            "expired, not answered"
        );
        assert!(stream.outcome("new", since).is_some());
        stream.forget_before(since);
        assert!(
            stream.outcome("old", now - TimeDelta::hours(48)).is_none(),
            "and gone"
        );
    }

    #[test]
    fn a_rotated_key_replaces_the_old_one_in_the_index_and_an_older_version_does_not() {
        let mut index = KeyIndex::default();
        index.set("acct-1", "h1", 1);
        index.set("acct-1", "h2", 2);
        index.set("acct-2", "", 1);
        assert_eq!(index.account_of("h1"), None);
        assert_eq!(index.account_of("h2").map(String::as_str), Some("acct-1"));
        // A follower behind the fold brings the old key back for no moment.
        index.set("acct-1", "h1", 1);
        assert_eq!(index.account_of("h1"), None);
        assert_eq!(index.account_of("h2").map(String::as_str), Some("acct-1"));
    }
}
