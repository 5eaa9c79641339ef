//! The Kafka adapter of the [`EventLog`] port, on rdkafka (librdkafka, bundled and built
//! from source).
//!
//! - Topics are created through the admin API with the configured partitions and
//!   replication factor; event topics keep their records for ever, telemetry for a time.
//! - Appends go through one idempotent producer with `acks=all`, each record to the
//!   partition the port's murmur2 partitioner gives its key (what Kafka's default
//!   partitioner gives too), so the embedded and the Kafka log agree on placement.
//! - [`EventLog::consume`] is a consumer assigned the partitions asked for at their
//!   offsets; its lag comes from librdkafka's statistics, with no round trip per poll.
//! - [`EventLog::subscribe`] is a member of a consumer group (cooperative-sticky); its
//!   rebalance callback starts each partition it is handed where [`StartAt`] says.
//! - Consumer-group offsets are committed to and read from the broker.
//!
//! Blocking librdkafka calls (metadata, watermarks, polls of a `BaseConsumer`) run on
//! tokio's blocking pool.

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset as KafkaOffset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use storage::{
    Appended, Consumer, EventLog, GroupConsumer, NewRecord, Offset, Record, StartAt, StorageError,
    TopicSpec, partition_for,
};

/// How to reach the cluster and how to create topics. `Debug` hides the values of
/// secret client settings ([`is_secret_option`]).
#[derive(Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Replicas of every topic this adapter creates.
    pub replication_factor: i32,
    /// How long telemetry topics keep their records (event topics keep them for ever).
    pub telemetry_topics: Vec<String>,
    pub telemetry_retention: Duration,
    /// How long a produce may take before the append is an error (unknown outcome).
    pub produce_timeout: Duration,
    /// How long a metadata or watermark request may take.
    pub request_timeout: Duration,
    /// Put before every topic and group name, so several deployments (or test runs)
    /// share one cluster; records read back carry the names without it.
    pub topic_prefix: String,
    /// More librdkafka settings for every client: security (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, …) and
    /// tuning (`batch.num.messages`, …).
    pub client: Vec<(String, String)>,
}

/// Is the librdkafka setting `key` a credential (`sasl.password`, `ssl.key.password`,
/// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, …), whose value is never shown?
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", ".pem", "private"]
        .iter()
        .any(|part| key.contains(part))
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client: Vec<(&str, &str)> = self
            .client
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret_option(key) { "***" } else { value };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("replication_factor", &self.replication_factor)
            .field("telemetry_topics", &self.telemetry_topics)
            .field("telemetry_retention", &self.telemetry_retention)
            .field("produce_timeout", &self.produce_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("topic_prefix", &self.topic_prefix)
            .field("client", &client)
            .finish()
    }
}

impl KafkaSettings {
    pub fn new(brokers: &str) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers.to_owned(),
            replication_factor: 1,
            telemetry_topics: Vec::new(),
            telemetry_retention: Duration::from_secs(7 * 24 * 3600),
            produce_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            topic_prefix: String::new(),
            client: Vec::new(),
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }
}

fn unavailable(what: &str, error: KafkaError) -> StorageError {
    StorageError::Unavailable(format!("kafka: {what}: {error}"))
}

/// The event log on a Kafka cluster.
pub struct KafkaLog {
    settings: KafkaSettings,
    /// Replaced after a failed append (an idempotent producer whose message timed out is
    /// fenced for good): the next append gets a fresh one.
    producer: Mutex<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata and watermarks (a consumer that never subscribes).
    meta: Arc<BaseConsumer>,
    partitions: Mutex<HashMap<String, u32>>,
    /// One consumer per group, for committing and reading its offsets.
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// Readers of single partitions for `read`, kept between calls (a fresh consumer per
    /// read would reconnect every time).
    readers: Mutex<HashMap<(String, u32), SharedReader>>,
}

type SharedReader = Arc<Mutex<Reader>>;

struct Reader {
    consumer: BaseConsumer,
    /// The offset the next poll returns.
    next: Option<Offset>,
}

