//! `drone-delivery simulate` and `serve --demo`: a customer and a fleet that talk to the
//! API like real clients, so the system can be watched and loaded (SPEC §6).
//!
//! The simulator registers an account and a fleet around a city, schedules deliveries at
//! a fixed rate, and flies whatever the workflow assigns to its drones along great
//! circles (home → pickup → drop-off → home), posting their telemetry in batches about
//! once a second. It decides nothing itself: it learns each drone's assignment, pickup
//! and completion from the query API, and the workflow picks up and completes each
//! delivery from the telemetry alone. `--speedup` moves the drones faster than their
//! speed (time stamps stay real: the server's clock judges them); charging runs on the
//! server's clock, unchanged.

use crate::Settings;
use crate::keys;
use crate::settings::Role;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use domain::{DroneStatus, Location, distance_km, toward};
use futures_util::StreamExt;
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Cruise altitude (m): any report above 0 is "in flight" to the ETA model.
const CRUISE_M: f64 = 60.0;
/// Altitude (m) while handing a package over: still airborne, at the spot.
const HOVER_M: f64 = 10.0;
/// Readings per telemetry request (the server takes at most 1000).
const BATCH: usize = 500;
/// Items per page when reading the fleet and the account's deliveries (the most a page holds).
const PAGE: usize = 500;
/// Requests at once while registering the fleet or fetching deliveries.
const CONCURRENCY: usize = 16;
/// Errors logged one by one; later ones are only counted (a dead server must not flood).
const LOGGED_ERRORS: u64 = 10;

/// What to simulate, and against which server.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The server's base URL (`http://127.0.0.1:8080`).
    pub url: String,
    pub operator_key: String,
    pub drones: usize,
    /// Deliveries scheduled per second.
    pub rate: f64,
    /// Drones move this many times their speed.
    pub speedup: f64,
    /// `None`: until stopped.
    pub duration: Option<Duration>,
    /// Scheduling stops after this many deliveries, and the run once they are delivered.
    pub max_deliveries: Option<u64>,
    /// No delivery is scheduled while this many of the account's wait for a drone.
    pub max_waiting: Option<usize>,
    /// The city's centre (latitude, longitude).
    pub city: (f64, f64),
    /// Homes, pickups and drop-offs lie within this distance of the centre.
    pub radius_km: f64,
    /// Drone ids are `<fleet>-001`…; drones already registered under them are adopted.
    pub fleet: String,
    /// How fast a drone on its charger gains battery (the server's setting, so that the
    /// simulated battery agrees with the server's estimate).
    pub charge_pct_per_minute: f64,
    /// Battery used per km; `None`: a full battery flies the drone's range (as the server).
    pub drain_pct_per_km: Option<f64>,
    pub seed: u64,
    /// How often a progress line is logged.
    pub progress_every: Duration,
}

impl SimConfig {
    /// Checks that a server with these settings can run the demo in-process.
    pub fn check_demo(settings: &Settings) -> anyhow::Result<()> {
        if !settings.runs(Role::CommandApi) || !settings.runs(Role::QueryApi) {
            bail!(
                "--demo flies its drones through this process's command and query APIs: run it with the command-api and query-api roles"
            );
        }
        Ok(())
    }

    /// The demo `serve --demo` runs against its own address: a dozen drones over
    /// Seattle, a delivery every two seconds, until the server stops. Its fleet has fixed
    /// ids, so a restarted demo flies the drones it registered before.
    pub fn demo(settings: &Settings, addr: SocketAddr) -> anyhow::Result<SimConfig> {
        Ok(SimConfig {
            url: crate::startup::local_url(addr),
            operator_key: keys::operator_key(settings)?,
            drones: 12,
            rate: 0.5,
            speedup: 5.0,
            duration: None,
            max_deliveries: None,
            // The fleet delivers fewer than are scheduled: keep the queue short.
            max_waiting: Some(24),
            city: SEATTLE,
            radius_km: 3.0,
            fleet: "demo".into(),
            charge_pct_per_minute: settings.flight.charge_pct_per_minute,
            drain_pct_per_km: settings.flight.drain_pct_per_km,
            seed: random_seed(),
            // It runs as long as the server: a line a minute, not a flood.
            progress_every: Duration::from_secs(60),
        })
    }
}

/// Seattle downtown.
pub const SEATTLE: (f64, f64) = (47.61, -122.33);

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub drones: usize,
    pub scheduled: u64,
    pub completed: u64,
    /// Telemetry readings the server accepted, and the requests that carried them.
    pub readings: u64,
    pub batches: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulated {:.1} s with {} drones: {} deliveries scheduled, {} completed, {} telemetry readings posted in {} batches, {} errors",
            self.elapsed.as_secs_f64(),
            self.drones,
            self.scheduled,
            self.completed,
            self.readings,
            self.batches,
            self.errors
        )
    }
}

/// `serve --demo`: runs the demo until `stop`, logging what it did.
pub async fn demo(config: SimConfig, stop: watch::Receiver<bool>) {
    tracing::info!(
        drones = config.drones,
        rate = config.rate,
        speedup = config.speedup,
        url = %config.url,
        "demo: flying a simulated fleet (GET /api/v1/drones shows it)"
    );
    match run(config, stop).await {
        Ok(summary) => tracing::info!("demo stopped: {summary}"),
        Err(e) => tracing::error!("the demo could not start: {e:#}"),
    }
}

