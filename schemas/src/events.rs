//! The Rust side of the event schemas in `schemas/avro/`: one struct per event type,
//! wrapped with its metadata in an [`Envelope`]. Field names are camelCase, the same in
//! Avro and in JSON, so the timeline API shows events exactly as they are stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Topics of the log (SPEC §4). Every event is keyed by its aggregate id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    Accounts,
    Drones,
    Packages,
    Deliveries,
    DroneTelemetry,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::Accounts,
        Topic::Drones,
        Topic::Packages,
        Topic::Deliveries,
        Topic::DroneTelemetry,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Accounts => "accounts",
            Topic::Drones => "drones",
            Topic::Packages => "packages",
            Topic::Deliveries => "deliveries",
            Topic::DroneTelemetry => "drone-telemetry",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A point on Earth. Values are checked by `domain::Location`; this is the wire shape.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageSize {
    #[serde(rename = "small")]
    Small,
    #[serde(rename = "medium")]
    Medium,
    #[serde(rename = "large")]
    Large,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfirmationType {
    None,
    FingerPrint,
    Picture,
    Voice,
}

/// What every event carries besides its payload (SPEC §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub event_id: Uuid,
    pub aggregate_id: String,
    /// Version of the aggregate after this event (1 for its first event).
    pub aggregate_version: u64,
    pub occurred_at: DateTime<Utc>,
    /// The command that caused the event (the idempotency key when one was given).
    pub causation_id: String,
    /// The conversation the command belongs to (a request id, or the causing command's).
    pub correlation_id: String,
}

/// An event with its metadata: the unit written to and read from the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub metadata: EventMetadata,
    pub event: Event,
}

/// Every event type. Variants name the Avro record (`drone_delivery.events.<Variant>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    AccountRegistered(AccountRegistered),
    AccountSuspended(AccountSuspended),
    AccountReactivated(AccountReactivated),
    DroneRegistered(DroneRegistered),
    DronePositionReported(DronePositionReported),
    DroneGrounded(DroneGrounded),
    DroneReturned(DroneReturned),
    PackageRegistered(PackageRegistered),
    DeliveryCreated(DeliveryCreated),
    DeliveryRescheduled(DeliveryRescheduled),
    DroneAssigned(DroneAssigned),
    DeliveryPickedUp(DeliveryPickedUp),
    DeliveryCompleted(DeliveryCompleted),
    DeliveryCancelled(DeliveryCancelled),
    DeliveryFailed(DeliveryFailed),
    DroneUnassigned(DroneUnassigned),
    NotificationRequested(NotificationRequested),
}

impl Event {
    /// The event type's name, which is also its Avro record name and schema subject.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AccountRegistered(_) => "AccountRegistered",
            Event::AccountSuspended(_) => "AccountSuspended",
            Event::AccountReactivated(_) => "AccountReactivated",
            Event::DroneRegistered(_) => "DroneRegistered",
            Event::DronePositionReported(_) => "DronePositionReported",
            Event::DroneGrounded(_) => "DroneGrounded",
            Event::DroneReturned(_) => "DroneReturned",
            Event::PackageRegistered(_) => "PackageRegistered",
            Event::DeliveryCreated(_) => "DeliveryCreated",
            Event::DeliveryRescheduled(_) => "DeliveryRescheduled",
            Event::DroneAssigned(_) => "DroneAssigned",
            Event::DeliveryPickedUp(_) => "DeliveryPickedUp",
            Event::DeliveryCompleted(_) => "DeliveryCompleted",
            Event::DeliveryCancelled(_) => "DeliveryCancelled",
            Event::DeliveryFailed(_) => "DeliveryFailed",
            Event::DroneUnassigned(_) => "DroneUnassigned",
            Event::NotificationRequested(_) => "NotificationRequested",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRegistered {
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSuspended {
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReactivated {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneRegistered {
    pub model: String,
    pub payload_kg: f64,
    pub range_km: f64,
    pub speed_mps: f64,
    pub home: Location,
}

/// Telemetry: an observation on the `drone-telemetry` topic. It does not advance the
/// drone's version (so a stream of reports never conflicts with commands); its
/// `aggregateVersion` is the drone version the report was accepted against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DronePositionReported {
    pub position: Location,
    pub battery_pct: f64,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneGrounded {
    pub reason: Option<String>,
}

/// The drone is back at base and in service again (from returning or grounded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneReturned {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRegistered {
    pub size: PackageSize,
    pub weight_kg: f64,
    pub tag: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCreated {
    pub owner_id: String,
    pub pickup: Location,
    pub dropoff: Location,
    pub pickup_time: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub expedited: bool,
    pub confirmation_required: ConfirmationType,
    pub package_id: String,
    /// Copied from the package so read models (invoice) need no join.
    pub package_weight_kg: f64,
}

/// The delivery's new plan (all fields, changed or not). A drone that was assigned is
/// released by the same command (a `DroneUnassigned` on the drone's stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRescheduled {
    pub pickup: Location,
    pub dropoff: Location,
    pub pickup_time: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
}

/// Written to both streams: the delivery's (→ HeadedToPickup) and the drone's (→ assigned).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneAssigned {
    pub delivery_id: String,
    pub drone_id: String,
    /// Great-circle km of the trip home → pickup → drop-off → home, for billing.
    pub route_km: f64,
    pub pickup_eta: Option<DateTime<Utc>>,
    pub delivery_eta: Option<DateTime<Utc>>,
}

/// Written to both streams: the delivery's (→ HeadedToDropoff) and the drone's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPickedUp {
    pub delivery_id: String,
    pub drone_id: String,
    pub at: DateTime<Utc>,
}

/// Written to both streams: the delivery's (→ Completed) and the drone's (→ returning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCompleted {
    pub delivery_id: String,
    pub drone_id: String,
    pub confirmation_type: ConfirmationType,
    pub location: Location,
    pub at: DateTime<Utc>,
    pub blob: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCancelled {
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFailed {
    pub reason: String,
}

/// Compensation on the drone's stream: it no longer carries the delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneUnassigned {
    pub delivery_id: String,
    pub drone_id: String,
    pub reason: String,
}

/// `notify-me`: who to tell about the delivery's progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRequested {
    pub email: Option<String>,
    pub sms: Option<String>,
}
