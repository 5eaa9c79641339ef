//! The two aggregates of the workload, written the way cqrs-es wants them: commands are
//! checked in `handle`, which writes events to the sink; `apply` folds events into state.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use sqlx::{Pool, Postgres};

// ---------------------------------------------------------------------------------------
// Values

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub altitude: f64,
}

impl Location {
    fn check(&self, what: &str) -> Result<(), DomainError> {
        let Location {
            latitude,
            longitude,
            altitude,
        } = *self;
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(DomainError::invalid(format!(
                "{what}.latitude must be between -90 and 90, got {latitude}"
            )));
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(DomainError::invalid(format!(
                "{what}.longitude must be between -180 and 180, got {longitude}"
            )));
        }
        if !altitude.is_finite() || altitude < 0.0 {
            return Err(DomainError::invalid(format!(
                "{what}.altitude must be a finite number of metres >= 0, got {altitude}"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConfirmationType {
    #[default]
    None,
    FingerPrint,
    Picture,
    Voice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageSize {
    Small,
    Medium,
    Large,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageInfo {
    /// Accepted (the main server's body has it) but not used here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    pub size: PackageSize,
    pub weight: f64,
    #[serde(default)]
    pub tag: Option<String>,
}

/// A command was refused. The HTTP layer answers as the main server does: 400 for
/// `Invalid`, 422 for `UnknownOwner` (a rule), 409 for `Conflict`, 503 for `Unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    Invalid(String),
    UnknownOwner(String),
    Conflict(String),
    /// A service the command needed (the owner look-up) failed.
    Unavailable(String),
}

impl DomainError {
    fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) | Self::Conflict(m) | Self::Unavailable(m) => f.write_str(m),
            Self::UnknownOwner(id) => write!(f, "no account {id}"),
        }
    }
}

impl std::error::Error for DomainError {}

// ---------------------------------------------------------------------------------------
// Account

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountCommand {
    RegisterAccount { name: String, email: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountRegistered { name: String, email: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountRegistered { .. } => "AccountRegistered".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    registered: bool,
    name: String,
    email: String,
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AccountCommand::RegisterAccount { name, email } => {
                if self.registered {
                    return Err(DomainError::Conflict("account already registered".into()));
                }
                let name = name.trim().to_string();
                let email = email.trim().to_string();
                if name.is_empty() || name.chars().count() > 200 {
                    return Err(DomainError::invalid("name must be 1 to 200 characters"));
                }
                if email.len() > 320 || !email.contains('@') {
                    return Err(DomainError::invalid("email must be an address"));
                }
                sink.write(AccountEvent::AccountRegistered { name, email }, self)
                    .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::AccountRegistered { name, email } => {
                self.registered = true;
                self.name = name;
                self.email = email;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Delivery

/// The body of `POST /api/v1/deliveries`, and the payload of `DeliveryScheduled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryPlan {
    pub owner_id: String,
    pub pickup: Location,
    pub dropoff: Location,
    #[serde(default)]
    pub deadline: Option<String>,
    #[serde(default)]
    pub expedited: bool,
    #[serde(default)]
    pub confirmation_required: ConfirmationType,
    pub package_info: PackageInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeliveryCommand {
    ScheduleDelivery(DeliveryPlan),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeliveryEvent {
    DeliveryScheduled(DeliveryPlan),
}

impl DomainEvent for DeliveryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DeliveryScheduled(_) => "DeliveryScheduled".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// What a delivery command may look up: whether its owner is a registered account (the
/// main server checks that too). One indexed read of the event table.
pub struct DeliveryServices {
    pool: Pool<Postgres>,
    check_owner: bool,
}

impl DeliveryServices {
    pub fn new(pool: Pool<Postgres>, check_owner: bool) -> Self {
        Self { pool, check_owner }
    }

    async fn owner_registered(&self, owner_id: &str) -> Result<bool, DomainError> {
        if !self.check_owner {
            return Ok(true);
        }
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2)",
        )
        .bind(Account::TYPE)
        .bind(owner_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| DomainError::Unavailable(format!("owner look-up failed: {e}")))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Delivery {
    scheduled: bool,
    owner_id: String,
}

impl Aggregate for Delivery {
    const TYPE: &'static str = "Delivery";
    type Command = DeliveryCommand;
    type Event = DeliveryEvent;
    type Error = DomainError;
    type Services = DeliveryServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            DeliveryCommand::ScheduleDelivery(plan) => {
                if self.scheduled {
                    return Err(DomainError::Conflict("delivery already scheduled".into()));
                }
                if plan.owner_id.is_empty() {
                    return Err(DomainError::invalid("ownerId is required"));
                }
                plan.pickup.check("pickup")?;
                plan.dropoff.check("dropoff")?;
                let weight = plan.package_info.weight;
                if !weight.is_finite() || weight <= 0.0 {
                    return Err(DomainError::invalid(format!(
                        "packageInfo.weight must be > 0, got {weight}"
                    )));
                }
                if plan
                    .package_info
                    .tag
                    .as_ref()
                    .is_some_and(|t| t.len() > 200)
                {
                    return Err(DomainError::invalid("packageInfo.tag is too long"));
                }
                if plan
                    .deadline
                    .as_ref()
                    .is_some_and(|d| !looks_like_rfc3339(d))
                {
                    return Err(DomainError::invalid("deadline must be an RFC 3339 time"));
                }
                if !services.owner_registered(&plan.owner_id).await? {
                    return Err(DomainError::UnknownOwner(plan.owner_id));
                }
                sink.write(DeliveryEvent::DeliveryScheduled(plan), self)
                    .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DeliveryEvent::DeliveryScheduled(plan) => {
                self.scheduled = true;
                self.owner_id = plan.owner_id;
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS…` with a zone: a shape check, without a date-time crate.
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z')
            || s.ends_with('z')
            || b[b.len() - 6] == b'+'
            || b[b.len() - 6] == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn plan(weight: f64, latitude: f64) -> DeliveryPlan {
        DeliveryPlan {
            owner_id: "owner".into(),
            pickup: Location {
                latitude,
                longitude: -122.33,
                altitude: 0.0,
            },
            dropoff: Location {
                latitude: 47.65,
                longitude: -122.30,
                altitude: 0.0,
            },
            deadline: Some("2030-01-01T00:00:00Z".into()),
            expedited: false,
            confirmation_required: ConfirmationType::None,
            package_info: PackageInfo {
                package_id: None,
                size: PackageSize::Small,
                weight,
                tag: Some("books".into()),
            },
        }
    }

    #[test]
    fn registers_an_account_once() {
        let registered = AccountEvent::AccountRegistered {
            name: "Contoso".into(),
            email: "ops@contoso.example".into(),
        };
        let command = AccountCommand::RegisterAccount {
            name: "Contoso".into(),
            email: "ops@contoso.example".into(),
        };
        TestFramework::<Account>::with(())
            .given_no_previous_events()
            .when(command.clone())
            .then_expect_events(vec![registered.clone()]);
        TestFramework::<Account>::with(())
            .given(vec![registered])
            .when(command)
            .then_expect_error_message("account already registered");
    }

    #[test]
    fn rfc3339_shape() {
        assert!(looks_like_rfc3339("2030-01-01T00:00:00Z"));
        assert!(looks_like_rfc3339("2030-01-01T00:00:00.123+02:00"));
        assert!(!looks_like_rfc3339("tomorrow"));
        assert!(!looks_like_rfc3339("2030-01-01"));
    }

    #[test]
    fn plan_checks() {
        assert!(plan(1.5, 47.61).pickup.check("pickup").is_ok());
        assert!(plan(1.5, 91.0).pickup.check("pickup").is_err());
    }
}
