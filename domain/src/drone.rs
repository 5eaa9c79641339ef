use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use chrono::{DateTime, Utc};
use schemas::events::{
    DeliveryCompleted, DeliveryPickedUp, DroneAssigned, DroneDocked, DroneGrounded,
    DronePositionReported, DroneRegistered, DroneReturned, DroneUnassigned, Event, Location,
};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::delivery::{Delivery, Job};
use crate::error::DomainError;
use crate::stage::Stage;
use crate::values::{RegisterDrone, Telemetry, ValueError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DroneStatus {
    Idle,
    Assigned,
    EnRouteToPickup,
    EnRouteToDropoff,
    Returning,
    Charging,
    Grounded,
}

impl DroneStatus {
    pub const ALL: [DroneStatus; 7] = [
        DroneStatus::Idle,
        DroneStatus::Assigned,
        DroneStatus::EnRouteToPickup,
        DroneStatus::EnRouteToDropoff,
        DroneStatus::Returning,
        DroneStatus::Charging,
        DroneStatus::Grounded,
    ];

    /// The JSON name (`GET /drones?status=` takes the same).
    pub fn as_str(self) -> &'static str {
        match self {
            DroneStatus::Idle => "idle",
            DroneStatus::Assigned => "assigned",
            DroneStatus::EnRouteToPickup => "enRouteToPickup",
            DroneStatus::EnRouteToDropoff => "enRouteToDropoff",
            DroneStatus::Returning => "returning",
            DroneStatus::Charging => "charging",
            DroneStatus::Grounded => "grounded",
        }
    }
}

impl fmt::Display for DroneStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DroneStatus {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DroneStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ValueError(format!("unknown drone status {s:?}")))
    }
}

/// A drone of the fleet. `Default` is a drone not registered yet. The command side folds
/// only the drone's own stream; the read models and the workflow also fold its telemetry
/// (`position`, `battery_pct`, `position_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drone {
    pub model: String,
    pub payload_kg: f64,
    pub range_km: f64,
    pub speed_mps: f64,
    pub home: Location,
    /// `None` until registered.
    pub status: Option<DroneStatus>,
    /// The delivery the drone carries, from its reservation until it is completed or
    /// released.
    pub delivery_id: Option<String>,
    /// The id of that reservation (the `attempt` of its `DroneAssigned`): a release frees
    /// the drone only if it names this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    pub position: Option<Location>,
    pub battery_pct: Option<f64>,
    pub position_at: Option<DateTime<Utc>>,
    /// Since when the drone has been on its charger (set when it docks).
    pub charging_since: Option<DateTime<Utc>>,
    /// When it was taken off the charger for a delivery (its assignment).
    pub charging_until: Option<DateTime<Utc>>,
}

impl Default for Drone {
    fn default() -> Self {
        Self {
            model: String::new(),
            payload_kg: 0.0,
            range_km: 0.0,
            speed_mps: 0.0,
            // Meaningless until registered; `exists()` says so.
            home: Location {
                latitude: 0.0,
                longitude: 0.0,
                altitude: 0.0,
            },
            status: None,
            delivery_id: None,
            attempt: None,
            position: None,
            battery_pct: None,
            position_at: None,
            charging_since: None,
            charging_until: None,
        }
    }
}

impl Drone {
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// Free to take a delivery.
    pub fn is_idle(&self) -> bool {
        self.status == Some(DroneStatus::Idle) && self.delivery_id.is_none()
    }

    /// Where the drone is now as far as we know: its last report, else its home base.
    pub fn current_location(&self) -> Location {
        self.position.unwrap_or(self.home)
    }

    pub fn register(&self, cmd: &RegisterDrone) -> Result<Vec<Event>, DomainError> {
        if self.exists() {
            return Err(DomainError::DroneAlreadyRegistered);
        }
        Ok(vec![Event::DroneRegistered(DroneRegistered {
            model: cmd.model().to_owned(),
            payload_kg: cmd.payload_kg(),
            range_km: cmd.range_km(),
            speed_mps: cmd.speed_mps(),
            home: cmd.home(),
        })])
    }

    /// Telemetry is an observation, accepted in any status and in any order (an older
    /// report than the last does not move the drone back), but not from further in the
    /// future than the clocks of drone and server can disagree (`max_skew`).
    pub fn report_position(
        &self,
        telemetry: &Telemetry,
        now: DateTime<Utc>,
        max_skew: TimeDelta,
    ) -> Result<Vec<Event>, DomainError> {
        if !self.exists() {
            return Err(DomainError::DroneNotFound);
        }
        if telemetry.at() > now + max_skew {
            return Err(DomainError::ReportFromTheFuture {
                at: telemetry.at(),
                skew_secs: max_skew.num_seconds(),
            });
        }
        Ok(vec![Event::DronePositionReported(DronePositionReported {
            position: telemetry.position(),
            battery_pct: telemetry.battery_pct(),
            at: telemetry.at(),
        })])
    }