impl KafkaLog {
    /// Connects (lazily: librdkafka connects on first use) with an idempotent producer.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaLog, StorageError> {
        let config = |what: &str, error: KafkaError| {
            StorageError::Invalid(format!("kafka {what} configuration: {error}"))
        };
        let producer = new_producer(&settings)?;
        let admin: AdminClient<DefaultClientContext> =
            settings.config().create().map_err(|e| config("admin", e))?;
        let meta: BaseConsumer = consumer_config(&settings, None)
            .create()
            .map_err(|e| config("consumer", e))?;
        Ok(KafkaLog {
            settings,
            producer: Mutex::new(producer),
            admin,
            meta: Arc::new(meta),
            partitions: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        })
    }

    /// The cluster's name of a topic (or group).
    fn physical(&self, name: &str) -> String {
        format!("{}{name}", self.settings.topic_prefix)
    }

    async fn partition_count(&self, topic: &str) -> Result<u32, StorageError> {
        if let Some(&n) = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Ok(n);
        }
        let meta = self.meta.clone();
        let name = self.physical(topic);
        let logical = topic.to_owned();
        let timeout = self.settings.request_timeout;
        let count = blocking(move || {
            let metadata = meta
                .fetch_metadata(Some(&name), timeout)
                .map_err(|e| unavailable("metadata", e))?;
            let found = metadata.topics().iter().find(|t| t.name() == name);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(t.partitions().len() as u32)
                }
                _ => Err(StorageError::UnknownTopic(logical)),
            }
        })
        .await?;
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn check_partition(&self, topic: &str, partition: u32) -> Result<u32, StorageError> {
        let count = self.partition_count(topic).await?;
        if partition >= count {
            return Err(StorageError::InvalidPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        Ok(count)
    }

    fn group(&self, group: &str) -> Result<Arc<BaseConsumer>, StorageError> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(consumer) = groups.get(group) {
            return Ok(consumer.clone());
        }
        let consumer: BaseConsumer = consumer_config(&self.settings, Some(&self.physical(group)))
            .create()
            .map_err(|e| StorageError::Invalid(format!("kafka consumer configuration: {e}")))?;
        let consumer = Arc::new(consumer);
        groups.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    fn reader(&self, topic: &str, partition: u32) -> Result<SharedReader, StorageError> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (topic.to_owned(), partition);
        if let Some(reader) = readers.get(&key) {
            return Ok(reader.clone());
        }
        let consumer: BaseConsumer = consumer_config(&self.settings, None)
            .create()
            .map_err(|e| StorageError::Invalid(format!("kafka consumer configuration: {e}")))?;
        let reader = Arc::new(Mutex::new(Reader {
            consumer,
            next: None,
        }));
        readers.insert(key, reader.clone());
        Ok(reader)
    }

    /// Sends the records (in order) and waits for every delivery.
    async fn produce(
        &self,
        producer: &FutureProducer,
        records: &[NewRecord],
        partitions: Vec<u32>,
    ) -> Result<Vec<Appended>, StorageError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for (record, partition) in records.iter().zip(partitions) {
            let topic = self.physical(&record.topic);
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_ref()),
                });
            }
            let future = producer
                .send_result(
                    FutureRecord::to(&topic)
                        .partition(partition as i32)
                        .key(record.key.as_bytes())
                        .payload(record.value.as_ref())
                        .headers(headers),
                )
                .map_err(|(error, _)| unavailable("produce", error))?;
            deliveries.push(future);
        }
        let mut appended = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(delivery)) => appended.push(Appended {
                    partition: u32::try_from(delivery.partition).unwrap_or(0),
                    offset: u64::try_from(delivery.offset).unwrap_or(0),
                }),
                Ok(Err((error, _))) => return Err(unavailable("produce", error)),
                Err(_) => {
                    return Err(StorageError::Unavailable(
                        "kafka: the producer dropped a delivery".into(),
                    ));
                }
            }
        }
        Ok(appended)
    }

    async fn high_watermark(&self, topic: &str, partition: u32) -> Result<Offset, StorageError> {
        let meta = self.meta.clone();
        let name = self.physical(topic);
        let timeout = self.settings.request_timeout;
        blocking(move || {
            let (_, high) = meta
                .fetch_watermarks(&name, partition as i32, timeout)
                .map_err(|e| unavailable("watermarks", e))?;
            Ok(u64::try_from(high).unwrap_or(0))
        })
        .await
    }
}

/// An idempotent producer with `acks=all`; the timeout bounds how long an append may be
/// in doubt.
fn new_producer(settings: &KafkaSettings) -> Result<FutureProducer, StorageError> {
    let mut config = settings.config();
    // A command waits for its record: send it at once, unless the operator tunes it.
    if config.get("linger.ms").is_none() {
        config.set("linger.ms", "0");
    }
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            settings.produce_timeout.as_millis().to_string(),
        )
        .create()
        .map_err(|e| StorageError::Invalid(format!("kafka producer configuration: {e}")))
}

