//! How a long command-line job (`analytics`, `replay`) says how far it got: a bar with
//! the rate, the position and the time left on a terminal (indicatif), plain lines each
//! second otherwise (a log, a pipe).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain line is printed.
const LINE_EVERY: Duration = Duration::from_secs(1);

pub struct Progress {
    job: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    said: Instant,
}

impl Progress {
    /// `job` names the lines (`analytics: 1200 of 5000 records (…/s)`).
    pub fn new(job: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} records, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(0).with_style(style)
        });
        Progress {
            job,
            bar,
            started: Instant::now(),
            said: Instant::now(),
        }
    }

    pub fn at(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        } else if self.said.elapsed() >= LINE_EVERY {
            self.said = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-6);
            eprintln!("{}: {done} of {total} records ({rate:.0}/s)", self.job);
        }
    }

    /// Clears the bar; the time since the start.
    pub fn finish(self) -> Duration {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed()
    }
}
