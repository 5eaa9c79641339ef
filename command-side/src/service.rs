//! The application layer of the write side: each command locks the shards of the
//! aggregates it reads or changes (in one global order, so two commands never wait on
//! each other in a cycle), answers a retried idempotency key from memory, checks the
//! expected version, asks the pure domain for events, appends them durably and only
//! then folds them into memory.

use crate::error::CommandError;
use crate::lease::WriterLease;
use crate::metrics::CommandMetrics;
use crate::state::{Kept, KeyedCommands, Outcome, Shard, Shards, Stream};
use api::{ConsistencyToken, Position};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Account, Changes, Confirmation, Delivery, DeliveryPlan, Drone, Package, PackageInfo,
    RegisterAccount, RegisterDrone, Reschedule, Telemetry,
};
use schemas::Codec;
use schemas::events::{ConfirmationType, Envelope, Event, EventMetadata, Topic};
use std::sync::Arc;
use std::time::Instant;
use storage::{Admitted, EventLog, NewRecord, Validity};
use uuid::Uuid;

const KEYED_PREFIX: &str = "key:";
const UNKEYED_PREFIX: &str = "cmd:";
/// Namespace of ids derived from idempotency keys (so a retry addresses the same aggregate).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_8f0e_4a57_4f1b_9d0c_2b7e_5a3f_1c88);

/// The idempotency key a causation id carries, if the command had one.
pub fn idempotency_key_of(causation_id: &str) -> Option<&str> {
    causation_id.strip_prefix(KEYED_PREFIX)
}

/// What the caller says about a command besides its body.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    pub idempotency_key: Option<String>,
    /// `If-Match`: the version the caller saw of the aggregate the command addresses.
    pub expected_version: Option<u64>,
    pub correlation_id: Option<String>,
}

/// A command that was carried out now (or earlier, for a retried idempotency key).
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub id: String,
    pub version: u64,
    pub token: ConsistencyToken,
    /// The answer comes from an earlier request with the same idempotency key (or an
    /// identical PUT) and nothing was appended.
    pub replayed: bool,
}

/// One drone's telemetry report, for the telemetry commands.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub drone_id: String,
    pub telemetry: Telemetry,
}

/// The schedule-delivery command.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleDelivery {
    pub owner_id: String,
    pub plan: DeliveryPlan,
    pub expedited: bool,
    pub confirmation_required: ConfirmationType,
    pub package_id: Option<String>,
    pub package: PackageInfo,
}

/// The write side's application service. A command future must be driven to completion
/// once started (the HTTP layer runs each as its own task): dropped while its append is in
/// flight, it would leave the folded state behind the log.
pub struct CommandService {
    log: Arc<dyn EventLog>,
    codec: Codec,
    accounts: Shards<Account>,
    drones: Shards<Drone>,
    packages: Shards<Package>,
    deliveries: Shards<Delivery>,
    metrics: CommandMetrics,
    /// How far ahead of this server's clock a telemetry report may be stamped.
    max_clock_skew: TimeDelta,
    telemetry_partitions: u32,
    /// Whether this process is still the writer of the command topics.
    lease: WriterLease,
}

/// Events of one command, with the versions they give their aggregates.
struct Draft {
    causation_id: String,
    correlation_id: String,
    now: DateTime<Utc>,
    items: Vec<(Topic, Envelope)>,
}

impl Draft {
    fn new(ctx: &CommandContext) -> Draft {
        let causation_id = match &ctx.idempotency_key {
            Some(key) => format!("{KEYED_PREFIX}{key}"),
            None => format!("{UNKEYED_PREFIX}{}", Uuid::new_v4()),
        };
        Draft {
            correlation_id: ctx
                .correlation_id
                .clone()
                .unwrap_or_else(|| causation_id.clone()),
            causation_id,
            // The log keeps microseconds; so does the state folded in memory.
            now: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .unwrap_or_else(Utc::now),
            items: Vec::new(),
        }
    }

