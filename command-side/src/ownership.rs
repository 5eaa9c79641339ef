//! Which partition numbers this process writes, and who writes the others.
//!
//! The command topics are co-partitioned: every one has the same partition count, and
//! the unit of ownership is a partition *number* across all of them. On Kafka the
//! instances of `command-api` are members of one consumer group over the owners topic
//! (as many partitions as the command topics); the group's assignment says who should
//! own which number. That is advice, not authority: a new owner appends a marker to its
//! partitions of every command topic (and of the owners topic, with its address), folds
//! up to it and only then serves, and validity comes from the log alone (the latest
//! marker wins, `storage::validity`), so a slow rebalance or a paused process cannot
//! give a partition two valid writers. A request for a number owned elsewhere is
//! forwarded to the owner its latest marker on the owners topic names.
//!
//! On the embedded log one process owns every partition (the data directory's lock says
//! so), and nothing here runs but the table.

use crate::error::CommandError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

/// The topic whose consumer group assigns partition numbers, and whose partitions hold
/// each owner's markers with its address.
pub const OWNERS_TOPIC: &str = "command-owners";
/// Header of a marker naming where its writer takes commands (`http://host:port`).
pub const ADDRESS_HEADER: &str = "address";

/// What this process is to one partition number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Another process owns it (or nobody yet): requests go to the owner.
    Elsewhere,
    /// Assigned here; marking and folding before the first decision.
    Taking,
    /// Marked and folded: this process decides on it.
    Owned,
}

impl Place {
    fn of(byte: u8) -> Place {
        match byte {
            2 => Place::Owned,
            1 => Place::Taking,
            _ => Place::Elsewhere,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Place::Elsewhere => 0,
            Place::Taking => 1,
            Place::Owned => 2,
        }
    }
}

/// Another owner, as its latest marker on the owners topic says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub instance: String,
    pub address: String,
}

/// This process's place in every partition number, and the owners of the others.
pub struct Ownership {
    instance: String,
    /// Where peers reach this process (known once it listens).
    address: RwLock<String>,
    places: Vec<AtomicU8>,
    owners: RwLock<HashMap<u32, Owner>>,
    /// Says which numbers are owned, on `/metrics`.
    gauge: RwLock<Option<prometheus::IntGaugeVec>>,
    /// The first assignment is taken (or, for the only writer, every number).
    joined: AtomicBool,
    /// When another writer's marker was found in a partition this process wrote.
    lost: Mutex<HashMap<u32, Instant>>,
}

impl Ownership {
    /// `partitions` numbers, none owned yet, for a new instance (a fresh id).
    pub fn new(partitions: u32) -> Ownership {
        Ownership {
            instance: uuid::Uuid::new_v4().to_string(),
            address: RwLock::new(String::new()),
            places: (0..partitions.max(1)).map(|_| AtomicU8::new(0)).collect(),
            owners: RwLock::new(HashMap::new()),
            lost: Mutex::new(HashMap::new()),
            joined: AtomicBool::new(false),
            gauge: RwLock::new(None),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Where peers reach this process (`http://host:port`), as its markers say.
    pub fn address(&self) -> String {
        self.address
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_address(&self, address: String) {
        *self.address.write().unwrap_or_else(PoisonError::into_inner) = address;
    }

    pub fn partitions(&self) -> u32 {
        self.places.len() as u32
    }

    pub fn place(&self, partition: u32) -> Place {
        Place::of(self.slot(partition).load(Ordering::Acquire))
    }

    pub fn set(&self, partition: u32, place: Place) {
        self.slot(partition).store(place.byte(), Ordering::Release);
        if let Some(gauge) = &*self.gauge.read().unwrap_or_else(PoisonError::into_inner) {
            gauge
                .with_label_values(&[&partition.to_string()])
                .set(i64::from(place == Place::Owned));
        }
    }

    /// Shows each number's ownership on `gauge` from now on.
    pub fn show_on(&self, gauge: prometheus::IntGaugeVec) {
        for partition in 0..self.partitions() {
            gauge
                .with_label_values(&[&partition.to_string()])
                .set(i64::from(self.place(partition) == Place::Owned));
        }
        *self.gauge.write().unwrap_or_else(PoisonError::into_inner) = Some(gauge);
    }

    fn slot(&self, partition: u32) -> &AtomicU8 {
        &self.places[partition as usize % self.places.len()]
    }

    /// Another writer marked `partition` after this one: it decides there no more.
    pub fn lose(&self, partition: u32) {
        self.set(partition, Place::Elsewhere);
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, Instant::now());
    }

    /// When this process last lost `partition` to another writer's marker (the group
    /// may not have said so yet: it is not taken back at once).
    pub fn lost_at(&self, partition: u32) -> Option<Instant> {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .copied()
    }

    /// Forgets a loss once the group has moved the number away.
    pub fn forget_loss(&self, partition: u32) {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&partition);
    }

    /// Whether this process has taken what it was first given (ready to serve).
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Release);
    }

    /// The numbers this process decides on.
    pub fn owned(&self) -> Vec<u32> {
        (0..self.partitions())
            .filter(|&p| self.place(p) == Place::Owned)
            .collect()
    }

    /// Refuses a decision on a number this process does not own: forwarded to its owner
    /// (`Elsewhere`), or 503 while it is being taken.
    pub fn check(&self, partition: u32) -> Result<(), CommandError> {
        match self.place(partition) {
            Place::Owned => Ok(()),
            Place::Taking => Err(CommandError::Moving { partition }),
            Place::Elsewhere => Err(CommandError::Elsewhere { partition }),
        }
    }

    /// Notes the writer of the latest marker on the owners topic's `partition`.
    pub fn note_owner(&self, partition: u32, owner: Owner) {
        self.owners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, owner);
    }

    /// Another process that owns `partition`, as far as this one has read.
    pub fn owner_of(&self, partition: u32) -> Option<Owner> {
        self.owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .filter(|owner| owner.instance != self.instance)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_forwarded_until_taken_and_owners_name_only_others() {
        let ownership = Ownership::new(4);
        let me = ownership.instance().to_owned();
        assert!(matches!(
            ownership.check(2),
            Err(CommandError::Elsewhere { partition: 2 })
        ));
        ownership.set(2, Place::Taking);
        assert!(matches!(
            ownership.check(2),
            Err(CommandError::Moving { partition: 2 })
        ));
        ownership.set(2, Place::Owned);
        assert!(ownership.check(2).is_ok());
        assert_eq!(ownership.owned(), vec![2]);
        let other = Owner {
            instance: "other".into(),
            address: "http://other".into(),
        };
        ownership.note_owner(1, other.clone());
        ownership.note_owner(
            2,
            Owner {
                instance: me,
                address: "http://me".into(),
            },
        );
        assert_eq!(ownership.owner_of(1), Some(other));
        assert_eq!(
            ownership.owner_of(2),
            None,
            "this process is no peer of its own"
        );
    }
}
