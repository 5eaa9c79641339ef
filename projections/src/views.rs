//! The read models as stored (JSON rows) and served by the query side.

use chrono::{DateTime, Utc};
use domain::{DroneStatus, Stage};
use schemas::events::{ConfirmationType, Location};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub account_id: String,
    pub name: String,
    pub email: String,
    pub status: String,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    pub email: Option<String>,
    pub sms: Option<String>,
}

/// `GET /deliveries/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub delivery_id: String,
    pub owner_id: String,
    pub pickup: Location,
    pub dropoff: Location,
    pub pickup_time: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub expedited: bool,
    pub confirmation_required: ConfirmationType,
    pub package_id: String,
    pub package_weight_kg: f64,
    pub stage: Stage,
    pub drone_id: Option<String>,
    pub route_km: Option<f64>,
    pub pickup_eta: Option<DateTime<Utc>>,
    pub delivery_eta: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub completed_at_location: Option<Location>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub notify: Option<Notify>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
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
    pub data: serde_json::Value,
}

/// One delivery in `GET /accounts/{id}/deliveries`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySummary {
    pub delivery_id: String,
    pub stage: Stage,
    pub drone_id: Option<String>,
    pub pickup_time: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub expedited: bool,
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

/// `GET /drones/{id}` without its live position (see [`DronePosition`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneView {
    pub drone_id: String,
    pub model: String,
    pub payload_kg: f64,
    pub range_km: f64,
    pub speed_mps: f64,
    pub home: Location,
    pub status: DroneStatus,
    pub delivery_id: Option<String>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// A drone's latest telemetry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DronePosition {
    pub position: Location,
    pub battery_pct: f64,
    pub at: DateTime<Utc>,
}

/// A row of the fleet table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetEntry {
    pub drone_id: String,
    pub version: u64,
}
