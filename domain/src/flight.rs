//! How a drone flies: the one ETA model and the one battery model of the system. The
//! query side shows these numbers, the workflow dispatches with them, and nothing else
//! computes a flight time.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use schemas::events::Location;
use serde::Serialize;

use crate::delivery::Delivery;
use crate::drone::{Drone, DroneStatus};
use crate::location::distance_km;
use crate::stage::Stage;

/// The parameters of a flight and of the battery. `Default` holds the product's defaults;
/// `serve` and `workflow` take each as an option.
#[derive(Debug, Clone, PartialEq)]
pub struct FlightModel {
    /// From the decision to cruise: spin-up and climb.
    pub takeoff: TimeDelta,
    /// From above the spot to on the ground.
    pub landing: TimeDelta,
    /// Loading at the pickup.
    pub handling: TimeDelta,
    /// Battery used per km flown, in percent; `None`: a full battery flies the drone's
    /// range, so drain is `100 / range_km`.
    pub drain_pct_per_km: Option<f64>,
    /// Battery gained per minute on the charger, in percent.
    pub charge_pct_per_minute: f64,
    /// Battery a drone must still have when it is back home.
    pub reserve_pct: f64,
    /// A charging drone returns to service at this level.
    pub ready_pct: f64,
    /// Within this distance of a spot a drone is there.
    pub arrival_radius_km: f64,
}

impl Default for FlightModel {
    fn default() -> Self {
        FlightModel {
            takeoff: TimeDelta::seconds(30),
            landing: TimeDelta::seconds(30),
            handling: TimeDelta::seconds(60),
            drain_pct_per_km: None,
            charge_pct_per_minute: 2.0,
            reserve_pct: 20.0,
            ready_pct: 80.0,
            arrival_radius_km: 0.05,
        }
    }
}

/// When the drone is expected at the pickup and at the drop-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Etas {
    pub pickup: Option<DateTime<Utc>>,
    pub delivery: Option<DateTime<Utc>>,
}

/// Why a drone cannot take a delivery now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unfit {
    #[error("the package ({weight_kg} kg) is over the payload ({payload_kg} kg)")]
    Payload { weight_kg: f64, payload_kg: f64 },
    #[error("the trip ({trip_km:.1} km) is over the range ({range_km:.1} km)")]
    Range { trip_km: f64, range_km: f64 },
    #[error(
        "the trip ({trip_km:.1} km) needs {needed_pct:.0}% of battery and {reserve_pct:.0}% must remain; it has {battery_pct:.0}%"
    )]
    Battery {
        trip_km: f64,
        needed_pct: f64,
        battery_pct: f64,
        reserve_pct: f64,
    },
}

/// A trip a drone can fly: its legs in km.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    pub to_pickup_km: f64,
    pub to_dropoff_km: f64,
    pub home_km: f64,
}

impl Trip {
    pub fn total_km(&self) -> f64 {
        self.to_pickup_km + self.to_dropoff_km + self.home_km
    }

    fn from(start: &Location, delivery: &Delivery, home: &Location) -> Trip {
        Trip {
            to_pickup_km: distance_km(start, &delivery.pickup),
            to_dropoff_km: distance_km(&delivery.pickup, &delivery.dropoff),
            home_km: distance_km(&delivery.dropoff, home),
        }
    }
}

/// Reports are often stamped in whole seconds: one stamped in the second of `at` counts
/// as made at `at` or later.
pub(crate) fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at)
}

/// The longest time any one estimate (a flight, a charge) is taken to last: a few of them
/// added to a time stay far inside chrono's range whatever a drone's figures are, so no
/// ETA sum can overflow (which would panic).
pub const LONGEST_ESTIMATE: TimeDelta = TimeDelta::days(3650);

