//! The flight model: when a drone is expected at the pickup and at the drop-off, how its
//! battery drains and charges, and whether it can fly a delivery. Expected times are
//! computed from the model's own parameters (take-off, landing, handling, flight time).

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Aggregate, Delivery, Drone, DroneStatus, Etas, FlightModel, LONGEST_ESTIMATE, Location, Stage,
    Trip, Unfit, distance_km,
};
use schemas::events::{DeliveryPickedUp, Event};

use crate::fixtures::*;
use crate::framework::*;

/// A history with the time each event happened (telemetry carries its own).
fn replay<A: Aggregate>(history: &[(Event, DateTime<Utc>)]) -> A {
    let mut state = A::default();
    for (event, when) in history {
        state.apply(event, *when);
    }
    state
}

/// Assigned a little after a whole second, as a command's clock would stamp it.
fn assigned_at() -> DateTime<Utc> {
    at(9, 0) + TimeDelta::milliseconds(400)
}

fn picked_up_at() -> DateTime<Utc> {
    at(9, 5)
}

fn halfway_to_pickup() -> Location {
    point(47.61335, -122.3407)
}

fn halfway_to_dropoff() -> Location {
    point(47.64055, -122.3308)
}

fn headed_to_pickup() -> Delivery {
    replay(&[
        (delivery_created(), at(8, 30)),
        (drone_assigned(), assigned_at()),
    ])
}

fn picked_up_event() -> Event {
    Event::DeliveryPickedUp(DeliveryPickedUp {
        delivery_id: DELIVERY.into(),
        drone_id: DRONE.into(),
        at: picked_up_at(),
    })
}

fn headed_to_dropoff() -> Delivery {
    replay(&[
        (delivery_created(), at(8, 30)),
        (drone_assigned(), assigned_at()),
        (picked_up_event(), picked_up_at()),
    ])
}

/// The drone of the delivery, with its reports (made before or after the assignment,
/// each folded in the order given).
fn assigned_drone(reports_before: &[Event], reports_after: &[Event]) -> Drone {
    let mut history = vec![(drone_registered(), at(8, 0))];
    history.extend(reports_before.iter().map(|e| (e.clone(), at(8, 0))));
    history.push((drone_assigned(), assigned_at()));
    history.extend(reports_after.iter().map(|e| (e.clone(), at(8, 0))));
    replay(&history)
}

/// A drone back home after a delivery, on its charger since `docked`.
fn docked_drone(reports: &[Event], docked: DateTime<Utc>) -> Drone {
    let mut history = vec![
        (drone_registered(), at(8, 0)),
        (drone_assigned(), at(8, 0)),
        (picked_up(), at(8, 0)),
        (completed(), at(8, 0)),
    ];
    history.extend(reports.iter().map(|e| (e.clone(), at(8, 0))));
    history.push((drone_docked(), docked));
    replay(&history)
}

fn idle_drone(reports: &[Event]) -> Drone {
    let mut history = vec![(drone_registered(), at(8, 0))];
    history.extend(reports.iter().map(|e| (e.clone(), at(8, 0))));
    replay(&history)
}

fn waiting_delivery() -> Delivery {
    state(&[delivery_created()])
}

/// Flying `from` → `to` at the test drone's speed.
fn flight(model: &FlightModel, from: &Location, to: &Location) -> TimeDelta {
    model.flight_time(distance_km(from, to), SPEED_MPS)
}

/// From the pickup on the ground to the drop-off on the ground.
fn pickup_to_dropoff(model: &FlightModel) -> TimeDelta {
    model.handling + model.takeoff + flight(model, &pickup(), &dropoff()) + model.landing
}

/// home → pickup → drop-off → home, the trip of a drone at home.
fn trip_from_home() -> Trip {
    Trip {
        to_pickup_km: distance_km(&home(), &pickup()),
        to_dropoff_km: distance_km(&pickup(), &dropoff()),
        home_km: distance_km(&dropoff(), &home()),
    }
}

// --- flight time -----------------------------------------------------------------------

#[test]
fn the_flight_time_is_the_distance_over_the_speed() {
    let model = FlightModel::default();
    assert_eq!(model.flight_time(1.5, 15.0), TimeDelta::seconds(100));
    assert_eq!(
        model.flight_time(1.0, 3.0),
        TimeDelta::milliseconds(333_333)
    );
}

