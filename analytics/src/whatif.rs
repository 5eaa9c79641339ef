//! What-if replay (issue 12): the recorded demand — the deliveries as scheduled,
//! rescheduled and cancelled, the fleet as registered, the drones' speeds and telemetry
//! cadence as flown — re-run through the domain's own [`Dispatcher`] and command rules,
//! with simulated flights and batteries, under changed settings (the battery reserve, the
//! fleet size, expedited-first). What the simulated run writes is folded by the same
//! [`Analytics`] fold as the recorded history, so the two are measured alike.
//!
//! Deterministic: no clock, no randomness, ordered maps only; the same history and
//! settings give the same report. After the recorded history ends the run goes on until
//! every delivery is finished (for at most [`DRAIN`]), so each outcome is the recorded
//! demand served to its end.
//!
//! What the simulation leaves out: the customer confirms a delivery that asks for proof
//! as the drone arrives; operators' hand assignments, groundings and returns are not
//! replayed (the dispatcher assigns every delivery); the command side answers at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Decision, DispatchPolicy, Dispatcher, Drone, DroneStatus, FlightModel, FollowUp, distance_km,
    toward,
};
use schemas::events::{
    ConfirmationType, DronePositionReported, Envelope, Event, EventMetadata, Location, Topic,
};
use serde::Serialize;
use uuid::Uuid;

use crate::{Analytics, Durations, Fold, OnTime, Report, Totals, round};

/// The workflow's tick: the rules that depend on time alone run this often.
const TICK: TimeDelta = TimeDelta::milliseconds(500);
/// Altitude (m) in cruise, and while at a spot waiting to pick up or hand over.
const CRUISE_M: f64 = 60.0;
const HOVER_M: f64 = 10.0;
/// The telemetry cadence when the history shows none.
const DEFAULT_PERIOD: TimeDelta = TimeDelta::seconds(1);
/// How long a run goes on after the recorded history ends, to finish what it began.
pub const DRAIN: TimeDelta = TimeDelta::days(1);
/// The most drones a what-if fleet may have.
pub const MAX_FLEET: usize = 100_000;

/// The settings a what-if run changes; `None` keeps the recorded one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Battery (%) a drone must still have when it is back home.
    pub battery_reserve_pct: Option<f64>,
    /// Drones in service: the first ones registered, or the registered ones repeated
    /// (copies at the same homes, flying as their originals flew).
    pub fleet: Option<usize>,
    pub expedited_first: Option<bool>,
}

impl Changes {
    /// The changes as `key=value` pairs, in the order of the keys.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(v) = self.battery_reserve_pct {
            pairs.push(("battery-reserve".into(), format!("{v}")));
        }
        if let Some(v) = self.fleet {
            pairs.push(("fleet".into(), v.to_string()));
        }
        if let Some(v) = self.expedited_first {
            pairs.push((
                "expedited-first".into(),
                if v { "on" } else { "off" }.into(),
            ));
        }
        pairs
    }
}

impl FromStr for Changes {
    type Err = String;

    /// `battery-reserve=30,fleet=5,expedited-first=off`.
    fn from_str(s: &str) -> Result<Changes, String> {
        let mut changes = Changes::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("{pair:?} is not KEY=VALUE"));
            };
            let (key, value) = (key.trim(), value.trim());
            let given = match key {
                "battery-reserve" => value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && (0.0..100.0).contains(v))
                    .ok_or_else(|| {
                        format!(
                            "battery-reserve is a percentage from 0 to below 100, not {value:?}"
                        )
                    })
                    .map(|pct| changes.battery_reserve_pct.replace(pct).is_some()),
                "fleet" => value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_FLEET).contains(n))
                    .ok_or_else(|| {
                        format!("fleet is a number of drones from 1 to {MAX_FLEET}, not {value:?}")
                    })
                    .map(|n| changes.fleet.replace(n).is_some()),
                "expedited-first" => match value {
                    "on" | "true" | "yes" => Ok(true),
                    "off" | "false" | "no" => Ok(false),
                    _ => Err(format!("expedited-first is on or off, not {value:?}")),
                }
                .map(|on| changes.expedited_first.replace(on).is_some()),
                _ => Err(format!(
                    "unknown setting {key:?}: the settings are battery-reserve, fleet and expedited-first"
                )),
            };
            if given? {
                return Err(format!("{key} is given twice"));
            }
        }
        if changes == Changes::default() {
            return Err("give at least one KEY=VALUE".into());
        }
        Ok(changes)
    }
}

