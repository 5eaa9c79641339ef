//! `drone-delivery`: the one binary of the system. This library holds what the binary
//! and the integration tests share: settings, the start-up that wires the roles
//! together on the embedded default, and the operations endpoints.

mod ops;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::App;
