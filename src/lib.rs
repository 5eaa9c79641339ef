//! `drone-delivery`: the one binary of the system. This library holds what the binary
//! and the integration tests share: the command line and its config file, settings, the start-up that wires the roles
//! together on the embedded default, the operations endpoints, and the simulator.

pub mod analytics;
pub mod cli;
pub mod config;
pub mod keys;
mod ops;
mod page;
pub mod progress;
pub mod replay;
mod server;
pub mod settings;
pub mod simulate;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::{App, migrate};
