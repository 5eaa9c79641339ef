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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::{Checkpoint, EventLog, ReadStore, StorageError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records applied in one read-store write at most.
const BATCH: usize = 512;
/// How long a caught-up topic waits for a record before looking at shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Records waiting that a paced topic applies at once rather than waiting out the pace.
const PACE_UNTIL: u64 = 64;

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
    ) -> Result<Vec<JoinHandle<()>>, StorageError> {
        let mut tasks = Vec::new();
        for projection in projections {
            let lags = Arc::new(Mutex::new(HashMap::new()));
            for topic in projection.topics() {
                let worker = self.worker(projection, *topic, lags.clone()).await?;
                tasks.push(tokio::spawn(worker.run(shutdown.clone())));
            }
        }
        Ok(tasks)
    }

    /// Applies everything up to the current end of the log once (replays and tests).
    pub async fn catch_up(&self, projection: &Arc<dyn Projection>) -> Result<u64, ProjectionError> {
        let mut applied = 0;
        for topic in projection.topics() {
            let worker = self
                .worker(projection, *topic, Arc::new(Mutex::new(HashMap::new())))
                .await?;
            let ends = worker.ends().await?;
            let mut next = worker.checkpoints().await?;
            let mut turn = 0;
            while next.iter().zip(&ends).any(|(next, end)| next < end) {
                let stepped = worker.step(&mut next, &ends, turn).await?;
                if stepped == 0 {
                    break; // the log holds less than its end offsets promised
                }
                applied += stepped;
                turn += 1;
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

impl TopicWorker {
    /// The next offset to apply of each partition.
    async fn checkpoints(&self) -> Result<Vec<u64>, StorageError> {
        let store = &self.projector.store;
        let mut next = Vec::with_capacity(self.partitions as usize);
        for partition in 0..self.partitions {
            let checkpoint = store
                .checkpoint(self.projection.name(), self.topic.name(), partition)
                .await?;
            next.push(checkpoint.unwrap_or(0));
        }
        Ok(next)
    }

    /// The end offset of each partition.
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

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projection.name();
        let mut next = None;
        let mut last_apply = None;
        let mut turn = 0;
        while !*shutdown.borrow() {
            let result = match next.as_mut() {
                None => match self.checkpoints().await {
                    Ok(checkpoints) => {
                        next = Some(checkpoints);
                        Ok(())
                    }
                    Err(error) => Err(error.into()),
                },
                Some(next) => self.step_or_wait(next, &mut last_apply, turn).await,
            };
            turn = turn.wrapping_add(1);
            if let Err(error) = result {
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

    async fn step_or_wait(
        &self,
        next: &mut [u64],
        last_apply: &mut Option<Instant>,
        turn: usize,
    ) -> Result<(), ProjectionError> {
        let mut ends = self.ends().await?;
        let waiting: u64 = next
            .iter()
            .zip(&ends)
            .map(|(next, end)| end.saturating_sub(*next))
            .sum();
        self.report_lag(waiting);
        if waiting == 0 {
            let positions: Vec<(u32, u64)> =
                (0..self.partitions).zip(next.iter().copied()).collect();
            self.projector
                .log
                .wait_for_any(self.topic.name(), &positions, IDLE_WAIT)
                .await?;
            return Ok(());
        }
        if let Some(last) = *last_apply
            && waiting < PACE_UNTIL
        {
            let since = last.elapsed();
            if since < self.projector.pace {
                tokio::time::sleep(self.projector.pace - since).await;
                // Take in what arrived meanwhile.
                ends = self.ends().await?;
            }
        }
        self.step(next, &ends, turn).await?;
        *last_apply = Some(Instant::now());
        Ok(())
    }

    /// Applies one batch of at most `BATCH` records read from the partitions that have
    /// records before `ends`, starting with partition `turn` (mod the count) so that no
    /// partition waits behind the others; advances `next` once it is applied. Returns
    /// how many records it applied.
    async fn step(
        &self,
        next: &mut [u64],
        ends: &[u64],
        turn: usize,
    ) -> Result<u64, ProjectionError> {
        let p = &self.projector;
        let mut staged = Staged::new(p.store.as_ref());
        let mut checkpoints = Vec::new();
        let mut read = 0;
        let count = next.len();
        for index in (0..count).map(|i| (i + turn) % count) {
            let (from, end) = (next[index], ends.get(index).copied().unwrap_or(0));
            if from >= end || read >= BATCH {
                continue;
            }
            let partition = u32::try_from(index).unwrap_or(u32::MAX);
            let records = p
                .log
                .read(self.topic.name(), partition, from, BATCH - read)
                .await?;
            let Some(last) = records.last() else {
                continue;
            };
            let after = last.offset + 1;
            for record in &records {
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
                    partition,
                    offset: record.offset,
                };
                for envelope in &envelopes {
                    self.projection
                        .project(envelope, source, &mut staged)
                        .await?;
                }
            }
            read += records.len();
            checkpoints.push(Checkpoint {
                projection: self.projection.name().to_string(),
                topic: self.topic.name().to_string(),
                partition,
                next: after,
            });
        }
        if checkpoints.is_empty() {
            return Ok(0);
        }
        let advanced: Vec<(usize, u64)> = checkpoints
            .iter()
            .map(|c| (c.partition as usize, c.next))
            .collect();
        p.store.apply(staged.into_writes(), checkpoints).await?;
        for (index, after) in advanced {
            next[index] = after;
        }
        p.metrics
            .events
            .with_label_values(&[self.projection.name()])
            .inc_by(read as u64);
        Ok(read as u64)
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
