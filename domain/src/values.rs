//! Validated inputs of the commands. Each is built once at the edge with `new`, which
//! refuses malformed values (HTTP 400); the fields are private so nothing else can
//! build an invalid one, and the aggregates only check business facts.

use chrono::{DateTime, Utc};
use schemas::events::{ConfirmationType, Location, PackageSize};

use crate::location::check_location;

/// A malformed value (HTTP 400); the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

const MAX_NAME_CHARS: usize = 200;
const MAX_EMAIL_CHARS: usize = 254; // RFC 5321 path limit
const MAX_TAG_CHARS: usize = 200;

/// Physical bounds, far above any delivery drone, that keep absurd values (`1e308`) out
/// of the log and of every sum and ETA computed from it.
pub const MAX_WEIGHT_KG: f64 = 1_000.0;
pub const MAX_RANGE_KM: f64 = 10_000.0;
pub const MAX_SPEED_MPS: f64 = 350.0;

/// Text that is shown to people and copied into events: no control characters (NUL,
/// ESC, …), which would corrupt terminals, logs and exports.
fn printable(field: &str, value: &str) -> Result<(), ValueError> {
    if value.chars().any(char::is_control) {
        return Err(ValueError(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// Free text a client may leave out (a reason, a contact): trimmed, blank means none,
/// at most `max_chars`, no control characters.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, ValueError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => required_text(field, value, max_chars).map(Some),
        None => Ok(None),
    }
}

/// Text a client must give: trimmed, not empty, at most `max_chars`, no control
/// characters.
pub fn required_text(field: &str, value: &str, max_chars: usize) -> Result<String, ValueError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ValueError(format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(ValueError(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    printable(field, value)?;
    Ok(value.to_owned())
}

/// A finite number above 0 and at most `max`.
fn positive(field: &str, value: f64, max: f64) -> Result<f64, ValueError> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(value)
    } else {
        Err(ValueError(format!(
            "{field} must be a number above 0 and at most {max}, got {value}"
        )))
    }
}

fn email(value: &str) -> Result<String, ValueError> {
    let value = value.trim();
    if value.chars().count() > MAX_EMAIL_CHARS {
        return Err(ValueError(format!(
            "email must be at most {MAX_EMAIL_CHARS} characters"
        )));
    }
    printable("email", value)?;
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ValueError(format!(
            "email must look like name@domain, got {value:?}"
        )))
    }
}

/// Who registers an account: a name and a contact email.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterAccount {
    name: String,
    email: String,
}

