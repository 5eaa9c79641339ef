use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The projectors' metrics, registered on the process's registry.
#[derive(Clone)]
pub struct ProjectorMetrics {
    /// Records in the log not yet applied, by projection.
    pub lag: IntGaugeVec,
    /// Events applied, by projection.
    pub events: IntCounterVec,
    /// Failed batches (retried), by projection.
    pub errors: IntCounterVec,
    /// Telemetry reports older than the drone's last one (accepted, shown nowhere).
    pub telemetry_out_of_order: IntCounter,
}

impl ProjectorMetrics {
    pub fn new(registry: &Registry) -> Result<ProjectorMetrics, prometheus::Error> {
        let lag = IntGaugeVec::new(
            Opts::new(
                "projector_lag_events",
                "Log records not yet applied, by projection",
            ),
            &["projection"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("projector_events_total", "Events applied, by projection"),
            &["projection"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "projector_errors_total",
                "Failed projector batches, by projection",
            ),
            &["projection"],
        )?;
        let telemetry_out_of_order = IntCounter::new(
            "telemetry_out_of_order_total",
            "Telemetry reports older than the drone's last one: accepted, not shown",
        )?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(telemetry_out_of_order.clone()))?;
        Ok(ProjectorMetrics {
            lag,
            events,
            errors,
            telemetry_out_of_order,
        })
    }
}