#[test]
fn a_drone_that_does_not_move_has_no_flight_time() {
    let model = FlightModel::default();
    assert_eq!(model.flight_time(1.0, 0.0), TimeDelta::zero());
    assert_eq!(model.flight_time(1.0, -5.0), TimeDelta::zero());
}

#[test]
fn a_crawling_drone_s_estimates_are_bounded_and_its_etas_do_not_overflow() {
    // Found by schemathesis: a drone registered at 5e-324 m/s made the ETA sum overflow
    // chrono's range, and the status query panicked.
    let model = FlightModel::default();
    assert_eq!(model.flight_time(1.0, 5e-324), LONGEST_ESTIMATE);
    let mut drone = assigned_drone(&[], &[]);
    drone.speed_mps = 5e-324;
    let etas = model.etas(&headed_to_pickup(), &drone, assigned_at());
    let pickup = etas.pickup.expect("an ETA, however far");
    assert!(pickup > assigned_at() + TimeDelta::days(3000));
    assert!(etas.delivery.expect("an ETA") >= pickup);
    let trip = trip_from_home();
    assert!(model.lead_time(&drone, &trip, assigned_at()) >= LONGEST_ESTIMATE);
}

// --- ETAs headed to pickup ---------------------------------------------------------------

#[test]
fn right_after_assignment_a_drone_that_never_reported_takes_off_from_home() {
    let model = FlightModel::default();
    let drone = assigned_drone(&[], &[]);

    let etas = model.etas(&headed_to_pickup(), &drone, assigned_at());

    let pickup_eta =
        assigned_at() + model.takeoff + flight(&model, &home(), &pickup()) + model.landing;
    assert_eq!(
        etas,
        Etas {
            pickup: Some(pickup_eta),
            delivery: Some(pickup_eta + pickup_to_dropoff(&model)),
        }
    );
    // The defaults, spelled out: 30 s up, 2.047 km at 15 m/s, 30 s down.
    assert_eq!(
        pickup_eta - assigned_at(),
        TimeDelta::milliseconds(30_000 + 136_475 + 30_000)
    );
}

#[test]
fn right_after_assignment_a_drone_takes_off_from_where_it_last_reported() {
    let model = FlightModel::default();
    // Last seen before the assignment, even in the air: it is not on its way yet.
    let before = position_reported(aloft(dropoff()), 90.0, at(8, 55));
    let drone = assigned_drone(&[before], &[]);

    let etas = model.etas(&headed_to_pickup(), &drone, assigned_at());

    let pickup_eta =
        assigned_at() + model.takeoff + flight(&model, &dropoff(), &pickup()) + model.landing;
    assert_eq!(
        etas,
        Etas {
            pickup: Some(pickup_eta),
            delivery: Some(pickup_eta + pickup_to_dropoff(&model)),
        }
    );
}

#[test]
fn an_airborne_report_since_the_assignment_gives_the_eta_from_there_without_take_off() {
    let model = FlightModel::default();
    let reported = at(9, 2);
    let drone = assigned_drone(
        &[],
        &[position_reported(
            aloft(halfway_to_pickup()),
            95.0,
            reported,
        )],
    );

    let etas = model.etas(&headed_to_pickup(), &drone, reported);

    let pickup_eta = reported + flight(&model, &halfway_to_pickup(), &pickup()) + model.landing;
    assert_eq!(
        etas,
        Etas {
            pickup: Some(pickup_eta),
            delivery: Some(pickup_eta + pickup_to_dropoff(&model)),
        }
    );
}

#[test]
fn a_report_stamped_in_the_whole_second_of_the_assignment_counts_as_since_the_assignment() {
    let model = FlightModel::default();
    // Assigned at 09:00:00.400, reported at 09:00:00 (the report's clock drops the ms).
    let reported = at(9, 0);
    let drone = assigned_drone(
        &[],
        &[position_reported(
            aloft(halfway_to_pickup()),
            95.0,
            reported,
        )],
    );

    let etas = model.etas(&headed_to_pickup(), &drone, assigned_at());

    let pickup_eta = reported + flight(&model, &halfway_to_pickup(), &pickup()) + model.landing;
    assert_eq!(etas.pickup, Some(pickup_eta));
}

#[test]
fn a_report_from_the_second_before_the_assignment_does_not_count_as_on_the_way() {
    let model = FlightModel::default();
    let reported = at(9, 0) - TimeDelta::milliseconds(100);
    let drone = assigned_drone(
        &[position_reported(
            aloft(halfway_to_pickup()),
            95.0,
            reported,
        )],
        &[],
    );

    let etas = model.etas(&headed_to_pickup(), &drone, assigned_at());

    let pickup_eta = assigned_at()
        + model.takeoff
        + flight(&model, &halfway_to_pickup(), &pickup())
        + model.landing;
    assert_eq!(etas.pickup, Some(pickup_eta));
}

