use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// The notifier's metrics, registered on the process's registry.
#[derive(Clone)]
pub struct NotifierMetrics {
    /// Messages delivered, by channel.
    pub sent: IntCounterVec,
    /// Messages given up on (after the last attempt, or refused), by channel.
    pub failed: IntCounterVec,
    /// Attempts that failed and were tried again, by channel.
    pub retries: IntCounterVec,
    /// Deliveries followed (not finished).
    pub watched: IntGauge,
}

impl NotifierMetrics {
    pub fn new(registry: &Registry) -> Result<NotifierMetrics, prometheus::Error> {
        let by_channel =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["channel"]);
        let sent = by_channel(
            "notifications_sent_total",
            "Notifications delivered, by channel",
        )?;
        let failed = by_channel(
            "notifications_failed_total",
            "Notifications given up on (after the last attempt, or refused), by channel",
        )?;
        let retries = by_channel(
            "notification_retries_total",
            "Notification attempts that failed and were tried again, by channel",
        )?;
        let watched = IntGauge::new(
            "notifier_watched_deliveries",
            "Deliveries the notifier follows (not finished)",
        )?;
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(watched.clone()))?;
        Ok(NotifierMetrics {
            sent,
            failed,
            retries,
            watched,
        })
    }
}