/// What a customer did, replayed at the time it was recorded.
#[derive(Clone, Debug)]
enum Ask {
    Schedule(Event),
    Reschedule(Event),
    Cancel(Option<String>),
}

#[derive(Clone, Debug)]
struct Demand {
    at: DateTime<Utc>,
    delivery_id: String,
    version: u64,
    ask: Ask,
}

#[derive(Clone, Debug)]
struct Registration {
    at: DateTime<Utc>,
    drone_id: String,
    /// The recorded drone it flies as (itself, or the original of a copy).
    flies_as: String,
    event: Event,
}

/// How one drone flew, from its telemetry.
#[derive(Clone, Debug, Default)]
struct Flown {
    last: Option<(DateTime<Utc>, Location)>,
    /// Ground speed (m/s) between consecutive reports in flight that moved, each counted
    /// once the drone moved on after it: the last step of a leg arrives early and would
    /// make the drone look slower than it flew.
    speeds: Vec<f64>,
    step: Option<f64>,
    /// Milliseconds between consecutive reports.
    intervals: Vec<i64>,
}

/// The recorded history as a what-if run needs it, and its own analytics (read in the
/// same pass).
#[derive(Debug, Default)]
pub struct Recording {
    pub analytics: Analytics,
    demand: Vec<Demand>,
    fleet: Vec<Registration>,
    flown: BTreeMap<String, Flown>,
}

impl Fold for Recording {
    const TOPICS: &'static [Topic] = &[Topic::Drones, Topic::Deliveries, Topic::DroneTelemetry];

    fn fold(&mut self, topic: Topic, envelope: Envelope) {
        let m = &envelope.metadata;
        match (topic, &envelope.event) {
            (Topic::DroneTelemetry, Event::DronePositionReported(r)) => {
                let flown = self.flown.entry(m.aggregate_id.clone()).or_default();
                if let Some((at, position)) = flown.last {
                    if r.at <= at {
                        return; // out of order: no interval to learn from
                    }
                    let millis = (r.at - at).num_milliseconds();
                    flown.intervals.push(millis);
                    let km = distance_km(&position, &r.position);
                    let moved = position.altitude > 0.0 && r.position.altitude > 0.0 && km > 0.001;
                    let step = moved.then(|| km * 1e6 / millis as f64);
                    if let (Some(before), Some(_)) = (flown.step, step) {
                        flown.speeds.push(before);
                    }
                    flown.step = step;
                }
                flown.last = Some((r.at, r.position));
                return;
            }
            (Topic::Drones, Event::DroneRegistered(_)) => self.fleet.push(Registration {
                at: m.occurred_at,
                drone_id: m.aggregate_id.clone(),
                flies_as: m.aggregate_id.clone(),
                event: envelope.event.clone(),
            }),
            (Topic::Deliveries, event) => {
                let ask = match event {
                    Event::DeliveryCreated(_) => Some(Ask::Schedule(event.clone())),
                    Event::DeliveryRescheduled(_) => Some(Ask::Reschedule(event.clone())),
                    Event::DeliveryCancelled(e) => Some(Ask::Cancel(e.reason.clone())),
                    _ => None,
                };
                if let Some(ask) = ask {
                    self.demand.push(Demand {
                        at: m.occurred_at,
                        delivery_id: m.aggregate_id.clone(),
                        version: m.aggregate_version,
                        ask,
                    });
                }
            }
            _ => {}
        }
        if topic != Topic::DroneTelemetry {
            self.analytics.fold(topic, envelope);
        }
    }

    fn merge(&mut self, other: Recording) {
        self.analytics.merge(other.analytics);
        self.demand.extend(other.demand);
        self.fleet.extend(other.fleet);
        for (drone, flown) in other.flown {
            let mine = self.flown.entry(drone).or_default();
            mine.speeds.extend(flown.speeds);
            mine.intervals.extend(flown.intervals);
        }
    }
}

fn median_f(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied()
}

/// How the recorded drones flew (see [`Recording::how_flown`]).
struct HowFlown {
    period: TimeDelta,
    speeds: BTreeMap<String, f64>,
}

impl HowFlown {
    /// A drone's speed as flown (m/s), else the speed it was registered with.
    fn speed_mps(&self, drone_id: &str, registered: f64) -> f64 {
        self.speeds.get(drone_id).copied().unwrap_or(registered)
    }
}