    /// Takes the drone out of service; a delivery it carries is handled by the workflow
    /// (released before pickup, failed after).
    pub fn ground(&self, reason: Option<String>) -> Result<Vec<Event>, DomainError> {
        match self.status {
            None => Err(DomainError::DroneNotFound),
            Some(DroneStatus::Grounded) => Err(DomainError::DroneAlreadyGrounded),
            Some(_) => Ok(vec![Event::DroneGrounded(DroneGrounded { reason })]),
        }
    }

    /// Landed at its home base after a delivery: it charges until it is ready again.
    pub fn dock(&self) -> Result<Vec<Event>, DomainError> {
        let status = self.status.ok_or(DomainError::DroneNotFound)?;
        if status != DroneStatus::Returning {
            return Err(DomainError::DroneCannotDock { status });
        }
        Ok(vec![Event::DroneDocked(DroneDocked {})])
    }

    /// Back at base and ready for work: from returning, charging or grounded, and only
    /// once no delivery is attached (so a drone never silently drops a package).
    pub fn return_to_service(&self) -> Result<Vec<Event>, DomainError> {
        let status = self.status.ok_or(DomainError::DroneNotFound)?;
        if !matches!(
            status,
            DroneStatus::Returning | DroneStatus::Charging | DroneStatus::Grounded
        ) {
            return Err(DomainError::DroneCannotReturn { status });
        }
        if let Some(delivery_id) = &self.delivery_id {
            return Err(DomainError::DroneStillCarriesDelivery {
                delivery_id: delivery_id.clone(),
            });
        }
        Ok(vec![Event::DroneReturned(DroneReturned {})])
    }

    /// Step 1 of an assignment: the drone is reserved for `delivery_id` if it is idle and
    /// can carry the package over the route from its home base within its range. Where
    /// it is now and its battery are observations the command side does not fold; the
    /// workflow checks them before it asks (see [`crate::FlightModel::fitness`]). The
    /// reservation's id is `attempt`; reserving the same one again changes nothing.
    pub fn reserve(
        &self,
        drone_id: &str,
        delivery_id: &str,
        job: &Job,
        attempt: &str,
    ) -> Result<Vec<Event>, DomainError> {
        let Some(status) = self.status else {
            return Err(DomainError::UnknownDrone {
                drone_id: drone_id.to_owned(),
            });
        };
        if self.carries(delivery_id) && self.attempt.as_deref() == Some(attempt) {
            return Ok(Vec::new());
        }
        // No drone carries two deliveries at once.
        if let Some(carried) = &self.delivery_id {
            return Err(DomainError::DroneCarriesAnotherDelivery {
                drone_id: drone_id.to_owned(),
                delivery_id: carried.clone(),
            });
        }
        if status != DroneStatus::Idle {
            return Err(DomainError::DroneNotIdle {
                drone_id: drone_id.to_owned(),
                status,
            });
        }
        if job.weight_kg > self.payload_kg {
            return Err(DomainError::OverPayload {
                weight_kg: job.weight_kg,
                payload_kg: self.payload_kg,
            });
        }
        let route_km = job.route_km(&self.home, &self.home);
        if route_km > self.range_km {
            return Err(DomainError::OverRange {
                route_km,
                range_km: self.range_km,
            });
        }
        Ok(vec![Event::DroneAssigned(DroneAssigned {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.to_owned(),
            route_km,
            attempt: attempt.to_owned(),
        })])
    }

    /// Frees the drone of the reservation `attempt` for `delivery_id` (the compensation
    /// of a refused or abandoned assignment). Nothing if the drone no longer holds it: a
    /// late release cannot free a newer reservation.
    pub fn release(
        &self,
        drone_id: &str,
        delivery_id: &str,
        attempt: &str,
        reason: &str,
    ) -> Vec<Event> {
        if !self.carries(delivery_id) || self.attempt.as_deref() != Some(attempt) {
            return Vec::new();
        }
        vec![Event::DroneUnassigned(DroneUnassigned {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.to_owned(),
            reason: reason.to_owned(),
            attempt: attempt.to_owned(),
        })]
    }

