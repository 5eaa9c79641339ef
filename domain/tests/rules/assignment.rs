//! Assigning a drone, step by step (SPEC §3 and ADR 6): the drone is reserved on its own
//! stream, then the delivery takes the same reservation on its stream, the commit point.
//! A refused commit is compensated by releasing the drone; a commit that never arrived is
//! abandoned at the delivery first, so a late one cannot race the release. Each step is
//! a decision on one stream, and every step is safe to run again.

use domain::{Delivery, DomainError, Drone, DroneStatus, ErrorKind, FollowUp, Job};
use schemas::events::{ConfirmationType, DeliveryCompleted, Event};

use crate::fixtures::*;
use crate::framework::*;

/// The job of a scheduled delivery of `weight_kg`.
fn job_of(weight_kg: f64) -> Job {
    state::<Delivery>(&[delivery_created_with(weight_kg, ConfirmationType::None)])
        .job()
        .expect("a scheduled delivery awaits a drone")
}

fn job() -> Job {
    job_of(WEIGHT_KG)
}

/// Step 1: `DRONE` is reserved for `DELIVERY` as `attempt`.
fn reserve(
    job: Job,
    attempt: &'static str,
) -> impl FnOnce(&Drone) -> Result<Vec<Event>, DomainError> {
    move |drone| drone.reserve(DRONE, DELIVERY, &job, attempt)
}

/// `DRONE`'s stream after its reservation `ATTEMPT` for `DELIVERY`.
fn reserved_drone() -> Vec<Event> {
    vec![drone_registered(), drone_assigned()]
}

// --- step 1: the drone's side of the rules ---------------------------------------------

#[test]
fn an_idle_drone_that_fits_is_reserved_with_its_route_from_home() {
    let events = given([drone_registered()])
        .when(reserve(job(), ATTEMPT))
        .then_accepted();
    let [Event::DroneAssigned(reservation)] = events.as_slice() else {
        panic!("expected one reservation, got {events:?}");
    };
    assert_eq!(reservation.attempt, ATTEMPT);
    assert_eq!(reservation.route_km, job().route_km(&home(), &home()));
    let drone = state::<Drone>(&[&[drone_registered()], &events[..]].concat());
    assert_eq!(drone.status, Some(DroneStatus::Assigned));
    assert_eq!(drone.delivery_id.as_deref(), Some(DELIVERY));
}

#[test]
fn a_drone_is_never_assigned_a_package_over_its_payload() {
    given([drone_registered()])
        .when(reserve(job_of(5.01), ATTEMPT))
        .then_error(DomainError::OverPayload {
            weight_kg: 5.01,
            payload_kg: PAYLOAD_KG,
        });
}

#[test]
fn a_package_of_exactly_the_payload_is_assigned() {
    given([drone_registered()])
        .when(reserve(job_of(PAYLOAD_KG), ATTEMPT))
        .then_accepted();
}

#[test]
fn a_drone_is_never_assigned_a_route_over_its_range() {
    let error = given([drone_registered_with(PAYLOAD_KG, 10.0)])
        .when(reserve(job(), ATTEMPT))
        .then_error_kind(ErrorKind::Rule);
    assert!(
        matches!(error, DomainError::OverRange { range_km, route_km } if range_km == 10.0 && route_km > 10.0),
        "{error:?}"
    );
}

#[test]
fn the_command_side_checks_the_route_from_home_and_leaves_position_and_battery_to_dispatch() {
    // Wherever its reports put the drone and whatever its battery, the reservation looks
    // at its registration alone; the workflow checks the observations before it asks.
    let events = given([drone_registered()])
        .when(reserve(job(), ATTEMPT))
        .then_accepted();
    assert!(matches!(&events[..], [Event::DroneAssigned(_)]));
}

#[test]
fn a_drone_that_is_not_idle_is_not_assigned() {
    given([drone_registered(), drone_grounded()])
        .when(reserve(job(), ATTEMPT))
        .then_error(DomainError::DroneNotIdle {
            drone_id: DRONE.into(),
            status: DroneStatus::Grounded,
        });
    let returning = [
        drone_registered(),
        drone_assigned_to(OTHER_DELIVERY, DRONE),
        picked_up_by(OTHER_DELIVERY, DRONE),
        Event::DeliveryCompleted(DeliveryCompleted {
            delivery_id: OTHER_DELIVERY.into(),
            drone_id: DRONE.into(),
            confirmation_type: ConfirmationType::None,
            location: dropoff(),
            at: at(8, 0),
            blob: None,
        }),
    ];
    given(returning)
        .when(reserve(job(), ATTEMPT))
        .then_error(DomainError::DroneNotIdle {
            drone_id: DRONE.into(),
            status: DroneStatus::Returning,
        });
}

#[test]
fn an_unknown_drone_is_not_assigned() {
    given_nothing()
        .when(reserve(job(), ATTEMPT))
        .then_error(DomainError::UnknownDrone {
            drone_id: DRONE.into(),
        });
}

#[test]
fn no_drone_carries_two_deliveries_at_once() {
    given([drone_registered(), drone_assigned_to(OTHER_DELIVERY, DRONE)])
        .when(reserve(job(), OTHER_ATTEMPT))
        .then_error(DomainError::DroneCarriesAnotherDelivery {
            drone_id: DRONE.into(),
            delivery_id: OTHER_DELIVERY.into(),
        });
    // Not even for the same delivery under a second reservation.
    given(reserved_drone())
        .when(reserve(job(), OTHER_ATTEMPT))
        .then_error_kind(ErrorKind::Conflict);
}

