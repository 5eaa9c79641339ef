//! The load generator: drives a drone-delivery server over keep-alive HTTP/1.1
//! connections and reports throughput, latency (p50/p99/p99.9), errors by status,
//! command-to-visible lag and projection throughput, as a table, as JSON and as an SVG.
//!
//! ```text
//! loadgen --scenario schedule --connections 64 --duration 10          # a running server
//! loadgen --spawn --scenario open-loop --rate 5000 --duration 10      # one it starts
//! ```
//!
//! Scenarios: `schedule` (commands only; `--accounts 1` is one hot account), `mixed`
//! (schedule, telemetry and status queries, `--mix`; `--mix register=1` registers
//! accounts), `query` (status queries only),
//! `spike` (a burst at a fixed high rate), `streams` (customers watching deliveries
//! live: update latency after the telemetry's acknowledgement, server memory) and `open-loop` (a fixed arrival rate:
//! latency counts from each request's slot, so a server that falls behind cannot hide it
//! by slowing the client down, i.e. no coordinated omission).

mod client;
mod report;
mod server;
mod stats;
mod streams;
mod workload;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use client::{Connection, Target};
use report::{Report, Run};
use stats::Stats;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Mix, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Schedule,
    Mixed,
    Query,
    Spike,
    OpenLoop,
    Streams,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Schedule => "schedule",
            Scenario::Mixed => "mixed",
            Scenario::Query => "query",
            Scenario::Spike => "spike",
            Scenario::OpenLoop => "open-loop",
            Scenario::Streams => "streams",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Drives a drone-delivery server and reports what it measured")]
