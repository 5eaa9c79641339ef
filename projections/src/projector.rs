//! The projector workers: one task per (projection, topic), a member of that pair's
//! consumer group, applies what it reads from the partitions the group hands it, each
//! batch together with the checkpoints after it, so a crash at any point neither loses
//! nor doubles an effect. Projectors in several processes that build one read store
//! share the partitions (the group is named after the store); a partition handed over
//! starts at the store's checkpoint, which is the authority, and the group's committed
//! offsets follow it for lag tooling.

use crate::error::ProjectionError;
use crate::metrics::ProjectorMetrics;
use crate::projection::{Projection, Source, Staged, Writes};
use async_trait::async_trait;
use bytes::Bytes;
use read_model::Model;
use read_model::Progress;
use read_model::generations::{Generational, qualified};
use read_model::tables::{DEAD_LETTERS, PROJECTOR_GROUP, SINGLE_ROW, dead_letter_key};
use read_model::views::DeadLetter;
use schemas::Codec;
use schemas::events::Topic;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use storage::{
    Admitted, Checkpoint, Consumer, EventLog, GroupConsumer, Offset, ReadStore, Record, StartAt,
    StorageError, Validity, Write,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records applied in one read-store write at most. A catch-up (a start, a rebuild)
/// takes them this big: the changes several events make to one row merge into one write
/// and a commit serves more of them (512 gave two-thirds of the rebuild throughput).
const BATCH: usize = 4096;
/// How long a caught-up topic waits for a record before looking at shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Records in a poll that a paced topic applies at once rather than waiting out the pace.
const PACE_UNTIL: usize = 64;
/// The group's committed offsets follow the checkpoints at most this often: they are for
/// lag tooling, and a commit per batch would be a broker round trip per batch.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    codec: Codec,
    metrics: ProjectorMetrics,
    pace: Duration,
    progress: Progress,
    /// The generation of the read models it builds (its store renames their tables):
    /// each generation has consumer groups of its own.
    generation: u32,
    /// Members it runs in each (projection, topic) group: they share the partitions,
    /// so a model being rebuilt is projected on every core (see [`Projector::members`]).
    members: usize,
}