impl Recording {
    /// How the drones flew, read once for every run: the telemetry cadence (the median
    /// gap between a drone's reports) and each drone's speed (the median over its
    /// reports in flight).
    fn how_flown(&self) -> HowFlown {
        let mut all: Vec<i64> = self
            .flown
            .values()
            .flat_map(|f| f.intervals.iter().copied())
            .collect();
        all.sort_unstable();
        HowFlown {
            period: all
                .get(all.len() / 2)
                .map_or(DEFAULT_PERIOD, |&ms| TimeDelta::milliseconds(ms.max(1))),
            speeds: self
                .flown
                .iter()
                .filter_map(|(id, f)| Some((id.clone(), median_f(f.speeds.clone())?)))
                .collect(),
        }
    }

    /// The fleet of a run: the first `size` drones registered (all when `None`), and
    /// copies of them, in turn, beyond the registered number.
    fn fleet(&self, size: Option<usize>) -> Vec<Registration> {
        let mut registered = self.fleet.clone();
        registered.sort_by(|a, b| (a.at, &a.drone_id).cmp(&(b.at, &b.drone_id)));
        let size = size.unwrap_or(registered.len());
        let mut ids: std::collections::BTreeSet<String> =
            registered.iter().map(|r| r.drone_id.clone()).collect();
        (0..size)
            .filter_map(|i| {
                let original = registered.get(i % registered.len().max(1))?;
                let copy = i / registered.len();
                if copy == 0 {
                    return Some(original.clone());
                }
                // A name no registered drone (nor other copy) has.
                let mut drone_id = format!("{}~{copy}", original.drone_id);
                while !ids.insert(drone_id.clone()) {
                    drone_id.push('~');
                }
                Some(Registration {
                    drone_id,
                    ..original.clone()
                })
            })
            .collect()
    }

    /// Re-runs the recorded demand with the recorded settings (`model`, `policy`) and
    /// with them changed, and reports the three outcomes over [`from`, `to`).
    pub fn what_if(
        &self,
        model: &FlightModel,
        policy: &DispatchPolicy,
        changes: &Changes,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> WhatIfReport {
        let recorded = self.analytics.report(from, to);
        let flown = self.how_flown();
        let replay = |model: FlightModel, policy: DispatchPolicy, fleet: Option<usize>| {
            let analytics = Simulation::run(self, &flown, model, policy, fleet);
            Outcome::of(&analytics.report(from, to))
        };
        let policy = DispatchPolicy {
            auto_assign: true,
            ..policy.clone()
        };
        let changed_model = FlightModel {
            reserve_pct: changes.battery_reserve_pct.unwrap_or(model.reserve_pct),
            ..model.clone()
        };
        let changed_policy = DispatchPolicy {
            expedited_first: changes.expedited_first.unwrap_or(policy.expedited_first),
            ..policy.clone()
        };
        let speeds: Vec<f64> = self
            .fleet
            .iter()
            .map(|r| match &r.event {
                Event::DroneRegistered(e) => flown.speed_mps(&r.drone_id, e.speed_mps),
                _ => 0.0,
            })
            .collect();
        WhatIfReport {
            changes: changes
                .pairs()
                .into_iter()
                .map(|(key, value)| Setting { key, value })
                .collect(),
            as_flown: AsFlown {
                drones: self.fleet.len() as u64,
                median_speed_mps: median_f(speeds).map(|s| round(s, 2)),
                report_every_secs: round(flown.period.num_milliseconds() as f64 / 1e3, 3),
            },
            recorded: Outcome::of(&recorded),
            replayed: replay(model.clone(), policy.clone(), None),
            what_if: replay(changed_model, changed_policy, changes.fleet),
        }
    }
}

/// Where a simulated drone is going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    Pickup,
    Dropoff,
    Home,
}

/// One leg of a flight: on the ground for `ground` (handling, take-off), then in the air
/// at the drone's flown speed, then landing; the drone is at `to` from `landed`.
#[derive(Clone, Debug)]
struct Flight {
    leg: Leg,
    from: Location,
    to: Location,
    airborne: DateTime<Utc>,
    arrives: DateTime<Utc>,
    landed: DateTime<Utc>,
    battery_at_start: f64,
}

#[derive(Clone, Debug)]
struct SimDrone {
    drone: Drone,
    version: u64,
    speed_mps: f64,
    flight: Option<Flight>,
    /// Where it is when not flying: it lands where its last flight took it.
    parked: Location,
    /// When it reports next (`None`: silent, parked at home).
    next_report: Option<DateTime<Utc>>,
}