struct Args {
    #[arg(long, value_enum, default_value = "schedule")]
    scenario: Scenario,
    /// The server's address; not needed with `--spawn`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Start a server of its own (`drone-delivery serve` on a fresh data directory) and
    /// stop it at the end.
    #[arg(long)]
    spawn: bool,
    /// The server binary `--spawn` runs (default: `drone-delivery` beside this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// More arguments for the spawned server (repeat: `--server-arg=--log --server-arg=kafka://…`).
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// The operator's API key the requests carry (a spawned server gets one of its own;
    /// the peer ignores it).
    #[arg(long, env = "DRONE_DELIVERY_OPERATOR_KEY", hide_env_values = true)]
    key: Option<String>,
    /// `streams`: reports per telemetry batch (a second's batches spread over it).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// `streams`: status streams open at once (spread over `--deliveries`).
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Keep-alive connections (concurrent requests).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of measured load (after set-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Arrivals per second for `open-loop` (default 5000) and `spike` (default 50000).
    #[arg(long)]
    rate: Option<f64>,
    /// Accounts the schedule commands spread over (1: one hot account).
    #[arg(long, default_value_t = 64)]
    accounts: usize,
    /// Drones the telemetry goes to.
    #[arg(long, default_value_t = 64)]
    drones: usize,
    /// Deliveries scheduled before a `query` or `mixed` run, for the status queries.
    #[arg(long, default_value_t = 1000)]
    deliveries: usize,
    /// The share of each request kind, e.g. `schedule=1,telemetry=3,status=6` (the
    /// default of `mixed`; `query` sends `status`, the others `schedule`). Given, it
    /// sets what any scenario sends: `--scenario open-loop --rate 10000 --mix status=1`
    /// is the tracking query at a fixed rate.
    #[arg(long)]
    mix: Option<Mix>,
    /// Samples command-to-visible lag (a schedule, then the query until it shows) this
    /// often, in ms, on connections of its own; 0 turns it off.
    #[arg(long, default_value_t = 20)]
    visible_every_ms: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and p99 latency per second here (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Exit with an error unless some requests were made and every one got a 2xx (the
    /// CI smoke test).
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spawned = if args.spawn {
        Some(server::Spawned::start(args.server_bin.clone(), &args.server_arg).await?)
    } else {
        None
    };
    let url = spawned
        .as_ref()
        .map_or_else(|| args.url.clone(), |s| s.url.clone());
    let key = spawned
        .as_ref()
        .map(|s| s.key.clone())
        .or_else(|| args.key.clone());
    let target = Target::parse(&url)?.with_key(key);
    if args.scenario == Scenario::Streams {
        let plan = streams::Plan {
            streams: args.streams,
            deliveries: args.deliveries,
            duration: Duration::from_secs_f64(args.duration.max(1.0)),
            batch: args.batch,
            server_pid: spawned.as_ref().map(server::Spawned::pid),
        };
        return streams::run(target, plan).await;
    }

    let rate = match args.scenario {
        Scenario::OpenLoop => Some(args.rate.unwrap_or(5000.0)),
        Scenario::Spike => Some(args.rate.unwrap_or(50_000.0)),
        _ => None,
    };
    let mix = match (&args.mix, args.scenario) {
        (Some(mix), _) => mix.clone(),
        (None, Scenario::Mixed) => Mix::mixed_default(),
        (None, Scenario::Query) => Mix::only("status"),
        (None, _) => Mix::only("schedule"),
    };
    let needs_deliveries = mix.has("status");
    eprintln!(
        "setting up: {} accounts, {} drones",
        args.accounts, args.drones
    );
    let workload = Arc::new(
        Workload::set_up(
            &target,
            args.accounts.max(1),
            if mix.has("telemetry") || mix.has("fleet") {
                args.drones
            } else {
                0
            },
            if needs_deliveries { args.deliveries } else { 0 },
            mix,
        )
        .await
        .context("set-up failed")?,
    );

    let events_before = workload::projector_events(&target).await;
    eprintln!(
        "running {} for {:.1} s on {} connections",
        args.scenario.name(),
        args.duration,
        args.connections
    );
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let start = Instant::now();
    let deadline = start + duration;
    let connections = args.connections.max(1);
    let mut tasks = Vec::with_capacity(connections + 1);
    for worker in 0..connections {
        let workload = workload.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::new(target);
            let mut stats = Stats::new(start);
            let slots = rate.map(|r| (r / connections as f64, worker as f64 / r));
            workload
                .drive(
                    &mut connection,
                    &mut stats,
                    worker as u64,
                    start,
                    deadline,
                    slots,
                )
                .await;
            stats
        }));
    }
    // Only where commands flow: a probe's own commands would be all there is otherwise.
    let probes = args.visible_every_ms > 0 && workload.sends("schedule");
    if probes {
        let workload = workload.clone();
        let target = target.clone();
        let every = Duration::from_millis(args.visible_every_ms);
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new(start);
            workload
                .probe_visibility(&target, &mut stats, every, deadline)
                .await;
            stats
        }));
    }
    let mut stats = Stats::new(start);
    for task in tasks {
        stats.merge(task.await?);
    }
    // Until the last answer: an open loop whose server fell behind answers past the
    // deadline, and its throughput is what it answered over that whole time.
    let elapsed = start.elapsed().max(duration);
    let events_after = workload::projector_events(&target).await;
    let projection_events_per_sec = match (events_before, events_after) {
        (Some(before), Some(after)) => Some((after - before) / elapsed.as_secs_f64()),
        _ => None,
    };

    let report = Report::new(
        Run {
            scenario: args.scenario.name().to_owned(),
            url,
            connections,
            rate,
            duration,
            elapsed,
            projection_events_per_sec,
        },
        &stats,
    );
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    drop(spawned);
    if args.check {
        let failed: u64 = report
            .total
            .outcomes
            .iter()
            .filter(|(k, _)| !k.starts_with('2'))
            .map(|(_, n)| n)
            .sum();
        if report.total.requests == 0 || failed > 0 {
            anyhow::bail!(
                "check failed: {} requests, {failed} not 2xx",
                report.total.requests
            );
        }
    }
    Ok(())
}
