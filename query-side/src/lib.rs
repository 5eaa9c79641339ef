//! The query side: every read endpoint of SPEC §5 (but the live stream), served from the
//! read models the projections keep. Queries that carry a consistency token or a
//! `minVersion` wait briefly for the projections to reach it (read-your-writes).

mod error;
pub mod http;
mod metrics;
mod service;

pub use error::QueryError;
pub use metrics::QueryMetrics;
pub use service::{DeliveryStatus, Freshness, HistoryFilter, Invoice, Page, QueryService};
