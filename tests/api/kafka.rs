//! The log on Kafka with each role its own OS process, on a real Kafka-protocol broker at
//! `KAFKA_BROKERS` (`scripts/test` starts tansu when it is installed). Without one these
//! tests say they were skipped.
//!
//! Every test runs its own deployment under a topic prefix of its own, so they share the
//! broker. The test broker (tansu 0.6, memory storage) loses the rest of a record batch
//! when a fetch starts inside one, so the processes here produce one record per batch
//! (`--kafka-option batch.num.messages=1`): the test's setting, not the product's.

use crate::helpers::{Api, Server, replay, temp_dir};
use crate::streams::Sse;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) fn brokers() -> Option<String> {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) => Some(brokers),
        Err(_) => {
            eprintln!("skipped: KAFKA_BROKERS is not set, so the roles were not run on Kafka");
            None
        }
    }
}

pub(crate) fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{}.",
        std::process::id(),
        Utc::now().timestamp_millis() % 1_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The options every process of one deployment shares.
pub(crate) fn log_args(brokers: &str, prefix: &str) -> Vec<String> {
    vec![
        "--log".into(),
        format!("kafka://{brokers}"),
        "--kafka-topic-prefix".into(),
        prefix.into(),
        "--kafka-option".into(),
        "batch.num.messages=1".into(),
        // tansu 0.6 gives a dead member's partitions to nobody under the cooperative
        // protocol; it does under the eager one.
        "--kafka-option".into(),
        "partition.assignment.strategy=range".into(),
        // A killed projector's partitions go to the next member after 6 s (not 10).
        "--kafka-option".into(),
        "session.timeout.ms=6000".into(),
        // A crashed workflow's lease is free after 2 s of silence.
        "--writer-session-secs".into(),
        "2".into(),
    ]
}

/// A command API, once it has taken the partitions its group gave it.
pub(crate) async fn writer(shared: &[String]) -> Server {
    let server = run(&["command-api"], shared);
    Api::of(&server).ready().await;
    server
}

pub(crate) fn run(role: &[&str], shared: &[String]) -> Server {
    let mut args: Vec<&str> = role.to_vec();
    args.extend(shared.iter().map(String::as_str));
    Server::run(&args)
}

/// One deployment: the command API, the read side (projectors and query API together,
/// since the embedded read store is single-process) and the workflow, each a process.
struct Deployment {
    shared: Vec<String>,
    read_dir: tempfile::TempDir,
    command: Server,
    read: Server,
    workflow: Server,
}

impl Deployment {
    async fn start(brokers: &str) -> Deployment {
        let shared = log_args(brokers, &unique_prefix());
        let command = writer(&shared).await;
        let read_dir = temp_dir();
        let read = Deployment::read_side(&shared, read_dir.path());
        let workflow = run(
            &["workflow", "--command-url", command.base.as_str()],
            &shared,
        );
        Deployment {
            shared,
            read_dir,
            command,
            read,
            workflow,
        }
    }

    pub(crate) fn read_side(shared: &[String], dir: &std::path::Path) -> Server {
        let dir = dir.to_string_lossy();
        run(
            &[
                "serve",
                "--roles",
                "projector,query-api",
                "--data-dir",
                dir.as_ref(),
            ],
            shared,
        )
    }

    fn commands(&self) -> Api {
        Api::of(&self.command)
    }

    fn queries(&self) -> Api {
        Api::of(&self.read)
    }
}

