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
    /// Records set aside as dead letters (undecodable), by projection.
    pub dead_letters: IntCounterVec,
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
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "projector_dead_letters_total",
                "Records a projection could not decode, set aside in dead_letters",
            ),
            &["projection"],
        )?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(ProjectorMetrics {
            lag,
            events,
            errors,
            dead_letters,
        })
    }
}
