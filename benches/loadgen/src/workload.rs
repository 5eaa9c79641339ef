//! What the connections send: the set-up a scenario needs (accounts, drones, deliveries
//! to query), the requests of the mix, and the command-to-visible probe.

use crate::client::{Connection, Outcome, REQUEST_TIMEOUT, Target};
use crate::stats::Stats;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The share of each request kind, e.g. `schedule=1,telemetry=3,status=6`.
#[derive(Clone, Debug)]
pub struct Mix {
    weights: Vec<(&'static str, u64)>,
    total: u64,
}

const KINDS: [&str; 5] = ["schedule", "register", "telemetry", "status", "fleet"];

/// Drones on one page of `fleet` queries (the API's largest page).
const FLEET_PAGE: usize = 500;

impl Mix {
    pub fn only(kind: &'static str) -> Mix {
        Mix {
            weights: vec![(kind, 1)],
            total: 1,
        }
    }

    /// What `mixed` sends by default: per schedule command, three telemetry reports and
    /// six status queries (customers track far more often than businesses schedule).
    pub fn mixed_default() -> Mix {
        Mix {
            weights: vec![("schedule", 1), ("telemetry", 3), ("status", 6)],
            total: 10,
        }
    }

    pub fn has(&self, kind: &str) -> bool {
        self.weights.iter().any(|(k, w)| *k == kind && *w > 0)
    }

    fn pick(&self, random: u64) -> &'static str {
        let mut at = random % self.total;
        for (kind, weight) in &self.weights {
            if at < *weight {
                return kind;
            }
            at -= weight;
        }
        self.weights[0].0
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Mix, String> {
        let mut weights = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part}: expected KIND=WEIGHT"))?;
            let kind = KINDS
                .iter()
                .find(|k| **k == kind.trim())
                .ok_or_else(|| format!("{kind}: one of {}", KINDS.join(", ")))?;
            let weight: u64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part}: the weight is a whole number"))?;
            weights.push((*kind, weight));
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err("the mix needs a weight above 0".into());
        }
        Ok(Mix { weights, total })
    }
}

/// A xorshift generator per connection: cheap, and the same run picks the same requests.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Status(status, _) => status.as_str().to_owned(),
        Outcome::Timeout => "timeout".to_owned(),
        Outcome::Io => "io".to_owned(),
    }
}

fn schedule_body(owner: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"ownerId":"{owner}","pickup":{{"latitude":47.61,"longitude":-122.33,"altitude":0}},"dropoff":{{"latitude":47.65,"longitude":-122.30,"altitude":0}},"deadline":"2030-01-01T00:00:00Z","expedited":false,"confirmationRequired":"None","packageInfo":{{"size":"small","weight":1.5,"tag":"books"}}}}"#
    ))
}

