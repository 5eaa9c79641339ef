//! What-if replay over histories whose outcomes are known by construction: the recorded
//! settings reproduce the recorded outcome, each change moves it as the rules say, and
//! the same history and settings give the same report whatever order it was read in.

use analytics::{Changes, Fold, Recording, WhatIfReport};
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{DispatchPolicy, FlightModel, Job, distance_km, toward};
use schemas::events::*;

mod history;
use history::envelope;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("a time")
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

fn spot(km_north: f64) -> Location {
    // 0.01° of latitude is 1.112 km.
    Location {
        latitude: 47.60 + km_north / 111.195,
        longitude: -122.30,
        altitude: 0.0,
    }
}

/// The product's flight model without take-off, landing and handling times, so that
/// the known answers are round numbers.
fn model() -> FlightModel {
    FlightModel {
        takeoff: Duration::zero(),
        landing: Duration::zero(),
        handling: Duration::zero(),
        ..FlightModel::default()
    }
}

/// A drone with a 20 km range (5 % per km) registered at 5 m/s that flies at 20 m/s.
fn registered(id: &str) -> (Topic, Envelope) {
    (
        Topic::Drones,
        envelope(
            id,
            1,
            t0() - Duration::hours(1),
            Event::DroneRegistered(DroneRegistered {
                model: "X8".into(),
                payload_kg: 5.0,
                range_km: 20.0,
                speed_mps: 5.0,
                home: spot(0.0),
            }),
        ),
    )
}

fn created(
    pickup: Location,
    dropoff: Location,
    expedited: bool,
    deadline: Option<DateTime<Utc>>,
) -> Event {
    Event::DeliveryCreated(DeliveryCreated {
        owner_id: "acme".into(),
        pickup,
        dropoff,
        pickup_time: None,
        deadline,
        expedited,
        confirmation_required: ConfirmationType::None,
        package_id: "p".into(),
        package_weight_kg: 1.0,
    })
}

/// Telemetry of a flight from `from` to `to` at 20 m/s starting at `start`, a report a
/// second, with the battery at `battery` before; the workflow sees the drone there at
/// the first report within the arrival radius (50 m). Returns the reports, that time,
/// where the drone was then and the battery then.
fn fly(
    drone: &str,
    from: Location,
    to: Location,
    start: DateTime<Utc>,
    battery: f64,
) -> (Vec<(Topic, Envelope)>, DateTime<Utc>, Location, f64) {
    let km = distance_km(&from, &to);
    let mut reports = Vec::new();
    let mut s = 1;
    loop {
        let flown = (0.02 * s as f64).min(km);
        let mut at = toward(&from, &to, flown);
        at.altitude = 60.0;
        let when = start + Duration::seconds(s);
        let left = battery - flown * 5.0;
        reports.push((
            Topic::DroneTelemetry,
            envelope(
                drone,
                0,
                when,
                Event::DronePositionReported(DronePositionReported {
                    position: at,
                    battery_pct: left,
                    at: when,
                }),
            ),
        ));
        if km - flown <= 0.05 {
            return (reports, when, at, left);
        }
        s += 1;
    }
}

