use chrono::{DateTime, Utc};
use schemas::events::{
    ConfirmationType, DeliveryCancelled, DeliveryCompleted, DeliveryCreated, DeliveryFailed,
    DeliveryPickedUp, DeliveryRescheduled, DroneAssigned, DroneUnassigned, Event, Location,
    NotificationRequested,
};
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::aggregate::Aggregate;
use crate::drone::{Drone, DroneStatus};
use crate::error::DomainError;
use crate::location::distance_km;
use crate::stage::Stage;
use crate::values::{Confirmation, DeliveryPlan, Reschedule};

/// Events one delivery command writes: to the delivery's own stream and to the stream of
/// the drone `drone_id` (empty when no drone is involved).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub delivery: Vec<Event>,
    pub drone: Vec<Event>,
    pub drone_id: Option<String>,
}

impl Changes {
    fn delivery_only(event: Event) -> Self {
        Self {
            delivery: vec![event],
            ..Self::default()
        }
    }

    /// The same fact on both streams (assignment, pickup, completion), so each aggregate
    /// can be rebuilt from its own stream alone.
    fn both(event: Event, drone_id: &str) -> Self {
        Self {
            delivery: vec![event.clone()],
            drone: vec![event],
            drone_id: Some(drone_id.to_owned()),
        }
    }

    /// A delivery event, plus the release of the drone it had, if any.
    fn releasing(event: Event, delivery_id: &str, drone_id: Option<&str>, reason: &str) -> Self {
        let mut changes = Self::delivery_only(event);
        if let Some(drone_id) = drone_id {
            changes.drone.push(Event::DroneUnassigned(DroneUnassigned {
                delivery_id: delivery_id.to_owned(),
                drone_id: drone_id.to_owned(),
                reason: reason.to_owned(),
            }));
            changes.drone_id = Some(drone_id.to_owned());
        }
        changes
    }
}

/// A delivery from pickup to drop-off. `Default` is a delivery not created yet. The read
/// models store this state as it is (folded with the same [`Delivery::apply`]), so the
/// write and read sides cannot disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `None` until created.
    pub stage: Option<Stage>,
    pub owner_id: String,
    pub pickup: Location,
    pub dropoff: Location,
    pub pickup_time: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub expedited: bool,
    pub confirmation_required: ConfirmationType,
    pub package_id: String,
    pub package_weight_kg: f64,
    /// The drone last assigned. Cleared when the delivery goes back to waiting for a
    /// drone (reschedule, unassignment); kept in final stages as the record.
    pub drone_id: Option<String>,
    pub route_km: Option<f64>,
    pub notify_email: Option<String>,
    pub notify_sms: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// When the current drone was assigned (cleared with it).
    pub assigned_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Where the package was handed over.
    pub completed_location: Option<Location>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
}

impl Default for Delivery {
    fn default() -> Self {
        // Meaningless until created; `exists()` says so.
        let nowhere = Location {
            latitude: 0.0,
            longitude: 0.0,
            altitude: 0.0,
        };
        Self {
            stage: None,
            owner_id: String::new(),
            pickup: nowhere,
            dropoff: nowhere,
            pickup_time: None,
            deadline: None,
            expedited: false,
            confirmation_required: ConfirmationType::None,
            package_id: String::new(),
            package_weight_kg: 0.0,
            drone_id: None,
            route_km: None,
            notify_email: None,
            notify_sms: None,
            created_at: None,
            assigned_at: None,
            picked_up_at: None,
            completed_at: None,
            completed_location: None,
            cancelled_at: None,
            failed_at: None,
            reason: None,
        }
    }
}

impl Delivery {
    pub fn exists(&self) -> bool {
        self.stage.is_some()
    }

    fn current_stage(&self) -> Result<Stage, DomainError> {
        self.stage.ok_or(DomainError::DeliveryNotFound)
    }

