//! The projector workers: one task per (projection, topic) tails every partition of the
//! topic from the projection's checkpoints and applies each batch of events together
//! with the checkpoints after it, so a crash at any point neither loses nor doubles an
//! effect.

use crate::error::ProjectionError;
use crate::metrics::ProjectorMetrics;
use crate::projection::{Model, Projection, Source, Staged};
use api::ConsistencyToken;
use schemas::Codec;
use schemas::events::Topic;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::{
    Admitted, Checkpoint, Consumer, EventLog, ReadStore, Record, StorageError, Validity,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records applied in one read-store write at most.
const BATCH: usize = 512;
/// How long a caught-up topic waits for a record before looking at shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Records in a poll that a paced topic applies at once rather than waiting out the pace.
const PACE_UNTIL: usize = 64;

#[derive(Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    codec: Codec,
    metrics: ProjectorMetrics,
    pace: Duration,
}

impl Projector {
    /// `pace`: a topic's consumer that applied a batch less than this long ago waits out
    /// the rest before its next one, unless `PACE_UNTIL` records are waiting. Under a
    /// stream of commands each apply then takes several events instead of one (an
    /// apply costs reads, a read-store write and a thread wake-up, on the cores the
    /// commands need), while an idle topic still applies its next event at once.
    /// Zero applies every event as soon as it is durable.
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
        codec: Codec,
        metrics: ProjectorMetrics,
        pace: Duration,
    ) -> Projector {
        Projector {
            log,
            store,
            codec,
            metrics,
            pace,
        }
    }

    /// Starts the projections, one task per (projection, topic); the tasks end when
    /// `shutdown` turns true.
    pub async fn spawn(
        &self,
        projections: &[Arc<dyn Projection>],
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Vec<JoinHandle<()>>, CaughtUp), StorageError> {
        let mut tasks = Vec::new();
        let caught_up = CaughtUp {
            workers: projections.iter().map(|p| p.topics().len()).sum(),
            done: Arc::new(AtomicUsize::new(0)),
        };
        for projection in projections {
            let lags = Arc::new(Mutex::new(HashMap::new()));
            for topic in projection.topics() {
                let worker = self.worker(projection, *topic, lags.clone()).await?;
                tasks.push(tokio::spawn(
                    worker.run(shutdown.clone(), caught_up.done.clone()),
                ));
            }
        }
        Ok((tasks, caught_up))
    }

    /// Applies everything up to the current end of the log once (replays and tests).
    pub async fn catch_up(&self, projection: &Arc<dyn Projection>) -> Result<u64, ProjectionError> {
        let mut applied = 0;
        for topic in projection.topics() {
            let worker = self
                .worker(projection, *topic, Arc::new(Mutex::new(HashMap::new())))
                .await?;
            let ends = worker.ends().await?;
            let mut at = worker.checkpoints().await?;
            let mut consumer = worker.consumer(&at).await?;
            while at.next.iter().zip(&ends).any(|(next, end)| next < end) {
                let records = consumer.poll(BATCH, IDLE_WAIT).await?;
                if records.is_empty() {
                    break; // the log holds less than its end offsets promised
                }
                applied += worker.apply(&records, &mut at).await?;
            }
        }
        Ok(applied)
    }

    async fn worker(
        &self,
        projection: &Arc<dyn Projection>,
        topic: Topic,
        lags: Arc<Mutex<HashMap<Topic, u64>>>,
    ) -> Result<TopicWorker, StorageError> {
        Ok(TopicWorker {
            projector: self.clone(),
            projection: projection.clone(),
            topic,
            partitions: self.log.partitions(topic.name()).await?,
            lags,
        })
    }
}

/// Whether every consumer of a projector has caught up with the log once since it
/// started (what `/readyz` waits for).
#[derive(Clone, Debug)]
pub struct CaughtUp {
    workers: usize,
    done: Arc<AtomicUsize>,
}

impl CaughtUp {
    pub fn all(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.workers
    }
}

