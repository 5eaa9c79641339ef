use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The projectors' metrics, registered on the process's registry.
#[derive(Clone)]
pub struct ProjectorMetrics {
    /// Records in the log not yet applied, by projection.
    pub lag: IntGaugeVec,
    /// Events applied, by projection.
    pub events: IntCounterVec,
    /// Failed batches (retried), by projection.
    pub errors: IntCounterVec,
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
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(ProjectorMetrics {
            lag,
            events,
            errors,
        })
    }
}
