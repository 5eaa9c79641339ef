use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The workflow's metrics, registered on the process's registry.
#[derive(Clone)]
pub struct WorkflowMetrics {
    /// Commands sent, by action and outcome (accepted, refused, failed).
    pub commands: IntCounterVec,
    /// Compensations carried out (unassign, fail, ground).
    pub compensations: IntCounterVec,
    /// Deliveries waiting for a drone.
    pub queued: IntGauge,
    /// Time to take one round of decisions.
    pub decide_seconds: Histogram,
    /// Telemetry reports older than their drone's last one: accepted, moving nothing.
    /// Counted as the workflow reads them (from the start of the log after a restart).
    pub telemetry_out_of_order: IntCounter,
    /// 1 while this instance is the active workflow (0: standing by).
    pub active: IntGauge,
}

impl WorkflowMetrics {
    pub fn new(registry: &Registry) -> Result<WorkflowMetrics, prometheus::Error> {
        let commands = IntCounterVec::new(
            Opts::new(
                "workflow_commands_total",
                "Commands the workflow sent, by action and outcome",
            ),
            &["action", "outcome"],
        )?;
        let compensations = IntCounterVec::new(
            Opts::new(
                "workflow_compensations_total",
                "Compensations carried out by the workflow, by kind",
            ),
            &["kind"],
        )?;
        let queued = IntGauge::new(
            "workflow_queued_deliveries",
            "Deliveries waiting for a drone",
        )?;
        let decide_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "workflow_decide_seconds",
                "Time to take one round of workflow decisions",
            )
            .buckets(vec![1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1]),
        )?;
        let telemetry_out_of_order = IntCounter::new(
            "telemetry_out_of_order_total",
            "Telemetry reports older than their drone's last one: accepted, moving nothing",
        )?;
        let active = IntGauge::new(
            "workflow_active",
            "1 while this instance is the active workflow (0: standing by)",
        )?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(telemetry_out_of_order.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(compensations.clone()))?;
        registry.register(Box::new(queued.clone()))?;
        registry.register(Box::new(decide_seconds.clone()))?;
        Ok(WorkflowMetrics {
            commands,
            compensations,
            queued,
            decide_seconds,
            telemetry_out_of_order,
            active,
        })
    }
}
