//! The storage ports of the system, free of any engine: each adapter (embedded on fjall,
//! Kafka, ScyllaDB) is a crate of its own that implements them.
//!
//! * [`EventLog`]: the source of truth, shaped after Kafka — topics split into partitions,
//!   records keyed by aggregate id (same key → same partition → ordered), offsets, reads
//!   from any offset, consumer groups that share partitions and hand them over, with
//!   committed offsets, tailing. No transactions.
//! * [`ReadStore`]: where projections keep read models, shaped after ScyllaDB — rows
//!   addressed by (table, partition key, clustering key), version-guarded upserts and
//!   deletes (the higher version wins, like a cell's write timestamp), projector
//!   checkpoints written with the rows they cover.
//!
//! Every adapter runs the same [`conformance`] suite.

pub mod conformance;
mod error;
mod partitioner;
pub mod validity;

pub use error::StorageError;
pub use partitioner::partition_for;
pub use validity::{Admitted, Validity, marker_of, written_by};

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

pub type Offset = u64;

/// A topic and how many partitions it has (fixed once created).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
}

/// A record to append. Its partition is `partition_for(key, partitions)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    pub topic: String,
    pub key: String,
    pub value: Bytes,
    /// Kafka record headers: who wrote the record, whether it is a marker (see
    /// [`validity`]).
    pub headers: Headers,
}

/// A record's headers, in order (a name may repeat).
pub type Headers = Vec<(String, Bytes)>;

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub partition: u32,
    pub offset: Offset,
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: Offset,
    pub key: String,
    pub value: Bytes,
    pub headers: Headers,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Creates the topics that do not exist yet; existing ones are left as they are.
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), StorageError>;

    /// Number of partitions of a topic (`UnknownTopic` if it does not exist).
    async fn partitions(&self, topic: &str) -> Result<u32, StorageError>;

    /// Appends records; returns once all are durable, in the order given. Records with the
    /// same topic and key keep their order. Adapters batch concurrent appends into one
    /// durable write (group commit). Whether a batch spanning partitions is all-or-nothing
    /// is the adapter's (`atomic_batches`); callers that need it order their records so a
    /// prefix can be completed later.
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, StorageError>;

    /// True when `append` of several records is all-or-nothing.
    fn atomic_batches(&self) -> bool;

    /// Why the log cannot take writes now, if it knows (a failed disk): `/readyz` says
    /// so at once, before a client finds out by a 503.
    fn write_failure(&self) -> Option<String> {
        None
    }

    /// Up to `max` records of one partition starting at offset `from`.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, StorageError>;

    /// The offset the next record of the partition will get (Kafka's high watermark).
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<Offset, StorageError>;

    /// Waits until the partition's end offset is beyond `offset` or `timeout` passes;
    /// returns the end offset then. This is how consumers tail the log without polling.
    async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset, StorageError>;

    /// Waits until one of `positions`, (partition, offset) pairs of `topic`, has a record
    /// at or beyond its offset, or `timeout` passes; true when one has. A consumer of
    /// several partitions tails them all with this, as a Kafka consumer polls all the
    /// partitions assigned to it at once.
    async fn wait_for_any(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
        timeout: Duration,
    ) -> Result<bool, StorageError>;

    /// Commits a consumer group's position (the next offset it will read).
    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: Offset,
    ) -> Result<(), StorageError>;

    /// The position a consumer group committed last, if any.
    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError>;

    /// A consumer of `topic` that reads each partition of `positions` from its offset on,
    /// as a Kafka consumer does with the partitions assigned to it: no round trip per
    /// partition to learn where the log ends.
    async fn consume(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
    ) -> Result<Box<dyn Consumer>, StorageError>;

    /// Joins consumer group `group` on `topic`: the group shares the topic's partitions
    /// among its members and moves them as members come and go (a member that stops
    /// polling or goes away loses them). A member reads a partition it is handed from
    /// where `start` says (the caller's own checkpoints), not from the group's committed
    /// offsets, which [`GroupConsumer::commit`] makes follow for lag and tooling.
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        start: Arc<dyn StartAt>,
    ) -> Result<Box<dyn GroupConsumer>, StorageError>;
}

/// Reads the partitions assigned to it, in offset order within each.
#[async_trait]
pub trait Consumer: Send {
    /// The records after the consumer's positions, at most `max`, waiting up to `timeout`
    /// for the first; empty when none came. Each record read moves its partition on.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, StorageError>;

    /// Records known to wait past the positions (as of the last poll), for metrics.
    fn lag(&self) -> u64;
}