#[test]
fn an_eta_is_never_before_now() {
    let model = FlightModel::default();
    let drone = assigned_drone(&[], &[]);
    let late = at(10, 0); // long after the drone should have been at the pickup

    let etas = model.etas(&headed_to_pickup(), &drone, late);

    assert_eq!(
        etas,
        Etas {
            pickup: Some(late),
            delivery: Some(late + pickup_to_dropoff(&model)),
        }
    );
}

#[test]
fn charging_time_is_added_to_the_pickup_eta_when_the_battery_would_fall_under_the_reserve() {
    let model = FlightModel::default();
    let low = position_reported(home(), 30.0, at(8, 50));
    let drone = assigned_drone(&[low], &[]);

    let etas = model.etas(&headed_to_pickup(), &drone, assigned_at());

    // Needed: the trip at 100 / range % per km, plus the reserve; the charger adds the rest.
    let needed_pct = trip_from_home().total_km() * 100.0 / RANGE_KM + model.reserve_pct;
    let charging = TimeDelta::milliseconds(
        ((needed_pct - 30.0) / model.charge_pct_per_minute * 60_000.0).round() as i64,
    );
    assert!(charging > TimeDelta::minutes(11), "{charging}");
    let pickup_eta = assigned_at()
        + charging
        + model.takeoff
        + flight(&model, &home(), &pickup())
        + model.landing;
    assert_eq!(
        etas,
        Etas {
            pickup: Some(pickup_eta),
            delivery: Some(pickup_eta + pickup_to_dropoff(&model)),
        }
    );
}

// --- ETAs headed to drop-off -------------------------------------------------------------

#[test]
fn headed_to_dropoff_the_delivery_eta_is_from_a_report_since_pickup_and_there_is_no_pickup_eta() {
    let model = FlightModel::default();
    let reported = picked_up_at() + TimeDelta::minutes(2);
    let drone = assigned_drone(
        &[],
        &[position_reported(
            aloft(halfway_to_dropoff()),
            80.0,
            reported,
        )],
    );

    let etas = model.etas(&headed_to_dropoff(), &drone, reported);

    assert_eq!(
        etas,
        Etas {
            pickup: None,
            delivery: Some(
                reported + flight(&model, &halfway_to_dropoff(), &dropoff()) + model.landing
            ),
        }
    );
}

#[test]
fn headed_to_dropoff_without_a_report_since_pickup_the_drone_loads_and_flies_from_the_pickup() {
    let model = FlightModel::default();
    // In the air, but before the pickup: the leg had not begun.
    let before = position_reported(aloft(halfway_to_pickup()), 90.0, at(9, 3));
    let drone = assigned_drone(&[], &[before]);

    let etas = model.etas(&headed_to_dropoff(), &drone, picked_up_at());

    assert_eq!(
        etas,
        Etas {
            pickup: None,
            delivery: Some(picked_up_at() + pickup_to_dropoff(&model)),
        }
    );
}

#[test]
fn a_delivery_waiting_for_a_drone_or_finished_has_no_etas() {
    let model = FlightModel::default();
    let drone = assigned_drone(&[], &[]);
    for stage in [
        Stage::Created,
        Stage::Rescheduled,
        Stage::Completed,
        Stage::Cancelled,
        Stage::Failed,
    ] {
        let delivery: Delivery = state(&delivery_in(stage));
        assert_eq!(
            model.etas(&delivery, &drone, assigned_at()),
            Etas::default(),
            "{stage}"
        );
    }
}

// --- battery -----------------------------------------------------------------------------

#[test]
fn a_drone_that_never_reported_counts_as_fully_charged() {
    let model = FlightModel::default();
    assert_eq!(model.battery_pct(&idle_drone(&[]), at(9, 0)), 100.0);
    assert_eq!(
        model.battery_pct(&docked_drone(&[], at(9, 0)), at(9, 10)),
        100.0
    );
}

#[test]
fn off_the_charger_the_battery_is_the_last_report() {
    let model = FlightModel::default();
    let drone = idle_drone(&[position_reported(home(), 40.0, at(9, 0))]);
    assert_eq!(model.battery_pct(&drone, at(12, 0)), 40.0);
}