/// A consumer's settings: no automatic commits (positions are the caller's) and a group
/// only where offsets are committed. Statistics give the lag without a round trip.
fn consumer_config(settings: &KafkaSettings, group: Option<&str>) -> ClientConfig {
    let mut config = settings.config();
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "group.id",
            group.map_or_else(
                || format!("drone-delivery-reader-{}", uuid::Uuid::new_v4()),
                str::to_owned,
            ),
        );
    config
}

async fn blocking<T, F>(work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Engine(format!("kafka task failed: {e}")))?
}

/// A record as the port sees it: `prefix` taken off its topic's name.
fn record_of(message: &rdkafka::message::BorrowedMessage<'_>, prefix: &str) -> Record {
    let topic = message.topic();
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        Bytes::copy_from_slice(h.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        headers,
        topic: topic.strip_prefix(prefix).unwrap_or(topic).to_owned(),
        partition: u32::try_from(message.partition()).unwrap_or(0),
        offset: u64::try_from(message.offset()).unwrap_or(0),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), StorageError> {
        if topics.is_empty() {
            return Ok(()); // librdkafka refuses an empty request
        }
        let retention = |name: &str| {
            if self.settings.telemetry_topics.iter().any(|t| t == name) {
                self.settings.telemetry_retention.as_millis().to_string()
            } else {
                "-1".to_owned()
            }
        };
        let retentions: Vec<String> = topics.iter().map(|t| retention(&t.name)).collect();
        let names: Vec<String> = topics.iter().map(|t| self.physical(&t.name)).collect();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&retentions)
            .zip(&names)
            .map(|((t, retention), name)| {
                NewTopic::new(
                    name,
                    t.partitions as i32,
                    TopicReplication::Fixed(self.settings.replication_factor),
                )
                .set("retention.ms", retention)
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(Timeout::After(self.settings.request_timeout)));
        let results = self
            .admin
            .create_topics(new.iter(), &options)
            .await
            .map_err(|e| unavailable("create topics", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(StorageError::Unavailable(format!(
                        "kafka: cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        // A new topic reaches the metadata of every broker a little later.
        for spec in topics {
            let mut waited = Duration::ZERO;
            loop {
                self.partitions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&spec.name);
                match self.partition_count(&spec.name).await {
                    Ok(_) => break,
                    Err(error) if waited >= self.settings.request_timeout => return Err(error),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        waited += Duration::from_millis(100);
                    }
                }
            }
        }
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.partition_count(topic).await
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, StorageError> {
        // Every topic is checked before anything is sent: an append naming an unknown
        // topic writes nothing.
        let mut partitions = Vec::with_capacity(records.len());
        for record in &records {
            let count = self.partition_count(&record.topic).await?;
            partitions.push(partition_for(&record.key, count));
        }
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let result = self.produce(&producer, &records, partitions).await;
        if result.is_err() {
            // After a timed-out message an idempotent producer's sequence is in doubt and
            // the broker fences it; a new producer (a new producer id) starts clean.
            tracing::warn!("a Kafka append failed; the next one gets a new producer");
            *self.producer.lock().unwrap_or_else(PoisonError::into_inner) =
                new_producer(&self.settings)?;
        }
        result
    }

    fn atomic_batches(&self) -> bool {
        false
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.check_partition(topic, partition).await?;
        let end = self.high_watermark(topic, partition).await?;
        let until = end.min(from.saturating_add(max as u64));
        if from >= until {
            return Ok(Vec::new());
        }
        let reader = self.reader(topic, partition)?;
        let name = self.physical(topic);
        let prefix = self.settings.topic_prefix.clone();
        let timeout = self.settings.request_timeout;
        blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            if reader.next != Some(from) {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&name, partition as i32, KafkaOffset::Offset(from as i64))
                    .map_err(|e| unavailable("assign", e))?;
                reader
                    .consumer
                    .assign(&tpl)
                    .map_err(|e| unavailable("assign", e))?;
                reader.next = Some(from);
            }
            let mut records = Vec::new();
            let deadline = std::time::Instant::now() + timeout;
            while reader.next.is_some_and(|next| next < until) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    reader.next = None;
                    return Err(StorageError::Unavailable(format!(
                        "kafka: {name}/{partition} did not deliver offsets {from}..{until} in time"
                    )));
                }
                match reader.consumer.poll(left) {
                    Some(Ok(message)) => {
                        let record = record_of(&message, &prefix);
                        reader.next = Some(record.offset + 1);
                        if record.offset >= from {
                            records.push(record);
                        }
                    }
                    Some(Err(error)) => {
                        reader.next = None;
                        return Err(unavailable("fetch", error));
                    }
                    None => {}
                }
            }
            Ok(records)
        })
        .await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<Offset, StorageError> {
        self.check_partition(topic, partition).await?;
        self.high_watermark(topic, partition).await
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let end = self.end_offset(topic, partition).await?;
            if end > offset || tokio::time::Instant::now() >= deadline {
                return Ok(end);
            }
            tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn wait_for_any(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
        timeout: Duration,
    ) -> Result<bool, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            for &(partition, offset) in positions {
                if self.end_offset(topic, partition).await? > offset {
                    return Ok(true);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: Offset,
    ) -> Result<(), StorageError> {
        self.check_partition(topic, partition).await?;
        let consumer = self.group(group)?;
        let name = self.physical(topic);
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&name, partition as i32, KafkaOffset::Offset(next as i64))
                .map_err(|e| unavailable("commit", e))?;
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| unavailable("commit", e))
        })
        .await
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        self.check_partition(topic, partition).await?;
        let consumer = self.group(group)?;
        let name = self.physical(topic);
        let timeout = self.settings.request_timeout;
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&name, partition as i32);
            let committed = consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| unavailable("committed offsets", e))?;
            Ok(committed.elements().first().and_then(|e| match e.offset() {
                KafkaOffset::Offset(n) => u64::try_from(n).ok(),
                _ => None,
            }))
        })
        .await
    }

    async fn consume(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
    ) -> Result<Box<dyn Consumer>, StorageError> {
        let name = self.physical(topic);
        let mut tpl = TopicPartitionList::new();
        let tracked = Arc::new(Tracked::default());
        for &(partition, offset) in positions {
            self.check_partition(topic, partition).await?;
            let high = self.high_watermark(topic, partition).await?;
            tracked.start(partition, offset, high);
            tpl.add_partition_offset(&name, partition as i32, KafkaOffset::Offset(offset as i64))
                .map_err(|e| unavailable("assign", e))?;
        }
        let consumer: BaseConsumer<LagContext> = consumer_config(&self.settings, None)
            .set("statistics.interval.ms", "1000")
            .create_with_context(LagContext {
                topic: name,
                tracked: tracked.clone(),
            })
            .map_err(|e| StorageError::Invalid(format!("kafka consumer configuration: {e}")))?;
        consumer
            .assign(&tpl)
            .map_err(|e| unavailable("assign", e))?;
        Ok(Box::new(KafkaConsumer {
            consumer: Arc::new(consumer),
            tracked,
            prefix: self.settings.topic_prefix.clone(),
        }))
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        start: Arc<dyn StartAt>,
    ) -> Result<Box<dyn GroupConsumer>, StorageError> {
        self.partition_count(topic).await?;
        let name = self.physical(topic);
        let tracked = Arc::new(Tracked::default());
        let runtime = tokio::runtime::Handle::current();
        let mut config = consumer_config(&self.settings, Some(&self.physical(group)));
        // A member that died hands its partitions over after this long (librdkafka's
        // default is 45 s); the operator may choose otherwise.
        if config.get("session.timeout.ms").is_none() {
            config.set("session.timeout.ms", "10000");
        }
        // Members hand partitions over one at a time; an operator may choose an eager
        // protocol (the test broker, tansu 0.6, does not reassign a dead member's
        // partitions under the cooperative one).
        if config.get("partition.assignment.strategy").is_none() {
            config.set("partition.assignment.strategy", "cooperative-sticky");
        }
        let consumer: BaseConsumer<GroupContext> = config
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            .create_with_context(GroupContext {
                topic: name.clone(),
                logical: topic.to_owned(),
                tracked: tracked.clone(),
                start,
                runtime: runtime.clone(),
                meta: self.meta.clone(),
                timeout: self.settings.request_timeout,
                assigned: AtomicBool::new(false),
                handovers: std::sync::atomic::AtomicU64::new(0),
                failure: Mutex::new(None),
            })
            .map_err(|e| StorageError::Invalid(format!("kafka consumer configuration: {e}")))?;
        consumer
            .subscribe(&[&name])
            .map_err(|e| unavailable("subscribe", e))?;
        Ok(Box::new(KafkaGroupConsumer {
            consumer: Some(Arc::new(consumer)),
            tracked,
            prefix: self.settings.topic_prefix.clone(),
            runtime,
        }))
    }
}

