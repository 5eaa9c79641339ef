//! Drones: registration, telemetry, grounding and return to service, and how the
//! delivery events on a drone's stream move it through its statuses.

use chrono::TimeDelta;
use domain::{DomainError, Drone, DroneStatus, Telemetry};
use schemas::events::{DroneGrounded, Event};

use crate::fixtures::*;
use crate::framework::*;

fn drone_with(history: &[Event]) -> Drone {
    state(history)
}

#[test]
fn registering_a_drone_records_its_specification() {
    given_nothing()
        .when(|drone: &Drone| drone.register(&drone_spec(PAYLOAD_KG, RANGE_KM)))
        .then_expect(vec![drone_registered()]);
}

#[test]
fn a_drone_is_registered_only_once() {
    given([drone_registered()])
        .when(|drone: &Drone| drone.register(&drone_spec(PAYLOAD_KG, RANGE_KM)))
        .then_error(DomainError::DroneAlreadyRegistered);
}

#[test]
fn a_registered_drone_is_idle_at_home() {
    let drone = drone_with(&[drone_registered()]);
    assert_eq!(drone.status, Some(DroneStatus::Idle));
    assert!(drone.is_idle());
    assert_eq!(drone.current_location(), home());
    assert_eq!(
        (drone.payload_kg, drone.range_km, drone.speed_mps),
        (PAYLOAD_KG, RANGE_KM, SPEED_MPS)
    );
    assert!(!Drone::default().exists());
}

#[test]
fn a_registered_drone_reports_its_position() {
    let report = Telemetry::new(pickup(), 80.0, at(10, 1)).expect("valid");
    given([drone_registered()])
        .when(|drone: &Drone| drone.report_position(&report, at(10, 1), TimeDelta::seconds(30)))
        .then_expect(vec![position_reported(pickup(), 80.0, at(10, 1))]);
}

#[test]
fn an_unknown_drone_cannot_report_its_position() {
    let report = Telemetry::new(pickup(), 80.0, at(10, 1)).expect("valid");
    given_nothing()
        .when(|drone: &Drone| drone.report_position(&report, at(10, 1), TimeDelta::seconds(30)))
        .then_error(DomainError::DroneNotFound);
}

#[test]
fn a_grounded_drone_still_reports_its_position() {
    let report = Telemetry::new(pickup(), 10.0, at(10, 1)).expect("valid");
    given([drone_registered(), drone_grounded()])
        .when(|drone: &Drone| drone.report_position(&report, at(10, 1), TimeDelta::seconds(30)))
        .then_accepted();
}

#[test]
fn a_report_from_beyond_the_clock_skew_is_refused() {
    let report = Telemetry::new(pickup(), 80.0, at(10, 2)).expect("valid");
    given([drone_registered()])
        .when(|drone: &Drone| drone.report_position(&report, at(10, 1), TimeDelta::seconds(30)))
        .then_error(DomainError::ReportFromTheFuture {
            at: at(10, 2),
            skew_secs: 30,
        });
}

#[test]
fn a_report_within_the_clock_skew_is_accepted() {
    let report = Telemetry::new(pickup(), 80.0, at(10, 1) + TimeDelta::seconds(30)).expect("valid");
    given([drone_registered()])
        .when(|drone: &Drone| drone.report_position(&report, at(10, 1), TimeDelta::seconds(30)))
        .then_accepted();
}

#[test]
fn an_older_report_does_not_move_the_drone_back() {
    let drone = drone_with(&[
        drone_registered(),
        position_reported(pickup(), 70.0, at(10, 5)),
        position_reported(home(), 90.0, at(10, 1)),
    ]);
    assert_eq!(drone.position, Some(pickup()));
    assert_eq!(drone.battery_pct, Some(70.0));
    let Event::DronePositionReported(stale) = position_reported(home(), 90.0, at(10, 1)) else {
        unreachable!()
    };
    assert!(drone.is_stale(&stale));
}

#[test]
fn a_returning_drone_docks_and_charges() {
    let history = [
        drone_registered(),
        drone_assigned(),
        picked_up(),
        completed(),
    ];
    given(history.clone())
        .when(|drone: &Drone| drone.dock())
        .then_expect(vec![drone_docked()]);
    let mut drone = drone_with(&history);
    drone.apply(&drone_docked(), at(11, 0));
    assert_eq!(drone.status, Some(DroneStatus::Charging));
    assert_eq!(drone.charging_since, Some(at(11, 0)));
    // Charged, it returns to service.
    given(vec![
        drone_registered(),
        drone_assigned(),
        picked_up(),
        completed(),
        drone_docked(),
    ])
    .when(|drone: &Drone| drone.return_to_service())
    .then_expect(vec![drone_returned()]);
}

#[test]
fn only_a_returning_drone_docks() {
    given([drone_registered()])
        .when(|drone: &Drone| drone.dock())
        .then_error(DomainError::DroneCannotDock {
            status: DroneStatus::Idle,
        });
}

#[test]
fn a_position_report_updates_position_and_battery_but_not_status() {
    let drone = drone_with(&[
        drone_registered(),
        drone_assigned(),
        position_reported(pickup(), 75.0, at(10, 2)),
    ]);
    assert_eq!(drone.status, Some(DroneStatus::Assigned));
    assert_eq!(drone.position, Some(pickup()));
    assert_eq!(drone.current_location(), pickup());
    assert_eq!(drone.battery_pct, Some(75.0));
    assert_eq!(drone.position_at, Some(at(10, 2)));
}

#[test]
fn an_older_position_report_does_not_overwrite_a_newer_one() {
    let drone = drone_with(&[
        drone_registered(),
        position_reported(dropoff(), 60.0, at(10, 5)),
        position_reported(pickup(), 70.0, at(10, 1)),
    ]);
    assert_eq!(drone.position, Some(dropoff()));
    assert_eq!(drone.battery_pct, Some(60.0));
}

