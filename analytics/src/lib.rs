//! Analytics over the whole history (SPEC §6, issue 12): every delivery and drone event
//! read through the `EventLog` port (so a stopped data directory and Kafka alike), folded
//! into what each delivery went through, and reported: deliveries per day, the on-time
//! rate against deadlines, the time from scheduling to assignment, to pickup and to
//! delivery, drone utilisation, cancellations and failures with their reasons, and
//! per-account totals.

mod chart;
mod whatif;

pub use chart::{ChartError, draw as draw_chart};
pub use whatif::{AsFlown, Changes, MAX_FLEET, Outcome, Recording, Setting, WhatIfReport};

use chrono::{DateTime, NaiveDate, Utc};
use schemas::Codec;
use schemas::events::{Envelope, Event, Topic};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use storage::{Admitted, EventLog, StorageError, Validity};

/// Records read per call to the log.
const READ_BATCH: usize = 4096;
/// How often a read tells its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What one delivery went through.
#[derive(Clone, Debug, Default)]
struct Trip {
    owner: String,
    created: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    first_assigned: Option<DateTime<Utc>>,
    picked_up: Option<DateTime<Utc>>,
    completed: Option<DateTime<Utc>>,
    cancelled: Option<(DateTime<Utc>, String)>,
    failed: Option<(DateTime<Utc>, String)>,
    /// The assignment in progress: drone, since, route km.
    assigned: Option<(String, DateTime<Utc>, f64)>,
    /// Drone km flown for it (its route, once completed).
    km: f64,
}

/// What each drone was busy with.
#[derive(Clone, Debug, Default)]
struct Use {
    km: f64,
    hours: f64,
}

/// The fold of the history.
#[derive(Debug, Default)]
pub struct Analytics {
    trips: HashMap<String, Trip>,
    drones: BTreeMap<String, Use>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    /// Events folded.
    pub events: u64,
}

impl Analytics {
    /// Folds one event of the deliveries or drones topic (others are ignored); it takes
    /// the event, so its strings move instead of being copied.
    pub fn fold(&mut self, topic: Topic, envelope: Envelope) {
        let at = envelope.metadata.occurred_at;
        self.events += 1;
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        if topic == Topic::Drones {
            if let Event::DroneRegistered(_) = &envelope.event {
                self.drones
                    .entry(envelope.metadata.aggregate_id)
                    .or_default();
            }
            return;
        }
        if topic != Topic::Deliveries || matches!(envelope.event, Event::PackageRegistered(_)) {
            return;
        }
        // The event is ours: its id moves into the map, no copy.
        let trip = self
            .trips
            .entry(envelope.metadata.aggregate_id)
            .or_default();
        let release = |trip: &mut Trip, flown: bool, drones: &mut BTreeMap<String, Use>| {
            if let Some((drone, since, km)) = trip.assigned.take() {
                let busy = match drones.get_mut(&drone) {
                    Some(busy) => busy,
                    None => drones.entry(drone).or_default(),
                };
                busy.hours += hours(at - since);
                if flown {
                    busy.km += km;
                    trip.km += km;
                }
            }
        };
        match envelope.event {
            Event::DeliveryCreated(e) => {
                trip.owner = e.owner_id;
                trip.created = Some(at);
                trip.deadline = e.deadline;
            }
            Event::DeliveryRescheduled(e) if e.deadline.is_some() => trip.deadline = e.deadline,
            Event::DroneAssigned(e) => {
                trip.first_assigned.get_or_insert(at);
                trip.assigned = Some((e.drone_id, at, e.route_km));
            }
            Event::DroneUnassigned(_) | Event::AssignmentAbandoned(_) => {
                release(trip, false, &mut self.drones)
            }
            Event::DeliveryPickedUp(_) => trip.picked_up = Some(at),
            Event::DeliveryCompleted(_) => {
                trip.completed = Some(at);
                release(trip, true, &mut self.drones);
            }
            Event::DeliveryCancelled(e) => {
                trip.cancelled = Some((at, e.reason.unwrap_or_else(|| "none given".into())));
                release(trip, false, &mut self.drones);
            }
            Event::DeliveryFailed(e) => {
                trip.failed = Some((at, e.reason));
                release(trip, false, &mut self.drones);
            }
            _ => {}
        }
    }

    /// Reads the deliveries and drones topics to their ends as of the start (see
    /// [`read`]).
    pub async fn read(
        log: Arc<dyn EventLog>,
        codec: &Codec,
        readers: usize,
        progress: impl FnMut(u64, u64),
    ) -> Result<Analytics, StorageError> {
        read(log, codec, readers, progress).await
    }

