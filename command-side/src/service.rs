//! The application layer of the write side: each command locks the shards of the
//! aggregates it reads or changes (in one global order, so two commands never wait on
//! each other in a cycle), answers a retried idempotency key from memory, checks the
//! expected version, asks the pure domain for events, appends them durably and only
//! then folds them into memory.

use crate::bodies::Contacts;
use crate::error::CommandError;
use crate::fence::{self, Fence, PartitionWriter};
use crate::metrics::CommandMetrics;
use crate::ownership::{OWNERS_TOPIC, Ownership, Place};
use crate::peers::{Peers, StepCall, StepReply};
use crate::state::{Guard, Kept, KeyIndex, KeyedCommands, Mark, Outcome, Shard, Shards, Stream};
use api::{ConsistencyToken, Position, Principal};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Account, Confirmation, Delivery, DeliveryPlan, Drone, Package, PackageInfo, RegisterAccount,
    RegisterDrone, Reschedule, Telemetry,
};
use schemas::Codec;
use schemas::events::{ConfirmationType, Envelope, Event, EventMetadata, Topic};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use storage::{Admitted, EventLog, NewRecord, Validity};
use uuid::Uuid;

/// The topics of the write model (telemetry is none of them).
const COMMAND_TOPICS: [Topic; 4] = [
    Topic::Accounts,
    Topic::Drones,
    Topic::Packages,
    Topic::Deliveries,
];

/// A look at whether the key follower has caught up serves the unknown keys of this long.
const KEYS_CHECK_REUSED: std::time::Duration = std::time::Duration::from_millis(20);

const KEYED_PREFIX: &str = "key:";
const UNKEYED_PREFIX: &str = "cmd:";
/// Namespace of ids derived from idempotency keys (so a retry addresses the same aggregate);
/// each deployment's ids come from its own namespace under this one.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_8f0e_4a57_4f1b_9d0c_2b7e_5a3f_1c88);

/// The scoped idempotency key and the request fingerprint a causation id carries, if the
/// command had a key (`key:<scoped>/<fingerprint>`; records written before keys were
/// scoped have no fingerprint).
pub fn idempotency_key_of(causation_id: &str) -> Option<(&str, &str)> {
    let keyed = causation_id.strip_prefix(KEYED_PREFIX)?;
    Some(keyed.rsplit_once('/').unwrap_or((keyed, "")))
}

/// The first 128 bits of a SHA-256, in hex.
fn short_hash(text: &str) -> String {
    api::hex(&Sha256::digest(text.as_bytes())[..16])
}

/// What the caller says about a command besides its body.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    /// The client's `Idempotency-Key`, scoped to the principal and the command
    /// ([`CommandContext::scoped_key`]).
    pub idempotency_key: Option<String>,
    /// `If-Match`: the version the caller saw of the aggregate the command addresses.
    pub expected_version: Option<u64>,
    pub correlation_id: Option<String>,
    /// Who asks: checked against what the command touches and recorded in its events.
    pub principal: Principal,
    /// The request (path and canonical body), so a retried key with another request is
    /// told apart from a retry ([`CommandContext::fingerprint`]).
    pub fingerprint: String,
}

impl CommandContext {
    /// A client's key as the command side keeps it: one principal's key for one command
    /// is no other's.
    pub fn scoped_key(principal: &Principal, command: &str, key: &str) -> String {
        short_hash(&format!("{principal}\0{command}\0{key}"))
    }

    /// The fingerprint of a request: its path and its body, JSON made canonical (keys
    /// sorted, no spacing), so a retry that re-serialises the same body matches.
    pub fn fingerprint(path: &str, body: &[u8]) -> String {
        let canonical = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| serde_json::to_string(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        short_hash(&format!("{path}\0{canonical}"))
    }
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
    pub(crate) drones: Shards<Drone>,
    packages: Shards<Package>,
    pub(crate) deliveries: Shards<Delivery>,
    pub(crate) metrics: CommandMetrics,
    /// How far ahead of this server's clock a telemetry report may be stamped.
    max_clock_skew: TimeDelta,
    telemetry_partitions: u32,
    /// The partition numbers this process decides on, and the owners of the others.
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) peers: Peers,
    /// Whether the owners topic exists (several writers) for markers to name owners on.
    owners_topic: bool,
    /// One partition is marked and folded at a time: settled after an append whose
    /// outcome is unknown, or taken.
    settling: tokio::sync::Mutex<()>,
    /// Drones whose stream may not yet say what their delivery's says: a follow-up or a
    /// compensation that failed, or a reservation whose commit was in doubt.
    pub(crate) pending: std::sync::Mutex<HashSet<String>>,
    /// Reservations whose commit is under way in this process (the reconciler leaves
    /// them alone).
    pub(crate) in_flight: std::sync::Mutex<HashSet<String>>,
    /// Ids derived from idempotency keys are this deployment's own.
    id_namespace: Uuid,
    /// Account keys derive from it (so a retried registration shows the same key).
    key_secret: String,
    /// Signs the tracking links that schedule-delivery answers with.
    tracking: api::TrackingTokens,
    key_retention: TimeDelta,
    account_keys: std::sync::RwLock<KeyIndex>,
    /// Several writers: the accounts of every partition, for the key index, and how far
    /// the key follower has read each partition.
    followed_accounts: std::sync::Mutex<HashMap<String, Stream<Account>>>,
    keys_read: std::sync::Mutex<Vec<u64>>,
    /// When the key follower was last seen caught up with the log's ends.
    keys_checked: tokio::sync::Mutex<Option<Instant>>,
    /// Telemetry changes no aggregate, so its keys are kept here, not on a stream (and,
    /// since telemetry is never folded, not across a restart).
    telemetry_keys: std::sync::Mutex<RecentKeys>,
}

/// What the command side needs to know about keys.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// The operator's key: the deployment's secret.
    pub operator_key: String,
    /// How long an idempotency key is remembered.
    pub retention: TimeDelta,
}

