//! The free space an embedded store keeps on its disk: a full disk would fail a journal
//! write, and fjall then refuses every write until the database is reopened. A write
//! refused here wrote nothing, so writes go on as soon as space returns.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a store learns the free space below it: `statvfs` of its directory, or a test's
/// own figure (a disk filling up and emptying without one).
pub type FreeSpace = Box<dyn Fn() -> std::io::Result<u64> + Send + Sync>;

/// The default free space the embedded stores keep on their disk.
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// Writes are refused while the disk below the store has less than `reserve` bytes free.
pub(crate) struct DiskGuard {
    free: FreeSpace,
    reserve: u64,
    /// What the messages call the store ("the event log").
    what: &'static str,
    /// Set while the last look found too little space.
    pub(crate) low: AtomicBool,
}

impl DiskGuard {
    /// Guards the disk of `dir`, as `free` reports it (`None`: `statvfs` of `dir`).
    pub(crate) fn new(
        dir: &Path,
        reserve: u64,
        free: Option<FreeSpace>,
        what: &'static str,
    ) -> DiskGuard {
        let free = free.unwrap_or_else(|| {
            let dir = dir.to_path_buf();
            Box::new(move || {
                let stat = rustix::fs::statvfs(&dir)?;
                Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
            })
        });
        DiskGuard {
            free,
            reserve,
            what,
            low: AtomicBool::new(false),
        }
    }

    /// `Err` (and low) when the disk has less than the reserve free; looks again every time.
    pub(crate) fn check(&self) -> Result<(), String> {
        let free = (self.free)().unwrap_or(u64::MAX);
        let what = self.what;
        if free < self.reserve {
            if !self.low.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    free,
                    reserve = self.reserve,
                    "the disk below {what} is nearly full; its writes wait for space"
                );
            }
            Err(format!(
                "the disk below {what} has {free} bytes free, less than the {} it keeps in reserve; writes resume when space returns",
                self.reserve
            ))
        } else {
            if self.low.swap(false, Ordering::AcqRel) {
                tracing::info!(free, "space returned below {what}; its writes resume");
            }
            Ok(())
        }
    }
}
