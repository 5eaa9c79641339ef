use schemas::events::ConfirmationType;

use crate::drone::DroneStatus;
use crate::stage::Stage;

/// How the edge should answer a [`DomainError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The aggregate the command is addressed to does not exist (HTTP 404).
    NotFound,
    /// The aggregate is in a state where the command cannot apply (HTTP 409).
    Conflict,
    /// A business rule refuses the command (HTTP 422).
    Rule,
}

/// Why a command was refused: business facts only, worded for the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    // Not found: the addressed aggregate.
    #[error("account does not exist")]
    AccountNotFound,
    #[error("drone does not exist")]
    DroneNotFound,
    #[error("delivery does not exist")]
    DeliveryNotFound,

    // Conflict: the aggregate's state forbids the command.
    #[error("account is already registered")]
    AccountAlreadyRegistered,
    #[error("account is already suspended")]
    AccountAlreadySuspended,
    #[error("account is already active")]
    AccountAlreadyActive,
    #[error("drone is already registered")]
    DroneAlreadyRegistered,
    #[error("drone is already grounded")]
    DroneAlreadyGrounded,
    #[error(
        "drone is {status}; only a returning, charging or grounded drone can return to service"
    )]
    DroneCannotReturn { status: DroneStatus },
    #[error("drone is {status}; only a returning drone docks")]
    DroneCannotDock { status: DroneStatus },
    #[error("drone still carries delivery {delivery_id}; release it before returning to service")]
    DroneStillCarriesDelivery { delivery_id: String },
    #[error("package is already registered")]
    PackageAlreadyRegistered,
    #[error("delivery already exists")]
    DeliveryAlreadyExists,
    #[error("cannot {action} a delivery that is {stage}")]
    StageForbids { action: &'static str, stage: Stage },
    #[error("delivery already has drone {drone_id}")]
    DeliveryAlreadyHasDrone { drone_id: String },
    #[error("the delivery gave up its reservation of drone {drone_id}; assign again")]
    ReservationGivenUp { drone_id: String },
    #[error("drone {drone_id} already carries delivery {delivery_id}")]
    DroneCarriesAnotherDelivery {
        drone_id: String,
        delivery_id: String,
    },
    #[error("drone {drone_id} is {status}, not idle")]
    DroneNotIdle {
        drone_id: String,
        status: DroneStatus,
    },

    // Rule: a business rule refuses the command.
    #[error("owner account does not exist")]
    UnknownOwner,
    #[error("owner account is suspended; only active accounts schedule deliveries")]
    AccountNotActive,
    #[error("drone {drone_id} does not exist")]
    UnknownDrone { drone_id: String },
    #[error("package weighs {weight_kg} kg, over the drone's payload of {payload_kg} kg")]
    OverPayload { weight_kg: f64, payload_kg: f64 },
    #[error("route of {route_km:.1} km is over the drone's range of {range_km:.1} km")]
    OverRange { route_km: f64, range_km: f64 },
    #[error("delivery requires confirmation {required:?}, got {given:?}")]
    ConfirmationMismatch {
        required: ConfirmationType,
        given: ConfirmationType,
    },
    #[error("give an email or an sms number to notify")]
    NoNotificationChannel,
    #[error("deadline must be after the pickup time")]
    DeadlineNotAfterPickupTime,
    #[error("report at {at} is more than {skew_secs} s ahead of the server's clock")]
    ReportFromTheFuture {
        at: chrono::DateTime<chrono::Utc>,
        skew_secs: i64,
    },
}

impl DomainError {
    pub fn kind(&self) -> ErrorKind {
        use DomainError::*;
        match self {
            AccountNotFound | DroneNotFound | DeliveryNotFound => ErrorKind::NotFound,
            AccountAlreadyRegistered
            | AccountAlreadySuspended
            | AccountAlreadyActive
            | DroneAlreadyRegistered
            | DroneAlreadyGrounded
            | DroneCannotReturn { .. }
            | DroneCannotDock { .. }
            | DroneStillCarriesDelivery { .. }
            | PackageAlreadyRegistered
            | DeliveryAlreadyExists
            | StageForbids { .. }
            | DeliveryAlreadyHasDrone { .. }
            | ReservationGivenUp { .. }
            | DroneCarriesAnotherDelivery { .. }
            | DroneNotIdle { .. } => ErrorKind::Conflict,
            UnknownOwner
            | AccountNotActive
            | UnknownDrone { .. }
            | OverPayload { .. }
            | OverRange { .. }
            | ConfirmationMismatch { .. }
            | NoNotificationChannel
            | DeadlineNotAfterPickupTime
            | ReportFromTheFuture { .. } => ErrorKind::Rule,
        }
    }
}
