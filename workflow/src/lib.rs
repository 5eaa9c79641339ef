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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use storage::{Admitted, EventLog, StorageError, Validity};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The topics the workflow follows.
const TOPICS: [Topic; 3] = [Topic::Drones, Topic::DroneTelemetry, Topic::Deliveries];
/// Records taken from a topic at a time.
const READ_BATCH: usize = 1024;
/// How long a caught-up follower waits for a record before looking at shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// Commands in flight at once.
const IN_FLIGHT: usize = 32;

/// How often the rules that depend on time alone run (silent drones, charging, deadlines,
/// future pickups).
pub const TICK: Duration = Duration::from_millis(500);

/// What a topic's follower ([`follow`]) hands its reader (the workflow, the notifier).
pub enum Feed {
    Events(Topic, Vec<Envelope>),
    /// The follower has read what its topic held when the workflow started.
    CaughtUp,
}

/// The running workflow: its dispatcher and the client it sends its decisions with.
pub struct Workflow {
    log: Arc<dyn EventLog>,
    codec: Codec,
    client: CommandClient,
    dispatcher: Dispatcher,
    metrics: WorkflowMetrics,
    /// Set once the history is folded and decisions are taken (`/readyz`).
    ready: Arc<AtomicBool>,
    /// Whether this instance is still the active workflow.
    leading: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Workflow {
    /// `ready` turns true once the history is folded and the workflow decides; it
    /// decides while `leading` says this instance is the active one.
    pub async fn new(
        log: Arc<dyn EventLog>,
        codec: Codec,
        client: CommandClient,
        dispatcher: Dispatcher,
        metrics: WorkflowMetrics,
        ready: Arc<AtomicBool>,
        leading: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<Workflow, StorageError> {
        for topic in TOPICS {
            log.partitions(topic.name()).await?;
        }
        Ok(Workflow {
            log,
            codec,
            client,
            dispatcher,
            metrics,
            ready,
            leading,
        })
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

    /// Runs until `shutdown` turns true or another instance becomes the active one: fold
    /// what the followers read, decide, send. No decision is taken before the whole
    /// history is folded.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (feed, mut events) = mpsc::channel(64);
        let mut followers = JoinSet::new();
        for topic in TOPICS {
            followers.spawn(follow(
                self.log.clone(),
                self.codec.clone(),
                topic,
                feed.clone(),
                shutdown.clone(),
            ));
        }
        drop(feed);
        let mut behind = TOPICS.len();
        let mut outbox: VecDeque<Decision> = VecDeque::new();
        let mut in_flight: JoinSet<(Decision, Sent)> = JoinSet::new();
        let mut last_tick = Instant::now() - TICK;
        while !*shutdown.borrow() {
            if !(self.leading)() {
                tracing::error!("another workflow became the active one; this one stops deciding");
                break;
            }
            if behind == 0 {
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
            }
            let until_tick = TICK.saturating_sub(last_tick.elapsed());
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok((decision, sent)) = done {
                        self.settle(&decision, &sent);
                    }
                }
                fed = events.recv() => match fed {
                    Some(Feed::Events(topic, envelopes)) => {
                        for envelope in &envelopes {
                            self.fold(topic, envelope);
                        }
                    }
                    Some(Feed::CaughtUp) => {
                        behind = behind.saturating_sub(1);
                        if behind == 0 {
                            self.ready.store(true, Ordering::Release);
                        }
                    }
                    None => break, // the followers stopped: shutting down
                },
                _ = tokio::time::sleep(until_tick) => {}
                _ = shutdown.changed() => break,
            }
        }
        // Let the commands already sent finish, so none is cut in half by the exit.
        while let Some(done) = in_flight.join_next().await {
            if let Ok((decision, sent)) = done {
                self.settle(&decision, &sent);
            }
        }
        followers.shutdown().await;
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

/// Reads one topic from its start and hands the workflow (or another reader of the
/// whole log) its events, telling it once what the topic held at the start has been
/// read. A failed read starts a new consumer where the last one stood.
pub async fn follow(
    log: Arc<dyn EventLog>,
    codec: Codec,
    topic: Topic,
    feed: mpsc::Sender<Feed>,
    shutdown: watch::Receiver<bool>,
) {
    let name = topic.name();
    let mut positions: Vec<(u32, u64)> = Vec::new();
    let mut validity = Validity::default();
    let mut start_ends: Option<Vec<u64>> = None;
    let mut caught_up = false;
    while !*shutdown.borrow() {
        let run = async {
            if positions.is_empty() {
                let partitions = log.partitions(name).await?;
                positions = (0..partitions).map(|p| (p, 0)).collect();
            }
            if start_ends.is_none() {
                let mut ends = Vec::with_capacity(positions.len());
                for &(partition, _) in &positions {
                    ends.push(log.end_offset(name, partition).await?);
                }
                start_ends = Some(ends);
            }
            let mut consumer = log.consume(name, &positions).await?;
            loop {
                if !caught_up
                    && let Some(ends) = &start_ends
                    && positions
                        .iter()
                        .zip(ends)
                        .all(|((_, next), end)| next >= end)
                {
                    caught_up = true;
                    if feed.send(Feed::CaughtUp).await.is_err() {
                        return Ok(());
                    }
                }
                if *shutdown.borrow() {
                    return Ok(());
                }
                let records = consumer.poll(READ_BATCH, IDLE_WAIT).await?;
                let mut envelopes = Vec::with_capacity(records.len());
                for record in &records {
                    if let Some(slot) = positions.iter_mut().find(|(p, _)| *p == record.partition) {
                        slot.1 = record.offset + 1;
                    }
                    if validity.admit(record) != Admitted::Valid {
                        continue; // a marker, or a record a later marker replaced
                    }
                    match codec.decode_all(&record.value) {
                        Ok(decoded) => envelopes.extend(decoded),
                        // Not ours to fix: the projectors report it too.
                        Err(error) => {
                            tracing::warn!(topic = name, partition = record.partition, offset = record.offset, %error, "workflow skips an undecodable record")
                        }
                    }
                }
                if !envelopes.is_empty() && feed.send(Feed::Events(topic, envelopes)).await.is_err()
                {
                    return Ok(());
                }
            }
        };
        let result: Result<(), StorageError> = run.await;
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(topic = name, %error, "workflow cannot read the log; retrying");
                tokio::time::sleep(TICK).await;
            }
        }
    }
}