/// Runs a simulation until its duration is over, its deliveries are delivered, or
/// `stop` turns true. An error means it could not start (bad URL, refused key, no
/// server); errors later are counted in the summary.
pub async fn run(config: SimConfig, mut stop: watch::Receiver<bool>) -> anyhow::Result<Summary> {
    validate(&config)?;
    let started = Instant::now();
    let deadline = config.duration.map(|d| started + d);
    let counters = Arc::new(Counters::default());
    let operator = Http::new(&config.url, &config.operator_key, counters.clone())?;
    let mut rng = Rng::new(config.seed);
    let account = register_account(&operator, &config.fleet).await?;
    let tenant = Http::new(&config.url, &account.api_key, counters.clone())?;
    let mut fleet = register_fleet(&operator, &config, &mut rng).await?;
    tracing::info!(
        account = %account.account_id,
        drones = fleet.drones.len(),
        adopted = fleet.adopted,
        "simulator ready"
    );
    // Where the new drones are, so that they are on the map before their first flight.
    let parked: Vec<Value> = fleet
        .drones
        .iter()
        .filter(|d| d.fresh)
        .map(|d| d.reading(Utc::now(), true))
        .collect();
    operator.post_telemetry(&parked).await;

    let (end_scheduling, scheduling_ends) = watch::channel(false);
    let scheduling_done = Arc::new(AtomicBool::new(false));
    let scheduler = tokio::spawn(schedule(
        Scheduler {
            tenant: tenant.clone(),
            account_id: account.account_id.clone(),
            config: config.clone(),
            rng: Rng::new(rng.next_u64()),
            deadline,
            done: scheduling_done.clone(),
        },
        scheduling_ends,
    ));

    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut jobs: HashMap<String, Job> = HashMap::new();
    // Deliveries our drones completed (a restarted demo's drones may finish another
    // account's).
    let mut delivered = 0u64;
    let mut last_move = Instant::now();
    let mut last_log = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        // What the server says each of our drones does, and the deliveries it names.
        let seen = operator.fleet(&config.fleet).await;
        if let Some(seen) = &seen {
            let wanted: HashSet<&str> = seen
                .values()
                .filter_map(|s| s.delivery_id.as_deref())
                .filter(|id| !jobs.contains_key(*id))
                .collect();
            jobs.extend(operator.jobs(wanted).await);
        }
        let mut returns = Vec::new();
        for drone in &mut fleet.drones {
            let Some(seen) = seen.as_ref().and_then(|s| s.get(&drone.id)) else {
                continue;
            };
            match drone.follow(seen, &jobs, now, config.charge_pct_per_minute) {
                Outcome::Nothing => {}
                Outcome::Completed => delivered += 1,
                Outcome::AskReturn => returns.push(drone.id.clone()),
            }
        }
        // Deliveries no drone carries any more are forgotten.
        let carried: HashSet<&str> = fleet
            .drones
            .iter()
            .filter_map(|d| d.job.as_ref().map(|j| j.id.as_str()))
            .collect();
        jobs.retain(|id, _| carried.contains(id.as_str()));
        for id in returns {
            operator.return_to_service(&id).await;
        }

        let dt = now.duration_since(last_move).as_secs_f64();
        last_move = now;
        let at = Utc::now();
        let mut readings = Vec::new();
        for drone in &mut fleet.drones {
            drone.advance(drone.speed_mps * config.speedup * dt, now);
            if drone.leg.reports() {
                readings.push(drone.reading(at, false));
            }
        }
        operator.post_telemetry(&readings).await;

        if now.duration_since(last_log) >= config.progress_every {
            last_log = now;
            let flying = fleet.drones.iter().filter(|d| d.leg.airborne()).count();
            tracing::info!(
                flying,
                scheduled = counters.scheduled.load(Ordering::Relaxed),
                delivered,
                readings = counters.readings.load(Ordering::Relaxed),
                errors = counters.errors.load(Ordering::Relaxed),
                "simulating"
            );
        }
        // Bounded by count: every delivery scheduled has been completed (or has failed).
        if scheduling_done.load(Ordering::Acquire) {
            let scheduled = counters.scheduled.load(Ordering::Acquire) as usize;
            let id = &account.account_id;
            let completed = tenant.count_deliveries(id, "Completed", None).await;
            let failed = tenant.count_deliveries(id, "Failed", None).await;
            if completed
                .zip(failed)
                .is_some_and(|(c, f)| c + f >= scheduled)
            {
                break;
            }
        }
    }
    // What is sent from now on may meet a server that is going away: counted, not logged.
    if *stop.borrow() {
        counters.quiet.store(true, Ordering::Relaxed);
    }
    let _ = end_scheduling.send(true);
    let _ = scheduler.await;
    // The account's completed deliveries, unless the server is going away.
    let completed = if *stop.borrow() {
        delivered
    } else {
        tenant
            .count_deliveries(&account.account_id, "Completed", None)
            .await
            .map_or(delivered, |n| n as u64)
    };
    Ok(Summary {
        drones: fleet.drones.len(),
        scheduled: counters.scheduled.load(Ordering::Relaxed),
        completed,
        readings: counters.readings.load(Ordering::Relaxed),
        batches: counters.batches.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// Refuses settings that cannot make a simulation (the command line's values).
fn validate(config: &SimConfig) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&config.drones) {
        bail!("--drones must be 1 to 10000");
    }
    if !(config.rate.is_finite() && (0.0..=10_000.0).contains(&config.rate)) {
        bail!("--rate must be 0 to 10000 deliveries a second");
    }
    if !(config.speedup.is_finite() && config.speedup > 0.0 && config.speedup <= 10_000.0) {
        bail!("--speedup must be above 0 and at most 10000");
    }
    if !(config.radius_km.is_finite() && (0.5..=20.0).contains(&config.radius_km)) {
        bail!("--radius-km must be 0.5 to 20");
    }
    let (lat, lon) = config.city;
    if domain::location(lat, lon, 0.0).is_err() || lat.abs() > 80.0 {
        bail!("--city must be LATITUDE,LONGITUDE within ±80° of latitude");
    }
    let id_chars = config
        .fleet
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if config.fleet.is_empty() || config.fleet.len() > 48 || !id_chars {
        bail!("--fleet must be 1 to 48 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

/// A seed that differs from run to run.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `60`, `60s`, `5m`, `1.5h`, `500ms`: how long a run lasts (`--duration`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * scale <= 365.0 * 86_400.0 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!(
            "{s:?} is not a duration such as 90s, 5m or 1h (above 0, at most a year)"
        )),
    }
}