/// `millis` as a duration, at most [`LONGEST_ESTIMATE`] (infinity too; zero when not a
/// number).
fn bounded_millis(millis: f64) -> TimeDelta {
    let longest = LONGEST_ESTIMATE.num_milliseconds() as f64;
    if millis.is_nan() || millis <= 0.0 {
        return TimeDelta::zero();
    }
    // Exact: a whole number of at most LONGEST_ESTIMATE's milliseconds.
    TimeDelta::try_milliseconds(millis.min(longest) as i64).unwrap_or(LONGEST_ESTIMATE)
}

impl FlightModel {
    /// Time to fly `km` at `speed_mps` (zero when the speed is not positive; at most
    /// [`LONGEST_ESTIMATE`]).
    pub fn flight_time(&self, km: f64, speed_mps: f64) -> TimeDelta {
        if speed_mps.is_nan() || speed_mps <= 0.0 {
            return TimeDelta::zero();
        }
        bounded_millis((km * 1000.0 / speed_mps * 1000.0).round())
    }

    /// Percent of battery per km this drone uses.
    pub fn drain_pct_per_km(&self, drone: &Drone) -> f64 {
        match self.drain_pct_per_km {
            Some(drain) => drain,
            None if drone.range_km > 0.0 => 100.0 / drone.range_km,
            None => f64::INFINITY,
        }
    }

    /// The longest trip the drone could fly at its best: within its range, and on a full
    /// battery keeping the reserve.
    pub fn reach_km(&self, drone: &Drone) -> f64 {
        let on_battery = (100.0 - self.reserve_pct) / self.drain_pct_per_km(drone);
        drone.range_km.min(on_battery.max(0.0))
    }

    /// Battery now: the last report, plus what the charger added since (from docking,
    /// or the last report if later, until now or until the drone left the charger); a
    /// drone that has never reported counts as charged.
    pub fn battery_pct(&self, drone: &Drone, now: DateTime<Utc>) -> f64 {
        let Some(reported) = drone.battery_pct else {
            return 100.0;
        };
        let Some(since) = drone.charging_since else {
            return reported;
        };
        let from = drone.position_at.map_or(since, |at| at.max(since));
        let until = drone.charging_until.map_or(now, |until| until.min(now));
        let minutes = (until - from).num_milliseconds().max(0) as f64 / 60_000.0;
        (reported + minutes * self.charge_pct_per_minute).min(100.0)
    }

