//! What to tell whom, as a pure fold: deliveries, drones and their telemetry in, the
//! messages owed to each delivery's subscribers out. No I/O and no clock: the time of a
//! message is its event's, so a replay of the same events owes the same messages (with
//! the same ids, for the ledger to skip what was sent before a restart).

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Delivery, Drone, Event, FlightModel, Stage};
use schemas::events::Envelope;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// Why a subscriber is told something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// A drone took the delivery (with the ETAs).
    DroneAssigned,
    /// The delivery's ETA moved by more than the threshold since the last message.
    EtaChanged,
    PickedUp,
    Completed,
    Failed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DroneAssigned => "droneAssigned",
            Kind::EtaChanged => "etaChanged",
            Kind::PickedUp => "pickedUp",
            Kind::Completed => "completed",
            Kind::Failed => "failed",
        }
    }
}

/// What happened to a delivery, as its subscribers are told it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The event behind it (a delivery's event, or the drone report that moved the ETA).
    pub event_id: Uuid,
    pub delivery_id: String,
    pub kind: Kind,
    pub stage: Stage,
    pub drone_id: Option<String>,
    pub pickup_eta: Option<DateTime<Utc>>,
    pub delivery_eta: Option<DateTime<Utc>>,
    /// When its event happened.
    pub at: DateTime<Utc>,
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email(String),
    Sms(String),
    /// `version`: the delivery's version after the request that gave the URL (its
    /// secret derives from it).
    Webhook {
        url: String,
        version: u64,
    },
}

impl Channel {
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Email(_) => "email",
            Channel::Sms(_) => "sms",
            Channel::Webhook { .. } => "webhook",
        }
    }

    /// The address, number or URL.
    pub fn target(&self) -> &str {
        match self {
            Channel::Email(to) | Channel::Sms(to) => to,
            Channel::Webhook { url, .. } => url,
        }
    }
}

/// One notice for one subscriber.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub notice: Notice,
    pub channel: Channel,
}

impl Message {
    /// Unique per event and channel, the same on every replay: what the ledger
    /// remembers and what every message carries for the receiver to drop a repeat.
    pub fn id(&self) -> String {
        format!("{}:{}", self.notice.event_id, self.channel.name())
    }
}

#[derive(Default)]
struct Watched {
    delivery: Delivery,
    /// The version of the request that gave the current webhook.
    webhook_version: Option<u64>,
    /// The delivery ETA its subscribers were last told.
    told_eta: Option<DateTime<Utc>>,
    /// The drone flying it, while it flies.
    flown_by: Option<String>,
}

impl Watched {
    fn channels(&self) -> Vec<Channel> {
        let d = &self.delivery;
        let mut channels = Vec::new();
        if let Some(to) = &d.notify_email {
            channels.push(Channel::Email(to.clone()));
        }
        if let Some(to) = &d.notify_sms {
            channels.push(Channel::Sms(to.clone()));
        }
        if let (Some(url), Some(version)) = (&d.notify_webhook, self.webhook_version) {
            channels.push(Channel::Webhook {
                url: url.clone(),
                version,
            });
        }
        channels
    }
}

/// The deliveries not finished, the drones, and what each subscriber was last told.
pub struct Watcher {
    flight: FlightModel,
    /// An ETA moving by more than this is news.
    threshold: TimeDelta,
    deliveries: HashMap<String, Watched>,
    drones: HashMap<String, Drone>,
    /// The delivery each flying drone carries.
    carrying: HashMap<String, String>,
}

impl Watcher {
    pub fn new(flight: FlightModel, threshold: TimeDelta) -> Watcher {
        Watcher {
            flight,
            threshold,
            deliveries: HashMap::new(),
            drones: HashMap::new(),
            carrying: HashMap::new(),
        }
    }

    /// Deliveries followed (not finished).
    pub fn watched(&self) -> usize {
        self.deliveries.len()
    }

