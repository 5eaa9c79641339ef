use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::values::ValueError;

/// Where a delivery is in its life (the reference implementation's stage names):
/// `Created → HeadedToPickup → HeadedToDropoff → Completed`, with `Rescheduled` and
/// `Cancelled` before pickup and `Failed` from any stage that is not final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    Created,
    Rescheduled,
    HeadedToPickup,
    HeadedToDropoff,
    Completed,
    Cancelled,
    Failed,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Created,
        Stage::Rescheduled,
        Stage::HeadedToPickup,
        Stage::HeadedToDropoff,
        Stage::Completed,
        Stage::Cancelled,
        Stage::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Created => "Created",
            Stage::Rescheduled => "Rescheduled",
            Stage::HeadedToPickup => "HeadedToPickup",
            Stage::HeadedToDropoff => "HeadedToDropoff",
            Stage::Completed => "Completed",
            Stage::Cancelled => "Cancelled",
            Stage::Failed => "Failed",
        }
    }

    /// Nothing happens to a delivery after these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Completed | Stage::Cancelled | Stage::Failed)
    }

    /// A drone is flying it: to the pickup or to the drop-off.
    pub fn is_active(self) -> bool {
        matches!(self, Stage::HeadedToPickup | Stage::HeadedToDropoff)
    }

    /// The package is not on board yet: the delivery may still be cancelled or rescheduled.
    pub fn is_before_pickup(self) -> bool {
        matches!(
            self,
            Stage::Created | Stage::Rescheduled | Stage::HeadedToPickup
        )
    }

    /// Waiting for a drone.
    pub fn awaits_drone(self) -> bool {
        matches!(self, Stage::Created | Stage::Rescheduled)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| ValueError(format!("unknown stage {s:?}")))
    }
}
