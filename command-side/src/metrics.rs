use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The command side's metrics, registered on the process's registry.
#[derive(Clone)]
pub struct CommandMetrics {
    /// Commands by type and outcome (accepted, replayed, invalid, conflict, ...).
    pub commands: IntCounterVec,
    /// Commands refused for a version or state conflict, by type.
    pub conflicts: IntCounterVec,
    /// Time from handing events to the log to their durable acknowledgement.
    pub append_latency: Histogram,
    /// Events appended, by topic.
    pub events: IntCounterVec,
    /// Partitions marked again and folded after an append whose outcome was unknown.
    pub settled: IntCounter,
    /// Drones whose stream waits for a follow-up or a compensation to be written.
    pub unreconciled: IntGauge,
    /// 1 for each partition number this process decides on.
    pub owned: IntGaugeVec,
}

impl CommandMetrics {
    pub fn new(registry: &Registry) -> Result<CommandMetrics, prometheus::Error> {
        let commands = IntCounterVec::new(
            Opts::new("commands_total", "Commands handled, by type and outcome"),
            &["command", "outcome"],
        )?;
        let conflicts = IntCounterVec::new(
            Opts::new(
                "command_conflicts_total",
                "Commands refused with 409 (version or state conflict)",
            ),
            &["command"],
        )?;
        let append_latency = Histogram::with_opts(
            HistogramOpts::new(
                "event_append_latency_seconds",
                "Latency of durable appends to the event log",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 1.0,
            ]),
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "events_appended_total",
                "Events appended to the log, by topic",
            ),
            &["topic"],
        )?;
        let settled = IntCounter::new(
            "command_partitions_settled_total",
            "Command partitions marked again and folded after an append whose outcome was unknown",
        )?;
        let unreconciled = IntGauge::new(
            "command_drones_unreconciled",
            "Drones whose stream waits for a follow-up or compensation of their delivery's",
        )?;
        let owned = IntGaugeVec::new(
            Opts::new(
                "command_partition_owned",
                "1 for a partition number of the command topics this command-api decides on",
            ),
            &["partition"],
        )?;
        registry.register(Box::new(owned.clone()))?;
        registry.register(Box::new(settled.clone()))?;
        registry.register(Box::new(unreconciled.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(conflicts.clone()))?;
        registry.register(Box::new(append_latency.clone()))?;
        registry.register(Box::new(events.clone()))?;
        Ok(CommandMetrics {
            commands,
            conflicts,
            append_latency,
            events,
            settled,
            unreconciled,
            owned,
        })
    }
}
