//! Several `command-api` processes on one Kafka cluster (a real broker at
//! `KAFKA_BROKERS`), each the owner of the partition numbers its consumer group assigns
//! it, every role its own OS process: conflicting commands spread over both, one killed
//! mid-load, one paused past its session. Skipped without a broker.

use crate::helpers::{Api, Server, drone_spec, schedule_body, temp_dir};
use crate::kafka::{brokers, log_args, run, unique_prefix, until};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

/// Partitions of the command topics (`--partitions`' default).
const PARTITIONS: u32 = 8;

/// Two command APIs and the read side (projectors and query API in one process, on an
/// embedded read store).
struct Pair {
    shared: Vec<String>,
    a: Server,
    b: Server,
    _read_dir: tempfile::TempDir,
    read: Server,
}

impl Pair {
    /// Starts both command APIs and waits until the group has split the partition
    /// numbers between them.
    async fn start(brokers: &str) -> Pair {
        let mut shared = log_args(brokers, &unique_prefix());
        // A member that stops heartbeating is out of the owners group after 4 s (tansu 0.6
        // never expires a member of a 3 s session).
        for option in shared.iter_mut() {
            if option.starts_with("session.timeout.ms=") {
                *option = "session.timeout.ms=4000".into();
            }
        }
        shared.extend(["--kafka-option".into(), "heartbeat.interval.ms=1000".into()]);
        let a = run(&["command-api"], &shared);
        Api::of(&a).ready().await;
        let b = run(&["command-api"], &shared);
        Api::of(&b).ready().await;
        let read_dir = temp_dir();
        let dir = read_dir.path().to_string_lossy().to_string();
        let read = run(
            &[
                "serve",
                "--roles",
                "projector,query-api",
                "--data-dir",
                &dir,
            ],
            &shared,
        );
        let pair = Pair {
            shared,
            a,
            b,
            _read_dir: read_dir,
            read,
        };
        pair.until_split(|a, b| {
            !a.is_empty() && !b.is_empty() && a.len() + b.len() == PARTITIONS as usize
        })
        .await;
        pair
    }