struct SimDelivery {
    delivery: domain::Delivery,
    version: u64,
}

/// One simulated run: the dispatcher and the aggregates it commands, the drones in the
/// air, and the fold of everything written.
struct Simulation {
    model: FlightModel,
    dispatcher: Dispatcher,
    drones: BTreeMap<String, SimDrone>,
    deliveries: BTreeMap<String, SimDelivery>,
    /// The fold of every event the run wrote.
    out: Analytics,
    period: TimeDelta,
    attempts: u64,
    /// Deliveries scheduled and not finished.
    unfinished: usize,
    now: DateTime<Utc>,
}

enum Next {
    Registration(Registration),
    Demand(Demand),
}

impl Simulation {
    fn run(
        recording: &Recording,
        flown: &HowFlown,
        model: FlightModel,
        policy: DispatchPolicy,
        fleet: Option<usize>,
    ) -> Analytics {
        let mut timeline: Vec<(DateTime<Utc>, u8, String, u64, Next)> = Vec::new();
        for r in recording.fleet(fleet) {
            timeline.push((r.at, 0, r.drone_id.clone(), 0, Next::Registration(r)));
        }
        for d in &recording.demand {
            timeline.push((
                d.at,
                1,
                d.delivery_id.clone(),
                d.version,
                Next::Demand(d.clone()),
            ));
        }
        // A total order whatever order the partitions were read in.
        timeline.sort_by(|a, b| (a.0, a.1, &a.2, a.3).cmp(&(b.0, b.1, &b.2, b.3)));
        let end = recording.analytics.last;
        let mut sim = Simulation {
            dispatcher: Dispatcher::new(model.clone(), policy),
            model,
            drones: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            out: Analytics::default(),
            period: flown.period,
            attempts: 0,
            unfinished: 0,
            now: timeline.first().map_or(DateTime::<Utc>::MIN_UTC, |t| t.0),
        };
        let (Some(end), false) = (end, timeline.is_empty()) else {
            return sim.out;
        };
        let mut timeline = timeline.into_iter().peekable();
        let mut next_tick = sim.now;
        loop {
            let next_report = sim.drones.values().filter_map(|d| d.next_report).min();
            let busy = sim.dispatcher.queued() > 0
                || sim
                    .drones
                    .values()
                    .any(|d| d.next_report.is_some() || d.drone.status != Some(DroneStatus::Idle));
            let next_ask = timeline.peek().map(|t| t.0);
            let Some(now) = [
                next_ask,
                next_report,
                busy.then_some(next_tick.max(sim.now)),
            ]
            .into_iter()
            .flatten()
            .min() else {
                break;
            };
            if now > end && (sim.unfinished == 0 || now > end + DRAIN) {
                break;
            }
            sim.now = now;
            while let Some((_, _, _, _, next)) = timeline.next_if(|t| t.0 <= now) {
                match next {
                    Next::Registration(r) => sim.register(r, flown),
                    Next::Demand(d) => sim.ask(d),
                }
            }
            let reporting: Vec<String> = sim
                .drones
                .iter()
                .filter(|(_, d)| d.next_report.is_some_and(|at| at <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in reporting {
                sim.report(&id);
            }
            let tick = next_tick <= now;
            if tick {
                next_tick = now + TICK;
            }
            for decision in sim.dispatcher.decide(now, tick) {
                let accepted = sim.execute(&decision);
                sim.dispatcher.settle(&decision, accepted, now);
            }
        }
        sim.out
    }

    fn envelope(&self, id: &str, version: u64, event: Event) -> Envelope {
        Envelope {
            metadata: EventMetadata {
                event_id: Uuid::nil(),
                aggregate_id: id.to_owned(),
                aggregate_version: version,
                occurred_at: self.now,
                causation_id: String::new(),
                correlation_id: String::new(),
                principal: "what-if".into(),
            },
            event,
        }
    }

    fn register(&mut self, r: Registration, flown: &HowFlown) {
        let (speed, home) = match &r.event {
            Event::DroneRegistered(e) => (flown.speed_mps(&r.flies_as, e.speed_mps), e.home),
            _ => return,
        };
        self.drones.insert(
            r.drone_id.clone(),
            SimDrone {
                drone: Drone::default(),
                version: 0,
                speed_mps: speed,
                flight: None,
                parked: home,
                next_report: None,
            },
        );
        self.append_drone(&r.drone_id, vec![r.event]);
    }

    fn append_drone(&mut self, id: &str, events: Vec<Event>) {
        for event in events {
            let Some(d) = self.drones.get_mut(id) else {
                return;
            };
            d.drone.apply(&event, self.now);
            d.version += 1;
            let version = d.version;
            self.dispatcher.apply_drone(id, version, &event, self.now);
            let envelope = self.envelope(id, version, event);
            self.out.fold(Topic::Drones, envelope);
        }
    }

    fn append_delivery(&mut self, id: &str, events: Vec<Event>) {
        for event in events {
            let entry = self
                .deliveries
                .entry(id.to_owned())
                .or_insert_with(|| SimDelivery {
                    delivery: domain::Delivery::default(),
                    version: 0,
                });
            let before = entry.delivery.drone_id.clone();
            let open = |d: &domain::Delivery| d.stage.is_some_and(|s| !s.is_terminal());
            let was_open = open(&entry.delivery);
            entry.delivery.apply(&event, self.now);
            match (was_open, open(&entry.delivery)) {
                (false, true) => self.unfinished += 1,
                (true, false) => self.unfinished -= 1,
                _ => {}
            }
            entry.version += 1;
            let version = entry.version;
            self.dispatcher
                .apply_delivery(id, version, &event, self.now);
            let envelope = self.envelope(id, version, event);
            self.out.fold(Topic::Deliveries, envelope);
            // The drone's stream follows the delivery's (as the command side makes it).
            let drone = self
                .deliveries
                .get(id)
                .and_then(|d| d.delivery.drone_id.clone())
                .or(before);
            if let Some(drone_id) = drone {
                self.follow(&drone_id, id);
            }
        }
    }

    /// Brings the drone's stream in line with the delivery's, and sends the drone where
    /// that says it goes.
    fn follow(&mut self, drone_id: &str, delivery_id: &str) {
        let (Some(d), Some(delivery)) =
            (self.drones.get(drone_id), self.deliveries.get(delivery_id))
        else {
            return;
        };
        let dropoff = delivery.delivery.dropoff;
        let FollowUp::Append(events) = d.drone.follow(drone_id, delivery_id, &delivery.delivery)
        else {
            return;
        };
        if events.is_empty() {
            return;
        }
        self.append_drone(drone_id, events);
        let Some(d) = self.drones.get(drone_id) else {
            return;
        };
        match (d.drone.status, d.drone.delivery_id.is_some()) {
            (Some(DroneStatus::EnRouteToDropoff), true) => {
                self.fly(drone_id, Leg::Dropoff, dropoff, self.model.handling);
            }
            (_, false) => self.fly_home(drone_id),
            _ => {}
        }
    }

    fn fly_home(&mut self, drone_id: &str) {
        let Some(d) = self.drones.get(drone_id) else {
            return;
        };
        let here = self.position(d);
        if distance_km(&here, &d.drone.home) <= self.model.arrival_radius_km && d.flight.is_none() {
            return; // at home already
        }
        let home = d.drone.home;
        self.fly(drone_id, Leg::Home, home, TimeDelta::zero());
    }

    /// Where the drone is now.
    fn position(&self, d: &SimDrone) -> Location {
        match &d.flight {
            Some(f) => self.position_in(d, f).0,
            None => d.parked,
        }
    }

    /// Where the drone is on its flight now, and the km flown so far.
    fn position_in(&self, d: &SimDrone, f: &Flight) -> (Location, f64) {
        let total = distance_km(&f.from, &f.to);
        if self.now >= f.landed {
            let altitude = if f.leg == Leg::Home { 0.0 } else { HOVER_M };
            return (Location { altitude, ..f.to }, total);
        }
        if self.now < f.airborne {
            return (f.from, 0.0);
        }
        let secs = (self.now.min(f.arrives) - f.airborne).num_milliseconds() as f64 / 1e3;
        let km = (secs * d.speed_mps / 1e3).min(total);
        let mut at = toward(&f.from, &f.to, km);
        at.altitude = CRUISE_M;
        (at, km)
    }

    fn battery(&self, d: &SimDrone) -> f64 {
        match &d.flight {
            Some(f) => {
                let (_, km) = self.position_in(d, f);
                (f.battery_at_start - km * self.model.drain_pct_per_km(&d.drone)).max(0.0)
            }
            None => self.model.battery_pct(&d.drone, self.now),
        }
    }

    /// Starts a leg from where the drone is, after `ground` on the spot, reporting on the
    /// telemetry cadence from now.
    fn fly(&mut self, drone_id: &str, leg: Leg, to: Location, ground: TimeDelta) {
        let Some(d) = self.drones.get(drone_id) else {
            return;
        };
        let from = self.position(d);
        let battery_at_start = self.battery(d);
        let airborne = self.now + ground + self.model.takeoff;
        let arrives = airborne + self.model.flight_time(distance_km(&from, &to), d.speed_mps);
        let landed = arrives + self.model.landing;
        let flight = Flight {
            leg,
            from: Location {
                altitude: 0.0,
                ..from
            },
            to,
            airborne,
            arrives,
            landed,
            battery_at_start,
        };
        let period = self.period;
        if let Some(d) = self.drones.get_mut(drone_id) {
            d.flight = Some(flight);
            d.next_report = Some(d.next_report.unwrap_or(self.now + period));
        }
    }

    /// A telemetry report of the drone as it is now; the next one a period later (none
    /// once it is parked at home).
    fn report(&mut self, drone_id: &str) {
        let Some(d) = self.drones.get(drone_id) else {
            return;
        };
        let position = self.position(d);
        let battery_pct = (self.battery(d) * 10.0).round() / 10.0;
        let arrived = d.flight.as_ref().filter(|f| self.now >= f.landed).cloned();
        let report = Event::DronePositionReported(DronePositionReported {
            position,
            battery_pct,
            at: self.now,
        });
        let version = d.version;
        if let Some(d) = self.drones.get_mut(drone_id) {
            d.drone.apply(&report, self.now);
            d.next_report = Some(self.now + self.period);
        }
        self.dispatcher
            .apply_drone(drone_id, version, &report, self.now);
        match arrived.map(|f| f.leg) {
            // The customer is there when a drone brings a delivery that asks for proof.
            Some(Leg::Dropoff) => self.confirm_on_arrival(drone_id, position),
            // Home and not waiting to dock (released, or grounded): it parks, silent.
            Some(Leg::Home) => {
                if let Some(d) = self.drones.get_mut(drone_id)
                    && d.drone.status != Some(DroneStatus::Returning)
                {
                    d.flight = None;
                    d.parked = d.drone.home;
                    d.next_report = None;
                }
            }
            _ => {}
        }
    }

    fn confirm_on_arrival(&mut self, drone_id: &str, position: Location) {
        let Some(delivery_id) = self
            .drones
            .get(drone_id)
            .and_then(|d| d.drone.delivery_id.clone())
        else {
            return;
        };
        let Some(d) = self.deliveries.get(&delivery_id) else {
            return;
        };
        let required = d.delivery.confirmation_required;
        if required == ConfirmationType::None {
            return; // the workflow completes it
        }
        if let Ok(confirmation) = domain::Confirmation::new(required, position, self.now, None)
            && let Ok(events) = d.delivery.complete(&delivery_id, &confirmation)
        {
            self.append_delivery(&delivery_id, events);
        }
    }

    /// A customer's request, as recorded.
    fn ask(&mut self, demand: Demand) {
        let id = demand.delivery_id;
        match demand.ask {
            Ask::Schedule(event) => {
                if !self.deliveries.contains_key(&id) {
                    self.append_delivery(&id, vec![event]);
                }
            }
            Ask::Reschedule(event) => {
                let before_pickup = self
                    .deliveries
                    .get(&id)
                    .and_then(|d| d.delivery.stage)
                    .is_some_and(|s| s.is_before_pickup());
                if before_pickup {
                    self.append_delivery(&id, vec![event]);
                }
            }
            Ask::Cancel(reason) => {
                if let Some(events) = self
                    .deliveries
                    .get(&id)
                    .and_then(|d| d.delivery.cancel(reason).ok())
                {
                    self.append_delivery(&id, events);
                }
            }
        }
    }

    /// Runs a decision as the command side would; true when accepted.
    fn execute(&mut self, decision: &Decision) -> bool {
        match decision {
            Decision::Assign {
                delivery_id,
                version,
                drone_id,
            } => self.assign(delivery_id, *version, drone_id),
            Decision::Unassign {
                delivery_id,
                version,
                reason,
            } => self.on_delivery(delivery_id, *version, |d| {
                d.unassign_drone(delivery_id, reason)
            }),
            Decision::Fail {
                delivery_id,
                version,
                reason,
            } => self.on_delivery(delivery_id, *version, |d| d.fail(reason.clone())),
            Decision::PickUp {
                delivery_id,
                version,
            } => {
                let now = self.now;
                self.on_delivery(delivery_id, *version, |d| d.pick_up(delivery_id, now))
            }
            Decision::Complete {
                delivery_id,
                version,
                location,
                at,
            } => {
                let Ok(proof) =
                    domain::Confirmation::new(ConfirmationType::None, *location, *at, None)
                else {
                    return false;
                };
                self.on_delivery(delivery_id, *version, |d| d.complete(delivery_id, &proof))
            }
            Decision::Dock { drone_id, version } => {
                let docked = self.on_drone(drone_id, *version, Drone::dock);
                if docked && let Some(d) = self.drones.get_mut(drone_id) {
                    // It lands on its charger, and is silent there.
                    d.flight = None;
                    d.parked = d.drone.home;
                    d.next_report = None;
                }
                docked
            }
            Decision::Ready { drone_id, version } => {
                self.on_drone(drone_id, *version, Drone::return_to_service)
            }
            Decision::Ground {
                drone_id,
                version,
                reason,
            } => {
                let grounded =
                    self.on_drone(drone_id, *version, |d| d.ground(Some(reason.clone())));
                if grounded {
                    self.fly_home(drone_id);
                }
                grounded
            }
        }
    }

    fn on_delivery(
        &mut self,
        id: &str,
        version: u64,
        command: impl FnOnce(&domain::Delivery) -> Result<Vec<Event>, domain::DomainError>,
    ) -> bool {
        let Some(d) = self.deliveries.get(id).filter(|d| d.version == version) else {
            return false;
        };
        match command(&d.delivery) {
            Ok(events) => {
                self.append_delivery(id, events);
                true
            }
            Err(_) => false,
        }
    }

    fn on_drone(
        &mut self,
        id: &str,
        version: u64,
        command: impl FnOnce(&Drone) -> Result<Vec<Event>, domain::DomainError>,
    ) -> bool {
        let Some(d) = self.drones.get(id).filter(|d| d.version == version) else {
            return false;
        };
        match command(&d.drone) {
            Ok(events) => {
                self.append_drone(id, events);
                true
            }
            Err(_) => false,
        }
    }

    /// The two steps of an assignment: the drone is reserved, the delivery takes it (or
    /// the reservation is released), and the drone takes off for the pickup.
    fn assign(&mut self, delivery_id: &str, version: u64, drone_id: &str) -> bool {
        let Some(d) = self
            .deliveries
            .get(delivery_id)
            .filter(|d| d.version == version)
        else {
            return false;
        };
        let Ok(job) = d.delivery.job() else {
            return false;
        };
        let pickup = d.delivery.pickup;
        self.attempts += 1;
        let attempt = format!("what-if-{}", self.attempts);
        let Some(drone) = self.drones.get(drone_id) else {
            return false;
        };
        let reserved = match drone.drone.reserve(drone_id, delivery_id, &job, &attempt) {
            Ok(events) => events,
            Err(_) => return false,
        };
        let Some(Event::DroneAssigned(reservation)) = reserved.first().cloned() else {
            return false;
        };
        self.append_drone(drone_id, reserved);
        let taken = self
            .deliveries
            .get(delivery_id)
            .map(|d| d.delivery.assign_drone(&reservation));
        match taken {
            Some(Ok(events)) => {
                self.append_delivery(delivery_id, events);
                self.fly(drone_id, Leg::Pickup, pickup, TimeDelta::zero());
                true
            }
            _ => {
                let released = self.drones.get(drone_id).map(|d| {
                    d.drone
                        .release(drone_id, delivery_id, &attempt, "the delivery refused it")
                });
                if let Some(events) = released {
                    self.append_drone(drone_id, events);
                }
                false
            }
        }
    }
}

/// What a run gave: the numbers a what-if compares.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub deliveries: Totals,
    pub on_time: OnTime,
    pub to_pickup: Durations,
    pub to_delivery: Durations,
    pub drone_km: f64,
    pub drones: u64,
    pub busy_share: Option<f64>,
}

impl Outcome {
    fn of(report: &Report) -> Outcome {
        Outcome {
            deliveries: report.deliveries.clone(),
            on_time: report.on_time.clone(),
            to_pickup: report.to_pickup.clone(),
            to_delivery: report.to_delivery.clone(),
            drone_km: report.fleet.km_flown,
            drones: report.fleet.drones,
            busy_share: report.fleet.busy_share,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

/// How the recorded drones flew, as the simulation flies them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AsFlown {
    pub drones: u64,
    pub median_speed_mps: Option<f64>,
    pub report_every_secs: f64,
}

/// The recorded outcome, the simulated one with the recorded settings (how near the
/// simulation comes to what happened), and the simulated one with the changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatIfReport {
    pub changes: Vec<Setting>,
    pub as_flown: AsFlown,
    pub recorded: Outcome,
    pub replayed: Outcome,
    pub what_if: Outcome,
}

impl WhatIfReport {
    /// One row per number: (metric, recorded, replayed, what-if).
    fn rows(&self) -> Vec<(&'static str, [String; 3])> {
        let o = [&self.recorded, &self.replayed, &self.what_if];
        let each = |f: &dyn Fn(&Outcome) -> String| [f(o[0]), f(o[1]), f(o[2])];
        let opt = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x}"));
        vec![
            ("drones", each(&|o| o.drones.to_string())),
            ("scheduled", each(&|o| o.deliveries.scheduled.to_string())),
            ("completed", each(&|o| o.deliveries.completed.to_string())),
            ("cancelled", each(&|o| o.deliveries.cancelled.to_string())),
            ("failed", each(&|o| o.deliveries.failed.to_string())),
            (
                "inProgress",
                each(&|o| o.deliveries.in_progress.to_string()),
            ),
            (
                "withDeadline",
                each(&|o| o.on_time.with_deadline.to_string()),
            ),
            ("onTime", each(&|o| o.on_time.on_time.to_string())),
            ("onTimeRate", each(&|o| opt(o.on_time.rate))),
            ("toPickupMeanSecs", each(&|o| opt(o.to_pickup.mean_secs))),
            ("toPickupP50Secs", each(&|o| opt(o.to_pickup.p50_secs))),
            ("toPickupP95Secs", each(&|o| opt(o.to_pickup.p95_secs))),
            (
                "toDeliveryMeanSecs",
                each(&|o| opt(o.to_delivery.mean_secs)),
            ),
            ("droneKm", each(&|o| o.drone_km.to_string())),
            ("busyShare", each(&|o| opt(o.busy_share))),
        ]
    }