    /// The trip from where the drone is, if it can fly it now: payload, range and battery
    /// (keeping the reserve when it is back home).
    pub fn fitness(
        &self,
        drone: &Drone,
        delivery: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<Trip, Unfit> {
        let trip = Trip::from(&drone.current_location(), delivery, &drone.home);
        self.fits(drone, delivery, trip, self.battery_pct(drone, now))?;
        Ok(trip)
    }

    /// True when the drone could take the delivery at its best: at home, charged.
    pub fn could_ever_carry(&self, drone: &Drone, delivery: &Delivery) -> bool {
        let trip = Trip::from(&drone.home, delivery, &drone.home);
        self.fits(drone, delivery, trip, 100.0).is_ok()
    }

    fn fits(
        &self,
        drone: &Drone,
        delivery: &Delivery,
        trip: Trip,
        battery_pct: f64,
    ) -> Result<(), Unfit> {
        if delivery.package_weight_kg > drone.payload_kg {
            return Err(Unfit::Payload {
                weight_kg: delivery.package_weight_kg,
                payload_kg: drone.payload_kg,
            });
        }
        let trip_km = trip.total_km();
        if trip_km > drone.range_km {
            return Err(Unfit::Range {
                trip_km,
                range_km: drone.range_km,
            });
        }
        let needed_pct = trip_km * self.drain_pct_per_km(drone);
        if battery_pct - needed_pct < self.reserve_pct {
            return Err(Unfit::Battery {
                trip_km,
                needed_pct,
                battery_pct,
                reserve_pct: self.reserve_pct,
            });
        }
        Ok(())
    }

    /// Time on the charger before a drone on the ground has enough battery for `trip_km`
    /// and the reserve.
    pub fn charge_time(&self, drone: &Drone, trip_km: f64, now: DateTime<Utc>) -> TimeDelta {
        let needed = trip_km * self.drain_pct_per_km(drone) + self.reserve_pct;
        let missing = needed - self.battery_pct(drone, now);
        if missing <= 0.0 || self.charge_pct_per_minute <= 0.0 {
            return TimeDelta::zero();
        }
        bounded_millis((missing / self.charge_pct_per_minute * 60_000.0).round())
    }

    /// How long before its pickup time a delivery must leave with this drone: taking
    /// off (after charging if needed), flying to the pickup and landing.
    pub fn lead_time(&self, drone: &Drone, trip: &Trip, now: DateTime<Utc>) -> TimeDelta {
        self.charge_time(drone, trip.total_km(), now)
            + self.takeoff
            + self.flight_time(trip.to_pickup_km, drone.speed_mps)
            + self.landing
    }

    /// The ETAs of a delivery with its drone, as of `now`: from the drone's last report
    /// if it came after the current leg began (it is on its way), else from where the
    /// drone was when the leg began (take-off, and charging first if the battery needs
    /// it). An ETA is never before `now`: a drone late on its estimate is still coming.
    pub fn etas(&self, delivery: &Delivery, drone: &Drone, now: DateTime<Utc>) -> Etas {
        let speed = drone.speed_mps;
        let on_the_way = |since: DateTime<Utc>| {
            drone
                .position_at
                .filter(|at| *at >= whole_second(since))
                .zip(drone.position)
                .filter(|(_, position)| position.altitude > 0.0)
        };
        let to_dropoff = self.handling
            + self.takeoff
            + self.flight_time(distance_km(&delivery.pickup, &delivery.dropoff), speed)
            + self.landing;
        match delivery.stage {
            Some(Stage::HeadedToPickup) => {
                let Some(assigned) = delivery.assigned_at else {
                    return Etas::default();
                };
                let arrival = match on_the_way(assigned) {
                    Some((at, position)) => {
                        at + self.flight_time(distance_km(&position, &delivery.pickup), speed)
                            + self.landing
                    }
                    None => {
                        // Still on the ground: from the assignment, or from a later report
                        // that shows it has not left yet.
                        let start = drone
                            .position_at
                            .filter(|at| *at >= whole_second(assigned))
                            .map_or(assigned, |at| at.max(assigned));
                        let trip = Trip::from(&drone.current_location(), delivery, &drone.home);
                        start + self.lead_time(drone, &trip, start)
                    }
                };
                let pickup = arrival.max(now);
                Etas {
                    pickup: Some(pickup),
                    delivery: Some(pickup + to_dropoff),
                }
            }
            Some(Stage::HeadedToDropoff) => {
                let Some(picked_up) = delivery.picked_up_at else {
                    return Etas::default();
                };
                let arrival = match on_the_way(picked_up) {
                    Some((at, position)) => {
                        at + self.flight_time(distance_km(&position, &delivery.dropoff), speed)
                            + self.landing
                    }
                    None => picked_up + to_dropoff,
                };
                Etas {
                    pickup: None,
                    delivery: Some(arrival.max(now)),
                }
            }
            _ => Etas::default(),
        }
    }

    /// True when `position` is at `spot`.
    pub fn arrived(&self, position: &Location, spot: &Location) -> bool {
        distance_km(position, spot) <= self.arrival_radius_km
    }

    /// A drone that is charging and has reached the level to fly again.
    pub fn is_charged(&self, drone: &Drone, now: DateTime<Utc>) -> bool {
        drone.status == Some(DroneStatus::Charging)
            && self.battery_pct(drone, now) >= self.ready_pct
    }

    /// When a charging drone reaches the ready level (now if it has).
    pub fn charged_at(&self, drone: &Drone, now: DateTime<Utc>) -> DateTime<Utc> {
        let missing = self.ready_pct - self.battery_pct(drone, now);
        if missing <= 0.0 || self.charge_pct_per_minute <= 0.0 {
            return now;
        }
        now + bounded_millis((missing / self.charge_pct_per_minute * 60_000.0).ceil())
    }
}
