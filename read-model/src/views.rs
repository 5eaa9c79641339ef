//! The read models as stored (JSON rows) and served by the query side.

use chrono::{DateTime, Utc};
use domain::{Delivery, Drone, DroneStatus, Stage};
use schemas::events::{Envelope, Event, Location};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub account_id: String,
    pub name: String,
    pub email: String,
    pub status: String,
    /// Of the current API key, to drop its `account_keys` row when it is rotated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_key_hash: String,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// A row of `account_keys`: whose key it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountKey {
    pub account_id: String,
}

/// `GET /deliveries/{id}`: the delivery as the domain folds it, with its id and version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub delivery_id: String,
    #[serde(flatten)]
    pub delivery: Delivery,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl DeliveryView {
    /// `before` (none: not created yet) with one more of its events, folded with the
    /// domain's own `Delivery::apply`; none while the delivery does not exist.
    pub fn folded(before: Option<&DeliveryView>, envelope: &Envelope) -> Option<DeliveryView> {
        let meta = &envelope.metadata;
        DeliveryView::fold(
            before,
            &meta.aggregate_id,
            meta.aggregate_version,
            meta.occurred_at,
            &envelope.event,
        )
    }

    /// The same for an event of delivery `id` at `version`, `at`.
    pub fn fold(
        before: Option<&DeliveryView>,
        id: &str,
        version: u64,
        at: DateTime<Utc>,
        event: &Event,
    ) -> Option<DeliveryView> {
        let mut delivery = before.map(|v| v.delivery.clone()).unwrap_or_default();
        delivery.apply(event, at);
        delivery.exists().then(|| DeliveryView {
            delivery_id: id.to_owned(),
            delivery,
            version,
            updated_at: at,
        })
    }

    /// The delivery as it was at `at`, folded from its timeline (oldest first) with the
    /// domain's own `apply`; none before it was created.
    pub fn as_of(id: &str, timeline: &[TimelineEntry], at: DateTime<Utc>) -> Option<DeliveryView> {
        timeline
            .iter()
            .take_while(|entry| entry.occurred_at <= at)
            .filter_map(|entry| Some((entry, entry.event()?)))
            .fold(None, |view, (entry, event)| {
                DeliveryView::fold(view.as_ref(), id, entry.version, entry.occurred_at, &event)
                    .or(view)
            })
    }

    /// Its stage (a view exists only once the delivery is created).
    pub fn stage(&self) -> Stage {
        self.delivery.stage.unwrap_or(Stage::Created)
    }
}

/// One entry of `GET /deliveries/{id}/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub version: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub causation_id: String,
    pub correlation_id: String,
    /// Who caused it (`account:<id>`, `operator`, `workflow`, …).
    #[serde(default)]
    pub principal: String,
    pub data: serde_json::Value,
}

impl TimelineEntry {
    /// The event the entry records, as the domain reads it.
    pub fn event(&self) -> Option<Event> {
        serde_json::from_value(serde_json::json!({"type": self.kind, "data": self.data})).ok()
    }

    /// The entry of a delivery's event.
    pub fn of(envelope: &Envelope) -> TimelineEntry {
        let meta = &envelope.metadata;
        // The event as JSON is `{"type": .., "data": {..}}`; the entry keeps the data.
        let data = serde_json::to_value(&envelope.event)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
            .unwrap_or_default();
        TimelineEntry {
            version: meta.aggregate_version,
            kind: envelope.event.type_name().to_string(),
            event_id: meta.event_id.to_string(),
            occurred_at: meta.occurred_at,
            causation_id: meta.causation_id.clone(),
            correlation_id: meta.correlation_id.clone(),
            principal: meta.principal.clone(),
            data,
        }
    }
}

/// One delivery in `GET /accounts/{id}/deliveries` and `GET /deliveries?stage=`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySummary {
    pub delivery_id: String,
    pub owner_id: String,
    pub stage: Stage,
    pub drone_id: Option<String>,
    pub pickup_time: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub expedited: bool,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

/// What the invoices projection remembers of a delivery until it completes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceTrip {
    pub owner_id: String,
    pub weight_kg: f64,
    pub route_km: Option<f64>,
    pub assigned_at: Option<DateTime<Utc>>,
}

/// One completed delivery on an account's monthly invoice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    pub delivery_id: String,
    pub completed_at: DateTime<Utc>,
    pub weight_kg: f64,
    /// Great-circle km of the assigned route (drone position → pickup → drop-off → home).
    pub drone_km: f64,
    /// From assignment to completion.
    pub drone_hours: f64,
}

/// `GET /drones/{id}` without its live position (see [`DronePosition`]): the drone as
/// the domain folds its own stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneView {
    pub drone_id: String,
    #[serde(flatten)]
    pub drone: Drone,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl DroneView {
    /// `before` with one more of its events, folded with the domain's own `Drone::apply`;
    /// none while the drone has no status (not registered).
    pub fn folded(before: Option<&DroneView>, envelope: &Envelope) -> Option<DroneView> {
        let meta = &envelope.metadata;
        let mut drone = before.map(|v| v.drone.clone()).unwrap_or_default();
        drone.apply(&envelope.event, meta.occurred_at);
        drone.status?;
        Some(DroneView {
            drone_id: meta.aggregate_id.clone(),
            drone,
            version: meta.aggregate_version,
            updated_at: meta.occurred_at,
        })
    }

    /// The drone with its latest telemetry folded in.
    pub fn with_position(&self, position: Option<&DronePosition>) -> Drone {
        let mut drone = self.drone.clone();
        if let Some(p) = position {
            drone.position = Some(p.position);
            drone.battery_pct = Some(p.battery_pct);
            drone.position_at = Some(p.at);
        }
        drone
    }

    pub fn status(&self) -> DroneStatus {
        self.drone.status.unwrap_or(DroneStatus::Idle)
    }
}

/// A drone's latest telemetry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DronePosition {
    pub position: Location,
    pub battery_pct: f64,
    pub at: DateTime<Utc>,
}

/// What `GET /drones/{id}` and a fleet page show of a drone; the rows of `fleet` hold it
/// without the position (which telemetry keeps in `drone_positions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneDetails {
    pub drone_id: String,
    pub status: DroneStatus,
    pub position: Option<Location>,
    pub battery_pct: Option<f64>,
    pub position_at: Option<DateTime<Utc>>,
    pub delivery_id: Option<String>,
    pub model: String,
    pub payload_kg: f64,
    pub range_km: f64,
    pub speed_mps: f64,
    pub home: Location,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl DroneDetails {
    /// The drone as its view has it, without a position.
    pub fn of(view: &DroneView) -> DroneDetails {
        let drone = &view.drone;
        DroneDetails {
            drone_id: view.drone_id.clone(),
            status: view.status(),
            position: None,
            battery_pct: None,
            position_at: None,
            delivery_id: drone.delivery_id.clone(),
            model: drone.model.clone(),
            payload_kg: drone.payload_kg,
            range_km: drone.range_km,
            speed_mps: drone.speed_mps,
            home: drone.home,
            version: view.version,
            updated_at: view.updated_at,
        }
    }

    /// With the drone's latest report.
    pub fn at(mut self, position: Option<&DronePosition>) -> DroneDetails {
        self.position = position.map(|p| p.position);
        self.battery_pct = position.map(|p| p.battery_pct);
        self.position_at = position.map(|p| p.at);
        self
    }
}

/// A record a projection could not decode: it is set aside, counted, and the projection
/// goes on (`GET /api/v1/dead-letters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub projection: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub error: String,
    /// When the record was appended.
    pub appended_at: Option<DateTime<Utc>>,
}