#[test]
fn no_drone_carrying_a_package_is_assigned_another_delivery() {
    given([
        drone_registered(),
        drone_assigned_to(OTHER_DELIVERY, DRONE),
        picked_up_by(OTHER_DELIVERY, DRONE),
    ])
    .when(reserve(job(), OTHER_ATTEMPT))
    .then_error_kind(ErrorKind::Conflict);
}

#[test]
fn reserving_the_same_attempt_again_changes_nothing() {
    given(reserved_drone())
        .when(reserve(job(), ATTEMPT))
        .then_expect(vec![]);
}

// --- step 2: the delivery takes the reservation, or gives it up -------------------------

#[test]
fn a_delivery_takes_a_reservation_once() {
    given([delivery_created(), drone_assigned()])
        .when(|delivery: &Delivery| delivery.assign_drone(&reservation(DELIVERY, DRONE, ATTEMPT)))
        .then_expect(vec![]);
}

#[test]
fn a_delivery_that_gave_up_a_reservation_refuses_it_later() {
    given([delivery_created(), abandoned(ATTEMPT)])
        .when(|delivery: &Delivery| delivery.assign_drone(&reservation(DELIVERY, DRONE, ATTEMPT)))
        .then_error(DomainError::ReservationGivenUp {
            drone_id: DRONE.into(),
        });
    // A new reservation of the same drone is taken.
    given([delivery_created(), abandoned(ATTEMPT)])
        .when(|delivery: &Delivery| {
            delivery.assign_drone(&reservation(DELIVERY, DRONE, OTHER_ATTEMPT))
        })
        .then_accepted();
}

#[test]
fn abandoning_changes_nothing_once_the_reservation_is_taken_or_given_up() {
    let taken: Delivery = state(&[delivery_created(), drone_assigned()]);
    assert_eq!(taken.abandon(DELIVERY, DRONE, ATTEMPT), vec![]);
    let given_up: Delivery = state(&[delivery_created(), abandoned(ATTEMPT)]);
    assert_eq!(given_up.abandon(DELIVERY, DRONE, ATTEMPT), vec![]);
    let waiting: Delivery = state(&[delivery_created()]);
    assert_eq!(
        waiting.abandon(DELIVERY, DRONE, ATTEMPT),
        vec![abandoned(ATTEMPT)]
    );
    assert_eq!(
        Delivery::default().abandon(DELIVERY, DRONE, ATTEMPT),
        vec![]
    );
}

// --- the drone follows the commit point ------------------------------------------------

#[test]
fn a_reservation_the_delivery_neither_took_nor_gave_up_is_undecided() {
    let drone: Drone = state(&reserved_drone());
    let delivery: Delivery = state(&[delivery_created()]);
    assert_eq!(
        drone.follow(DRONE, DELIVERY, &delivery),
        FollowUp::Undecided {
            attempt: ATTEMPT.into()
        }
    );
}

#[test]
fn once_the_delivery_gives_a_reservation_up_the_drone_is_released_and_idle() {
    let mut drone: Drone = state(&reserved_drone());
    let delivery: Delivery = state(&[delivery_created(), abandoned(ATTEMPT)]);
    let FollowUp::Append(events) = drone.follow(DRONE, DELIVERY, &delivery) else {
        panic!("expected the drone's release");
    };
    let [Event::DroneUnassigned(release)] = events.as_slice() else {
        panic!("expected one release, got {events:?}");
    };
    assert_eq!(
        (release.attempt.as_str(), release.delivery_id.as_str()),
        (ATTEMPT, DELIVERY)
    );
    events.iter().for_each(|e| drone.apply(e, at(9, 0)));
    assert_eq!(drone.status, Some(DroneStatus::Idle));
    assert_eq!(drone.delivery_id, None);
    assert_eq!(drone.follow(DRONE, DELIVERY, &delivery), FollowUp::InLine);
}

#[test]
fn a_refused_reservation_is_compensated_by_releasing_the_drone() {
    let mut drone: Drone = state(&reserved_drone());
    let events = drone.release(DRONE, DELIVERY, ATTEMPT, "the delivery has another drone");
    assert_eq!(
        events,
        vec![released(
            DELIVERY,
            DRONE,
            ATTEMPT,
            "the delivery has another drone"
        )]
    );
    events.iter().for_each(|e| drone.apply(e, at(9, 0)));
    assert_eq!(drone.status, Some(DroneStatus::Idle));
    // Releasing again changes nothing.
    assert_eq!(drone.release(DRONE, DELIVERY, ATTEMPT, "again"), vec![]);
}

#[test]
fn a_late_release_cannot_free_a_newer_reservation() {
    // The drone was released from attempt 1 and reserved again as attempt 2.
    let history = [
        drone_registered(),
        drone_assigned(),
        released(DELIVERY, DRONE, ATTEMPT, "refused"),
        reserved(DELIVERY, DRONE, OTHER_ATTEMPT),
    ];
    let mut drone: Drone = state(&history);
    assert_eq!(drone.release(DRONE, DELIVERY, ATTEMPT, "late"), vec![]);
    // Even a stale release event on the stream leaves attempt 2 in place.
    drone.apply(&released(DELIVERY, DRONE, ATTEMPT, "late"), at(9, 0));
    assert_eq!(drone.status, Some(DroneStatus::Assigned));
    assert_eq!(drone.attempt.as_deref(), Some(OTHER_ATTEMPT));
}
