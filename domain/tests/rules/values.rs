//! Value objects refuse malformed input at the edge (HTTP 400), so no invalid value
//! reaches an aggregate.

use std::str::FromStr;

use domain::{
    Confirmation, DeliveryPlan, DroneStatus, PackageInfo, RegisterAccount, RegisterDrone,
    Reschedule, Stage, Telemetry, ValueError, location,
};
use schemas::events::{ConfirmationType, Location, PackageSize};

use crate::fixtures::*;

fn refused<T: std::fmt::Debug>(result: Result<T, ValueError>, mentions: &str) {
    match result {
        Ok(value) => panic!("expected {value:?} to be refused"),
        Err(ValueError(message)) => assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions:?}"
        ),
    }
}

/// A wire location built without `location()`, as a careless caller might.
fn raw(latitude: f64, longitude: f64, altitude: f64) -> Location {
    Location {
        latitude,
        longitude,
        altitude,
    }
}

#[test]
fn a_location_on_the_bounds_is_valid() {
    for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
        assert_eq!(location(lat, lon, 0.0), Ok(raw(lat, lon, 0.0)));
    }
}

#[test]
fn latitude_must_be_within_90_degrees() {
    refused(location(90.0001, 0.0, 0.0), "latitude");
    refused(location(-91.0, 0.0, 0.0), "latitude");
}

#[test]
fn longitude_must_be_within_180_degrees() {
    refused(location(0.0, 180.5, 0.0), "longitude");
    refused(location(0.0, -181.0, 0.0), "longitude");
}

#[test]
fn altitude_must_not_be_negative() {
    refused(location(0.0, 0.0, -0.1), "altitude");
}

#[test]
fn coordinates_must_be_finite() {
    refused(location(f64::NAN, 0.0, 0.0), "latitude");
    refused(location(0.0, f64::INFINITY, 0.0), "longitude");
    refused(location(0.0, 0.0, f64::INFINITY), "altitude");
}

#[test]
fn an_account_needs_a_name() {
    refused(RegisterAccount::new("  ", "ops@contoso.example"), "name");
}

#[test]
fn an_account_name_is_at_most_200_characters() {
    assert!(RegisterAccount::new(&"n".repeat(200), "ops@contoso.example").is_ok());
    refused(
        RegisterAccount::new(&"n".repeat(201), "ops@contoso.example"),
        "name",
    );
}

#[test]
fn an_account_email_needs_one_at_with_text_on_both_sides() {
    for bad in [
        "ops.contoso.example",
        "@contoso.example",
        "ops@",
        "ops@contoso@example",
        "o ps@contoso.example",
        "",
    ] {
        refused(RegisterAccount::new("Contoso", bad), "email");
    }
}

#[test]
fn an_account_email_is_at_most_254_characters() {
    let long = format!("{}@example", "o".repeat(246));
    assert_eq!(long.len(), 254);
    assert!(RegisterAccount::new("Contoso", &long).is_ok());
    refused(
        RegisterAccount::new("Contoso", &format!("o{long}")),
        "email",
    );
}

#[test]
fn account_values_are_trimmed() {
    let cmd = RegisterAccount::new(" Contoso ", " ops@contoso.example ").expect("valid");
    assert_eq!(
        (cmd.name(), cmd.email()),
        ("Contoso", "ops@contoso.example")
    );
}

#[test]
fn a_drone_needs_a_model() {
    refused(RegisterDrone::new("", 5.0, 40.0, 15.0, home()), "model");
}

#[test]
fn drone_payload_range_and_speed_must_be_positive_and_finite() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        refused(
            RegisterDrone::new("X1", bad, 40.0, 15.0, home()),
            "payloadKg",
        );
        refused(RegisterDrone::new("X1", 5.0, bad, 15.0, home()), "rangeKm");
        refused(RegisterDrone::new("X1", 5.0, 40.0, bad, home()), "speedMps");
    }
}

#[test]
fn a_drone_home_must_be_a_valid_location() {
    refused(
        RegisterDrone::new("X1", 5.0, 40.0, 15.0, raw(100.0, 0.0, 0.0)),
        "latitude",
    );
}

#[test]
fn package_weight_must_be_positive_and_finite() {
    for bad in [0.0, -0.5, f64::NAN, f64::INFINITY] {
        refused(PackageInfo::new(PackageSize::Small, bad, None), "weight");
    }
    assert!(PackageInfo::new(PackageSize::Small, 0.01, None).is_ok());
}

