//! Consumer groups of the embedded log. The log belongs to one process, so a group's
//! members are tasks of it: the members of a (group, topic) share its partitions round
//! robin by the order they joined, and every join or leave starts a new generation that
//! each member picks up at its next poll, as Kafka members do at a rebalance. As in
//! Kafka's cooperative protocol, a partition moves only once its holder has let it go
//! (at its next poll, so after it applied what it read), which keeps two members from
//! reading one partition at once. A member that leaves (is dropped) lets all go.

use crate::log::EmbeddedConsumer;
use crate::{Consumer, GroupConsumer, Offset, Record, StartAt, StorageError, keys};
use async_trait::async_trait;
use fjall::Keyspace;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Every group of the process, by (group, topic).
#[derive(Default)]
pub(crate) struct Memberships {
    groups: Arc<Mutex<HashMap<(String, String), Group>>>,
}

struct Group {
    /// Member ids in the order they joined.
    members: BTreeSet<u64>,
    next_member: u64,
    /// Who holds each partition held.
    holders: HashMap<u32, u64>,
    /// The generation: bumped at every join and leave.
    generation: watch::Sender<u64>,
}

impl Memberships {
    /// Adds a member to the group of `consumer`'s topic; `consumer` starts with no
    /// partitions and `groups` is where it commits.
    pub(crate) fn join(
        &self,
        group: &str,
        consumer: EmbeddedConsumer,
        start: Arc<dyn StartAt>,
        committed: Keyspace,
    ) -> EmbeddedGroupConsumer {
        let key = (group.to_owned(), consumer.name().to_owned());
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let found = groups.entry(key.clone()).or_insert_with(|| Group {
            members: BTreeSet::new(),
            next_member: 0,
            holders: HashMap::new(),
            generation: watch::Sender::new(0),
        });
        let member = found.next_member;
        found.next_member += 1;
        found.members.insert(member);
        found.generation.send_modify(|g| *g += 1);
        EmbeddedGroupConsumer {
            groups: self.groups.clone(),
            key,
            member,
            generation: found.generation.subscribe(),
            seen: None,
            consumer,
            start,
            committed,
        }
    }
}

pub(crate) struct EmbeddedGroupConsumer {
    groups: Arc<Mutex<HashMap<(String, String), Group>>>,
    key: (String, String),
    member: u64,
    generation: watch::Receiver<u64>,
    /// The generation whose assignment `consumer` holds.
    seen: Option<u64>,
    consumer: EmbeddedConsumer,
    start: Arc<dyn StartAt>,
    committed: Keyspace,
}

impl EmbeddedGroupConsumer {
    /// Takes the current generation: lets go of the partitions no longer its share, takes
    /// the ones of its share nobody holds (the others once their holders let go) and asks
    /// `start` where to read those. Returns the partitions it holds with their positions.
    async fn rebalance(&mut self) -> Result<(), StorageError> {
        let generation = *self.generation.borrow_and_update();
        if self.seen == Some(generation) {
            return Ok(());
        }
        let kept: HashMap<u32, Offset> = self.consumer.positions().iter().copied().collect();
        let (held, taken) = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(group) = groups.get_mut(&self.key) else {
                return Ok(());
            };
            let count = group.members.len() as u32;
            let index = group.members.iter().position(|&m| m == self.member);
            let share = |p: &u32| index.is_some_and(|i| p % count == i as u32);
            let before = group.holders.len();
            group
                .holders
                .retain(|p, holder| *holder != self.member || share(p));
            let mut taken = Vec::new();
            for partition in (0..self.consumer.partitions()).filter(share) {
                if let std::collections::hash_map::Entry::Vacant(free) =
                    group.holders.entry(partition)
                {
                    free.insert(self.member);
                    taken.push(partition);
                }
            }
            if group.holders.len() < before + taken.len() {
                // Let go of some: the members waiting for them take them now.
                group.generation.send_modify(|g| *g += 1);
            }
            let held: Vec<u32> = (0..self.consumer.partitions())
                .filter(|p| group.holders.get(p) == Some(&self.member))
                .collect();
            (held, taken)
        };
        let mut started: HashMap<u32, Offset> = HashMap::new();
        if !taken.is_empty() {
            let offsets = match self.start.positions(&self.key.1, &taken).await {
                Ok(offsets) if offsets.len() == taken.len() => offsets,
                Ok(offsets) => {
                    self.release(&taken);
                    return Err(StorageError::Invalid(format!(
                        "start positions: {} offsets for {} partitions",
                        offsets.len(),
                        taken.len()
                    )));
                }
                Err(error) => {
                    self.release(&taken);
                    return Err(error);
                }
            };
            started.extend(taken.into_iter().zip(offsets));
        }
        let positions: Vec<(u32, Offset)> = held
            .into_iter()
            .map(|p| (p, kept.get(&p).or(started.get(&p)).copied().unwrap_or(0)))
            .collect();
        self.consumer.set_positions(positions);
        self.seen = Some(generation);
        Ok(())
    }

    /// Lets go of partitions it took but could not start.
    fn release(&self, partitions: &[u32]) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = groups.get_mut(&self.key) {
            for partition in partitions {
                group.holders.remove(partition);
            }
            group.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for EmbeddedGroupConsumer {
    fn drop(&mut self) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = groups.get_mut(&self.key) {
            group.members.remove(&self.member);
            group.holders.retain(|_, holder| *holder != self.member);
            group.generation.send_modify(|g| *g += 1);
            if group.members.is_empty() {
                groups.remove(&self.key);
            }
        }
    }
}

#[async_trait]
impl Consumer for EmbeddedGroupConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.rebalance().await?;
            let mut appended = self.consumer.appended();
            let records = self.consumer.read(max).await?;
            if !records.is_empty() {
                return Ok(records);
            }
            // Timing out is an answer, not an error; a new generation is taken at once.
            let woken = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = self.generation.changed() => {}
                }
            })
            .await;
            if woken.is_err() {
                self.rebalance().await?;
                return Ok(Vec::new());
            }
        }
    }

    fn lag(&self) -> u64 {
        self.consumer.lag()
    }
}

impl GroupConsumer for EmbeddedGroupConsumer {
    fn assignment(&self) -> Vec<u32> {
        self.consumer.positions().iter().map(|&(p, _)| p).collect()
    }

    fn assigned(&self) -> bool {
        self.seen.is_some()
    }

    fn commit(&mut self, positions: &[(u32, Offset)]) {
        for &(partition, next) in positions {
            let committed = keys::group_key(&self.key.0, &self.key.1, partition).and_then(|key| {
                self.committed
                    .insert(key, next.to_be_bytes().to_vec())
                    .map_err(crate::engine)
            });
            if let Err(error) = committed {
                tracing::warn!(group = self.key.0, %error, "cannot commit a group offset");
            }
        }
    }
}
