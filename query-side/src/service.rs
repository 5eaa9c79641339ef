//! Reads of the read models, shaped for the API. Every read is by partition key.

use crate::error::QueryError;
use crate::metrics::QueryMetrics;
use api::{ConsistencyToken, Principal, STREAM_TOKEN_TTL, TrackingTokens, Watch};
use chrono::{DateTime, Duration as Span, Utc};
use domain::{Drone, DroneStatus, FlightModel, Stage};
use read_model::tables::{
    ACCOUNT_DELIVERIES, ACCOUNT_KEYS, ACCOUNTS, DEAD_LETTERS, DELIVERIES, DELIVERIES_BY_STAGE,
    DELIVERY_TIMELINE, DRONE_POSITIONS, DRONES, FLEET, INVOICE_LINES, SINGLE_ROW, WHOLE_FLEET,
    invoice_partition, time_key,
};
use read_model::views::{
    AccountKey, AccountView, DeadLetter, DeliverySummary, DeliveryView, DroneDetails,
    DronePosition, DroneView, InvoiceLine, TimelineEntry,
};
use read_model::{Model, Progress, models};
use schemas::events::Location;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Order, ReadStore, Row, Scan};

/// What the caller has seen and wants reflected (read-your-writes).
#[derive(Clone, Debug, Default)]
pub struct Freshness {
    pub token: Option<ConsistencyToken>,
    /// For single-aggregate reads: the aggregate version the answer must include.
    pub min_version: Option<u64>,
}

/// `GET /deliveries/{id}/status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    pub delivery_id: String,
    pub stage: Stage,
    pub drone_id: Option<String>,
    /// Where the package is picked up and delivered (for a tracking map).
    pub pickup: Location,
    pub dropoff: Location,
    pub last_known_location: Option<Location>,
    pub pickup_eta: Option<DateTime<Utc>>,
    pub delivery_eta: Option<DateTime<Utc>>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// `POST /stream-tokens`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamToken {
    /// Pass as `?t=` to the stream (and the status).
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// For a delivery: the tracking page with the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub stage: Option<Stage>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: usize,
}

/// `GET /accounts/{id}/invoice`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub account_id: String,
    pub year: i32,
    pub month: u32,
    pub deliveries: usize,
    pub total_weight_kg: f64,
    pub drone_km: f64,
    pub drone_hours: f64,
    pub lines: Vec<InvoiceLine>,
}

pub struct QueryService {
    pub(crate) store: Arc<dyn ReadStore>,
    max_wait: Duration,
    /// The ETAs of a status are the domain's, computed with this.
    flight: FlightModel,
    pub metrics: QueryMetrics,
    /// The projectors' progress when they run in this process; else reads poll.
    progress: Option<Progress>,
    /// Mints the read-only tokens of the streams and the tracking page.
    tracking: TrackingTokens,
}

/// The longest pause between two checks of a read that waits without notifications.
const POLL_CAP: Duration = Duration::from_millis(10);

fn decode<T: DeserializeOwned>(table: &str, row: &Row) -> Result<T, QueryError> {
    serde_json::from_slice(&row.value)
        .map_err(|e| QueryError::Unavailable(format!("{table} row is not readable: {e}")))
}

impl QueryService {
    pub fn new(
        store: Arc<dyn ReadStore>,
        max_wait: Duration,
        flight: FlightModel,
        metrics: QueryMetrics,
        tracking: TrackingTokens,
    ) -> Self {
        QueryService {
            store,
            max_wait,
            flight,
            metrics,
            progress: None,
            tracking,
        }
    }

