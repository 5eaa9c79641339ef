//! The projector's consumers: one per (projection, topic) over all the topic's
//! partitions, applying at once after an idle spell, pacing a busy topic, and not
//! pacing when a full batch waits; projectors on one store share the partitions.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use projections::{AccountsProjection, Projection, Projector, ProjectorMetrics};
use prometheus::Registry;
use read_model::tables::{ACCOUNTS, SINGLE_ROW};
use schemas::Codec;
use schemas::events::{AccountRegistered, Envelope, Event, EventMetadata, Topic};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use storage::{
    Checkpoint, EventLog, NewRecord, Offset, ReadStore, Row, Scan, StorageError, TopicSpec, Write,
};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};
use storage_kafka::{KafkaLog, KafkaSettings};
use tokio::sync::watch;
use uuid::Uuid;

const PARTITIONS: u32 = 8;
const PACE: Duration = Duration::from_secs(1);

/// The embedded read store, counting its writes.
struct CountingStore {
    inner: EmbeddedReadStore,
    applies: AtomicUsize,
}

#[async_trait]
impl ReadStore for CountingStore {
    async fn apply(
        &self,
        writes: Vec<Write>,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StorageError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(writes, checkpoints).await
    }
    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, StorageError> {
        self.inner.get(table, partition, clustering).await
    }
    async fn scan(
        &self,
        table: &str,
        partition: &str,
        scan: Scan,
    ) -> Result<Vec<Row>, StorageError> {
        self.inner.scan(table, partition, scan).await
    }
    async fn checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        self.inner.checkpoint(projection, topic, partition).await
    }
    async fn checkpoint_writer(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, StorageError> {
        self.inner
            .checkpoint_writer(projection, topic, partition)
            .await
    }
    async fn drop_tables(
        &self,
        tables: &[String],
        checkpoints: &[(String, String, u32)],
    ) -> Result<(), StorageError> {
        self.inner.drop_tables(tables, checkpoints).await
    }
}

fn registered(codec: &Codec, id: &str) -> NewRecord {
    let envelope = Envelope {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            aggregate_id: id.into(),
            aggregate_version: 1,
            occurred_at: Utc::now(),
            causation_id: "cmd:test".into(),
            correlation_id: "cmd:test".into(),
            principal: "operator".into(),
        },
        event: Event::AccountRegistered(AccountRegistered {
            name: format!("Account {id}"),
            email: format!("{id}@example.com"),
            api_key_hash: String::new(),
        }),
    };
    NewRecord {
        topic: Topic::Accounts.name().into(),
        key: id.into(),
        value: Bytes::from(codec.encode(&envelope).expect("encode")),
        headers: Vec::new(),
    }
}

/// Creates the accounts topic and a counting read store in `dir`.
async fn accounts_topic_and_store(log: &dyn EventLog, dir: &Path) -> Arc<CountingStore> {
    log.create_topics(&[TopicSpec {
        name: Topic::Accounts.name().into(),
        partitions: PARTITIONS,
    }])
    .await
    .expect("topics");
    Arc::new(CountingStore {
        inner: EmbeddedReadStore::open(&dir.join("views")).expect("store"),
        applies: AtomicUsize::new(0),
    })
}

