//! A log that fails, times out and lands late (issue 7, item 3): whatever an append's
//! fate, a retried command returns its first result or decides anew, nothing counts
//! twice, and a drone whose steps were cut short is released exactly once.
//!
//! The app runs in-process on [`FaultyLog`], an embedded log with scripted faults, and is
//! driven over real HTTP. What counts in the log is read back through the one fold every
//! reader uses (`storage::Validity`), so a record that landed after a newer marker is
//! seen to count for nobody.

use crate::helpers::{Api, drone_spec, schedule_body, temp_dir};
use async_trait::async_trait;
use drone_delivery::settings::Role;
use drone_delivery::{App, Settings};
use reqwest::{Response, StatusCode};
use schemas::Codec;
use schemas::events::{Envelope, Event, Topic};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::{
    Admitted, Appended, Consumer, EventLog, GroupConsumer, NewRecord, Offset, Record, StartAt,
    StorageError, TopicSpec, Validity, partition_for, validity::MARKER_HEADER,
};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};

/// What happens to a scripted append.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Refused: nothing is written.
    Fail,
    /// Written, but the writer hears a timeout.
    LandsThenTimesOut,
    /// The writer hears a timeout; the records land later, right after the next marker
    /// of their partition (a produce retried inside the client after the writer gave up).
    LandsLate,
    /// The writer hears a timeout and the records never land.
    Lost,
}

/// An embedded log whose appends fail on cue: [`FaultyLog::script`] queues a fault for
/// the next command record on a topic (markers pass, so the writer can settle); `down`
/// refuses every append.
pub struct FaultyLog {
    inner: EmbeddedLog,
    pub down: AtomicBool,
    script: Mutex<VecDeque<(&'static str, Fault)>>,
    held: Mutex<Vec<NewRecord>>,
}

impl FaultyLog {
    pub fn open(dir: &Path) -> FaultyLog {
        FaultyLog {
            inner: EmbeddedLog::open(dir).expect("log"),
            down: AtomicBool::new(false),
            script: Mutex::new(VecDeque::new()),
            held: Mutex::new(Vec::new()),
        }
    }

    /// The next append of a command record to `topic` meets `fault`.
    pub fn script(&self, topic: Topic, fault: Fault) {
        lock(&self.script).push_back((topic.name(), fault));
    }

    /// Every fault scripted has happened.
    pub fn script_done(&self) -> bool {
        lock(&self.script).is_empty()
    }

    fn scripted(&self, records: &[NewRecord]) -> Option<Fault> {
        let mut script = lock(&self.script);
        let &(topic, fault) = script.front()?;
        records.iter().any(|r| r.topic == topic).then(|| {
            script.pop_front();
            fault
        })
    }

    /// The records that count, decoded, from every partition of `topic`.
    pub async fn counted(&self, topic: Topic) -> Vec<Envelope> {
        let codec = Codec::new().expect("codec");
        let mut validity = Validity::default();
        let mut events = Vec::new();
        for partition in 0..self.inner.partitions(topic.name()).await.expect("topic") {
            let records = self
                .inner
                .read(topic.name(), partition, 0, usize::MAX)
                .await
                .expect("read");
            for record in &records {
                if validity.admit(record) == Admitted::Valid {
                    events.extend(codec.decode_all(&record.value).expect("decodes"));
                }
            }
        }
        events
    }

