//! The projector worker: one task per (projection, topic, partition) tails the log from
//! the projection's checkpoint and applies each batch of events together with the
//! checkpoint after it, so a crash at any point neither loses nor doubles an effect.

use crate::error::ProjectionError;
use crate::metrics::ProjectorMetrics;
use crate::projection::{Projection, Source, Staged};
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
/// How long a caught-up partition waits for a record before looking at shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Records waiting that a paced partition applies at once rather than waiting.
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
    /// `pace`: a partition that applied a batch less than this long ago waits out the
    /// rest before its next one, unless `PACE_UNTIL` records are waiting. Under a
    /// stream of commands each apply then takes several events instead of one (an
    /// apply costs a read, a read-store write and a thread wake-up, on the cores the
    /// commands need), while an idle partition still applies its next event at once.
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

    /// Starts the projections; the tasks end when `shutdown` turns true.
    pub async fn spawn(
        &self,
        projections: &[Arc<dyn Projection>],
        shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, StorageError> {
        let mut tasks = Vec::new();
        for projection in projections {
            let lags = Arc::new(Mutex::new(HashMap::new()));
            for topic in projection.topics() {
                for partition in 0..self.log.partitions(topic.name()).await? {
                    let worker = PartitionWorker {
                        projector: self.clone(),
                        projection: projection.clone(),
                        topic: *topic,
                        partition,
                        lags: lags.clone(),
                    };
                    tasks.push(tokio::spawn(worker.run(shutdown.clone())));
                }
            }
        }
        Ok(tasks)
    }

    /// Applies everything up to the current end of the log once (replays and tests).
    pub async fn catch_up(&self, projection: &Arc<dyn Projection>) -> Result<u64, ProjectionError> {
        let mut applied = 0;
        for topic in projection.topics() {
            for partition in 0..self.log.partitions(topic.name()).await? {
                let worker = PartitionWorker {
                    projector: self.clone(),
                    projection: projection.clone(),
                    topic: *topic,
                    partition,
                    lags: Arc::new(Mutex::new(HashMap::new())),
                };
                let end = self.log.end_offset(topic.name(), partition).await?;
                let mut next = worker.checkpoint().await?;
                while next < end {
                    let before = next;
                    next = worker.step(next).await?;
                    applied += next - before;
                }
            }
        }
        Ok(applied)
    }
}

/// True when `projection` has applied every position of `token` in its topics.
pub async fn caught_up(
    store: &dyn ReadStore,
    projection: &dyn Projection,
    token: &ConsistencyToken,
) -> Result<bool, StorageError> {
    for position in &token.positions {
        if !projection.topics().contains(&position.topic) {
            continue;
        }
        let next = store
            .checkpoint(projection.name(), position.topic.name(), position.partition)
            .await?
            .unwrap_or(0);
        if next <= position.offset {
            return Ok(false);
        }
    }
    Ok(true)
}

struct PartitionWorker {
    projector: Projector,
    projection: Arc<dyn Projection>,
    topic: Topic,
    partition: u32,
    /// Lag of each partition of this projection; the gauge shows their sum.
    lags: Arc<Mutex<HashMap<(Topic, u32), u64>>>,
}

impl PartitionWorker {
    async fn checkpoint(&self) -> Result<u64, StorageError> {
        Ok(self
            .projector
            .store
            .checkpoint(self.projection.name(), self.topic.name(), self.partition)
            .await?
            .unwrap_or(0))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projection.name();
        let mut next = None;
        let mut last_apply = None;
        while !*shutdown.borrow() {
            let result = match next {
                None => self.checkpoint().await.map_err(ProjectionError::from),
                Some(n) => self.step_or_wait(n, &mut last_apply).await,
            };
            match result {
                Ok(n) => next = Some(n),
                Err(error) => {
                    self.projector
                        .metrics
                        .errors
                        .with_label_values(&[name])
                        .inc();
                    tracing::error!(projection = name, topic = self.topic.name(), partition = self.partition, %error, "projector batch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    async fn step_or_wait(
        &self,
        next: u64,
        last_apply: &mut Option<Instant>,
    ) -> Result<u64, ProjectionError> {
        let log = &self.projector.log;
        let end = log.end_offset(self.topic.name(), self.partition).await?;
        self.report_lag(end.saturating_sub(next));
        if end <= next {
            log.wait_for(self.topic.name(), self.partition, next, IDLE_WAIT)
                .await?;
            return Ok(next);
        }
        if let Some(last) = *last_apply
            && end - next < PACE_UNTIL
        {
            let since = last.elapsed();
            if since < self.projector.pace {
                tokio::time::sleep(self.projector.pace - since).await;
            }
        }
        let after = self.step(next).await?;
        *last_apply = Some(Instant::now());
        Ok(after)
    }

    /// Applies one batch from `next`; returns the checkpoint after it.
    async fn step(&self, next: u64) -> Result<u64, ProjectionError> {
        let p = &self.projector;
        let records = p
            .log
            .read(self.topic.name(), self.partition, next, BATCH)
            .await?;
        let Some(last) = records.last() else {
            return Ok(next);
        };
        let after = last.offset + 1;
        let mut staged = Staged::new(p.store.as_ref());
        for record in &records {
            let envelope = p
                .codec
                .decode(&record.value)
                .map_err(|e| ProjectionError::Decode {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    reason: e.to_string(),
                })?;
            let source = Source {
                topic: self.topic,
                partition: self.partition,
                offset: record.offset,
            };
            self.projection
                .project(&envelope, source, &mut staged)
                .await?;
        }
        let checkpoint = Checkpoint {
            projection: self.projection.name().to_string(),
            topic: self.topic.name().to_string(),
            partition: self.partition,
            next: after,
        };
        p.store
            .apply(staged.into_writes(), vec![checkpoint])
            .await?;
        p.metrics
            .events
            .with_label_values(&[self.projection.name()])
            .inc_by(records.len() as u64);
        Ok(after)
    }

    fn report_lag(&self, lag: u64) {
        let Ok(mut lags) = self.lags.lock() else {
            return;
        };
        lags.insert((self.topic, self.partition), lag);
        let total: u64 = lags.values().sum();
        self.projector
            .metrics
            .lag
            .with_label_values(&[self.projection.name()])
            .set(total as i64);
    }
}