/// Where a consumer stands in each partition it reads, for its lag: the next offset it
/// will hand out and the partition's high watermark (from the assignment, then from
/// librdkafka's statistics, with no round trip per poll).
#[derive(Default)]
struct Tracked {
    partitions: Mutex<BTreeMap<u32, Position>>,
}

#[derive(Clone, Copy)]
struct Position {
    next: Offset,
    high: Offset,
}

impl Tracked {
    fn start(&self, partition: u32, next: Offset, high: Offset) {
        self.lock().insert(partition, Position { next, high });
    }

    fn stop(&self, partition: u32) {
        self.lock().remove(&partition);
    }

    /// Moves the positions past `records`; drops the records of partitions no longer
    /// tracked (revoked during the poll that read them: their new owner reads them).
    fn read(&self, records: &mut Vec<Record>) {
        let mut partitions = self.lock();
        records.retain(|record| match partitions.get_mut(&record.partition) {
            Some(position) => {
                position.next = record.offset + 1;
                position.high = position.high.max(position.next);
                true
            }
            None => false,
        });
    }

    fn stats(&self, topic: &str, statistics: &Statistics) {
        let Some(found) = statistics.topics.get(topic) else {
            return;
        };
        let mut partitions = self.lock();
        for (partition, position) in partitions.iter_mut() {
            if let Some(stats) = found.partitions.get(&(*partition as i32))
                && let Ok(high) = u64::try_from(stats.hi_offset)
            {
                position.high = high;
            }
        }
    }