/// True when the read model has applied every position of `token` in its topics.
pub async fn caught_up(
    store: &dyn ReadStore,
    model: Model,
    token: &ConsistencyToken,
) -> Result<bool, StorageError> {
    for position in &token.positions {
        if !model.topics.contains(&position.topic) {
            continue;
        }
        let next = store
            .checkpoint(model.name, position.topic.name(), position.partition)
            .await?
            .unwrap_or(0);
        if next <= position.offset {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Consumes every partition of one topic for one projection, as a Kafka consumer does
/// with the partitions assigned to it: what it reads from them goes into one read-store
/// write with a checkpoint per partition read.
struct TopicWorker {
    projector: Projector,
    projection: Arc<dyn Projection>,
    topic: Topic,
    partitions: u32,
    /// Lag of each topic of this projection; the gauge shows their sum.
    lags: Arc<Mutex<HashMap<Topic, u64>>>,
}

/// Where a worker stands in each partition: the next offset, and which writer's records
/// count there (restored from the checkpoints, so it classifies records as a reader from
/// the start would).
struct At {
    next: Vec<u64>,
    validity: Validity,
}

impl TopicWorker {
    /// The checkpoints of every partition.
    async fn checkpoints(&self) -> Result<At, StorageError> {
        let store = &self.projector.store;
        let (name, topic) = (self.projection.name(), self.topic.name());
        let mut at = At {
            next: Vec::with_capacity(self.partitions as usize),
            validity: Validity::default(),
        };
        for partition in 0..self.partitions {
            let next = store.checkpoint(name, topic, partition).await?;
            at.next.push(next.unwrap_or(0));
            let writer = store.checkpoint_writer(name, topic, partition).await?;
            at.validity.resume(topic, partition, writer);
        }
        Ok(at)
    }

    /// A consumer of every partition, from `at`.
    async fn consumer(&self, at: &At) -> Result<Box<dyn Consumer>, StorageError> {
        let positions: Vec<(u32, u64)> = (0..self.partitions).zip(at.next.clone()).collect();
        self.projector
            .log
            .consume(self.topic.name(), &positions)
            .await
    }

    /// The end offset of each partition (for a catch-up that must stop somewhere).
    async fn ends(&self) -> Result<Vec<u64>, StorageError> {
        let mut ends = Vec::with_capacity(self.partitions as usize);
        for partition in 0..self.partitions {
            ends.push(
                self.projector
                    .log
                    .end_offset(self.topic.name(), partition)
                    .await?,
            );
        }
        Ok(ends)
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>, caught_up: Arc<AtomicUsize>) {
        let name = self.projection.name();
        let mut counted = false;
        // Made again from the checkpoints after a failure: records it read before may
        // not have been applied.
        let mut state: Option<(Box<dyn Consumer>, At)> = None;
        let mut last_apply: Option<Instant> = None;
        while !*shutdown.borrow() {
            let result = match state.as_mut() {
                None => match self.checkpoints().await {
                    Ok(at) => match self.consumer(&at).await {
                        Ok(consumer) => {
                            self.report_lag(consumer.lag());
                            state = Some((consumer, at));
                            Ok(())
                        }
                        Err(error) => Err(error.into()),
                    },
                    Err(error) => Err(error.into()),
                },
                Some((consumer, next)) => {
                    self.poll_and_apply(consumer.as_mut(), next, &mut last_apply)
                        .await
                }
            };
            if !counted
                && result.is_ok()
                && let Some((consumer, _)) = &state
                && consumer.lag() == 0
            {
                counted = true;
                caught_up.fetch_add(1, Ordering::AcqRel);
            }
            if let Err(error) = result {
                state = None;
                self.projector
                    .metrics
                    .errors
                    .with_label_values(&[name])
                    .inc();
                tracing::error!(projection = name, topic = self.topic.name(), %error, "projector batch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Polls a batch and applies it. A batch smaller than `PACE_UNTIL` that comes less
    /// than the pace after the last apply waits out the rest and takes in what arrived
    /// meanwhile.
    async fn poll_and_apply(
        &self,
        consumer: &mut dyn Consumer,
        at: &mut At,
        last_apply: &mut Option<Instant>,
    ) -> Result<(), ProjectionError> {
        let mut records = consumer.poll(BATCH, IDLE_WAIT).await?;
        if records.is_empty() {
            self.report_lag(consumer.lag());
            return Ok(());
        }
        if let Some(last) = *last_apply
            && records.len() < PACE_UNTIL
        {
            let since = last.elapsed();
            if since < self.projector.pace {
                tokio::time::sleep(self.projector.pace - since).await;
                let more = consumer.poll(BATCH - records.len(), Duration::ZERO).await?;
                records.extend(more);
            }
        }
        self.apply(&records, at).await?;
        *last_apply = Some(Instant::now());
        // Only now: records read but not applied count as lag (tests and operators wait
        // on a zero lag to mean "applied").
        self.report_lag(consumer.lag());
        Ok(())
    }

    /// Projects the records that count (see `storage::validity`) and applies their
    /// writes with a checkpoint per partition read, in one read-store write; moves `at`
    /// on once it is applied. Returns how many records it read.
    async fn apply(&self, records: &[Record], at: &mut At) -> Result<u64, ProjectionError> {
        let p = &self.projector;
        let mut staged = Staged::new(p.store.as_ref());
        let mut validity = at.validity.clone();
        let mut after: BTreeMap<u32, u64> = BTreeMap::new();
        for record in records {
            let end = after.entry(record.partition).or_default();
            *end = (*end).max(record.offset + 1);
            if validity.admit(record) != Admitted::Valid {
                continue; // a marker, or a record a later marker replaced
            }
            let envelopes =
                p.codec
                    .decode_all(&record.value)
                    .map_err(|e| ProjectionError::Decode {
                        topic: record.topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        reason: e.to_string(),
                    })?;
            let source = Source {
                topic: self.topic,
                partition: record.partition,
                offset: record.offset,
            };
            for envelope in &envelopes {
                self.projection
                    .project(envelope, source, &mut staged)
                    .await?;
            }
        }
        let topic = self.topic.name();
        let checkpoints = after
            .iter()
            .map(|(&partition, &next)| Checkpoint {
                projection: self.projection.name().to_string(),
                topic: topic.to_string(),
                partition,
                next,
                writer: validity.writer(topic, partition).map(str::to_owned),
            })
            .collect();
        p.store.apply(staged.into_writes(), checkpoints).await?;
        for (partition, end) in after {
            if let Some(slot) = at.next.get_mut(partition as usize) {
                *slot = end;
            }
        }
        at.validity = validity;
        p.metrics
            .events
            .with_label_values(&[self.projection.name()])
            .inc_by(records.len() as u64);
        Ok(records.len() as u64)
    }

    fn report_lag(&self, lag: u64) {
        let Ok(mut lags) = self.lags.lock() else {
            return;
        };
        lags.insert(self.topic, lag);
        let total: u64 = lags.values().sum();
        self.projector
            .metrics
            .lag
            .with_label_values(&[self.projection.name()])
            .set(total as i64);
    }
}
