//! [`EmbeddedLog`]: the event log in a fjall database, with group commit.
//!
//! Keyspaces (all in one database, so they share one journal and one fsync):
//! * `log.<topic id>.<partition>`, one per partition, like Kafka's per-partition log
//!   files: `offset (u64 BE)` → `timestamp_ms (i64 BE) | key length (u32 BE) | key |
//!   value`. Every append lands after all the keys of its keyspace, so the LSM tree never
//!   has to merge overlapping data: flushed tables are moved down the levels as they are,
//!   and sustained appends do not slow down as the log grows (with one keyspace for all
//!   partitions, every flush overlapped every older table and compaction rewrote the log
//!   over and over).
//! * `topics`: topic name → `partition count (u32 BE) | topic id (u32 BE)`.
//! * `groups`: `len group | len topic | partition (u32 BE)` → next offset (u64 BE), the
//!   offsets consumer groups commit. Group membership itself lives in the process (see
//!   `group`): the embedded log has one process.
//!
//! Every append goes to one writer thread. It drains all the requests waiting, gives
//! them offsets, writes them in one fjall batch with one `fdatasync`, publishes the new
//! end offsets, then answers all of them: concurrent appenders share an fsync, and a lone
//! appender waits for just its own. Records become visible to readers only once durable
//! (the batch reaches the memtable after the fsync, and reads stop at the published end
//! offset, Kafka's high watermark).

use crate::disk::{DEFAULT_DISK_RESERVE_BYTES, DiskGuard, FreeSpace};
use crate::group::Memberships;
use crate::{
    Appended, Consumer, EventLog, GroupConsumer, NewRecord, Offset, Record, StartAt, StorageError,
    TopicSpec, partition_for,
};
use crate::{blocking, engine, keys, open_database};
use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};

const TOPICS: &str = "topics";
const GROUPS: &str = "groups";

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME: usize = 249;
/// Each partition is a keyspace (its own directory, memtable and table files).
const MAX_PARTITIONS: u32 = 1024;
/// Memtable size of a partition's keyspace: far below fjall's default (64 MiB)
/// because every partition has its own (48 partitions: at most 384 MiB in memtables).
/// Smaller memtables cost nothing here: their flushed tables never overlap.
const PARTITION_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// The writer stops draining once a batch holds this many records, which bounds the
/// size of one journal write and the latency of the appenders in it.
const MAX_BATCH_RECORDS: usize = 32_768;

/// The event log of the embedded deployment. See the module docs for the layout.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    writer: Writer,
}

struct Shared {
    db: Database,
    topic_specs: Keyspace,
    groups: Keyspace,
    topics: RwLock<Topics>,
    /// Set once when a write fails; every later append is refused with it.
    failure: OnceLock<String>,
    disk: DiskGuard,
    fsyncs: AtomicU64,
    /// Held while a batch is written: by the writer thread, or by a lone appender that
    /// writes its own records (see `append`).
    engine: Mutex<()>,
    /// Requests sent to the writer thread and not yet answered.
    queued: AtomicUsize,
    /// The members of each consumer group of this process.
    members: Memberships,
}

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    next_id: u32,
}

struct Topic {
    id: u32,
    partitions: Vec<Partition>,
    /// Bumped after every durable write to one of the topic's partitions, for consumers
    /// of several partitions.
    appended: watch::Sender<u64>,
}

struct Partition {
    records: Keyspace,
    /// The end offset (the next offset). Only the writer thread sends, after the
    /// fsync; tailing readers subscribe.
    end: watch::Sender<Offset>,
}