    /// Adds another fold of other partitions to this one.
    fn merge(&mut self, other: Analytics) {
        self.trips.extend(other.trips);
        for (drone, used) in other.drones {
            let mine = self.drones.entry(drone).or_default();
            mine.km += used.km;
            mine.hours += used.hours;
        }
        self.first = self.first.into_iter().chain(other.first).min();
        self.last = self.last.into_iter().chain(other.last).max();
        self.events += other.events;
    }

    /// The report of the deliveries scheduled in [`from`, `to`) (unbounded when `None`).
    pub fn report(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Report {
        let chosen: Vec<&Trip> = self
            .trips
            .values()
            .filter(|t| {
                t.created
                    .is_some_and(|c| from.is_none_or(|f| c >= f) && to.is_none_or(|t| c < t))
            })
            .collect();
        let window_from = from.or(self.first);
        let window_to = to.or(self.last);
        let window_hours = match (window_from, window_to) {
            (Some(f), Some(t)) if t > f => hours(t - f),
            _ => 0.0,
        };
        let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
        let mut accounts: BTreeMap<String, AccountTotals> = BTreeMap::new();
        let mut cancellations: BTreeMap<String, u64> = BTreeMap::new();
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        let (mut to_assignment, mut to_pickup, mut to_delivery) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut totals = Totals::default();
        let mut on_time = OnTime::default();
        for trip in &chosen {
            let Some(created) = trip.created else {
                continue;
            };
            totals.scheduled += 1;
            let day = days.entry(created.date_naive()).or_default();
            day.scheduled += 1;
            let account = accounts.entry(trip.owner.clone()).or_default();
            account.scheduled += 1;
            account.drone_km += trip.km;
            let since =
                |t: DateTime<Utc>| (t - created).num_microseconds().unwrap_or(0) as f64 / 1e6;
            if let Some(t) = trip.first_assigned {
                to_assignment.push(since(t));
            }
            if let Some(t) = trip.picked_up {
                to_pickup.push(since(t));
            }
            if let Some(done) = trip.completed {
                to_delivery.push(since(done));
                totals.completed += 1;
                day.completed += 1;
                account.completed += 1;
                if let Some(deadline) = trip.deadline {
                    on_time.with_deadline += 1;
                    day.with_deadline += 1;
                    if done <= deadline {
                        on_time.on_time += 1;
                        day.on_time += 1;
                    }
                }
            } else if let Some((_, reason)) = &trip.cancelled {
                totals.cancelled += 1;
                account.cancelled += 1;
                *cancellations.entry(reason.clone()).or_default() += 1;
            } else if let Some((_, reason)) = &trip.failed {
                totals.failed += 1;
                account.failed += 1;
                *failures.entry(reason.clone()).or_default() += 1;
                // A failure is a delivery that missed its deadline too.
                if trip.deadline.is_some() {
                    on_time.with_deadline += 1;
                    day.with_deadline += 1;
                }
            } else {
                totals.in_progress += 1;
            }
        }
        on_time.rate = ratio(on_time.on_time, on_time.with_deadline);
        // A drone still on a delivery at the end has been busy since it was assigned.
        let mut open: HashMap<&str, f64> = HashMap::new();
        if let Some(end) = window_to {
            for (drone, since, _) in self.trips.values().filter_map(|t| t.assigned.as_ref()) {
                *open.entry(drone.as_str()).or_default() += hours(end - *since);
            }
        }
        let drones: Vec<DroneUse> = self
            .drones
            .iter()
            .map(|(id, u)| {
                let busy = u.hours + open.get(id.as_str()).copied().unwrap_or(0.0);
                DroneUse {
                    drone_id: id.clone(),
                    km_flown: round(u.km, 3),
                    hours_assigned: round(busy, 4),
                    busy_share: ratio_f(busy, window_hours),
                }
            })
            .collect();
        let fleet_hours: f64 = drones.iter().map(|d| d.hours_assigned).sum();
        Report {
            from: window_from,
            to: window_to,
            events: self.events,
            deliveries: totals,
            on_time,
            per_day: days
                .into_iter()
                .map(|(day, d)| DayLine {
                    day,
                    scheduled: d.scheduled,
                    completed: d.completed,
                    on_time_rate: ratio(d.on_time, d.with_deadline),
                })
                .collect(),
            to_assignment: Durations::of(to_assignment),
            to_pickup: Durations::of(to_pickup),
            to_delivery: Durations::of(to_delivery),
            fleet: FleetUse {
                drones: drones.len() as u64,
                km_flown: round(drones.iter().map(|d| d.km_flown).sum(), 3),
                hours_assigned: round(fleet_hours, 4),
                busy_share: ratio_f(fleet_hours, window_hours * drones.len() as f64),
            },
            drones,
            cancellations: reasons(cancellations),
            failures: reasons(failures),
            accounts: accounts
                .into_iter()
                .map(|(account_id, t)| AccountLine {
                    account_id,
                    drone_km: round(t.drone_km, 3),
                    ..t
                })
                .collect(),
        }
    }
}

/// A fold of the history that [`read`] can run over partitions in parallel: each reader
/// folds its partitions, and the folds are merged.
pub trait Fold: Default + Send + 'static {
    /// The topics it reads.
    const TOPICS: &'static [Topic];
    fn fold(&mut self, topic: Topic, envelope: Envelope);
    /// Adds the fold of other partitions.
    fn merge(&mut self, other: Self);
}