    /// `POST /stream-tokens`: a short-lived read-only token for a page's stream: of the
    /// fleet (operators and analysts), or of one delivery its caller may see.
    pub async fn stream_token(
        &self,
        who: &Principal,
        delivery_id: Option<&str>,
    ) -> Result<StreamToken, QueryError> {
        let watch = match delivery_id {
            Some(id) => {
                self.delivery_watched(who, id, &Freshness::default())
                    .await?;
                Watch::Delivery(id.to_owned())
            }
            None if who.reads_all() => Watch::Fleet,
            None => {
                return Err(QueryError::Forbidden(
                    "only operator and analyst keys watch the fleet; name a deliveryId".into(),
                ));
            }
        };
        let expires_at = Utc::now() + STREAM_TOKEN_TTL;
        let token = self.tracking.mint(&watch, expires_at);
        let tracking_url = match &watch {
            Watch::Delivery(id) => Some(TrackingTokens::page(id, &token)),
            Watch::Fleet => None,
        };
        Ok(StreamToken {
            token,
            expires_at,
            tracking_url,
        })
    }

    /// Waits for read-your-writes on `progress` (every projector of the store runs in
    /// this process and tells it) instead of polling the store.
    pub fn notified_by(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Waits (up to `max_wait`) until `projection` reached the token and the row at
    /// (`table`, `partition`) reached `min_version`; false when it gave up waiting. With
    /// the projectors' progress at hand it checks again after each apply; without (they
    /// run in other processes) it polls with a backoff capped at `POLL_CAP`.
    pub(crate) async fn wait(
        &self,
        model: Model,
        freshness: &Freshness,
        row: Option<(&str, &str)>,
    ) -> Result<bool, QueryError> {
        if freshness.token.is_none() && freshness.min_version.is_none() {
            return Ok(true);
        }
        let started = Instant::now();
        // Subscribed before the first check, so an apply right after it is not missed.
        let mut applied = self.progress.as_ref().map(Progress::watch);
        let mut pause = Duration::from_micros(200);
        loop {
            let token_ok = match &freshness.token {
                Some(token) => read_model::caught_up(self.store.as_ref(), model, token).await?,
                None => true,
            };
            let version_ok = match (freshness.min_version, row) {
                (Some(min), Some((table, partition))) => self
                    .store
                    .get(table, partition, SINGLE_ROW)
                    .await?
                    .is_some_and(|r| r.version >= min),
                _ => true,
            };
            if token_ok && version_ok {
                self.metrics
                    .consistency_wait
                    .observe(started.elapsed().as_secs_f64());
                return Ok(true);
            }
            let left = self.max_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            match &mut applied {
                Some(applied) => applied.next(left).await,
                None => {
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(POLL_CAP);
                }
            }
        }
    }

    pub(crate) async fn one<T: DeserializeOwned>(
        &self,
        table: &'static str,
        kind: &'static str,
        id: &str,
    ) -> Result<T, QueryError> {
        let row = self
            .store
            .get(table, id, SINGLE_ROW)
            .await?
            .ok_or_else(|| QueryError::NotFound {
                kind,
                id: id.to_string(),
            })?;
        decode(table, &row)
    }

    /// `GET /deliveries/{id}`; the flag says whether the freshness asked for was reached.
    /// Another tenant's delivery does not exist for an account key.
    pub async fn delivery(
        &self,
        who: &Principal,
        id: &str,
        freshness: &Freshness,
    ) -> Result<(DeliveryView, bool), QueryError> {
        let fresh = self
            .wait(models::DELIVERIES, freshness, Some((DELIVERIES, id)))
            .await?;
        let view: DeliveryView = self.one(DELIVERIES, "delivery", id).await?;
        if !who.sees(&view.delivery.owner_id) {
            return Err(QueryError::NotFound {
                kind: "delivery",
                id: id.to_string(),
            });
        }
        Ok((view, fresh))
    }

    /// `GET /deliveries/{id}?at=`: the delivery as it was at `at`, folded from its
    /// timeline with the domain's own `apply` (404 before it was created).
    pub async fn delivery_at(
        &self,
        who: &Principal,
        id: &str,
        at: DateTime<Utc>,
        freshness: &Freshness,
    ) -> Result<(DeliveryView, bool), QueryError> {
        let (_, timeline, fresh) = self.timeline_of(who, id, freshness).await?;
        let view = DeliveryView::as_of(id, &timeline, at).ok_or_else(|| QueryError::NotFound {
            kind: "delivery",
            id: format!("{id} at {}", at.to_rfc3339()),
        })?;
        Ok((view, fresh))
    }

    /// `GET /deliveries/{id}/status?at=`: the stage, drone and place as they were at
    /// `at`. Past ETAs and positions are not kept (telemetry keeps the latest report
    /// only), so they are null.
    pub async fn delivery_status_at(
        &self,
        who: &Principal,
        id: &str,
        at: DateTime<Utc>,
        freshness: &Freshness,
    ) -> Result<(DeliveryStatus, bool), QueryError> {
        let (view, fresh) = self.delivery_at(who, id, at, freshness).await?;
        Ok((self.status_of(&view, None), fresh))
    }

    /// `GET /deliveries/{id}/status`: the stage, the drone's last position and the ETAs
    /// the flight model derives from it now, so they move with every telemetry report.
    pub async fn delivery_status(
        &self,
        who: &Principal,
        id: &str,
        freshness: &Freshness,
    ) -> Result<(DeliveryStatus, bool), QueryError> {
        let (view, fresh) = self.delivery_watched(who, id, freshness).await?;
        let drone_fresh = self.wait(models::DRONES, freshness, None).await?;
        let drone = match &view.delivery.drone_id {
            Some(drone_id) if view.stage().is_active() => self.drone_now(drone_id).await?,
            _ => None,
        };
        Ok((self.status_of(&view, drone.as_ref()), fresh && drone_fresh))
    }

    /// A delivery for its status or stream: its owner's, an operator's or analyst's, or
    /// a tracking token's for this one delivery.
    pub(crate) async fn delivery_watched(
        &self,
        who: &Principal,
        id: &str,
        freshness: &Freshness,
    ) -> Result<(DeliveryView, bool), QueryError> {
        if who.watches(&Watch::Delivery(id.to_owned())) {
            // The token was minted once the delivery existed: wait for it to be visible.
            let freshness = Freshness {
                min_version: Some(freshness.min_version.unwrap_or(1)),
                ..freshness.clone()
            };
            let fresh = self
                .wait(models::DELIVERIES, &freshness, Some((DELIVERIES, id)))
                .await?;
            return Ok((self.one(DELIVERIES, "delivery", id).await?, fresh));
        }
        self.delivery(who, id, freshness).await
    }

    /// A drone with its latest report folded in, if it exists.
    pub(crate) async fn drone_now(&self, drone_id: &str) -> Result<Option<Drone>, QueryError> {
        let Some(view) = self.optional::<DroneView>(DRONES, drone_id).await? else {
            return Ok(None);
        };
        let position = self.position(drone_id).await?;
        Ok(Some(view.with_position(position.as_ref())))
    }

    /// The status of a delivery: its stage, and while a drone flies it, the drone's
    /// position and the ETAs the flight model derives from it now, so they move with
    /// every telemetry report.
    pub fn status_of(&self, view: &DeliveryView, drone: Option<&Drone>) -> DeliveryStatus {
        let stage = view.stage();
        let delivery = &view.delivery;
        let mut status = DeliveryStatus {
            delivery_id: view.delivery_id.clone(),
            stage,
            drone_id: delivery.drone_id.clone(),
            pickup: delivery.pickup,
            dropoff: delivery.dropoff,
            last_known_location: delivery.completed_location,
            pickup_eta: None,
            delivery_eta: None,
            version: view.version,
            updated_at: view.updated_at,
        };
        if let (true, Some(drone)) = (stage.is_active(), drone) {
            status.last_known_location = Some(drone.current_location());
            let etas = self.flight.etas(delivery, drone, Utc::now());
            status.pickup_eta = etas.pickup;
            status.delivery_eta = etas.delivery;
        }
        status
    }

    pub(crate) async fn optional<T: DeserializeOwned>(
        &self,
        table: &'static str,
        id: &str,
    ) -> Result<Option<T>, QueryError> {
        match self.store.get(table, id, SINGLE_ROW).await? {
            Some(row) => Ok(Some(decode(table, &row)?)),
            None => Ok(None),
        }
    }

    /// A drone's latest reported position.
    pub(crate) async fn position(
        &self,
        drone_id: &str,
    ) -> Result<Option<DronePosition>, QueryError> {
        match self
            .store
            .get(DRONE_POSITIONS, WHOLE_FLEET, drone_id)
            .await?
        {
            Some(row) => Ok(Some(decode(DRONE_POSITIONS, &row)?)),
            None => Ok(None),
        }
    }

    /// `GET /deliveries/{id}/events`: the timeline, oldest first.
    pub async fn timeline(
        &self,
        who: &Principal,
        id: &str,
        freshness: &Freshness,
    ) -> Result<(Vec<TimelineEntry>, bool), QueryError> {
        let (_, entries, fresh) = self.timeline_of(who, id, freshness).await?;
        Ok((entries, fresh))
    }

    /// A delivery its caller may read, with its timeline.
    async fn timeline_of(
        &self,
        who: &Principal,
        id: &str,
        freshness: &Freshness,
    ) -> Result<(DeliveryView, Vec<TimelineEntry>, bool), QueryError> {
        let (view, fresh) = self.delivery(who, id, freshness).await?;
        let rows = self
            .store
            .scan(
                DELIVERY_TIMELINE,
                id,
                Scan {
                    from: Bound::Unbounded,
                    to: Bound::Unbounded,
                    order: Order::Ascending,
                    limit: 10_000,
                },
            )
            .await?;
        let entries = rows
            .iter()
            .map(|r| decode(DELIVERY_TIMELINE, r))
            .collect::<Result<_, _>>()?;
        Ok((view, entries, fresh))
    }

    /// Another tenant's account does not exist for an account key.
    async fn account(
        &self,
        who: &Principal,
        id: &str,
        freshness: &Freshness,
    ) -> Result<bool, QueryError> {
        if !who.sees(id) {
            return Err(QueryError::NotFound {
                kind: "account",
                id: id.to_string(),
            });
        }
        let fresh = self.wait(models::ACCOUNTS, freshness, None).await?;
        let _: AccountView = self.one(ACCOUNTS, "account", id).await?;
        Ok(fresh)
    }

    /// `GET /accounts/{id}/deliveries`: newest first, filtered by stage and creation time.
    pub async fn history(
        &self,
        who: &Principal,
        account_id: &str,
        filter: &HistoryFilter,
        freshness: &Freshness,
    ) -> Result<(Page<DeliverySummary>, bool), QueryError> {
        let fresh = self.account(who, account_id, freshness).await?
            && self.wait(models::DELIVERIES, freshness, None).await?;
        let from = match filter.from {
            Some(t) => Bound::Included(time_key(t)),
            None => Bound::Unbounded,
        };
        // Keys are `<time>/<id>`: every key of an instant sorts above its bare `<time>`, so
        // excluding the next microsecond's bare time keeps all of `to` and nothing after.
        let mut to = match filter.to {
            Some(t) => Bound::Excluded(time_key(t + Span::microseconds(1))),
            None => Bound::Unbounded,
        };
        if let Some(cursor) = &filter.cursor {
            to = Bound::Excluded(cursor.clone());
        }
        let mut items = Vec::new();
        let mut next_cursor = None;
        'pages: loop {
            let batch = filter.limit.max(1) * 2;
            let rows = self
                .store
                .scan(
                    ACCOUNT_DELIVERIES,
                    account_id,
                    Scan {
                        from: from.clone(),
                        to: to.clone(),
                        order: Order::Descending,
                        limit: batch,
                    },
                )
                .await?;
            let exhausted = rows.len() < batch;
            for row in rows {
                to = Bound::Excluded(row.clustering.clone());
                let summary: DeliverySummary = decode(ACCOUNT_DELIVERIES, &row)?;
                if filter.stage.is_some_and(|s| s != summary.stage) {
                    continue;
                }
                items.push(summary);
                if items.len() == filter.limit {
                    next_cursor = Some(row.clustering);
                    break 'pages;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok((Page { items, next_cursor }, fresh))
    }

    /// `GET /deliveries?stage=`: every account's deliveries in one stage (the operators'
    /// view, e.g. of failed deliveries), newest first.
    pub async fn deliveries_in_stage(
        &self,
        stage: Stage,
        cursor: Option<&str>,
        limit: usize,
        freshness: &Freshness,
    ) -> Result<(Page<DeliverySummary>, bool), QueryError> {
        let fresh = self.wait(models::DELIVERIES, freshness, None).await?;
        let to = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_string()));
        let rows = self
            .store
            .scan(
                DELIVERIES_BY_STAGE,
                stage.as_str(),
                Scan {
                    from: Bound::Unbounded,
                    to,
                    order: Order::Descending,
                    limit: limit + 1,
                },
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        let mut next_cursor = None;
        for row in rows {
            if items.len() == limit {
                next_cursor = items.last().map(|s: &DeliverySummary| {
                    read_model::tables::history_key(s.created_at, &s.delivery_id)
                });
                break;
            }
            items.push(decode(DELIVERIES_BY_STAGE, &row)?);
        }
        Ok((Page { items, next_cursor }, fresh))
    }

    /// `GET /dead-letters`: the records each projection could not decode, in log order
    /// (for operators: what to fix, then rebuild the read model).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueryError> {
        let mut letters = Vec::new();
        for model in models::ALL {
            let rows = self
                .store
                .scan(
                    DEAD_LETTERS,
                    model.name,
                    Scan {
                        from: Bound::Unbounded,
                        to: Bound::Unbounded,
                        order: Order::Ascending,
                        limit: limit.saturating_sub(letters.len()),
                    },
                )
                .await?;
            for row in rows {
                letters.push(decode(DEAD_LETTERS, &row)?);
            }
        }
        Ok(letters)
    }

    /// `GET /accounts/{id}/invoice?year=&month=`.
    pub async fn invoice(
        &self,
        who: &Principal,
        account_id: &str,
        year: i32,
        month: u32,
        freshness: &Freshness,
    ) -> Result<(Invoice, bool), QueryError> {
        let fresh = self.account(who, account_id, freshness).await?
            && self.wait(models::INVOICES, freshness, None).await?;
        let rows = self
            .store
            .scan(
                INVOICE_LINES,
                &invoice_partition(account_id, year, month),
                Scan {
                    from: Bound::Unbounded,
                    to: Bound::Unbounded,
                    order: Order::Ascending,
                    limit: usize::MAX,
                },
            )
            .await?;
        let lines: Vec<InvoiceLine> = rows
            .iter()
            .map(|r| decode(INVOICE_LINES, r))
            .collect::<Result<_, _>>()?;
        let invoice = Invoice {
            account_id: account_id.to_string(),
            year,
            month,
            deliveries: lines.len(),
            total_weight_kg: lines.iter().map(|l| l.weight_kg).sum(),
            drone_km: lines.iter().map(|l| l.drone_km).sum(),
            drone_hours: lines.iter().map(|l| l.drone_hours).sum(),
            lines,
        };
        Ok((invoice, fresh))
    }

    /// `GET /drones/{id}`.
    pub async fn drone(
        &self,
        id: &str,
        freshness: &Freshness,
    ) -> Result<(DroneDetails, bool), QueryError> {
        let fresh = self
            .wait(models::DRONES, freshness, Some((DRONES, id)))
            .await?;
        let view: DroneView = self.one(DRONES, "drone", id).await?;
        let position = self.position(id).await?;
        Ok((DroneDetails::of(&view).at(position.as_ref()), fresh))
    }

    /// `GET /drones?status=`: the fleet, by status (all statuses when none is given),
    /// in drone id order.
    pub async fn fleet(
        &self,
        status: Option<DroneStatus>,
        cursor: Option<&str>,
        limit: usize,
        freshness: &Freshness,
    ) -> Result<(Page<DroneDetails>, bool), QueryError> {
        let fresh = self.wait(models::DRONES, freshness, None).await?;
        let statuses: Vec<DroneStatus> = match status {
            Some(s) => vec![s],
            None => DroneStatus::ALL.to_vec(),
        };
        // The cursor is `<status>/<drone id>` of the last item served.
        let (after_status, after_id) = match cursor.and_then(|c| c.split_once('/')) {
            Some((s, id)) => (Some(s.to_string()), Some(id.to_string())),
            None if cursor.is_some() => {
                return Err(QueryError::Invalid("malformed cursor".into()));
            }
            None => (None, None),
        };
        // One item more than asked tells whether another page follows.
        let mut items: Vec<DroneDetails> = Vec::new();
        let mut skipping = after_status.is_some();
        for s in statuses {
            let from = if skipping {
                if Some(s.as_str()) != after_status.as_deref() {
                    continue;
                }
                skipping = false;
                after_id.clone().map_or(Bound::Unbounded, Bound::Excluded)
            } else {
                Bound::Unbounded
            };
            let rows = self
                .store
                .scan(
                    FLEET,
                    s.as_str(),
                    Scan {
                        from,
                        to: Bound::Unbounded,
                        order: Order::Ascending,
                        limit: limit + 1 - items.len(),
                    },
                )
                .await?;
            for row in rows {
                items.push(decode(FLEET, &row)?);
            }
            if items.len() > limit {
                break;
            }
        }
        let mut positions = self.positions(&items).await?;
        let mut items: Vec<DroneDetails> = items
            .into_iter()
            .map(|item| {
                let position = positions.remove(&item.drone_id);
                item.at(position.as_ref())
            })
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|d| format!("{}/{}", d.status.as_str(), d.drone_id))
        } else {
            None
        };
        Ok((Page { items, next_cursor }, fresh))
    }
}