    fn lag(&self) -> u64 {
        self.lock()
            .values()
            .map(|p| p.high.saturating_sub(p.next))
            .sum()
    }

    fn assignment(&self) -> Vec<u32> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Position>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The context of a consumer assigned its partitions by the caller.
struct LagContext {
    topic: String,
    tracked: Arc<Tracked>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        self.tracked.stats(&self.topic, &statistics);
    }
}

impl ConsumerContext for LagContext {}

struct KafkaConsumer {
    consumer: Arc<BaseConsumer<LagContext>>,
    tracked: Arc<Tracked>,
    prefix: String,
}

/// Polls up to `max` messages on the blocking pool: waits up to `timeout` for the
/// first, then takes only what is already there. `failed` is asked after every poll of
/// librdkafka (a rebalance callback may have failed during it).
async fn poll_messages<C: ConsumerContext + 'static>(
    consumer: &Arc<BaseConsumer<C>>,
    prefix: &str,
    max: usize,
    timeout: Duration,
    failed: fn(&C) -> Option<StorageError>,
) -> Result<Vec<Record>, StorageError> {
    let consumer = consumer.clone();
    let prefix = prefix.to_owned();
    blocking(move || {
        let mut records = Vec::new();
        let mut wait = timeout;
        while records.len() < max {
            let polled = consumer.poll(wait);
            if let Some(error) = failed(consumer.context()) {
                return Err(error);
            }
            match polled {
                Some(Ok(message)) => records.push(record_of(&message, &prefix)),
                Some(Err(error)) => return Err(unavailable("fetch", error)),
                None => break,
            }
            wait = Duration::ZERO;
        }
        Ok(records)
    })
    .await
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        let mut records =
            poll_messages(&self.consumer, &self.prefix, max, timeout, |_| None).await?;
        self.tracked.read(&mut records);
        Ok(records)
    }

    fn lag(&self) -> u64 {
        self.tracked.lag()
    }
}

/// The context of a consumer-group member: librdkafka runs the group protocol
/// (cooperative-sticky, so a rebalance moves only the partitions that change hands), and
/// the rebalance callback, run inside a poll on the blocking pool, asks [`StartAt`]
/// where each partition it is handed starts and assigns it there.
struct GroupContext {
    topic: String,
    logical: String,
    tracked: Arc<Tracked>,
    start: Arc<dyn StartAt>,
    runtime: tokio::runtime::Handle,
    /// For the high watermarks of partitions handed over (not the member's own handle,
    /// which is inside its callback).
    meta: Arc<BaseConsumer>,
    timeout: Duration,
    assigned: AtomicBool,
    handovers: std::sync::atomic::AtomicU64,
    failure: Mutex<Option<StorageError>>,
}