impl Topic {
    /// Opens (creating if needed) the keyspaces of the topic's partitions and recovers
    /// their end offsets from their last keys.
    fn open(db: &Database, id: u32, partitions: u32) -> Result<Topic, StorageError> {
        let partitions = (0..partitions)
            .map(|partition| {
                let records = db
                    .keyspace(&format!("log.{id}.{partition}"), || {
                        KeyspaceCreateOptions::default().max_memtable_size(PARTITION_MEMTABLE_BYTES)
                    })
                    .map_err(engine)?;
                let end = match records.last_key_value() {
                    Some(last) => keys::record_offset(&last.key().map_err(engine)?)? + 1,
                    None => 0,
                };
                Ok(Partition {
                    records,
                    end: watch::Sender::new(end),
                })
            })
            .collect::<Result<_, StorageError>>()?;
        Ok(Topic {
            id,
            partitions,
            appended: watch::Sender::new(0),
        })
    }

    fn partition_count(&self) -> u32 {
        // At most MAX_PARTITIONS entries.
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }

    fn partition(&self, partition: u32) -> Option<&Partition> {
        self.partitions.get(usize::try_from(partition).ok()?)
    }

    fn partition_or_error(&self, name: &str, partition: u32) -> Result<&Partition, StorageError> {
        self.partition(partition)
            .ok_or_else(|| StorageError::InvalidPartition {
                topic: name.to_owned(),
                partition,
            })
    }
}

/// One `append` call waiting for the writer.
struct Request {
    records: Vec<Pending>,
    reply: oneshot::Sender<Result<Vec<Appended>, StorageError>>,
}

/// A record encoded by the appender, waiting for its offset.
struct Pending {
    topic: Arc<Topic>,
    partition: u32,
    /// The stored record value, built on the appender's thread so the writer only
    /// moves it.
    value: Slice,
}

/// The writer thread's handle: dropping it closes the queue and waits for the thread, so
/// the database is released when the log is dropped (a reopen in the same process works).
struct Writer {
    queue: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A panicked writer has already failed its callers; nothing to add here.
            let _ = thread.join();
        }
    }
}

impl EmbeddedLog {
    /// Opens the log in `dir` (created if missing), recovering topics and end offsets,
    /// keeping [`DEFAULT_DISK_RESERVE_BYTES`] free on its disk.
    pub fn open(dir: &Path) -> Result<EmbeddedLog, StorageError> {
        EmbeddedLog::open_with_reserve(dir, DEFAULT_DISK_RESERVE_BYTES, None)
    }

    /// Opens the log keeping `reserve` bytes free on its disk, as `free` reports them
    /// (`None`: `statvfs` of `dir`).
    pub fn open_with_reserve(
        dir: &Path,
        reserve: u64,
        free: Option<FreeSpace>,
    ) -> Result<EmbeddedLog, StorageError> {
        let db = open_database(dir)?;
        let topic_specs = db
            .keyspace(TOPICS, KeyspaceCreateOptions::default)
            .map_err(engine)?;
        let groups = db
            .keyspace(GROUPS, KeyspaceCreateOptions::default)
            .map_err(engine)?;

        let mut topics = Topics::default();
        for entry in topic_specs.iter() {
            let (name, spec) = entry.into_inner().map_err(engine)?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| StorageError::Corrupt("topic name is not UTF-8".to_owned()))?;
            let (partitions, id) = decode_topic_spec(&spec)?;
            topics.next_id = topics.next_id.max(id.saturating_add(1));
            let topic = Topic::open(&db, id, partitions)?;
            topics.by_name.insert(name, Arc::new(topic));
        }

