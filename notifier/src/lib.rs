//! The `notifier` role: tells a delivery's subscribers (`notify-me`: email, SMS, a
//! webhook URL) when a drone is assigned (with the ETA), when the ETA moves by more
//! than a threshold, at pickup, and at completion or failure. It folds the deliveries,
//! drones and drone-telemetry topics from their start (through `storage::Validity`, like
//! the workflow) into a pure [`Watcher`], which owes [`Message`]s; a [`Sender`] sends
//! each with retries and backoff. Delivery is at least once: every message carries its
//! id (`<event id>:<channel>`) for the receiver to drop a repeat, and the [`Ledger`] in
//! the data directory remembers what was settled, so a restart does not send it again
//! (ADR 15). Messages given up on are counted (`notifications_failed_total`) and listed
//! at `GET /api/v1/notifications/failures`.

mod http;
mod ledger;
mod metrics;
mod plan;
mod send;

pub use http::routes;
pub use ledger::{FAILURES_KEPT, Failure, Ledger};
pub use metrics::NotifierMetrics;
pub use plan::{Channel, Kind, Message, Notice, Watcher};
pub use send::{Channels, SendError, Sender, Sent, is_public, payload};

use chrono::{TimeDelta, Utc};
use schemas::Codec;
use schemas::events::Topic;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use storage::{EventLog, StorageError};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use workflow::Feed;

/// The topics the notifier follows.
const TOPICS: [Topic; 3] = [Topic::Deliveries, Topic::Drones, Topic::DroneTelemetry];
/// Messages being sent at once.
const IN_FLIGHT: usize = 32;
/// A message whose event is older than this is not sent (a notifier started on an old
/// log, or whose ledger was lost, does not tell stale news); the ledger forgets ids
/// older than this too.
pub const MAX_AGE: TimeDelta = TimeDelta::hours(1);

/// What the notifier needs besides the log.
#[derive(Clone, Debug)]
pub struct NotifierConfig {
    pub channels: Channels,
    pub flight: domain::FlightModel,
    /// An ETA moving by more than this is sent.
    pub eta_threshold: TimeDelta,
    /// The directory of the ledger.
    pub state_dir: PathBuf,
}

/// The ledger, shared by the sends and the failures endpoint.
pub type SharedLedger = Arc<Mutex<Ledger>>;

/// The running notifier.
pub struct Notifier {
    log: Arc<dyn EventLog>,
    codec: Codec,
    watcher: Watcher,
    sender: Sender,
    ledger: SharedLedger,
    metrics: NotifierMetrics,
    ready: Arc<AtomicBool>,
}

impl Notifier {
    /// Opens the ledger; `ready` turns true once the history is folded.
    pub async fn new(
        log: Arc<dyn EventLog>,
        codec: Codec,
        config: NotifierConfig,
        operator_key: &str,
        metrics: NotifierMetrics,
        ready: Arc<AtomicBool>,
    ) -> Result<Notifier, NotifierError> {
        for topic in TOPICS {
            log.partitions(topic.name()).await?;
        }
        let ledger = Ledger::open(&config.state_dir, Utc::now() - MAX_AGE)
            .map_err(|e| NotifierError::Ledger(config.state_dir.clone(), e))?;
        Ok(Notifier {
            log,
            codec,
            watcher: Watcher::new(config.flight, config.eta_threshold),
            sender: Sender::new(config.channels, operator_key).map_err(NotifierError::Config)?,
            ledger: Arc::new(Mutex::new(ledger)),
            metrics,
            ready,
        })
    }

    /// The ledger, for [`routes`].
    pub fn ledger(&self) -> SharedLedger {
        self.ledger.clone()
    }

    /// Runs until `shutdown` turns true: fold what the followers read, send what is owed.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (feed, mut events) = mpsc::channel(64);
        let mut followers = JoinSet::new();
        for topic in TOPICS {
            followers.spawn(workflow::follow(
                self.log.clone(),
                self.codec.clone(),
                topic,
                feed.clone(),
                shutdown.clone(),
            ));
        }
        drop(feed);
        let mut behind = TOPICS.len();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut sends = JoinSet::new();
        // Per delivery, the end of its latest send: its messages go out in order.
        let mut last_of: HashMap<String, oneshot::Receiver<()>> = HashMap::new();
        loop {
            tokio::select! {
                fed = events.recv() => match fed {
                    Some(Feed::Events(topic, envelopes)) => {
                        for envelope in &envelopes {
                            let owed = match topic {
                                Topic::Deliveries => self.watcher.apply_delivery(envelope),
                                _ => self.watcher.apply_drone(envelope),
                            };
                            let finished = owed
                                .first()
                                .filter(|m| matches!(m.notice.kind, Kind::Completed | Kind::Failed))
                                .map(|m| m.notice.delivery_id.clone());
                            for message in owed {
                                self.dispatch(message, &slots, &mut sends, &mut last_of);
                            }
                            // Nothing follows a delivery's last message.
                            if let Some(finished) = finished {
                                last_of.remove(&finished);
                            }
                        }
                        self.metrics.watched.set(self.watcher.watched() as i64);
                    }
                    Some(Feed::CaughtUp) => {
                        behind = behind.saturating_sub(1);
                        if behind == 0 {
                            self.ready.store(true, Ordering::Release);
                        }
                    }
                    None => break,
                },
                Some(_) = sends.join_next(), if !sends.is_empty() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // What is being sent stops here; its ids are not settled, so it goes out again
        // after the restart (at least once).
        sends.shutdown().await;
        followers.shutdown().await;
    }

    fn dispatch(
        &self,
        message: Message,
        slots: &Arc<Semaphore>,
        sends: &mut JoinSet<()>,
        last_of: &mut HashMap<String, oneshot::Receiver<()>>,
    ) {
        let id = message.id();
        if message.notice.at < Utc::now() - MAX_AGE {
            return;
        }
        if !lock(&self.ledger).claim(&id) {
            return;
        }
        let delivery = message.notice.delivery_id.clone();
        let (done, next) = oneshot::channel();
        let before = last_of.insert(delivery, next);
        let (sender, ledger, metrics, slots) = (
            self.sender.clone(),
            self.ledger.clone(),
            self.metrics.clone(),
            slots.clone(),
        );
        sends.spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let channel = message.channel.name();
            let sent = sender
                .send(&message, || {
                    metrics.retries.with_label_values(&[channel]).inc()
                })
                .await;
            let failure = match sent {
                Sent::Delivered { attempts } => {
                    metrics.sent.with_label_values(&[channel]).inc();
                    tracing::debug!(%id, channel, attempts, "notification sent");
                    None
                }
                Sent::GaveUp { attempts, error } => {
                    metrics.failed.with_label_values(&[channel]).inc();
                    tracing::warn!(%id, channel, attempts, %error, "notification given up on");
                    Some(Failure {
                        notification_id: id.clone(),
                        event_id: message.notice.event_id.to_string(),
                        delivery_id: message.notice.delivery_id.clone(),
                        kind: message.notice.kind.as_str().to_owned(),
                        channel: channel.to_owned(),
                        target: message.channel.target().to_owned(),
                        attempts,
                        error,
                        failed_at: Utc::now(),
                    })
                }
            };
            lock(&ledger).settle(&id, message.notice.at, failure);
            let _ = done.send(());
        });
    }
}

fn lock(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the notifier cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot open the notifier's ledger in {0}: {1}")]
    Ledger(PathBuf, std::io::Error),
    #[error("{0}")]
    Config(String),
}
