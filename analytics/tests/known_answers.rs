//! A generated history whose answers are known by construction: the report must give
//! exactly those counts, rates, durations and drone use.

use analytics::Analytics;
use chrono::{DateTime, Duration, TimeZone, Utc};
use schemas::events::*;

mod history;
use history::envelope;

fn at(day: u32, minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 8, 0, 0)
        .single()
        .expect("a time")
        + Duration::minutes(minute)
}

fn place() -> Location {
    Location {
        latitude: 47.6,
        longitude: -122.3,
        altitude: 0.0,
    }
}

fn created(owner: &str, deadline: Option<DateTime<Utc>>) -> Event {
    Event::DeliveryCreated(DeliveryCreated {
        owner_id: owner.into(),
        pickup: place(),
        dropoff: place(),
        pickup_time: None,
        deadline,
        expedited: false,
        confirmation_required: ConfirmationType::None,
        package_id: "p".into(),
        package_weight_kg: 1.0,
    })
}

fn assigned(delivery: &str, drone: &str, km: f64) -> Event {
    Event::DroneAssigned(DroneAssigned {
        delivery_id: delivery.into(),
        drone_id: drone.into(),
        route_km: km,
        attempt: String::new(),
    })
}

/// Day 1: d1 (deadline met) scheduled 0, assigned +2, picked +10, completed +30 (8 km on
/// drone-a); d2 (deadline missed) scheduled 0, assigned +4, picked +20, completed +60
/// (12 km on drone-b). Day 2: d3 cancelled ("changed my mind") after 5 minutes
/// assigned to drone-a; d4 failed ("no drone fits") unassigned, with a deadline.
fn history() -> Vec<(Topic, Envelope)> {
    let mut h = Vec::new();
    for drone in ["drone-a", "drone-b", "drone-c"] {
        h.push((
            Topic::Drones,
            envelope(
                drone,
                1,
                at(1, 0),
                Event::DroneRegistered(DroneRegistered {
                    model: "X8".into(),
                    payload_kg: 5.0,
                    range_km: 40.0,
                    speed_mps: 15.0,
                    home: place(),
                }),
            ),
        ));
    }
    let done = |id: &str, drone: &str, minute: i64, version: u64| {
        envelope(
            id,
            version,
            at(1, minute),
            Event::DeliveryCompleted(DeliveryCompleted {
                delivery_id: id.into(),
                drone_id: drone.into(),
                confirmation_type: ConfirmationType::None,
                location: place(),
                at: at(1, minute),
                blob: None,
            }),
        )
    };
    let picked = |id: &str, drone: &str, minute: i64| {
        envelope(
            id,
            3,
            at(1, minute),
            Event::DeliveryPickedUp(DeliveryPickedUp {
                delivery_id: id.into(),
                drone_id: drone.into(),
                at: at(1, minute),
            }),
        )
    };
    let d = Topic::Deliveries;
    h.extend([
        (
            d,
            envelope("d1", 1, at(1, 0), created("acme", Some(at(1, 45)))),
        ),
        (
            d,
            envelope("d2", 1, at(1, 0), created("acme", Some(at(1, 45)))),
        ),
        (
            d,
            envelope("d1", 2, at(1, 2), assigned("d1", "drone-a", 8.0)),
        ),
        (
            d,
            envelope("d2", 2, at(1, 4), assigned("d2", "drone-b", 12.0)),
        ),
        (d, picked("d1", "drone-a", 10)),
        (d, picked("d2", "drone-b", 20)),
        (d, done("d1", "drone-a", 30, 4)),
        (d, done("d2", "drone-b", 60, 4)),
        (d, envelope("d3", 1, at(2, 0), created("globex", None))),
        (
            d,
            envelope("d3", 2, at(2, 1), assigned("d3", "drone-a", 5.0)),
        ),
        (
            d,
            envelope(
                "d3",
                3,
                at(2, 6),
                Event::DeliveryCancelled(DeliveryCancelled {
                    reason: Some("changed my mind".into()),
                }),
            ),
        ),
        (
            d,
            envelope("d4", 1, at(2, 0), created("globex", Some(at(2, 30)))),
        ),
        (
            d,
            envelope(
                "d4",
                2,
                at(2, 30),
                Event::DeliveryFailed(DeliveryFailed {
                    reason: "no drone fits".into(),
                }),
            ),
        ),
    ]);
    h
}