    /// Waits (up to 40 s) until the numbers `a` and `b` own satisfy `done`.
    async fn until_split(&self, done: impl Fn(&BTreeSet<u32>, &BTreeSet<u32>) -> bool) {
        let started = Instant::now();
        loop {
            let (a, b) = (owned(&self.a).await, owned(&self.b).await);
            if done(&a, &b) && a.is_disjoint(&b) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "the partitions were not split as expected: a {a:?}, b {b:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The partition numbers a command API says it decides on (`/metrics`); none when it
/// does not answer.
async fn owned(server: &Server) -> BTreeSet<u32> {
    let Ok(response) = Api::of(server)
        .client
        .get(format!("{}/metrics", server.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return BTreeSet::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("command_partition_owned{partition=\"")?;
            let (partition, value) = rest.split_once("\"} ")?;
            (value.trim() == "1").then(|| partition.parse().ok())?
        })
        .collect()
}

/// The partition of `topic` a consistency token says a command wrote.
fn partition_in(token: &str, topic: &str) -> Option<u32> {
    token.split(',').find_map(|position| {
        let mut parts = position.split(':');
        (parts.next()? == topic).then(|| parts.next()?.parse().ok())?
    })
}

/// Registers drones (through either API) until `wanted` of them live in partitions
/// `pick` accepts; returns their ids.
async fn drones_in(
    apis: &[Api],
    prefix: &str,
    wanted: usize,
    pick: impl Fn(u32) -> bool,
) -> Vec<String> {
    let mut kept = Vec::new();
    for i in 0..200 {
        let id = format!("{prefix}{i}");
        let response = apis[i % apis.len()]
            .client
            .put(apis[0].url(&format!("/api/v1/drones/{id}")))
            .json(&drone_spec(5.0))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::CREATED, "register {id}");
        let body: Value = response.json().await.expect("json");
        let token = body["consistencyToken"].as_str().unwrap_or_default();
        if partition_in(token, "drones").is_some_and(&pick) {
            kept.push(id);
            if kept.len() == wanted {
                return kept;
            }
        }
    }
    panic!("no {wanted} drones landed in the partitions wanted");
}

/// Schedules deliveries for `owner` (through either API, with the account's key) until
/// `wanted` live in partitions `pick` accepts; returns their ids.
async fn deliveries_in(
    apis: &[Api],
    owner: &str,
    wanted: usize,
    pick: impl Fn(u32) -> bool,
) -> Vec<String> {
    let mut kept = Vec::new();
    for i in 0..400 {
        let response = apis[i % apis.len()]
            .post("/api/v1/deliveries", schedule_body(owner, 1.0))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "schedule");
        let body: Value = response.json().await.expect("json");
        let token = body["consistencyToken"].as_str().unwrap_or_default();
        if partition_in(token, "deliveries").is_some_and(&pick) {
            kept.push(body["deliveryId"].as_str().expect("id").to_string());
            if kept.len() == wanted {
                return kept;
            }
        }
    }
    panic!("no {wanted} deliveries landed in the partitions wanted");
}

async fn assign(api: &Api, delivery: &str, drone: &str) -> (StatusCode, Value) {
    let response = api.assign(delivery, drone).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// [`assign`], again while the answer is 503 with `Retry-After` (up to 30 s).
async fn assign_retrying(api: &Api, delivery: &str, drone: &str) -> (StatusCode, Value) {
    let started = Instant::now();
    loop {
        let response = api.assign(delivery, drone).await;
        let status = response.status();
        if status != StatusCode::SERVICE_UNAVAILABLE || started.elapsed() > Duration::from_secs(30)
        {
            return (status, response.json().await.unwrap_or(Value::Null));
        }
        assert!(response.headers().contains_key("retry-after"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_command_apis_take_conflicting_assignments_and_no_drone_or_delivery_is_taken_twice() {
    let Some(brokers) = brokers() else { return };
    let pair = Pair::start(&brokers).await;
    let (a, b) = (Api::of(&pair.a), Api::of(&pair.b));
    let (owned_a, owned_b) = (owned(&pair.a).await, owned(&pair.b).await);
    // The account at one process, its key used at both (the other follows the key).
    let (owner, _, key) = a.register_tenant("Contoso").await;
    let tenants = [a.with_key(&key), b.with_key(&key)];
    let operators = [a.clone(), b.clone()];
    // Six contested drones, three owned by each process; deliveries anywhere.
    let mut drones = drones_in(&operators, "da", 3, |p| owned_a.contains(&p)).await;
    drones.extend(drones_in(&operators, "db", 3, |p| owned_b.contains(&p)).await);
    let deliveries = deliveries_in(&tenants, &owner, 24, |_| true).await;

    // Every delivery asked for twice, each drone by eight, spread over both processes,
    // all at once.
    let attempts = deliveries
        .iter()
        .enumerate()
        .flat_map(|(i, delivery)| (0..2).map(move |k| (i, k, delivery.clone())));
    let answers = join_all(attempts.map(|(i, k, delivery)| {
        let api = operators[(i + k) % 2].clone();
        let drone = drones[(i + 3 * k) % drones.len()].clone();
        tokio::spawn(async move {
            let (status, body) = assign(&api, &delivery, &drone).await;
            (delivery, drone, status, body)
        })
    }))
    .await;
    let mut won = Vec::new();
    for answer in answers {
        let (delivery, drone, status, body) = answer.expect("task");
        assert!(
            status.is_success() || status == StatusCode::CONFLICT,
            "{delivery} <- {drone}: {status} {body}"
        );
        if status.is_success() {
            let token = body["consistencyToken"]
                .as_str()
                .expect("token")
                .to_string();
            won.push((delivery, drone, token));
        }
    }
    assert!(!won.is_empty(), "some assignments went through");
    let drones_won: HashSet<&String> = won.iter().map(|(_, d, _)| d).collect();
    let deliveries_won: HashSet<&String> = won.iter().map(|(d, _, _)| d).collect();
    assert_eq!(drones_won.len(), won.len(), "a drone carries two: {won:?}");
    assert_eq!(
        deliveries_won.len(),
        won.len(),
        "a delivery got two: {won:?}"
    );

    // Across processes too: a delivery owned by one, a drone by the other, asked at
    // the one that owns neither... or either: all four ways go through.
    let spare_a = drones_in(&operators, "sa", 2, |p| owned_a.contains(&p)).await;
    let spare_b = drones_in(&operators, "sb", 2, |p| owned_b.contains(&p)).await;
    let at_a = deliveries_in(&tenants, &owner, 2, |p| owned_a.contains(&p)).await;
    let at_b = deliveries_in(&tenants, &owner, 2, |p| owned_b.contains(&p)).await;
    let crossings = [
        (&a, &at_a[0], &spare_b[0]),
        (&b, &at_a[1], &spare_b[1]),
        (&a, &at_b[0], &spare_a[0]),
        (&b, &at_b[1], &spare_a[1]),
    ];
    for (api, delivery, drone) in crossings {
        let (status, body) = assign(api, delivery, drone).await;
        assert_eq!(status, StatusCode::OK, "{delivery} <- {drone}: {body}");
        let token = body["consistencyToken"]
            .as_str()
            .expect("token")
            .to_string();
        assert!(
            partition_in(&token, "drones").is_some()
                && partition_in(&token, "deliveries").is_some(),
            "the answer covers both records: {token}"
        );
        won.push((delivery.clone(), drone.clone(), token));
        // The drone, owned by the other process, is taken now.
        let (again, _) = assign(api, &at_b[0], drone).await;
        assert_ne!(again, StatusCode::OK, "{drone} taken twice");
    }

    // Every 2xx is visible through the query API, and the fleet agrees.
    let queries = Api::of(&pair.read);
    for (delivery, drone, token) in &won {
        let (status, body) = queries
            .get_json(&format!(
                "/api/v1/deliveries/{delivery}?consistencyToken={token}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{delivery}: {body}");
        assert_eq!(body["droneId"], json!(drone), "{delivery}: {body}");
        let (status, body) = queries
            .get_json(&format!("/api/v1/drones/{drone}?consistencyToken={token}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{drone}: {body}");
        assert_eq!(body["deliveryId"], json!(delivery), "{drone}: {body}");
    }
    drop(pair.shared);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_one_command_api_mid_load_loses_no_acknowledged_command_and_the_other_takes_over()
{
    let Some(brokers) = brokers() else { return };
    let mut pair = Pair::start(&brokers).await;
    let (a, b) = (Api::of(&pair.a), Api::of(&pair.b));
    // Keyed registrations: their ids (from the keys) fall in every partition, so each
    // process forwards some to the other.
    let load = |api: Api, worker: usize| {
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000 {
                let sent = api
                    .client
                    .post(api.url("/api/v1/accounts"))
                    .header("Idempotency-Key", format!("load-{worker}-{i}"))
                    .json(
                        &json!({"name": format!("A{worker}-{i}"), "email": "ops@contoso.example"}),
                    )
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let body: Value = r.json().await.expect("json");
                        let field = |f: &str| body[f].as_str().expect(f).to_string();
                        acked.push((field("accountId"), field("consistencyToken")));
                    }
                    Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(r) => panic!("unexpected answer {}", r.status()),
                    Err(_) => return acked, // the process is gone
                }
            }
            acked
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| load(if w % 2 == 0 { a.clone() } else { b.clone() }, w))
        .collect();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    pair.a.kill9();
    let killed = Instant::now();
    // The survivor owns every number, and answers for each, within 10 s.
    let mut answered: HashSet<u32> = HashSet::new();
    let mut n = 0;
    while answered.len() < PARTITIONS as usize {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the survivor answers for {answered:?} only, {:?} after the kill",
            killed.elapsed()
        );
        n += 1;
        let response = b
            .client
            .post(b.url("/api/v1/accounts"))
            .header("Idempotency-Key", format!("after-{n}"))
            .json(&json!({"name": "After", "email": "ops@contoso.example"}))
            .send()
            .await
            .expect("the survivor answers");
        if response.status() == StatusCode::CREATED {
            let body: Value = response.json().await.expect("json");
            let token = body["consistencyToken"].as_str().expect("token");
            if let Some(p) = partition_in(token, "accounts")
                && answered.insert(p)
            {
                eprintln!(
                    "partition {p} answered {:?} after the kill",
                    killed.elapsed()
                );
            }
        } else {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let took_over = killed.elapsed();
    eprintln!("the survivor answered for every partition {took_over:?} after the kill");
    let mut acked = Vec::new();
    for worker in workers {
        acked.extend(worker.await.expect("worker"));
    }
    assert!(acked.len() > 10, "load ran: {}", acked.len());
    // Every acknowledged account is in the read model and in the survivor's write model.
    let queries = Api::of(&pair.read);
    for (id, token) in &acked {
        let (status, body) = queries
            .get_json(&format!(
                "/api/v1/accounts/{id}/deliveries?consistencyToken={token}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
    }
    let mut suspended: HashMap<StatusCode, usize> = HashMap::new();
    for (id, _) in acked.iter().step_by((acked.len() / 20).max(1)) {
        let response = b
            .post(&format!("/api/v1/accounts/{id}/suspend"), json!({}))
            .await;
        *suspended.entry(response.status()).or_default() += 1;
    }
    assert_eq!(
        suspended.keys().collect::<Vec<_>>(),
        [&StatusCode::OK],
        "{suspended:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_command_api_taken_over_answers_no_2xx_for_a_conflicting_write_and_no_reader_counts_its_late_records()
 {
    let Some(brokers) = brokers() else { return };
    let pair = Pair::start(&brokers).await;
    let (a, b) = (Api::of(&pair.a), Api::of(&pair.b));
    let owned_a = owned(&pair.a).await;
    let (owner, _, key) = a.register_tenant("Contoso").await;
    let tenant = a.with_key(&key);
    // A drone and two deliveries that the process about to be paused owns.
    let drone = drones_in(std::slice::from_ref(&a), "p", 1, |p| owned_a.contains(&p)).await;
    let drone = &drone[0];
    let deliveries = deliveries_in(std::slice::from_ref(&tenant), &owner, 2, |p| {
        owned_a.contains(&p)
    })
    .await;
    let pid = pair.a.pid().expect("running").to_string();
    let signal = |s: &str| {
        let sent = Command::new("kill").args([s, &pid]).status().expect("kill");
        assert!(sent.success());
    };
    signal("-STOP");
    // Past its session, the other takes every number over and writes.
    pair.until_split(|_, b| b.len() == PARTITIONS as usize)
        .await;
    let (status, body) = assign(&b, &deliveries[0], drone).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["consistencyToken"]
        .as_str()
        .expect("token")
        .to_string();
    signal("-CONT");
    // The paused one still believes it owns the drone and the delivery: it decides on
    // what it knew, appends after the other's marker, finds it, and answers no 2xx.
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(5) {
        let (status, body) = assign(&a, &deliveries[1], drone).await;
        assert!(
            !status.is_success(),
            "the stale process acknowledged a conflicting write: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every reader folds one history: the query API, the live owner, and a read side
    // that folds the whole log afresh.
    let fresh_dir = temp_dir();
    let dir = fresh_dir.path().to_string_lossy().to_string();
    let fresh = run(
        &[
            "serve",
            "--roles",
            "projector,query-api",
            "--data-dir",
            &dir,
        ],
        &pair.shared,
    );
    for reader in [Api::of(&pair.read), Api::of(&fresh)] {
        reader.ready().await;
        let path = format!("/api/v1/drones/{drone}?consistencyToken={token}");
        let body = until(&reader, &path, |_| true).await;
        assert_eq!(body["deliveryId"], json!(deliveries[0]), "{body}");
        let path = format!("/api/v1/deliveries/{}", deliveries[1]);
        let body = until(&reader, &path, |_| true).await;
        assert_eq!(body["droneId"], Value::Null, "{body}");
        assert_eq!(body["stage"], json!("Created"), "{body}");
    }
    // Through either process, once the group has settled again (503 with Retry-After
    // while numbers change hands).
    let (status, body) = assign_retrying(&b, &deliveries[1], drone).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = assign_retrying(&a, &deliveries[1], drone).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&deliveries[0]),
        "{body}"
    );
}