/// `LATITUDE,LONGITUDE` (`--city`).
pub fn parse_city(s: &str) -> Result<(f64, f64), String> {
    let parsed = s.split_once(',').and_then(|(lat, lon)| {
        let lat = lat.trim().parse::<f64>().ok()?;
        let lon = lon.trim().parse::<f64>().ok()?;
        domain::location(lat, lon, 0.0).ok().map(|_| (lat, lon))
    });
    parsed.ok_or_else(|| format!("{s:?} is not LATITUDE,LONGITUDE (e.g. 47.61,-122.33)"))
}

/// The operator key `simulate` uses: the one given, else the one `serve` generated into
/// `<data-dir>/operator.key`.
pub fn operator_key(given: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(key) = given.filter(|k| !k.trim().is_empty()) {
        return Ok(key.trim().to_owned());
    }
    let path = data_dir.join(keys::OPERATOR_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => Ok(key.trim().to_owned()),
        Ok(_) => bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no operator key: give --operator-key (or DRONE_DELIVERY_OPERATOR_KEY), or --data-dir of the server whose operator.key to use ({} does not exist)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

// ---------------------------------------------------------------------------------------
// The flight of one drone.

/// Where a drone is in its round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    /// On its charger at home: silent, so the server's charging estimate runs undisturbed.
    Parked,
    ToPickup,
    /// Hovering at the pickup until the server says it was picked up.
    AtPickup,
    ToDropoff,
    /// Hovering at the drop-off until the server says it was delivered.
    AtDropoff,
    ToHome,
    /// On the ground at home, reporting so that the workflow docks it.
    Landed,
}

impl Leg {
    fn airborne(self) -> bool {
        matches!(
            self,
            Leg::ToPickup | Leg::AtPickup | Leg::ToDropoff | Leg::AtDropoff | Leg::ToHome
        )
    }

    fn reports(self) -> bool {
        self != Leg::Parked
    }
}

/// A delivery a drone flies: where to pick it up and drop it off.
#[derive(Clone, Debug, PartialEq)]
struct Job {
    id: String,
    pickup: Location,
    dropoff: Location,
}

/// What the fleet page says of one drone on this tick.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    status: DroneStatus,
    delivery_id: Option<String>,
}

/// What following the server's view asks of the simulator.
#[derive(Debug, PartialEq)]
enum Outcome {
    Nothing,
    /// The delivery this drone was dropping off was completed.
    Completed,
    /// A grounded drone is home and free: the ground crew returns it to service.
    AskReturn,
}

#[derive(Clone, Debug)]
struct SimDrone {
    id: String,
    home: Location,
    speed_mps: f64,
    drain_pct_per_km: f64,
    position: Location,
    battery_pct: f64,
    leg: Leg,
    job: Option<Job>,
    /// Since when it has been on the ground at home (it charges there).
    parked_at: Option<Instant>,
    return_asked: Option<Instant>,
    /// Registered by this run (not adopted).
    fresh: bool,
}

impl SimDrone {
    fn at_home(&self) -> bool {
        distance_km(&self.position, &self.home) <= 0.01
    }

