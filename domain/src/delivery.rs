use chrono::{DateTime, Utc};
use schemas::events::{
    AssignmentAbandoned, ConfirmationType, DeliveryCancelled, DeliveryCompleted, DeliveryCreated,
    DeliveryFailed, DeliveryPickedUp, DeliveryRescheduled, DroneAssigned, DroneUnassigned, Event,
    Location, NotificationRequested,
};
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::location::distance_km;
use crate::stage::Stage;
use crate::values::{Confirmation, DeliveryPlan, Reschedule};

/// A delivery as a drone is asked to take it: what its reservation checks (payload and
/// range) and the route it is billed for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub pickup: Location,
    pub dropoff: Location,
    pub weight_kg: f64,
}

impl Job {
    /// Great-circle km from `start` via pickup and drop-off to `home`.
    pub fn route_km(&self, start: &Location, home: &Location) -> f64 {
        distance_km(start, &self.pickup)
            + distance_km(&self.pickup, &self.dropoff)
            + distance_km(&self.dropoff, home)
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
    /// The reservation of that drone the delivery took (see [`Drone::reserve`]).
    ///
    /// [`Drone::reserve`]: crate::Drone::reserve
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// Reservations the delivery let go of or gave up before taking them: it never takes
    /// them (again), so their drones can be released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    pub route_km: Option<f64>,
    pub notify_email: Option<String>,
    pub notify_sms: Option<String>,
    pub notify_webhook: Option<String>,
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
            attempt: None,
            released: Vec::new(),
            route_km: None,
            notify_email: None,
            notify_sms: None,
            notify_webhook: None,
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
        // A deadline is a promise about the pickup: one at or before the pickup time is void.
        if let (Some(pickup_time), Some(deadline)) = (plan.pickup_time(), plan.deadline())
            && deadline <= pickup_time
        {
            return Err(DomainError::DeadlineNotAfterPickupTime);
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

    /// Changes the plan before pickup. A drone already assigned is let go of (its route
    /// was computed for the old plan; its release follows on the drone's stream) and the
    /// delivery waits for dispatch again.
    pub fn reschedule(&self, changes: &Reschedule) -> Result<Vec<Event>, DomainError> {
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
        Ok(vec![Event::DeliveryRescheduled(DeliveryRescheduled {
            pickup: changes.pickup().unwrap_or(self.pickup),
            dropoff: changes.dropoff().unwrap_or(self.dropoff),
            pickup_time,
            deadline,
        })])
    }

    /// Step 1 of an assignment, before any drone is reserved: the delivery can take a
    /// drone now (it has none, and its stage awaits one). Gives what the drone's
    /// reservation checks.
    pub fn job(&self) -> Result<Job, DomainError> {
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
        Ok(Job {
            pickup: self.pickup,
            dropoff: self.dropoff,
            weight_kg: self.package_weight_kg,
        })
    }

    /// Step 2 of an assignment, its commit point: the delivery takes the drone reserved
    /// for it (`reservation` is the drone's `DroneAssigned`). Refused when the delivery
    /// has a drone already, no longer awaits one, or gave this reservation up; taking the
    /// same reservation again changes nothing.
    pub fn assign_drone(&self, reservation: &DroneAssigned) -> Result<Vec<Event>, DomainError> {
        if self.holds(&reservation.drone_id, &reservation.attempt) {
            return Ok(Vec::new());
        }
        if self.released.contains(&reservation.attempt) {
            return Err(DomainError::ReservationGivenUp {
                drone_id: reservation.drone_id.clone(),
            });
        }
        self.job()?;
        Ok(vec![Event::DroneAssigned(reservation.clone())])
    }

    /// Whether the delivery took the reservation `attempt` of `drone_id` (and still has
    /// the drone, or kept it as the record of a final stage).
    pub fn holds(&self, drone_id: &str, attempt: &str) -> bool {
        self.drone_id.as_deref() == Some(drone_id) && self.attempt.as_deref() == Some(attempt)
    }

    /// Gives up a reservation whose step 2 stalled (it never reached the delivery's
    /// partition, or its outcome was unknown): from here on the delivery refuses it, so
    /// its drone can be released without racing a late commit. Nothing when the delivery
    /// took it after all, or let go of it already.
    pub fn abandon(&self, delivery_id: &str, drone_id: &str, attempt: &str) -> Vec<Event> {
        if !self.exists()
            || self.holds(drone_id, attempt)
            || self.released.iter().any(|a| a == attempt)
        {
            return Vec::new();
        }
        vec![Event::AssignmentAbandoned(AssignmentAbandoned {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.to_owned(),
            attempt: attempt.to_owned(),
            reason: "the drone's reservation was never committed".to_owned(),
        })]
    }

    /// Takes the drone off a delivery that is headed to pickup (e.g. the drone was
    /// grounded or went silent), so it can be dispatched again; the drone's release
    /// follows on its own stream.
    pub fn unassign_drone(
        &self,
        delivery_id: &str,
        reason: &str,
    ) -> Result<Vec<Event>, DomainError> {
        let stage = self.current_stage()?;
        match (&self.drone_id, stage) {
            (Some(drone_id), Stage::HeadedToPickup) => {
                Ok(vec![Event::DroneUnassigned(DroneUnassigned {
                    delivery_id: delivery_id.to_owned(),
                    drone_id: drone_id.clone(),
                    reason: reason.to_owned(),
                    attempt: self.attempt.clone().unwrap_or_default(),
                })])
            }
            _ => Err(DomainError::StageForbids {
                action: "unassign the drone of",
                stage,
            }),
        }
    }

    /// The drone has the package: only a delivery headed to pickup can be picked up.
    pub fn pick_up(
        &self,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let stage = self.current_stage()?;
        match (&self.drone_id, stage) {
            (Some(drone_id), Stage::HeadedToPickup) => {
                Ok(vec![Event::DeliveryPickedUp(DeliveryPickedUp {
                    delivery_id: delivery_id.to_owned(),
                    drone_id: drone_id.clone(),
                    at: now,
                })])
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
    ) -> Result<Vec<Event>, DomainError> {
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
        Ok(vec![Event::DeliveryCompleted(DeliveryCompleted {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.clone(),
            confirmation_type: given,
            location: confirmation.location(),
            at: confirmation.at(),
            blob: confirmation.blob().map(str::to_owned),
        })])
    }

    /// Cancels before pickup only (after it, the package is in the air); the drone, if
    /// any, is released on its own stream.
    pub fn cancel(&self, reason: Option<String>) -> Result<Vec<Event>, DomainError> {
        let stage = self.current_stage()?;
        if !stage.is_before_pickup() {
            return Err(DomainError::StageForbids {
                action: "cancel",
                stage,
            });
        }
        Ok(vec![Event::DeliveryCancelled(DeliveryCancelled { reason })])
    }

    /// Gives up on a delivery that is not finished (compensation); the drone, if any,
    /// is released on its own stream.
    pub fn fail(&self, reason: String) -> Result<Vec<Event>, DomainError> {
        let stage = self.current_stage()?;
        if stage.is_terminal() {
            return Err(DomainError::StageForbids {
                action: "fail",
                stage,
            });
        }
        Ok(vec![Event::DeliveryFailed(DeliveryFailed { reason })])
    }

    /// Why the delivery let go of a drone it no longer holds, for the drone's release.
    pub fn release_reason(&self) -> String {
        match self.stage {
            Some(Stage::Cancelled) => "cancelled".to_owned(),
            Some(Stage::Failed) => self.reason.clone().unwrap_or_else(|| "failed".to_owned()),
            Some(Stage::Rescheduled) => "rescheduled".to_owned(),
            _ => "released by the delivery".to_owned(),
        }
    }

    /// Who to tell about progress: an email address, an SMS number, a webhook URL
    /// (checked at the edge). Blank values count as absent.
    pub fn request_notifications(
        &self,
        email: Option<String>,
        sms: Option<String>,
        webhook: Option<String>,
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
        let (email, sms, webhook) = (present(email), present(sms), present(webhook));
        if email.is_none() && sms.is_none() && webhook.is_none() {
            return Err(DomainError::NoNotificationChannel);
        }
        Ok(vec![Event::NotificationRequested(NotificationRequested {
            email,
            sms,
            webhook,
        })])
    }

    /// The reservation held is let go of for good.
    fn let_go(&mut self) {
        if let Some(attempt) = self.attempt.take()
            && !self.released.contains(&attempt)
        {
            self.released.push(attempt);
        }
    }

    fn await_drone(&mut self, stage: Stage) {
        self.stage = Some(stage);
        self.drone_id = None;
        self.attempt = None;
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
                self.let_go();
                self.pickup = e.pickup;
                self.dropoff = e.dropoff;
                self.pickup_time = e.pickup_time;
                self.deadline = e.deadline;
                self.await_drone(Stage::Rescheduled);
            }
            Event::DroneAssigned(e) => {
                self.stage = Some(Stage::HeadedToPickup);
                self.drone_id = Some(e.drone_id.clone());
                self.attempt = Some(e.attempt.clone());
                self.route_km = Some(e.route_km);
                self.assigned_at = Some(at);
            }
            Event::DroneUnassigned(e)
                if self.stage == Some(Stage::HeadedToPickup)
                    && self.drone_id.as_deref() == Some(e.drone_id.as_str()) =>
            {
                self.let_go();
                self.await_drone(Stage::Created);
            }
            Event::AssignmentAbandoned(e) if !self.released.contains(&e.attempt) => {
                self.released.push(e.attempt.clone());
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
                if e.webhook.is_some() {
                    self.notify_webhook.clone_from(&e.webhook);
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