    /// How many records of `topic` count for nobody (they landed after a newer marker).
    pub async fn skipped(&self, topic: Topic) -> usize {
        let mut validity = Validity::default();
        let mut skipped = 0;
        for partition in 0..self.inner.partitions(topic.name()).await.expect("topic") {
            let records = self
                .inner
                .read(topic.name(), partition, 0, usize::MAX)
                .await
                .expect("read");
            skipped += records
                .iter()
                .filter(|r| validity.admit(r) == Admitted::Skipped)
                .count();
        }
        skipped
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn timed_out() -> StorageError {
    StorageError::Unavailable("injected: the append timed out".into())
}

fn is_marker(record: &NewRecord) -> bool {
    record.headers.iter().any(|(name, _)| name == MARKER_HEADER)
}

#[async_trait]
impl EventLog for FaultyLog {
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), StorageError> {
        self.inner.create_topics(topics).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, StorageError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable(
                "injected: the log is down".into(),
            ));
        }
        if records.iter().any(is_marker) {
            let appended = self.inner.append(records.clone()).await?;
            // What was held for these partitions lands now, after the marker.
            let mut marked = Vec::new();
            for marker in &records {
                let partitions = self.inner.partitions(&marker.topic).await?;
                marked.push((marker.topic.clone(), partition_for(&marker.key, partitions)));
            }
            let held: Vec<NewRecord> = lock(&self.held).drain(..).collect();
            let mut late = Vec::new();
            for record in held {
                let partitions = self.inner.partitions(&record.topic).await?;
                let partition = partition_for(&record.key, partitions);
                if marked.contains(&(record.topic.clone(), partition)) {
                    late.push(record);
                } else {
                    lock(&self.held).push(record);
                }
            }
            if !late.is_empty() {
                self.inner.append(late).await?;
            }
            return Ok(appended);
        }
        match self.scripted(&records) {
            None => self.inner.append(records).await,
            Some(Fault::Fail) => Err(StorageError::Unavailable(
                "injected: the append failed".into(),
            )),
            Some(Fault::LandsThenTimesOut) => {
                self.inner.append(records).await?;
                Err(timed_out())
            }
            Some(Fault::LandsLate) => {
                lock(&self.held).extend(records);
                Err(timed_out())
            }
            Some(Fault::Lost) => Err(timed_out()),
        }
    }
    fn atomic_batches(&self) -> bool {
        self.inner.atomic_batches()
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.inner.read(topic, partition, from, max).await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<Offset, StorageError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset, StorageError> {
        self.inner.wait_for(topic, partition, offset, timeout).await
    }
    async fn wait_for_any(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
        timeout: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.wait_for_any(topic, positions, timeout).await
    }
    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: Offset,
    ) -> Result<(), StorageError> {
        self.inner
            .commit_offset(group, topic, partition, next)
            .await
    }
    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        self.inner.committed_offset(group, topic, partition).await
    }
    async fn consume(
        &self,
        topic: &str,
        positions: &[(u32, Offset)],
    ) -> Result<Box<dyn Consumer>, StorageError> {
        self.inner.consume(topic, positions).await
    }
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        start: Arc<dyn StartAt>,
    ) -> Result<Box<dyn GroupConsumer>, StorageError> {
        self.inner.subscribe(group, topic, start).await
    }
}

/// The app in-process on a faulty log, without the workflow (so only the test assigns
/// drones), and a client for it.
pub async fn faulty_app(dir: &Path) -> (Arc<FaultyLog>, App, Api) {
    let log = Arc::new(FaultyLog::open(&dir.join("log")));
    let store = Arc::new(EmbeddedReadStore::open(&dir.join("views")).expect("store"));
    let mut settings = Settings::new("127.0.0.1:0".parse().expect("addr"), dir.into());
    settings.roles = vec![Role::CommandApi, Role::Projector, Role::QueryApi];
    settings.operator_key = Some(crate::helpers::OPERATOR_KEY.into());
    let app = App::start_with(settings, log.clone(), Some(store))
        .await
        .expect("app");
    let api = Api {
        base: format!("http://{}", app.addr),
        client: crate::helpers::client(),
    };
    (log, app, api)
}

async fn send_keyed(api: &Api, path: &str, key: &str, body: Value) -> Response {
    api.client
        .post(api.url(path))
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("sent")
}

