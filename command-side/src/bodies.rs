//! The command bodies of SPEC §5, parsed once: JSON into these shapes (unknown fields
//! refused), then into the domain's value objects, or a 400/422 that names the field.
//! Each handler parses its body here; [`parse`] runs any of them by command name, for
//! the fuzz target (`fuzz/fuzz_targets/command_bodies.rs`).

use crate::error::CommandError;
use crate::service::{Reading, ScheduleDelivery};
use chrono::{DateTime, Utc};
use domain::{
    Confirmation, DeliveryPlan, PackageInfo, RegisterAccount, RegisterDrone, Reschedule, Telemetry,
};
use schemas::events::{ConfirmationType, Location, PackageSize};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Ids in paths and bodies: 1 to 64 characters of letters, digits, `-`, `_`, `.`.
pub fn parse_id(kind: &str, id: &str) -> Result<String, CommandError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(CommandError::Invalid(format!(
            "{kind} id {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Largest telemetry batch accepted in one request.
pub const MAX_TELEMETRY_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocationBody {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    altitude: f64,
}

impl LocationBody {
    fn parse(&self) -> Result<Location, CommandError> {
        Ok(domain::location(
            self.latitude,
            self.longitude,
            self.altitude,
        )?)
    }
}

fn parse_opt(l: &Option<LocationBody>) -> Result<Option<Location>, CommandError> {
    l.as_ref().map(LocationBody::parse).transpose()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterAccountBody {
    name: String,
    email: String,
}

/// Longest reason a client may give (shown to operators, copied into the event).
const MAX_REASON_CHARS: usize = 500;
/// Longest contact (email address or phone number) of a notification request.
const MAX_CONTACT_CHARS: usize = 254;
/// Longest webhook URL of a notification request.
const MAX_WEBHOOK_CHARS: usize = 2048;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

impl ReasonBody {
    fn parse(&self) -> Result<Option<String>, CommandError> {
        Ok(domain::optional_text(
            "reason",
            self.reason.as_deref(),
            MAX_REASON_CHARS,
        )?)
    }
}

/// Why a delivery fails, or loses its drone: required, it is shown to operators.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GivenReasonBody {
    reason: String,
}

impl GivenReasonBody {
    fn parse(&self) -> Result<String, CommandError> {
        Ok(domain::required_text(
            "reason",
            &self.reason,
            MAX_REASON_CHARS,
        )?)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterDroneBody {
    model: String,
    payload_kg: f64,
    range_km: f64,
    speed_mps: f64,
    home: LocationBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TelemetryBody {
    position: LocationBody,
    battery_pct: f64,
    at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TelemetryItemBody {
    drone_id: String,
    position: LocationBody,
    battery_pct: f64,
    at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PackageInfoBody {
    package_id: Option<String>,
    size: PackageSize,
    weight: f64,
    tag: Option<String>,
}

fn no_confirmation() -> ConfirmationType {
    ConfirmationType::None
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScheduleBody {
    owner_id: String,
    pickup: LocationBody,
    dropoff: LocationBody,
    pickup_time: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    expedited: bool,
    #[serde(default = "no_confirmation")]
    confirmation_required: ConfirmationType,
    package_info: PackageInfoBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AssignBody {
    drone_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RescheduleBody {
    pickup: Option<LocationBody>,
    dropoff: Option<LocationBody>,
    pickup_time: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfirmationBody {
    confirmation_type: ConfirmationType,
    location: LocationBody,
    at: DateTime<Utc>,
    blob: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NotifyBody {
    email: Option<String>,
    sms: Option<String>,
    webhook: Option<String>,
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CommandError> {
    serde_json::from_slice(body)
        .map_err(|e| CommandError::Invalid(format!("invalid JSON body: {e}")))
}

/// Like `json_body`, but an empty body means the default.
fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, CommandError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json_body(body)
    }
}

pub fn register_account(body: &[u8]) -> Result<RegisterAccount, CommandError> {
    let req: RegisterAccountBody = json_body(body)?;
    Ok(RegisterAccount::new(&req.name, &req.email)?)
}

pub fn register_drone(body: &[u8]) -> Result<RegisterDrone, CommandError> {
    let req: RegisterDroneBody = json_body(body)?;
    Ok(RegisterDrone::new(
        &req.model,
        req.payload_kg,
        req.range_km,
        req.speed_mps,
        req.home.parse()?,
    )?)
}

/// One drone's report (`POST /drones/{id}/telemetry`).
pub fn telemetry(drone_id: &str, body: &[u8]) -> Result<Reading, CommandError> {
    let req: TelemetryBody = json_body(body)?;
    Ok(Reading {
        drone_id: parse_id("drone", drone_id)?,
        telemetry: Telemetry::new(req.position.parse()?, req.battery_pct, req.at)?,
    })
}

/// Several drones' reports (`POST /telemetry`).
pub fn telemetry_batch(body: &[u8]) -> Result<Vec<Reading>, CommandError> {
    let items: Vec<TelemetryItemBody> = json_body(body)?;
    if items.is_empty() || items.len() > MAX_TELEMETRY_BATCH {
        return Err(CommandError::Invalid(format!(
            "a telemetry batch holds 1 to {MAX_TELEMETRY_BATCH} readings"
        )));
    }
    items
        .into_iter()
        .map(|item| {
            Ok(Reading {
                drone_id: parse_id("drone", &item.drone_id)?,
                telemetry: Telemetry::new(item.position.parse()?, item.battery_pct, item.at)?,
            })
        })
        .collect()
}

pub fn schedule_delivery(body: &[u8]) -> Result<ScheduleDelivery, CommandError> {
    let req: ScheduleBody = json_body(body)?;
    Ok(ScheduleDelivery {
        owner_id: parse_id("account", &req.owner_id)?,
        plan: DeliveryPlan::new(
            req.pickup.parse()?,
            req.dropoff.parse()?,
            req.pickup_time,
            req.deadline,
        )?,
        expedited: req.expedited,
        confirmation_required: req.confirmation_required,
        package_id: req
            .package_info
            .package_id
            .as_deref()
            .map(|p| parse_id("package", p))
            .transpose()?,
        package: PackageInfo::new(
            req.package_info.size,
            req.package_info.weight,
            req.package_info.tag,
        )?,
    })
}

/// The drone an `assign-drone` names.
pub fn assign_drone(body: &[u8]) -> Result<String, CommandError> {
    let req: AssignBody = json_body(body)?;
    parse_id("drone", &req.drone_id)
}

/// A reason the command must give (unassign, fail).
pub fn given_reason(body: &[u8]) -> Result<String, CommandError> {
    let req: GivenReasonBody = json_body(body)?;
    req.parse()
}

/// A reason the command may give (suspend, ground, cancel); an empty body gives none.
pub fn reason(body: &[u8]) -> Result<Option<String>, CommandError> {
    let req: ReasonBody = optional_body(body)?;
    req.parse()
}

pub fn confirmation(body: &[u8]) -> Result<Confirmation, CommandError> {
    let req: ConfirmationBody = json_body(body)?;
    Ok(Confirmation::new(
        req.confirmation_type,
        req.location.parse()?,
        req.at,
        req.blob,
    )?)
}

/// The contacts of a `notify-me`: email, SMS, webhook URL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contacts {
    pub email: Option<String>,
    pub sms: Option<String>,
    pub webhook: Option<String>,
}

pub fn notify_me(body: &[u8]) -> Result<Contacts, CommandError> {
    let req: NotifyBody = json_body(body)?;
    let contact = |field, value: &Option<String>| {
        domain::optional_text(field, value.as_deref(), MAX_CONTACT_CHARS)
    };
    let webhook = domain::optional_text("webhook", req.webhook.as_deref(), MAX_WEBHOOK_CHARS)?;
    if let Some(url) = &webhook {
        webhook_url(url)?;
    }
    Ok(Contacts {
        email: contact("email", &req.email)?,
        sms: contact("sms", &req.sms)?,
        webhook,
    })
}

/// An `http` or `https` URL: a host name or a bracketed IPv6 address, an optional port,
/// then an optional path, query or fragment of visible ASCII (the OpenAPI document's
/// pattern). Where it may be sent is the notifier's to decide: it resolves the host
/// when it sends.
fn webhook_url(url: &str) -> Result<(), CommandError> {
    let bad = || CommandError::Invalid("webhook must be an http or https URL with a host".into());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(bad());
            }
            (addr, after)
        }
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            let (host, after) = authority.split_at(end);
            let name = |c: char| c.is_ascii_alphanumeric() || "._~-".contains(c);
            if !host.chars().all(name) {
                return Err(bad());
            }
            (host, after)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let tail_ok = tail.bytes().all(|b| b.is_ascii_graphic());
    if host.is_empty() || !port_ok || !tail_ok {
        return Err(bad());
    }
    Ok(())
}

pub fn reschedule(body: &[u8]) -> Result<Reschedule, CommandError> {
    let req: RescheduleBody = json_body(body)?;
    Ok(Reschedule::new(
        parse_opt(&req.pickup)?,
        parse_opt(&req.dropoff)?,
        req.pickup_time,
        req.deadline,
    )?)
}

/// Every command that takes a body, by name.
pub const COMMANDS: [&str; 11] = [
    "register-account",
    "register-drone",
    "report-telemetry",
    "report-telemetry-batch",
    "schedule-delivery",
    "assign-drone",
    "unassign-drone",
    "suspend-account",
    "complete-delivery",
    "notify-me",
    "reschedule-delivery",
];

/// Parses `body` as the command `command` takes it (one of [`COMMANDS`]); the fuzz
/// target calls this with arbitrary bytes: it must answer, never panic.
pub fn parse(command: &str, body: &[u8]) -> Result<(), CommandError> {
    match command {
        "register-account" => register_account(body).map(drop),
        "register-drone" => register_drone(body).map(drop),
        "report-telemetry" => telemetry("drone-1", body).map(drop),
        "report-telemetry-batch" => telemetry_batch(body).map(drop),
        "schedule-delivery" => schedule_delivery(body).map(drop),
        "assign-drone" => assign_drone(body).map(drop),
        "unassign-drone" => given_reason(body).map(drop),
        "suspend-account" => reason(body).map(drop),
        "complete-delivery" => confirmation(body).map(drop),
        "notify-me" => notify_me(body).map(drop),
        "reschedule-delivery" => reschedule(body).map(drop),
        other => Err(CommandError::Invalid(format!("no command {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_refuses_garbage_and_takes_a_valid_body() {
        let garbage: [&[u8]; 6] = [b"", b"{", b"null", b"[]", b"{\"x\":1}", &[0xff, 0xfe, 0x00]];
        for command in COMMANDS {
            for body in garbage {
                // `suspend-account` takes an empty body (no reason).
                if command == "suspend-account" && body.is_empty() {
                    continue;
                }
                assert!(parse(command, body).is_err(), "{command} took {body:?}");
            }
        }
        let here = r#"{"latitude": 47.6, "longitude": -122.3}"#;
        let valid = [
            (
                "register-account",
                r#"{"name": "Contoso", "email": "ops@contoso.example"}"#.to_string(),
            ),
            ("assign-drone", r#"{"droneId": "d1"}"#.to_string()),
            ("unassign-drone", r#"{"reason": "storm"}"#.to_string()),
            ("suspend-account", r#"{"reason": "unpaid"}"#.to_string()),
            ("notify-me", r#"{"email": "a@b.example"}"#.to_string()),
            (
                "notify-me",
                r#"{"webhook": "https://hooks.example.com/d?x=1"}"#.to_string(),
            ),
            ("reschedule-delivery", format!(r#"{{"dropoff": {here}}}"#)),
            (
                "register-drone",
                format!(
                    r#"{{"model": "X8", "payloadKg": 5, "rangeKm": 40, "speedMps": 15, "home": {here}}}"#
                ),
            ),
        ];
        for (command, body) in valid {
            assert!(parse(command, body.as_bytes()).is_ok(), "{command}: {body}");
        }
    }

    #[test]
    fn a_webhook_is_an_http_url_with_a_host() {
        for url in [
            "https://hooks.example.com/delivery?x=1#f",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:9000",
            "https://example.com",
        ] {
            assert!(webhook_url(url).is_ok(), "{url}");
        }
        for url in [
            "ftp://example.com/",
            "https://",
            "https:///path",
            "http://user@example.com/",
            "http://example.com:/",
            "http://example.com:123456/",
            "http://exa mple.com/",
            "http://example.com/a b",
            "http://[]/",
            "http://[::1/",
        ] {
            assert!(webhook_url(url).is_err(), "{url}");
        }
    }
}