impl Projector {
    /// `pace`: a topic's consumer that applied a batch less than this long ago waits out
    /// the rest before its next one, unless `PACE_UNTIL` records are waiting. Under a
    /// stream of commands each apply then takes several events instead of one (an
    /// apply costs reads, a read-store write and a thread wake-up, on the cores the
    /// commands need), while an idle topic still applies its next event at once.
    /// Zero applies every event as soon as it is durable.
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
        codec: Codec,
        metrics: ProjectorMetrics,
        pace: Duration,
    ) -> Projector {
        Projector {
            log,
            store,
            codec,
            metrics,
            pace,
            progress: Progress::new(),
            generation: 0,
            members: 1,
        }
    }

    /// The same projector running `members` members (at least one) in each group.
    pub fn members(mut self, members: usize) -> Projector {
        self.members = members.max(1);
        self
    }

    /// A projector of `model` in `generation` on the same log and store (the store seen
    /// through [`Generational::fixed`]).
    pub fn for_generation(&self, model: Model, generation: u32) -> Projector {
        let mut projector = self.clone();
        projector.store = Arc::new(Generational::fixed(self.store.clone(), model, generation));
        projector.generation = generation;
        projector
    }

    /// The log and the store it was made with.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn store(&self) -> &Arc<dyn ReadStore> {
        &self.store
    }

    /// Tells `progress` after every apply (a query side in this process waits on it).
    pub fn notifying(mut self, progress: Progress) -> Projector {
        self.progress = progress;
        self
    }

    /// Starts the projections, one task per (projection, topic); the tasks end when
    /// `shutdown` turns true.
    pub async fn spawn(
        &self,
        projections: &[Arc<dyn Projection>],
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Vec<JoinHandle<()>>, CaughtUp), StorageError> {
        let store_id = store_id(self.store.as_ref()).await?;
        let mut tasks = Vec::new();
        let done = Arc::new(AtomicUsize::new(0));
        let workers: usize = projections.iter().map(|p| p.topics().len()).sum();
        let caught_up = CaughtUp {
            parts: vec![(workers * self.members, done.clone())],
        };
        for projection in projections {
            let lags = Arc::new(Mutex::new(HashMap::new()));
            for topic in projection.topics() {
                let group = format!(
                    "projector.{store_id}.{}.{}",
                    qualified(projection.name(), self.generation),
                    topic.name()
                );
                for member in 0..self.members {
                    let worker = self
                        .worker(projection, *topic, member, lags.clone())
                        .await?;
                    tasks.push(tokio::spawn(worker.run(
                        group.clone(),
                        shutdown.clone(),
                        done.clone(),
                    )));
                }
            }
        }
        Ok((tasks, caught_up))
    }

    /// Applies everything up to the current end of the log once (replays and tests).
    pub async fn catch_up(&self, projection: &Arc<dyn Projection>) -> Result<u64, ProjectionError> {
        let mut applied = 0;
        for topic in projection.topics() {
            let worker = self
                .worker(projection, *topic, 0, Arc::new(Mutex::new(HashMap::new())))
                .await?;
            let ends = worker.ends().await?;
            let mut at = At::default();
            let mut positions = Vec::new();
            for partition in 0..worker.partitions {
                let (next, writer) = worker.checkpoint(partition).await?;
                at.hand(worker.topic, partition, next, writer);
                positions.push((partition, next));
            }
            let mut consumer = worker.consumer(&positions).await?;
            while at.behind(&ends) {
                let records = consumer.poll(BATCH, IDLE_WAIT).await?;
                if records.is_empty() {
                    break; // the log holds less than its end offsets promised
                }
                applied += records.len() as u64;
                worker.apply(&records, &mut at).await?;
            }
        }
        Ok(applied)
    }

    async fn worker(
        &self,
        projection: &Arc<dyn Projection>,
        topic: Topic,
        member: usize,
        lags: Arc<Mutex<HashMap<(Topic, usize), u64>>>,
    ) -> Result<TopicWorker, StorageError> {
        Ok(TopicWorker {
            projector: self.clone(),
            projection: projection.clone(),
            topic,
            member,
            partitions: self.log.partitions(topic.name()).await?,
            lags,
        })
    }
}