/// Telemetry's idempotency keys, oldest first, each with its request and answer.
#[derive(Default)]
struct RecentKeys {
    answers: HashMap<String, (String, Accepted)>,
    order: VecDeque<(DateTime<Utc>, String)>,
}

impl RecentKeys {
    fn forget_before(&mut self, since: DateTime<Utc>) {
        while let Some((at, _)) = self.order.front()
            && *at < since
        {
            if let Some((_, key)) = self.order.pop_front() {
                self.answers.remove(&key);
            }
        }
    }
}

#[async_trait::async_trait]
impl api::AccountKeys for CommandService {
    async fn account_of(&self, key_hash: &str) -> Option<String> {
        let look = || {
            self.account_keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .account_of(key_hash)
                .cloned()
        };
        if let Some(account) = look() {
            return Some(account);
        }
        if !self.owners_topic {
            return None; // the only writer: its fold is current
        }
        // Perhaps registered at another process a moment ago.
        self.keys_caught_up().await;
        look()
    }
}

/// Events of one command, with the versions they give their aggregates.
pub(crate) struct Draft {
    pub(crate) causation_id: String,
    correlation_id: String,
    principal: String,
    now: DateTime<Utc>,
    items: Vec<(Topic, Envelope)>,
}

impl Draft {
    pub(crate) fn new(ctx: &CommandContext) -> Draft {
        let causation_id = match &ctx.idempotency_key {
            Some(key) => format!("{KEYED_PREFIX}{key}/{}", ctx.fingerprint),
            None => format!("{UNKEYED_PREFIX}{}", Uuid::new_v4()),
        };
        Draft {
            correlation_id: ctx
                .correlation_id
                .clone()
                .unwrap_or_else(|| causation_id.clone()),
            causation_id,
            principal: ctx.principal.to_string(),
            // The log keeps microseconds; so does the state folded in memory.
            now: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .unwrap_or_else(Utc::now),
            items: Vec::new(),
        }
    }

    /// Adds events of one aggregate whose current version is `version`; returns its new one.
    pub(crate) fn add(
        &mut self,
        topic: Topic,
        aggregate_id: &str,
        version: u64,
        events: Vec<Event>,
    ) -> u64 {
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
                        principal: self.principal.clone(),
                    },
                    event,
                },
            ));
        }
        version
    }

    pub(crate) fn of<'a>(
        &'a self,
        topic: Topic,
        id: &'a str,
    ) -> impl Iterator<Item = &'a Envelope> + 'a {
        self.items
            .iter()
            .filter(move |(t, e)| *t == topic && e.metadata.aggregate_id == id)
            .map(|(_, e)| e)
    }
}

/// A decision on a partition in doubt waits until it is settled.
pub(crate) fn ready<A: Kept>(shard: &Shard<A>) -> Result<(), CommandError> {
    shard.writer.owned()?;
    if shard.writer.in_doubt() {
        return Err(shard.writer.doubt());
    }
    Ok(())
}

