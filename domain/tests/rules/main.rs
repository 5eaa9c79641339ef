//! The business rules of SPEC §3, one test per rule, written given/when/then.
//! All files compile as one test binary.

mod accounts;
mod assignment;
mod deliveries;
mod dispatch;
mod drones;
mod fixtures;
mod flight;
mod framework;
mod packages;
mod values;
