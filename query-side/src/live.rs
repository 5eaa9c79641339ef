//! What the streams of SPEC §5 are fed from: the log itself, not the read store. One tail
//! per topic (deliveries, drones, drone telemetry) reads the log through the `EventLog`
//! port and hands each event to the streams watching its aggregate, and every drone
//! event and report to the fleet streams. Deliveries and drones are read from the
//! projectors' checkpoints on, through the same [`Validity`] fold as the projectors (so
//! a record a later marker replaced is skipped here too); telemetry from the end, since
//! only what is new is live.
//!
//! A stream subscribes first and then reads its first state from the read models, at
//! least as far as the tails had handed on when it subscribed ([`Subscription::seen`]):
//! whatever came before is in that state, whatever comes after arrives on the
//! subscription, and an event that is in both is told apart by its aggregate version.

use crate::QueryError;
use api::{ConsistencyToken, Position};
use read_model::{Model, models};
use schemas::Codec;
use schemas::events::{Envelope, Event, Topic};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use storage::{Admitted, EventLog, ReadStore, Validity};
use tokio::sync::{broadcast, watch};

/// Events a delivery's or a drone's stream may fall behind by before it starts over
/// from the read models.
const PER_AGGREGATE: usize = 256;
/// The same for a fleet stream, which gets every drone's reports.
const FLEET: usize = 16_384;
const READ_BATCH: usize = 1024;
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often watchers nobody listens to any more are dropped.
const SWEEP: Duration = Duration::from_secs(10);

/// An aggregate a stream watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Watched {
    Delivery(String),
    Drone(String),
}

/// A stream's feed, and how far the tails had handed on when it was made.
pub struct Subscription {
    pub events: broadcast::Receiver<Arc<Envelope>>,
    /// The positions of deliveries and drones handed on before `events` was subscribed:
    /// the stream's first state must include them.
    pub seen: ConsistencyToken,
}

#[derive(Default)]
struct Routing {
    watchers: HashMap<Watched, broadcast::Sender<Arc<Envelope>>>,
    /// Next offset handed on, per partition of deliveries and drones.
    handed: HashMap<(Topic, u32), u64>,
}

/// The live feed of one process.
pub struct Live {
    routing: Mutex<Routing>,
    fleet: broadcast::Sender<Arc<Envelope>>,
}

impl Live {
    /// A feed nothing hands events to yet (see [`Live::start`]).
    pub fn new() -> Live {
        Live {
            routing: Mutex::new(Routing::default()),
            fleet: broadcast::channel(FLEET).0,
        }
    }

    /// Starts the tails on `log` until `stop` turns true.
    pub fn start(
        self: &Arc<Live>,
        log: Arc<dyn EventLog>,
        codec: Codec,
        store: Arc<dyn ReadStore>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let tails = [
            (Topic::Deliveries, Some(models::DELIVERIES)),
            (Topic::Drones, Some(models::DRONES)),
            (Topic::DroneTelemetry, None),
        ];
        tails
            .into_iter()
            .map(|(topic, from)| {
                let tail = Tail {
                    live: self.clone(),
                    log: log.clone(),
                    codec: codec.clone(),
                    store: store.clone(),
                    topic,
                    from,
                };
                tokio::spawn(tail.run(stop.clone()))
            })
            .collect()
    }

    fn routing(&self) -> MutexGuard<'_, Routing> {
        self.routing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to one aggregate's events.
    pub fn watch(&self, what: Watched) -> Subscription {
        let mut routing = self.routing();
        let events = routing
            .watchers
            .entry(what)
            .or_insert_with(|| broadcast::channel(PER_AGGREGATE).0)
            .subscribe();
        Subscription {
            events,
            seen: seen(&routing),
        }
    }

    /// Subscribes to every drone event and report.
    pub fn fleet(&self) -> Subscription {
        let routing = self.routing();
        Subscription {
            events: self.fleet.subscribe(),
            seen: seen(&routing),
        }
    }