pub(crate) fn check_expected<A>(
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

/// The first answer to a retried key (kept since `since`); a key used for another
/// request is refused.
pub(crate) fn replayed<A: Kept>(
    stream: Option<&Stream<A>>,
    ctx: &CommandContext,
    id: &str,
    since: DateTime<Utc>,
) -> Result<Option<Accepted>, CommandError> {
    let Some(key) = ctx.idempotency_key.as_deref() else {
        return Ok(None);
    };
    let Some(outcome) = stream.and_then(|s| s.outcome(key, since)) else {
        return Ok(None);
    };
    same_request(&outcome.fingerprint, ctx)?;
    Ok(Some(Accepted {
        id: id.to_string(),
        version: outcome.version,
        token: outcome.token.clone(),
        replayed: true,
    }))
}

/// A retry must be the request its key was first used for (records written before
/// fingerprints existed match any).
fn same_request(fingerprint: &str, ctx: &CommandContext) -> Result<(), CommandError> {
    if fingerprint.is_empty() || fingerprint == ctx.fingerprint {
        Ok(())
    } else {
        Err(CommandError::KeyReused)
    }
}

/// What an account key may touch: its own aggregates; another tenant's do not exist for
/// it (404, revealing nothing).
pub(crate) fn visible<A: Kept>(
    stream: &Stream<A>,
    ctx: &CommandContext,
    id: &str,
) -> Result<(), CommandError> {
    match stream.state.owner() {
        Some(owner) if !ctx.principal.sees(owner) => Err(CommandError::NotFound {
            kind: A::KIND,
            id: id.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The answer to a command just written; its idempotency key, if any, remembers it on
/// `stream` for retries.
pub(crate) fn accepted<A: Kept>(
    stream: &mut Stream<A>,
    ctx: &CommandContext,
    id: &str,
    version: u64,
    token: ConsistencyToken,
) -> Accepted {
    if let Some(key) = &ctx.idempotency_key {
        let outcome = Outcome {
            version,
            token: token.clone(),
            fingerprint: ctx.fingerprint.clone(),
            at: Utc::now(),
        };
        stream.remember(key.clone(), outcome);
    }
    Accepted {
        id: id.to_string(),
        version,
        token,
        replayed: false,
    }
}

pub(crate) fn existing<'a, A: Kept>(
    shard: &'a Shard<A>,
    id: &str,
) -> Result<&'a Stream<A>, CommandError> {
    shard
        .get(id)
        .filter(|s| s.exists())
        .ok_or_else(|| CommandError::NotFound {
            kind: A::KIND,
            id: id.to_string(),
        })
}

impl CommandService {
    /// The customer's link to follow a delivery: the tracking page with a read-only
    /// token for this one delivery, valid for [`api::TRACKING_TTL`] and to the end of
    /// that day (UTC), so that a retry answered the same day gets the same link.
    pub fn tracking_url(&self, delivery_id: &str) -> String {
        let watch = api::Watch::Delivery(delivery_id.to_owned());
        let end_of_day = (Utc::now() + api::TRACKING_TTL + TimeDelta::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or_else(|| Utc::now() + api::TRACKING_TTL, |t| t.and_utc());
        let token = self.tracking.mint(&watch, end_of_day);
        api::TrackingTokens::page(delivery_id, &token)
    }

    /// The command side over `log` (its topics must exist). As the only writer it takes
    /// every partition number at once: marks each partition of the command topics as
    /// its own, folds each up to its marker, then brings every drone's stream in line
    /// with its delivery's (a follow-up or compensation a crash cut short). One of
    /// several takes the numbers its group assigns it ([`CommandService::take`]).
    pub async fn open(
        log: Arc<dyn EventLog>,
        codec: Codec,
        metrics: CommandMetrics,
        max_clock_skew: TimeDelta,
        ownership: Arc<Ownership>,
        writers: Writers,
        keys: KeySettings,
    ) -> Result<CommandService, CommandError> {
        let taken_at_once = writers == Writers::Only;
        let partitions = ownership.partitions();
        ownership.show_on(metrics.owned.clone());
        let owners_topic = writers == Writers::Several;
        let writers = |topic| partition_writers(&log, topic, &ownership, &metrics);
        let service = CommandService {
            accounts: Shards::new(writers(Topic::Accounts).await?),
            drones: Shards::new(writers(Topic::Drones).await?),
            packages: Shards::new(writers(Topic::Packages).await?),
            deliveries: Shards::new(writers(Topic::Deliveries).await?),
            telemetry_partitions: log.partitions(Topic::DroneTelemetry.name()).await?,
            log,
            codec,
            metrics,
            max_clock_skew,
            peers: Peers::new(ownership.clone(), &keys.operator_key),
            ownership,
            owners_topic,
            settling: tokio::sync::Mutex::new(()),
            pending: std::sync::Mutex::new(HashSet::new()),
            in_flight: std::sync::Mutex::new(HashSet::new()),
            id_namespace: Uuid::new_v5(
                &ID_NAMESPACE,
                &Sha256::digest(keys.operator_key.as_bytes()),
            ),
            tracking: api::TrackingTokens::new(&keys.operator_key),
            key_secret: keys.operator_key,
            key_retention: keys.retention,
            account_keys: std::sync::RwLock::new(KeyIndex::default()),
            followed_accounts: std::sync::Mutex::new(HashMap::new()),
            keys_read: std::sync::Mutex::new(vec![0; partitions as usize]),
            keys_checked: tokio::sync::Mutex::new(None),
            telemetry_keys: std::sync::Mutex::new(RecentKeys::default()),
        };
        // Ownership is by partition number across the command topics: they must be
        // co-partitioned.
        for topic in COMMAND_TOPICS {
            let partitions = service.partitions(topic);
            if partitions != service.ownership.partitions() {
                return Err(CommandError::Internal(format!(
                    "the command topics must have one partition count: {} has {partitions}, not {}",
                    topic.name(),
                    service.ownership.partitions()
                )));
            }
        }
        if taken_at_once {
            let all: Vec<u32> = (0..service.ownership.partitions()).collect();
            service.take(&all).await?;
            service.ownership.set_joined();
        }
        Ok(service)
    }

    /// Takes partition numbers: a marker (a fresh writer id, and this process's address)
    /// on each of their partitions of every command topic and of the owners topic, in
    /// one append; then the fold of each from where this process last stood in it (the
    /// start, for one it never owned) up to its marker. Only then does it decide there;
    /// until then requests for them are answered 503 with `Retry-After`. The telemetry
    /// topic is never read: no command decides on it.
    pub async fn take(&self, numbers: &[u32]) -> Result<(), CommandError> {
        if numbers.is_empty() {
            return Ok(());
        }
        {
            let _one_at_a_time = self.settling.lock().await;
            for &number in numbers {
                self.ownership.set(number, Place::Taking);
            }
            let taken = self.mark_and_fold(numbers).await;
            for &number in numbers {
                let place = if taken.is_ok() {
                    Place::Owned
                } else {
                    Place::Elsewhere
                };
                self.ownership.set(number, place);
            }
            taken?;
        }
        self.note_carrying_drones(numbers).await;
        self.reconcile_pending().await;
        tracing::info!(instance = self.ownership.instance(), partitions = ?numbers, "took partitions of the command topics");
        Ok(())
    }

    async fn mark_and_fold(&self, numbers: &[u32]) -> Result<(), CommandError> {
        let mut partitions = Vec::new();
        let mut markers = Vec::new();
        for topic in COMMAND_TOPICS {
            for &partition in numbers {
                let Some(partition_writer) = self.writer(topic, partition).cloned() else {
                    continue;
                };
                partition_writer.quiesce().await;
                let writer = fence::fresh_writer(self.ownership.instance());
                markers.push(self.marker(topic.name(), partition, &writer)?);
                partitions.push((topic, partition_writer, writer));
            }
        }
        if self.owners_topic {
            for &partition in numbers {
                let writer = fence::fresh_writer(self.ownership.instance());
                markers.push(self.marker(OWNERS_TOPIC, partition, &writer)?);
            }
        }
        let appended = self.log.append(markers).await?;
        // The partitions fold side by side: a takeover waits for the longest, not the sum.
        let folds = partitions.into_iter().zip(appended).map(
            |((topic, partition_writer, writer), at)| async move {
                let mut keyed = KeyedCommands::default();
                let fence = partition_writer.fence();
                self.fold_since(
                    topic,
                    partition_writer.partition(),
                    &fence,
                    at.offset,
                    &mut keyed,
                )
                .await?;
                Ok::<_, CommandError>((partition_writer, writer, at.offset, keyed))
            },
        );
        let folded = futures_util::future::try_join_all(folds).await?;
        let mut keyed = KeyedCommands::default();
        for (partition_writer, writer, marker, more) in folded {
            keyed.merge(more);
            partition_writer.set_fence(Fence {
                writer,
                next: marker + 1,
                in_doubt: false,
            });
        }
        self.remember_all(keyed).await;
        Ok(())
    }

    /// Lets partition numbers go (the group moved them away): nothing more is decided
    /// on them here, and what is on its way lands first. Drones of theirs are left to
    /// the reconciler of their next owner.
    pub async fn let_go(&self, numbers: &[u32]) {
        let _one_at_a_time = self.settling.lock().await;
        for &number in numbers {
            self.ownership.set(number, Place::Elsewhere);
        }
        for topic in COMMAND_TOPICS {
            for &number in numbers {
                if let Some(writer) = self.writer(topic, number) {
                    writer.quiesce().await;
                }
            }
        }
        let drones = &self.drones;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| !numbers.contains(&drones.partition_of(id)));
        tracing::info!(instance = self.ownership.instance(), partitions = ?numbers, "released partitions of the command topics");
    }

    /// The marker record of `writer` for a partition of a command topic (or of the
    /// owners topic), naming where this process takes commands.
    fn marker(&self, topic: &str, partition: u32, writer: &str) -> Result<NewRecord, CommandError> {
        fence::marker(
            &self.codec,
            topic,
            partition,
            self.ownership.partitions(),
            writer,
            self.ownership.instance(),
            &self.ownership.address(),
        )
        .map_err(|e| CommandError::Internal(e.to_string()))
    }

    /// Folds a partition from where this process stood in it (`fence`) up to `until`:
    /// what came after is classified from the writer it last knew (none, for a
    /// partition it never read).
    async fn fold_since(
        &self,
        topic: Topic,
        partition: u32,
        fence: &Fence,
        until: u64,
        keyed: &mut KeyedCommands,
    ) -> Result<(), CommandError> {
        let mut validity = Validity::default();
        if fence.next > 0 {
            validity.resume(topic.name(), partition, Some(fence.writer.clone()));
        }
        self.fold(topic, partition, fence.next, until, &mut validity, keyed)
            .await
    }

    /// Folds the records of one partition in `[from, until)` that count, noting their
    /// idempotency keys.
    async fn fold(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        until: u64,
        validity: &mut Validity,
        keyed: &mut KeyedCommands,
    ) -> Result<(), CommandError> {
        let mut from = from;
        while from < until {
            let records = self.log.read(topic.name(), partition, from, 4096).await?;
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for record in records.iter().filter(|r| r.offset < until) {
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
                    let stream = topic.stream_of(&envelope.event);
                    keyed.note(stream, envelope, position);
                    self.replay(stream, envelope).await;
                }
            }
        }
        Ok(())
    }

    /// An id for what a keyed command creates: the same for its retries, this
    /// deployment's own, and no other principal's.
    pub(crate) fn derived_id(&self, kind: &str, key: &str) -> String {
        Uuid::new_v5(&self.id_namespace, format!("{kind}/{key}").as_bytes()).to_string()
    }

    /// A new aggregate's id when no key derives one: random, in a partition this process
    /// owns when it owns any (a request forwarded with no key would get another id at
    /// its owner, perhaps owned elsewhere again).
    fn fresh_id<A: Kept>(&self, shards: &Shards<A>) -> String {
        let mut id = Uuid::new_v4().to_string();
        for _ in 0..256 {
            if self.ownership.place(shards.partition_of(&id)) == Place::Owned {
                break;
            }
            id = Uuid::new_v4().to_string();
        }
        id
    }

    /// Idempotency keys used before this are forgotten.
    pub(crate) fn key_cutoff(&self) -> DateTime<Utc> {
        Utc::now() - self.key_retention
    }

    /// Forgets the idempotency keys older than the retention window.
    pub async fn forget_old_keys(&self) {
        let since = self.key_cutoff();
        self.accounts.forget_keys_before(since).await;
        self.drones.forget_keys_before(since).await;
        self.packages.forget_keys_before(since).await;
        self.deliveries.forget_keys_before(since).await;
        self.telemetry_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_before(since);
    }

    /// The API key of an account whose key was set at `version`: derived, so that a
    /// retried registration or rotation answers with the key the first one made.
    fn account_key(&self, account_id: &str, version: u64) -> String {
        let secret = format!("account-key\0{}\0{account_id}\0{version}", self.key_secret);
        format!("dd_acct_{}", api::hex(&Sha256::digest(secret.as_bytes())))
    }

    fn index_key(&self, account_id: &str, stream: &Stream<Account>) {
        self.account_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set(account_id, &stream.state.key_hash, stream.version);
    }

    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// Folds a valid record of the accounts topic into the key index (several writers:
    /// `group::follow_account_keys` reads every partition, owned here or not).
    pub(crate) fn follow_account(&self, record: &storage::Record) {
        let Ok(envelopes) = self.codec.decode_all(&record.value) else {
            tracing::warn!(
                partition = record.partition,
                offset = record.offset,
                "an accounts record does not decode; its key is not indexed"
            );
            return;
        };
        let mut followed = self
            .followed_accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for envelope in &envelopes {
            let id = &envelope.metadata.aggregate_id;
            let stream = followed.entry(id.clone()).or_default();
            stream.record(std::iter::once(envelope));
            self.index_key(id, stream);
        }
    }

    /// The key follower has read the accounts topic's `partition` up to `next`.
    pub(crate) fn keys_read_to(&self, partition: u32, next: u64) {
        let mut read = self.keys_read.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = read.get_mut(partition as usize) {
            *at = (*at).max(next);
        }
    }

    /// Waits (up to a second) until the key follower has read every accounts partition
    /// as far as it reaches now: a key registered or rotated at another process is then
    /// indexed here.
    async fn keys_caught_up(&self) {
        // Unknown keys (a wrong one sent again and again) share one look at the log's
        // ends per moment, not one each.
        let mut last = self.keys_checked.lock().await;
        if last.is_some_and(|at| at.elapsed() < KEYS_CHECK_REUSED) {
            return;
        }
        let partitions = self.ownership.partitions();
        let mut ends = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            match self.log.end_offset(Topic::Accounts.name(), partition).await {
                Ok(end) => ends.push(end),
                Err(_) => return,
            }
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        while Instant::now() < deadline {
            let behind = {
                let read = self.keys_read.lock().unwrap_or_else(|e| e.into_inner());
                ends.iter().zip(read.iter()).any(|(end, at)| at < end)
            };
            if !behind {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        *last = Some(Instant::now());
    }

    async fn remember_all(&self, keyed: KeyedCommands) {
        for (topic, id, key, outcome) in keyed.into_outcomes(self.key_cutoff()) {
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
    }

    async fn replay(&self, stream: Topic, envelope: &Envelope) {
        let id = &envelope.metadata.aggregate_id;
        let one = std::iter::once(envelope);
        match stream {
            Topic::Accounts => {
                let mut shard = self.accounts.lock(id).await;
                let stream = shard.entry(id);
                stream.record(one);
                self.index_key(id, stream);
            }
            Topic::Drones => self.drones.lock(id).await.entry(id).record(one),
            Topic::Packages => self.packages.lock(id).await.entry(id).record(one),
            Topic::Deliveries => self.deliveries.lock(id).await.entry(id).record(one),
            Topic::DroneTelemetry => {}
        }
    }

    /// This process's writer of a command partition (telemetry has none: no command
    /// decides on it).
    fn writer(&self, topic: Topic, partition: u32) -> Option<&Arc<PartitionWriter>> {
        match topic {
            Topic::Accounts => Some(self.accounts.writer(partition)),
            Topic::Drones => Some(self.drones.writer(partition)),
            Topic::Packages => Some(self.packages.writer(partition)),
            Topic::Deliveries => Some(self.deliveries.writer(partition)),
            Topic::DroneTelemetry => None,
        }
    }

    /// Settles a partition in doubt: a new marker, then the fold of what landed before it
    /// since the last record known (the record in doubt, if it landed in time, with its
    /// idempotency key, so its retry answers as it would have).
    pub(crate) async fn settle(&self, topic: Topic, partition: u32) -> Result<(), CommandError> {
        let _one_at_a_time = self.settling.lock().await;
        let Some(partition_writer) = self.writer(topic, partition).cloned() else {
            return Ok(()); // telemetry is never in doubt
        };
        partition_writer.quiesce().await;
        let fence = partition_writer.fence();
        if !fence.in_doubt {
            return Ok(()); // settled while this one waited
        }
        partition_writer.owned()?;
        let writer = fence::fresh_writer(self.ownership.instance());
        let marker = self.marker(topic.name(), partition, &writer)?;
        let at = self
            .log
            .append(vec![marker])
            .await
            .inspect_err(|e| tracing::warn!(topic = topic.name(), partition, error = %e, "cannot mark a partition in doubt"))?;
        let at = at
            .first()
            .ok_or_else(|| CommandError::Internal("no marker appended".into()))?;
        let mut keyed = KeyedCommands::default();
        self.fold_since(topic, partition, &fence, at.offset, &mut keyed)
            .await?;
        self.remember_all(keyed).await;
        tracing::info!(
            topic = topic.name(),
            partition,
            folded_from = fence.next,
            marker = at.offset,
            "settled a partition in doubt"
        );
        self.metrics.settled.inc();
        partition_writer.set_fence(Fence {
            writer,
            next: at.offset + 1,
            in_doubt: false,
        });
        Ok(())
    }

    /// Runs a step that decides on one partition, settling that partition first when the
    /// step finds it in doubt.
    pub(crate) async fn settled<T, F, Fut>(&self, mut step: F) -> Result<T, CommandError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CommandError>>,
    {
        for _ in 0..3 {
            match step().await {
                Err(CommandError::InDoubt { topic, partition }) => {
                    self.settle(topic, partition).await?;
                }
                done => return done,
            }
        }
        Err(CommandError::Unavailable(
            "a partition stays in doubt after settling; retry".into(),
        ))
    }

    /// One stream's decision, written: `events` as one record of the stream's partition,
    /// then folded. The shard is let go while the record is on its way (only `id`
    /// waits) and handed back with the stream's new version and where the record landed.
    pub(crate) async fn write<A: Kept>(
        &self,
        command: &str,
        shard: Guard<A>,
        id: &str,
        ctx: &CommandContext,
        events: Vec<Event>,
    ) -> Result<(u64, Position, Guard<A>), CommandError> {
        let version = shard.get(id).map_or(0, |s| s.version);
        let mut draft = Draft::new(ctx);
        let version = draft.add(A::TOPIC, id, version, events);
        let (at, mut shard) = self.append(command, shard, id, &draft).await?;
        shard.entry(id).record(draft.of(A::TOPIC, id));
        Ok((version, at, shard))
    }

    /// Appends the events of one command as one record of `id`'s partition of its
    /// topic (a commit when there are several, so readers get all or none), decided
    /// under `shard`: hands it to the partition's writer, marks `id` and lets go of the
    /// shard until the record is durable and counts (or failed). Gives where it landed
    /// and the shard again, `id` unmarked, for the caller to fold before anyone decides
    /// on it.
    pub(crate) async fn append<A: Kept>(
        &self,
        command: &str,
        shard: Guard<A>,
        id: &str,
        draft: &Draft,
    ) -> Result<(Position, Guard<A>), CommandError> {
        let (topic, partition) = (A::TOPIC, shard.writer.partition());
        let value = self
            .codec
            .encode_all(draft.items.iter().map(|(_, e)| e))
            .map_err(|e| CommandError::Internal(e.to_string()))?;
        let record = NewRecord {
            topic: topic.name().to_string(),
            key: id.to_string(),
            value: Bytes::from(value),
            headers: Vec::new(),
        };
        let landing = shard.writer.submit(record)?;
        let mark = Mark::set(shard, id);
        let landed = landing.await.unwrap_or_else(|_| {
            Err(CommandError::Unavailable(
                "the partition's writer stopped".into(),
            ))
        });
        let shard = mark.lift().await;
        let offset = landed.inspect_err(|e| {
            tracing::debug!(command, topic = topic.name(), partition, error = %e, "not appended");
        })?;
        for (topic, _) in &draft.items {
            self.metrics.events.with_label_values(&[topic.name()]).inc();
        }
        Ok((
            Position {
                topic,
                partition,
                offset,
            },
            shard,
        ))
    }

    /// Appends telemetry: one record per partition of the telemetry topic the readings
    /// fall in. Telemetry is no part of the write model (nothing decides on it), so it
    /// needs no fence.
    async fn append_telemetry(&self, draft: &Draft) -> Result<ConsistencyToken, CommandError> {
        let mut groups: Vec<(u32, Vec<&Envelope>)> = Vec::new();
        for (_, envelope) in &draft.items {
            let partition =
                storage::partition_for(&envelope.metadata.aggregate_id, self.telemetry_partitions);
            match groups.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, events)) => events.push(envelope),
                None => groups.push((partition, vec![envelope])),
            }
        }
        let mut records = Vec::with_capacity(groups.len());
        for (_, events) in &groups {
            let value = self
                .codec
                .encode_all(events.iter().copied())
                .map_err(|e| CommandError::Internal(e.to_string()))?;
            records.push(NewRecord {
                topic: Topic::DroneTelemetry.name().to_string(),
                // Every event of the group maps to this partition; the first one's key
                // routes the record there.
                key: events[0].metadata.aggregate_id.clone(),
                value: Bytes::from(value),
                headers: Vec::new(),
            });
        }
        let started = Instant::now();
        let appended = self.log.append(records).await.inspect_err(|e| {
            tracing::error!(command = "report-telemetry", error = %e, "append failed");
        })?;
        self.metrics
            .append_latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .events
            .with_label_values(&[Topic::DroneTelemetry.name()])
            .inc_by(draft.items.len() as u64);
        Ok(ConsistencyToken::from_positions(appended.into_iter().map(
            |a| Position {
                topic: Topic::DroneTelemetry,
                partition: a.partition,
                offset: a.offset,
            },
        )))
    }

    /// Partitions of a topic (fixed once created).
    pub(crate) fn partitions(&self, topic: Topic) -> u32 {
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

    pub(crate) async fn counted(
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
        decide: impl Fn(&A) -> Result<Vec<Event>, CommandError>,
    ) -> Result<Accepted, CommandError> {
        let run = self.settled(|| self.single_once(shards, id, ctx, command, must_exist, &decide));
        self.counted(command, run).await
    }

    async fn single_once<A: Kept>(
        &self,
        shards: &Shards<A>,
        id: &str,
        ctx: &CommandContext,
        command: &'static str,
        must_exist: bool,
        decide: &impl Fn(&A) -> Result<Vec<Event>, CommandError>,
    ) -> Result<Accepted, CommandError> {
        let shard = shards.lock_owned(id).await?;
        let stream = shard.get(id);
        if let Some(done) = replayed(stream, ctx, id, self.key_cutoff())? {
            return Ok(done);
        }
        if must_exist {
            visible(existing(&shard, id)?, ctx, id)?;
        }
        check_expected(stream, ctx, A::KIND, id)?;
        ready(&shard)?;
        let unborn = A::default();
        let events = decide(stream.map_or(&unborn, |s| &s.state))?;
        let (version, position, mut shard) = self.write(command, shard, id, ctx, events).await?;
        let token = ConsistencyToken::from_positions([position]);
        Ok(accepted(shard.entry(id), ctx, id, version, token))
    }

    /// An account's state, once no record of it is on its way (refused unless this
    /// process owns it).
    pub(crate) async fn account_state(&self, id: &str) -> Result<Option<Account>, CommandError> {
        let shard = self.accounts.lock_owned(id).await?;
        Ok(shard.get(id).map(|s| s.state.clone()))
    }

    /// Registers an account; answers with its API key (the same for a retry).
    pub async fn register_account(
        &self,
        ctx: &CommandContext,
        cmd: &RegisterAccount,
    ) -> Result<(Accepted, String), CommandError> {
        let id = match &ctx.idempotency_key {
            Some(key) => self.derived_id("account", key),
            None => self.fresh_id(&self.accounts),
        };
        let key_hash = api::key_hash(&self.account_key(&id, 1));
        let accepted = self
            .single(&self.accounts, &id, ctx, "register-account", false, |a| {
                Ok(a.register(cmd, &key_hash)?)
            })
            .await?;
        self.index_key(&id, self.accounts.lock(&id).await.entry(&id));
        let key = self.account_key(&id, accepted.version);
        Ok((accepted, key))
    }

    /// Gives the account a new API key; the old one stops working at once.
    pub async fn rotate_account_key(
        &self,
        ctx: &CommandContext,
        id: &str,
    ) -> Result<(Accepted, String), CommandError> {
        let run = async {
            let shard = self.accounts.lock_owned(id).await?;
            let stream = shard.get(id);
            if let Some(done) = replayed(stream, ctx, id, self.key_cutoff())? {
                return Ok(done);
            }
            let stream = existing(&shard, id)?;
            check_expected(Some(stream), ctx, "account", id)?;
            ready(&shard)?;
            let key_hash = api::key_hash(&self.account_key(id, stream.version + 1));
            let events = stream.state.rotate_key(&key_hash)?;
            let (version, at, mut shard) = self
                .write("rotate-account-key", shard, id, ctx, events)
                .await?;
            let token = ConsistencyToken::from_positions([at]);
            let stream = shard.entry(id);
            self.index_key(id, stream);
            Ok(accepted(stream, ctx, id, version, token))
        };
        let accepted = self.counted("rotate-account-key", run).await?;
        let key = self.account_key(id, accepted.version);
        Ok((accepted, key))
    }

    pub async fn suspend_account(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, CommandError> {
        self.single(&self.accounts, id, ctx, "suspend-account", true, |a| {
            Ok(a.suspend(reason.clone())?)
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
                let shard = self.drones.lock_owned(id).await?;
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
            let register = |a: &Drone| Ok(a.register(cmd)?);
            self.settled(|| {
                self.single_once(&self.drones, id, ctx, "register-drone", false, &register)
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
            Ok(a.ground(reason.clone())?)
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

    /// Subscribes the contacts to the delivery's progress; with a webhook, answers with
    /// its secret too (derived, never stored: the same for a retry).
    pub async fn request_notifications(
        &self,
        ctx: &CommandContext,
        id: &str,
        contacts: &Contacts,
    ) -> Result<(Accepted, Option<String>), CommandError> {
        let accepted = self
            .single(&self.deliveries, id, ctx, "notify-me", true, |a| {
                Ok(a.request_notifications(
                    contacts.email.clone(),
                    contacts.sms.clone(),
                    contacts.webhook.clone(),
                )?)
            })
            .await?;
        let secret = contacts
            .webhook
            .is_some()
            .then(|| api::webhook_secret(&self.key_secret, &accepted.id, accepted.version));
        Ok((accepted, secret))
    }

    /// Telemetry of one or many drones in one durable append. Readings do not move a
    /// drone's version and are not folded here (no command decides on them); each is
    /// checked against the drone's current state and this server's clock.
    pub async fn report_telemetry(
        &self,
        ctx: &CommandContext,
        readings: &[Reading],
    ) -> Result<Accepted, CommandError> {
        if let Some(key) = &ctx.idempotency_key {
            let keys = self
                .telemetry_keys
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((fingerprint, first)) = keys.answers.get(key) {
                same_request(fingerprint, ctx)?;
                return Ok(Accepted {
                    replayed: true,
                    ..first.clone()
                });
            }
        }
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
            let unknown = |r: &Reading| {
                if readings.len() == 1 {
                    CommandError::NotFound {
                        kind: "drone",
                        id: r.drone_id.clone(),
                    }
                } else {
                    CommandError::Domain(domain::DomainError::UnknownDrone {
                        drone_id: r.drone_id.clone(),
                    })
                }
            };
            for p in partitions {
                let of_p = || {
                    readings
                        .iter()
                        .filter(move |r| self.drones.partition_of(&r.drone_id) == p)
                };
                if self.ownership.place(p) == Place::Elsewhere {
                    // Checked against the drones' states at their owner.
                    let ids = of_p().map(|r| r.drone_id.clone()).collect();
                    let states = match self.peers.call(p, &StepCall::Drones { ids }).await? {
                        StepReply::Drones { states } => states,
                        _ => {
                            return Err(CommandError::Internal(
                                "a peer answered another step".into(),
                            ));
                        }
                    };
                    for r in of_p() {
                        let Some((_, at, drone)) =
                            states.iter().find(|(id, _, _)| *id == r.drone_id)
                        else {
                            return Err(unknown(r));
                        };
                        let events =
                            drone.report_position(&r.telemetry, draft.now, self.max_clock_skew)?;
                        version = *at;
                        draft.add(Topic::DroneTelemetry, &r.drone_id, *at, events);
                    }
                    continue;
                }
                let shard = self.drones.lock_partition(p).await;
                shard.writer.owned()?;
                for r in of_p() {
                    let Some(stream) = shard.get(&r.drone_id).filter(|s| s.exists()) else {
                        return Err(unknown(r));
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
            let token = self.append_telemetry(&draft).await?;
            let (id, version) = match readings {
                [one] => (one.drone_id.clone(), version),
                _ => (String::new(), 0),
            };
            let accepted = Accepted {
                id,
                version,
                token,
                replayed: false,
            };
            if let Some(key) = &ctx.idempotency_key {
                let mut keys = self
                    .telemetry_keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                keys.order.push_back((Utc::now(), key.clone()));
                keys.answers
                    .insert(key.clone(), (ctx.fingerprint.clone(), accepted.clone()));
            }
            Ok(accepted)
        };
        self.counted("report-telemetry", run).await
    }

    /// Registers the package and creates the delivery in one record of the delivery's
    /// partition (the package lives with its delivery).
    pub async fn schedule_delivery(
        &self,
        ctx: &CommandContext,
        cmd: &ScheduleDelivery,
    ) -> Result<Accepted, CommandError> {
        let (id, package_id) = match &ctx.idempotency_key {
            Some(key) => {
                let id = self.derived_id("delivery", key);
                let package = cmd
                    .package_id
                    .clone()
                    .unwrap_or_else(|| self.derived_id("package", &id));
                (id, package)
            }
            None => (
                self.fresh_id(&self.deliveries),
                cmd.package_id
                    .clone()
                    .unwrap_or_else(|| Uuid::new_v4().to_string()),
            ),
        };
        let run = self.settled(|| self.schedule_once(ctx, cmd, &id, &package_id));
        self.counted("schedule-delivery", run).await
    }

    /// Decides the schedule on the owner's status as it is now, without holding the
    /// account through the append: a suspension decided earlier is folded first (its
    /// account is marked until then), one decided later does not undo this schedule.
    async fn schedule_once(
        &self,
        ctx: &CommandContext,
        cmd: &ScheduleDelivery,
        id: &str,
        package_id: &str,
    ) -> Result<Accepted, CommandError> {
        self.ownership.check(self.deliveries.partition_of(id))?;
        // The owner's account lives with another process when its number is owned there:
        // read from it (its owner answers once no record of the account is on its way).
        let account_partition = self.accounts.partition_of(&cmd.owner_id);
        let remote_owner = if self.ownership.place(account_partition) == Place::Elsewhere {
            let read = StepCall::Account {
                id: cmd.owner_id.clone(),
            };
            match self.peers.call(account_partition, &read).await? {
                StepReply::Account { state } => Some(state),
                _ => {
                    return Err(CommandError::Internal(
                        "a peer answered another step".into(),
                    ));
                }
            }
        } else {
            None
        };
        // Scheduling marks two shards, so it waits for a mark holding no lock at all.
        let (packages, deliveries, draft, version) = loop {
            let accounts = match remote_owner {
                Some(_) => None,
                None => {
                    let shard = self.accounts.lock(&cmd.owner_id).await;
                    shard.writer.owned()?;
                    Some(shard)
                }
            };
            let packages = self
                .packages
                .lock_partition(self.packages.partition_of(package_id))
                .await;
            let deliveries = self
                .deliveries
                .lock_partition(self.deliveries.partition_of(id))
                .await;
            if let Some(unmarked) = packages.busy(package_id).or_else(|| deliveries.busy(id)) {
                drop((accounts, packages, deliveries));
                unmarked.await;
                continue;
            }
            if let Some(done) = replayed(deliveries.get(id), ctx, id, self.key_cutoff())? {
                return Ok(done);
            }
            ready(&deliveries)?;
            let owner = match (&accounts, &remote_owner) {
                (Some(shard), _) => shard.get(&cmd.owner_id).map(|s| &s.state),
                (None, Some(remote)) => remote.as_ref(),
                (None, None) => None,
            };
            let package = packages.get(package_id);
            let package_events = package
                .map_or(&Package::default(), |s| &s.state)
                .register(&cmd.package)?;
            let delivery_events = deliveries
                .get(id)
                .map_or(&Delivery::default(), |s| &s.state)
                .schedule(
                    &cmd.owner_id,
                    owner.unwrap_or(&Account::default()),
                    &cmd.plan,
                    cmd.expedited,
                    cmd.confirmation_required,
                    package_id,
                    cmd.package.weight_kg(),
                )?;
            let mut draft = Draft::new(ctx);
            let package_version = package.map_or(0, |s| s.version);
            draft.add(Topic::Packages, package_id, package_version, package_events);
            let version = draft.add(Topic::Deliveries, id, 0, delivery_events);
            break (packages, deliveries, draft, version);
        };
        let package_mark = Mark::set(packages, package_id);
        let appended = self
            .append("schedule-delivery", deliveries, id, &draft)
            .await;
        // The package's shard comes before the deliveries' in the lock order: it is
        // taken again only once the delivery's is let go.
        let (position, mut deliveries) = match appended {
            Ok(landed) => landed,
            Err(e) => {
                drop(package_mark.lift().await);
                return Err(e);
            }
        };
        let token = ConsistencyToken::from_positions([position]);
        let outcome = ctx.idempotency_key.as_ref().map(|key| {
            let outcome = Outcome {
                version,
                token: token.clone(),
                fingerprint: ctx.fingerprint.clone(),
                at: Utc::now(),
            };
            (key.clone(), outcome)
        });
        let stream = deliveries.entry(id);
        stream.record(draft.of(Topic::Deliveries, id));
        if let Some((key, outcome)) = outcome.clone() {
            stream.remember(key, outcome);
        }
        drop(deliveries);
        let mut packages = package_mark.lift().await;
        let package = packages.entry(package_id);
        package.record(draft.of(Topic::Packages, package_id));
        if let Some((key, outcome)) = outcome {
            package.remember(key, outcome);
        }
        Ok(Accepted {
            id: id.to_string(),
            version,
            token,
            replayed: false,
        })
    }

    /// Takes the drone off a delivery headed to pickup (compensation), so it can be
    /// dispatched again.
    pub async fn unassign_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: &str,
    ) -> Result<Accepted, CommandError> {
        self.on_delivery(ctx, id, "unassign-drone", |delivery| {
            delivery.unassign_drone(id, reason)
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
        self.on_delivery(ctx, id, "fail-delivery", |delivery| {
            delivery.fail(reason.to_owned())
        })
        .await
    }

    pub async fn reschedule_delivery(
        &self,
        ctx: &CommandContext,
        id: &str,
        changes: &Reschedule,
    ) -> Result<Accepted, CommandError> {
        self.on_delivery(ctx, id, "reschedule-delivery", |delivery| {
            delivery.reschedule(changes)
        })
        .await
    }

    pub async fn cancel_delivery(
        &self,
        ctx: &CommandContext,
        id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, CommandError> {
        self.on_delivery(ctx, id, "cancel-delivery", |delivery| {
            delivery.cancel(reason.clone())
        })
        .await
    }

    pub async fn pick_up(&self, ctx: &CommandContext, id: &str) -> Result<Accepted, CommandError> {
        let now = Utc::now();
        self.on_delivery(ctx, id, "pick-up", |delivery| delivery.pick_up(id, now))
            .await
    }

    pub async fn complete(
        &self,
        ctx: &CommandContext,
        id: &str,
        confirmation: &Confirmation,
    ) -> Result<Accepted, CommandError> {
        self.on_delivery(ctx, id, "complete-delivery", |delivery| {
            delivery.complete(id, confirmation)
        })
        .await
    }
}

fn same_spec(drone: &Drone, cmd: &RegisterDrone) -> bool {
    drone.model == cmd.model()
        && drone.payload_kg == cmd.payload_kg()
        && drone.range_km == cmd.range_km()
        && drone.speed_mps == cmd.speed_mps()
        && drone.home == cmd.home()
}

/// Whether this process is the only writer of the command topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writers {
    /// The only one (the embedded log, whose directory one process holds): it takes
    /// every partition number when it opens.
    Only,
    /// One of several on Kafka: it takes the numbers its group assigns it.
    Several,
}

/// This process's writers of the partitions of a command topic.
async fn partition_writers(
    log: &Arc<dyn EventLog>,
    topic: Topic,
    ownership: &Arc<Ownership>,
    metrics: &CommandMetrics,
) -> Result<Vec<Arc<PartitionWriter>>, CommandError> {
    let partitions = log.partitions(topic.name()).await?.max(1);
    Ok((0..partitions)
        .map(|partition| {
            Arc::new(PartitionWriter::new(
                topic,
                partition,
                log.clone(),
                ownership.clone(),
                metrics.append_latency.clone(),
            ))
        })
        .collect())
}