/// Polls the query API until `done` holds (up to 30 s).
pub(crate) async fn until(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = api.get_json(path).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn report(api: &Api, drone: &str, at: (f64, f64)) {
    let response = api
        .post(
            &format!("/api/v1/drones/{drone}/telemetry"),
            json!({"position": {"latitude": at.0, "longitude": at.1, "altitude": 60},
                   "batteryPct": 90, "at": Utc::now()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_goes_through_command_api_projector_query_api_and_workflow_processes() {
    let Some(brokers) = brokers() else { return };
    let d = Deployment::start(&brokers).await;
    let (commands, queries) = (d.commands(), d.queries());
    for role in [&d.command, &d.read, &d.workflow] {
        Api::of(role).ready().await;
    }

    let (account, token) = commands.register_account("Contoso").await;
    commands.register_drone("drone-1", 5.0).await;
    let (status, view) = queries
        .get_json(&format!(
            "/api/v1/accounts/{account}/deliveries?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");

    let scheduled = commands
        .post(
            "/api/v1/deliveries",
            crate::helpers::schedule_body(&account, 1.2),
        )
        .await;
    assert_eq!(scheduled.status(), StatusCode::ACCEPTED);
    let scheduled: Value = scheduled.json().await.expect("json");
    let delivery = scheduled["deliveryId"].as_str().expect("id").to_string();
    let token = scheduled["consistencyToken"].as_str().expect("token");
    // The customer's tracking link, minted by the command API, opens the stream on the
    // query API: a process with no command side, fed from Kafka.
    let tracking = scheduled["trackingUrl"].as_str().expect("a tracking URL");
    let (_, tracking_token) = tracking.split_once("?t=").expect("a token");
    let mut stream = Sse::of(
        Sse::open(
            &queries.url(&format!(
                "/api/v1/deliveries/{delivery}/status/stream?t={tracking_token}"
            )),
            None,
        )
        .await,
    );
    let (status, view) = queries
        .get_json(&format!(
            "/api/v1/deliveries/{delivery}?consistencyToken={token}"
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a token from command-api is honoured by query-api"
    );
    assert_eq!(view["ownerId"], account.as_str());

    // The workflow, another process, assigns the drone and flies it on telemetry.
    let status_path = format!("/api/v1/deliveries/{delivery}/status");
    until(&queries, &status_path, |s| s["stage"] == "HeadedToPickup").await;
    report(&commands, "drone-1", (47.61, -122.33)).await;
    until(&queries, &status_path, |s| s["stage"] == "HeadedToDropoff").await;
    report(&commands, "drone-1", (47.65, -122.30)).await;
    let done = until(&queries, &status_path, |s| s["stage"] == "Completed").await;
    assert_eq!(done["droneId"], "drone-1");

    // The stream saw it all happen, in order, and ended.
    let mut stages = Vec::new();
    while let Some(event) = stream.next().await {
        if event.event == "status" && stages.last() != Some(&event.data["stage"]) {
            stages.push(event.data["stage"].clone());
        }
    }
    // (The workflow may have assigned the drone before the stream's first state.)
    if stages.first() == Some(&json!("Created")) {
        stages.remove(0);
    }
    assert_eq!(
        stages,
        ["HeadedToPickup", "HeadedToDropoff", "Completed"].map(|s| json!(s)),
        "the stages the stream sent"
    );

    let (_, timeline) = queries
        .get_json(&format!("/api/v1/deliveries/{delivery}/events"))
        .await;
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "DeliveryCreated",
            "DroneAssigned",
            "DeliveryPickedUp",
            "DeliveryCompleted"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_command_api_mid_load_loses_no_acknowledged_command() {
    let Some(brokers) = brokers() else { return };
    let mut d = Deployment::start(&brokers).await;
    let commands = d.commands();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (commands, acked) = (commands.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let sent = commands
                    .client
                    .post(commands.url("/api/v1/accounts"))
                    .json(&json!({"name": format!("A{i}"), "email": "ops@contoso.example"}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let body: Value = r.json().await.expect("json");
                        let id = body["accountId"].as_str().expect("id").to_string();
                        acked.lock().expect("lock").push(id);
                    }
                    _ => return, // the process is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.command.kill9();
    for writer in writers {
        let _ = writer.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 10, "load ran: {}", acked.len());

    // A new command API folds the log and goes on; every acknowledged account is there.
    d.command = writer(&d.shared).await;
    let commands = d.commands();
    let (after, token) = commands.register_account("After").await;
    let queries = d.queries();
    for id in acked.iter().chain([&after]) {
        let (status, body) = queries
            .get_json(&format!(
                "/api/v1/accounts/{id}/deliveries?consistencyToken={token}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
    }
    // The write model folded them too: suspending one is a state change, not a 404
    // (503 with Retry-After while the dead process's partitions are still its, until
    // the group's session has passed).
    let started = Instant::now();
    loop {
        let suspended = commands
            .post(&format!("/api/v1/accounts/{}/suspend", acked[0]), json!({}))
            .await;
        if suspended.status() != StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(suspended.status(), StatusCode::OK);
            break;
        }
        assert!(suspended.headers().contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never taken over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every read a client can make of the deployment, by path.
async fn snapshot(api: &Api, account: &str, deliveries: &[String]) -> Vec<(String, Value)> {
    let mut paths = vec![
        format!("/api/v1/accounts/{account}/deliveries?limit=500"),
        "/api/v1/drones?limit=500".to_string(),
    ];
    for d in deliveries {
        paths.push(format!("/api/v1/deliveries/{d}"));
        paths.push(format!("/api/v1/deliveries/{d}/events"));
    }
    let mut out = Vec::new();
    for path in paths {
        let (status, body) = api.get_json(&path).await;
        out.push((format!("{status} {path}"), body));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_projector_resumes_from_its_checkpoints_and_equals_a_rebuild() {
    let Some(brokers) = brokers() else { return };
    let mut d = Deployment::start(&brokers).await;
    let commands = d.commands();
    let (account, _) = commands.register_account("Contoso").await;
    commands.register_drone("drone-1", 5.0).await;
    let mut deliveries = Vec::new();
    for _ in 0..5 {
        deliveries.push(commands.schedule(&account, 1.0).await.0);
    }
    until(
        &d.queries(),
        &format!("/api/v1/deliveries/{}", deliveries[4]),
        |_| true,
    )
    .await;

    d.read.kill9();
    let mut last_token = String::new();
    for _ in 0..5 {
        let (id, token) = commands.schedule(&account, 1.0).await;
        deliveries.push(id);
        last_token = token;
    }
    d.read = Deployment::read_side(&d.shared, d.read_dir.path());
    let queries = d.queries();
    // Ready once the group has handed the restarted projectors their partitions (the
    // dead ones held them until their session ended) and they have caught up.
    let restarted = Instant::now();
    queries.ready().await;
    eprintln!("restarted read side ready after {:?}", restarted.elapsed());
    let (status, _) = queries
        .get_json(&format!(
            "/api/v1/deliveries/{}?consistencyToken={last_token}",
            deliveries[9]
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "the restarted projector caught up");

    // A read side built from the log alone shows the same.
    let rebuild_dir = temp_dir();
    let rebuilt = Deployment::read_side(&d.shared, rebuild_dir.path());
    let rebuilt = Api::of(&rebuilt);
    let (status, _) = rebuilt
        .get_json(&format!(
            "/api/v1/deliveries/{}?consistencyToken={last_token}",
            deliveries[9]
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The workflow may still be moving things: wait until both agree or time out.
    agree(&queries, &rebuilt, &account, &deliveries).await;

    // `replay --url` rebuilds the read side's deliveries on Kafka (a generation of its
    // own consumer groups, read from offset zero) and it still reads the same.
    let said = replay(&["--projection", "deliveries", "--url", d.read.base.as_str()]);
    assert!(said.contains("generation 1"), "{said}");
    agree(&queries, &rebuilt, &account, &deliveries).await;
}

/// Waits (up to 30 s) until both read sides answer the same.
async fn agree(one: &Api, other: &Api, account: &str, deliveries: &[String]) {
    let started = Instant::now();
    loop {
        let (a, b) = (
            snapshot(one, account, deliveries).await,
            snapshot(other, account, deliveries).await,
        );
        if a == b {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{a:?}\n!=\n{b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A broker of the test's own, so pausing it disturbs no other test.
struct OwnBroker {
    child: Child,
    brokers: String,
}

impl OwnBroker {
    fn start() -> Option<OwnBroker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let brokers = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(&brokers).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(OwnBroker { child, brokers })
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_broker_gets_503_and_not_ready_and_the_command_api_recovers_by_itself() {
    if brokers().is_none() {
        return;
    }
    let Some(broker) = OwnBroker::start() else {
        eprintln!("skipped: tansu is not on PATH, so the broker could not be paused");
        return;
    };
    let shared = {
        let mut args = log_args(&broker.brokers, &unique_prefix());
        // Give up on a produce within the test's patience.
        args.extend(["--kafka-option".into(), "message.timeout.ms=3000".into()]);
        args
    };
    let command = writer(&shared).await;
    let api = Api::of(&command);
    api.register_account("Before").await;

    broker.signal("-STOP");
    let refused = api
        .post(
            "/api/v1/accounts",
            json!({"name": "During", "email": "ops@contoso.example"}),
        )
        .await;
    assert_eq!(
        refused.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never a false 2xx"
    );
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    broker.signal("-CONT");
    let started = Instant::now();
    loop {
        let response = api
            .post(
                "/api/v1/accounts",
                json!({"name": "After", "email": "ops@contoso.example"}),
            )
            .await;
        if response.status() == StatusCode::CREATED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.ready().await;
}

/// What is on the topics is plain Confluent-framed Avro: Python's confluent-kafka reads
/// every record and fastavro decodes each with the checked-in `.avsc` files alone
/// (`tests/wire/decode.py`), and it is what the API accepted.
#[tokio::test(flavor = "multi_thread")]
async fn every_record_on_the_topics_decodes_with_an_independent_client_and_the_avsc_files() {
    let Some(brokers) = brokers() else { return };
    let python_ready = Command::new("python3")
        .args(["-c", "import confluent_kafka, fastavro"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ready {
        eprintln!("skipped: python3 with confluent-kafka and fastavro is not installed");
        return;
    }
    let prefix = unique_prefix();
    let command = writer(&log_args(&brokers, &prefix)).await;
    let api = Api::of(&command);
    let (account, _) = api.register_account("Wire Co").await;
    api.register_drone("wire-1", 5.0).await;
    let (delivery, _) = api.schedule(&account, 1.25).await;
    assert_eq!(
        api.assign(&delivery, "wire-1").await.status(),
        StatusCode::OK
    );
    // A batch of 20 reports of one drone: one Commit record in its partition.
    let batch: Vec<Value> = (0..20)
        .map(|i| {
            json!({"droneId": "wire-1", "position": {"latitude": 47.6 + f64::from(i) / 1000.0,
                   "longitude": -122.3, "altitude": 50}, "batteryPct": 90, "at": Utc::now()})
        })
        .collect();
    assert_eq!(
        api.post("/api/v1/telemetry", json!(batch)).await.status(),
        StatusCode::ACCEPTED
    );
    let picked = api
        .post(&format!("/api/v1/deliveries/{delivery}/pickup"), json!({}))
        .await;
    assert_eq!(picked.status(), StatusCode::OK);

    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/avro");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire/decode.py");
    let output = Command::new("python3")
        .args([script, &brokers, &prefix, schemas])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "decode.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON from decode.py");
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["type"] == kind).collect() };

    let accounts = of("AccountRegistered");
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["aggregateId"], account.as_str());
    assert_eq!(
        accounts[0]["key"],
        account.as_str(),
        "keyed by the aggregate"
    );
    assert_eq!(accounts[0]["data"]["name"], "Wire Co");
    assert_eq!(of("DroneRegistered")[0]["data"]["payloadKg"], 5.0);
    let created = of("DeliveryCreated");
    assert_eq!(created[0]["aggregateId"], delivery.as_str());
    assert_eq!(created[0]["data"]["ownerId"], account.as_str());
    assert_eq!(of("PackageRegistered")[0]["data"]["weightKg"], 1.25);
    let assigned = of("DroneAssigned");
    assert_eq!(assigned.len(), 2, "on the delivery's and the drone's topic");
    assert!(assigned.iter().all(|e| e["data"]["droneId"] == "wire-1"));
    let reports = of("DronePositionReported");
    assert_eq!(reports.len(), 20);
    assert!(reports.iter().all(|e| e["topic"] == "drone-telemetry"));
    assert_eq!(
        reports
            .iter()
            .filter_map(|e| e["offset"].as_u64())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "one record (a Commit) holds the batch"
    );
    assert_eq!(of("DeliveryPickedUp").len(), 2);
    // The writer opened every partition of the command topics with its marker, before
    // any command's record there.
    let markers = of("WriterMarker");
    assert!(!markers.is_empty(), "the writer's markers are on the log");
    let instance = &markers[0]["data"]["instance"];
    assert!(
        markers.iter().all(|m| &m["data"]["instance"] == instance),
        "one command-api instance"
    );
    for event in events
        .iter()
        .filter(|e| e["type"] != "WriterMarker" && e["topic"] != "drone-telemetry")
    {
        let opened = markers.iter().any(|m| {
            m["topic"] == event["topic"]
                && m["partition"] == event["partition"]
                && m["offset"].as_u64() < event["offset"].as_u64()
        });
        assert!(opened, "a marker precedes {event}");
    }
}

/// The value of a gauge on a process's `/metrics`.
pub(crate) async fn gauge(server: &Server, name: &str) -> Option<f64> {
    let text = Api::of(server)
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_workflow_takes_over_when_the_active_one_is_killed() {
    let Some(brokers) = brokers() else { return };
    let mut d = Deployment::start(&brokers).await;
    let (commands, queries) = (d.commands(), d.queries());
    for role in [&d.command, &d.read, &d.workflow] {
        Api::of(role).ready().await;
    }
    // A second workflow: healthy and ready (it is there to take over), not deciding.
    let standby = run(
        &["workflow", "--command-url", d.command.base.as_str()],
        &d.shared,
    );
    Api::of(&standby).ready().await;
    assert_eq!(gauge(&d.workflow, "workflow_active").await, Some(1.0));
    assert_eq!(gauge(&standby, "workflow_active").await, Some(0.0));

    let (account, _) = commands.register_account("Contoso").await;
    commands.register_drone("drone-1", 5.0).await;
    let (first, _) = commands.schedule(&account, 1.0).await;
    let status = |id: &str| format!("/api/v1/deliveries/{id}/status");
    until(&queries, &status(&first), |s| {
        s["stage"] == "HeadedToPickup"
    })
    .await;
    let sent = |server: &Server| {
        let api = Api::of(server);
        async move {
            let text = api.get("/metrics").await.text().await.expect("metrics");
            text.lines()
                .filter(|l| l.starts_with("workflow_commands_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    assert_eq!(sent(&standby).await, 0.0, "the standby decided nothing");

    // The active one dies; the standby takes over once its heartbeats have stopped for
    // a session (2 s here), folds the log and dispatches what comes next.
    d.workflow.kill9();
    commands.register_drone("drone-2", 5.0).await;
    let (second, _) = commands.schedule(&account, 1.0).await;
    let assigned = until(&queries, &status(&second), |s| {
        s["stage"] == "HeadedToPickup"
    })
    .await;
    assert_eq!(assigned["droneId"], "drone-2", "{assigned}");
    assert_eq!(gauge(&standby, "workflow_active").await, Some(1.0));
    assert!(sent(&standby).await >= 1.0);
    // And it flies the first delivery on, from where the dead one left it.
    report(&commands, "drone-1", (47.61, -122.33)).await;
    until(&queries, &status(&first), |s| {
        s["stage"] == "HeadedToDropoff"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_command_api_or_workflow_hands_its_role_over_at_once() {
    let Some(brokers) = brokers() else { return };
    // Heartbeat sessions of 30 s: a successor that waited for them would be too late.
    let mut shared = log_args(&brokers, &unique_prefix());
    let session = shared
        .iter()
        .position(|a| a == "--writer-session-secs")
        .expect("the session flag");
    shared[session + 1] = "30".into();
    let mut command = writer(&shared).await;
    Api::of(&command).register_account("First").await;
    let mut active = run(
        &["workflow", "--command-url", command.base.as_str()],
        &shared,
    );
    Api::of(&active).ready().await;
    let standby = run(
        &["workflow", "--command-url", command.base.as_str()],
        &shared,
    );
    Api::of(&standby).ready().await;
    assert_eq!(gauge(&standby, "workflow_active").await, Some(0.0));

    // SIGTERM: the active workflow releases its lease as it stops.
    let stopped = Instant::now();
    active.stop();
    while gauge(&standby, "workflow_active").await != Some(1.0) {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the standby took over within half a session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // So does the command API: it leaves the owners group as it stops, so its successor
    // is given every partition at once, without waiting out the group session.
    command.stop();
    let stopped = Instant::now();
    let successor = writer(&shared).await;
    Api::of(&successor).register_account("Second").await;
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "the successor took over within half a session"
    );
}
