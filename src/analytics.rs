//! `drone-delivery analytics`: the history read through the `EventLog` port (a stopped
//! data directory, or Kafka while everything runs) and reported as a table, JSON or CSV
//! (the fold and the report are the `analytics` crate's).

use crate::progress::Progress;
use crate::settings::{LogLocation, Settings};
use crate::startup;
use analytics::{Analytics, Report};
use anyhow::Context;
use chrono::{DateTime, Utc};
use storage_embedded::DataDirLock;

/// Reads the whole history of the log `settings` name and reports the deliveries
/// scheduled in [`from`, `to`); progress lines go to stderr.
pub async fn report(
    settings: &Settings,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<Report> {
    // The embedded log is one process's: a running server holds it.
    let _lock = match settings.log_location() {
        LogLocation::Embedded(_) => {
            Some(DataDirLock::acquire(&settings.data_dir).with_context(|| {
                format!(
                    "cannot read {}: stop the server that uses it first",
                    settings.data_dir.display()
                )
            })?)
        }
        LogLocation::Kafka { .. } => None,
    };
    let log = startup::open_log(settings)?;
    let codec = startup::codec(settings).await?;
    let mut progress = Progress::new("analytics");
    // One reader per core: partitions are decoded and folded in parallel.
    let readers = std::thread::available_parallelism().map_or(1, usize::from);
    let analytics = Analytics::read(log, &codec, readers, |read, total| progress.at(read, total))
        .await
        .context("cannot read the event log")?;
    let took = progress.finish();
    eprintln!(
        "analytics: {} events folded in {:.2} s",
        analytics.events,
        took.as_secs_f64()
    );
    Ok(analytics.report(from, to))
}
