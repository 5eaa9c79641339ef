//! A run's results: a table for people, JSON for scripts, an SVG of throughput and
//! latency over time.

use crate::stats::{OpStats, Stats, histogram};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub url: String,
    pub connections: usize,
    /// Arrivals per second of an open loop (`None`: closed loop).
    pub rate: Option<f64>,
    /// The load's own length; `elapsed_secs` runs to the last answer, and the rates
    /// are over it.
    pub duration_secs: f64,
    pub elapsed_secs: f64,
    pub ops: BTreeMap<String, OpReport>,
    pub total: OpReport,
    /// Acknowledgement of a schedule command → the delivery query shows it.
    pub command_to_visible: Option<Latency>,
    /// Events the projectors applied per second during the run (from `/metrics`).
    pub projection_events_per_sec: Option<f64>,
    pub timeline: Vec<SecondReport>,
}

#[derive(Serialize)]
pub struct OpReport {
    pub requests: u64,
    pub ok_per_sec: f64,
    pub latency: Latency,
    /// By status code, or `timeout` / `io`.
    pub outcomes: BTreeMap<String, u64>,
}

#[derive(Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Serialize)]
pub struct SecondReport {
    pub second: usize,
    pub ok: u64,
    pub errors: u64,
    pub p99_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn latency(h: &Histogram<u64>) -> Latency {
    Latency {
        samples: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

fn op_report(stats: &OpStats, duration: Duration) -> OpReport {
    OpReport {
        requests: stats.total(),
        ok_per_sec: stats.ok() as f64 / duration.as_secs_f64(),
        latency: latency(&stats.latency),
        outcomes: stats.outcomes.clone(),
    }
}

pub struct Run {
    pub scenario: String,
    pub url: String,
    pub connections: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub elapsed: Duration,
    pub projection_events_per_sec: Option<f64>,
}

impl Report {
    pub fn new(run: Run, stats: &Stats) -> Report {
        let mut all = histogram(3);
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        for op in stats.ops.values() {
            let _ = all.add(&op.latency);
            for (k, n) in &op.outcomes {
                *outcomes.entry(k.clone()).or_default() += n;
            }
        }
        let ok: u64 = stats.ops.values().map(OpStats::ok).sum();
        let secs = run.elapsed.as_secs_f64();
        Report {
            scenario: run.scenario,
            url: run.url,
            connections: run.connections,
            rate: run.rate,
            duration_secs: run.duration.as_secs_f64(),
            elapsed_secs: secs,
            ops: stats
                .ops
                .iter()
                .map(|(k, v)| ((*k).to_owned(), op_report(v, run.elapsed)))
                .collect(),
            total: OpReport {
                requests: outcomes.values().sum(),
                ok_per_sec: ok as f64 / secs,
                latency: latency(&all),
                outcomes,
            },
            command_to_visible: (!stats.visible.is_empty()).then(|| latency(&stats.visible)),
            projection_events_per_sec: run.projection_events_per_sec,
            timeline: stats
                .timeline
                .iter()
                .enumerate()
                .map(|(second, s)| SecondReport {
                    second,
                    ok: s.ok,
                    errors: s.errors,
                    p99_ms: if s.latency.is_empty() {
                        0.0
                    } else {
                        ms(s.latency.value_at_quantile(0.99))
                    },
                })
                .collect(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rate = self.rate.map_or_else(
            || "closed loop".to_owned(),
            |r| format!("open loop at {r:.0}/s"),
        );
        let _ = writeln!(
            out,
            "scenario {} against {}: {} connections, {rate}, {:.1} s (last answer after {:.1} s)",
            self.scenario, self.url, self.connections, self.duration_secs, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}  outcomes",
            "request", "requests", "ok/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let rows = self
            .ops
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(std::iter::once(("all", &self.total)));
        for (name, op) in rows {
            let outcomes: Vec<String> = op
                .outcomes
                .iter()
                .map(|(k, n)| format!("{k}:{n}"))
                .collect();
            let _ = writeln!(
                out,
                "{:<12} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
                name,
                op.requests,
                op.ok_per_sec,
                op.latency.p50_ms,
                op.latency.p99_ms,
                op.latency.p999_ms,
                op.latency.max_ms,
                outcomes.join(" ")
            );
        }
        if let Some(lag) = &self.command_to_visible {
            let _ = writeln!(
                out,
                "command-to-visible: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms ({} samples)",
                lag.p50_ms, lag.p99_ms, lag.p999_ms, lag.samples
            );
        }
        if let Some(events) = self.projection_events_per_sec {
            let _ = writeln!(out, "projectors applied {events:.0} events/s");
        }
        out
    }

    /// Throughput (ok/s) and p99 latency per second, one chart above the other.
    pub fn svg(&self) -> String {
        let (width, height, pad) = (800.0, 200.0, 50.0);
        let seconds = self.timeline.len().max(2) as f64 - 1.0;
        let chart = |top: f64, title: &str, values: Vec<f64>, color: &str| {
            let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = pad + (i as f64 / seconds) * (width - 2.0 * pad);
                    let y = top + height - (v / max) * height;
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            format!(
                r#"<text x="{pad}" y="{ty}" font-size="14">{title} (max {max:.1})</text>
<line x1="{pad}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>
<line x1="{pad}" y1="{top}" x2="{pad}" y2="{bottom}" stroke="black"/>
<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>
"#,
                ty = top - 8.0,
                bottom = top + height,
                right = width - pad,
                points = points.join(" ")
            )
        };
        let ok: Vec<f64> = self.timeline.iter().map(|s| s.ok as f64).collect();
        let p99: Vec<f64> = self.timeline.iter().map(|s| s.p99_ms).collect();
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="24" font-size="16">{scenario}: {connections} connections, per second of the run</text>
{throughput}{latency}<text x="{pad}" y="{axis}" font-size="12">seconds 0 to {seconds:.0}</text>
</svg>
"#,
            total = 2.0 * height + 3.0 * pad + 40.0,
            scenario = self.scenario,
            connections = self.connections,
            throughput = chart(pad + 30.0, "ok responses per second", ok, "steelblue"),
            latency = chart(
                2.0 * pad + height + 30.0,
                "p99 latency, ms",
                p99,
                "firebrick"
            ),
            axis = 2.0 * height + 3.0 * pad + 30.0,
        )
    }
}
