//! What a run measured. Each connection keeps its own [`Stats`] (no shared counters on
//! the hot path) and they are merged at the end.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Latencies up to a minute, in microseconds.
pub fn histogram(significant: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, significant).expect("constant, valid bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One kind of request: its latencies and what it came back as.
pub struct OpStats {
    pub latency: Histogram<u64>,
    /// By status code, or `timeout` / `io`.
    pub outcomes: BTreeMap<String, u64>,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: histogram(3),
            outcomes: BTreeMap::new(),
        }
    }

    pub fn ok(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| k.starts_with('2'))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// One second of the run.
pub struct Second {
    pub ok: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

pub struct Stats {
    start: Instant,
    pub ops: BTreeMap<&'static str, OpStats>,
    pub timeline: Vec<Second>,
    /// From a command's acknowledgement to the query showing it.
    pub visible: Histogram<u64>,
}

impl Stats {
    pub fn new(start: Instant) -> Stats {
        Stats {
            start,
            ops: BTreeMap::new(),
            timeline: Vec::new(),
            visible: histogram(3),
        }
    }

    /// A request meant to start at `intended` (its send time in a closed loop; its slot
    /// in an open loop, so a server that falls behind shows in the latency) that ended at
    /// `done` with `outcome`.
    pub fn record(&mut self, op: &'static str, intended: Instant, done: Instant, outcome: &str) {
        let latency = micros(done.saturating_duration_since(intended));
        let stats = self.ops.entry(op).or_insert_with(OpStats::new);
        let _ = stats.latency.record(latency);
        *stats.outcomes.entry(outcome.to_owned()).or_default() += 1;
        let second = done.saturating_duration_since(self.start).as_secs() as usize;
        while self.timeline.len() <= second {
            self.timeline.push(Second {
                ok: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        let slot = &mut self.timeline[second];
        if outcome.starts_with('2') {
            slot.ok += 1;
        } else {
            slot.errors += 1;
        }
        let _ = slot.latency.record(latency);
    }

    pub fn record_visible(&mut self, lag: Duration) {
        let _ = self.visible.record(micros(lag));
    }

    pub fn merge(&mut self, other: Stats) {
        for (op, theirs) in other.ops {
            let ours = self.ops.entry(op).or_insert_with(OpStats::new);
            let _ = ours.latency.add(&theirs.latency);
            for (outcome, n) in theirs.outcomes {
                *ours.outcomes.entry(outcome).or_default() += n;
            }
        }
        for (i, theirs) in other.timeline.into_iter().enumerate() {
            if let Some(ours) = self.timeline.get_mut(i) {
                ours.ok += theirs.ok;
                ours.errors += theirs.errors;
                let _ = ours.latency.add(&theirs.latency);
            } else {
                self.timeline.push(theirs);
            }
        }
        let _ = self.visible.add(&other.visible);
    }
}
