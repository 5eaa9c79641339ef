//! One writer of the command topics at a time, across processes: each `command-api`
//! heartbeats on the `command-writers` topic, and one starts only once no other
//! instance's heartbeats are younger than their session. A live second instance is
//! refused at start-up with a clear message; one restarted after a crash takes over once
//! the dead one's session has passed. Of two instances that both heartbeat (one was
//! paused past its session while the other took over), the one whose first heartbeat is
//! later in the log is the writer: the other stops taking commands when it reads it.
//!
//! This rests on the log's order and on clocks agreeing within a session, which is what
//! a single writer needs until partition ownership (several writers, fenced by markers in
//! the log) replaces it.

use chrono::{DateTime, TimeDelta, Utc};
use schemas::{Codec, WRITERHEARTBEAT_SCHEMA_ID, WriterHeartbeat};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use storage::{EventLog, NewRecord, StorageError, TopicSpec};
use tokio::sync::watch;

/// The topic of the heartbeats.
pub const WRITERS_TOPIC: &str = "command-writers";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another command-api (instance {instance} at {address}) is the writer of the command topics and still alive (last heartbeat {age_ms} ms ago); one writer runs at a time, so this one does not start"
    )]
    Taken {
        instance: String,
        address: String,
        age_ms: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("heartbeat: {0}")]
    Codec(#[from] schemas::CodecError),
}

/// This process's place as the writer; `holds()` turns false once another instance
/// heartbeats (and stays false).
#[derive(Clone)]
pub struct WriterLease {
    held: Arc<AtomicBool>,
    instance: String,
}

impl std::fmt::Debug for WriterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLease")
            .field("instance", &self.instance)
            .field("held", &self.holds())
            .finish()
    }
}

impl WriterLease {
    /// A lease for a log only this process can write (the embedded log's directory lock
    /// already says so).
    pub fn exclusive() -> WriterLease {
        WriterLease {
            held: Arc::new(AtomicBool::new(true)),
            instance: "exclusive".into(),
        }
    }

    pub fn holds(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Refuses a write once another instance took over.
    pub fn still_held(&self) -> Result<(), crate::error::CommandError> {
        if self.holds() {
            return Ok(());
        }
        Err(crate::error::CommandError::Unavailable(
            "this command-api is no longer the writer of the command topics (another instance took over)".into(),
        ))
    }

    /// Stops taking commands for good (another writer marked a partition).
    pub fn give_up(&self) {
        self.held.store(false, Ordering::Release);
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Waits (up to a session and a beat) for the heartbeats of a previous writer to
    /// stop, then heartbeats and keeps heartbeating until `shutdown`; refused while
    /// another instance is alive.
    pub async fn acquire(
        log: Arc<dyn EventLog>,
        codec: Codec,
        address: String,
        session: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<WriterLease, LeaseError> {
        log.create_topics(&[TopicSpec {
            name: WRITERS_TOPIC.into(),
            partitions: 1,
        }])
        .await?;
        let instance = uuid::Uuid::new_v4().to_string();
        let session_delta = TimeDelta::from_std(session).unwrap_or(TimeDelta::seconds(10));
        let beat = session / 3;
        // Other writers' last heartbeats, as read so far.
        let mut heard = Heard::default();
        let mut next = 0;
        let give_up = tokio::time::Instant::now() + session + beat;
        loop {
            next = heard.read(log.as_ref(), &codec, next, &instance).await?;
            match heard.live(Utc::now(), session_delta) {
                None => break,
                Some(other) if tokio::time::Instant::now() >= give_up => {
                    return Err(LeaseError::Taken {
                        instance: other.instance.clone(),
                        address: other.address.clone(),
                        age_ms: (Utc::now() - other.at).num_milliseconds(),
                    });
                }
                Some(_) => tokio::time::sleep(beat).await,
            }
        }
        let lease = WriterLease {
            held: Arc::new(AtomicBool::new(true)),
            instance: instance.clone(),
        };
        let heartbeat = Heartbeat {
            log,
            codec,
            instance,
            address,
            session,
        };
        let first = heartbeat.send().await?;
        tokio::spawn(heartbeat.keep(lease.clone(), heard, next, first, shutdown));
        Ok(lease)
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
        from: u64,
        me: &str,
    ) -> Result<u64, LeaseError> {
        let mut next = from;
        loop {
            let records = log.read(WRITERS_TOPIC, 0, next, 512).await?;
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

    /// Another instance whose session has not passed.
    fn live(&self, now: DateTime<Utc>, session: TimeDelta) -> Option<&WriterHeartbeat> {
        self.others
            .values()
            .map(|(b, _)| b)
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
    log: Arc<dyn EventLog>,
    codec: Codec,
    instance: String,
    address: String,
    session: Duration,
}

impl Heartbeat {
    /// Returns the heartbeat's offset.
    async fn send(&self) -> Result<u64, LeaseError> {
        let beat = WriterHeartbeat {
            instance: self.instance.clone(),
            address: self.address.clone(),
            at: Utc::now(),
            session_ms: i64::try_from(self.session.as_millis()).unwrap_or(i64::MAX),
        };
        let value = self.codec.encode_frame(WRITERHEARTBEAT_SCHEMA_ID, &beat)?;
        let appended = self
            .log
            .append(vec![NewRecord {
                topic: WRITERS_TOPIC.into(),
                key: self.instance.clone(),
                value: value.into(),
                headers: Vec::new(),
            }])
            .await?;
        Ok(appended.first().map_or(0, |a| a.offset))
    }

    /// Watches for a newer writer and heartbeats, every third of a session.
    async fn keep(
        self,
        lease: WriterLease,
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
            // Read before beating: a writer that was taken over sends nothing more.
            match heard
                .read(self.log.as_ref(), &self.codec, next, &self.instance)
                .await
            {
                Ok(read_to) => next = read_to,
                Err(error) => tracing::warn!(%error, "cannot read the writer heartbeats"),
            }
            if let Some(other) = heard.newer_than(first) {
                tracing::error!(
                    other = %other.instance,
                    address = %other.address,
                    "another command-api took over the command topics; this one stops taking commands"
                );
                lease.held.store(false, Ordering::Release);
                return;
            }
            if let Err(error) = self.send().await {
                tracing::warn!(%error, "cannot send the writer heartbeat");
            }
        }
    }
}