#[test]
fn a_drone_in_service_can_be_grounded() {
    for history in [
        vec![drone_registered()],
        vec![drone_registered(), drone_assigned()],
        vec![drone_registered(), drone_assigned(), picked_up()],
    ] {
        given(history)
            .when(|drone: &Drone| drone.ground(Some("rotor fault".into())))
            .then_expect(vec![drone_grounded()]);
    }
}

#[test]
fn a_grounded_drone_cannot_be_grounded_again() {
    given([drone_registered(), drone_grounded()])
        .when(|drone: &Drone| drone.ground(None))
        .then_error(DomainError::DroneAlreadyGrounded);
}

#[test]
fn an_unknown_drone_cannot_be_grounded_or_returned() {
    given_nothing()
        .when(|drone: &Drone| drone.ground(None))
        .then_error(DomainError::DroneNotFound);
    given_nothing()
        .when(|drone: &Drone| drone.return_to_service())
        .then_error(DomainError::DroneNotFound);
}

#[test]
fn grounding_keeps_the_delivery_the_drone_carries() {
    let drone = drone_with(&[drone_registered(), drone_assigned(), drone_grounded()]);
    assert_eq!(drone.status, Some(DroneStatus::Grounded));
    assert_eq!(drone.delivery_id.as_deref(), Some(DELIVERY));
}

#[test]
fn a_grounded_drone_without_a_delivery_returns_to_service() {
    given([drone_registered(), drone_grounded()])
        .when(|drone: &Drone| drone.return_to_service())
        .then_expect(vec![drone_returned()]);
}

#[test]
fn a_returning_drone_returns_to_service_and_is_idle() {
    let history = [
        drone_registered(),
        drone_assigned(),
        picked_up(),
        completed(),
    ];
    given(history.clone())
        .when(|drone: &Drone| drone.return_to_service())
        .then_expect(vec![drone_returned()]);
    let mut drone = drone_with(&history);
    drone.apply(&drone_returned(), at(11, 0));
    assert!(drone.is_idle());
}

#[test]
fn a_charging_drone_returns_to_service() {
    let charging = Drone {
        status: Some(DroneStatus::Charging),
        ..drone_with(&[drone_registered()])
    };
    given_state(charging)
        .when(|drone: &Drone| drone.return_to_service())
        .then_expect(vec![drone_returned()]);
}

#[test]
fn an_idle_drone_cannot_return_to_service() {
    given([drone_registered()])
        .when(|drone: &Drone| drone.return_to_service())
        .then_error(DomainError::DroneCannotReturn {
            status: DroneStatus::Idle,
        });
}

#[test]
fn a_drone_on_a_delivery_cannot_return_to_service() {
    given([drone_registered(), drone_assigned()])
        .when(|drone: &Drone| drone.return_to_service())
        .then_error(DomainError::DroneCannotReturn {
            status: DroneStatus::Assigned,
        });
    given([drone_registered(), drone_assigned(), picked_up()])
        .when(|drone: &Drone| drone.return_to_service())
        .then_error(DomainError::DroneCannotReturn {
            status: DroneStatus::EnRouteToDropoff,
        });
}

#[test]
fn a_grounded_drone_still_carrying_a_delivery_cannot_return_to_service() {
    given([drone_registered(), drone_assigned(), drone_grounded()])
        .when(|drone: &Drone| drone.return_to_service())
        .then_error(DomainError::DroneStillCarriesDelivery {
            delivery_id: DELIVERY.into(),
        });
}

#[test]
fn a_drone_moves_from_assigned_to_en_route_to_returning() {
    let mut drone = drone_with(&[drone_registered()]);
    let steps = [
        (drone_assigned(), DroneStatus::Assigned, Some(DELIVERY)),
        (picked_up(), DroneStatus::EnRouteToDropoff, Some(DELIVERY)),
        (completed(), DroneStatus::Returning, None),
        (drone_returned(), DroneStatus::Idle, None),
    ];
    for (event, status, delivery) in steps {
        drone.apply(&event, at(11, 0));
        assert_eq!(drone.status, Some(status), "after {}", event.type_name());
        assert_eq!(drone.delivery_id.as_deref(), delivery);
    }
}

#[test]
fn an_unassigned_drone_is_idle_and_free() {
    let drone = drone_with(&[
        drone_registered(),
        drone_assigned(),
        drone_unassigned(DELIVERY, DRONE, "cancelled"),
    ]);
    assert!(drone.is_idle());
    assert_eq!(drone.delivery_id, None);
}

#[test]
fn an_unassigned_grounded_drone_stays_grounded() {
    let drone = drone_with(&[
        drone_registered(),
        drone_assigned(),
        drone_grounded(),
        drone_unassigned(DELIVERY, DRONE, "drone grounded"),
    ]);
    assert_eq!(drone.status, Some(DroneStatus::Grounded));
    assert_eq!(drone.delivery_id, None);
}

#[test]
fn a_release_of_another_delivery_does_not_free_a_busy_drone() {
    let drone = drone_with(&[
        drone_registered(),
        drone_assigned_to(OTHER_DELIVERY, DRONE),
        drone_unassigned(DELIVERY, DRONE, "cancelled"),
    ]);
    assert_eq!(drone.status, Some(DroneStatus::Assigned));
    assert_eq!(drone.delivery_id.as_deref(), Some(OTHER_DELIVERY));
}

#[test]
fn a_grounded_drone_returned_to_service_is_idle() {
    let drone = drone_with(&[
        drone_registered(),
        Event::DroneGrounded(DroneGrounded { reason: None }),
        drone_returned(),
    ]);
    assert!(drone.is_idle());
}
