//! The workflow's rules as a pure state machine: fed the events of the drones, their
//! telemetry and the deliveries (with the time each happened), and asked at a given time
//! what to do, it answers with [`Decision`]s — the commands the workflow sends. No I/O and
//! no clock, so the same history and settings always give the same decisions (the
//! what-if replay of analytics re-runs it).
//!
//! - Dispatch (SPEC §6): waiting deliveries in priority order (expedited first, then the
//!   earliest deadline, then the oldest), each to the nearest idle drone that fits
//!   ([`FlightModel::fitness`]: payload, range and battery with the reserve). Idle drones
//!   sit in a spatial index, so a decision looks at the drones near the pickup, not at
//!   the fleet. A delivery with a future pickup time waits until its drone must leave;
//!   one that no drone of the fleet could ever carry fails.
//! - The flight, from telemetry: at the pickup → pick up; at the drop-off → complete
//!   (unless a confirmation is required); back home → dock; charged → ready.
//! - Compensation: a grounded drone's delivery is unassigned before pickup and failed
//!   after; a drone silent too long on a delivery is grounded; a delivery still waiting
//!   at its deadline fails.
//!
//! A decision is tentative until the log shows its effect: the drone it uses is reserved
//! and the aggregate it addresses waits, so it is not decided twice; a refused decision,
//! or one the log does not confirm in time, is decided again (with the same idempotency
//! key while the aggregate's version is the same, so the command is never applied twice).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use rstar::RTree;
use rstar::primitives::GeomWithData;
use schemas::events::{Event, Location};

use crate::delivery::Delivery;
use crate::drone::{Drone, DroneStatus};
use crate::flight::{FlightModel, Trip, whole_second};
use crate::location::{EARTH_RADIUS_KM, distance_km, unit_vector};
use crate::stage::Stage;

/// How the workflow dispatches and supervises, besides the flight model.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchPolicy {
    /// Assign drones to waiting deliveries (off: only `assign-drone` calls do; the flight
    /// and the compensations still run).
    pub auto_assign: bool,
    /// Serve expedited deliveries before the others.
    pub expedited_first: bool,
    /// A delivery with a pickup time leaves this much earlier than its flight needs.
    pub margin: TimeDelta,
    /// A drone on a delivery that has not reported for this long is grounded.
    pub silent_after: TimeDelta,
    /// A decision the log has not confirmed after this long is made again.
    pub confirm_within: TimeDelta,
    /// A refused decision waits this long before it is made again.
    pub retry_after: TimeDelta,
}

impl Default for DispatchPolicy {
    fn default() -> Self {
        DispatchPolicy {
            auto_assign: true,
            expedited_first: true,
            margin: TimeDelta::minutes(2),
            silent_after: TimeDelta::minutes(2),
            confirm_within: TimeDelta::seconds(30),
            retry_after: TimeDelta::seconds(1),
        }
    }
}

/// A command the workflow should send. Versions are those of the addressed aggregate when
/// the decision was taken (`If-Match`, and part of the idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Assign {
        delivery_id: String,
        version: u64,
        drone_id: String,
    },
    Unassign {
        delivery_id: String,
        version: u64,
        reason: String,
    },
    Fail {
        delivery_id: String,
        version: u64,
        reason: String,
    },
    PickUp {
        delivery_id: String,
        version: u64,
    },
    Complete {
        delivery_id: String,
        version: u64,
        location: Location,
        at: DateTime<Utc>,
    },
    Dock {
        drone_id: String,
        version: u64,
    },
    Ready {
        drone_id: String,
        version: u64,
    },
    Ground {
        drone_id: String,
        version: u64,
        reason: String,
    },
}

