use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct QueryMetrics {
    /// Queries by route and HTTP status.
    pub queries: IntCounterVec,
    /// Time spent waiting for projections to reach a consistency token or version.
    pub consistency_wait: Histogram,
    /// Live streams open, by kind (`delivery`, `fleet`).
    pub streams_open: IntGaugeVec,
}

impl QueryMetrics {
    pub fn new(registry: &Registry) -> Result<QueryMetrics, prometheus::Error> {
        let queries = IntCounterVec::new(
            Opts::new("queries_total", "Queries served, by route and status"),
            &["query", "status"],
        )?;
        let consistency_wait = Histogram::with_opts(
            HistogramOpts::new(
                "query_consistency_wait_seconds",
                "Time queries waited for read-your-writes",
            )
            .buckets(vec![
                0.0, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0,
            ]),
        )?;
        let streams_open = IntGaugeVec::new(
            Opts::new("query_streams_open", "Live streams open, by kind"),
            &["kind"],
        )?;
        registry.register(Box::new(queries.clone()))?;
        registry.register(Box::new(streams_open.clone()))?;
        registry.register(Box::new(consistency_wait.clone()))?;
        Ok(QueryMetrics {
            queries,
            consistency_wait,
            streams_open,
        })
    }
}
