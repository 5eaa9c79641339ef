//! The `workflow` role: a process manager over the event log. It folds the drones, their
//! telemetry and the deliveries into the domain's [`Dispatcher`] and sends the commands
//! the dispatcher decides on — assignments, pickups and completions driven by telemetry,
//! docking and return to service, and the compensations — through the command API, like
//! any client (SPEC §2). Every command carries an idempotency key derived from what it
//! decides on and `If-Match` with the version it saw, so a restarted or doubled workflow
//! never applies a decision twice.

mod client;
mod metrics;

pub use client::{CommandClient, Sent};
pub use metrics::WorkflowMetrics;

use chrono::Utc;
use domain::{Decision, Dispatcher};
use schemas::Codec;
use schemas::events::{Envelope, Event, Topic};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{EventLog, StorageError};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The topics the workflow follows.
const TOPICS: [Topic; 3] = [Topic::Drones, Topic::DroneTelemetry, Topic::Deliveries];
/// Records read from one partition at a time.
const READ_BATCH: usize = 1024;
/// Commands in flight at once.
const IN_FLIGHT: usize = 32;

/// How often the rules that depend on time alone run (silent drones, charging, deadlines,
/// future pickups).
pub const TICK: Duration = Duration::from_millis(500);

/// The running workflow: what it has read of each partition, its dispatcher, its outbox.
pub struct Workflow {
    log: Arc<dyn EventLog>,
    codec: Codec,
    client: CommandClient,
    dispatcher: Dispatcher,
    metrics: WorkflowMetrics,
    /// Next offset per topic (in `TOPICS` order) and partition.
    next: Vec<Vec<u64>>,
}

impl Workflow {
    pub async fn new(
        log: Arc<dyn EventLog>,
        codec: Codec,
        client: CommandClient,
        dispatcher: Dispatcher,
        metrics: WorkflowMetrics,
    ) -> Result<Workflow, StorageError> {
        let mut next = Vec::with_capacity(TOPICS.len());
        for topic in TOPICS {
            next.push(vec![0; log.partitions(topic.name()).await? as usize]);
        }
        Ok(Workflow {
            log,
            codec,
            client,
            dispatcher,
            metrics,
            next,
        })
    }