fn account_body(name: &str) -> Bytes {
    Bytes::from(format!(r#"{{"name":"{name}","email":"load@example.com"}}"#))
}

fn telemetry_body() -> Bytes {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Bytes::from(format!(
        r#"{{"position":{{"latitude":47.61,"longitude":-122.31,"altitude":80}},"batteryPct":80,"at":"{at}"}}"#
    ))
}

/// The id of `field` in a JSON response.
fn field(body: &[u8], name: &str) -> anyhow::Result<String> {
    let value: Value = serde_json::from_slice(body).context("a JSON response")?;
    value[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {name} in {value}"))
}

async fn expect(
    connection: &mut Connection,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    want: &[StatusCode],
) -> anyhow::Result<Bytes> {
    match connection.send(method.clone(), path, body).await {
        Outcome::Status(status, body) if want.contains(&status) => Ok(body),
        Outcome::Status(status, body) => bail!(
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        ),
        Outcome::Timeout => bail!("{method} {path}: timed out"),
        Outcome::Io => bail!("{method} {path}: the connection failed"),
    }
}

pub struct Workload {
    accounts: Vec<String>,
    drones: Vec<String>,
    deliveries: Vec<String>,
    mix: Mix,
}

impl Workload {
    /// Registers the accounts and drones and schedules the deliveries to query (waiting
    /// until the last one is visible), over a few connections.
    pub async fn set_up(
        target: &Target,
        accounts: usize,
        drones: usize,
        deliveries: usize,
        mix: Mix,
    ) -> anyhow::Result<Workload> {
        // Unique per run, so runs against one server do not collide.
        let run = chrono::Utc::now().timestamp_millis();
        let mut connection = Connection::new(target.clone());
        let mut account_ids = Vec::with_capacity(accounts);
        for i in 0..accounts {
            let body = account_body(&format!("Load {run} {i}"));
            let created = expect(
                &mut connection,
                Method::POST,
                "/api/v1/accounts",
                Some(body),
                &[StatusCode::CREATED],
            )
            .await?;
            account_ids.push(field(&created, "accountId")?);
        }
        let mut drone_ids = Vec::with_capacity(drones);
        for i in 0..drones {
            let id = format!("load-{run}-{i}");
            let spec = Bytes::from_static(
                br#"{"model":"X8","payloadKg":5,"rangeKm":60,"speedMps":15,"home":{"latitude":47.60,"longitude":-122.30,"altitude":0}}"#,
            );
            expect(
                &mut connection,
                Method::PUT,
                &format!("/api/v1/drones/{id}"),
                Some(spec),
                &[StatusCode::CREATED],
            )
            .await?;
            // A position to show, as a flying fleet has.
            expect(
                &mut connection,
                Method::POST,
                &format!("/api/v1/drones/{id}/telemetry"),
                Some(telemetry_body()),
                &[StatusCode::ACCEPTED],
            )
            .await?;
            drone_ids.push(id);
        }
        let mut tasks = Vec::new();
        let per_task = deliveries.div_ceil(16).max(1);
        for chunk in 0..deliveries.div_ceil(per_task) {
            let target = target.clone();
            let owners = account_ids.clone();
            let count = per_task.min(deliveries - chunk * per_task);
            tasks.push(tokio::spawn(async move {
                let mut connection = Connection::new(target);
                let mut ids = Vec::with_capacity(count);
                for i in 0..count {
                    let owner = &owners[(chunk + i) % owners.len()];
                    let accepted = expect(
                        &mut connection,
                        Method::POST,
                        "/api/v1/deliveries",
                        Some(schedule_body(owner)),
                        &[StatusCode::ACCEPTED],
                    )
                    .await?;
                    ids.push(field(&accepted, "deliveryId")?);
                }
                anyhow::Ok(ids)
            }));
        }
        let mut delivery_ids = Vec::with_capacity(deliveries);
        for task in tasks {
            delivery_ids.extend(task.await??);
        }
        if let Some(last) = delivery_ids.last() {
            let started = Instant::now();
            let path = format!("/api/v1/deliveries/{last}/status");
            while !matches!(
                connection.send(Method::GET, &path, None).await,
                Outcome::Status(StatusCode::OK, _)
            ) {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("the deliveries scheduled for the run never became visible");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(Workload {
            accounts: account_ids,
            drones: drone_ids,
            deliveries: delivery_ids,
            mix,
        })
    }

    pub fn sends(&self, kind: &str) -> bool {
        self.mix.has(kind)
    }

    /// The request of `kind` (a schedule when the set-up made nothing to ask about),
    /// with the kind it is.
    fn request(
        &self,
        kind: &'static str,
        random: u64,
    ) -> (&'static str, Method, String, Option<Bytes>) {
        let pick = |items: &[String]| items[(random >> 16) as usize % items.len()].clone();
        match kind {
            "telemetry" if !self.drones.is_empty() => (
                kind,
                Method::POST,
                format!("/api/v1/drones/{}/telemetry", pick(&self.drones)),
                Some(telemetry_body()),
            ),
            "register" => (
                kind,
                Method::POST,
                "/api/v1/accounts".to_owned(),
                Some(account_body(&format!("Load {random:x}"))),
            ),
            "fleet" => (
                kind,
                Method::GET,
                format!("/api/v1/drones?limit={FLEET_PAGE}"),
                None,
            ),
            "status" if !self.deliveries.is_empty() => (
                kind,
                Method::GET,
                format!("/api/v1/deliveries/{}/status", pick(&self.deliveries)),
                None,
            ),
            _ => (
                "schedule",
                Method::POST,
                "/api/v1/deliveries".to_owned(),
                Some(schedule_body(&pick(&self.accounts))),
            ),
        }
    }

    /// Sends requests of the mix until `deadline`: back to back (a closed loop), or,
    /// with `slots` = (this connection's arrivals per second, its first slot in
    /// seconds), one per slot, each timed from its slot.
    pub async fn drive(
        &self,
        connection: &mut Connection,
        stats: &mut Stats,
        worker: u64,
        start: Instant,
        deadline: Instant,
        slots: Option<(f64, f64)>,
    ) {
        let mut random = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut sent: u64 = 0;
        loop {
            let intended = match slots {
                Some((rate, first)) => {
                    start + Duration::from_secs_f64(first + sent as f64 / rate.max(1e-9))
                }
                None => Instant::now(),
            };
            if intended >= deadline {
                break;
            }
            // Ahead of its slot, the connection waits for it and times the request from
            // when it woke (the timer's lateness, up to a millisecond, is the generator's,
            // not the server's). Behind it, the request goes at once and is timed from the
            // slot: the server made it late.
            let intended = if slots.is_some() && intended > Instant::now() {
                tokio::time::sleep_until(intended.into()).await;
                Instant::now()
            } else {
                intended
            };
            let kind = self.mix.pick(next(&mut random));
            let (kind, method, path, body) = self.request(kind, next(&mut random));
            let outcome = connection.send(method, &path, body).await;
            let done = Instant::now();
            // Answered, but later after its slot than a client waits: that client saw a
            // timeout (an open loop's requests queue at the client when the server lags).
            let label = if done.saturating_duration_since(intended) > REQUEST_TIMEOUT {
                "timeout".to_owned()
            } else {
                outcome_label(&outcome)
            };
            stats.record(kind, intended, done, &label);
            sent += 1;
        }
    }

    /// Every `every` until `deadline`: schedules a delivery, then asks for it until the
    /// query shows it, and records the time from the acknowledgement.
    pub async fn probe_visibility(
        &self,
        target: &Target,
        stats: &mut Stats,
        every: Duration,
        deadline: Instant,
    ) {
        let mut commands = Connection::new(target.clone());
        let mut queries = Connection::new(target.clone());
        let mut tick = tokio::time::interval(every);
        while Instant::now() < deadline {
            tick.tick().await;
            let owner = &self.accounts[0];
            let Outcome::Status(StatusCode::ACCEPTED, body) = commands
                .send(
                    Method::POST,
                    "/api/v1/deliveries",
                    Some(schedule_body(owner)),
                )
                .await
            else {
                continue;
            };
            let acknowledged = Instant::now();
            let Ok(id) = field(&body, "deliveryId") else {
                continue;
            };
            // Read your write: the query waits on the server for the schedule's token
            // (one request when that works), so this measures the projection's lag plus
            // how soon a waiting read notices it.
            let path = match field(&body, "consistencyToken") {
                Ok(token) => format!("/api/v1/deliveries/{id}?consistencyToken={token}"),
                Err(_) => format!("/api/v1/deliveries/{id}"),
            };
            while acknowledged.elapsed() < Duration::from_secs(10) {
                if let Outcome::Status(StatusCode::OK, _) =
                    queries.send(Method::GET, &path, None).await
                {
                    stats.record_visible(acknowledged.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// The sum of `projector_events_total` on the server's `/metrics`, if it runs projectors.
pub async fn projector_events(target: &Target) -> Option<f64> {
    let mut connection = Connection::new(target.clone());
    let Outcome::Status(StatusCode::OK, body) =
        connection.send(Method::GET, "/metrics", None).await
    else {
        return None;
    };
    let text = String::from_utf8_lossy(&body);
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with("projector_events_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