    /// Adds events of one aggregate whose current version is `version`; returns its new one.
    fn add(&mut self, topic: Topic, aggregate_id: &str, version: u64, events: Vec<Event>) -> u64 {
        let mut version = version;
        for event in events {
            if topic != Topic::DroneTelemetry {
                version += 1;
            }
            self.items.push((
                topic,
                Envelope {
                    metadata: EventMetadata {
                        event_id: Uuid::new_v4(),
                        aggregate_id: aggregate_id.to_string(),
                        aggregate_version: version,
                        occurred_at: self.now,
                        causation_id: self.causation_id.clone(),
                        correlation_id: self.correlation_id.clone(),
                    },
                    event,
                },
            ));
        }
        version
    }

    fn of<'a>(&'a self, topic: Topic, id: &'a str) -> impl Iterator<Item = &'a Envelope> + 'a {
        self.items
            .iter()
            .filter(move |(t, e)| *t == topic && e.metadata.aggregate_id == id)
            .map(|(_, e)| e)
    }
}

fn derived_id(kind: &str, key: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, format!("{kind}/{key}").as_bytes()).to_string()
}

fn check_expected<A>(
    stream: Option<&Stream<A>>,
    ctx: &CommandContext,
    kind: &'static str,
    id: &str,
) -> Result<(), CommandError> {
    let actual = stream.map_or(0, |s| s.version);
    match ctx.expected_version {
        Some(expected) if expected != actual => Err(CommandError::VersionConflict {
            kind,
            id: id.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

fn replayed<A: Kept>(
    stream: Option<&Stream<A>>,
    ctx: &CommandContext,
    id: &str,
) -> Option<Accepted> {
    let key = ctx.idempotency_key.as_deref()?;
    let outcome = stream?.outcome(key)?;
    Some(Accepted {
        id: id.to_string(),
        version: outcome.version,
        token: outcome.token.clone(),
        replayed: true,
    })
}

fn existing<'a, A: Kept>(shard: &'a Shard<A>, id: &str) -> Result<&'a Stream<A>, CommandError> {
    shard
        .get(id)
        .filter(|s| s.exists())
        .ok_or_else(|| CommandError::NotFound {
            kind: A::KIND,
            id: id.to_string(),
        })
}

impl CommandService {
    /// Folds the command topics into memory; the topics must exist.
    pub async fn open(
        log: Arc<dyn EventLog>,
        codec: Codec,
        metrics: CommandMetrics,
        max_clock_skew: TimeDelta,
        lease: WriterLease,
    ) -> Result<CommandService, CommandError> {
        let service = CommandService {
            accounts: Shards::new(log.partitions(Topic::Accounts.name()).await?),
            drones: Shards::new(log.partitions(Topic::Drones.name()).await?),
            packages: Shards::new(log.partitions(Topic::Packages.name()).await?),
            deliveries: Shards::new(log.partitions(Topic::Deliveries.name()).await?),
            telemetry_partitions: log.partitions(Topic::DroneTelemetry.name()).await?,
            log,
            codec,
            metrics,
            max_clock_skew,
            lease,
        };
        service.rebuild().await?;
        Ok(service)
    }

    async fn rebuild(&self) -> Result<(), CommandError> {
        let mut keyed = KeyedCommands::default();
        let commands = Topic::ALL
            .into_iter()
            .filter(|t| *t != Topic::DroneTelemetry);
        let mut validity = Validity::default();
        for topic in commands {
            let partitions = self.log.partitions(topic.name()).await?;
            for partition in 0..partitions {
                let mut from = 0;
                loop {
                    let records = self.log.read(topic.name(), partition, from, 4096).await?;
                    let Some(last) = records.last() else { break };
                    from = last.offset + 1;
                    for record in &records {
                        if validity.admit(record) != Admitted::Valid {
                            continue; // a marker, or a record a later marker replaced
                        }
                        let envelopes = self.codec.decode_all(&record.value).map_err(|e| {
                            CommandError::Internal(format!(
                                "{}/{partition}@{}: {e}",
                                topic.name(),
                                record.offset
                            ))
                        })?;
                        let position = Position {
                            topic,
                            partition,
                            offset: record.offset,
                        };
                        for envelope in &envelopes {
                            keyed.note(topic, envelope, position);
                            self.replay(topic, envelope).await;
                        }
                    }
                }
            }
        }
        for (topic, id, key, outcome) in keyed.into_outcomes() {
            match topic {
                Topic::Accounts => self
                    .accounts
                    .lock(&id)
                    .await
                    .entry(&id)
                    .remember(key, outcome),
                Topic::Drones => self
                    .drones
                    .lock(&id)
                    .await
                    .entry(&id)
                    .remember(key, outcome),
                Topic::Packages => self
                    .packages
                    .lock(&id)
                    .await
                    .entry(&id)
                    .remember(key, outcome),
                Topic::Deliveries => self
                    .deliveries
                    .lock(&id)
                    .await
                    .entry(&id)
                    .remember(key, outcome),
                Topic::DroneTelemetry => {}
            }
        }
        Ok(())
    }

    async fn replay(&self, topic: Topic, envelope: &Envelope) {
        let id = &envelope.metadata.aggregate_id;
        let one = std::iter::once(envelope);
        match topic {
            Topic::Accounts => self.accounts.lock(id).await.entry(id).record(one),
            Topic::Drones => self.drones.lock(id).await.entry(id).record(one),
            Topic::Packages => self.packages.lock(id).await.entry(id).record(one),
            Topic::Deliveries => self.deliveries.lock(id).await.entry(id).record(one),
            Topic::DroneTelemetry => {}
        }
    }

    /// Encodes and appends a draft, one record per (topic, partition) it writes (a
    /// commit when several of its events live there, so readers get them all or none);
    /// returns where they landed once durable.
    async fn append(&self, command: &str, draft: &Draft) -> Result<ConsistencyToken, CommandError> {
        if !self.lease.holds() {
            return Err(CommandError::Unavailable(
                "this command-api is no longer the writer of the command topics (another instance took over)".into(),
            ));
        }
        let mut groups: Vec<(Topic, u32, Vec<&Envelope>)> = Vec::new();
        for (topic, envelope) in &draft.items {
            let partition =
                storage::partition_for(&envelope.metadata.aggregate_id, self.partitions(*topic));
            match groups
                .iter_mut()
                .find(|(t, p, _)| t == topic && *p == partition)
            {
                Some((_, _, events)) => events.push(envelope),
                None => groups.push((*topic, partition, vec![envelope])),
            }
        }
        let mut records = Vec::with_capacity(groups.len());
        for (topic, _, events) in &groups {
            let value = self
                .codec
                .encode_all(events.iter().copied())
                .map_err(|e| CommandError::Internal(e.to_string()))?;
            records.push(NewRecord {
                topic: topic.name().to_string(),
                // Every event of the group maps to this partition; the first one's key
                // routes the record there.
                key: events[0].metadata.aggregate_id.clone(),
                value: Bytes::from(value),
                headers: Vec::new(),
            });
        }
        let started = Instant::now();
        let appended = self.log.append(records).await.inspect_err(|e| {
            tracing::error!(command, error = %e, "append failed");
        })?;
        self.metrics
            .append_latency
            .observe(started.elapsed().as_secs_f64());
        for (topic, _) in &draft.items {
            self.metrics.events.with_label_values(&[topic.name()]).inc();
        }
        Ok(ConsistencyToken::from_positions(
            groups
                .iter()
                .zip(appended)
                .map(|((topic, _, _), a)| Position {
                    topic: *topic,
                    partition: a.partition,
                    offset: a.offset,
                }),
        ))
    }

    /// Partitions of a topic (fixed once created).
    fn partitions(&self, topic: Topic) -> u32 {
        match topic {
            Topic::Accounts => self.accounts.partitions(),
            Topic::Drones => self.drones.partitions(),
            Topic::Packages => self.packages.partitions(),
            Topic::Deliveries => self.deliveries.partitions(),
            Topic::DroneTelemetry => self.telemetry_partitions,
        }
    }

    fn count(&self, command: &str, result: &Result<Accepted, CommandError>) {
        let outcome = match result {
            Ok(a) if a.replayed => "replayed",
            Ok(_) => "accepted",
            Err(e) => {
                if e.status() == warp::http::StatusCode::CONFLICT {
                    self.metrics.conflicts.with_label_values(&[command]).inc();
                }
                e.outcome()
            }
        };
        self.metrics
            .commands
            .with_label_values(&[command, outcome])
            .inc();
    }

    async fn counted(
        &self,
        command: &'static str,
        run: impl Future<Output = Result<Accepted, CommandError>>,
    ) -> Result<Accepted, CommandError> {
        let result = run.await;
        self.count(command, &result);
        result
    }

    /// A command on one aggregate: replay, version check, decision, append, fold.
    async fn single<A: Kept>(
        &self,
        shards: &Shards<A>,
        id: &str,
        ctx: &CommandContext,
        command: &'static str,
        must_exist: bool,
        decide: impl FnOnce(&A) -> Result<Vec<Event>, CommandError>,
    ) -> Result<Accepted, CommandError> {
        let run = self.single_uncounted(shards, id, ctx, command, must_exist, decide);
        self.counted(command, run).await
    }

    async fn single_uncounted<A: Kept>(
        &self,
        shards: &Shards<A>,
        id: &str,
        ctx: &CommandContext,
        command: &'static str,
        must_exist: bool,
        decide: impl FnOnce(&A) -> Result<Vec<Event>, CommandError>,
    ) -> Result<Accepted, CommandError> {
        let mut shard = shards.lock(id).await;
        let stream = shard.get(id);
        if let Some(done) = replayed(stream, ctx, id) {
            return Ok(done);
        }
        if must_exist {
            existing(&shard, id)?;
        }
        check_expected(stream, ctx, A::KIND, id)?;
        let version = stream.map_or(0, |s| s.version);
        let unborn = A::default();
        let events = decide(stream.map_or(&unborn, |s| &s.state))?;
        let mut draft = Draft::new(ctx);
        let version = draft.add(A::TOPIC, id, version, events);
        let token = self.append(command, &draft).await?;
        let stream = shard.entry(id);
        stream.record(draft.of(A::TOPIC, id));
        let outcome = Outcome { version, token };
        if let Some(key) = &ctx.idempotency_key {
            stream.remember(key.clone(), outcome.clone());
        }
        Ok(Accepted {
            id: id.to_string(),
            version: outcome.version,
            token: outcome.token,
            replayed: false,
        })
    }

    pub async fn register_account(
        &self,
        ctx: &CommandContext,
        cmd: &RegisterAccount,
    ) -> Result<Accepted, CommandError> {
        let id = match &ctx.idempotency_key {
            Some(key) => derived_id("account", key),
            None => Uuid::new_v4().to_string(),
        };
        self.single(&self.accounts, &id, ctx, "register-account", false, |a| {
            Ok(a.register(cmd)?)
        })
        .await
    }

    pub async fn suspend_account(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.accounts, id, ctx, "suspend-account", true, |a| {
            Ok(a.suspend(reason)?)
        })
        .await
    }

    pub async fn reactivate_account(
        &self,
        ctx: &CommandContext,
        id: &str,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.accounts, id, ctx, "reactivate-account", true, |a| {
            Ok(a.reactivate()?)
        })
        .await
    }

    /// `PUT /drones/{id}`: registers the drone; the same specification again is a no-op.
    pub async fn register_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        cmd: &RegisterDrone,
    ) -> Result<Accepted, CommandError> {
        let run = async {
            {
                let shard = self.drones.lock(id).await;
                if let Some(stream) = shard.get(id).filter(|s| s.exists())
                    && ctx.idempotency_key.is_none()
                    && same_spec(&stream.state, cmd)
                {
                    return Ok(Accepted {
                        id: id.to_string(),
                        version: stream.version,
                        token: ConsistencyToken::default(),
                        replayed: true,
                    });
                }
            }
            self.single_uncounted(&self.drones, id, ctx, "register-drone", false, |a| {
                Ok(a.register(cmd)?)
            })
            .await
        };
        self.counted("register-drone", run).await
    }

    pub async fn ground_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.drones, id, ctx, "ground-drone", true, |a| {
            Ok(a.ground(reason)?)
        })
        .await
    }

    /// A returning drone landed at its base: it charges.
    pub async fn dock_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.drones, id, ctx, "dock-drone", true, |a| Ok(a.dock()?))
            .await
    }

    pub async fn return_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.drones, id, ctx, "return-drone", true, |a| {
            Ok(a.return_to_service()?)
        })
        .await
    }

    pub async fn request_notifications(
        &self,
        ctx: &CommandContext,
        id: &str,
        email: Option<String>,
        sms: Option<String>,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.deliveries, id, ctx, "notify-me", true, |a| {
            Ok(a.request_notifications(email, sms)?)
        })
        .await
    }

    /// Telemetry of one or many drones in one durable append. Readings do not move a
    /// drone's version and are not folded here (no command decides on them); each is
    /// checked against the drone's current state and this server's clock.
    pub async fn report_telemetry(
        &self,
        ctx: &CommandContext,
        readings: &[Reading],
    ) -> Result<Accepted, CommandError> {
        let run = async {
            // Reports change no state, so no lock is held through the append: concurrent
            // batches share the log's group commit instead of waiting in turn. A drone
            // is never removed, so one checked to exist still exists when its report lands.
            let mut draft = Draft::new(ctx);
            let mut partitions: Vec<u32> = readings
                .iter()
                .map(|r| self.drones.partition_of(&r.drone_id))
                .collect();
            partitions.sort_unstable();
            partitions.dedup();
            let mut version = 0;
            for p in partitions {
                let shard = self.drones.lock_partition(p).await;
                for r in readings
                    .iter()
                    .filter(|r| self.drones.partition_of(&r.drone_id) == p)
                {
                    let Some(stream) = shard.get(&r.drone_id).filter(|s| s.exists()) else {
                        return Err(if readings.len() == 1 {
                            CommandError::NotFound {
                                kind: "drone",
                                id: r.drone_id.clone(),
                            }
                        } else {
                            CommandError::Domain(domain::DomainError::UnknownDrone {
                                drone_id: r.drone_id.clone(),
                            })
                        });
                    };
                    let events = stream.state.report_position(
                        &r.telemetry,
                        draft.now,
                        self.max_clock_skew,
                    )?;
                    version = stream.version;
                    draft.add(Topic::DroneTelemetry, &r.drone_id, stream.version, events);
                }
            }
            let token = self.append("report-telemetry", &draft).await?;
            let (id, version) = match readings {
                [one] => (one.drone_id.clone(), version),
                _ => (String::new(), 0),
            };
            Ok(Accepted {
                id,
                version,
                token,
                replayed: false,
            })
        };
        self.counted("report-telemetry", run).await
    }

    /// Registers the package and creates the delivery in one append.
    pub async fn schedule_delivery(
        &self,
        ctx: &CommandContext,
        cmd: &ScheduleDelivery,
    ) -> Result<Accepted, CommandError> {
        let run = async {
            let (id, package_id) = match &ctx.idempotency_key {
                Some(key) => {
                    let id = derived_id("delivery", key);
                    let package = cmd
                        .package_id
                        .clone()
                        .unwrap_or_else(|| derived_id("package", &id));
                    (id, package)
                }
                None => (
                    Uuid::new_v4().to_string(),
                    cmd.package_id
                        .clone()
                        .unwrap_or_else(|| Uuid::new_v4().to_string()),
                ),
            };
            let accounts = self.accounts.lock(&cmd.owner_id).await;
            let mut packages = self.packages.lock(&package_id).await;
            let mut deliveries = self.deliveries.lock(&id).await;
            if let Some(done) = replayed(deliveries.get(&id), ctx, &id) {
                return Ok(done);
            }
            let owner = accounts.get(&cmd.owner_id).map(|s| &s.state);
            let package = packages.get(&package_id);
            let package_events = package
                .map_or(&Package::default(), |s| &s.state)
                .register(&cmd.package)?;
            let delivery_events = deliveries
                .get(&id)
                .map_or(&Delivery::default(), |s| &s.state)
                .schedule(
                    &cmd.owner_id,
                    owner.unwrap_or(&Account::default()),
                    &cmd.plan,
                    cmd.expedited,
                    cmd.confirmation_required,
                    &package_id,
                    cmd.package.weight_kg(),
                )?;
            let mut draft = Draft::new(ctx);
            let package_version = package.map_or(0, |s| s.version);
            draft.add(
                Topic::Packages,
                &package_id,
                package_version,
                package_events,
            );
            let version = draft.add(Topic::Deliveries, &id, 0, delivery_events);
            let token = self.append("schedule-delivery", &draft).await?;
            packages
                .entry(&package_id)
                .record(draft.of(Topic::Packages, &package_id));
            let stream = deliveries.entry(&id);
            stream.record(draft.of(Topic::Deliveries, &id));
            if let Some(key) = &ctx.idempotency_key {
                let outcome = Outcome {
                    version,
                    token: token.clone(),
                };
                stream.remember(key.clone(), outcome.clone());
                packages.entry(&package_id).remember(key.clone(), outcome);
            }
            Ok(Accepted {
                id,
                version,
                token,
                replayed: false,
            })
        };
        self.counted("schedule-delivery", run).await
    }

    pub async fn assign_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        drone_id: &str,
    ) -> Result<Accepted, CommandError> {
        self.with_drone(
            ctx,
            id,
            Some(drone_id),
            "assign-drone",
            |delivery, drone| {
                let unknown = Drone::default();
                Ok(delivery.assign_drone(id, drone_id, drone.unwrap_or(&unknown))?)
            },
        )
        .await
    }

    /// Takes the drone off a delivery headed to pickup (compensation), so it can be
    /// dispatched again.
    pub async fn unassign_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: &str,
    ) -> Result<Accepted, CommandError> {
        self.with_drone(ctx, id, None, "unassign-drone", |delivery, _| {
            Ok(delivery.unassign_drone(id, reason)?)
        })
        .await
    }

    /// Gives up on a delivery that is not finished; its drone, if any, is released.
    pub async fn fail_delivery(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: &str,
    ) -> Result<Accepted, CommandError> {
        self.with_drone(ctx, id, None, "fail-delivery", |delivery, _| {
            Ok(delivery.fail(id, reason.to_owned())?)
        })
        .await
    }

    pub async fn reschedule_delivery(
        &self,
        ctx: &CommandContext,
        id: &str,
        changes: &Reschedule,
    ) -> Result<Accepted, CommandError> {
        self.with_drone(ctx, id, None, "reschedule-delivery", |delivery, _| {
            Ok(delivery.reschedule(id, changes)?)
        })
        .await
    }

    pub async fn cancel_delivery(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, CommandError> {
        self.with_drone(ctx, id, None, "cancel-delivery", |delivery, _| {
            Ok(delivery.cancel(id, reason.clone())?)
        })
        .await
    }

    pub async fn pick_up(&self, ctx: &CommandContext, id: &str) -> Result<Accepted, CommandError> {
        let now = Utc::now();
        self.with_drone(ctx, id, None, "pick-up", |delivery, _| {
            Ok(delivery.pick_up(id, now)?)
        })
        .await
    }

    pub async fn complete(
        &self,
        ctx: &CommandContext,
        id: &str,
        confirmation: &Confirmation,
    ) -> Result<Accepted, CommandError> {
        self.with_drone(ctx, id, None, "complete-delivery", |delivery, _| {
            Ok(delivery.complete(id, confirmation)?)
        })
        .await
    }

    /// A command on a delivery that may change its drone too. The drone is the one named
    /// (`assign`) or the one the delivery has; its shard is locked before the delivery's
    /// (drones come before deliveries in the lock order), so the delivery is read once
    /// to learn its drone and checked again under both locks.
    async fn with_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        named_drone: Option<&str>,
        command: &'static str,
        decide: impl Fn(&Delivery, Option<&Drone>) -> Result<Changes, CommandError>,
    ) -> Result<Accepted, CommandError> {
        let run = self.with_drone_uncounted(ctx, id, named_drone, command, decide);
        self.counted(command, run).await
    }

    async fn with_drone_uncounted(
        &self,
        ctx: &CommandContext,
        id: &str,
        named_drone: Option<&str>,
        command: &'static str,
        decide: impl Fn(&Delivery, Option<&Drone>) -> Result<Changes, CommandError>,
    ) -> Result<Accepted, CommandError> {
        loop {
            let drone_id = match named_drone {
                Some(d) => Some(d.to_string()),
                None => {
                    let shard = self.deliveries.lock(id).await;
                    let stream = shard.get(id);
                    if let Some(done) = replayed(stream, ctx, id) {
                        return Ok(done);
                    }
                    existing(&shard, id)?.state.drone_id.clone()
                }
            };
            let mut drones = match &drone_id {
                Some(d) => Some(self.drones.lock(d).await),
                None => None,
            };
            let mut deliveries = self.deliveries.lock(id).await;
            let stream = deliveries.get(id);
            if let Some(done) = replayed(stream, ctx, id) {
                return Ok(done);
            }
            let stream = existing(&deliveries, id)?;
            if named_drone.is_none() && stream.state.drone_id != drone_id {
                continue; // the delivery's drone changed while no lock was held
            }
            check_expected(Some(stream), ctx, "delivery", id)?;
            let drone = match (&drones, &drone_id) {
                (Some(shard), Some(d)) => shard.get(d).filter(|s| s.exists()),
                _ => None,
            };
            let changes = decide(&stream.state, drone.map(|s| &s.state))?;
            let mut draft = Draft::new(ctx);
            // The drone's events first: if a log without atomic batches keeps only a
            // prefix, a drone is left reserved rather than a delivery shown as assigned
            // to a drone that never took it.
            let drone_version = match (&changes.drone_id, drone) {
                (Some(d), Some(s)) if Some(d) == drone_id.as_ref() => {
                    Some(draft.add(Topic::Drones, d, s.version, changes.drone.clone()))
                }
                _ if changes.drone.is_empty() => None,
                _ => {
                    return Err(CommandError::Internal(format!(
                        "{command}: drone events for a drone that is not locked"
                    )));
                }
            };
            let version = draft.add(Topic::Deliveries, id, stream.version, changes.delivery);
            let token = self.append(command, &draft).await?;
            let outcome = Outcome {
                version,
                token: token.clone(),
            };
            if let (Some(shard), Some(d), Some(drone_version)) =
                (drones.as_mut(), &drone_id, drone_version)
            {
                let stream = shard.entry(d);
                stream.record(draft.of(Topic::Drones, d));
                if let Some(key) = &ctx.idempotency_key {
                    stream.remember(
                        key.clone(),
                        Outcome {
                            version: drone_version,
                            token: token.clone(),
                        },
                    );
                }
            }
            let stream = deliveries.entry(id);
            stream.record(draft.of(Topic::Deliveries, id));
            if let Some(key) = &ctx.idempotency_key {
                stream.remember(key.clone(), outcome);
            }
            return Ok(Accepted {
                id: id.to_string(),
                version,
                token,
                replayed: false,
            });
        }
    }
}

fn same_spec(drone: &Drone, cmd: &RegisterDrone) -> bool {
    drone.model == cmd.model()
        && drone.payload_kg == cmd.payload_kg()
        && drone.range_km == cmd.range_km()
        && drone.speed_mps == cmd.speed_mps()
        && drone.home == cmd.home()
}