        let shared = Arc::new(Shared {
            db,
            topic_specs,
            groups,
            topics: RwLock::new(topics),
            failure: OnceLock::new(),
            disk: DiskGuard::new(dir, reserve, free, "the event log"),
            fsyncs: AtomicU64::new(0),
            engine: Mutex::new(()),
            queued: AtomicUsize::new(0),
            members: Memberships::default(),
        });
        let (queue, requests) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("event-log-writer".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run_writer(&shared, &requests)
            })?;
        Ok(EmbeddedLog {
            shared,
            writer: Writer {
                queue: Some(queue),
                thread: Some(thread),
            },
        })
    }

    /// How many durable writes (one fdatasync each) the writer has done: with
    /// concurrent appenders this stays well below the number of appends.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    fn consumer(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
    ) -> Result<EmbeddedConsumer, StorageError> {
        let found = self.topic(topic)?;
        for &(partition, _) in positions {
            found.partition_or_error(topic, partition)?;
        }
        Ok(EmbeddedConsumer {
            topic: found,
            name: topic.to_owned(),
            positions: positions.to_vec(),
            turn: 0,
        })
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, StorageError> {
        self.shared
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::UnknownTopic(name.to_owned()))
    }

    /// Encodes the records (on the caller's thread, to keep the writer's work small).
    fn prepare(&self, records: Vec<NewRecord>) -> Result<Vec<Pending>, StorageError> {
        let timestamp_ms = now_ms();
        let topics = self
            .shared
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        records
            .into_iter()
            .map(|record| {
                let topic = topics
                    .by_name
                    .get(&record.topic)
                    .ok_or_else(|| StorageError::UnknownTopic(record.topic.clone()))?;
                let value = keys::encode_record_value(
                    timestamp_ms,
                    &record.key,
                    &record.value,
                    &record.headers,
                )?;
                Ok(Pending {
                    topic: Arc::clone(topic),
                    partition: partition_for(&record.key, topic.partition_count()),
                    value: Slice::from(value),
                })
            })
            .collect()
    }
}

/// Up to `max` records of one partition from offset `from`, stopping at the published
/// end: records past it may be in the engine but not yet acknowledged as durable.
async fn read_partition(
    topic: &Topic,
    name: &str,
    partition: u32,
    from: Offset,
    max: usize,
) -> Result<Vec<Record>, StorageError> {
    let Some(found) = topic.partition(partition) else {
        return Ok(Vec::new());
    };
    let end = *found.end.borrow();
    let until = end.min(from.saturating_add(u64::try_from(max).unwrap_or(u64::MAX)));
    if from >= until {
        return Ok(Vec::new());
    }
    let records = found.records.clone();
    let name = name.to_owned();
    blocking(until - from, move || {
        records
            .range(keys::offset_key(from)..keys::offset_key(until))
            .map(|entry| {
                let (key, raw) = entry.into_inner().map_err(engine)?;
                let (timestamp_ms, record_key, headers, value) = keys::decode_record_value(&raw)?;
                Ok(Record {
                    topic: name.clone(),
                    partition,
                    offset: keys::record_offset(&key)?,
                    key: record_key.to_owned(),
                    value: Bytes::copy_from_slice(value),
                    headers,
                    timestamp_ms,
                })
            })
            .collect()
    })
    .await
}

/// A consumer of some partitions of one topic: reads from its positions and, when they
/// are all at the end, waits on the topic's appends.
pub(crate) struct EmbeddedConsumer {
    topic: Arc<Topic>,
    name: String,
    /// (partition, next offset), in partition order.
    positions: Vec<(u32, Offset)>,
    /// The partition read first next time, so none waits behind the others.
    turn: usize,
}

impl EmbeddedConsumer {
    /// Up to `max` records after the positions, without waiting; moves the positions on.
    pub(crate) async fn read(&mut self, max: usize) -> Result<Vec<Record>, StorageError> {
        let mut records = Vec::new();
        let count = self.positions.len();
        for i in (0..count).map(|i| (i + self.turn) % count) {
            if records.len() >= max {
                break;
            }
            let (partition, from) = self.positions[i];
            let read = read_partition(
                &self.topic,
                &self.name,
                partition,
                from,
                max - records.len(),
            )
            .await?;
            if let Some(last) = read.last() {
                self.positions[i].1 = last.offset + 1;
            }
            records.extend(read);
        }
        self.turn = self.turn.wrapping_add(1);
        Ok(records)
    }

    /// Changes after every durable append to the topic. Subscribe before reading, so an
    /// append between the read and the wait wakes the waiter.
    pub(crate) fn appended(&self) -> watch::Receiver<u64> {
        self.topic.appended.subscribe()
    }