    fn changed(&self) -> String {
        self.changes
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// For a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = &self.as_flown;
        let _ = writeln!(
            out,
            "what-if {}: the recorded demand re-dispatched ({} drones as flown: median {} m/s, a report every {} s)",
            self.changed(),
            f.drones,
            f.median_speed_mps
                .map_or_else(|| "-".into(), |s| format!("{s}")),
            f.report_every_secs
        );
        let _ = writeln!(
            out,
            "\n{:<20} {:>12} {:>12} {:>12}",
            "", "recorded", "replayed", "what-if"
        );
        for (metric, [a, b, c]) in self.rows() {
            let _ = writeln!(out, "{metric:<20} {a:>12} {b:>12} {c:>12}");
        }
        let _ = writeln!(
            out,
            "\nreplayed: the recorded settings through the simulation; what-if: with {}",
            self.changed()
        );
        out
    }

    /// `metric,recorded,replayed,whatIf`.
    pub fn csv(&self) -> String {
        let mut out = String::from("metric,recorded,replayed,whatIf\n");
        for (metric, [a, b, c]) in self.rows() {
            let _ = writeln!(out, "{metric},{a},{b},{c}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_from_key_value_pairs_and_say_what_is_wrong() {
        let c: Changes = "battery-reserve=35, fleet=4,expedited-first=off"
            .parse()
            .expect("valid");
        assert_eq!(
            c,
            Changes {
                battery_reserve_pct: Some(35.0),
                fleet: Some(4),
                expedited_first: Some(false),
            }
        );
        assert_eq!(
            c.pairs(),
            [
                ("battery-reserve".into(), "35".into()),
                ("fleet".into(), "4".into()),
                ("expedited-first".into(), "off".into())
            ]
        );
        for (bad, says) in [
            ("", "at least one"),
            ("fleet", "not KEY=VALUE"),
            ("fleet=0", "from 1 to"),
            ("fleet=-1", "from 1 to"),
            ("fleet=1e9", "from 1 to"),
            ("battery-reserve=NaN", "percentage"),
            ("battery-reserve=100", "below 100"),
            ("expedited-first=1", "on or off"),
            ("speed=2", "unknown setting"),
            ("fleet=2,fleet=2", "twice"),
        ] {
            let e = bad.parse::<Changes>().expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
