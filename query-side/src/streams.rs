//! The live streams (server-sent events), fed by [`Live`]:
//! - a delivery's: `change` for each of its events (its timeline entry) and `status`
//!   after each change and each report of its drone (stage, position, ETAs); a client
//!   that reconnects with `Last-Event-ID` gets the changes it missed, then the status;
//!   it ends after Completed, Cancelled or Failed (a reconnect after that is a 204,
//!   which tells an `EventSource` to stop);
//! - the fleet's: every drone (`drone`) at the start and after each change (folded with
//!   the domain's `apply` onto what the stream holds), and each report (`position`).
//!
//! Event ids are `<delivery version>.<report time in µs>` (fleet: a counter).

use crate::QueryError;
use crate::live::{Live, Subscription, Watched};
use crate::service::{DeliveryStatus, Freshness, QueryService};
use api::{ConsistencyToken, Principal, Watch};
use chrono::{DateTime, Utc};
use domain::Drone;
use read_model::models;
use read_model::tables::{DELIVERY_TIMELINE, DRONES, timeline_key};
use read_model::views::{DeliveryView, DroneDetails, DronePosition, DroneView, TimelineEntry};
use schemas::events::{Envelope, Event as LogEvent, Location};
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;
use storage::{Order, Scan};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use warp::sse::Event;

/// Events a slow client may have on their way before its stream waits for it.
const BUFFER: usize = 64;
/// Drones per read while a fleet stream sends its first state.
const FLEET_PAGE: usize = 500;

/// What a stream's handler returns: the events, or why it cannot start.
pub type Events = mpsc::Receiver<Result<Event, Infallible>>;

/// The streams of one process.
pub struct Streams {
    svc: Arc<QueryService>,
    live: Arc<Live>,
    heartbeat: Duration,
    stop: watch::Receiver<bool>,
}

/// Why a stream does not start: a problem, or nothing more to say (204).
pub enum Refused {
    Problem(QueryError),
    Ended,
}

impl From<QueryError> for Refused {
    fn from(e: QueryError) -> Self {
        Refused::Problem(e)
    }
}