#[test]
fn on_the_charger_the_battery_gains_charge_pct_per_minute_from_docking() {
    let model = FlightModel::default();
    let drone = docked_drone(&[position_reported(home(), 40.0, at(9, 50))], at(10, 0));
    assert_eq!(model.battery_pct(&drone, at(10, 0)), 40.0);
    assert_eq!(
        model.battery_pct(&drone, at(10, 10)),
        40.0 + 10.0 * model.charge_pct_per_minute
    );
}

#[test]
fn charging_counts_from_the_last_report_when_it_came_after_docking() {
    let model = FlightModel::default();
    let mut drone = docked_drone(&[], at(10, 0));
    drone.apply(&position_reported(home(), 50.0, at(10, 5)), at(10, 5));
    assert_eq!(
        model.battery_pct(&drone, at(10, 10)),
        50.0 + 5.0 * model.charge_pct_per_minute
    );
}

#[test]
fn the_charge_rate_is_a_parameter() {
    let model = FlightModel {
        charge_pct_per_minute: 5.0,
        ..FlightModel::default()
    };
    let drone = docked_drone(&[position_reported(home(), 40.0, at(9, 50))], at(10, 0));
    assert_eq!(model.battery_pct(&drone, at(10, 4)), 60.0);
}

#[test]
fn charging_stops_at_a_full_battery() {
    let model = FlightModel::default();
    let drone = docked_drone(&[position_reported(home(), 40.0, at(9, 50))], at(10, 0));
    assert_eq!(model.battery_pct(&drone, at(11, 0)), 100.0);
}

#[test]
fn a_charging_drone_is_charged_at_ready_pct_and_charged_at_says_when() {
    let model = FlightModel::default();
    let drone = docked_drone(&[position_reported(home(), 50.0, at(9, 50))], at(10, 0));
    // 30 points missing to 80% at 2% a minute: 15 minutes.
    let ready = at(10, 15);

    assert_eq!(model.charged_at(&drone, at(10, 0)), ready);
    assert_eq!(model.charged_at(&drone, at(10, 5)), ready);
    assert!(!model.is_charged(&drone, ready - TimeDelta::milliseconds(1)));
    assert!(model.is_charged(&drone, ready));
    assert_eq!(model.battery_pct(&drone, ready), model.ready_pct);
    // Once charged, it is charged now.
    assert_eq!(model.charged_at(&drone, at(10, 20)), at(10, 20));
}

#[test]
fn charged_at_and_is_charged_agree_for_any_start_and_rate() {
    for rate in [0.7, 1.0, 2.0, 3.0, 7.3] {
        let model = FlightModel {
            charge_pct_per_minute: rate,
            ..FlightModel::default()
        };
        for start in [0.0, 13.0, 33.3, 50.0, 79.9] {
            let drone = docked_drone(&[position_reported(home(), start, at(9, 50))], at(10, 0));
            let ready = model.charged_at(&drone, at(10, 0));
            assert!(model.is_charged(&drone, ready), "{rate} {start}");
            // Never early; at most the rounding of one millisecond late.
            assert!(
                !model.is_charged(&drone, ready - TimeDelta::milliseconds(2)),
                "{rate} {start}"
            );
        }
    }
}

#[test]
fn only_a_charging_drone_is_charged() {
    let model = FlightModel::default();
    let drone = idle_drone(&[]);
    assert_eq!(drone.status, Some(DroneStatus::Idle));
    assert!(!model.is_charged(&drone, at(9, 0)));
}

// --- fitness -----------------------------------------------------------------------------

#[test]
fn a_package_over_the_payload_is_refused() {
    let model = FlightModel::default();
    let delivery: Delivery = state(&[delivery_created_with(
        PAYLOAD_KG + 1.0,
        schemas::events::ConfirmationType::None,
    )]);
    assert_eq!(
        model.fitness(&idle_drone(&[]), &delivery, at(9, 0)),
        Err(Unfit::Payload {
            weight_kg: PAYLOAD_KG + 1.0,
            payload_kg: PAYLOAD_KG,
        })
    );
}

