//! What the notifier has sent or given up on, in a small state of its own in the data
//! directory (`notifier/`), so that a restart, which folds the log from its start again,
//! does not send again what went out before (ADR 15). `settled.jsonl` holds one line per
//! settled message id, appended as each settles; at start-up it is read and rewritten
//! without the ids older than the horizon (their events are too old to be sent anyway).
//! `failures.jsonl` holds the messages given up on, for operators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Failures kept for the operators' list (the oldest go first).
pub const FAILURES_KEPT: usize = 1000;

/// A message given up on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub notification_id: String,
    pub event_id: String,
    pub delivery_id: String,
    pub kind: String,
    pub channel: String,
    pub target: String,
    pub attempts: u32,
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct Settled {
    id: String,
    /// When the message's event happened.
    at: DateTime<Utc>,
}

/// The settled ids and the failures, on disk.
pub struct Ledger {
    settled: HashSet<String>,
    /// Claimed and not yet settled (sending now).
    claimed: HashSet<String>,
    failures: VecDeque<Failure>,
    settled_file: File,
    failures_file: File,
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir`, forgetting ids of events before `horizon`.
    pub fn open(dir: &Path, horizon: DateTime<Utc>) -> std::io::Result<Ledger> {
        std::fs::create_dir_all(dir)?;
        let settled_path = dir.join("settled.jsonl");
        let kept: Vec<Settled> = read_lines::<Settled>(&settled_path)?
            .into_iter()
            .filter(|s| s.at >= horizon)
            .collect();
        let tmp: PathBuf = dir.join("settled.jsonl.tmp");
        {
            let mut out = File::create(&tmp)?;
            for s in &kept {
                writeln!(out, "{}", serde_json::to_string(s)?)?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &settled_path)?;
        let failures_path = dir.join("failures.jsonl");
        let mut failures: VecDeque<Failure> = read_lines(&failures_path)?.into();
        while failures.len() > FAILURES_KEPT {
            failures.pop_front();
        }
        let append = |path: &Path| OpenOptions::new().create(true).append(true).open(path);
        Ok(Ledger {
            settled: kept.into_iter().map(|s| s.id).collect(),
            claimed: HashSet::new(),
            failures,
            settled_file: append(&settled_path)?,
            failures_file: append(&failures_path)?,
        })
    }

    /// True when `id` is neither settled nor being sent: the caller sends it now.
    pub fn claim(&mut self, id: &str) -> bool {
        !self.settled.contains(id) && self.claimed.insert(id.to_owned())
    }

    /// `id` (of an event that happened `at`) is settled: sent, or given up on.
    pub fn settle(&mut self, id: &str, at: DateTime<Utc>, failure: Option<Failure>) {
        self.claimed.remove(id);
        self.settled.insert(id.to_owned());
        let line = serde_json::to_string(&Settled {
            id: id.to_owned(),
            at,
        });
        if let Err(error) = line.map_err(std::io::Error::from).and_then(|l| {
            writeln!(self.settled_file, "{l}")?;
            self.settled_file.flush()
        }) {
            tracing::warn!(%id, %error, "notifier cannot record a settled message");
        }
        if let Some(failure) = failure {
            let line = serde_json::to_string(&failure);
            if let Err(error) = line.map_err(std::io::Error::from).and_then(|l| {
                writeln!(self.failures_file, "{l}")?;
                self.failures_file.flush()
            }) {
                tracing::warn!(%id, %error, "notifier cannot record a failure");
            }
            self.failures.push_back(failure);
            if self.failures.len() > FAILURES_KEPT {
                self.failures.pop_front();
            }
        }
    }

    /// The failures kept, newest first.
    pub fn failures(&self, limit: usize) -> Vec<Failure> {
        self.failures.iter().rev().take(limit).cloned().collect()
    }
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Vec<T>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        // A line torn by a crash is skipped: at worst that message goes out again.
        if let Ok(value) = serde_json::from_str(&line?) {
            out.push(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_reopened_ledger_remembers_what_was_settled_within_the_horizon() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let now = Utc::now();
        let mut ledger = Ledger::open(dir.path(), now - TimeDelta::hours(1)).expect("opens");
        assert!(ledger.claim("a:email"));
        assert!(!ledger.claim("a:email"), "claimed once");
        ledger.settle("a:email", now, None);
        assert!(ledger.claim("old:sms"));
        ledger.settle("old:sms", now - TimeDelta::hours(2), None);
        let failure = Failure {
            notification_id: "b:webhook".into(),
            event_id: "b".into(),
            delivery_id: "d".into(),
            kind: "completed".into(),
            channel: "webhook".into(),
            target: "http://x".into(),
            attempts: 3,
            error: "500".into(),
            failed_at: now,
        };
        assert!(ledger.claim("b:webhook"));
        ledger.settle("b:webhook", now, Some(failure.clone()));
        drop(ledger);
        let mut ledger = Ledger::open(dir.path(), now - TimeDelta::hours(1)).expect("reopens");
        assert!(!ledger.claim("a:email"));
        assert!(!ledger.claim("b:webhook"));
        assert!(ledger.claim("old:sms"), "past the horizon: forgotten");
        assert_eq!(ledger.failures(10), vec![failure]);
    }
}