#[test]
fn a_package_tag_is_at_most_200_characters() {
    refused(
        PackageInfo::new(PackageSize::Large, 1.0, Some("t".repeat(201))),
        "tag",
    );
}

#[test]
fn a_plan_may_leave_either_time_open() {
    assert!(DeliveryPlan::new(pickup(), dropoff(), None, Some(at(10, 0))).is_ok());
    assert!(DeliveryPlan::new(pickup(), dropoff(), Some(at(10, 0)), None).is_ok());
}

#[test]
fn a_plan_needs_valid_locations() {
    refused(
        DeliveryPlan::new(raw(0.0, 200.0, 0.0), dropoff(), None, None),
        "longitude",
    );
    refused(
        DeliveryPlan::new(pickup(), raw(0.0, 0.0, -5.0), None, None),
        "altitude",
    );
}

#[test]
fn a_reschedule_must_change_something() {
    refused(
        Reschedule::new(None, None, None, None),
        "nothing to reschedule",
    );
}

#[test]
fn a_reschedule_needs_valid_locations() {
    refused(
        Reschedule::new(Some(raw(-95.0, 0.0, 0.0)), None, None, None),
        "latitude",
    );
}

#[test]
fn battery_is_a_percentage() {
    assert!(Telemetry::new(home(), 0.0, at(10, 0)).is_ok());
    assert!(Telemetry::new(home(), 100.0, at(10, 0)).is_ok());
    for bad in [-1.0, 100.1, f64::NAN] {
        refused(Telemetry::new(home(), bad, at(10, 0)), "batteryPct");
    }
}

#[test]
fn a_reported_position_must_be_a_valid_location() {
    refused(
        Telemetry::new(raw(0.0, 0.0, -1.0), 50.0, at(10, 0)),
        "altitude",
    );
}

#[test]
fn a_confirmation_location_must_be_valid() {
    refused(
        Confirmation::new(
            ConfirmationType::Picture,
            raw(91.0, 0.0, 0.0),
            at(10, 0),
            None,
        ),
        "latitude",
    );
}

#[test]
fn stages_have_the_reference_names() {
    for stage in Stage::ALL {
        let json = serde_json::to_string(&stage).expect("serializable");
        assert_eq!(json, format!("\"{}\"", stage.as_str()));
        assert_eq!(Stage::from_str(stage.as_str()), Ok(stage));
    }
    assert_eq!(Stage::HeadedToDropoff.to_string(), "HeadedToDropoff");
    assert!(Stage::from_str("headedToDropoff").is_err());
}

#[test]
fn drone_statuses_have_camel_case_names() {
    let names: Vec<&str> = DroneStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "idle",
            "assigned",
            "enRouteToPickup",
            "enRouteToDropoff",
            "returning",
            "charging",
            "grounded"
        ]
    );
    for status in DroneStatus::ALL {
        let json = serde_json::to_string(&status).expect("serializable");
        assert_eq!(json, format!("\"{}\"", status.as_str()));
        assert_eq!(DroneStatus::from_str(status.as_str()), Ok(status));
    }
    assert!(DroneStatus::from_str("flying").is_err());
}

#[test]
fn numbers_stay_within_physical_bounds() {
    use domain::{MAX_RANGE_KM, MAX_SPEED_MPS, MAX_WEIGHT_KG};
    assert!(PackageInfo::new(PackageSize::Small, MAX_WEIGHT_KG, None).is_ok());
    refused(PackageInfo::new(PackageSize::Small, 1e308, None), "weight");
    for (payload, range, speed, field) in [
        (1e308, 60.0, 15.0, "payloadKg"),
        (5.0, MAX_RANGE_KM * 2.0, 15.0, "rangeKm"),
        (5.0, 60.0, MAX_SPEED_MPS + 1.0, "speedMps"),
    ] {
        refused(
            RegisterDrone::new("X8", payload, range, speed, home()),
            field,
        );
    }
}

#[test]
fn text_has_no_control_characters() {
    refused(
        RegisterAccount::new("Con\u{0}toso", "ops@contoso.example"),
        "name",
    );
    refused(
        RegisterAccount::new("Contoso", "ops\u{1b}@contoso.example"),
        "email",
    );
    refused(
        RegisterDrone::new("X8\u{1b}[31m", 5.0, 60.0, 15.0, home()),
        "model",
    );
    refused(
        PackageInfo::new(PackageSize::Small, 1.0, Some("bo\u{7}oks".into())),
        "tag",
    );
    assert!(RegisterAccount::new("Contoso Ltd. — Zürich", "ops@contoso.example").is_ok());
}