    /// Only active accounts schedule deliveries.
    #[expect(
        clippy::too_many_arguments,
        reason = "one per field of the schedule request"
    )]
    pub fn schedule(
        &self,
        owner_id: &str,
        owner: &Account,
        plan: &DeliveryPlan,
        expedited: bool,
        confirmation_required: ConfirmationType,
        package_id: &str,
        package_weight_kg: f64,
    ) -> Result<Vec<Event>, DomainError> {
        if self.exists() {
            return Err(DomainError::DeliveryAlreadyExists);
        }
        if !owner.exists() {
            return Err(DomainError::UnknownOwner);
        }
        if !owner.is_active() {
            return Err(DomainError::AccountNotActive);
        }
        Ok(vec![Event::DeliveryCreated(DeliveryCreated {
            owner_id: owner_id.to_owned(),
            pickup: plan.pickup(),
            dropoff: plan.dropoff(),
            pickup_time: plan.pickup_time(),
            deadline: plan.deadline(),
            expedited,
            confirmation_required,
            package_id: package_id.to_owned(),
            package_weight_kg,
        })])
    }

    /// Changes the plan before pickup. A drone already assigned is released (its route
    /// was computed for the old plan) and the delivery waits for dispatch again.
    pub fn reschedule(
        &self,
        delivery_id: &str,
        changes: &Reschedule,
    ) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        if !stage.is_before_pickup() {
            return Err(DomainError::StageForbids {
                action: "reschedule",
                stage,
            });
        }
        let pickup_time = changes.pickup_time().or(self.pickup_time);
        let deadline = changes.deadline().or(self.deadline);
        if let (Some(pickup_time), Some(deadline)) = (pickup_time, deadline)
            && deadline <= pickup_time
        {
            return Err(DomainError::DeadlineNotAfterPickupTime);
        }
        let event = Event::DeliveryRescheduled(DeliveryRescheduled {
            pickup: changes.pickup().unwrap_or(self.pickup),
            dropoff: changes.dropoff().unwrap_or(self.dropoff),
            pickup_time,
            deadline,
        });
        Ok(Changes::releasing(
            event,
            delivery_id,
            self.drone_id.as_deref(),
            "rescheduled",
        ))
    }

    /// Gives the delivery to an idle drone that can carry the package and fly its route
    /// from home (home → pickup → drop-off → home) within its range. Where the drone is
    /// now and its battery are observations the command side does not fold; the workflow
    /// checks them before it asks (see [`crate::FlightModel::fitness`]).
    pub fn assign_drone(
        &self,
        delivery_id: &str,
        drone_id: &str,
        drone: &Drone,
    ) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        // No delivery is ever assigned two drones.
        if let Some(assigned) = &self.drone_id
            && !stage.is_terminal()
        {
            return Err(DomainError::DeliveryAlreadyHasDrone {
                drone_id: assigned.clone(),
            });
        }
        if !stage.awaits_drone() {
            return Err(DomainError::StageForbids {
                action: "assign a drone to",
                stage,
            });
        }
        let Some(status) = drone.status else {
            return Err(DomainError::UnknownDrone {
                drone_id: drone_id.to_owned(),
            });
        };
        // No drone carries two deliveries at once.
        if let Some(carried) = &drone.delivery_id {
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
        if self.package_weight_kg > drone.payload_kg {
            return Err(DomainError::OverPayload {
                weight_kg: self.package_weight_kg,
                payload_kg: drone.payload_kg,
            });
        }
        let route_km = self.route_from(&drone.home, &drone.home);
        if route_km > drone.range_km {
            return Err(DomainError::OverRange {
                route_km,
                range_km: drone.range_km,
            });
        }
        let event = Event::DroneAssigned(DroneAssigned {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.to_owned(),
            route_km,
        });
        Ok(Changes::both(event, drone_id))
    }

    /// Great-circle km from `start` via pickup and drop-off to `home`.
    pub fn route_from(&self, start: &Location, home: &Location) -> f64 {
        distance_km(start, &self.pickup)
            + distance_km(&self.pickup, &self.dropoff)
            + distance_km(&self.dropoff, home)
    }

    /// Takes the drone off a delivery that is headed to pickup (e.g. the drone was
    /// grounded or went silent), so it can be dispatched again. Written to both streams.
    pub fn unassign_drone(&self, delivery_id: &str, reason: &str) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        match (&self.drone_id, stage) {
            (Some(drone_id), Stage::HeadedToPickup) => {
                let event = Event::DroneUnassigned(DroneUnassigned {
                    delivery_id: delivery_id.to_owned(),
                    drone_id: drone_id.clone(),
                    reason: reason.to_owned(),
                });
                Ok(Changes::both(event, drone_id))
            }
            _ => Err(DomainError::StageForbids {
                action: "unassign the drone of",
                stage,
            }),
        }
    }

    /// The drone has the package: only a delivery headed to pickup can be picked up.
    pub fn pick_up(&self, delivery_id: &str, now: DateTime<Utc>) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        match (&self.drone_id, stage) {
            (Some(drone_id), Stage::HeadedToPickup) => {
                let event = Event::DeliveryPickedUp(DeliveryPickedUp {
                    delivery_id: delivery_id.to_owned(),
                    drone_id: drone_id.clone(),
                    at: now,
                });
                Ok(Changes::both(event, drone_id))
            }
            _ => Err(DomainError::StageForbids {
                action: "pick up",
                stage,
            }),
        }
    }

    /// Handed over at the drop-off, with the proof the delivery asks for.
    pub fn complete(
        &self,
        delivery_id: &str,
        confirmation: &Confirmation,
    ) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        let (Some(drone_id), Stage::HeadedToDropoff) = (&self.drone_id, stage) else {
            return Err(DomainError::StageForbids {
                action: "complete",
                stage,
            });
        };
        let given = confirmation.confirmation_type();
        if self.confirmation_required != ConfirmationType::None
            && given != self.confirmation_required
        {
            return Err(DomainError::ConfirmationMismatch {
                required: self.confirmation_required,
                given,
            });
        }
        let event = Event::DeliveryCompleted(DeliveryCompleted {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.clone(),
            confirmation_type: given,
            location: confirmation.location(),
            at: confirmation.at(),
            blob: confirmation.blob().map(str::to_owned),
        });
        Ok(Changes::both(event, drone_id))
    }

    /// Cancels before pickup only (after it, the package is in the air); the drone, if
    /// any, is released.
    pub fn cancel(
        &self,
        delivery_id: &str,
        reason: Option<String>,
    ) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        if !stage.is_before_pickup() {
            return Err(DomainError::StageForbids {
                action: "cancel",
                stage,
            });
        }
        Ok(Changes::releasing(
            Event::DeliveryCancelled(DeliveryCancelled { reason }),
            delivery_id,
            self.drone_id.as_deref(),
            "cancelled",
        ))
    }

    /// Gives up on a delivery that is not finished (compensation); the drone, if any,
    /// is released.
    pub fn fail(&self, delivery_id: &str, reason: String) -> Result<Changes, DomainError> {
        let stage = self.current_stage()?;
        if stage.is_terminal() {
            return Err(DomainError::StageForbids {
                action: "fail",
                stage,
            });
        }
        let event = Event::DeliveryFailed(DeliveryFailed {
            reason: reason.clone(),
        });
        Ok(Changes::releasing(
            event,
            delivery_id,
            self.drone_id.as_deref(),
            &reason,
        ))
    }

    /// Who to tell about progress. Blank values count as absent.
    pub fn request_notifications(
        &self,
        email: Option<String>,
        sms: Option<String>,
    ) -> Result<Vec<Event>, DomainError> {
        let stage = self.current_stage()?;
        if stage.is_terminal() {
            return Err(DomainError::StageForbids {
                action: "request notifications for",
                stage,
            });
        }
        let present =
            |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (email, sms) = (present(email), present(sms));
        if email.is_none() && sms.is_none() {
            return Err(DomainError::NoNotificationChannel);
        }
        Ok(vec![Event::NotificationRequested(NotificationRequested {
            email,
            sms,
        })])
    }

    fn await_drone(&mut self, stage: Stage) {
        self.stage = Some(stage);
        self.drone_id = None;
        self.route_km = None;
        self.assigned_at = None;
    }

    /// Folds one event of the delivery's stream, which happened `at`.
    pub fn apply(&mut self, event: &Event, at: DateTime<Utc>) {
        match event {
            Event::DeliveryCreated(e) => {
                *self = Self {
                    stage: Some(Stage::Created),
                    owner_id: e.owner_id.clone(),
                    pickup: e.pickup,
                    dropoff: e.dropoff,
                    pickup_time: e.pickup_time,
                    deadline: e.deadline,
                    expedited: e.expedited,
                    confirmation_required: e.confirmation_required,
                    package_id: e.package_id.clone(),
                    package_weight_kg: e.package_weight_kg,
                    created_at: Some(at),
                    ..Self::default()
                };
            }
            Event::DeliveryRescheduled(e) => {
                self.pickup = e.pickup;
                self.dropoff = e.dropoff;
                self.pickup_time = e.pickup_time;
                self.deadline = e.deadline;
                self.await_drone(Stage::Rescheduled);
            }
            Event::DroneAssigned(e) => {
                self.stage = Some(Stage::HeadedToPickup);
                self.drone_id = Some(e.drone_id.clone());
                self.route_km = Some(e.route_km);
                self.assigned_at = Some(at);
            }
            Event::DroneUnassigned(e)
                if self.stage == Some(Stage::HeadedToPickup)
                    && self.drone_id.as_deref() == Some(e.drone_id.as_str()) =>
            {
                self.await_drone(Stage::Created);
            }
            Event::DeliveryPickedUp(e) => {
                self.stage = Some(Stage::HeadedToDropoff);
                self.picked_up_at = Some(e.at);
            }
            Event::DeliveryCompleted(e) => {
                self.stage = Some(Stage::Completed);
                self.completed_at = Some(e.at);
                self.completed_location = Some(e.location);
            }
            Event::DeliveryCancelled(e) => {
                self.stage = Some(Stage::Cancelled);
                self.cancelled_at = Some(at);
                self.reason.clone_from(&e.reason);
            }
            Event::DeliveryFailed(e) => {
                self.stage = Some(Stage::Failed);
                self.failed_at = Some(at);
                self.reason = Some(e.reason.clone());
            }
            Event::NotificationRequested(e) => {
                if e.email.is_some() {
                    self.notify_email.clone_from(&e.email);
                }
                if e.sms.is_some() {
                    self.notify_sms.clone_from(&e.sms);
                }
            }
            _ => {}
        }
    }
}

impl Aggregate for Delivery {
    fn apply(&mut self, event: &Event, at: DateTime<Utc>) {
        Delivery::apply(self, event, at);
    }
}