/// History A, recorded as the workflow ran it with the product's settings (no take-off,
/// landing or handling time): one drone; d1 at 0 s, then d2 an hour later with a
/// deadline it met; each 1.2 km from the drone's home to its pickup and 1.2 km on.
fn history_a() -> Vec<(Topic, Envelope)> {
    let mut h = vec![registered("drone-1")];
    let home = spot(0.0);
    let (mut drone_version, mut battery) = (1, 100.0);
    for (n, start, deadline) in [(1, 0, None), (2, 3600, Some(secs(3600 + 130)))] {
        let id = format!("d{n}");
        let (pickup, dropoff) = (spot(1.2), spot(2.4));
        let d = Topic::Deliveries;
        h.push((
            d,
            envelope(
                &id,
                1,
                secs(start),
                created(pickup, dropoff, false, deadline),
            ),
        ));
        let route_km = Job {
            pickup,
            dropoff,
            weight_kg: 1.0,
        }
        .route_km(&home, &home);
        let assigned = Event::DroneAssigned(DroneAssigned {
            delivery_id: id.clone(),
            drone_id: "drone-1".into(),
            route_km,
            attempt: format!("a{n}"),
        });
        // A delivery's event, and its copy on the drone's stream.
        let mut both = |h: &mut Vec<_>, version, at, event: Event| {
            drone_version += 1;
            h.push((
                Topic::Drones,
                envelope("drone-1", drone_version, at, event.clone()),
            ));
            h.push((d, envelope(&id, version, at, event)));
        };
        both(&mut h, 2, secs(start), assigned);
        let (reports, at_pickup, here, b) = fly("drone-1", home, pickup, secs(start), battery);
        h.extend(reports);
        let picked = Event::DeliveryPickedUp(DeliveryPickedUp {
            delivery_id: id.clone(),
            drone_id: "drone-1".into(),
            at: at_pickup,
        });
        both(&mut h, 3, at_pickup, picked);
        let (reports, at_dropoff, here, b) = fly("drone-1", here, dropoff, at_pickup, b);
        h.extend(reports);
        let done = Event::DeliveryCompleted(DeliveryCompleted {
            delivery_id: id.clone(),
            drone_id: "drone-1".into(),
            confirmation_type: ConfirmationType::None,
            location: here,
            at: at_dropoff,
            blob: None,
        });
        both(&mut h, 4, at_dropoff, done);
        let (reports, at_home, _, b) = fly("drone-1", here, home, at_dropoff, b);
        h.extend(reports);
        for event in [
            Event::DroneDocked(DroneDocked {}),
            Event::DroneReturned(DroneReturned {}),
        ] {
            drone_version += 1;
            h.push((
                Topic::Drones,
                envelope("drone-1", drone_version, at_home, event),
            ));
        }
        battery = b;
    }
    h
}

/// History B, demand only (dispatched by hand, and nobody did; no telemetry, so the
/// drone flies at its registered 5 m/s): one drone; at 0 s d1 (plain, due in 600 s) and
/// d2 (expedited, due in an hour); d3 two hours later, where the history ends (the
/// replay flies it after).
fn history_b() -> Vec<(Topic, Envelope)> {
    let (pickup, dropoff) = (spot(1.2), spot(2.4));
    let d = Topic::Deliveries;
    vec![
        registered("drone-1"),
        (
            d,
            envelope(
                "d1",
                1,
                secs(0),
                created(pickup, dropoff, false, Some(secs(600))),
            ),
        ),
        (
            d,
            envelope(
                "d2",
                1,
                secs(0),
                created(pickup, dropoff, true, Some(secs(3600))),
            ),
        ),
        (
            d,
            envelope("d3", 1, secs(7200), created(pickup, dropoff, false, None)),
        ),
    ]
}

fn recording(history: Vec<(Topic, Envelope)>) -> Recording {
    let mut r = Recording::default();
    for (topic, envelope) in history {
        r.fold(topic, envelope);
    }
    r
}

fn what_if(history: Vec<(Topic, Envelope)>, changes: &str) -> WhatIfReport {
    let changes: Changes = changes.parse().expect("changes");
    recording(history).what_if(&model(), &DispatchPolicy::default(), &changes, None, None)
}

#[test]
fn the_recorded_settings_reproduce_the_recorded_outcome() {
    // A change that changes nothing here: the one drone is the whole fleet.
    let report = what_if(history_a(), "fleet=1");
    assert_eq!(report.as_flown.median_speed_mps, Some(20.0));
    assert_eq!(report.as_flown.report_every_secs, 1.0);
    let recorded = &report.recorded;
    assert_eq!(recorded.deliveries.completed, 2);
    assert_eq!(recorded.on_time.on_time, 1);
    // 1.2 km at 20 m/s, seen within 50 m of the pickup after 58 s.
    assert_eq!(recorded.to_pickup.mean_secs, Some(58.0));
    assert_eq!(report.replayed, report.recorded, "{report:#?}");
    assert_eq!(report.what_if, report.recorded, "{report:#?}");
}