impl Fold for Analytics {
    const TOPICS: &'static [Topic] = &[Topic::Drones, Topic::Deliveries];

    fn fold(&mut self, topic: Topic, envelope: Envelope) {
        Analytics::fold(self, topic, envelope);
    }

    fn merge(&mut self, other: Analytics) {
        Analytics::merge(self, other);
    }
}

/// Reads `F`'s topics to their ends as of the start, partitions shared among `readers`
/// tasks (each folds its own and the folds are merged: a delivery lives in one
/// partition, a drone's use is a sum), and tells `progress` (records read, of the total)
/// as it goes.
pub async fn read<F: Fold>(
    log: Arc<dyn EventLog>,
    codec: &Codec,
    readers: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<F, StorageError> {
    let mut parts = Vec::new();
    let mut total = 0;
    for &topic in F::TOPICS {
        for partition in 0..log.partitions(topic.name()).await? {
            let end = log.end_offset(topic.name(), partition).await?;
            total += end;
            parts.push((topic, partition, end));
        }
    }
    // The biggest partitions first, so the readers finish together.
    parts.sort_by_key(|&(_, _, end)| std::cmp::Reverse(end));
    let parts = Arc::new(Mutex::new(parts));
    let read = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..readers.max(1) {
        let (log, codec) = (log.clone(), codec.clone());
        let (parts, read) = (parts.clone(), read.clone());
        tasks.push(tokio::spawn(async move {
            let mut fold = F::default();
            loop {
                let next = parts.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let Some((topic, partition, end)) = next else {
                    return Ok::<_, StorageError>(fold);
                };
                read_partition(
                    &mut fold,
                    log.as_ref(),
                    &codec,
                    topic,
                    partition,
                    end,
                    &read,
                )
                .await?;
            }
        }));
    }
    let mut joined = futures_util::future::try_join_all(tasks);
    let folds = loop {
        tokio::select! {
            folds = &mut joined => break folds,
            _ = tokio::time::sleep(PROGRESS_EVERY) => progress(read.load(Ordering::Relaxed), total),
        }
    };
    let folds =
        folds.map_err(|e| StorageError::Engine(format!("an analytics reader failed: {e}")))?;
    let mut merged = F::default();
    for fold in folds {
        merged.merge(fold?);
    }
    progress(read.load(Ordering::Relaxed), total);
    Ok(merged)
}

/// Folds one partition up to `end`, counting what it reads into `read`.
async fn read_partition<F: Fold>(
    fold: &mut F,
    log: &dyn EventLog,
    codec: &Codec,
    topic: Topic,
    partition: u32,
    end: u64,
    read: &AtomicU64,
) -> Result<(), StorageError> {
    // Markers are per partition: this partition's own fold of them is enough.
    let mut validity = Validity::default();
    let mut next = 0;
    while next < end {
        let records = log.read(topic.name(), partition, next, READ_BATCH).await?;
        let Some(last) = records.last() else { break };
        next = last.offset + 1;
        let mut counted = 0;
        for record in records.iter().filter(|r| r.offset < end) {
            counted += 1;
            if validity.admit(record) != Admitted::Valid {
                continue;
            }
            // An undecodable record is the projectors' dead letter; skip it here.
            if let Ok(envelopes) = codec.decode_all(&record.value) {
                for envelope in envelopes {
                    fold.fold(topic, envelope);
                }
            }
        }
        read.fetch_add(counted, Ordering::Relaxed);
    }
    Ok(())
}

fn hours(span: chrono::TimeDelta) -> f64 {
    span.num_microseconds().unwrap_or(0).max(0) as f64 / 3.6e9
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| round(part as f64 / whole as f64, 4))
}