#[test]
fn a_trip_beyond_the_range_from_where_the_drone_is_is_refused() {
    let model = FlightModel::default();
    // Based in Seattle but last seen in Portland: the trip starts there.
    let drone = idle_drone(&[position_reported(portland(), 100.0, at(8, 30))]);

    let fitness = model.fitness(&drone, &waiting_delivery(), at(9, 0));

    let trip_km = distance_km(&portland(), &pickup())
        + distance_km(&pickup(), &dropoff())
        + distance_km(&dropoff(), &home());
    assert_eq!(
        fitness,
        Err(Unfit::Range {
            trip_km,
            range_km: RANGE_KM,
        })
    );
}

#[test]
fn a_drone_without_the_battery_for_the_trip_and_the_reserve_is_refused() {
    let model = FlightModel::default();
    let drone = idle_drone(&[position_reported(home(), 50.0, at(8, 30))]);

    let fitness = model.fitness(&drone, &waiting_delivery(), at(9, 0));

    // ~13.5 km on a 40 km range: ~34% needed; 50 - 34 is under the 20% reserve.
    let trip_km = trip_from_home().total_km();
    assert!((trip_km - 13.53).abs() < 0.01, "{trip_km}");
    assert_eq!(
        fitness,
        Err(Unfit::Battery {
            trip_km,
            needed_pct: trip_km * (100.0 / RANGE_KM),
            battery_pct: 50.0,
            reserve_pct: model.reserve_pct,
        })
    );
}

#[test]
fn a_drone_with_the_battery_for_the_trip_and_the_reserve_is_fit_for_the_trip_from_where_it_is() {
    let model = FlightModel::default();
    let drone = idle_drone(&[position_reported(home(), 60.0, at(8, 30))]);
    assert_eq!(
        model.fitness(&drone, &waiting_delivery(), at(9, 0)),
        Ok(trip_from_home())
    );
}

#[test]
fn the_reserve_is_a_parameter() {
    let model = FlightModel {
        reserve_pct: 10.0,
        ..FlightModel::default()
    };
    let drone = idle_drone(&[position_reported(home(), 50.0, at(8, 30))]);
    assert_eq!(
        model.fitness(&drone, &waiting_delivery(), at(9, 0)),
        Ok(trip_from_home())
    );
}

#[test]
fn a_set_drain_replaces_the_drain_derived_from_the_range() {
    let trip_km = trip_from_home().total_km();
    let drone = idle_drone(&[]);
    // 5%/km: 67.6% for the trip, 32.4% left at home.
    let model = FlightModel {
        drain_pct_per_km: Some(5.0),
        ..FlightModel::default()
    };
    assert_eq!(model.drain_pct_per_km(&drone), 5.0);
    assert_eq!(
        model.fitness(&drone, &waiting_delivery(), at(9, 0)),
        Ok(trip_from_home())
    );
    // 6%/km: 81.2% for the trip, 18.8% left at home, under the reserve.
    let model = FlightModel {
        drain_pct_per_km: Some(6.0),
        ..FlightModel::default()
    };
    assert_eq!(
        model.fitness(&drone, &waiting_delivery(), at(9, 0)),
        Err(Unfit::Battery {
            trip_km,
            needed_pct: trip_km * 6.0,
            battery_pct: 100.0,
            reserve_pct: 20.0,
        })
    );
}

#[test]
fn a_drone_could_ever_carry_what_it_could_from_home_with_a_full_battery() {
    let model = FlightModel::default();
    // Far away and nearly empty now: unfit now, but not for ever.
    let drone = idle_drone(&[position_reported(portland(), 10.0, at(8, 30))]);
    assert!(
        model
            .fitness(&drone, &waiting_delivery(), at(9, 0))
            .is_err()
    );
    assert!(model.could_ever_carry(&drone, &waiting_delivery()));
}

#[test]
fn no_drone_could_ever_carry_a_package_over_its_payload_or_a_route_beyond_its_range() {
    let model = FlightModel::default();
    let drone = idle_drone(&[]);
    let heavy: Delivery = state(&[delivery_created_with(
        PAYLOAD_KG + 1.0,
        schemas::events::ConfirmationType::None,
    )]);
    assert!(!model.could_ever_carry(&drone, &heavy));

    let mut far = waiting_delivery();
    far.dropoff = portland();
    assert!(!model.could_ever_carry(&drone, &far));
}

#[test]
fn a_drone_could_never_carry_a_delivery_that_would_eat_into_its_reserve() {
    let model = FlightModel::default();
    // 13.5 km on a 15 km range: within range, but 90% of a full battery.
    let drone: Drone = state(&[drone_registered_with(PAYLOAD_KG, 15.0)]);
    assert!(!model.could_ever_carry(&drone, &waiting_delivery()));
}