    /// Folds what the log holds now (start-up: the whole history, so no decision is
    /// taken on half of it); returns the records read.
    pub async fn catch_up(&mut self) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let read = self.read_once().await?;
            if read == 0 {
                return Ok(total);
            }
            total += read;
        }
    }

    /// Reads one batch from every partition with records waiting and folds it.
    async fn read_once(&mut self) -> Result<u64, StorageError> {
        let mut read = 0;
        for (t, topic) in TOPICS.into_iter().enumerate() {
            for partition in 0..self.next[t].len() {
                let from = self.next[t][partition];
                let records = self
                    .log
                    .read(topic.name(), partition as u32, from, READ_BATCH)
                    .await?;
                let Some(last) = records.last() else {
                    continue;
                };
                self.next[t][partition] = last.offset + 1;
                read += records.len() as u64;
                for record in &records {
                    let envelopes = match self.codec.decode_all(&record.value) {
                        Ok(envelopes) => envelopes,
                        Err(error) => {
                            // Not ours to fix: the projectors report it too.
                            tracing::warn!(topic = topic.name(), partition, offset = record.offset, %error, "workflow skips an undecodable record");
                            continue;
                        }
                    };
                    for envelope in &envelopes {
                        self.fold(topic, envelope);
                    }
                }
            }
        }
        Ok(read)
    }

    fn fold(&mut self, topic: Topic, envelope: &Envelope) {
        let meta = &envelope.metadata;
        let (id, version, at) = (&meta.aggregate_id, meta.aggregate_version, meta.occurred_at);
        if let Event::DronePositionReported(report) = &envelope.event
            && self
                .dispatcher
                .drone(id)
                .is_some_and(|d| d.is_stale(report))
        {
            self.metrics.telemetry_out_of_order.inc();
        }
        match topic {
            Topic::Deliveries => self
                .dispatcher
                .apply_delivery(id, version, &envelope.event, at),
            _ => self
                .dispatcher
                .apply_drone(id, version, &envelope.event, at),
        }
    }

    /// Waits until any followed partition has a record past what was read, or `timeout`.
    /// The future owns what it needs, so the workflow can settle commands meanwhile.
    fn wait(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'static {
        let waits: Vec<_> = TOPICS
            .into_iter()
            .enumerate()
            .map(|(t, topic)| {
                let positions: Vec<(u32, u64)> = self.next[t]
                    .iter()
                    .enumerate()
                    .map(|(p, next)| (p as u32, *next))
                    .collect();
                let log = self.log.clone();
                Box::pin(async move { log.wait_for_any(topic.name(), &positions, timeout).await })
            })
            .collect();
        async move {
            let (first, _, _) = futures_util::future::select_all(waits).await;
            first.map(|_| ())
        }
    }

    /// Runs until `shutdown` turns true: fold, decide, send, wait.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if let Err(error) = self.catch_up().await {
            tracing::error!(%error, "workflow cannot read the log; retrying");
        }
        let mut outbox: VecDeque<Decision> = VecDeque::new();
        let mut in_flight: JoinSet<(Decision, Sent)> = JoinSet::new();
        let mut last_tick = Instant::now() - TICK;
        while !*shutdown.borrow() {
            let tick = last_tick.elapsed() >= TICK;
            if tick {
                last_tick = Instant::now();
            }
            let started = Instant::now();
            let decisions = self.dispatcher.decide(Utc::now(), tick);
            if !decisions.is_empty() {
                self.metrics
                    .decide_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            self.metrics.queued.set(self.dispatcher.queued() as i64);
            outbox.extend(decisions);
            while in_flight.len() < IN_FLIGHT
                && let Some(decision) = outbox.pop_front()
            {
                let client = self.client.clone();
                in_flight.spawn(async move {
                    let sent = client.send(&decision).await;
                    (decision, sent)
                });
            }
            let until_tick = TICK.saturating_sub(last_tick.elapsed());
            let wait = self.wait(until_tick);
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok((decision, sent)) = done {
                        self.settle(&decision, &sent);
                    }
                }
                waited = wait => {
                    if let Err(error) = waited {
                        tracing::warn!(%error, "workflow cannot wait on the log");
                        tokio::time::sleep(TICK).await;
                    }
                }
                _ = shutdown.changed() => break,
            }
            if let Err(error) = self.read_once().await {
                tracing::warn!(%error, "workflow cannot read the log; retrying");
                tokio::time::sleep(TICK).await;
            }
        }
        // Let the commands already sent finish, so none is cut in half by the exit.
        while let Some(done) = in_flight.join_next().await {
            if let Ok((decision, sent)) = done {
                self.settle(&decision, &sent);
            }
        }
    }

    fn settle(&mut self, decision: &Decision, sent: &Sent) {
        let outcome = sent.outcome();
        self.metrics
            .commands
            .with_label_values(&[decision.action(), outcome])
            .inc();
        let accepted = sent.accepted();
        if accepted && decision.is_compensation() {
            self.metrics
                .compensations
                .with_label_values(&[decision.action()])
                .inc();
        }
        match sent {
            Sent::Accepted => {}
            Sent::Refused { status, detail } => {
                tracing::info!(action = decision.action(), key = %decision.idempotency_key(), status, %detail, "workflow command refused; deciding again")
            }
            Sent::Failed(error) => {
                tracing::warn!(action = decision.action(), key = %decision.idempotency_key(), %error, "workflow command not sent; retrying")
            }
        }
        self.dispatcher.settle(decision, accepted, Utc::now());
    }
}
