//! [`EmbeddedLog`]: the event log in a fjall database, with group commit.
//!
//! Keyspaces:
//! * `records`: `topic id (u32 BE) | partition (u32 BE) | offset (u64 BE)` →
//!   `timestamp_ms (i64 BE) | key length (u32 BE) | key | value`. Big-endian numbers make
//!   a partition's records one contiguous key range in offset order; the topic id keeps
//!   keys at 16 bytes, which fjall stores inline.
//! * `topics`: topic name → `partition count (u32 BE) | topic id (u32 BE)`.
//! * `groups`: `len group | len topic | partition (u32 BE)` → next offset (u64 BE).
//!
//! Every append goes to one writer thread. It drains all the requests waiting, gives
//! them offsets, writes them in one fjall batch with one `fdatasync`, publishes the new
//! end offsets, then answers all of them: concurrent appenders share an fsync, and a lone
//! appender waits for just its own. Records become visible to readers only once durable
//! (the batch reaches the memtable after the fsync, and reads stop at the published end
//! offset, Kafka's high watermark).

use super::{blocking, keys, open_database};
use crate::{
    Appended, EventLog, NewRecord, Offset, Record, StorageError, TopicSpec, partition_for,
};
use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};

const RECORDS: &str = "records";
const TOPICS: &str = "topics";
const GROUPS: &str = "groups";

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME: usize = 249;
/// Each partition costs a watch channel in memory; no topic here needs more.
const MAX_PARTITIONS: u32 = 1 << 16;
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
    records: Keyspace,
    topic_specs: Keyspace,
    groups: Keyspace,
    topics: RwLock<Topics>,
    /// Set once when a write fails; every later append is refused with it.
    failure: OnceLock<String>,
    fsyncs: AtomicU64,
}

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    next_id: u32,
}

struct Topic {
    id: u32,
    /// One channel per partition holding its end offset (the next offset). Only the
    /// writer thread sends, after the fsync; tailing readers subscribe.
    ends: Vec<watch::Sender<Offset>>,
}

impl Topic {
    fn new(id: u32, ends: Vec<Offset>) -> Topic {
        Topic {
            id,
            ends: ends.into_iter().map(watch::Sender::new).collect(),
        }
    }

    fn partitions(&self) -> u32 {
        // At most MAX_PARTITIONS entries.
        u32::try_from(self.ends.len()).unwrap_or(u32::MAX)
    }