    /// Hands a batch of one topic on, then notes how far it got (under one lock, so a
    /// stream subscribing meanwhile either gets an event or has it in `seen`).
    fn hand_on(&self, topic: Topic, envelopes: Vec<Envelope>, handed: &[(u32, u64)]) {
        let mut routing = self.routing();
        for envelope in envelopes {
            let id = envelope.metadata.aggregate_id.clone();
            let watched = match (topic, &envelope.event) {
                (_, Event::PackageRegistered(_)) => None,
                (Topic::Deliveries, _) => Some(Watched::Delivery(id)),
                (Topic::Drones | Topic::DroneTelemetry, _) => Some(Watched::Drone(id)),
                _ => None,
            };
            let drone = matches!(watched, Some(Watched::Drone(_)));
            let envelope = Arc::new(envelope);
            if drone && self.fleet.receiver_count() > 0 {
                let _ = self.fleet.send(envelope.clone());
            }
            if let Some(watched) = watched
                && let Some(sender) = routing.watchers.get(&watched)
                && sender.send(envelope).is_err()
            {
                routing.watchers.remove(&watched);
            }
        }
        if topic != Topic::DroneTelemetry {
            for &(partition, next) in handed {
                routing.handed.insert((topic, partition), next);
            }
        }
    }

    /// Whether anyone watches `key`'s drone or the fleet (a report nobody watches is
    /// not decoded).
    fn watched_drone(&self, key: &str) -> bool {
        self.fleet.receiver_count() > 0
            || self
                .routing()
                .watchers
                .contains_key(&Watched::Drone(key.to_owned()))
    }

    fn sweep(&self) {
        self.routing()
            .watchers
            .retain(|_, sender| sender.receiver_count() > 0);
    }

    /// Streams open on this process's feed (for `/metrics`).
    pub fn watchers(&self) -> usize {
        self.routing().watchers.len()
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

fn seen(routing: &Routing) -> ConsistencyToken {
    ConsistencyToken::from_positions(routing.handed.iter().filter(|(_, next)| **next > 0).map(
        |(&(topic, partition), &next)| Position {
            topic,
            partition,
            offset: next - 1,
        },
    ))
}

/// One topic's tail.
struct Tail {
    live: Arc<Live>,
    log: Arc<dyn EventLog>,
    codec: Codec,
    store: Arc<dyn ReadStore>,
    topic: Topic,
    /// The read model whose checkpoints it starts at; none: the end of the log.
    from: Option<Model>,
}

impl Tail {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut positions: Vec<(u32, u64)> = Vec::new();
        let mut validity = Validity::default();
        let mut sweep = tokio::time::interval(SWEEP);
        while !*stop.borrow() {
            let result = tokio::select! {
                result = self.follow(&mut positions, &mut validity, &mut sweep) => result,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            if let Err(error) = result {
                tracing::warn!(topic = self.topic.name(), %error, "the live feed cannot read the log; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn follow(
        &self,
        positions: &mut Vec<(u32, u64)>,
        validity: &mut Validity,
        sweep: &mut tokio::time::Interval,
    ) -> Result<(), QueryError> {
        let name = self.topic.name();
        if positions.is_empty() {
            for partition in 0..self.log.partitions(name).await? {
                let next = match self.from {
                    Some(model) => {
                        let writer = self
                            .store
                            .checkpoint_writer(model.name, name, partition)
                            .await?;
                        validity.resume(name, partition, writer);
                        self.store
                            .checkpoint(model.name, name, partition)
                            .await?
                            .unwrap_or(0)
                    }
                    None => self.log.end_offset(name, partition).await?,
                };
                positions.push((partition, next));
            }
            // Nothing handed on yet is older than where the tail starts.
            self.live.hand_on(self.topic, Vec::new(), positions);
        }
        let mut consumer = self.log.consume(name, positions).await?;
        loop {
            let records = consumer.poll(READ_BATCH, IDLE_WAIT).await?;
            if self.topic == Topic::DroneTelemetry {
                // Reports come in bulk; most drones are watched by nobody.
                tokio::select! {
                    biased;
                    _ = sweep.tick() => self.live.sweep(),
                    _ = std::future::ready(()) => {}
                }
            }
            if records.is_empty() {
                continue;
            }
            let mut envelopes = Vec::with_capacity(records.len());
            for record in &records {
                if let Some(slot) = positions.iter_mut().find(|(p, _)| *p == record.partition) {
                    slot.1 = record.offset + 1;
                }
                if validity.admit(record) != Admitted::Valid {
                    continue;
                }
                if self.topic == Topic::DroneTelemetry && !self.live.watched_drone(&record.key) {
                    continue;
                }
                match self.codec.decode_all(&record.value) {
                    Ok(decoded) => envelopes.extend(decoded),
                    // The projectors set it aside and report it.
                    Err(error) => {
                        tracing::debug!(topic = name, %error, "live feed skips an undecodable record")
                    }
                }
            }
            self.live.hand_on(self.topic, envelopes, positions);
        }
    }
}