impl QueryService {
    /// The latest positions of `items`' drones: one scan of their id range.
    async fn positions(
        &self,
        items: &[DroneDetails],
    ) -> Result<HashMap<String, DronePosition>, QueryError> {
        let ids = || items.iter().map(|v| v.drone_id.as_str());
        let (Some(first), Some(last)) = (ids().min(), ids().max()) else {
            return Ok(HashMap::new());
        };
        let wanted: HashSet<&str> = ids().collect();
        let scan = Scan {
            from: Bound::Included(first.to_owned()),
            to: Bound::Included(last.to_owned()),
            order: Order::Ascending,
            limit: usize::MAX,
        };
        let mut positions = HashMap::new();
        for row in self.store.scan(DRONE_POSITIONS, WHOLE_FLEET, scan).await? {
            if wanted.contains(row.clustering.as_str()) {
                let position = decode(DRONE_POSITIONS, &row)?;
                positions.insert(row.clustering, position);
            }
        }
        Ok(positions)
    }
}

/// A query-api that folds no log tells account keys from the read model.
#[async_trait::async_trait]
impl api::AccountKeys for QueryService {
    async fn account_of(&self, key_hash: &str) -> Option<String> {
        match self.optional::<AccountKey>(ACCOUNT_KEYS, key_hash).await {
            Ok(key) => key.map(|k| k.account_id),
            Err(error) => {
                tracing::warn!(%error, "cannot look the API key up in the read store");
                None
            }
        }
    }
}
