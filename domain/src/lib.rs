//! The business rules of drone delivery, and nothing else.
//!
//! This crate owns the four aggregates of SPEC §3 (`Account`, `Drone`, `Package`,
//! `Delivery`) and the value objects their commands take. It is pure: no I/O, no async,
//! no clock (the time of a command is passed in). Each aggregate is a state struct that
//! folds events with `apply` and decides with methods that return the new events or a
//! [`DomainError`]. Versions, metadata and streams belong to the caller (the command
//! side), which wraps the returned events and appends them.
//!
//! Values are parsed once at the edge ("parse, don't validate"): a [`RegisterDrone`],
//! a [`DeliveryPlan`] or a [`Location`] from [`location`] cannot hold an invalid value,
//! so the aggregates never check shapes, only business facts.
//!
//! Two models of the world live here too, so every role computes them alike: the
//! [`FlightModel`] (ETAs and the battery) and the [`Dispatcher`], the workflow's rules as
//! a pure state machine (which drone takes which delivery, the flight driven by
//! telemetry, and the compensations).
//!
//! ```
//! use chrono::Utc;
//! use domain::{Account, Aggregate, Delivery, DeliveryPlan, Drone, Event, RegisterAccount, RegisterDrone, location};
//! use schemas::events::ConfirmationType;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = location(47.6062, -122.3321, 0.0)?;
//! let now = Utc::now();
//! let account = Account::replay(&Account::default().register(&RegisterAccount::new("Contoso", "ops@contoso.example")?, "")?, now);
//! let drone = Drone::replay(&Drone::default().register(&RegisterDrone::new("X1", 5.0, 40.0, 15.0, home)?)?, now);
//!
//! let plan = DeliveryPlan::new(location(47.6205, -122.3493, 0.0)?, location(47.6606, -122.3123, 0.0)?, None, None)?;
//! let created = Delivery::default().schedule("account-1", &account, &plan, false, ConfirmationType::None, "package-1", 1.2)?;
//! let delivery = Delivery::replay(&created, now);
//!
//! // An assignment touches two streams, so it is two steps: the drone is reserved on its
//! // stream, then the delivery takes the reservation on its own (the commit point).
//! let reserved = drone.reserve("drone-1", "delivery-1", &delivery.job()?, "attempt-1")?;
//! let Some(Event::DroneAssigned(reservation)) = reserved.first() else { unreachable!() };
//! assert_eq!(delivery.assign_drone(reservation)?, reserved);
//! # Ok(())
//! # }
//! ```

mod account;
mod aggregate;
mod delivery;
mod dispatch;
mod drone;
mod error;
mod flight;
mod location;
mod package;
mod stage;
mod values;

pub use account::{Account, AccountStatus};
pub use aggregate::Aggregate;
pub use delivery::{Delivery, Job};
pub use dispatch::{Decision, DispatchPolicy, Dispatcher};
pub use drone::{Drone, DroneStatus, FollowUp};
pub use error::{DomainError, ErrorKind};
pub use flight::{Etas, FlightModel, LONGEST_ESTIMATE, Trip, Unfit};
pub use location::{EARTH_RADIUS_KM, check_location, distance_km, location, toward, unit_vector};
pub use package::Package;
pub use stage::Stage;
pub use values::{
    Confirmation, DeliveryPlan, MAX_RANGE_KM, MAX_SPEED_MPS, MAX_WEIGHT_KG, PackageInfo,
    RegisterAccount, RegisterDrone, Reschedule, Telemetry, ValueError, optional_text,
    required_text,
};

// The wire types the aggregates speak, re-exported so callers need one import path.
pub use schemas::events::{ConfirmationType, Event, Location, PackageSize};