impl GroupContext {
    /// Start offsets and high watermarks of partitions handed to this member.
    fn started(&self, partitions: &[u32]) -> Result<Vec<(Offset, Offset)>, StorageError> {
        let offsets = self
            .runtime
            .block_on(self.start.positions(&self.logical, partitions))?;
        if offsets.len() != partitions.len() {
            return Err(StorageError::Invalid(format!(
                "start positions: {} offsets for {} partitions",
                offsets.len(),
                partitions.len()
            )));
        }
        partitions
            .iter()
            .zip(offsets)
            .map(|(&partition, next)| {
                let (_, high) = self
                    .meta
                    .fetch_watermarks(&self.topic, partition as i32, self.timeout)
                    .map_err(|e| unavailable("watermarks", e))?;
                Ok((next, u64::try_from(high).unwrap_or(0)))
            })
            .collect()
    }

    fn fail(&self, error: StorageError) {
        tracing::warn!(topic = self.logical, %error, "a consumer-group member cannot take its partitions; it leaves the group");
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    fn take_failure(&self) -> Option<StorageError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        self.tracked.stats(&self.topic, &statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions: Vec<u32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .filter_map(|e| u32::try_from(e.partition()).ok())
            .collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match self.started(&partitions) {
                    Ok(started) => {
                        for (&partition, &(next, high)) in partitions.iter().zip(&started) {
                            let at = KafkaOffset::Offset(next as i64);
                            if let Err(error) =
                                tpl.set_partition_offset(&self.topic, partition as i32, at)
                            {
                                self.fail(unavailable("assign", error));
                            }
                            self.tracked.start(partition, next, high);
                        }
                    }
                    Err(error) => self.fail(error),
                }
                self.assigned.store(true, Ordering::Release);
                self.handovers.fetch_add(1, Ordering::AcqRel);
                // Assigned even after a failure: the protocol wants an answer, and the
                // poll that reports the failure makes the member leave.
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            _ => {
                if cooperative {
                    for &partition in &partitions {
                        self.tracked.stop(partition);
                    }
                    consumer.incremental_unassign(tpl)
                } else {
                    for partition in self.tracked.assignment() {
                        self.tracked.stop(partition);
                    }
                    consumer.unassign()
                }
            }
        };
        if let Err(error) = result {
            self.fail(unavailable("rebalance", error));
        }
    }
}

struct KafkaGroupConsumer {
    consumer: Option<Arc<BaseConsumer<GroupContext>>>,
    tracked: Arc<Tracked>,
    prefix: String,
    runtime: tokio::runtime::Handle,
}

impl KafkaGroupConsumer {
    fn consumer(&self) -> Result<&Arc<BaseConsumer<GroupContext>>, StorageError> {
        self.consumer
            .as_ref()
            .ok_or_else(|| StorageError::Unavailable("kafka: the member has left".into()))
    }
}

impl Drop for KafkaGroupConsumer {
    /// Leaving the group waits for the broker: not on a runtime thread.
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            self.runtime.spawn_blocking(move || drop(consumer));
        }
    }
}

#[async_trait]
impl Consumer for KafkaGroupConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        let consumer = self.consumer()?.clone();
        let mut records = poll_messages(&consumer, &self.prefix, max, timeout, |context| {
            context.take_failure()
        })
        .await?;
        self.tracked.read(&mut records);
        Ok(records)
    }

    fn lag(&self) -> u64 {
        self.tracked.lag()
    }
}

impl GroupConsumer for KafkaGroupConsumer {
    fn assignment(&self) -> Vec<u32> {
        self.tracked.assignment()
    }

    fn assigned(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| c.context().assigned.load(Ordering::Acquire))
    }

    fn handovers(&self) -> u64 {
        self.consumer
            .as_ref()
            .map_or(0, |c| c.context().handovers.load(Ordering::Acquire))
    }

    fn commit(&mut self, positions: &[(u32, Offset)]) {
        let Ok(consumer) = self.consumer() else {
            return;
        };
        let topic = consumer.context().topic.clone();
        let mut tpl = TopicPartitionList::new();
        for &(partition, next) in positions {
            if tpl
                .add_partition_offset(&topic, partition as i32, KafkaOffset::Offset(next as i64))
                .is_err()
            {
                return;
            }
        }
        // Asynchronous: a commit that fails (a partition moved meanwhile) is made good
        // by the next one, and the checkpoints are the authority anyway.
        if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "a group offset commit failed");
        }
    }
}