/// Where a group member starts reading the partitions its group hands it.
#[async_trait]
pub trait StartAt: Send + Sync + 'static {
    /// The next offset to read of each of `partitions` of `topic`, in the same order.
    /// Called during [`Consumer::poll`] when the group hands the member partitions; an
    /// error there makes that poll an error (the member then leaves the group, and a new
    /// one is made to retry).
    async fn positions(&self, topic: &str, partitions: &[u32])
    -> Result<Vec<Offset>, StorageError>;
}

/// A member of a consumer group: it polls the partitions the group assigned to it now.
pub trait GroupConsumer: Consumer {
    /// The partitions assigned to this member as of the last poll, in order. Empty
    /// before the group has handed it any (and when it has more members than partitions).
    fn assignment(&self) -> Vec<u32>;

    /// True once the group has handed this member its share at least once (which may be
    /// nothing): until then it cannot know whether it is caught up.
    fn assigned(&self) -> bool;

    /// How many times the group has handed this member a share: it changes with every
    /// rebalance this member took part in, even one that gave it what it had.
    fn handovers(&self) -> u64 {
        0
    }

    /// Commits the group's offsets (the next offset of each partition), for lag and
    /// tooling; fire and forget, since the caller's checkpoints are the authority.
    fn commit(&mut self, positions: &[(u32, Offset)]);
}

/// A row of a read-model table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub clustering: String,
    pub value: Bytes,
    pub version: u64,
}

/// A row's version and whether it was deleted: what decides which of two changes to a
/// row stays (see [`Stamp::replaces`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub version: u64,
    pub deleted: bool,
}

impl Stamp {
    /// Whether a change stamped `self` replaces a row stamped `current`: the higher
    /// version wins; on a tie a delete wins, and a put replaces a put. Every adapter keeps
    /// this rule (ScyllaDB natively); a projector merging a batch's changes keeps it too.
    pub fn replaces(self, current: Stamp) -> bool {
        self.version > current.version
            || (self.version == current.version && (self.deleted || !current.deleted))
    }
}

/// A version-guarded change: it takes effect unless the row holds a higher version
/// already (a delete wins over a put of the same version, as in ScyllaDB). Applying the
/// same change twice is therefore harmless, which is what makes projections idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put {
        table: String,
        partition: String,
        clustering: String,
        value: Bytes,
        version: u64,
    },
    Delete {
        table: String,
        partition: String,
        clustering: String,
        version: u64,
    },
}

impl Write {
    /// The table the change is to (a renaming store rewrites it in place).
    pub fn table_mut(&mut self) -> &mut String {
        match self {
            Write::Put { table, .. } | Write::Delete { table, .. } => table,
        }
    }
}

/// A projection's position in one log partition: the next offset it will apply, and the
/// writer whose records count there (see [`validity`]), so it resumes as if it had read
/// from the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub projection: String,
    pub topic: String,
    pub partition: u32,
    pub next: Offset,
    pub writer: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// A slice of one partition, by clustering key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub from: Bound<String>,
    pub to: Bound<String>,
    pub order: Order,
    pub limit: usize,
}

#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    /// Applies the writes, then the checkpoints. The writes may land in any order (each
    /// is version guarded, so the order does not change the result), but no checkpoint
    /// lands before every write: a crash leaves some of the writes, or all of them and
    /// some of the checkpoints. Callers that need one set of rows in before another
    /// (the projector: rows, then the guards that say their events were applied) make
    /// two applies, unless [`ReadStore::atomic`].
    async fn apply(
        &self,
        writes: Vec<Write>,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StorageError>;

    /// True when an apply lands all or nothing (the embedded adapter).
    fn atomic(&self) -> bool {
        false
    }

    /// One row, if it exists and is not deleted.
    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, StorageError>;

    /// Live rows of one partition within the scan's clustering range.
    async fn scan(
        &self,
        table: &str,
        partition: &str,
        scan: Scan,
    ) -> Result<Vec<Row>, StorageError>;

    /// A projection's checkpoint for one log partition: its next offset.
    async fn checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError>;

    /// The writer a projection's checkpoint kept for one log partition.
    async fn checkpoint_writer(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, StorageError>;

    /// Makes `tables` ready for writes (a store with a schema creates them; one without
    /// has nothing to do). Idempotent. A rebuild calls it for the tables of the new
    /// generation of a read model.
    async fn create_tables(&self, tables: &[String]) -> Result<(), StorageError> {
        let _ = tables;
        Ok(())
    }

    /// Removes every row of `tables` and the `checkpoints` named (projection, topic,
    /// partition), as if they had never been written (tombstones too). Idempotent. A
    /// rebuild calls it for the generation it replaced, once no reader reads it any more.
    async fn drop_tables(
        &self,
        tables: &[String],
        checkpoints: &[(String, String, u32)],
    ) -> Result<(), StorageError>;
}