    pub(crate) fn positions(&self) -> &[(u32, Offset)] {
        &self.positions
    }

    pub(crate) fn set_positions(&mut self, positions: Vec<(u32, Offset)>) {
        self.positions = positions;
    }

    pub(crate) fn partitions(&self) -> u32 {
        self.topic.partition_count()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut appended = self.appended();
        loop {
            let records = self.read(max).await?;
            if !records.is_empty() {
                return Ok(records);
            }
            // Timing out is an answer, not an error.
            match tokio::time::timeout_at(deadline, appended.changed()).await {
                Ok(Ok(())) => {}
                _ => return Ok(Vec::new()),
            }
        }
    }

    fn lag(&self) -> u64 {
        self.positions
            .iter()
            .filter_map(|&(partition, next)| {
                let end = *self.topic.partition(partition)?.end.borrow();
                Some(end.saturating_sub(next))
            })
            .sum()
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), StorageError> {
        for spec in topics {
            validate_topic(spec)?;
        }
        let mut known = self
            .shared
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut created: Vec<(&TopicSpec, u32)> = Vec::new();
        let mut batch = self
            .shared
            .db
            .batch()
            .durability(Some(PersistMode::SyncData));
        let mut next_id = known.next_id;
        for spec in topics {
            if known.by_name.contains_key(&spec.name)
                || created.iter().any(|(c, _)| c.name == spec.name)
            {
                continue;
            }
            let id = next_id;
            next_id = next_id
                .checked_add(1)
                .ok_or_else(|| StorageError::Invalid("too many topics".to_owned()))?;
            batch.insert(
                &self.shared.topic_specs,
                spec.name.as_bytes(),
                encode_topic_spec(spec.partitions, id).to_vec(),
            );
            created.push((spec, id));
        }
        // Rare and small: the fsync runs on this thread rather than a blocking task so
        // the topic map stays locked until the topics are durable.
        batch.commit().map_err(engine)?;
        known.next_id = next_id;
        for (spec, id) in created {
            let topic = Topic::open(&self.shared.db, id, spec.partitions)?;
            known.by_name.insert(spec.name.clone(), Arc::new(topic));
        }
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        Ok(self.topic(topic)?.partition_count())
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, StorageError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(reason) = self.shared.failure.get() {
            return Err(StorageError::Unavailable(reason.clone()));
        }
        let records = self.prepare(records)?;
        // A lone appender (nothing queued, nobody writing) writes and fsyncs on its own
        // thread: handing the batch to the writer thread and back costs two thread
        // wake-ups, as much as the fsync itself on a small VM. Only one appender can
        // hold the engine, so this blocks at most one async worker for one fsync.
        if self.shared.queued.load(Ordering::Acquire) == 0
            && let Ok(_engine) = self.shared.engine.try_lock()
        {
            return self
                .shared
                .write_or_fail(vec![records])
                .map(|mut all| all.pop().unwrap_or_default());
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || StorageError::Unavailable("the event log writer stopped".to_owned());
        let queue = self.writer.queue.as_ref().ok_or_else(stopped)?;
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        queue.send(Request { records, reply }).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            stopped()
        })?;
        answer.await.map_err(|_| stopped())?
    }

    fn atomic_batches(&self) -> bool {
        true
    }

    fn write_failure(&self) -> Option<String> {
        if let Some(failure) = self.shared.failure.get() {
            return Some(failure.clone());
        }
        // Only a disk found low is looked at again (a cheap statvfs): ready comes back
        // when space does, with or without appends.
        if self.shared.disk.low.load(Ordering::Acquire) {
            return self.shared.disk.check().err();
        }
        None
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let found = self.topic(topic)?;
        found.partition_or_error(topic, partition)?;
        read_partition(&found, topic, partition, from, max).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<Offset, StorageError> {
        Ok(*self
            .topic(topic)?
            .partition_or_error(topic, partition)?
            .end
            .borrow())
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset, StorageError> {
        let mut end = self
            .topic(topic)?
            .partition_or_error(topic, partition)?
            .end
            .subscribe();
        // Timing out is an answer, not an error: the caller gets the end as it is.
        let _ = tokio::time::timeout(timeout, end.wait_for(|end| *end > offset)).await;
        let current = *end.borrow();
        Ok(current)
    }

    async fn wait_for_any(
        &self,
        name: &str,
        positions: &[(u32, Offset)],
        timeout: Duration,
    ) -> Result<bool, StorageError> {
        let topic = self.topic(name)?;
        for &(partition, _) in positions {
            topic.partition_or_error(name, partition)?;
        }
        // Subscribed before looking, so an append between the look and the wait still
        // wakes this waiter.
        let mut appended = topic.appended.subscribe();
        let beyond = || {
            positions.iter().any(|&(partition, offset)| {
                topic
                    .partition(partition)
                    .is_some_and(|p| *p.end.borrow() > offset)
            })
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if beyond() {
                return Ok(true);
            }
            // Timing out is an answer, not an error.
            match tokio::time::timeout_at(deadline, appended.changed()).await {
                Ok(Ok(())) => {}
                _ => return Ok(beyond()),
            }
        }
    }

    async fn consume(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
    ) -> Result<Box<dyn Consumer>, StorageError> {
        Ok(Box::new(self.consumer(topic, positions)?))
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        start: Arc<dyn StartAt>,
    ) -> Result<Box<dyn GroupConsumer>, StorageError> {
        keys::group_key(group, topic, 0)?; // a name too long to commit under is an error now
        let consumer = self.consumer(topic, &[])?;
        Ok(Box::new(self.shared.members.join(
            group,
            consumer,
            start,
            self.shared.groups.clone(),
        )))
    }

    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: Offset,
    ) -> Result<(), StorageError> {
        self.topic(topic)?.partition_or_error(topic, partition)?;
        let key = keys::group_key(group, topic, partition)?;
        // No fsync: a lost commit only makes the group re-read records it has handled,
        // and consumers are idempotent.
        self.shared
            .groups
            .insert(key, next.to_be_bytes().to_vec())
            .map_err(engine)?;
        Ok(())
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        let Ok(key) = keys::group_key(group, topic, partition) else {
            // Too long to have been committed.
            return Ok(None);
        };
        self.shared
            .groups
            .get(key)
            .map_err(engine)?
            .map(|raw| keys::decode_u64(&raw, "committed offset"))
            .transpose()
    }
}