/// Waits until the projection's checkpoint of every partition reached the log's end.
async fn caught_up(log: &dyn EventLog, store: &CountingStore, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut behind = false;
        for partition in 0..PARTITIONS {
            let end = log
                .end_offset(Topic::Accounts.name(), partition)
                .await
                .expect("end");
            let next = store
                .checkpoint(AccountsProjection.name(), Topic::Accounts.name(), partition)
                .await
                .expect("checkpoint")
                .unwrap_or(0);
            behind |= next < end;
        }
        if !behind {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not caught up within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn one_consumer_covers_every_partition_and_paces_a_busy_topic() {
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("log"));
    let store = accounts_topic_and_store(log.as_ref(), dir.path()).await;
    let codec = Codec::new().expect("codec");
    let metrics = ProjectorMetrics::new(&Registry::new()).expect("metrics");
    let projector = Projector::new(log.clone(), store.clone(), codec.clone(), metrics, PACE);
    let (stop, stopped) = watch::channel(false);
    let accounts: Arc<dyn Projection> = Arc::new(AccountsProjection);
    let (tasks, ready) = projector.spawn(&[accounts], stopped).await.expect("spawn");
    assert_eq!(tasks.len(), 1, "one consumer for the one topic");
    let started = Instant::now();
    while !ready.all() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an empty log is caught up with at once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Writes before the first event (the store's group id).
    let before = store.applies.load(Ordering::SeqCst);

    // After an idle spell the first event is applied at once, not after the pace.
    log.append(vec![registered(&codec, "first")])
        .await
        .expect("append");
    let took = caught_up(log.as_ref(), &store, Duration::from_secs(10)).await;
    assert!(took < PACE / 2, "the first event waited {took:?}");
    assert_eq!(store.applies.load(Ordering::SeqCst) - before, 1);

    // A burst right after it, spread over the partitions, waits out the pace and then
    // goes in one write with a checkpoint per partition.
    let burst: Vec<String> = (0..40).map(|n| format!("burst-{n}")).collect();
    let mut partitions = BTreeSet::new();
    for id in &burst {
        let appended = log
            .append(vec![registered(&codec, id)])
            .await
            .expect("append");
        partitions.insert(appended[0].partition);
    }
    assert!(partitions.len() >= 4, "the burst spans partitions");
    caught_up(log.as_ref(), &store, Duration::from_secs(10)).await;
    assert_eq!(store.applies.load(Ordering::SeqCst) - before, 2);
    for id in &burst {
        let row = store.get(ACCOUNTS, id, SINGLE_ROW).await.expect("get");
        assert!(row.is_some(), "account {id} was projected");
    }

    // A full batch waiting is applied at once, pace or not.
    let many: Vec<NewRecord> = (0..100)
        .map(|n| registered(&codec, &format!("many-{n}")))
        .collect();
    log.append(many).await.expect("append");
    let took = caught_up(log.as_ref(), &store, Duration::from_secs(10)).await;
    assert!(took < PACE / 2, "a full batch waited {took:?}");

    stop.send(true).expect("stop");
    for task in tasks {
        task.await.expect("task");
    }
}

/// Events a projector's metrics say it applied.
fn applied(metrics: &ProjectorMetrics) -> u64 {
    metrics
        .events
        .with_label_values(&[AccountsProjection.name()])
        .get()
}

#[tokio::test]
async fn projectors_on_one_store_share_the_partitions_and_take_over_from_one_that_stops() {
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("log"));
    share_and_take_over(log, dir.path(), Duration::from_secs(10)).await;
}

/// The same on a real Kafka-protocol broker at `KAFKA_BROKERS`: the group protocol and
/// the rebalance callback hand the partitions over (slower: rounds of the protocol).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_projectors_on_one_store_share_the_partitions_and_take_over() {
    let Ok(brokers) = std::env::var("KAFKA_BROKERS") else {
        eprintln!(
            "skipped: KAFKA_BROKERS is not set, so projectors were not tried in a Kafka group"
        );
        return;
    };
    let mut settings = KafkaSettings::new(&brokers);
    settings.topic_prefix = format!("projector-{}.", Uuid::new_v4().simple());
    // The test broker loses the rest of a batch when a fetch starts inside one.
    settings
        .client
        .push(("batch.num.messages".into(), "1".into()));
    let log = Arc::new(KafkaLog::connect(settings).expect("a Kafka client"));
    let dir = tempfile::tempdir().expect("dir");
    share_and_take_over(log, dir.path(), Duration::from_secs(60)).await;
}

/// Two projectors on one store and one log share the partitions, each event applied
/// once; when one stops, the other takes its partitions on from their checkpoints.
async fn share_and_take_over(log: Arc<dyn EventLog>, dir: &Path, within: Duration) {
    let store = accounts_topic_and_store(log.as_ref(), dir).await;
    let codec = Codec::new().expect("codec");
    let accounts: Arc<dyn Projection> = Arc::new(AccountsProjection);
    let start = |metrics: ProjectorMetrics| {
        let projector = Projector::new(
            log.clone(),
            store.clone(),
            codec.clone(),
            metrics,
            Duration::ZERO,
        );
        let accounts = accounts.clone();
        async move {
            let (stop, stopped) = watch::channel(false);
            let (tasks, _) = projector.spawn(&[accounts], stopped).await.expect("spawn");
            (stop, tasks)
        }
    };
    let first = ProjectorMetrics::new(&Registry::new()).expect("metrics");
    let second = ProjectorMetrics::new(&Registry::new()).expect("metrics");
    let (stop_first, first_tasks) = start(first.clone()).await;
    let (stop_second, second_tasks) = start(second.clone()).await;

    // Both build the one store, each from its share of the partitions (once both have
    // joined, which each does in its own task: events go in until both have applied
    // some).
    let mut ids: Vec<String> = Vec::new();
    let started = Instant::now();
    while applied(&first) == 0 || applied(&second) == 0 {
        assert!(
            started.elapsed() < within,
            "the partitions were not shared: {} and {}",
            applied(&first),
            applied(&second)
        );
        for _ in 0..8 {
            let id = format!("shared-{}", ids.len());
            log.append(vec![registered(&codec, &id)])
                .await
                .expect("append");
            ids.push(id);
        }
        caught_up(log.as_ref(), &store, within).await;
    }
    let (by_first, by_second) = (applied(&first), applied(&second));
    assert_eq!(
        by_first + by_second,
        ids.len() as u64,
        "each event applied once"
    );

    // The first stops: the second takes its partitions on from their checkpoints.
    stop_first.send(true).expect("stop");
    for task in first_tasks {
        task.await.expect("task");
    }
    let more: Vec<String> = (0..40).map(|n| format!("after-{n}")).collect();
    for id in &more {
        log.append(vec![registered(&codec, id)])
            .await
            .expect("append");
    }
    caught_up(log.as_ref(), &store, within).await;
    assert_eq!(
        applied(&first),
        by_first,
        "a stopped projector applies nothing"
    );
    assert_eq!(applied(&second), by_second + 40, "nothing applied twice");
    for id in ids.iter().chain(&more) {
        let row = store.get(ACCOUNTS, id, SINGLE_ROW).await.expect("get");
        assert!(row.is_some(), "account {id} was projected");
    }
    stop_second.send(true).expect("stop");
    for task in second_tasks {
        task.await.expect("task");
    }
}
