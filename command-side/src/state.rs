//! The write side's view of every aggregate: folded from the log at start-up (the
//! command topics only: telemetry is an observation no command decides on), then kept
//! current by the commands this process appends. It is sharded exactly like the log's
//! partitions, and a shard's lock is held from decision to durable append, so this
//! process is the one writer of each partition (SPEC §4). A package lives with its
//! delivery: its events are in the delivery's records, on the deliveries topic.

use crate::fence::Fence;
use api::{ConsistencyToken, Position};
use domain::{Account, Delivery, Drone, Package};
use schemas::events::{Envelope, Topic};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// An aggregate the command side keeps: where its stream lives and what to call it.
pub trait Kept: domain::Aggregate + Send + 'static {
    const KIND: &'static str;
    const TOPIC: Topic;
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
}

/// What a command that carried an idempotency key produced, to answer its retries.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub version: u64,
    pub token: ConsistencyToken,
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

    pub fn outcome(&self, idempotency_key: &str) -> Option<&Outcome> {
        self.outcomes.get(idempotency_key)
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

/// The aggregates of one log partition, and this process's place as its writer.
pub struct Shard<A> {
    streams: HashMap<String, Stream<A>>,
    pub fence: Fence,
}

impl<A: Kept> Shard<A> {
    pub fn get(&self, id: &str) -> Option<&Stream<A>> {
        self.streams.get(id)
    }

    pub fn streams(&self) -> impl Iterator<Item = (&String, &Stream<A>)> {
        self.streams.iter()
    }

    pub fn entry(&mut self, id: &str) -> &mut Stream<A> {
        self.streams.entry(id.to_string()).or_default()
    }
}

/// All shards of one aggregate type: one per partition of its topic.
pub struct Shards<A> {
    shards: Vec<Arc<Mutex<Shard<A>>>>,
}

impl<A: Kept> Shards<A> {
    pub fn new(partitions: u32) -> Shards<A> {
        Shards {
            shards: (0..partitions.max(1))
                .map(|_| {
                    Arc::new(Mutex::new(Shard {
                        streams: HashMap::new(),
                        fence: Fence::default(),
                    }))
                })
                .collect(),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn partition_of(&self, id: &str) -> u32 {
        storage::partition_for(id, self.shards.len() as u32)
    }

    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<Shard<A>> {
        self.lock_partition(self.partition_of(id)).await
    }

    pub async fn lock_partition(&self, partition: u32) -> OwnedMutexGuard<Shard<A>> {
        let shard = &self.shards[partition as usize % self.shards.len()];
        shard.clone().lock_owned().await
    }
}

/// Idempotency keys seen while folding the log, with the positions of their records,
/// so that a retry after a restart gets the same answer as before it.
#[derive(Default)]
pub struct KeyedCommands {
    positions: HashMap<String, Vec<Position>>,
    // (topic, aggregate id, key) whose outcome must be remembered once all positions are known
    streams: Vec<(Topic, String, String, u64)>,
}

impl KeyedCommands {
    pub fn note(&mut self, topic: Topic, envelope: &Envelope, position: Position) {
        let Some(key) = crate::service::idempotency_key_of(&envelope.metadata.causation_id) else {
            return;
        };
        self.positions
            .entry(key.to_string())
            .or_default()
            .push(position);
        if topic != Topic::DroneTelemetry {
            self.streams.push((
                topic,
                envelope.metadata.aggregate_id.clone(),
                key.to_string(),
                envelope.metadata.aggregate_version,
            ));
        }
    }

    /// Outcomes per (topic, aggregate id): key → outcome. The last event of a command on
    /// a stream gives its version.
    pub fn into_outcomes(self) -> Vec<(Topic, String, String, Outcome)> {
        let positions = self.positions;
        let mut latest: HashMap<(Topic, String, String), u64> = HashMap::new();
        for (topic, id, key, version) in self.streams {
            let v = latest.entry((topic, id, key)).or_default();
            *v = (*v).max(version);
        }
        latest
            .into_iter()
            .map(|((topic, id, key), version)| {
                let token = ConsistencyToken::from_positions(
                    positions.get(&key).cloned().unwrap_or_default(),
                );
                (topic, id, key, Outcome { version, token })
            })
            .collect()
    }
}
