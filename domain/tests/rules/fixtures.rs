//! A small world around Seattle: one account, one drone based downtown, one delivery a
//! few kilometres north. Distances are a few km, far inside the default drone's range.

use chrono::{DateTime, TimeZone, Utc};
use domain::{Confirmation, DeliveryPlan, RegisterDrone, location};
use schemas::events::*;

pub const ACCOUNT: &str = "account-1";
pub const DRONE: &str = "drone-1";
pub const OTHER_DRONE: &str = "drone-2";
pub const DELIVERY: &str = "delivery-1";
pub const OTHER_DELIVERY: &str = "delivery-2";
pub const PACKAGE: &str = "package-1";
/// The id of a drone's reservation (the `attempt` of its `DroneAssigned`).
pub const ATTEMPT: &str = "attempt-1";
pub const OTHER_ATTEMPT: &str = "attempt-2";

pub const PAYLOAD_KG: f64 = 5.0;
pub const RANGE_KM: f64 = 40.0;
pub const SPEED_MPS: f64 = 15.0;
pub const WEIGHT_KG: f64 = 1.2;

/// 2026-03-01 at `hour:minute` UTC.
pub fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, hour, minute, 0)
        .single()
        .expect("a valid test time")
}

pub fn point(latitude: f64, longitude: f64) -> Location {
    location(latitude, longitude, 0.0).expect("a valid test location")
}

pub fn home() -> Location {
    point(47.6062, -122.3321)
}

pub fn pickup() -> Location {
    point(47.6205, -122.3493)
}

pub fn dropoff() -> Location {
    point(47.6606, -122.3123)
}

/// Portland: about 235 km from Seattle, beyond every test drone's range.
pub fn portland() -> Location {
    point(45.5152, -122.6784)
}

pub fn account_registered() -> Event {
    Event::AccountRegistered(AccountRegistered {
        name: "Contoso".into(),
        email: "ops@contoso.example".into(),
        api_key_hash: "hash-1".into(),
    })
}

pub fn account_suspended() -> Event {
    Event::AccountSuspended(AccountSuspended {
        reason: Some("unpaid invoice".into()),
    })
}

pub fn account_reactivated() -> Event {
    Event::AccountReactivated(AccountReactivated {})
}

pub fn drone_spec(payload_kg: f64, range_km: f64) -> RegisterDrone {
    RegisterDrone::new("DJI FlyCart 30", payload_kg, range_km, SPEED_MPS, home())
        .expect("a valid test drone")
}

pub fn drone_registered_with(payload_kg: f64, range_km: f64) -> Event {
    drone_registered_at(home(), payload_kg, range_km)
}

/// A drone based at `home` instead of downtown.
pub fn drone_registered_at(home: Location, payload_kg: f64, range_km: f64) -> Event {
    Event::DroneRegistered(DroneRegistered {
        model: "DJI FlyCart 30".into(),
        payload_kg,
        range_km,
        speed_mps: SPEED_MPS,
        home,
    })
}

pub fn drone_registered() -> Event {
    drone_registered_with(PAYLOAD_KG, RANGE_KM)
}

pub fn position_reported(position: Location, battery_pct: f64, when: DateTime<Utc>) -> Event {
    Event::DronePositionReported(DronePositionReported {
        position,
        battery_pct,
        at: when,
    })
}

pub fn drone_grounded() -> Event {
    Event::DroneGrounded(DroneGrounded {
        reason: Some("rotor fault".into()),
    })
}

pub fn drone_docked() -> Event {
    Event::DroneDocked(DroneDocked {})
}

pub fn drone_returned() -> Event {
    Event::DroneReturned(DroneReturned {})
}

pub fn plan() -> DeliveryPlan {
    DeliveryPlan::new(pickup(), dropoff(), Some(at(10, 0)), Some(at(12, 0)))
        .expect("a valid test plan")
}

pub fn delivery_created_with(weight_kg: f64, confirmation_required: ConfirmationType) -> Event {
    Event::DeliveryCreated(DeliveryCreated {
        owner_id: ACCOUNT.into(),
        pickup: pickup(),
        dropoff: dropoff(),
        pickup_time: Some(at(10, 0)),
        deadline: Some(at(12, 0)),
        expedited: false,
        confirmation_required,
        package_id: PACKAGE.into(),
        package_weight_kg: weight_kg,
    })
}

pub fn delivery_created() -> Event {
    delivery_created_with(WEIGHT_KG, ConfirmationType::None)
}

