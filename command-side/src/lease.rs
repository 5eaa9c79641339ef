//! One holder of a role at a time, across processes: each instance heartbeats on the
//! role's topic, and one takes the role only once no other instance's heartbeats are
//! younger than their session. The active workflow uses it ([`LeaseOf`]): a second
//! instance stands by and takes over. One restarted after a crash, or a standby, takes
//! over once the dead one's session has passed. Of two instances that both heartbeat (one was paused past its session while
//! the other took over), the one whose first heartbeat is later in the log holds the
//! role: the other gives it up when it reads it.
//!
//! This rests on the log's order and on clocks agreeing within a session; the workflow
//! needs no more, since each of its commands carries an idempotency key and `If-Match`
//! (two active for a moment decide nothing twice). The command topics' writers need
//! more, and have it: ownership per partition, fenced by markers in the log
//! (`ownership.rs`).

use chrono::{DateTime, TimeDelta, Utc};
use schemas::{Codec, WRITERHEARTBEAT_SCHEMA_ID, WriterHeartbeat};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use storage::{EventLog, NewRecord, StorageError, TopicSpec};
use tokio::sync::watch;

/// What a lease is for: the topic its heartbeats go on, and names for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOf {
    pub topic: &'static str,
    /// The role's process (`command-api`).
    pub role: &'static str,
    /// What holding it makes a process.
    pub holder: &'static str,
}

/// One workflow decides (dispatch chooses over the whole fleet); others stand by.
pub const ACTIVE_WORKFLOW: LeaseOf = LeaseOf {
    topic: "workflow-leader",
    role: "workflow",
    holder: "the active workflow",
};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another {role} (instance {instance} at {address}) is {holder} and still alive (last heartbeat {age_ms} ms ago); one runs at a time, so this one does not start"
    )]
    Taken {
        role: &'static str,
        holder: &'static str,
        instance: String,
        address: String,
        age_ms: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("heartbeat: {0}")]
    Codec(#[from] schemas::CodecError),
}

/// This process's place in a role; `holds()` turns false once another instance took
/// over, or this one gave it up (and stays false).
#[derive(Clone)]
pub struct Lease {
    held: Arc<AtomicBool>,
    instance: String,
    /// Its heartbeats (none for an exclusive lease).
    beat: Option<Arc<Heartbeat>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("instance", &self.instance)
            .field("held", &self.holds())
            .finish()
    }
}

impl Lease {
    /// A lease for a log only this process can write (the embedded log's directory lock
    /// already says so).
    pub fn exclusive() -> Lease {
        Lease {
            held: Arc::new(AtomicBool::new(true)),
            instance: "exclusive".into(),
            beat: None,
        }
    }