#[test]
fn a_reserve_no_trip_can_keep_fails_every_delivery() {
    // 90 % reserve: 10 % of battery for trips, 2 km at 5 % a km; each trip is 4.8 km.
    let report = what_if(history_a(), "battery-reserve=90");
    assert_eq!(report.replayed.deliveries.completed, 2);
    let changed = &report.what_if;
    assert_eq!(changed.deliveries.completed, 0, "{report:#?}");
    assert_eq!(changed.deliveries.failed, 2);
    assert_eq!(changed.on_time.on_time, 0);
    assert_eq!(changed.on_time.with_deadline, 1);
    assert_eq!(changed.drone_km, 0.0);
    assert_eq!(changed.to_pickup.count, 0);
}

#[test]
fn expedited_first_serves_the_expedited_delivery_first_and_off_the_earliest_deadline() {
    let on = what_if(history_b(), "expedited-first=on");
    let off = what_if(history_b(), "expedited-first=off");
    // On (the product's default), d2 goes first: picked up after 230 s (1.15 km at
    // 5 m/s, within 50 m of the pickup) and delivered; d1 waits for the drone to fly
    // home, dock and charge, and fails at its deadline. d3 is flown after the history
    // ends.
    assert_eq!(on.replayed, on.what_if);
    let first = &on.what_if;
    assert_eq!(first.deliveries.completed, 2, "{on:#?}");
    assert_eq!(first.deliveries.failed, 1);
    assert_eq!(first.deliveries.in_progress, 0);
    assert_eq!(first.on_time.with_deadline, 2);
    assert_eq!(first.on_time.on_time, 1);
    assert_eq!(first.to_pickup.p50_secs, Some(230.0));
    // Off, the earliest deadline goes first: d1 in time, then d2, well within its hour.
    let by_deadline = &off.what_if;
    assert_eq!(by_deadline.deliveries.completed, 3, "{off:#?}");
    assert_eq!(by_deadline.deliveries.failed, 0);
    assert_eq!(by_deadline.on_time.on_time, 2);
    assert_eq!(by_deadline.on_time.rate, Some(1.0));
    assert_eq!(
        off.replayed, on.replayed,
        "the recorded settings are the same"
    );
    // The recorded history served nobody.
    assert_eq!(on.recorded.deliveries.completed, 0);
    assert_eq!(on.recorded.deliveries.in_progress, 3);
}

#[test]
fn a_second_drone_serves_both_at_once() {
    let report = what_if(history_b(), "fleet=2");
    let (one, two) = (&report.replayed, &report.what_if);
    assert_eq!(one.drones, 1);
    assert_eq!(two.drones, 2);
    assert_eq!(two.deliveries.completed, 3, "{report:#?}");
    assert_eq!(two.on_time.on_time, 2);
    assert_eq!(two.to_pickup.p95_secs, Some(230.0), "{report:#?}");
    assert_eq!(two.to_pickup.count, 3);
    // With one, d1 waited and failed; the copy flies it from the same home.
    assert_eq!(one.deliveries.failed, 1);
    assert_eq!(two.deliveries.failed, 0);
    assert_eq!((one.drone_km, two.drone_km), (9.6, 14.4));
}

#[test]
fn the_same_history_and_settings_give_the_same_report_in_any_read_order() {
    let changes: Changes = "fleet=3,battery-reserve=30".parse().expect("changes");
    let run = |r: &Recording| r.what_if(&model(), &DispatchPolicy::default(), &changes, None, None);
    let whole = run(&recording(history_a()));
    assert_eq!(whole, run(&recording(history_a())));
    assert_eq!(
        changes,
        "battery-reserve=30, fleet=3".parse().expect("changes"),
        "the order of the keys does not matter"
    );
    // As two readers fold it: each aggregate's records in one partition, the partitions
    // shared out, the folds merged either way round.
    let split = || {
        let (mut first, mut second) = (Recording::default(), Recording::default());
        for (topic, envelope) in history_a() {
            if envelope.metadata.aggregate_id == "d1" {
                first.fold(topic, envelope);
            } else {
                second.fold(topic, envelope);
            }
        }
        (first, second)
    };
    let (first, second) = split();
    let mut one_way = Recording::default();
    one_way.merge(first);
    one_way.merge(second);
    let (first, second) = split();
    let mut other_way = Recording::default();
    other_way.merge(second);
    other_way.merge(first);
    assert_eq!(run(&one_way), whole);
    assert_eq!(run(&other_way), whole);
}