/// Kafka's rules for topic names, so a name that works here works on Kafka too.
fn validate_topic(spec: &TopicSpec) -> Result<(), StorageError> {
    let name = &spec.name;
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_TOPIC_NAME || !valid_chars || name == "." || name == ".."
    {
        return Err(StorageError::Invalid(format!(
            "topic name {name:?}: use 1 to {MAX_TOPIC_NAME} of [a-zA-Z0-9._-], not . or .."
        )));
    }
    if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
        return Err(StorageError::Invalid(format!(
            "topic {name:?}: {} partitions, expected 1 to {MAX_PARTITIONS}",
            spec.partitions
        )));
    }
    Ok(())
}

/// `partition count (u32 BE) | topic id (u32 BE)`.
fn encode_topic_spec(partitions: u32, id: u32) -> [u8; 8] {
    let mut spec = [0; 8];
    spec[..4].copy_from_slice(&partitions.to_be_bytes());
    spec[4..].copy_from_slice(&id.to_be_bytes());
    spec
}

/// (partition count, topic id)
fn decode_topic_spec(raw: &[u8]) -> Result<(u32, u32), StorageError> {
    let corrupt = || StorageError::Corrupt(format!("topic entry of {} bytes", raw.len()));
    let raw = <[u8; 8]>::try_from(raw).map_err(|_| corrupt())?;
    let (partitions, id) = raw.split_at(4);
    Ok((
        keys::decode_u32(partitions, "partition count")?,
        keys::decode_u32(id, "topic id")?,
    ))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The writer thread: one durable batch per round of waiting requests.
fn run_writer(shared: &Shared, requests: &mpsc::Receiver<Request>) {
    // Ends when the log is dropped (the queue closes).
    while let Ok(first) = requests.recv() {
        let mut count = first.records.len();
        let mut round = vec![first];
        while count < MAX_BATCH_RECORDS {
            match requests.try_recv() {
                Ok(request) => {
                    count += request.records.len();
                    round.push(request);
                }
                Err(_) => break,
            }
        }

        let taken = round.len();
        let records: Vec<_> = round
            .iter_mut()
            .map(|request| std::mem::take(&mut request.records))
            .collect();
        let written = {
            let _engine = shared.engine.lock().unwrap_or_else(PoisonError::into_inner);
            shared.write_or_fail(records)
        };
        // Only now: while a round is in flight, appenders queue behind it (and share the
        // next fsync) instead of writing on their own.
        shared.queued.fetch_sub(taken, Ordering::AcqRel);
        match written {
            Ok(appended) => {
                for (request, appended) in round.into_iter().zip(appended) {
                    // The appender may have given up waiting; the records are durable anyway.
                    let _ = request.reply.send(Ok(appended));
                }
            }
            Err(error) => refuse(round, &error),
        }
    }
}

fn refuse(round: Vec<Request>, error: &StorageError) {
    for request in round {
        let _ = request
            .reply
            .send(Err(StorageError::Unavailable(error.to_string())));
    }
}

impl Shared {
    /// `write`, refused once a write has failed: the engine may hold part of a failed
    /// batch, so offsets handed out after it would be uncertain and the log takes no
    /// more writes until it is reopened. The caller holds `engine`.
    fn write_or_fail(
        &self,
        requests: Vec<Vec<Pending>>,
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        if let Some(reason) = self.failure.get() {
            return Err(StorageError::Unavailable(reason.clone()));
        }
        self.disk.check().map_err(StorageError::Unavailable)?;
        self.write(requests).map_err(|error| {
            tracing::error!(error = %error, "event log write failed");
            let reason = self
                .failure
                .get_or_init(|| format!("an append failed, the log needs a restart: {error}"));
            StorageError::Unavailable(reason.clone())
        })
    }

    /// Assigns offsets, writes all the records in one fsynced batch, then publishes the
    /// new end offsets. Returns where each request's records landed.
    fn write(&self, requests: Vec<Vec<Pending>>) -> Result<Vec<Vec<Appended>>, StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        // (topic id, partition) → (topic, next offset) for the partitions touched.
        let mut next: HashMap<(u32, u32), (Arc<Topic>, Offset)> = HashMap::new();
        let mut answers = Vec::with_capacity(requests.len());
        for records in requests {
            let mut appended = Vec::with_capacity(records.len());
            for record in records {
                // `prepare` took the partition from the topic it holds, so it exists.
                let partition = record.topic.partition(record.partition).ok_or_else(|| {
                    StorageError::Engine("a record for a partition that does not exist".to_owned())
                })?;
                let (_, offset) = next
                    .entry((record.topic.id, record.partition))
                    .or_insert_with(|| (Arc::clone(&record.topic), *partition.end.borrow()));
                appended.push(Appended {
                    partition: record.partition,
                    offset: *offset,
                });
                let key = keys::offset_key(*offset);
                batch.insert(&partition.records, Slice::new(&key), record.value);
                *offset += 1;
            }
            answers.push(appended);
        }
        batch.commit().map_err(engine)?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        for ((_, partition), (topic, end)) in next {
            if let Some(partition) = topic.partition(partition) {
                partition.end.send_replace(end);
            }
            // Once per partition written: a topic-wide waiter just looks again.
            topic
                .appended
                .send_modify(|writes| *writes = writes.wrapping_add(1));
        }
        Ok(answers)
    }
}
