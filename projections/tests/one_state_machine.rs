//! One state machine: the read models fold the domain's own `apply`, so after any
//! workload the deliveries and drones they show equal the command side's, field for field.
//! A random workload of domain decisions is folded both ways: into the aggregates as the
//! command side keeps them, and through the log and the real projector into the read store.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use domain::{
    Account, Aggregate, Confirmation, Delivery, DeliveryPlan, DomainError, Drone, FollowUp,
    RegisterAccount, RegisterDrone, Reschedule, Telemetry, location,
};
use projections::{Projector, ProjectorMetrics};
use prometheus::Registry;
use read_model::tables::{DELIVERIES, DRONE_POSITIONS, DRONES, SINGLE_ROW, WHOLE_FLEET};
use read_model::views::{DeliveryView, DronePosition, DroneView};
use schemas::Codec;
use schemas::events::{
    ConfirmationType, DronePositionReported, Envelope, Event, EventMetadata, Topic,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage::{EventLog, NewRecord, ReadStore, TopicSpec};
use storage_embedded::{EmbeddedLog, EmbeddedReadStore};
use uuid::Uuid;

/// xorshift64*: a deterministic workload per seed, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct Stream<A> {
    state: A,
    version: u64,
}

/// The command side's aggregates and the log it would have written.
#[derive(Default)]
struct World {
    drones: BTreeMap<String, Stream<Drone>>,
    deliveries: BTreeMap<String, Stream<Delivery>>,
    log: Vec<(Topic, Envelope)>,
    clock: i64,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0)
        .single()
        .expect("time")
}

impl World {
    fn now(&mut self) -> DateTime<Utc> {
        self.clock += 1;
        start() + TimeDelta::seconds(self.clock)
    }

    fn write<A: Aggregate>(
        stream: &mut Stream<A>,
        log: &mut Vec<(Topic, Envelope)>,
        topic: Topic,
        id: &str,
        events: Vec<Event>,
        at: DateTime<Utc>,
    ) {
        for event in events {
            stream.version += 1;
            stream.state.apply(&event, at);
            log.push((topic, envelope(id, stream.version, at, event)));
        }
    }

    /// A delivery command's events, then what its drone's stream follows with, as the
    /// command side writes them: the delivery's record is the commit point.
    fn record(&mut self, delivery_id: &str, events: Vec<Event>, at: DateTime<Utc>) {
        let stream = self.deliveries.entry(delivery_id.to_owned()).or_default();
        let carrier = stream.state.drone_id.clone();
        World::write(
            stream,
            &mut self.log,
            Topic::Deliveries,
            delivery_id,
            events,
            at,
        );
        let delivery = stream.state.clone();
        if let Some(drone_id) = carrier.or(delivery.drone_id.clone()) {
            let drone = self.drones.entry(drone_id.clone()).or_default();
            if let FollowUp::Append(events) = drone.state.follow(&drone_id, delivery_id, &delivery)
            {
                World::write(drone, &mut self.log, Topic::Drones, &drone_id, events, at);
            }
        }
    }

    /// assign-drone's steps: the reservation on the drone's stream, then the commit on
    /// the delivery's, or the drone's release when the delivery refuses it.
    fn assign(
        &mut self,
        delivery_id: &str,
        drone_id: &str,
        attempt: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let delivery = self
            .deliveries
            .get(delivery_id)
            .map(|s| s.state.clone())
            .unwrap_or_default();
        let job = delivery.job()?;
        let drone = self.drones.entry(drone_id.to_owned()).or_default();
        let reserved = drone.state.reserve(drone_id, delivery_id, &job, attempt)?;
        let Some(Event::DroneAssigned(reservation)) = reserved.first().cloned() else {
            return Ok(());
        };
        World::write(drone, &mut self.log, Topic::Drones, drone_id, reserved, at);
        match delivery.assign_drone(&reservation) {
            Ok(events) => self.record(delivery_id, events, at),
            Err(_) => {
                let drone = self.drones.entry(drone_id.to_owned()).or_default();
                let released = drone
                    .state
                    .release(drone_id, delivery_id, attempt, "refused");
                World::write(drone, &mut self.log, Topic::Drones, drone_id, released, at);
            }
        }
        Ok(())
    }
}