/// Until `check` holds on the JSON at `path` (read-your-writes aside, for what the
/// reconciler does by itself).
async fn eventually(api: &Api, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = api.get_json(path).await;
        if status == StatusCode::OK && check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn of_kind<'a>(events: &'a [Envelope], kind: &str, id: &str) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| e.metadata.aggregate_id == id && e.event.type_name() == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_cannot_take_the_write_gets_503_and_nothing_changes() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (account, _) = api.register_account("Contoso").await;

    log.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let response = api
            .post(&format!("/api/v1/accounts/{account}/suspend"), json!({}))
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let failed = api
        .post("/api/v1/deliveries", schedule_body(&account, 1.0))
        .await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back up: the account is still at version 1, so the suspension now makes version 2.
    log.down.store(false, Ordering::SeqCst);
    let response = api
        .client
        .post(api.url(&format!("/api/v1/accounts/{account}/suspend")))
        .header("if-match", "\"1\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["version"], 2);
    assert!(log.counted(Topic::Deliveries).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_whose_append_timed_out_but_landed_is_found_by_its_retry() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (account, _) = api.register_account("Contoso").await;
    let path = format!("/api/v1/accounts/{account}/suspend");

    log.script(Topic::Accounts, Fault::LandsThenTimesOut);
    let first = send_keyed(&api, &path, "suspend-1", json!({})).await;
    assert_eq!(
        first.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never a false answer"
    );
    // The retry settles the partition (a marker, then the fold up to it), finds the
    // record that landed with its key, and returns its result.
    let retry = send_keyed(&api, &path, "suspend-1", json!({})).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let body: Value = retry.json().await.expect("json");
    assert_eq!(body["version"], 2);
    let counted = log.counted(Topic::Accounts).await;
    assert_eq!(of_kind(&counted, "AccountSuspended", &account).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_lands_late_after_the_marker_counts_for_nobody_and_the_retry_decides_anew() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (account, _) = api.register_account("Contoso").await;

    log.script(Topic::Deliveries, Fault::LandsLate);
    let body = schedule_body(&account, 1.0);
    let first = send_keyed(&api, "/api/v1/deliveries", "order-7", body.clone()).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = send_keyed(&api, "/api/v1/deliveries", "order-7", body.clone()).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    let scheduled: Value = retry.json().await.expect("json");
    let delivery = scheduled["deliveryId"].as_str().expect("id").to_owned();

    // The first try's record landed after the retry's marker: it is on the log, and no
    // reader counts it.
    assert!(
        log.skipped(Topic::Deliveries).await >= 1,
        "the late record is on the log"
    );
    let counted = log.counted(Topic::Deliveries).await;
    assert_eq!(of_kind(&counted, "DeliveryCreated", &delivery).len(), 1);
    assert_eq!(
        counted
            .iter()
            .filter(|e| e.event.type_name() == "PackageRegistered")
            .count(),
        1,
        "the package lives with its delivery, in the same record"
    );
    // The next command finds version 1, and so does the read side.
    let again = send_keyed(&api, "/api/v1/deliveries", "order-7", body).await;
    assert_eq!(
        again.status(),
        StatusCode::ACCEPTED,
        "the key's first result"
    );
    let view = eventually(&api, &format!("/api/v1/deliveries/{delivery}"), |v| {
        v["version"] == 1
    })
    .await;
    assert_eq!(view["stage"], "Created");
    let changed = api
        .client
        .patch(api.url(&format!("/api/v1/deliveries/{delivery}")))
        .header("if-match", "\"1\"")
        .json(&json!({"deadline": "2031-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(changed.status(), StatusCode::OK);
    eventually(&api, &format!("/api/v1/deliveries/{delivery}"), |v| {
        v["version"] == 2
    })
    .await;
    app.stop().await;
    drop(log);

    // A restart folds the same: the late record still counts for nobody.
    let (_log, app, api) = faulty_app(dir.path()).await;
    let (status, view) = api
        .get_json(&format!("/api/v1/deliveries/{delivery}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["version"], 2);
    app.stop().await;
}

/// A drone and a delivery for it, on a fresh app.
async fn drone_and_delivery(api: &Api) -> (String, String) {
    let (account, _) = api.register_account("Contoso").await;
    let registered = api
        .client
        .put(api.url("/api/v1/drones/d1"))
        .json(&drone_spec(5.0))
        .send()
        .await
        .expect("sent");
    assert!(registered.status().is_success());
    let (delivery, _) = api.schedule(&account, 1.0).await;
    ("d1".to_owned(), delivery)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_whose_commit_was_lost_is_abandoned_and_its_drone_released_once() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (drone, delivery) = drone_and_delivery(&api).await;
    let assign = format!("/api/v1/deliveries/{delivery}/assign-drone");

    // The drone is reserved; the delivery's commit times out and never lands.
    log.script(Topic::Deliveries, Fault::Lost);
    let first = send_keyed(&api, &assign, "assign-1", json!({"droneId": drone})).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The reconciler settles the delivery's partition, finds the reservation neither
    // taken nor given up, abandons it at the delivery and releases the drone: idle again
    // at version 3 (registered, reserved, released). Idle alone would also match a read
    // model that has not shown the reservation yet.
    eventually(&api, &format!("/api/v1/drones/{drone}"), |v| {
        v["status"] == "idle" && v["version"].as_u64() >= Some(3)
    })
    .await;
    let drones = log.counted(Topic::Drones).await;
    assert_eq!(of_kind(&drones, "DroneAssigned", &drone).len(), 1);
    assert_eq!(
        of_kind(&drones, "DroneUnassigned", &drone).len(),
        1,
        "released once"
    );
    let deliveries = log.counted(Topic::Deliveries).await;
    assert_eq!(
        of_kind(&deliveries, "AssignmentAbandoned", &delivery).len(),
        1
    );
    assert!(of_kind(&deliveries, "DroneAssigned", &delivery).is_empty());

    // The client's retry with the same key decides anew, with a new reservation.
    let retry = send_keyed(&api, &assign, "assign-1", json!({"droneId": drone})).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let view = eventually(&api, &format!("/api/v1/deliveries/{delivery}"), |v| {
        v["stage"] == "HeadedToPickup"
    })
    .await;
    assert_eq!(view["droneId"], drone.as_str());
    let again = send_keyed(&api, &assign, "assign-1", json!({"droneId": drone})).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "then the key's first result"
    );
    let drones = log.counted(Topic::Drones).await;
    assert_eq!(of_kind(&drones, "DroneAssigned", &drone).len(), 2);
    assert_eq!(of_kind(&drones, "DroneUnassigned", &drone).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_whose_commit_landed_despite_a_timeout_stands_and_its_retry_returns_it() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (drone, delivery) = drone_and_delivery(&api).await;
    let assign = format!("/api/v1/deliveries/{delivery}/assign-drone");

    log.script(Topic::Deliveries, Fault::LandsThenTimesOut);
    let first = send_keyed(&api, &assign, "assign-1", json!({"droneId": drone})).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = send_keyed(&api, &assign, "assign-1", json!({"droneId": drone})).await;
    assert_eq!(retry.status(), StatusCode::OK);
    // Give the reconciler time to look at the drone: nothing to release.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let drones = log.counted(Topic::Drones).await;
    assert_eq!(of_kind(&drones, "DroneAssigned", &drone).len(), 1);
    assert!(of_kind(&drones, "DroneUnassigned", &drone).is_empty());
    let deliveries = log.counted(Topic::Deliveries).await;
    assert_eq!(of_kind(&deliveries, "DroneAssigned", &delivery).len(), 1);
    let (_, view) = api.get_json(&format!("/api/v1/drones/{drone}")).await;
    assert_eq!(view["status"], "assigned");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_whose_drone_step_failed_is_followed_by_the_reconciler_once() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (drone, delivery) = drone_and_delivery(&api).await;
    let assigned = api.assign(&delivery, &drone).await;
    assert_eq!(assigned.status(), StatusCode::OK);

    // The cancellation commits on the delivery; the drone's release fails at first.
    log.script(Topic::Drones, Fault::Fail);
    let cancelled = api
        .client
        .delete(api.url(&format!("/api/v1/deliveries/{delivery}")))
        .send()
        .await
        .expect("sent");
    assert!(cancelled.status().is_success(), "{}", cancelled.status());
    assert!(log.script_done());
    // Idle after the release: version 3 (registered, reserved, released).
    eventually(&api, &format!("/api/v1/drones/{drone}"), |v| {
        v["status"] == "idle" && v["version"].as_u64() >= Some(3)
    })
    .await;
    let drones = log.counted(Topic::Drones).await;
    let released = of_kind(&drones, "DroneUnassigned", &drone);
    assert_eq!(released.len(), 1, "released once");
    let Event::DroneUnassigned(release) = &released[0].event else {
        unreachable!()
    };
    assert_eq!(release.reason, "cancelled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_after_a_lost_commit_releases_the_drone() {
    let dir = temp_dir();
    let (log, app, api) = faulty_app(dir.path()).await;
    let (drone, delivery) = drone_and_delivery(&api).await;
    // The reservation lands; the commit is lost; the process stops before reconciling
    // (the reconciler would also have come, but a restart must not depend on it).
    log.script(Topic::Deliveries, Fault::Lost);
    let first = api.assign(&delivery, &drone).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    log.down.store(true, Ordering::SeqCst);
    app.stop().await;
    drop(log);

    let (log, app, api) = faulty_app(dir.path()).await;
    // Idle after the release: version 3 (registered, reserved, released).
    eventually(&api, &format!("/api/v1/drones/{drone}"), |v| {
        v["status"] == "idle" && v["version"].as_u64() >= Some(3)
    })
    .await;
    let drones = log.counted(Topic::Drones).await;
    assert_eq!(of_kind(&drones, "DroneUnassigned", &drone).len(), 1);
    let assigned = api.assign(&delivery, &drone).await;
    assert_eq!(assigned.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_no_projection_can_decode_is_set_aside_listed_and_counted_and_the_projection_goes_on()
 {
    let dir = temp_dir();
    let (log, _app, api) = faulty_app(dir.path()).await;
    api.ready().await;
    let (before, _) = api.register_account("Before").await;
    // Not Avro at all, on the accounts topic, keyed like an account, written by the
    // partition's writer (a record of another writer would not count at all).
    let topic = Topic::Accounts.name();
    let partition = partition_for("poison", log.partitions(topic).await.expect("partitions"));
    let records = log.read(topic, partition, 0, 10_000).await.expect("read");
    let writer = records
        .last()
        .and_then(|r| r.header("writer"))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .expect("the start-up marker names the writer");
    let appended = log
        .append(vec![NewRecord {
            topic: topic.into(),
            key: "poison".into(),
            value: bytes::Bytes::from_static(b"\x00\x00\x00\x00\x01not avro"),
            headers: storage::written_by(&writer),
        }])
        .await
        .expect("append");
    let (after, token) = api.register_account("After").await;
    // The projection went past it: the account after it shows up.
    let (status, _) = api
        .get_json(&format!(
            "/api/v1/accounts/{after}/deliveries?consistencyToken={token}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .get_json(&format!("/api/v1/accounts/{before}/deliveries"))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Its partition is not the one the token covers: wait for the projector to pass it.
    let letters = eventually(&api, "/api/v1/dead-letters", |letters| {
        letters["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    })
    .await;
    let items = letters["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{letters}");
    assert_eq!(items[0]["projection"], "accounts");
    assert_eq!(items[0]["topic"], Topic::Accounts.name());
    assert_eq!(items[0]["partition"], appended[0].partition);
    assert_eq!(items[0]["offset"], appended[0].offset);
    assert_eq!(items[0]["key"], "poison");
    assert!(!items[0]["error"].as_str().unwrap_or_default().is_empty());
    let metrics = api.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("projector_dead_letters_total{projection=\"accounts\"} 1"),
        "{metrics}"
    );
}