    /// Follows the server's view: a new assignment sends it to the pickup, a pickup to
    /// the drop-off, a completion (or a release) home.
    fn follow(
        &mut self,
        seen: &Seen,
        jobs: &HashMap<String, Job>,
        now: Instant,
        charge_pct_per_minute: f64,
    ) -> Outcome {
        use DroneStatus as S;
        match (seen.status, seen.delivery_id.as_deref()) {
            (S::Grounded, delivery) => {
                self.job = None;
                if self.leg.airborne() {
                    self.leg = Leg::ToHome;
                } else if !self.at_home() {
                    self.take_off(now, charge_pct_per_minute);
                    self.leg = Leg::ToHome;
                } else if delivery.is_none()
                    && self
                        .return_asked
                        .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(5))
                {
                    self.return_asked = Some(now);
                    return Outcome::AskReturn;
                }
                Outcome::Nothing
            }
            (S::Assigned | S::EnRouteToPickup, Some(id)) => {
                if self.take(id, jobs, now, charge_pct_per_minute)
                    && !matches!(self.leg, Leg::ToPickup | Leg::AtPickup)
                {
                    self.leg = Leg::ToPickup;
                }
                Outcome::Nothing
            }
            (S::EnRouteToDropoff, Some(id)) => {
                if self.take(id, jobs, now, charge_pct_per_minute)
                    && !matches!(self.leg, Leg::ToDropoff | Leg::AtDropoff)
                {
                    self.leg = Leg::ToDropoff;
                }
                Outcome::Nothing
            }
            (S::Returning, None) => {
                let delivered = self.job.take().is_some()
                    && matches!(self.leg, Leg::ToDropoff | Leg::AtDropoff);
                match self.leg {
                    Leg::Parked | Leg::Landed if self.at_home() => self.leg = Leg::Landed,
                    Leg::ToHome => {}
                    _ => {
                        self.take_off(now, charge_pct_per_minute);
                        self.leg = Leg::ToHome;
                    }
                }
                if delivered {
                    Outcome::Completed
                } else {
                    Outcome::Nothing
                }
            }
            (S::Idle | S::Charging, None) => {
                self.job = None;
                match self.leg {
                    Leg::Landed => self.leg = Leg::Parked,
                    Leg::Parked if !self.at_home() => {
                        self.take_off(now, charge_pct_per_minute);
                        self.leg = Leg::ToHome;
                    }
                    Leg::Parked | Leg::ToHome => {}
                    // Released in flight (its delivery went to another drone): home.
                    _ => self.leg = Leg::ToHome,
                }
                Outcome::Nothing
            }
            // The two streams disagree until the other event is projected: wait.
            _ => Outcome::Nothing,
        }
    }

    /// Takes the delivery `id` if its details are known (else tries again next tick).
    fn take(
        &mut self,
        id: &str,
        jobs: &HashMap<String, Job>,
        now: Instant,
        charge_pct_per_minute: f64,
    ) -> bool {
        if self.job.as_ref().is_some_and(|j| j.id == id) {
            return true;
        }
        let Some(job) = jobs.get(id) else {
            return false;
        };
        self.take_off(now, charge_pct_per_minute);
        self.job = Some(job.clone());
        true
    }

    /// Leaves the charger with what it gained there.
    fn take_off(&mut self, now: Instant, charge_pct_per_minute: f64) {
        if let Some(since) = self.parked_at.take() {
            let minutes = now.duration_since(since).as_secs_f64() / 60.0;
            self.battery_pct = (self.battery_pct + minutes * charge_pct_per_minute).min(100.0);
        }
    }

    /// Flies `metres` along the great circle to where its leg goes, arriving exactly.
    fn advance(&mut self, metres: f64, now: Instant) {
        let target = match (self.leg, &self.job) {
            (Leg::ToPickup, Some(job)) => job.pickup,
            (Leg::ToDropoff, Some(job)) => job.dropoff,
            (Leg::ToHome, _) => self.home,
            (Leg::ToPickup | Leg::ToDropoff, None) => {
                self.leg = Leg::ToHome;
                self.home
            }
            _ => return,
        };
        let left_km = distance_km(&self.position, &target);
        let step_km = (metres / 1000.0).max(0.0);
        let (flown_km, arrived) = if step_km >= left_km {
            self.position = target;
            (left_km, true)
        } else {
            self.position = toward(&self.position, &target, step_km);
            (step_km, false)
        };
        self.battery_pct = (self.battery_pct - flown_km * self.drain_pct_per_km).max(0.0);
        self.position.altitude = CRUISE_M;
        if arrived {
            (self.leg, self.position.altitude) = match self.leg {
                Leg::ToPickup => (Leg::AtPickup, HOVER_M),
                Leg::ToDropoff => (Leg::AtDropoff, HOVER_M),
                _ => {
                    self.parked_at = Some(now);
                    (Leg::Landed, 0.0)
                }
            };
        }
    }

    /// Its telemetry reading (on the ground when `parked`).
    fn reading(&self, at: DateTime<Utc>, parked: bool) -> Value {
        let altitude = if parked { 0.0 } else { self.position.altitude };
        json!({
            "droneId": self.id,
            "position": {
                "latitude": self.position.latitude,
                "longitude": self.position.longitude,
                "altitude": altitude,
            },
            "batteryPct": (self.battery_pct * 10.0).round().clamp(0.0, 1000.0) / 10.0,
            "at": at,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Geometry on the sphere (the same Earth as `domain::distance_km`).

/// The point `km` from `from` going `bearing` (radians from north).
fn destination(from: (f64, f64), bearing: f64, km: f64) -> Location {
    let (lat1, lon1) = (from.0.to_radians(), from.1.to_radians());
    let d = km / domain::EARTH_RADIUS_KM;
    let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * bearing.cos()).asin();
    let lon2 =
        lon1 + (bearing.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * lat2.sin());
    // Back into -180..180.
    let lon = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
    Location {
        latitude: lat2.to_degrees(),
        longitude: lon,
        altitude: 0.0,
    }
}

/// A point uniformly spread over the disc of `radius_km` around `centre`.
fn somewhere(rng: &mut Rng, centre: (f64, f64), radius_km: f64) -> Location {
    let bearing = rng.unit() * std::f64::consts::TAU;
    destination(centre, bearing, radius_km * rng.unit().sqrt())
}

/// splitmix64: reproducible with `--seed`, and no dependency for a few random points.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

// ---------------------------------------------------------------------------------------
// The API, as a client sees it.

/// How many of each thing went through, shared by the flight loop and the scheduler.
#[derive(Debug, Default)]
struct Counters {
    scheduled: AtomicU64,
    readings: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    /// Set once the server is going away: errors are still counted, not logged.
    quiet: AtomicBool,
}

impl Counters {
    fn error(&self, what: &str) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if self.quiet.load(Ordering::Relaxed) {
            return;
        }
        if n <= LOGGED_ERRORS {
            tracing::warn!("simulator: {what}");
        }
        if n == LOGGED_ERRORS {
            tracing::warn!("simulator: further errors are counted, not logged");
        }
    }
}

/// One key's view of the server.
#[derive(Clone, Debug)]
struct Http {
    base: String,
    client: Client,
    counters: Arc<Counters>,
}

/// A problem's `detail` (or `title`), else the body as text.
fn problem_detail(body: &Value, text: &str) -> String {
    body.get("detail")
        .or_else(|| body.get("title"))
        .and_then(Value::as_str)
        .map_or_else(|| text.chars().take(200).collect(), str::to_owned)
}

/// An answer: its status and JSON body (`Null` when it has none).
struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Answer {
    fn detail(&self) -> String {
        format!("{} {}", self.status, problem_detail(&self.body, &self.text))
    }
}

impl Http {
    fn new(url: &str, key: &str, counters: Arc<Counters>) -> anyhow::Result<Http> {
        let parsed =
            Url::parse(url).map_err(|e| anyhow::anyhow!("--url {url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("--url {url:?} must be an http:// or https:// address of the server");
        }
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| anyhow::anyhow!("the API key holds characters a header cannot carry"))?;
        auth.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        let client = Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(10))
            // Sooner than the server's header timeout: a pooled connection is never
            // reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Http {
            base: url.trim_end_matches('/').to_owned(),
            client,
            counters,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}/api/v1{path}", self.base))
    }

    /// Sends and reads the answer; `Err` when no answer came.
    async fn send(&self, request: RequestBuilder) -> Result<Answer, String> {
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| describe(&e))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body, text })
    }

    /// Our drones as the fleet pages show them; `None` when they could not be read.
    async fn fleet(&self, fleet: &str) -> Option<HashMap<String, Seen>> {
        let prefix = format!("{fleet}-");
        let mut seen = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let limit = PAGE.to_string();
            let mut params = vec![("limit", limit.as_str())];
            params.extend(cursor.as_deref().map(|c| ("cursor", c)));
            let request = self.request(Method::GET, &format!("/drones?{}", query(&params)));
            let page: FleetPage = match self.send(request).await {
                Ok(a) if a.status.is_success() => match serde_json::from_value(a.body) {
                    Ok(page) => page,
                    Err(e) => {
                        self.counters.error(&format!("a fleet page: {e}"));
                        return None;
                    }
                },
                Ok(a) => {
                    self.counters
                        .error(&format!("reading the fleet: {}", a.detail()));
                    return None;
                }
                Err(e) => {
                    self.counters.error(&format!("reading the fleet: {e}"));
                    return None;
                }
            };
            for drone in page.items {
                if drone.drone_id.starts_with(&prefix) {
                    seen.insert(
                        drone.drone_id,
                        Seen {
                            status: drone.status,
                            delivery_id: drone.delivery_id,
                        },
                    );
                }
            }
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Some(seen),
            }
        }
    }

    /// The pickups and drop-offs of deliveries (those that could be read).
    async fn jobs(&self, ids: HashSet<&str>) -> Vec<(String, Job)> {
        futures_util::stream::iter(ids.into_iter().map(str::to_owned))
            .map(|id| async move {
                let answer = self
                    .send(self.request(Method::GET, &format!("/deliveries/{id}")))
                    .await;
                match answer {
                    Ok(a) if a.status.is_success() => {
                        match serde_json::from_value::<DeliveryBody>(a.body) {
                            Ok(d) => Some((
                                id.clone(),
                                Job {
                                    id,
                                    pickup: d.pickup,
                                    dropoff: d.dropoff,
                                },
                            )),
                            Err(e) => {
                                self.counters.error(&format!("delivery {id}: {e}"));
                                None
                            }
                        }
                    }
                    // Not projected yet: asked again next tick.
                    Ok(a) if a.status == StatusCode::NOT_FOUND => None,
                    Ok(a) => {
                        self.counters
                            .error(&format!("reading delivery {id}: {}", a.detail()));
                        None
                    }
                    Err(e) => {
                        self.counters.error(&format!("reading delivery {id}: {e}"));
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|job| async move { job })
            .collect()
            .await
    }

    /// Posts the readings, in batches the server takes.
    async fn post_telemetry(&self, readings: &[Value]) {
        for batch in readings.chunks(BATCH) {
            let request = self
                .request(Method::POST, "/telemetry")
                .json(&Value::Array(batch.to_vec()));
            match self.send(request).await {
                Ok(a) if a.status.is_success() => {
                    let accepted = a.body["accepted"].as_u64().unwrap_or(batch.len() as u64);
                    self.counters
                        .readings
                        .fetch_add(accepted, Ordering::Relaxed);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                }
                Ok(a) => self
                    .counters
                    .error(&format!("posting telemetry: {}", a.detail())),
                Err(e) => self.counters.error(&format!("posting telemetry: {e}")),
            }
        }
    }

    /// Puts a grounded drone back in service (refused while its delivery is released).
    async fn return_to_service(&self, id: &str) {
        let request = self.request(Method::POST, &format!("/drones/{id}/return"));
        match self.send(request).await {
            Ok(a) if a.status.is_success() || a.status == StatusCode::CONFLICT => {}
            Ok(a) => self
                .counters
                .error(&format!("returning {id} to service: {}", a.detail())),
            Err(e) => self
                .counters
                .error(&format!("returning {id} to service: {e}")),
        }
    }

    /// How many of the account's deliveries are in `stage`, counting up to `at_most`.
    async fn count_deliveries(
        &self,
        account_id: &str,
        stage: &str,
        at_most: Option<usize>,
    ) -> Option<usize> {
        let mut count = 0;
        let mut cursor: Option<String> = None;
        loop {
            let limit = PAGE.to_string();
            let mut params = vec![("stage", stage), ("limit", limit.as_str())];
            params.extend(cursor.as_deref().map(|c| ("cursor", c)));
            let request = self.request(
                Method::GET,
                &format!("/accounts/{account_id}/deliveries?{}", query(&params)),
            );
            let answer = self.send(request).await.ok()?;
            if !answer.status.is_success() {
                return None;
            }
            count += answer.body["items"].as_array().map_or(0, Vec::len);
            match answer.body["nextCursor"].as_str() {
                Some(next) if !next.is_empty() && at_most.is_none_or(|m| count < m) => {
                    cursor = Some(next.to_owned());
                }
                _ => return Some(count),
            }
        }
    }
}

/// A query string (the cursors hold `/`).
fn query(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A transport error with its causes (reqwest's own message says little).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FleetPage {
    items: Vec<FleetDrone>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FleetDrone {
    drone_id: String,
    status: DroneStatus,
    delivery_id: Option<String>,
    position: Option<Location>,
    battery_pct: Option<f64>,
    range_km: f64,
    speed_mps: f64,
    home: Location,
}

#[derive(Deserialize)]
struct DeliveryBody {
    pickup: Location,
    dropoff: Location,
}

struct Account {
    account_id: String,
    api_key: String,
}

/// Registers the simulated customer; the first request, so a wrong URL or key fails here
/// with what the server said.
async fn register_account(operator: &Http, fleet: &str) -> anyhow::Result<Account> {
    let request = operator.request(Method::POST, "/accounts").json(&json!({
        "name": format!("Simulated customers ({fleet})"),
        "email": "simulator@drones.example",
    }));
    let answer = operator
        .send(request)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", operator.base))?;
    match answer.status {
        StatusCode::CREATED | StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => bail!(
            "{} refused the operator key (401): {}",
            operator.base,
            problem_detail(&answer.body, &answer.text)
        ),
        StatusCode::FORBIDDEN => bail!(
            "the key given is not the operator's (403): {}",
            problem_detail(&answer.body, &answer.text)
        ),
        StatusCode::NOT_FOUND => bail!(
            "{} has no /api/v1/accounts (404): is it a drone-delivery server running the command API?",
            operator.base
        ),
        _ => bail!(
            "cannot register the simulator's account: {}",
            answer.detail()
        ),
    }
    let field = |name: &str| {
        answer.body[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the account's answer has no {name}: {}", answer.text))
    };
    Ok(Account {
        account_id: field("accountId")?,
        api_key: field("apiKey")?,
    })
}

struct Fleet {
    drones: Vec<SimDrone>,
    adopted: usize,
}

/// Registers the fleet, homes scattered over the city; a drone already registered under
/// one of its ids (a restarted demo's) is adopted as the server knows it.
async fn register_fleet(
    operator: &Http,
    config: &SimConfig,
    rng: &mut Rng,
) -> anyhow::Result<Fleet> {
    let width = config.drones.to_string().len().max(2);
    let wanted: Vec<(String, Location)> = (1..=config.drones)
        .map(|i| {
            let home = somewhere(rng, config.city, config.radius_km * 0.8);
            (format!("{}-{i:0width$}", config.fleet), home)
        })
        .collect();
    let spec_speed = 15.0;
    let spec_range = 60.0;
    let drain = |range_km: f64| config.drain_pct_per_km.unwrap_or(100.0 / range_km.max(0.1));
    let results: Vec<anyhow::Result<SimDrone>> = futures_util::stream::iter(wanted)
        .map(|(id, home)| async move {
            let request = operator
                .request(Method::PUT, &format!("/drones/{id}"))
                .json(&json!({
                    "model": "SIM-X8", "payloadKg": 5, "rangeKm": spec_range,
                    "speedMps": spec_speed,
                    "home": {"latitude": home.latitude, "longitude": home.longitude, "altitude": 0},
                }));
            let answer = operator
                .send(request)
                .await
                .map_err(|e| anyhow::anyhow!("registering drone {id}: {e}"))?;
            match answer.status {
                StatusCode::CREATED | StatusCode::OK => Ok(SimDrone {
                    id,
                    home,
                    speed_mps: spec_speed,
                    drain_pct_per_km: drain(spec_range),
                    position: home,
                    battery_pct: 100.0,
                    leg: Leg::Parked,
                    job: None,
                    parked_at: Some(Instant::now()),
                    return_asked: None,
                    fresh: true,
                }),
                StatusCode::CONFLICT => adopt(operator, id, drain).await,
                _ => bail!("registering drone {id}: {}", answer.detail()),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut drones = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    drones.sort_by(|a, b| a.id.cmp(&b.id));
    let adopted = drones.iter().filter(|d| !d.fresh).count();
    Ok(Fleet { drones, adopted })
}

/// A drone registered before: flown on from where it last reported.
async fn adopt(
    operator: &Http,
    id: String,
    drain: impl Fn(f64) -> f64,
) -> anyhow::Result<SimDrone> {
    let answer = operator
        .send(operator.request(Method::GET, &format!("/drones/{id}")))
        .await
        .map_err(|e| anyhow::anyhow!("reading drone {id}: {e}"))?;
    if !answer.status.is_success() {
        bail!(
            "drone {id} is registered but cannot be read: {}",
            answer.detail()
        );
    }
    let known: FleetDrone = serde_json::from_value(answer.body)
        .with_context(|| format!("drone {id} as the server shows it"))?;
    let position = known.position.unwrap_or(known.home);
    let on_ground = position.altitude <= 0.0;
    Ok(SimDrone {
        id,
        home: known.home,
        speed_mps: known.speed_mps,
        drain_pct_per_km: drain(known.range_km),
        position,
        battery_pct: known.battery_pct.unwrap_or(100.0).clamp(0.0, 100.0),
        // Its first look at the fleet sends it where the server says it is going.
        leg: if on_ground { Leg::Parked } else { Leg::ToHome },
        job: None,
        parked_at: on_ground.then(Instant::now),
        return_asked: None,
        fresh: false,
    })
}

// ---------------------------------------------------------------------------------------
// Scheduling.

struct Scheduler {
    tenant: Http,
    account_id: String,
    config: SimConfig,
    rng: Rng,
    deadline: Option<Instant>,
    /// Set when `--deliveries` have all been scheduled.
    done: Arc<AtomicBool>,
}

/// Schedules deliveries at the rate (as the account, like a customer) until `end`, the
/// deadline or the count.
async fn schedule(mut s: Scheduler, mut end: watch::Receiver<bool>) {
    let rate = s.config.rate;
    if rate <= 0.0 {
        return;
    }
    let started = Instant::now();
    let period = Duration::from_secs_f64((1.0 / rate).clamp(0.01, 1.0));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Deliveries the rate has asked for so far (sent, failed or skipped while the queue
    // was full): a full queue drops its share rather than bursting later.
    let mut offered = 0u64;
    let mut sent = 0u64;
    let mut waiting: Option<(Instant, usize)> = None;
    let run = format!("{:012x}", s.rng.next_u64() >> 16);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = end.changed() => return,
        }
        if *end.borrow() || s.deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let scheduled = s.tenant.counters.scheduled.load(Ordering::Acquire);
        if s.config.max_deliveries.is_some_and(|m| scheduled >= m) {
            s.done.store(true, Ordering::Release);
            return;
        }
        // One now, then at the rate.
        let due_by_now = (started.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
        let mut due = due_by_now.saturating_sub(offered);
        offered = due_by_now;
        if let Some(m) = s.config.max_deliveries {
            due = due.min(m.saturating_sub(scheduled));
        }
        if let Some(limit) = s.config.max_waiting {
            let fresh = waiting.filter(|(at, _)| at.elapsed() < Duration::from_secs(1));
            let now_waiting = match fresh {
                Some((_, n)) => n,
                None => {
                    let n = s
                        .tenant
                        .count_deliveries(&s.account_id, "Created", Some(limit))
                        .await
                        .unwrap_or(0);
                    waiting = Some((Instant::now(), n));
                    n
                }
            };
            due = due.min(limit.saturating_sub(now_waiting) as u64);
            if let Some((_, n)) = &mut waiting {
                *n += due as usize;
            }
        }
        let owner = s.account_id.clone();
        let bodies: Vec<(String, Value)> = (0..due)
            .map(|_| {
                sent += 1;
                (format!("sim-{run}-{sent}"), delivery_body(&mut s, &owner))
            })
            .collect();
        let tenant = &s.tenant;
        futures_util::future::join_all(
            bodies
                .into_iter()
                .map(|(key, body)| schedule_one(tenant, key, body)),
        )
        .await;
    }
}

/// A delivery somewhere in the city: a pickup, and a drop-off a few km away.
fn delivery_body(s: &mut Scheduler, owner: &str) -> Value {
    let pickup = somewhere(&mut s.rng, s.config.city, s.config.radius_km);
    let bearing = s.rng.unit() * std::f64::consts::TAU;
    let km = s.rng.between(1.0, s.config.radius_km.max(1.5));
    let dropoff = destination((pickup.latitude, pickup.longitude), bearing, km);
    let weight = (s.rng.between(0.2, 4.5) * 10.0).round() / 10.0;
    let size = match weight {
        w if w < 1.5 => "small",
        w if w < 3.0 => "medium",
        _ => "large",
    };
    let at =
        |l: &Location| json!({"latitude": l.latitude, "longitude": l.longitude, "altitude": 0});
    json!({
        "ownerId": owner,
        "pickup": at(&pickup),
        "dropoff": at(&dropoff),
        "expedited": s.rng.unit() < 0.1,
        "confirmationRequired": "None",
        "packageInfo": {"size": size, "weight": weight, "tag": "simulated"},
    })
}

/// Schedules one delivery; a 503 or a lost answer is retried with the same
/// `Idempotency-Key`, so that it is scheduled at most once.
async fn schedule_one(tenant: &Http, key: String, body: Value) {
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        let request = tenant
            .request(Method::POST, "/deliveries")
            .header("idempotency-key", &key)
            .json(&body);
        match tenant.send(request).await {
            Ok(a) if a.status.is_success() => {
                tenant.counters.scheduled.fetch_add(1, Ordering::AcqRel);
                return;
            }
            Ok(a)
                if a.status == StatusCode::SERVICE_UNAVAILABLE
                    || a.status == StatusCode::TOO_MANY_REQUESTS =>
            {
                last = a.detail();
            }
            Ok(a) => {
                last = a.detail();
                break;
            }
            Err(e) => last = e,
        }
    }
    tenant
        .counters
        .error(&format!("scheduling a delivery: {last}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(latitude: f64, longitude: f64) -> Location {
        Location {
            latitude,
            longitude,
            altitude: 0.0,
        }
    }

    const HOME: (f64, f64) = (47.60, -122.30);
    const PICKUP: (f64, f64) = (47.61, -122.33);
    const DROPOFF: (f64, f64) = (47.63, -122.31);

    fn drone() -> SimDrone {
        SimDrone {
            id: "sim-01".into(),
            home: at(HOME.0, HOME.1),
            speed_mps: 15.0,
            drain_pct_per_km: 100.0 / 60.0,
            position: at(HOME.0, HOME.1),
            battery_pct: 50.0,
            leg: Leg::Parked,
            job: None,
            parked_at: None,
            return_asked: None,
            fresh: true,
        }
    }

    fn jobs() -> HashMap<String, Job> {
        let job = Job {
            id: "d-1".into(),
            pickup: at(PICKUP.0, PICKUP.1),
            dropoff: at(DROPOFF.0, DROPOFF.1),
        };
        HashMap::from([(job.id.clone(), job)])
    }

    fn seen(status: DroneStatus, delivery: Option<&str>) -> Seen {
        Seen {
            status,
            delivery_id: delivery.map(str::to_owned),
        }
    }

    /// Flies until the leg changes (at most `ticks` steps of `metres`).
    fn fly(d: &mut SimDrone, metres: f64, ticks: usize) -> usize {
        let leg = d.leg;
        for i in 1..=ticks {
            d.advance(metres, Instant::now());
            if d.leg != leg {
                return i;
            }
        }
        panic!("still {leg:?} after {ticks} ticks");
    }

    #[test]
    fn a_drone_flies_the_round_the_server_describes_and_lands_at_home() {
        let (mut d, jobs, now) = (drone(), jobs(), Instant::now());
        // Assigned: it leaves, and reports in flight.
        let s = seen(DroneStatus::Assigned, Some("d-1"));
        assert_eq!(d.follow(&s, &jobs, now, 2.0), Outcome::Nothing);
        assert_eq!(d.leg, Leg::ToPickup);
        let to_pickup_km = distance_km(&d.home, &at(PICKUP.0, PICKUP.1));
        let ticks = fly(&mut d, 750.0, 100);
        assert_eq!(ticks, (to_pickup_km / 0.75).ceil() as usize);
        assert_eq!(d.leg, Leg::AtPickup);
        assert!(d.position.altitude > 0.0);
        assert!(distance_km(&d.position, &at(PICKUP.0, PICKUP.1)) < 1e-9);
        // It waits there until the server says it was picked up.
        d.follow(&s, &jobs, now, 2.0);
        d.advance(750.0, now);
        assert_eq!(d.leg, Leg::AtPickup);
        let s = seen(DroneStatus::EnRouteToDropoff, Some("d-1"));
        d.follow(&s, &jobs, now, 2.0);
        assert_eq!(d.leg, Leg::ToDropoff);
        fly(&mut d, 750.0, 100);
        assert_eq!(d.leg, Leg::AtDropoff);
        // Completed: home, landing with altitude 0, then silent once docked.
        let s = seen(DroneStatus::Returning, None);
        assert_eq!(d.follow(&s, &jobs, now, 2.0), Outcome::Completed);
        assert_eq!(d.leg, Leg::ToHome);
        assert!(d.job.is_none());
        fly(&mut d, 750.0, 100);
        assert_eq!(d.leg, Leg::Landed);
        assert_eq!(d.position.altitude, 0.0);
        assert!(d.at_home());
        assert!(d.leg.reports());
        d.follow(&seen(DroneStatus::Charging, None), &jobs, now, 2.0);
        assert_eq!(d.leg, Leg::Parked);
        assert!(!d.leg.reports());
        // The battery went down by the km flown.
        let flown_km = to_pickup_km
            + distance_km(&at(PICKUP.0, PICKUP.1), &at(DROPOFF.0, DROPOFF.1))
            + distance_km(&at(DROPOFF.0, DROPOFF.1), &d.home);
        assert!((50.0 - flown_km * 100.0 / 60.0 - d.battery_pct).abs() < 1e-6);
    }

    #[test]
    fn a_drone_waits_for_a_delivery_it_cannot_read_yet_and_charged_while_parked() {
        let mut d = drone();
        let parked = Instant::now();
        d.parked_at = Some(parked);
        let s = seen(DroneStatus::Assigned, Some("d-1"));
        d.follow(&s, &HashMap::new(), parked, 2.0);
        assert_eq!(d.leg, Leg::Parked);
        d.follow(&s, &jobs(), parked + Duration::from_secs(300), 2.0);
        assert_eq!(d.leg, Leg::ToPickup);
        assert!((d.battery_pct - 60.0).abs() < 1e-9, "{}", d.battery_pct);
    }

    #[test]
    fn a_drone_released_in_flight_goes_home_and_a_grounded_one_is_returned_once_home() {
        let (mut d, jobs, now) = (drone(), jobs(), Instant::now());
        d.follow(&seen(DroneStatus::Assigned, Some("d-1")), &jobs, now, 2.0);
        d.advance(500.0, now);
        d.follow(&seen(DroneStatus::Idle, None), &jobs, now, 2.0);
        assert_eq!(d.leg, Leg::ToHome);
        assert!(d.job.is_none());

        let mut g = drone();
        g.follow(&seen(DroneStatus::Assigned, Some("d-1")), &jobs, now, 2.0);
        g.advance(500.0, now);
        let grounded = seen(DroneStatus::Grounded, Some("d-1"));
        assert_eq!(g.follow(&grounded, &jobs, now, 2.0), Outcome::Nothing);
        assert_eq!(g.leg, Leg::ToHome);
        fly(&mut g, 750.0, 10);
        // Home, but its delivery is not released yet: no return asked.
        assert_eq!(g.follow(&grounded, &jobs, now, 2.0), Outcome::Nothing);
        let free = seen(DroneStatus::Grounded, None);
        assert_eq!(g.follow(&free, &jobs, now, 2.0), Outcome::AskReturn);
        // Asked at most every few seconds.
        assert_eq!(g.follow(&free, &jobs, now, 2.0), Outcome::Nothing);
        let later = now + Duration::from_secs(6);
        assert_eq!(g.follow(&free, &jobs, later, 2.0), Outcome::AskReturn);
    }

    #[test]
    fn random_points_stay_within_the_city() {
        let mut rng = Rng::new(7);
        let centre = at(SEATTLE.0, SEATTLE.1);
        for _ in 0..1000 {
            let p = somewhere(&mut rng, SEATTLE, 3.0);
            assert!(distance_km(&centre, &p) <= 3.0 + 1e-9);
        }
        let d = destination(SEATTLE, 1.0, 2.5);
        assert!((distance_km(&centre, &d) - 2.5).abs() < 1e-6);
    }

    #[test]
    fn durations_and_cities_are_read_or_refused_with_a_reason() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "0s", "-5s", "5x", "s", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_city("47.61,-122.33"), Ok((47.61, -122.33)));
        assert!(parse_city("47.61").is_err());
        assert!(parse_city("91,0").is_err());
    }

    #[test]
    fn a_key_comes_from_the_flag_or_the_data_directory() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(
            operator_key(Some("given-key".into()), dir.path()).expect("given"),
            "given-key"
        );
        let missing = operator_key(None, dir.path()).expect_err("no key");
        assert!(missing.to_string().contains("--operator-key"), "{missing}");
        std::fs::write(dir.path().join(keys::OPERATOR_KEY_FILE), "dd_op_x\n").expect("write");
        assert_eq!(operator_key(None, dir.path()).expect("file"), "dd_op_x");
    }

    #[tokio::test]
    async fn a_bad_url_is_an_error_not_a_panic() {
        let counters = Arc::new(Counters::default());
        for url in ["not a url", "ftp://example.com", "http://"] {
            assert!(Http::new(url, "key", counters.clone()).is_err(), "{url}");
        }
        assert!(Http::new("http://127.0.0.1:1", "bad\nkey", counters).is_err());
    }
}