impl Decision {
    /// The command's name (also the metric label).
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Assign { .. } => "assign",
            Decision::Unassign { .. } => "unassign",
            Decision::Fail { .. } => "fail",
            Decision::PickUp { .. } => "pick-up",
            Decision::Complete { .. } => "complete",
            Decision::Dock { .. } => "dock",
            Decision::Ready { .. } => "ready",
            Decision::Ground { .. } => "ground",
        }
    }

    fn subject(&self) -> Subject {
        match self {
            Decision::Assign { delivery_id, .. }
            | Decision::Unassign { delivery_id, .. }
            | Decision::Fail { delivery_id, .. }
            | Decision::PickUp { delivery_id, .. }
            | Decision::Complete { delivery_id, .. } => Subject::Delivery(delivery_id.clone()),
            Decision::Dock { drone_id, .. }
            | Decision::Ready { drone_id, .. }
            | Decision::Ground { drone_id, .. } => Subject::Drone(drone_id.clone()),
        }
    }

    /// The version of the addressed aggregate the decision was taken on.
    pub fn version(&self) -> u64 {
        match self {
            Decision::Assign { version, .. }
            | Decision::Unassign { version, .. }
            | Decision::Fail { version, .. }
            | Decision::PickUp { version, .. }
            | Decision::Complete { version, .. }
            | Decision::Dock { version, .. }
            | Decision::Ready { version, .. }
            | Decision::Ground { version, .. } => *version,
        }
    }

    /// The idempotency key: the same decision on the same version of the same aggregate
    /// has the same key, whichever workflow instance takes it and however often.
    pub fn idempotency_key(&self) -> String {
        let id = match self.subject() {
            Subject::Delivery(id) | Subject::Drone(id) => id,
        };
        format!("workflow:{}:{id}:{}", self.action(), self.version())
    }

    /// A compensation (what `/metrics` counts as one).
    pub fn is_compensation(&self) -> bool {
        matches!(
            self,
            Decision::Unassign { .. } | Decision::Fail { .. } | Decision::Ground { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Subject {
    Delivery(String),
    Drone(String),
}

#[derive(Debug, Clone)]
struct Pending {
    version: u64,
    /// Decided again after this (unless the log shows a newer version first).
    until: DateTime<Utc>,
    /// The drone an assignment reserved.
    drone_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct DroneEntry {
    drone: Drone,
    version: u64,
    /// Where it sits in the index of dispatchable drones.
    indexed: Option<[f64; 3]>,
    /// Whether it is in `active`.
    active: bool,
}

#[derive(Debug, Clone)]
struct DeliveryEntry {
    delivery: Delivery,
    version: u64,
    /// Its place in the queue while it waits for a drone.
    queued: Option<QueueKey>,
    /// Whether a drone of the fleet could ever carry it (checked when no drone fit, until
    /// one could).
    feasible: Option<bool>,
}

/// Queue order: expedited first (unless the policy says otherwise), then the earliest
/// deadline (none last), then the oldest, then the id.
type QueueKey = (bool, DateTime<Utc>, DateTime<Utc>, String);

type IndexPoint = GeomWithData<[f64; 3], String>;

fn distance_2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}

/// An idle drone moves in the index only when it moved farther than this from where it
/// is indexed (reports of drones at their base would otherwise rebuild the index all the
/// time); searches allow for it, so they still find the nearest.
const INDEX_SLACK_KM: f64 = 0.1;

fn chord_to_km(distance_2: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * (distance_2.sqrt() / 2.0).clamp(0.0, 1.0).asin()
}

/// The workflow's state and rules. See the module documentation.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    model: FlightModel,
    policy: DispatchPolicy,
    drones: BTreeMap<String, DroneEntry>,
    /// Deliveries that are not finished.
    deliveries: BTreeMap<String, DeliveryEntry>,
    /// Idle, unreserved drones by where they are.
    idle: RTree<IndexPoint>,
    /// Every drone by its home, to tell whether any could ever carry a delivery.
    homes: RTree<IndexPoint>,
    queue: BTreeSet<QueueKey>,
    /// Queued deliveries not yet checked against the fleet (could any drone carry them?).
    unchecked: BTreeSet<String>,
    /// Queued deliveries the last check found no drone of the fleet could carry (their
    /// failure not yet in the log): checked again on every tick.
    doubtful: BTreeSet<String>,
    /// Drones an undecided assignment holds: drone → delivery.
    reserved: HashMap<String, String>,
    /// Ordered, so that expiries release drones in the same order in every run.
    pending: BTreeMap<Subject, Pending>,
    /// The pending decisions by when they are taken again, so expiring them is cheap.
    expiries: BTreeSet<(DateTime<Utc>, Subject)>,
    /// Drones whose flight rules to look at next (telemetry or status changed).
    to_check: BTreeSet<String>,
    /// Drones on a delivery, returning or charging: looked at on every tick.
    active: BTreeSet<String>,
    /// The longest trip any drone of the fleet could fly (range, and battery with the
    /// reserve): no search looks farther.
    max_reach_km: f64,
    max_payload_kg: f64,
    /// Whether the queue may have become dispatchable since the last decisions.
    dirty: bool,
}

impl Dispatcher {
    pub fn new(model: FlightModel, policy: DispatchPolicy) -> Dispatcher {
        Dispatcher {
            model,
            policy,
            drones: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            idle: RTree::new(),
            homes: RTree::new(),
            queue: BTreeSet::new(),
            unchecked: BTreeSet::new(),
            doubtful: BTreeSet::new(),
            reserved: HashMap::new(),
            pending: BTreeMap::new(),
            expiries: BTreeSet::new(),
            to_check: BTreeSet::new(),
            active: BTreeSet::new(),
            max_reach_km: 0.0,
            max_payload_kg: 0.0,
            dirty: false,
        }
    }

    pub fn model(&self) -> &FlightModel {
        &self.model
    }

    /// A drone as the workflow knows it.
    pub fn drone(&self, id: &str) -> Option<&Drone> {
        self.drones.get(id).map(|e| &e.drone)
    }

    /// A delivery that is not finished, as the workflow knows it.
    pub fn delivery(&self, id: &str) -> Option<&Delivery> {
        self.deliveries.get(id).map(|e| &e.delivery)
    }

    /// Deliveries waiting for a drone.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Folds an event of a drone's stream or telemetry; `version` is the drone's version
    /// after it (telemetry leaves it as it is).
    pub fn apply_drone(&mut self, id: &str, version: u64, event: &Event, at: DateTime<Utc>) {
        if !self.drones.contains_key(id) {
            self.drones.insert(id.to_owned(), DroneEntry::default());
        }
        let Some(entry) = self.drones.get_mut(id) else {
            return;
        };
        let registered = entry.drone.exists();
        let telemetry = matches!(event, Event::DronePositionReported(_));
        if !telemetry && version <= entry.version {
            return; // read twice (a restart of the consumer)
        }
        entry.drone.apply(event, at);
        if !telemetry {
            entry.version = version;
            self.settle_pending(&Subject::Drone(id.to_owned()), version);
        }
        if let Event::DroneAssigned(_) = event {
            // The log decided: the drone is taken, whatever it was reserved for.
            self.reserved.remove(id);
        }
        let Some(entry) = self.drones.get(id) else {
            return;
        };
        if !registered && entry.drone.exists() {
            let drone = &entry.drone;
            self.max_reach_km = self.max_reach_km.max(self.model.reach_km(drone));
            self.max_payload_kg = self.max_payload_kg.max(drone.payload_kg);
            self.homes
                .insert(IndexPoint::new(unit_vector(&drone.home), id.to_owned()));
        }
        let busy = self.reindex(id);
        // An idle drone's report fires no flight rule; anything else may.
        if (busy || !telemetry) && !self.to_check.contains(id) {
            self.to_check.insert(id.to_owned());
        }
    }

    /// Folds an event of a delivery's stream; `version` is the delivery's version after it.
    pub fn apply_delivery(&mut self, id: &str, version: u64, event: &Event, at: DateTime<Utc>) {
        let entry = self
            .deliveries
            .entry(id.to_owned())
            .or_insert_with(|| DeliveryEntry {
                delivery: Delivery::default(),
                version: 0,
                queued: None,
                feasible: None,
            });
        if version <= entry.version {
            return; // read twice (a restart of the consumer)
        }
        entry.delivery.apply(event, at);
        entry.version = version;
        if let Some(key) = entry.queued.take() {
            self.queue.remove(&key);
            self.doubtful.remove(id);
        }
        let stage = entry.delivery.stage;
        let drone_id = entry.delivery.drone_id.clone();
        if stage.is_some_and(Stage::is_terminal) {
            self.deliveries.remove(id);
        } else if stage.is_some_and(Stage::awaits_drone) {
            let key = self.queue_key(id);
            if let (Some(key), Some(entry)) = (key, self.deliveries.get_mut(id)) {
                self.queue.insert(key.clone());
                entry.queued = Some(key);
                if entry.feasible.is_none() && self.policy.auto_assign {
                    self.unchecked.insert(id.to_owned());
                }
                self.dirty = true;
            }
        }
        self.settle_pending(&Subject::Delivery(id.to_owned()), version);
        if let Some(drone_id) = drone_id {
            self.to_check.insert(drone_id);
        }
    }

    fn queue_key(&self, id: &str) -> Option<QueueKey> {
        let d = &self.deliveries.get(id)?.delivery;
        Some((
            !(d.expedited && self.policy.expedited_first),
            d.deadline.unwrap_or(DateTime::<Utc>::MAX_UTC),
            d.created_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
            id.to_owned(),
        ))
    }

    /// A decision the log now shows the effect of (a newer version) is done; so is a
    /// reservation it held.
    fn settle_pending(&mut self, subject: &Subject, version: u64) {
        if self
            .pending
            .get(subject)
            .is_some_and(|p| version > p.version)
            && let Some(done) = self.unhold(subject)
        {
            // A drone the delivery now has stays reserved until its own stream says
            // it is assigned (the two topics are read apart).
            let kept = match (subject, &done.drone_id) {
                (Subject::Delivery(id), Some(drone_id)) => self
                    .deliveries
                    .get(id)
                    .is_some_and(|d| d.delivery.drone_id.as_ref() == Some(drone_id)),
                _ => false,
            };
            if !kept {
                self.release(done.drone_id);
            }
        }
    }

    fn release(&mut self, drone_id: Option<String>) {
        if let Some(drone_id) = drone_id {
            self.reserved.remove(&drone_id);
            self.reindex(&drone_id);
            self.dirty = true;
        }
    }

    /// Puts a drone in the index of dispatchable drones, at its position, or takes it
    /// out; and in the set of drones the ticks look at, or out of it. True when the drone
    /// is busy (on a delivery, returning or charging).
    fn reindex(&mut self, id: &str) -> bool {
        let Some(entry) = self.drones.get_mut(id) else {
            return false;
        };
        let drone = &entry.drone;
        let busy = drone.delivery_id.is_some()
            || matches!(
                drone.status,
                Some(DroneStatus::Returning | DroneStatus::Charging)
            );
        if busy != entry.active {
            entry.active = busy;
            if busy {
                self.active.insert(id.to_owned());
            } else {
                self.active.remove(id);
            }
        }
        let dispatchable = drone.is_idle() && !self.reserved.contains_key(id);
        let point = dispatchable.then(|| unit_vector(&drone.current_location()));
        if dispatchable {
            self.dirty = true; // its position or battery may now fit a waiting delivery
        }
        match (entry.indexed, point) {
            (Some(old), Some(new)) if chord_to_km(distance_2(&old, &new)) <= INDEX_SLACK_KM => {
                return busy;
            }
            (None, None) => return busy,
            _ => {}
        }
        if let Some(old) = entry.indexed.take() {
            self.idle.remove(&IndexPoint::new(old, id.to_owned()));
        }
        if let Some(new) = point {
            self.idle.insert(IndexPoint::new(new, id.to_owned()));
            self.dirty = true;
        }
        entry.indexed = point;
        busy
    }

    /// The nearest idle drone that can fly the delivery now, with its trip.
    pub fn best_drone(&self, delivery: &Delivery, now: DateTime<Utc>) -> Option<(String, Trip)> {
        self.nearest_fit(delivery, now, &BTreeSet::new())
    }

    /// The nearest idle drone not in `taken` that can fly the delivery now. The index
    /// holds drones where they were within `INDEX_SLACK_KM`, so the walk goes on until no
    /// indexed drone can be nearer than the best fit found.
    fn nearest_fit(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        taken: &BTreeSet<String>,
    ) -> Option<(String, Trip)> {
        // The trip is at least the way to the pickup and on to the drop-off: drones
        // farther from the pickup than the longest reach minus that leg cannot fly it.
        let within_km = self.max_reach_km - distance_km(&delivery.pickup, &delivery.dropoff);
        if within_km < 0.0 {
            return None;
        }
        let pickup = unit_vector(&delivery.pickup);
        let mut best: Option<(&str, Trip)> = None;
        for (point, distance_2) in self.idle.nearest_neighbor_iter_with_distance_2(&pickup) {
            let indexed_km = chord_to_km(distance_2);
            let beyond = best.map_or(within_km, |(_, trip)| trip.to_pickup_km.min(within_km));
            if indexed_km - INDEX_SLACK_KM > beyond {
                break;
            }
            if taken.contains(&point.data) {
                continue;
            }
            let Some(entry) = self.drones.get(&point.data) else {
                continue;
            };
            if let Ok(trip) = self.model.fitness(&entry.drone, delivery, now)
                && best.is_none_or(|(_, b)| trip.to_pickup_km < b.to_pickup_km)
            {
                best = Some((&point.data, trip));
            }
        }
        best.map(|(id, trip)| (id.to_owned(), trip))
    }

    /// Whether any drone of the fleet could carry the delivery at its best (at home,
    /// charged). A round trip home → pickup → drop-off → home is at least twice the longer
    /// of home–pickup and pickup–drop-off (triangle inequality), which bounds the search.
    fn any_could_carry(&self, delivery: &Delivery) -> bool {
        let leg_km = distance_km(&delivery.pickup, &delivery.dropoff);
        if delivery.package_weight_kg > self.max_payload_kg || 2.0 * leg_km > self.max_reach_km {
            return false;
        }
        let pickup = unit_vector(&delivery.pickup);
        for (point, distance_2) in self.homes.nearest_neighbor_iter_with_distance_2(&pickup) {
            if 2.0 * chord_to_km(distance_2) > self.max_reach_km {
                break;
            }
            if let Some(entry) = self.drones.get(&point.data)
                && self.model.could_ever_carry(&entry.drone, delivery)
            {
                return true;
            }
        }
        false
    }

    fn waits(&self, subject: &Subject, now: DateTime<Utc>) -> bool {
        self.pending.get(subject).is_some_and(|p| now < p.until)
    }

    /// What to do now. `tick` also runs the rules that depend on time alone (silent
    /// drones, charging, deadlines, future pickups); without it only what the events
    /// since the last call changed is looked at.
    pub fn decide(&mut self, now: DateTime<Utc>, tick: bool) -> Vec<Decision> {
        self.expire(now);
        let mut decisions = Vec::new();
        let mut drones = std::mem::take(&mut self.to_check);
        if tick {
            drones.extend(self.active.iter().cloned());
        }
        for id in drones {
            if let Some(decision) = self.flight_rule(&id, now) {
                decisions.push(decision);
            }
        }
        if (tick || self.dirty) && self.policy.auto_assign {
            self.dispatch(now, tick, &mut decisions);
        }
        self.dirty = false;
        for decision in &decisions {
            self.hold(decision, now);
        }
        decisions
    }

    /// Tells how a decision went: refused (or not sent), it is decided again after the
    /// policy's pause; accepted, it waits for the log.
    pub fn settle(&mut self, decision: &Decision, accepted: bool, now: DateTime<Utc>) {
        if accepted {
            return;
        }
        let subject = decision.subject();
        if let Some(pending) = self.pending.get_mut(&subject) {
            self.expiries.remove(&(pending.until, subject.clone()));
            pending.until = now + self.policy.retry_after;
            self.expiries.insert((pending.until, subject));
        }
    }

    /// Forgets a pending decision.
    fn unhold(&mut self, subject: &Subject) -> Option<Pending> {
        let pending = self.pending.remove(subject)?;
        self.expiries.remove(&(pending.until, subject.clone()));
        Some(pending)
    }

    fn hold(&mut self, decision: &Decision, now: DateTime<Utc>) {
        let drone_id = match decision {
            Decision::Assign {
                drone_id,
                delivery_id,
                ..
            } => {
                self.reserved.insert(drone_id.clone(), delivery_id.clone());
                self.reindex(drone_id);
                Some(drone_id.clone())
            }
            _ => None,
        };
        let subject = decision.subject();
        self.unhold(&subject);
        let until = now + self.policy.confirm_within;
        self.expiries.insert((until, subject.clone()));
        self.pending.insert(
            subject,
            Pending {
                version: decision.version(),
                until,
                drone_id,
            },
        );
    }

    /// Decisions whose time ran out are forgotten, so they are taken again.
    fn expire(&mut self, now: DateTime<Utc>) {
        while let Some((until, _)) = self.expiries.first()
            && *until <= now
        {
            let Some((_, subject)) = self.expiries.pop_first() else {
                break;
            };
            if let Some(p) = self.pending.remove(&subject) {
                self.release(p.drone_id);
            }
            // Look at it again at once, whichever aggregate the decision addressed.
            let drone_id = match &subject {
                Subject::Drone(id) => Some(id.clone()),
                Subject::Delivery(id) => self
                    .deliveries
                    .get(id)
                    .and_then(|d| d.delivery.drone_id.clone()),
            };
            self.to_check.extend(drone_id);
            self.dirty = true;
        }
    }

    /// The flight and compensation rules of one drone.
    fn flight_rule(&self, id: &str, now: DateTime<Utc>) -> Option<Decision> {
        let entry = self.drones.get(id)?;
        let drone = &entry.drone;
        if self.waits(&Subject::Drone(id.to_owned()), now) {
            return None;
        }
        if let Some(delivery_id) = &drone.delivery_id {
            let delivery = self.deliveries.get(delivery_id)?;
            if self.waits(&Subject::Delivery(delivery_id.clone()), now) {
                return None;
            }
            return self.mission_rule(id, entry, delivery_id, delivery, now);
        }
        match drone.status? {
            DroneStatus::Returning
                if drone
                    .position
                    .is_some_and(|position| self.model.arrived(&position, &drone.home)) =>
            {
                Some(Decision::Dock {
                    drone_id: id.to_owned(),
                    version: entry.version,
                })
            }
            DroneStatus::Charging if self.model.is_charged(drone, now) => Some(Decision::Ready {
                drone_id: id.to_owned(),
                version: entry.version,
            }),
            _ => None,
        }
    }

    fn mission_rule(
        &self,
        drone_id: &str,
        entry: &DroneEntry,
        delivery_id: &str,
        delivery: &DeliveryEntry,
        now: DateTime<Utc>,
    ) -> Option<Decision> {
        let drone = &entry.drone;
        let d = &delivery.delivery;
        if d.drone_id.as_deref() != Some(drone_id) {
            return None; // the two streams disagree until the other event is read
        }
        let version = delivery.version;
        let delivery_id = delivery_id.to_owned();
        let stage = d.stage?;
        if drone.status == Some(DroneStatus::Grounded) {
            let reason = "its drone was grounded".to_owned();
            return Some(if stage == Stage::HeadedToPickup {
                Decision::Unassign {
                    delivery_id,
                    version,
                    reason,
                }
            } else {
                Decision::Fail {
                    delivery_id,
                    version,
                    reason: format!("{reason} after pickup"),
                }
            });
        }
        let leg_began = match stage {
            Stage::HeadedToPickup => d.assigned_at,
            _ => d.picked_up_at,
        }?;
        let heard = drone.position_at.map_or(leg_began, |at| at.max(leg_began));
        if now - heard > self.policy.silent_after {
            return Some(Decision::Ground {
                drone_id: drone_id.to_owned(),
                version: entry.version,
                reason: format!(
                    "no telemetry for {} s on delivery {delivery_id}",
                    (now - heard).num_seconds()
                ),
            });
        }
        let position = drone.position?;
        let reported_since = drone
            .position_at
            .is_some_and(|at| at >= whole_second(leg_began));
        match stage {
            Stage::HeadedToPickup if reported_since && self.model.arrived(&position, &d.pickup) => {
                Some(Decision::PickUp {
                    delivery_id,
                    version,
                })
            }
            Stage::HeadedToDropoff
                if reported_since
                    && self.model.arrived(&position, &d.dropoff)
                    && d.confirmation_required == schemas::events::ConfirmationType::None =>
            {
                Some(Decision::Complete {
                    delivery_id,
                    version,
                    location: position,
                    at: drone.position_at.unwrap_or(now),
                })
            }
            _ => None,
        }
    }

    /// Waiting deliveries, in priority order, to the nearest drone that fits, while idle
    /// drones are left; a tick also fails deliveries past their deadline and checks
    /// whether any drone could ever carry those no idle drone fits. Its cost follows the
    /// idle drones and the deadlines passed, not the backlog: a queue of 100K deliveries
    /// and no idle drone costs nothing between ticks and little on one.
    fn dispatch(&mut self, now: DateTime<Utc>, tick: bool, decisions: &mut Vec<Decision>) {
        let mut reserved: BTreeSet<String> = BTreeSet::new();
        let mut infeasible: Vec<String> = Vec::new();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        if tick {
            // Past their deadline: within each half of the queue (the first element of
            // its key) the earliest deadlines come first, so these are two prefixes.
            for half_key in [false, true] {
                let from = (
                    half_key,
                    DateTime::<Utc>::MIN_UTC,
                    DateTime::<Utc>::MIN_UTC,
                    String::new(),
                );
                for (half, deadline, _, id) in self.queue.range(from..) {
                    if *half != half_key || *deadline > now {
                        break;
                    }
                    let Some(entry) = self.deliveries.get(id) else {
                        continue;
                    };
                    if self.waits(&Subject::Delivery(id.clone()), now) {
                        continue;
                    }
                    decisions.push(Decision::Fail {
                        delivery_id: id.clone(),
                        version: entry.version,
                        reason: "no drone was free before the deadline".into(),
                    });
                    failed.insert(id.clone());
                }
            }
        }
        for (_, _, _, id) in &self.queue {
            if self.idle.size() <= reserved.len() {
                break; // no idle drone left
            }
            if failed.contains(id) {
                continue;
            }
            let Some(entry) = self.deliveries.get(id) else {
                continue;
            };
            if self.waits(&Subject::Delivery(id.clone()), now) {
                continue;
            }
            let d = &entry.delivery;
            match self.nearest_fit(d, now, &reserved) {
                Some((drone_id, trip)) => {
                    if let (Some(pickup_time), Some(drone)) = (d.pickup_time, self.drone(&drone_id))
                        && now + self.model.lead_time(drone, &trip, now) + self.policy.margin
                            < pickup_time
                    {
                        continue; // not yet: it would wait at the pickup
                    }
                    reserved.insert(drone_id.clone());
                    decisions.push(Decision::Assign {
                        delivery_id: id.clone(),
                        version: entry.version,
                        drone_id,
                    });
                }
                None if tick && entry.feasible != Some(true) => infeasible.push(id.clone()),
                None => {}
            }
        }
        if tick {
            // Found infeasible before and still waiting: the fleet may have changed.
            for id in &self.doubtful {
                if failed.contains(id)
                    || infeasible.contains(id)
                    || self.waits(&Subject::Delivery(id.clone()), now)
                {
                    continue;
                }
                infeasible.push(id.clone());
            }
        }
        // New deliveries no drone was found for in this pass (the pass may have stopped
        // before them) are checked now, once.
        for id in std::mem::take(&mut self.unchecked) {
            let assigned = decisions
                .iter()
                .any(|d| matches!(d, Decision::Assign { delivery_id, .. } if *delivery_id == id));
            if !assigned && !infeasible.contains(&id) {
                infeasible.push(id);
            }
        }
        // Deliveries no idle drone fits: can any drone ever carry them?
        for id in infeasible {
            let Some(entry) = self.deliveries.get(&id) else {
                continue;
            };
            if self.homes.size() == 0 {
                continue; // no fleet yet (telemetry may come before registration): wait
            }
            let feasible = self.any_could_carry(&entry.delivery);
            let version = entry.version;
            if let Some(entry) = self.deliveries.get_mut(&id) {
                entry.feasible = Some(feasible);
                if feasible || entry.queued.is_none() {
                    self.doubtful.remove(&id);
                } else {
                    self.doubtful.insert(id.clone());
                }
            }
            if !feasible {
                decisions.push(Decision::Fail {
                    delivery_id: id,
                    version,
                    reason: "no drone of the fleet can carry it: the package is too heavy or the route too long for every drone".into(),
                });
            }
        }
    }
}