    fn end(&self, partition: u32) -> Option<&watch::Sender<Offset>> {
        self.ends.get(usize::try_from(partition).ok()?)
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
    /// Opens the log in `dir` (created if missing), recovering topics and end offsets.
    pub fn open(dir: &Path) -> Result<EmbeddedLog, StorageError> {
        let db = open_database(dir)?;
        let records = db.keyspace(RECORDS, KeyspaceCreateOptions::default)?;
        let topic_specs = db.keyspace(TOPICS, KeyspaceCreateOptions::default)?;
        let groups = db.keyspace(GROUPS, KeyspaceCreateOptions::default)?;

        let mut topics = Topics::default();
        for entry in topic_specs.iter() {
            let (name, spec) = entry.into_inner()?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| StorageError::Corrupt("topic name is not UTF-8".to_owned()))?;
            let (partitions, id) = decode_topic_spec(&spec)?;
            let mut ends = Vec::new();
            for partition in 0..partitions {
                let prefix = keys::partition_prefix(id, partition);
                let end = match records.prefix(prefix).next_back() {
                    Some(last) => keys::record_offset(&last.key()?)? + 1,
                    None => 0,
                };
                ends.push(end);
            }
            topics.next_id = topics.next_id.max(id.saturating_add(1));
            topics.by_name.insert(name, Arc::new(Topic::new(id, ends)));
        }

        let shared = Arc::new(Shared {
            db,
            records,
            topic_specs,
            groups,
            topics: RwLock::new(topics),
            failure: OnceLock::new(),
            fsyncs: AtomicU64::new(0),
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

    fn end(&self, topic: &str, partition: u32) -> Result<watch::Sender<Offset>, StorageError> {
        self.topic(topic)?
            .end(partition)
            .cloned()
            .ok_or_else(|| StorageError::InvalidPartition {
                topic: topic.to_owned(),
                partition,
            })
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
                let value = keys::encode_record_value(timestamp_ms, &record.key, &record.value)?;
                Ok(Pending {
                    topic: Arc::clone(topic),
                    partition: partition_for(&record.key, topic.partitions()),
                    value: Slice::from(value),
                })
            })
            .collect()
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
        batch.commit()?;
        known.next_id = next_id;
        for (spec, id) in created {
            let ends = vec![0; spec.partitions as usize];
            known
                .by_name
                .insert(spec.name.clone(), Arc::new(Topic::new(id, ends)));
        }
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        Ok(self.topic(topic)?.partitions())
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, StorageError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(reason) = self.shared.failure.get() {
            return Err(StorageError::Unavailable(reason.clone()));
        }
        let records = self.prepare(records)?;
        let (reply, answer) = oneshot::channel();
        let stopped = || StorageError::Unavailable("the event log writer stopped".to_owned());
        self.writer
            .queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Request { records, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn atomic_batches(&self) -> bool {
        true
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, StorageError> {
        // Stop at the published end: records past it may be in the engine but not
        // yet acknowledged as durable.
        let id = self.topic(topic)?.id;
        let end = *self.end(topic, partition)?.borrow();
        let until = end.min(from.saturating_add(u64::try_from(max).unwrap_or(u64::MAX)));
        if from >= until {
            return Ok(Vec::new());
        }
        let records = self.shared.records.clone();
        let topic = topic.to_owned();
        blocking(move || {
            let range =
                keys::record_key(id, partition, from)..keys::record_key(id, partition, until);
            records
                .range(range)
                .map(|entry| {
                    let (key, raw) = entry.into_inner()?;
                    let (timestamp_ms, record_key, value) = keys::decode_record_value(&raw)?;
                    Ok(Record {
                        topic: topic.clone(),
                        partition,
                        offset: keys::record_offset(&key)?,
                        key: record_key.to_owned(),
                        value: Bytes::copy_from_slice(value),
                        timestamp_ms,
                    })
                })
                .collect()
        })
        .await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<Offset, StorageError> {
        Ok(*self.end(topic, partition)?.borrow())
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset, StorageError> {
        let mut end = self.end(topic, partition)?.subscribe();
        // Timing out is an answer, not an error: the caller gets the end as it is.
        let _ = tokio::time::timeout(timeout, end.wait_for(|end| *end > offset)).await;
        let current = *end.borrow();
        Ok(current)
    }

    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: Offset,
    ) -> Result<(), StorageError> {
        self.end(topic, partition)?;
        let key = keys::group_key(group, topic, partition)?;
        // No fsync: a lost commit only makes the group re-read records it has handled,
        // and consumers are idempotent.
        self.shared
            .groups
            .insert(key, next.to_be_bytes().to_vec())?;
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
            .get(key)?
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

fn encode_topic_spec(partitions: u32, id: u32) -> [u8; 8] {
    keys::partition_prefix(partitions, id)
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

        if let Some(reason) = shared.failure.get() {
            refuse(round, reason);
            continue;
        }
        let replies: Vec<_> = round
            .iter_mut()
            .map(|request| std::mem::take(&mut request.records))
            .collect();
        match shared.write(replies) {
            Ok(appended) => {
                for (request, appended) in round.into_iter().zip(appended) {
                    // The appender may have given up waiting; the records are durable anyway.
                    let _ = request.reply.send(Ok(appended));
                }
            }
            Err(error) => {
                // The engine may hold part of the batch; offsets handed out would be
                // uncertain, so the log takes no more writes until it is reopened.
                let reason = format!("an append failed, the log needs a restart: {error}");
                tracing::error!(error = %error, "event log write failed");
                let reason = shared.failure.get_or_init(|| reason);
                refuse(round, reason);
            }
        }
    }
}

fn refuse(round: Vec<Request>, reason: &str) {
    for request in round {
        let _ = request
            .reply
            .send(Err(StorageError::Unavailable(reason.to_owned())));
    }
}

impl Shared {
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
                let (_, offset) = next
                    .entry((record.topic.id, record.partition))
                    .or_insert_with(|| {
                        let end = record
                            .topic
                            .end(record.partition)
                            .map_or(0, |end| *end.borrow());
                        (Arc::clone(&record.topic), end)
                    });
                let key = keys::record_key(record.topic.id, record.partition, *offset);
                appended.push(Appended {
                    partition: record.partition,
                    offset: *offset,
                });
                *offset += 1;
                batch.insert(&self.records, Slice::new(&key), record.value);
            }
            answers.push(appended);
        }
        batch.commit()?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        for ((_, partition), (topic, end)) in next {
            if let Some(sender) = topic.end(partition) {
                sender.send_replace(end);
            }
        }
        Ok(answers)
    }
}
