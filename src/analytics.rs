//! `drone-delivery analytics`: the history read through the `EventLog` port (a stopped
//! data directory, or Kafka while everything runs) and reported as a table, JSON or CSV
//! (the fold and the report are the `analytics` crate's).

use crate::progress::Progress;
use crate::settings::{LogLocation, Settings};
use crate::startup;
use analytics::{Analytics, Changes, Fold, Recording, Report, WhatIfReport};
use anyhow::Context;
use chrono::{DateTime, Utc};
use storage_embedded::DataDirLock;

/// Reads the whole history of the log `settings` name and reports the deliveries
/// scheduled in [`from`, `to`).
pub async fn report(
    settings: &Settings,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<Report> {
    let analytics: Analytics = read(settings).await?;
    Ok(analytics.report(from, to))
}

/// Reads the whole history and re-runs its demand with `changes` (see
/// [`analytics::Recording::what_if`]); the recorded settings are `settings`' own.
pub async fn what_if(
    settings: &Settings,
    changes: &Changes,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<WhatIfReport> {
    let recording: Recording = read(settings).await?;
    let started = std::time::Instant::now();
    let report = recording.what_if(
        &settings.flight,
        &settings.dispatch_policy(),
        changes,
        from,
        to,
    );
    eprintln!(
        "analytics: the demand re-dispatched twice in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

/// Folds the whole history of the log `settings` name; progress lines go to stderr.
async fn read<F: Fold>(settings: &Settings) -> anyhow::Result<F> {
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
    let mut events = 0;
    let fold = analytics::read::<F>(log, &codec, readers, |read, total| {
        events = read;
        progress.at(read, total)
    })
    .await
    .context("cannot read the event log")?;
    let took = progress.finish();
    eprintln!(
        "analytics: {events} records folded in {:.2} s",
        took.as_secs_f64()
    );
    Ok(fold)
}