#[test]
fn the_report_gives_the_answers_the_history_was_built_with() {
    let mut analytics = Analytics::default();
    for (topic, envelope) in history() {
        analytics.fold(topic, envelope);
    }
    let report = analytics.report(None, None);
    assert_eq!(report.events, 16);
    let d = &report.deliveries;
    assert_eq!(
        (
            d.scheduled,
            d.completed,
            d.cancelled,
            d.failed,
            d.in_progress
        ),
        (4, 2, 1, 1, 0)
    );
    // d1 on time, d2 late, d4 failed with a deadline: 1 of 3.
    assert_eq!(
        (report.on_time.on_time, report.on_time.with_deadline),
        (1, 3)
    );
    assert_eq!(report.on_time.rate, Some(0.3333));
    assert_eq!(report.per_day.len(), 2);
    assert_eq!(
        (report.per_day[0].scheduled, report.per_day[0].completed),
        (2, 2)
    );
    assert_eq!(report.per_day[0].on_time_rate, Some(0.5));
    assert_eq!(report.per_day[1].on_time_rate, Some(0.0));
    // Seconds: assignment 120, 240, 60; pickup 600, 1200; delivery 1800, 3600.
    assert_eq!(report.to_assignment.count, 3);
    assert_eq!(report.to_assignment.mean_secs, Some(140.0));
    assert_eq!(report.to_assignment.p50_secs, Some(120.0));
    assert_eq!(report.to_assignment.p95_secs, Some(240.0));
    assert_eq!(report.to_pickup.mean_secs, Some(900.0));
    assert_eq!(report.to_delivery.p50_secs, Some(1800.0));
    assert_eq!(report.to_delivery.p95_secs, Some(3600.0));
    // drone-a: 28 minutes on d1 (8 km) and 5 on d3 (cancelled: no km); drone-b: 56 on d2.
    let use_of = |id: &str| {
        report
            .drones
            .iter()
            .find(|u| u.drone_id == id)
            .expect(id)
            .clone()
    };
    assert_eq!(use_of("drone-a").km_flown, 8.0);
    assert_eq!(use_of("drone-a").hours_assigned, 0.55);
    assert_eq!(use_of("drone-b").km_flown, 12.0);
    assert_eq!(use_of("drone-b").hours_assigned, 0.9333);
    assert_eq!(use_of("drone-c").hours_assigned, 0.0);
    assert_eq!(report.fleet.drones, 3);
    assert_eq!(report.fleet.km_flown, 20.0);
    assert_eq!(report.cancellations[0].reason, "changed my mind");
    assert_eq!(report.failures[0].reason, "no drone fits");
    let acme = &report.accounts[0];
    assert_eq!(
        (
            acme.account_id.as_str(),
            acme.scheduled,
            acme.completed,
            acme.drone_km
        ),
        ("acme", 2, 2, 20.0)
    );
    let globex = &report.accounts[1];
    assert_eq!((globex.cancelled, globex.failed), (1, 1));

    // A window: only day 2's deliveries.
    let day2 = analytics.report(Some(at(2, 0)), Some(at(3, 0)));
    assert_eq!(day2.deliveries.scheduled, 2);
    assert_eq!(day2.deliveries.completed, 0);
    // Text and CSV carry the same numbers.
    assert!(
        report
            .table()
            .contains("4 scheduled, 2 completed, 1 cancelled, 1 failed")
    );
    assert!(report.csv().contains("onTime,,rate,0.3333"));
    assert!(report.csv().contains("failures,no drone fits,count,1"));

    // The chart: an SVG with both panels and a bar per day and kind.
    let dir = std::env::temp_dir().join(format!("analytics-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("chart.svg");
    analytics::draw_chart(&report, &path).expect("drawn");
    let svg = std::fs::read_to_string(&path).expect("written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains("Deliveries per day") && svg.contains("On-time rate"));
    assert!(
        svg.contains("11-01") && svg.contains("11-02"),
        "the days label the axis"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
