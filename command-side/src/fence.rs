//! This process's place as the writer of each partition of the command topics, by log
//! order alone ("the latest marker wins", `storage::validity`), and the one way its
//! records reach a partition.
//!
//! At start-up the command side appends a marker to every partition of every command
//! topic and folds each partition up to its own marker: what lands after it from anyone
//! else (a paused predecessor, a late retry) counts for no reader. Every record it writes
//! carries the marker's writer id. When an append fails or times out, its record may
//! still land later, so the partition is *in doubt*: before the next decision on it the
//! command side appends a new marker (a fresh writer id) and folds up to it; the record
//! in doubt then either landed before that marker (and is folded, with its idempotency
//! key) or counts for nobody. The offsets an append returns tell whether anyone wrote in
//! between; only then is the gap read, to find a marker of another writer.
//!
//! Decisions do not wait for each other's appends: a decision hands its record to the
//! partition's [`PartitionWriter`] and lets go of its shard; one flush at a time per
//! partition appends every record handed over meanwhile as one batch (group commit).
//! Only the aggregates a record changes wait for it (`state::Shard::mark`), so no
//! decision rests on a record in flight, and a batch that fails leaves nothing folded.

use crate::error::CommandError;
use crate::ownership::{ADDRESS_HEADER, Ownership};
use chrono::Utc;
use prometheus::Histogram;
use schemas::events::Topic;
use schemas::{Codec, WRITERMARKER_SCHEMA_ID, WriterMarker};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use storage::{Admitted, Appended, EventLog, NewRecord, Validity, marker_of};
use tokio::sync::oneshot;
use uuid::Uuid;

/// At most this many records go in one flush (the rest wait for the next).
const MOST_PER_FLUSH: usize = 1024;

/// The writer's place in one partition; kept by its [`PartitionWriter`].
#[derive(Clone, Debug)]
pub struct Fence {
    /// The writer id this process's records carry (the latest marker's).
    pub writer: String,
    /// Where the next record lands if nobody else writes in between.
    pub next: u64,
    /// An append's outcome is unknown: mark again and fold before the next decision.
    pub in_doubt: bool,
}

impl Default for Fence {
    /// Not marked yet: no decision until the partition is marked and folded.
    fn default() -> Fence {
        Fence {
            writer: String::new(),
            next: 0,
            in_doubt: true,
        }
    }
}

/// Where a record handed to a [`PartitionWriter`] landed, once it is durable and counts.
pub type Landing = oneshot::Receiver<Result<u64, CommandError>>;

/// The writer of one partition of a command topic: its fence and the records waiting
/// for the next flush.
pub struct PartitionWriter {
    topic: Topic,
    partition: u32,
    log: Arc<dyn EventLog>,
    ownership: Arc<Ownership>,
    append_latency: Histogram,
    state: Mutex<Flushes>,
}

#[derive(Default)]
struct Flushes {
    fence: Fence,
    waiting: Vec<(NewRecord, oneshot::Sender<Result<u64, CommandError>>)>,
    /// A flush is under way (it takes what waits when it is done).
    flushing: bool,
}