impl RegisterAccount {
    /// Name non-empty and at most 200 characters; email `local@domain`, at most 254.
    /// Surrounding whitespace is dropped.
    pub fn new(name: &str, email_address: &str) -> Result<Self, ValueError> {
        Ok(Self {
            name: required_text("name", name, MAX_NAME_CHARS)?,
            email: email(email_address)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn email(&self) -> &str {
        &self.email
    }
}

/// A drone's specification: what it can carry, how far and how fast, and where it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterDrone {
    model: String,
    payload_kg: f64,
    range_km: f64,
    speed_mps: f64,
    home: Location,
}

impl RegisterDrone {
    /// Model non-empty and printable; payload, range and speed above 0 and within the
    /// physical bounds; home a valid location.
    pub fn new(
        model: &str,
        payload_kg: f64,
        range_km: f64,
        speed_mps: f64,
        home: Location,
    ) -> Result<Self, ValueError> {
        Ok(Self {
            model: required_text("model", model, MAX_NAME_CHARS)?,
            payload_kg: positive("payloadKg", payload_kg, MAX_WEIGHT_KG)?,
            range_km: positive("rangeKm", range_km, MAX_RANGE_KM)?,
            speed_mps: positive("speedMps", speed_mps, MAX_SPEED_MPS)?,
            home: check_location(&home)?,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn payload_kg(&self) -> f64 {
        self.payload_kg
    }

    pub fn range_km(&self) -> f64 {
        self.range_km
    }

    pub fn speed_mps(&self) -> f64 {
        self.speed_mps
    }

    pub fn home(&self) -> Location {
        self.home
    }
}

/// One telemetry report: where the drone is, how much battery is left, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    position: Location,
    battery_pct: f64,
    at: DateTime<Utc>,
}

impl Telemetry {
    /// Position a valid location; battery a percentage in [0, 100].
    pub fn new(
        position: Location,
        battery_pct: f64,
        at: DateTime<Utc>,
    ) -> Result<Self, ValueError> {
        if !battery_pct.is_finite() || !(0.0..=100.0).contains(&battery_pct) {
            return Err(ValueError(format!(
                "batteryPct must be between 0 and 100, got {battery_pct}"
            )));
        }
        Ok(Self {
            position: check_location(&position)?,
            battery_pct,
            at,
        })
    }

    pub fn position(&self) -> Location {
        self.position
    }

    pub fn battery_pct(&self) -> f64 {
        self.battery_pct
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// The package a delivery carries.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInfo {
    size: PackageSize,
    weight_kg: f64,
    tag: Option<String>,
}

impl PackageInfo {
    /// Weight above 0 and at most `MAX_WEIGHT_KG`; tag at most 200 printable characters.
    pub fn new(size: PackageSize, weight_kg: f64, tag: Option<String>) -> Result<Self, ValueError> {
        if let Some(tag) = &tag {
            if tag.chars().count() > MAX_TAG_CHARS {
                return Err(ValueError(format!(
                    "tag must be at most {MAX_TAG_CHARS} characters"
                )));
            }
            printable("tag", tag)?;
        }
        Ok(Self {
            size,
            weight_kg: positive("weight", weight_kg, MAX_WEIGHT_KG)?,
            tag,
        })
    }

    pub fn size(&self) -> PackageSize {
        self.size
    }

    pub fn weight_kg(&self) -> f64 {
        self.weight_kg
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
}

/// Where and when a delivery goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPlan {
    pickup: Location,
    dropoff: Location,
    pickup_time: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
}

impl DeliveryPlan {
    /// Valid locations. That a deadline comes after the pickup time is a rule of the
    /// delivery (`Delivery::schedule`, 422), not of the value's shape.
    pub fn new(
        pickup: Location,
        dropoff: Location,
        pickup_time: Option<DateTime<Utc>>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Self, ValueError> {
        Ok(Self {
            pickup: check_location(&pickup)?,
            dropoff: check_location(&dropoff)?,
            pickup_time,
            deadline,
        })
    }

    pub fn pickup(&self) -> Location {
        self.pickup
    }

    pub fn dropoff(&self) -> Location {
        self.dropoff
    }

    pub fn pickup_time(&self) -> Option<DateTime<Utc>> {
        self.pickup_time
    }

    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }
}

/// A change of plan: the fields given replace the delivery's, the others stay.
#[derive(Debug, Clone, PartialEq)]
pub struct Reschedule {
    pickup: Option<Location>,
    dropoff: Option<Location>,
    pickup_time: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
}

impl Reschedule {
    /// At least one field; valid locations (the deadline after the pickup time is checked
    /// on the merged plan by `Delivery::reschedule`).
    pub fn new(
        pickup: Option<Location>,
        dropoff: Option<Location>,
        pickup_time: Option<DateTime<Utc>>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Self, ValueError> {
        if pickup.is_none() && dropoff.is_none() && pickup_time.is_none() && deadline.is_none() {
            return Err(ValueError(
                "nothing to reschedule: give pickup, dropoff, pickupTime or deadline".to_owned(),
            ));
        }
        Ok(Self {
            pickup: pickup.as_ref().map(check_location).transpose()?,
            dropoff: dropoff.as_ref().map(check_location).transpose()?,
            pickup_time,
            deadline,
        })
    }

    pub fn pickup(&self) -> Option<Location> {
        self.pickup
    }

    pub fn dropoff(&self) -> Option<Location> {
        self.dropoff
    }

    pub fn pickup_time(&self) -> Option<DateTime<Utc>> {
        self.pickup_time
    }

    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }
}

/// Proof of delivery handed over at the drop-off.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    confirmation_type: ConfirmationType,
    location: Location,
    at: DateTime<Utc>,
    blob: Option<String>,
}

impl Confirmation {
    /// A valid location; the blob (picture, voice, fingerprint data) is opaque here.
    pub fn new(
        confirmation_type: ConfirmationType,
        location: Location,
        at: DateTime<Utc>,
        blob: Option<String>,
    ) -> Result<Self, ValueError> {
        Ok(Self {
            confirmation_type,
            location: check_location(&location)?,
            at,
            blob,
        })
    }

    pub fn confirmation_type(&self) -> ConfirmationType {
        self.confirmation_type
    }

    pub fn location(&self) -> Location {
        self.location
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    pub fn blob(&self) -> Option<&str> {
        self.blob.as_deref()
    }
}
