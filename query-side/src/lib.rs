//! The query side: every read endpoint of SPEC §5, served from the read models the
//! projections keep, and the live streams, fed from the log ([`Live`]). Queries that
//! carry a consistency token or a `minVersion` wait briefly for the projections to reach
//! it (read-your-writes).

mod error;
pub mod http;
mod live;
mod metrics;
mod service;
mod streams;

pub use error::QueryError;
pub use live::Live;
pub use metrics::QueryMetrics;
pub use service::{
    DeliveryStatus, Freshness, HistoryFilter, Invoice, Page, QueryService, StreamToken,
};
pub use streams::Streams;