/// The reservation `attempt` of `drone_id` for `delivery_id`: on the drone's stream it
/// reserves the drone, on the delivery's the delivery takes it.
pub fn reservation(delivery_id: &str, drone_id: &str, attempt: &str) -> DroneAssigned {
    DroneAssigned {
        delivery_id: delivery_id.into(),
        drone_id: drone_id.into(),
        route_km: 12.0,
        attempt: attempt.into(),
    }
}

pub fn reserved(delivery_id: &str, drone_id: &str, attempt: &str) -> Event {
    Event::DroneAssigned(reservation(delivery_id, drone_id, attempt))
}

pub fn drone_assigned_to(delivery_id: &str, drone_id: &str) -> Event {
    reserved(delivery_id, drone_id, ATTEMPT)
}

pub fn drone_assigned() -> Event {
    drone_assigned_to(DELIVERY, DRONE)
}

pub fn picked_up_by(delivery_id: &str, drone_id: &str) -> Event {
    Event::DeliveryPickedUp(DeliveryPickedUp {
        delivery_id: delivery_id.into(),
        drone_id: drone_id.into(),
        at: at(10, 5),
    })
}

pub fn picked_up() -> Event {
    picked_up_by(DELIVERY, DRONE)
}

pub fn confirmation(confirmation_type: ConfirmationType) -> Confirmation {
    Confirmation::new(
        confirmation_type,
        dropoff(),
        at(10, 15),
        Some("c2lnbmVk".into()),
    )
    .expect("a valid test confirmation")
}

pub fn completed_with(confirmation_type: ConfirmationType) -> Event {
    Event::DeliveryCompleted(DeliveryCompleted {
        delivery_id: DELIVERY.into(),
        drone_id: DRONE.into(),
        confirmation_type,
        location: dropoff(),
        at: at(10, 15),
        blob: Some("c2lnbmVk".into()),
    })
}

pub fn completed() -> Event {
    completed_with(ConfirmationType::None)
}

pub fn cancelled() -> Event {
    Event::DeliveryCancelled(DeliveryCancelled { reason: None })
}

pub fn failed() -> Event {
    Event::DeliveryFailed(DeliveryFailed {
        reason: "drone lost".into(),
    })
}

pub fn rescheduled() -> Event {
    Event::DeliveryRescheduled(DeliveryRescheduled {
        pickup: pickup(),
        dropoff: dropoff(),
        pickup_time: Some(at(11, 0)),
        deadline: Some(at(13, 0)),
    })
}

/// The drone let go of its reservation `attempt` (empty: a release written before
/// reservations had ids).
pub fn released(delivery_id: &str, drone_id: &str, attempt: &str, reason: &str) -> Event {
    Event::DroneUnassigned(DroneUnassigned {
        delivery_id: delivery_id.into(),
        drone_id: drone_id.into(),
        reason: reason.into(),
        attempt: attempt.into(),
    })
}

/// The release of the reservation `ATTEMPT`.
pub fn drone_unassigned(delivery_id: &str, drone_id: &str, reason: &str) -> Event {
    released(delivery_id, drone_id, ATTEMPT, reason)
}

/// `DELIVERY` gave up `DRONE`'s reservation `attempt` before taking it.
pub fn abandoned(attempt: &str) -> Event {
    Event::AssignmentAbandoned(AssignmentAbandoned {
        delivery_id: DELIVERY.into(),
        drone_id: DRONE.into(),
        attempt: attempt.into(),
        reason: "the drone's reservation was never committed".into(),
    })
}

/// The history of the delivery at each stage, with `DRONE` assigned (its reservation
/// `ATTEMPT` taken) where a drone is.
pub fn delivery_in(stage: domain::Stage) -> Vec<Event> {
    use domain::Stage::*;
    let mut history = vec![delivery_created()];
    match stage {
        Created => {}
        Rescheduled => history.push(rescheduled()),
        HeadedToPickup => history.push(drone_assigned()),
        HeadedToDropoff => history.extend([drone_assigned(), picked_up()]),
        Completed => history.extend([drone_assigned(), picked_up(), completed()]),
        Cancelled => history.push(cancelled()),
        Failed => history.extend([drone_assigned(), failed()]),
    }
    history
}

/// `l` with the drone in the air above it.
pub fn aloft(l: Location) -> Location {
    Location {
        altitude: 60.0,
        ..l
    }
}
