//! `drone-delivery analytics`: the history read through the `EventLog` port (a stopped
//! data directory, or Kafka while everything runs) and reported as a table, JSON or CSV
//! (the fold and the report are the `analytics` crate's).

use crate::settings::{LogLocation, Settings};
use crate::startup;
use analytics::{Analytics, Report};
use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use storage_embedded::DataDirLock;

/// How often a long read says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

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
    let started = Instant::now();
    let mut said = Instant::now();
    // A bar with the rate, the position and the time left on a terminal; plain lines
    // each second otherwise (a log, a pipe).
    let bar = std::io::stderr().is_terminal().then(|| {
        let style = ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} records, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(0).with_style(style)
    });
    let analytics = Analytics::read(log.as_ref(), &codec, |read, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(read);
        } else if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            let rate = read as f64 / started.elapsed().as_secs_f64().max(1e-6);
            eprintln!("analytics: {read} of {total} records ({rate:.0}/s)");
        }
    })
    .await
    .context("cannot read the event log")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!(
        "analytics: {} events folded in {:.2} s",
        analytics.events,
        started.elapsed().as_secs_f64()
    );
    Ok(analytics.report(from, to))
}