    /// What the drone's stream needs to say what the delivery it carries says: the
    /// delivery's stream is the commit point of every change to both, and the drone
    /// follows it (picked up, completed, released). Computed from the two states alone,
    /// so the command side runs it right after a delivery command and again after a
    /// crash, with the same result.
    pub fn follow(&self, drone_id: &str, delivery_id: &str, delivery: &Delivery) -> FollowUp {
        let Some(attempt) = self
            .attempt
            .as_deref()
            .filter(|_| self.carries(delivery_id))
        else {
            return FollowUp::InLine;
        };
        let release = || {
            FollowUp::Append(self.release(
                drone_id,
                delivery_id,
                attempt,
                &delivery.release_reason(),
            ))
        };
        if delivery.holds(drone_id, attempt) {
            return match delivery.stage {
                Some(Stage::HeadedToDropoff) if self.status == Some(DroneStatus::Assigned) => {
                    FollowUp::Append(vec![Event::DeliveryPickedUp(DeliveryPickedUp {
                        delivery_id: delivery_id.to_owned(),
                        drone_id: drone_id.to_owned(),
                        at: delivery.picked_up_at.unwrap_or_default(),
                    })])
                }
                Some(Stage::Completed) => {
                    FollowUp::Append(vec![Event::DeliveryCompleted(DeliveryCompleted {
                        delivery_id: delivery_id.to_owned(),
                        drone_id: drone_id.to_owned(),
                        confirmation_type: delivery.confirmation_required,
                        location: delivery.completed_location.unwrap_or(delivery.dropoff),
                        at: delivery.completed_at.unwrap_or_default(),
                        // The proof stays on the delivery's stream.
                        blob: None,
                    })])
                }
                Some(Stage::Cancelled | Stage::Failed) => release(),
                _ => FollowUp::InLine,
            };
        }
        let final_stage = delivery.stage.is_none_or(Stage::is_terminal);
        if final_stage || delivery.released.iter().any(|a| a == attempt) {
            return release();
        }
        FollowUp::Undecided {
            attempt: attempt.to_owned(),
        }
    }

    fn carries(&self, delivery_id: &str) -> bool {
        self.delivery_id.as_deref() == Some(delivery_id)
    }

    /// Moves to `status` unless grounded: grounding is an operator hold that only
    /// `DroneReturned` lifts.
    fn move_to(&mut self, status: DroneStatus) {
        if self.status != Some(DroneStatus::Grounded) {
            self.status = Some(status);
        }
    }

    /// Folds one event of the drone's stream or its telemetry, which happened `at`.
    pub fn apply(&mut self, event: &Event, at: DateTime<Utc>) {
        match event {
            Event::DroneRegistered(e) => {
                self.model.clone_from(&e.model);
                self.payload_kg = e.payload_kg;
                self.range_km = e.range_km;
                self.speed_mps = e.speed_mps;
                self.home = e.home;
                self.status = Some(DroneStatus::Idle);
            }
            Event::DroneAssigned(e) => {
                self.status = Some(DroneStatus::Assigned);
                self.delivery_id = Some(e.delivery_id.clone());
                self.attempt = Some(e.attempt.clone());
                if self.charging_since.is_some() && self.charging_until.is_none() {
                    self.charging_until = Some(at);
                }
            }
            // Delivery events on the drone's stream only move it for the delivery it
            // carries, so a stale compensation cannot free a drone busy with another.
            Event::DeliveryPickedUp(e) if self.carries(&e.delivery_id) => {
                self.move_to(DroneStatus::EnRouteToDropoff);
            }
            Event::DeliveryCompleted(e) if self.carries(&e.delivery_id) => {
                self.delivery_id = None;
                self.attempt = None;
                self.move_to(DroneStatus::Returning);
            }
            // Releases written before v2 name no attempt and free any reservation for
            // the delivery.
            Event::DroneUnassigned(e)
                if self.carries(&e.delivery_id)
                    && (e.attempt.is_empty()
                        || self.attempt.as_deref() == Some(e.attempt.as_str())) =>
            {
                self.delivery_id = None;
                self.attempt = None;
                self.move_to(DroneStatus::Idle);
            }
            Event::DroneDocked(_) => {
                self.move_to(DroneStatus::Charging);
                self.charging_since = Some(at);
                self.charging_until = None;
            }
            Event::DroneGrounded(_) => self.status = Some(DroneStatus::Grounded),
            Event::DroneReturned(_) => self.status = Some(DroneStatus::Idle),
            // Reports may arrive out of order; the newest observation wins.
            Event::DronePositionReported(e) if self.position_at.is_none_or(|seen| e.at >= seen) => {
                self.position = Some(e.position);
                self.battery_pct = Some(e.battery_pct);
                self.position_at = Some(e.at);
            }
            _ => {}
        }
    }

    /// True when `report` is older than the drone's last one (it changes nothing).
    pub fn is_stale(&self, report: &DronePositionReported) -> bool {
        self.position_at.is_some_and(|seen| report.at < seen)
    }
}

/// What [`Drone::follow`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUp {
    /// The drone's stream already says what the delivery's says.
    InLine,
    /// Append these to the drone's stream.
    Append(Vec<Event>),
    /// The delivery has neither taken nor given up the drone's reservation `attempt`:
    /// its step 2 may still be on its way. Once the caller knows it is not, it abandons
    /// the attempt at the delivery ([`Delivery::abandon`]), and the release follows.
    Undecided { attempt: String },
}

impl Aggregate for Drone {
    fn apply(&mut self, event: &Event, at: DateTime<Utc>) {
        Drone::apply(self, event, at);
    }
}