/// The id that names this read store's consumer groups: made once, kept in the store, so
/// projectors building the same store share partitions and those building another one
/// (a rebuild, a second deployment on the same cluster) read everything themselves.
async fn store_id(store: &dyn ReadStore) -> Result<String, StorageError> {
    let read = || store.get(PROJECTOR_GROUP, SINGLE_ROW, SINGLE_ROW);
    if let Some(row) = read().await? {
        return Ok(String::from_utf8_lossy(&row.value).into_owned());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let put = Write::Put {
        table: PROJECTOR_GROUP.to_owned(),
        partition: SINGLE_ROW.to_owned(),
        clustering: SINGLE_ROW.to_owned(),
        value: Bytes::from(id.clone()),
        version: 1,
    };
    store.apply(vec![put], Vec::new()).await?;
    // Two projectors starting on a new store at once: both take what the store kept.
    Ok(read()
        .await?
        .map_or(id, |row| String::from_utf8_lossy(&row.value).into_owned()))
}

/// Whether every consumer of a projector has caught up with the log once since it
/// started (what `/readyz` waits for).
#[derive(Clone, Debug, Default)]
pub struct CaughtUp {
    /// Per spawn: how many workers, and how many of them have caught up.
    parts: Vec<(usize, Arc<AtomicUsize>)>,
}

impl CaughtUp {
    pub fn all(&self) -> bool {
        self.parts
            .iter()
            .all(|(workers, done)| done.load(Ordering::Acquire) >= *workers)
    }

    /// Caught up when every one of `spawns` is.
    pub fn of(spawns: Vec<CaughtUp>) -> CaughtUp {
        CaughtUp {
            parts: spawns.into_iter().flat_map(|c| c.parts).collect(),
        }
    }
}

/// Consumes one topic for one projection as a member of its consumer group: what it
/// reads from the partitions it holds goes into one read-store write with a checkpoint
/// per partition read.
struct TopicWorker {
    projector: Projector,
    projection: Arc<dyn Projection>,
    topic: Topic,
    /// Which of the projector's members of the topic's group it is.
    member: usize,
    partitions: u32,
    /// Lag of each member of each topic of this projection; the gauge shows their sum.
    lags: Arc<Mutex<HashMap<(Topic, usize), u64>>>,
}

/// Where a worker stands in each partition it holds: the next offset, and which
/// writer's records count there (restored from the checkpoints, so it classifies records
/// as a reader from the start would).
#[derive(Default)]
struct At {
    next: BTreeMap<u32, Offset>,
    validity: Validity,
    /// Positions applied since the group's offsets were last committed, and when that was.
    uncommitted: bool,
    committed_at: Option<Instant>,
}

impl At {
    /// Takes a partition on at its checkpoint.
    fn hand(&mut self, topic: Topic, partition: u32, next: Offset, writer: Option<String>) {
        self.next.insert(partition, next);
        self.validity.resume(topic.name(), partition, writer);
    }

    /// True while a partition held is short of its end in `ends`.
    fn behind(&self, ends: &[Offset]) -> bool {
        self.next
            .iter()
            .any(|(&p, &next)| ends.get(p as usize).is_some_and(|&end| next < end))
    }
}

/// Partitions the group handed a worker, with their checkpoints, read while the
/// consumer polled; the worker takes them on before it applies what that poll read.
type Handed = Arc<Mutex<Vec<(u32, Offset, Option<String>)>>>;

/// Starts the partitions handed to a worker at the read store's checkpoints.
struct FromCheckpoints {
    store: Arc<dyn ReadStore>,
    projection: &'static str,
    handed: Handed,
}

#[async_trait]
impl StartAt for FromCheckpoints {
    async fn positions(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<Offset>, StorageError> {
        let mut offsets = Vec::with_capacity(partitions.len());
        let mut handed = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let next = self
                .store
                .checkpoint(self.projection, topic, partition)
                .await?
                .unwrap_or(0);
            let writer = self
                .store
                .checkpoint_writer(self.projection, topic, partition)
                .await?;
            offsets.push(next);
            handed.push((partition, next, writer));
        }
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(handed);
        Ok(offsets)
    }
}

impl TopicWorker {
    /// The checkpoint of one partition and the writer it kept.
    async fn checkpoint(&self, partition: u32) -> Result<(Offset, Option<String>), StorageError> {
        let store = &self.projector.store;
        let (name, topic) = (self.projection.name(), self.topic.name());
        let next = store.checkpoint(name, topic, partition).await?.unwrap_or(0);
        let writer = store.checkpoint_writer(name, topic, partition).await?;
        Ok((next, writer))
    }

    /// A consumer of the partitions given, outside any group (a one-off catch-up).
    async fn consumer(
        &self,
        positions: &[(u32, Offset)],
    ) -> Result<Box<dyn Consumer>, StorageError> {
        self.projector
            .log
            .consume(self.topic.name(), positions)
            .await
    }

    /// The end offset of each partition (where a catch-up stops, what readiness waits
    /// for).
    async fn ends(&self) -> Result<Vec<Offset>, StorageError> {
        let mut ends = Vec::with_capacity(self.partitions as usize);
        for partition in 0..self.partitions {
            ends.push(
                self.projector
                    .log
                    .end_offset(self.topic.name(), partition)
                    .await?,
            );
        }
        Ok(ends)
    }

    /// True when the read store holds every partition up to `ends`: the ones this worker
    /// holds by its own position, the others by their checkpoints (another member's).
    async fn store_reached(&self, at: &At, ends: &[Offset]) -> Result<bool, StorageError> {
        for (partition, &end) in (0..self.partitions).zip(ends) {
            let next = match at.next.get(&partition) {
                Some(&next) => next,
                None => self.checkpoint(partition).await?.0,
            };
            if next < end {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn run(
        self,
        group: String,
        mut shutdown: watch::Receiver<bool>,
        caught_up: Arc<AtomicUsize>,
    ) {
        let name = self.projection.name();
        let handed: Handed = Arc::new(Mutex::new(Vec::new()));
        // What the log held when the worker started: readiness waits for the read model
        // to reach it.
        let mut ends: Option<Vec<Offset>> = None;
        let mut counted = false;
        // Made again after a failure: the member leaves the group and a new one joins,
        // restarting each partition from its checkpoint (records read before may not
        // have been applied).
        let mut state: Option<(Box<dyn GroupConsumer>, At)> = None;
        let mut last_apply: Option<Instant> = None;
        while !*shutdown.borrow() {
            let result = match state.as_mut() {
                None => self.join(&group, &handed, &mut ends).await.map(|consumer| {
                    state = Some((consumer, At::default()));
                }),
                // A stop does not wait out an idle poll; cut short, an apply is as a
                // crash is, which the checkpoints make safe.
                Some((consumer, at)) => tokio::select! {
                    applied = self.poll_and_apply(consumer.as_mut(), at, &handed, &mut last_apply) => applied,
                    _ = shutdown.wait_for(|stopped| *stopped) => break,
                },
            };
            let settled = !counted
                && result.is_ok()
                && state
                    .as_ref()
                    .is_some_and(|(consumer, _)| consumer.assigned() && consumer.lag() == 0);
            let result = match (&state, &ends) {
                (Some((_, at)), Some(ends)) if settled => {
                    match self.store_reached(at, ends).await {
                        Ok(reached) => {
                            if reached {
                                counted = true;
                                caught_up.fetch_add(1, Ordering::AcqRel);
                            }
                            Ok(())
                        }
                        Err(error) => Err(error.into()),
                    }
                }
                _ => result,
            };
            if let Err(error) = result {
                state = None;
                handed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                self.projector
                    .metrics
                    .errors
                    .with_label_values(&[name])
                    .inc();
                tracing::error!(projection = name, topic = self.topic.name(), %error, "projector batch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Joins the group (and learns where the log ends, the first time).
    async fn join(
        &self,
        group: &str,
        handed: &Handed,
        ends: &mut Option<Vec<Offset>>,
    ) -> Result<Box<dyn GroupConsumer>, ProjectionError> {
        if ends.is_none() {
            *ends = Some(self.ends().await?);
        }
        let start = Arc::new(FromCheckpoints {
            store: self.projector.store.clone(),
            projection: self.projection.name(),
            handed: handed.clone(),
        });
        Ok(self
            .projector
            .log
            .subscribe(group, self.topic.name(), start)
            .await?)
    }

    /// Polls a batch and applies it. A batch smaller than `PACE_UNTIL` that comes less
    /// than the pace after the last apply waits out the rest and takes in what arrived
    /// meanwhile.
    async fn poll_and_apply(
        &self,
        consumer: &mut dyn GroupConsumer,
        at: &mut At,
        handed: &Handed,
        last_apply: &mut Option<Instant>,
    ) -> Result<(), ProjectionError> {
        let mut records = consumer.poll(BATCH, IDLE_WAIT).await?;
        if !records.is_empty()
            && let Some(last) = *last_apply
            && records.len() < PACE_UNTIL
        {
            let since = last.elapsed();
            if since < self.projector.pace {
                tokio::time::sleep(self.projector.pace - since).await;
                let more = consumer.poll(BATCH - records.len(), Duration::ZERO).await?;
                records.extend(more);
            }
        }
        // The partitions the polls were handed start at their checkpoints; the ones taken
        // away are another member's now.
        for (partition, next, writer) in handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            at.hand(self.topic, partition, next, writer);
        }
        let held = consumer.assignment();
        at.next.retain(|partition, _| held.contains(partition));
        if !records.is_empty() {
            self.apply(&records, at).await?;
            *last_apply = Some(Instant::now());
            at.uncommitted = true;
        }
        if at.uncommitted && at.committed_at.is_none_or(|t| t.elapsed() >= COMMIT_EVERY) {
            let positions: Vec<(u32, Offset)> = at.next.iter().map(|(&p, &n)| (p, n)).collect();
            consumer.commit(&positions);
            at.uncommitted = false;
            at.committed_at = Some(Instant::now());
        }
        // Only now: records read but not applied count as lag (operators wait on a zero
        // lag to mean "applied").
        self.report_lag(consumer.lag());
        Ok(())
    }

    /// Projects the records that count (see `storage::validity`) and applies their
    /// writes with a checkpoint per partition read, in one read-store write; moves `at`
    /// on once it is applied. Records of partitions `at` does not hold, or before its
    /// position there, were applied already (or are another member's) and are skipped.
    async fn apply(&self, records: &[Record], at: &mut At) -> Result<(), ProjectionError> {
        let p = &self.projector;
        let mut staged = Staged::new(p.store.as_ref());
        let mut validity = at.validity.clone();
        let mut after: BTreeMap<u32, u64> = BTreeMap::new();
        let mut applied = 0;
        for record in records {
            let next = match after.get(&record.partition) {
                Some(&next) => next,
                None => match at.next.get(&record.partition) {
                    Some(&next) => next,
                    None => continue,
                },
            };
            if record.offset < next {
                continue;
            }
            after.insert(record.partition, record.offset + 1);
            applied += 1;
            if validity.admit(record) != Admitted::Valid {
                continue; // a marker, or a record a later marker replaced
            }
            let envelopes = match p.codec.decode_all(&record.value) {
                Ok(envelopes) => envelopes,
                Err(error) => {
                    // Retrying cannot help a record that does not decode: it is set
                    // aside with the batch (so exactly once) and the projection goes on.
                    self.dead_letter(record, &error.to_string(), &mut staged);
                    continue;
                }
            };
            let source = Source {
                topic: self.topic,
                partition: record.partition,
                offset: record.offset,
            };
            for envelope in &envelopes {
                self.projection
                    .project(envelope, source, &mut staged)
                    .await?;
            }
        }
        let topic = self.topic.name();
        let checkpoints = after
            .iter()
            .map(|(&partition, &next)| Checkpoint {
                projection: self.projection.name().to_string(),
                topic: topic.to_string(),
                partition,
                next,
                writer: validity.writer(topic, partition).map(str::to_owned),
            })
            .collect();
        let Writes { mut rows, guards } = staged.into_writes();
        if p.store.atomic() {
            rows.extend(guards);
            p.store.apply(rows, checkpoints).await?;
        } else {
            // The guards only once every row they vouch for is in: a crash between the
            // two leaves rows whose events the replay from the checkpoint redoes.
            if !rows.is_empty() {
                p.store.apply(rows, Vec::new()).await?;
            }
            p.store.apply(guards, checkpoints).await?;
        }
        p.progress.advanced();
        at.next.extend(after.iter().map(|(&p, &n)| (p, n)));
        at.validity = validity;
        p.metrics
            .events
            .with_label_values(&[self.projection.name()])
            .inc_by(applied);
        Ok(())
    }

    /// Stages a dead letter for `record` and counts it.
    fn dead_letter(&self, record: &Record, error: &str, staged: &mut Staged<'_>) {
        let name = self.projection.name();
        tracing::error!(
            projection = name,
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            error,
            "a record does not decode; set aside as a dead letter"
        );
        let letter = DeadLetter {
            projection: name.to_owned(),
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            error: error.to_owned(),
            appended_at: chrono::DateTime::from_timestamp_millis(record.timestamp_ms),
        };
        staged.put(
            DEAD_LETTERS,
            name,
            &dead_letter_key(&record.topic, record.partition, record.offset),
            letter,
            1,
        );
        self.projector
            .metrics
            .dead_letters
            .with_label_values(&[name])
            .inc();
    }

    fn report_lag(&self, lag: u64) {
        let Ok(mut lags) = self.lags.lock() else {
            return;
        };
        lags.insert((self.topic, self.member), lag);
        let total: u64 = lags.values().sum();
        self.projector
            .metrics
            .lag
            .with_label_values(&[self.projection.name()])
            .set(total as i64);
    }
}