impl Streams {
    /// Streams fed by `live` that send a heartbeat after `heartbeat` without an event
    /// and end when `stop` turns true.
    pub fn new(
        svc: Arc<QueryService>,
        live: Arc<Live>,
        heartbeat: Duration,
        stop: watch::Receiver<bool>,
    ) -> Streams {
        Streams {
            svc,
            live,
            heartbeat,
            stop,
        }
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// `GET /deliveries/{id}/status/stream`; its first state reflects `asked` too (a
    /// consistency token or `minVersion` of the request).
    pub async fn delivery(
        &self,
        who: &Principal,
        id: &str,
        last_event_id: Option<&str>,
        asked: &Freshness,
    ) -> Result<Events, Refused> {
        let subscription = self.live.watch(Watched::Delivery(id.to_owned()));
        let positions = subscription.seen.positions.iter().copied();
        let asked_positions = asked.token.iter().flat_map(|t| t.positions.iter().copied());
        let freshness = Freshness {
            token: Some(ConsistencyToken::from_positions(
                positions.chain(asked_positions),
            )),
            min_version: asked.min_version,
        };
        let (view, _) = self.svc.delivery_watched(who, id, &freshness).await?;
        let resumed_at = last_event_id.and_then(|l| l.split('.').next()?.parse::<u64>().ok());
        if view.stage().is_terminal() && resumed_at.is_some_and(|v| v >= view.version) {
            return Err(Refused::Ended);
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        let mut tracker = Tracker {
            svc: self.svc.clone(),
            live: self.live.clone(),
            out: tx,
            view,
            drone: None,
            events: subscription.events,
            sent: None,
        };
        let stop = self.stop.clone();
        let open = self
            .svc
            .metrics
            .streams_open
            .with_label_values(&["delivery"]);
        tokio::spawn(async move {
            open.inc();
            if let Err(Closed) = tracker.run(resumed_at, stop).await {
                tracing::debug!("a status stream's client went away");
            }
            open.dec();
        });
        Ok(rx)
    }

    /// `GET /drones/stream`.
    pub async fn fleet(&self, who: &Principal) -> Result<Events, Refused> {
        if !(who.reads_all() || who.watches(&Watch::Fleet)) {
            return Err(QueryError::Forbidden(
                "only operator and analyst keys (or a fleet stream token) watch the fleet".into(),
            )
            .into());
        }
        let subscription = self.live.fleet();
        let (tx, rx) = mpsc::channel(BUFFER);
        let mut fleet = FleetStream {
            svc: self.svc.clone(),
            live: self.live.clone(),
            out: tx,
            versions: HashMap::new(),
            views: HashMap::new(),
            positions: HashMap::new(),
            sent: 0,
        };
        let stop = self.stop.clone();
        let open = self.svc.metrics.streams_open.with_label_values(&["fleet"]);
        tokio::spawn(async move {
            open.inc();
            if let Err(Closed) = fleet.run(subscription, stop).await {
                tracing::debug!("a fleet stream's client went away");
            }
            open.dec();
        });
        Ok(rx)
    }
}

/// The client went away (or the server stops).
struct Closed;

fn event<T: Serialize>(kind: &str, id: String, data: &T) -> Option<Event> {
    Event::default().event(kind).id(id).json_data(data).ok()
}

async fn send(
    out: &mpsc::Sender<Result<Event, Infallible>>,
    event: Option<Event>,
) -> Result<(), Closed> {
    match event {
        Some(event) => out.send(Ok(event)).await.map_err(|_| Closed),
        None => Ok(()),
    }
}

/// The drone flying a tracked delivery.
struct Flying {
    view: DroneView,
    position: Option<DronePosition>,
    events: tokio::sync::broadcast::Receiver<Arc<Envelope>>,
}

impl Flying {
    fn drone(&self) -> Drone {
        self.view.with_position(self.position.as_ref())
    }
}

/// One delivery's stream.
struct Tracker {
    svc: Arc<QueryService>,
    live: Arc<Live>,
    out: mpsc::Sender<Result<Event, Infallible>>,
    view: DeliveryView,
    drone: Option<Flying>,
    events: tokio::sync::broadcast::Receiver<Arc<Envelope>>,
    /// The last status sent: one that did not change is not sent again.
    sent: Option<DeliveryStatus>,
}

impl Tracker {
    async fn run(
        &mut self,
        resumed_at: Option<u64>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Closed> {
        if let Some(seen) = resumed_at {
            self.missed_changes(seen).await?;
        }
        self.follow_drone().await;
        self.send_status().await?;
        while !self.view.stage().is_terminal() {
            enum Next {
                Delivery(Result<Arc<Envelope>, RecvError>),
                Drone(Result<Arc<Envelope>, RecvError>),
            }
            let next = tokio::select! {
                r = self.events.recv() => Next::Delivery(r),
                r = async {
                    match &mut self.drone {
                        Some(flying) => flying.events.recv().await,
                        None => std::future::pending().await,
                    }
                } => Next::Drone(r),
                _ = self.out.closed() => return Err(Closed),
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            match next {
                Next::Delivery(Ok(envelope)) => self.delivery_event(&envelope).await?,
                Next::Drone(Ok(envelope)) => self.drone_event(&envelope).await?,
                Next::Delivery(Err(RecvError::Closed)) => return Ok(()),
                // Fell behind (or the drone's feed was dropped): start over from the read
                // models, which hold at least what was missed.
                Next::Delivery(Err(RecvError::Lagged(_))) | Next::Drone(Err(_)) => {
                    self.resync().await?;
                }
            }
        }
        Ok(())
    }

    /// The timeline entries after `seen`, for a client that reconnects.
    async fn missed_changes(&mut self, seen: u64) -> Result<(), Closed> {
        let scan = Scan {
            from: Bound::Excluded(timeline_key(seen)),
            to: Bound::Included(timeline_key(self.view.version)),
            order: Order::Ascending,
            limit: 10_000,
        };
        let rows = match self
            .svc
            .store
            .scan(DELIVERY_TIMELINE, &self.view.delivery_id, scan)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot read the timeline a stream missed");
                return Ok(());
            }
        };
        for row in rows {
            if let Ok(entry) = serde_json::from_slice::<TimelineEntry>(&row.value) {
                let id = format!("{}.0", entry.version);
                send(&self.out, event("change", id, &entry)).await?;
            }
        }
        Ok(())
    }

    async fn delivery_event(&mut self, envelope: &Envelope) -> Result<(), Closed> {
        let version = envelope.metadata.aggregate_version;
        if version <= self.view.version {
            return Ok(()); // in the first state already
        }
        if version > self.view.version + 1 {
            // One was missed (it came before the subscription, the state after it).
            return self.resync().await;
        }
        let Some(view) = DeliveryView::folded(Some(&self.view), envelope) else {
            return Ok(());
        };
        let entry = TimelineEntry::of(envelope);
        send(&self.out, event("change", format!("{version}.0"), &entry)).await?;
        let drone_changed = view.delivery.drone_id != self.view.delivery.drone_id;
        self.view = view;
        if drone_changed || self.drone.is_none() {
            self.follow_drone().await;
        }
        self.send_status().await
    }

    async fn drone_event(&mut self, envelope: &Envelope) -> Result<(), Closed> {
        let Some(flying) = &mut self.drone else {
            return Ok(());
        };
        if let LogEvent::DronePositionReported(report) = &envelope.event {
            if flying.position.as_ref().is_some_and(|p| p.at >= report.at) {
                return Ok(()); // an older report than the one shown
            }
            flying.position = Some(DronePosition {
                position: report.position,
                battery_pct: report.battery_pct,
                at: report.at,
            });
            return self.send_status().await;
        }
        let version = envelope.metadata.aggregate_version;
        if version <= flying.view.version {
            return Ok(());
        }
        if version > flying.view.version + 1 {
            return self.resync().await;
        }
        if let Some(view) = DroneView::folded(Some(&flying.view), envelope) {
            flying.view = view;
        }
        self.send_status().await
    }

    /// Watches the delivery's drone while one flies it (subscribed before its state is
    /// read, as the delivery's own).
    async fn follow_drone(&mut self) {
        let drone_id = match &self.view.delivery.drone_id {
            Some(id) if self.view.stage().is_active() => id.clone(),
            _ => {
                self.drone = None;
                return;
            }
        };
        let subscription: Subscription = self.live.watch(Watched::Drone(drone_id.clone()));
        let freshness = Freshness {
            token: Some(subscription.seen),
            min_version: None,
        };
        let read = async {
            self.svc.wait(models::DRONES, &freshness, None).await?;
            let view: Option<DroneView> = self.svc.optional(DRONES, &drone_id).await?;
            let position = self.svc.position(&drone_id).await?;
            Ok::<_, QueryError>(view.map(|view| (view, position)))
        };
        self.drone = match read.await {
            Ok(Some((view, position))) => Some(Flying {
                view,
                position,
                events: subscription.events,
            }),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "a status stream cannot read its drone");
                None
            }
        };
    }