    pub fn holds(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Gives the role up for good (another writer marked a partition; the workflow
    /// stopped): its heartbeats stop.
    pub fn give_up(&self) {
        self.held.store(false, Ordering::Release);
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Gives the role up and says so on its topic (a heartbeat with no session), so a
    /// successor or standby takes over at once instead of a session later. For a
    /// graceful stop, once the work in hand is done.
    pub async fn release(&self) {
        if !self.held.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Some(beat) = &self.beat {
            match beat.send(Duration::ZERO).await {
                Ok(_) => tracing::info!(
                    role = beat.of.role,
                    "released: {} may take over at once",
                    beat.of.holder
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot say the lease is released; a successor waits a session")
                }
            }
        }
    }

    /// Waits (up to a session and a beat) for the heartbeats of a previous holder to
    /// stop, then heartbeats and keeps heartbeating until `shutdown`; refused while
    /// another instance is alive.
    pub async fn acquire(
        of: LeaseOf,
        log: Arc<dyn EventLog>,
        codec: Codec,
        address: String,
        session: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Lease, LeaseError> {
        let patience = Some(tokio::time::Instant::now() + session + session / 3);
        Lease::take(of, log, codec, address, session, shutdown, patience)
            .await
            .map(|taken| taken.unwrap_or_else(|| Lease::given_up("shut down")))
    }

    /// Stands by while another instance holds the role, for as long as it does, then
    /// takes it as [`Lease::acquire`] does; `None` when `shutdown` came first.
    pub async fn standby(
        of: LeaseOf,
        log: Arc<dyn EventLog>,
        codec: Codec,
        address: String,
        session: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<Lease>, LeaseError> {
        Lease::take(of, log, codec, address, session, shutdown, None).await
    }

    fn given_up(instance: &str) -> Lease {
        Lease {
            held: Arc::new(AtomicBool::new(false)),
            instance: instance.into(),
            beat: None,
        }
    }

    /// Waits for no other live holder (refused after `patience`, when given), then
    /// heartbeats; `None` when `shutdown` came first.
    async fn take(
        of: LeaseOf,
        log: Arc<dyn EventLog>,
        codec: Codec,
        address: String,
        session: Duration,
        mut shutdown: watch::Receiver<bool>,
        patience: Option<tokio::time::Instant>,
    ) -> Result<Option<Lease>, LeaseError> {
        log.create_topics(&[TopicSpec {
            name: of.topic.into(),
            partitions: 1,
        }])
        .await?;
        let instance = uuid::Uuid::new_v4().to_string();
        let session_delta = TimeDelta::from_std(session).unwrap_or(TimeDelta::seconds(10));
        let beat = session / 3;
        // Other holders' last heartbeats, as read so far.
        let mut heard = Heard::default();
        let mut next = 0;
        let mut told = false;
        loop {
            next = heard
                .read(log.as_ref(), &codec, of.topic, next, &instance)
                .await?;
            match heard.live(Utc::now(), session_delta) {
                None => break,
                Some(other) if patience.is_some_and(|p| tokio::time::Instant::now() >= p) => {
                    return Err(LeaseError::Taken {
                        role: of.role,
                        holder: of.holder,
                        instance: other.instance.clone(),
                        address: other.address.clone(),
                        age_ms: (Utc::now() - other.at).num_milliseconds(),
                    });
                }
                Some(other) => {
                    if patience.is_none() && !told {
                        told = true;
                        tracing::info!(
                            other = %other.instance,
                            address = %other.address,
                            "standing by: another {} is {}", of.role, of.holder
                        );
                    }
                    let stopped = tokio::select! {
                        _ = tokio::time::sleep(beat) => false,
                        // A dropped sender is a shutdown too.
                        changed = shutdown.changed() => changed.is_err(),
                    };
                    if stopped || *shutdown.borrow() {
                        return Ok(None);
                    }
                }
            }
        }
        let heartbeat = Arc::new(Heartbeat {
            of,
            log,
            codec,
            instance: instance.clone(),
            address,
            session,
        });
        let lease = Lease {
            held: Arc::new(AtomicBool::new(true)),
            instance,
            beat: Some(heartbeat.clone()),
        };
        let first = heartbeat.send(session).await?;
        tokio::spawn(heartbeat.keep(lease.clone(), heard, next, first, shutdown));
        Ok(Some(lease))
    }
}

/// The latest heartbeat of each other instance, and the offset of its first.
#[derive(Default)]
struct Heard {
    others: HashMap<String, (WriterHeartbeat, u64)>,
}

impl Heard {
    /// Folds the heartbeats from `from` on; returns the next offset to read.
    async fn read(
        &mut self,
        log: &dyn EventLog,
        codec: &Codec,
        topic: &str,
        from: u64,
        me: &str,
    ) -> Result<u64, LeaseError> {
        let mut next = from;
        loop {
            let records = log.read(topic, 0, next, 512).await?;
            let Some(last) = records.last() else {
                return Ok(next);
            };
            next = last.offset + 1;
            for record in &records {
                match codec
                    .decode_frame::<WriterHeartbeat>(WRITERHEARTBEAT_SCHEMA_ID, &record.value)
                {
                    Ok(beat) if beat.instance != me => {
                        let first = self
                            .others
                            .get(&beat.instance)
                            .map_or(record.offset, |(_, first)| *first);
                        self.others.insert(beat.instance.clone(), (beat, first));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "skipping an unreadable writer heartbeat")
                    }
                }
            }
        }
    }

    /// Another instance whose session has not passed (one whose last heartbeat has no
    /// session released its lease).
    fn live(&self, now: DateTime<Utc>, session: TimeDelta) -> Option<&WriterHeartbeat> {
        self.others
            .values()
            .map(|(b, _)| b)
            .filter(|b| b.session_ms > 0)
            .filter(|b| now - b.at < TimeDelta::milliseconds(b.session_ms).max(session))
            .max_by_key(|b| b.at)
    }

    /// An instance that started heartbeating after `offset` (it took over).
    fn newer_than(&self, offset: u64) -> Option<&WriterHeartbeat> {
        self.others
            .values()
            .find(|(_, first)| *first > offset)
            .map(|(b, _)| b)
    }
}

struct Heartbeat {
    of: LeaseOf,
    log: Arc<dyn EventLog>,
    codec: Codec,
    instance: String,
    address: String,
    session: Duration,
}

impl Heartbeat {
    /// Sends a heartbeat good for `session` (zero: released); returns its offset.
    async fn send(&self, session: Duration) -> Result<u64, LeaseError> {
        let beat = WriterHeartbeat {
            instance: self.instance.clone(),
            address: self.address.clone(),
            at: Utc::now(),
            session_ms: i64::try_from(session.as_millis()).unwrap_or(i64::MAX),
        };
        let value = self.codec.encode_frame(WRITERHEARTBEAT_SCHEMA_ID, &beat)?;
        let appended = self
            .log
            .append(vec![NewRecord {
                topic: self.of.topic.into(),
                key: self.instance.clone(),
                value: value.into(),
                headers: Vec::new(),
            }])
            .await?;
        Ok(appended.first().map_or(0, |a| a.offset))
    }

    /// Watches for a newer holder and heartbeats, every third of a session, until the
    /// lease is given up or taken over.
    async fn keep(
        self: Arc<Self>,
        lease: Lease,
        mut heard: Heard,
        mut next: u64,
        first: u64,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let beat = self.session / 3;
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(beat) => {}
                _ = shutdown.changed() => return,
            }
            if !lease.holds() {
                return; // given up: its successor must not wait for these beats
            }
            // Read before beating: a holder that was taken over sends nothing more.
            match heard
                .read(
                    self.log.as_ref(),
                    &self.codec,
                    self.of.topic,
                    next,
                    &self.instance,
                )
                .await
            {
                Ok(read_to) => next = read_to,
                Err(error) => tracing::warn!(%error, "cannot read the writer heartbeats"),
            }
            if let Some(other) = heard.newer_than(first) {
                tracing::error!(
                    other = %other.instance,
                    address = %other.address,
                    "another {} took over as {}; this one gives it up", self.of.role, self.of.holder
                );
                lease.held.store(false, Ordering::Release);
                return;
            }
            if !lease.holds() {
                return; // released while it read
            }
            if let Err(error) = self.send(self.session).await {
                tracing::warn!(%error, "cannot send the heartbeat");
            }
        }
    }
}