    /// Folds an event of the deliveries topic; the messages its stage change owes.
    pub fn apply_delivery(&mut self, envelope: &Envelope) -> Vec<Message> {
        let meta = &envelope.metadata;
        let id = &meta.aggregate_id;
        let at = meta.occurred_at;
        let watched = self.deliveries.entry(id.clone()).or_default();
        let before = watched.delivery.stage;
        watched.delivery.apply(&envelope.event, at);
        if let Event::NotificationRequested(e) = &envelope.event
            && e.webhook.is_some()
        {
            watched.webhook_version = Some(meta.aggregate_version);
        }
        let after = watched.delivery.stage;
        let flown_by = watched
            .delivery
            .drone_id
            .clone()
            .filter(|_| after.is_some_and(Stage::is_active));
        if watched.flown_by != flown_by {
            if let Some(old) = watched.flown_by.take() {
                self.carrying.remove(&old);
            }
            if let Some(new) = &flown_by {
                self.carrying.insert(new.clone(), id.clone());
            }
            watched.flown_by = flown_by;
        }
        let kind = match after {
            _ if after == before => None,
            Some(Stage::HeadedToPickup) => Some(Kind::DroneAssigned),
            Some(Stage::HeadedToDropoff) => Some(Kind::PickedUp),
            Some(Stage::Completed) => Some(Kind::Completed),
            Some(Stage::Failed) => Some(Kind::Failed),
            _ => None,
        };
        if !after.is_some_and(Stage::is_active) {
            watched.told_eta = None;
        }
        let messages = match kind {
            Some(kind) => self.tell(id, kind, meta.event_id, at),
            None => Vec::new(),
        };
        if after.is_some_and(Stage::is_terminal)
            && let Some(done) = self.deliveries.remove(id)
            && let Some(drone) = done.flown_by
        {
            self.carrying.remove(&drone);
        }
        messages
    }

    /// Folds an event of the drones or telemetry topic; a report that moves the ETA of
    /// the delivery the drone carries by more than the threshold owes a message.
    pub fn apply_drone(&mut self, envelope: &Envelope) -> Vec<Message> {
        let meta = &envelope.metadata;
        let at = meta.occurred_at;
        self.drones
            .entry(meta.aggregate_id.clone())
            .or_default()
            .apply(&envelope.event, at);
        if !matches!(envelope.event, Event::DronePositionReported(_)) {
            return Vec::new();
        }
        let Some(delivery_id) = self.carrying.get(&meta.aggregate_id).cloned() else {
            return Vec::new();
        };
        let (Some(watched), Some(drone)) = (
            self.deliveries.get(&delivery_id),
            self.drones.get(&meta.aggregate_id),
        ) else {
            return Vec::new();
        };
        let eta = self.flight.etas(&watched.delivery, drone, at).delivery;
        let moved = match (eta, watched.told_eta) {
            (Some(eta), Some(told)) => (eta - told).abs() > self.threshold,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved {
            self.tell(&delivery_id, Kind::EtaChanged, meta.event_id, at)
        } else {
            Vec::new()
        }
    }

    /// The notice of `kind` to each subscriber of the delivery, with the ETAs as of `at`.
    fn tell(&mut self, id: &str, kind: Kind, event_id: Uuid, at: DateTime<Utc>) -> Vec<Message> {
        let Some(watched) = self.deliveries.get_mut(id) else {
            return Vec::new();
        };
        let delivery = &watched.delivery;
        let Some(stage) = delivery.stage else {
            return Vec::new();
        };
        let drone = delivery.drone_id.as_ref().and_then(|d| self.drones.get(d));
        let etas = match drone {
            Some(drone) if stage.is_active() => self.flight.etas(delivery, drone, at),
            _ => domain::Etas::default(),
        };
        if stage.is_active() {
            watched.told_eta = etas.delivery;
        }
        let notice = Notice {
            event_id,
            delivery_id: id.to_owned(),
            kind,
            stage,
            drone_id: delivery.drone_id.clone(),
            pickup_eta: etas.pickup,
            delivery_eta: etas.delivery,
            at,
        };
        watched
            .channels()
            .into_iter()
            .map(|channel| Message {
                notice: notice.clone(),
                channel,
            })
            .collect()
    }
}