    /// Reads the delivery and its drone again (at least as far as the feed has gone).
    async fn resync(&mut self) -> Result<(), Closed> {
        let subscription = self
            .live
            .watch(Watched::Delivery(self.view.delivery_id.clone()));
        self.events = subscription.events;
        let freshness = Freshness {
            token: Some(subscription.seen),
            min_version: None,
        };
        let fresh = async {
            self.svc.wait(models::DELIVERIES, &freshness, None).await?;
            self.svc
                .one::<DeliveryView>(
                    read_model::tables::DELIVERIES,
                    "delivery",
                    &self.view.delivery_id,
                )
                .await
        };
        match fresh.await {
            Ok(view) if view.version >= self.view.version => self.view = view,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "a status stream cannot read its delivery"),
        }
        self.follow_drone().await;
        self.send_status().await
    }

    fn status(&self) -> DeliveryStatus {
        let drone = self.drone.as_ref().map(Flying::drone);
        self.svc.status_of(&self.view, drone.as_ref())
    }

    async fn send_status(&mut self) -> Result<(), Closed> {
        let status = self.status();
        if self.sent.as_ref() == Some(&status) {
            return Ok(());
        }
        let at = self
            .drone
            .as_ref()
            .and_then(|f| f.position.as_ref())
            .map_or(0, |p| p.at.timestamp_micros());
        let id = format!("{}.{at}", status.version);
        send(&self.out, event("status", id, &status)).await?;
        self.sent = Some(status);
        Ok(())
    }
}

/// A report as the fleet stream sends it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    drone_id: &'a str,
    position: Location,
    battery_pct: f64,
    at: DateTime<Utc>,
}

/// One fleet stream.
struct FleetStream {
    svc: Arc<QueryService>,
    live: Arc<Live>,
    out: mpsc::Sender<Result<Event, Infallible>>,
    /// The version of each drone sent.
    versions: HashMap<String, u64>,
    /// The drones that changed since the stream started, as folded here.
    views: HashMap<String, DroneView>,
    /// Each drone's latest report.
    positions: HashMap<String, DronePosition>,
    sent: u64,
}