fn envelope(id: &str, version: u64, at: DateTime<Utc>, event: Event) -> Envelope {
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            aggregate_id: id.to_owned(),
            aggregate_version: version,
            occurred_at: at,
            causation_id: "cmd:test".into(),
            correlation_id: "cmd:test".into(),
            principal: "operator".into(),
        },
        event,
    }
}

fn near(rng: &mut Rng) -> schemas::events::Location {
    location(47.55 + rng.unit() * 0.15, -122.40 + rng.unit() * 0.15, 0.0).expect("valid")
}

/// Runs `steps` random commands; refused ones change nothing, as on the command side.
fn workload(seed: u64, steps: usize) -> World {
    let mut rng = Rng(seed);
    let mut world = World::default();
    let owner = Account::replay(
        &Account::default()
            .register(
                &RegisterAccount::new("Contoso", "ops@contoso.example").expect("valid"),
                "",
            )
            .expect("registers"),
        start(),
    );
    for d in 0..4 {
        let at = world.now();
        let spec = RegisterDrone::new("X8", 5.0, 60.0, 15.0, near(&mut rng)).expect("valid");
        let id = format!("drone-{d}");
        let stream = world.drones.entry(id.clone()).or_default();
        let events = stream.state.register(&spec).expect("registers");
        World::write(stream, &mut world.log, Topic::Drones, &id, events, at);
    }
    for step in 0..steps {
        let at = world.now();
        let drone_id = format!("drone-{}", rng.below(4));
        let delivery_id = format!("delivery-{}", rng.below(24));
        let drone = world.drones[&drone_id].state.clone();
        let delivery = world
            .deliveries
            .get(&delivery_id)
            .map(|s| s.state.clone())
            .unwrap_or_default();
        let changes = match rng.below(20) {
            0..=2 => {
                let plan = DeliveryPlan::new(
                    near(&mut rng),
                    near(&mut rng),
                    None,
                    Some(at + TimeDelta::hours(2)),
                )
                .expect("valid");
                delivery.schedule(
                    "acct-1",
                    &owner,
                    &plan,
                    rng.below(2) == 0,
                    ConfirmationType::None,
                    "pkg",
                    1.0 + rng.unit(),
                )
            }
            3..=5 => {
                let _ = world.assign(&delivery_id, &drone_id, &format!("attempt-{step}"), at);
                continue;
            }
            6..=8 => delivery.pick_up(&delivery_id, at),
            9..=11 => {
                let proof = Confirmation::new(ConfirmationType::None, near(&mut rng), at, None)
                    .expect("valid");
                delivery.complete(&delivery_id, &proof)
            }
            12 => delivery.cancel(Some("changed my mind".into())),
            13 => {
                let later = Reschedule::new(Some(near(&mut rng)), None, None, None).expect("valid");
                delivery.reschedule(&later)
            }
            14 => delivery.unassign_drone(&delivery_id, "drone grounded"),
            15 => delivery.fail(format!("fault {step}")),
            16 => delivery.request_notifications(
                Some("me@example.com".into()),
                (rng.below(2) == 0).then(|| "+15550100".into()),
                (rng.below(2) == 0).then(|| "https://hooks.example.com/n".into()),
            ),
            _ => {
                // A drone command or a report instead.
                let events = match rng.below(4) {
                    0 => drone.ground(Some("inspection".into())),
                    1 => drone.return_to_service(),
                    2 => drone.dock(),
                    _ => {
                        // Telemetry, sometimes older than the last report.
                        let stamp = at - TimeDelta::seconds(rng.below(30) as i64);
                        let report = Telemetry::new(near(&mut rng), rng.unit() * 100.0, stamp)
                            .expect("valid");
                        if let Ok(events) =
                            drone.report_position(&report, at, TimeDelta::seconds(30))
                        {
                            let version = world.drones[&drone_id].version;
                            for event in events {
                                world.log.push((
                                    Topic::DroneTelemetry,
                                    envelope(&drone_id, version, at, event),
                                ));
                            }
                        }
                        continue;
                    }
                };
                if let Ok(events) = events {
                    let stream = world.drones.entry(drone_id.clone()).or_default();
                    World::write(stream, &mut world.log, Topic::Drones, &drone_id, events, at);
                }
                continue;
            }
        };
        if let Ok(events) = changes {
            world.record(&delivery_id, events, at);
        }
    }
    world
}