fn ratio_f(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| round(part / whole, 4))
}

fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

fn reasons(counts: BTreeMap<String, u64>) -> Vec<Reason> {
    let mut all: Vec<Reason> = counts
        .into_iter()
        .map(|(reason, count)| Reason { reason, count })
        .collect();
    all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    all
}

#[derive(Default)]
struct Day {
    scheduled: u64,
    completed: u64,
    with_deadline: u64,
    on_time: u64,
}

/// What `analytics` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Events read (of every delivery and drone, not only the window's).
    pub events: u64,
    pub deliveries: Totals,
    pub on_time: OnTime,
    pub per_day: Vec<DayLine>,
    /// Seconds from scheduling to the first assignment, to pickup, to delivery.
    pub to_assignment: Durations,
    pub to_pickup: Durations,
    pub to_delivery: Durations,
    pub fleet: FleetUse,
    pub drones: Vec<DroneUse>,
    pub cancellations: Vec<Reason>,
    pub failures: Vec<Reason>,
    pub accounts: Vec<AccountLine>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub scheduled: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub in_progress: u64,
}

/// Completed by the deadline, among deliveries with one that completed or failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnTime {
    pub with_deadline: u64,
    pub on_time: u64,
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayLine {
    pub day: NaiveDate,
    pub scheduled: u64,
    pub completed: u64,
    pub on_time_rate: Option<f64>,
}

/// Seconds: how many, their mean, median and 95th percentile (nearest rank).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    pub count: u64,
    pub mean_secs: Option<f64>,
    pub p50_secs: Option<f64>,
    pub p95_secs: Option<f64>,
}