impl FleetStream {
    fn id(&mut self) -> String {
        self.sent += 1;
        self.sent.to_string()
    }

    async fn run(
        &mut self,
        mut subscription: Subscription,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Closed> {
        self.everything(&subscription).await?;
        loop {
            let next = tokio::select! {
                r = subscription.events.recv() => r,
                _ = self.out.closed() => return Err(Closed),
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            match next {
                Ok(envelope) => self.fleet_event(&envelope).await?,
                Err(RecvError::Closed) => return Ok(()),
                Err(RecvError::Lagged(_)) => {
                    subscription = self.live.fleet();
                    self.everything(&subscription).await?;
                }
            }
        }
    }

    /// Every drone, as far as the feed had gone when `subscription` was made.
    async fn everything(&mut self, subscription: &Subscription) -> Result<(), Closed> {
        let freshness = Freshness {
            token: Some(subscription.seen.clone()),
            min_version: None,
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = match self
                .svc
                .fleet(None, cursor.as_deref(), FLEET_PAGE, &freshness)
                .await
            {
                Ok((page, _)) => page,
                Err(error) => {
                    tracing::warn!(%error, "a fleet stream cannot read the fleet");
                    return Ok(());
                }
            };
            for drone in page.items {
                self.versions.insert(drone.drone_id.clone(), drone.version);
                if let (Some(position), Some(battery_pct), Some(at)) =
                    (drone.position, drone.battery_pct, drone.position_at)
                {
                    let report = DronePosition {
                        position,
                        battery_pct,
                        at,
                    };
                    self.positions.insert(drone.drone_id.clone(), report);
                }
                let id = self.id();
                send(&self.out, event("drone", id, &drone)).await?;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn fleet_event(&mut self, envelope: &Envelope) -> Result<(), Closed> {
        let meta = &envelope.metadata;
        if let LogEvent::DronePositionReported(report) = &envelope.event {
            let newer = self
                .positions
                .get(&meta.aggregate_id)
                .is_none_or(|p| p.at < report.at);
            if newer {
                self.positions.insert(
                    meta.aggregate_id.clone(),
                    DronePosition {
                        position: report.position,
                        battery_pct: report.battery_pct,
                        at: report.at,
                    },
                );
            }
            let report = Report {
                drone_id: &meta.aggregate_id,
                position: report.position,
                battery_pct: report.battery_pct,
                at: report.at,
            };
            let id = self.id();
            return send(&self.out, event("position", id, &report)).await;
        }
        let version = meta.aggregate_version;
        if self
            .versions
            .get(&meta.aggregate_id)
            .is_some_and(|v| *v >= version)
        {
            return Ok(());
        }
        let Some(view) = self.drone_after(envelope).await else {
            return Ok(());
        };
        let drone = DroneDetails::of(&view).at(self.positions.get(&view.drone_id));
        self.versions.insert(view.drone_id.clone(), view.version);
        self.views.insert(view.drone_id.clone(), view);
        let id = self.id();
        send(&self.out, event("drone", id, &drone)).await
    }

    /// The drone with `envelope` folded in: onto the state this stream holds when the
    /// event is the next, else onto the read model's row (one read), waiting for the
    /// read model only when it is behind the event.
    async fn drone_after(&self, envelope: &Envelope) -> Option<DroneView> {
        let (id, version) = (
            &envelope.metadata.aggregate_id,
            envelope.metadata.aggregate_version,
        );
        let next_of = |view: &DroneView| view.version + 1 == version;
        if let Some(view) = self.views.get(id).filter(|v| next_of(v)) {
            return DroneView::folded(Some(view), envelope);
        }
        if version == 1 {
            return DroneView::folded(None, envelope);
        }
        let stored: Option<DroneView> = match self.svc.optional(DRONES, id).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "a fleet stream cannot read a drone");
                return None;
            }
        };
        match stored {
            Some(view) if view.version >= version => Some(view),
            Some(view) if next_of(&view) => DroneView::folded(Some(&view), envelope),
            // The read model is behind this event: wait until it holds it.
            _ => {
                let freshness = Freshness {
                    token: None,
                    min_version: Some(version),
                };
                if let Err(error) = self
                    .svc
                    .wait(models::DRONES, &freshness, Some((DRONES, id)))
                    .await
                {
                    tracing::warn!(%error, "a fleet stream cannot read a drone");
                }
                self.svc.optional(DRONES, id).await.ok().flatten()
            }
        }
    }
}