#[tokio::test]
async fn read_models_fold_to_the_command_sides_state_field_for_field() {
    for seed in [1, 7, 42, 1234, 99_991] {
        let world = workload(seed, 400);
        let dir = tempfile::tempdir().expect("dir");
        let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("log"));
        let store = Arc::new(EmbeddedReadStore::open(&dir.path().join("views")).expect("store"));
        let specs: Vec<TopicSpec> = Topic::ALL
            .into_iter()
            .map(|t| TopicSpec {
                name: t.name().into(),
                partitions: 4,
            })
            .collect();
        log.create_topics(&specs).await.expect("topics");
        let codec = Codec::new().expect("codec");
        // In the order the command side wrote them (appends keep it per key).
        let records: Vec<NewRecord> = world
            .log
            .iter()
            .map(|(topic, envelope)| NewRecord {
                topic: topic.name().into(),
                key: envelope.metadata.aggregate_id.clone(),
                value: codec.encode(envelope).expect("encodes").into(),
                headers: Vec::new(),
            })
            .collect();
        log.append(records).await.expect("appends");
        let metrics = ProjectorMetrics::new(&Registry::new()).expect("metrics");
        let projector = Projector::new(
            log.clone(),
            store.clone(),
            codec,
            metrics.clone(),
            Duration::ZERO,
        );
        for projection in projections::all() {
            projector.catch_up(&projection).await.expect("catches up");
        }

        assert!(
            world.deliveries.len() > 3,
            "seed {seed}: the workload created deliveries"
        );
        for (id, stream) in &world.deliveries {
            let row = store
                .get(DELIVERIES, id, SINGLE_ROW)
                .await
                .expect("get")
                .expect("row");
            let view: DeliveryView = serde_json::from_slice(&row.value).expect("view");
            assert_eq!(view.delivery, stream.state, "seed {seed}: delivery {id}");
            assert_eq!(view.version, stream.version, "seed {seed}: delivery {id}");
        }
        for (id, stream) in &world.drones {
            let row = store
                .get(DRONES, id, SINGLE_ROW)
                .await
                .expect("get")
                .expect("row");
            let view: DroneView = serde_json::from_slice(&row.value).expect("view");
            assert_eq!(view.drone, stream.state, "seed {seed}: drone {id}");
            assert_eq!(view.version, stream.version, "seed {seed}: drone {id}");
            // The position shown is the newest report, as the domain folds telemetry.
            let mut folded = Drone::default();
            for (topic, envelope) in &world.log {
                if *topic == Topic::DroneTelemetry && envelope.metadata.aggregate_id == *id {
                    folded.apply(&envelope.event, envelope.metadata.occurred_at);
                }
            }
            let shown: Option<DronePosition> = store
                .get(DRONE_POSITIONS, WHOLE_FLEET, id)
                .await
                .expect("get")
                .map(|r| serde_json::from_slice(&r.value).expect("position"));
            assert_eq!(
                shown.map(|p| (p.position, p.battery_pct, p.at)),
                folded
                    .position
                    .zip(folded.battery_pct)
                    .zip(folded.position_at)
                    .map(|((p, b), at)| (p, b, at)),
                "seed {seed}: drone {id}"
            );
        }
    }
}

#[test]
fn the_workload_reaches_every_stage() {
    let world = workload(42, 400);
    let stages: std::collections::HashSet<_> = world
        .deliveries
        .values()
        .filter_map(|s| s.state.stage)
        .collect();
    assert!(stages.len() >= 4, "{stages:?}");
    let reported = world
        .log
        .iter()
        .filter(|(t, e)| {
            *t == Topic::DroneTelemetry
                && matches!(
                    e.event,
                    Event::DronePositionReported(DronePositionReported { .. })
                )
        })
        .count();
    assert!(reported > 10);
}