impl PartitionWriter {
    pub fn new(
        topic: Topic,
        partition: u32,
        log: Arc<dyn EventLog>,
        ownership: Arc<Ownership>,
        append_latency: Histogram,
    ) -> PartitionWriter {
        PartitionWriter {
            topic,
            partition,
            log,
            ownership,
            append_latency,
            state: Mutex::new(Flushes::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, Flushes> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    pub fn fence(&self) -> Fence {
        self.state().fence.clone()
    }

    pub fn in_doubt(&self) -> bool {
        self.state().fence.in_doubt
    }

    /// Sets the fence once the partition is marked and folded (start-up, settling).
    pub fn set_fence(&self, fence: Fence) {
        self.state().fence = fence;
    }

    /// Waits until no flush is under way (before the partition is settled: nothing of
    /// this writer's may land after the settling marker unseen).
    pub async fn quiesce(&self) {
        while self.state().flushing {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether this process decides on the partition (`Elsewhere` or `Moving` if not).
    pub fn owned(&self) -> Result<(), CommandError> {
        self.ownership.check(self.partition)
    }

    /// Hands a record to the next flush, stamped with this writer's id; refused while
    /// the partition is in doubt or owned by another process.
    pub fn submit(self: &Arc<Self>, mut record: NewRecord) -> Result<Landing, CommandError> {
        self.owned()?;
        let mut state = self.state();
        if state.fence.in_doubt {
            return Err(self.doubt());
        }
        record.headers = storage::written_by(&state.fence.writer);
        let (reply, landing) = oneshot::channel();
        state.waiting.push((record, reply));
        if !state.flushing {
            state.flushing = true;
            tokio::spawn(self.clone().flush());
        }
        Ok(landing)
    }

    /// The error of a decision taken while the partition is in doubt (the command side
    /// settles it and decides again).
    pub fn doubt(&self) -> CommandError {
        CommandError::InDoubt {
            topic: self.topic,
            partition: self.partition,
        }
    }

    /// Appends what waits, one batch at a time, until nothing does.
    async fn flush(self: Arc<Self>) {
        loop {
            let (batch, fence) = {
                let mut state = self.state();
                if state.waiting.is_empty() {
                    state.flushing = false;
                    return;
                }
                let take = state.waiting.len().min(MOST_PER_FLUSH);
                (
                    state.waiting.drain(..take).collect::<Vec<_>>(),
                    state.fence.clone(),
                )
            };
            let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            if fence.in_doubt {
                for reply in replies {
                    let _ = reply.send(Err(self.doubt()));
                }
                continue;
            }
            let started = Instant::now();
            let count = records.len();
            let landed = match self.log.append(records).await {
                Ok(appended) => self.check(&fence, &appended, count).await,
                Err(e) => {
                    tracing::error!(topic = self.topic.name(), partition = self.partition, records = count, error = %e, "append failed; the partition is in doubt");
                    Err(CommandError::from(e))
                }
            };
            let mut state = self.state();
            match landed {
                Ok(offsets) => {
                    self.append_latency.observe(started.elapsed().as_secs_f64());
                    if let Some(last) = offsets.last() {
                        state.fence.next = last + 1;
                    }
                    for (reply, offset) in replies.into_iter().zip(offsets) {
                        let _ = reply.send(Ok(offset));
                    }
                }
                Err(e) => {
                    // They may still land: settle before the next decision here.
                    state.fence.in_doubt = true;
                    let why = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(CommandError::Unavailable(why.clone())));
                    }
                }
            }
        }
    }

    /// Where a batch landed, if all of it counts: in this partition, after the fence,
    /// with nobody else's marker before its last record.
    async fn check(
        &self,
        fence: &Fence,
        appended: &[Appended],
        count: usize,
    ) -> Result<Vec<u64>, CommandError> {
        let (topic, partition) = (self.topic.name(), self.partition);
        if appended.len() != count || appended.iter().any(|a| a.partition != partition) {
            return Err(CommandError::Internal(format!(
                "{topic}/{partition}: the log did not append the batch of {count} records to this partition"
            )));
        }
        let offsets: Vec<u64> = appended.iter().map(|a| a.offset).collect();
        let (first, last) = (offsets[0], offsets[count - 1]);
        if first < fence.next || offsets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CommandError::Internal(format!(
                "{topic}/{partition}: the log gave offsets {first}..={last}, before {} already written or out of order",
                fence.next
            )));
        }
        if first == fence.next && last - first + 1 == count as u64 {
            return Ok(offsets); // nobody wrote in between
        }
        let mut from = fence.next;
        while from < last {
            let records = self.log.read(topic, partition, from, 4096).await?;
            let Some(read_to) = records.last() else { break };
            from = read_to.offset + 1;
            for record in records.iter().filter(|r| r.offset < last) {
                if let Admitted::Marker { writer } = Validity::default().admit(record)
                    && writer != fence.writer
                {
                    self.ownership.lose(partition);
                    tracing::warn!(topic, partition, %writer, "another writer marked the partition; this command-api stops deciding on its number");
                    return Err(CommandError::Unavailable(format!(
                        "another writer ({writer}) took {topic}/{partition}"
                    )));
                }
            }
        }
        Ok(offsets)
    }
}

/// A writer id for one marker: the process and a fresh incarnation, so that records a
/// failed append leaves behind never match a later marker of the same process.
pub fn fresh_writer(instance: &str) -> String {
    format!("{instance}/{}", Uuid::new_v4().simple())
}

/// The marker record of `writer` for `partition` of `topic` (of `partitions`), naming
/// where `instance` takes commands.
pub fn marker(
    codec: &Codec,
    topic: &str,
    partition: u32,
    partitions: u32,
    writer: &str,
    instance: &str,
    address: &str,
) -> Result<NewRecord, schemas::CodecError> {
    let frame = WriterMarker {
        writer: writer.to_owned(),
        instance: instance.to_owned(),
        at: Utc::now(),
    };
    let mut headers = marker_of(writer);
    headers.push((ADDRESS_HEADER.to_owned(), address.to_owned().into()));
    Ok(NewRecord {
        topic: topic.to_owned(),
        key: key_in(partition, partitions),
        value: codec.encode_frame(WRITERMARKER_SCHEMA_ID, &frame)?.into(),
        headers,
    })
}

/// A key the partitioner sends to `partition` (records are routed by key alone).
fn key_in(partition: u32, partitions: u32) -> String {
    (0u64..)
        .map(|n| format!("marker/{n}"))
        .find(|key| storage::partition_for(key, partitions) == partition)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_lands_in_its_partition() {
        let codec = Codec::new().expect("codec");
        for partitions in [1, 3, 8, 12] {
            for partition in 0..partitions {
                let record = marker(&codec, "deliveries", partition, partitions, "w", "i", "a")
                    .expect("encodes");
                assert_eq!(storage::partition_for(&record.key, partitions), partition);
            }
        }
    }
}