impl Durations {
    fn of(mut secs: Vec<f64>) -> Durations {
        if secs.is_empty() {
            return Durations::default();
        }
        secs.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * secs.len() as f64).ceil() as usize).clamp(1, secs.len()) - 1;
            round(secs[i], 3)
        };
        Durations {
            count: secs.len() as u64,
            mean_secs: Some(round(secs.iter().sum::<f64>() / secs.len() as f64, 3)),
            p50_secs: Some(rank(0.5)),
            p95_secs: Some(rank(0.95)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetUse {
    pub drones: u64,
    pub km_flown: f64,
    pub hours_assigned: f64,
    /// Hours assigned over the drones' hours in the window.
    pub busy_share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DroneUse {
    pub drone_id: String,
    /// Route km of the deliveries it completed.
    pub km_flown: f64,
    /// From assignment to completion, unassignment, cancellation or failure (or to the
    /// end of the window, for a delivery still under way).
    pub hours_assigned: f64,
    pub busy_share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    pub reason: String,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLine {
    pub account_id: String,
    pub scheduled: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub drone_km: f64,
}

type AccountTotals = AccountLine;

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x}"))
}

impl Report {
    /// For a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let when = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".into(), |t| t.to_rfc3339());
        let _ = writeln!(
            out,
            "history {} .. {} ({} events)",
            when(self.from),
            when(self.to),
            self.events
        );
        let d = &self.deliveries;
        let _ = writeln!(
            out,
            "deliveries: {} scheduled, {} completed, {} cancelled, {} failed, {} in progress",
            d.scheduled, d.completed, d.cancelled, d.failed, d.in_progress
        );
        let _ = writeln!(
            out,
            "on time: {} of {} with a deadline ({})",
            self.on_time.on_time,
            self.on_time.with_deadline,
            self.on_time
                .rate
                .map_or_else(|| "-".into(), |r| format!("{:.1} %", r * 100.0))
        );
        let _ = writeln!(
            out,
            "\n{:<12} {:>9} {:>9} {:>8}",
            "day", "scheduled", "completed", "on time"
        );
        for day in &self.per_day {
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>9} {:>8}",
                day.day.to_string(),
                day.scheduled,
                day.completed,
                day.on_time_rate
                    .map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
            );
        }
        let _ = writeln!(
            out,
            "\n{:<22} {:>6} {:>10} {:>10} {:>10}",
            "seconds from scheduling", "count", "mean", "p50", "p95"
        );
        for (name, d) in [
            ("to assignment", &self.to_assignment),
            ("to pickup", &self.to_pickup),
            ("to delivery", &self.to_delivery),
        ] {
            let _ = writeln!(
                out,
                "{:<22} {:>6} {:>10} {:>10} {:>10}",
                name,
                d.count,
                opt(d.mean_secs),
                opt(d.p50_secs),
                opt(d.p95_secs)
            );
        }
        let f = &self.fleet;
        let _ = writeln!(
            out,
            "\nfleet: {} drones, {} km flown, {} h assigned, busy {}",
            f.drones,
            f.km_flown,
            f.hours_assigned,
            f.busy_share
                .map_or_else(|| "-".into(), |s| format!("{:.1} %", s * 100.0))
        );
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>8}",
            "drone", "km", "hours", "busy"
        );
        for u in &self.drones {
            let _ = writeln!(
                out,
                "{:<24} {:>10} {:>10} {:>8}",
                u.drone_id,
                u.km_flown,
                u.hours_assigned,
                u.busy_share
                    .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0))
            );
        }
        for (name, reasons) in [
            ("cancelled", &self.cancellations),
            ("failed", &self.failures),
        ] {
            if !reasons.is_empty() {
                let _ = writeln!(out, "\n{name}:");
                for r in reasons {
                    let _ = writeln!(out, "  {:>6}  {}", r.count, r.reason);
                }
            }
        }
        let _ = writeln!(
            out,
            "\n{:<38} {:>9} {:>9} {:>9} {:>6} {:>10}",
            "account", "scheduled", "completed", "cancelled", "failed", "drone km"
        );
        for a in &self.accounts {
            let _ = writeln!(
                out,
                "{:<38} {:>9} {:>9} {:>9} {:>6} {:>10}",
                a.account_id, a.scheduled, a.completed, a.cancelled, a.failed, a.drone_km
            );
        }
        out
    }

    /// One `section,key,metric,value` row per number, for spreadsheets.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,key,metric,value\n");
        let mut row = |section: &str, key: &str, metric: &str, value: String| {
            let quote = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_owned()
                }
            };
            let _ = writeln!(out, "{},{},{},{}", section, quote(key), metric, value);
        };
        let d = &self.deliveries;
        for (metric, v) in [
            ("scheduled", d.scheduled),
            ("completed", d.completed),
            ("cancelled", d.cancelled),
            ("failed", d.failed),
            ("inProgress", d.in_progress),
        ] {
            row("deliveries", "", metric, v.to_string());
        }
        row(
            "onTime",
            "",
            "withDeadline",
            self.on_time.with_deadline.to_string(),
        );
        row("onTime", "", "onTime", self.on_time.on_time.to_string());
        row("onTime", "", "rate", opt(self.on_time.rate));
        for day in &self.per_day {
            let key = day.day.to_string();
            row("perDay", &key, "scheduled", day.scheduled.to_string());
            row("perDay", &key, "completed", day.completed.to_string());
            row("perDay", &key, "onTimeRate", opt(day.on_time_rate));
        }
        for (key, durations) in [
            ("toAssignment", &self.to_assignment),
            ("toPickup", &self.to_pickup),
            ("toDelivery", &self.to_delivery),
        ] {
            row("durations", key, "count", durations.count.to_string());
            row("durations", key, "meanSecs", opt(durations.mean_secs));
            row("durations", key, "p50Secs", opt(durations.p50_secs));
            row("durations", key, "p95Secs", opt(durations.p95_secs));
        }
        for u in &self.drones {
            row("drones", &u.drone_id, "kmFlown", u.km_flown.to_string());
            row(
                "drones",
                &u.drone_id,
                "hoursAssigned",
                u.hours_assigned.to_string(),
            );
            row("drones", &u.drone_id, "busyShare", opt(u.busy_share));
        }
        for r in &self.cancellations {
            row("cancellations", &r.reason, "count", r.count.to_string());
        }
        for r in &self.failures {
            row("failures", &r.reason, "count", r.count.to_string());
        }
        for a in &self.accounts {
            row(
                "accounts",
                &a.account_id,
                "scheduled",
                a.scheduled.to_string(),
            );
            row(
                "accounts",
                &a.account_id,
                "completed",
                a.completed.to_string(),
            );
            row(
                "accounts",
                &a.account_id,
                "cancelled",
                a.cancelled.to_string(),
            );
            row("accounts", &a.account_id, "failed", a.failed.to_string());
            row("accounts", &a.account_id, "droneKm", a.drone_km.to_string());
        }
        out
    }
}
