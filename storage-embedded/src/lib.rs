//! The embedded adapters of the storage ports, on [fjall](https://docs.rs/fjall): the
//! default deployment keeps the event log and the read models in one data directory,
//! without servers.
//!
//! Layout the application is expected to use (each fjall database locks its own
//! directory, so the log and the read store need one each):
//!
//! ```text
//! <data-dir>/LOCK    DataDirLock: one process per data directory
//! <data-dir>/log     EmbeddedLog
//! <data-dir>/views   EmbeddedReadStore
//! ```
//!
//! Async methods call fjall directly when they touch a few keys (a point lookup is a
//! memtable or block-cache hit, at worst one small read) and go through
//! `spawn_blocking` when they scan or write more than `INLINE_ITEMS` keys.

mod disk;
mod group;
mod keys;
mod lock;
mod log;
mod read_store;

pub use disk::{DEFAULT_DISK_RESERVE_BYTES, FreeSpace};
pub use lock::DataDirLock;
pub use log::EmbeddedLog;
pub use read_store::EmbeddedReadStore;

// The port's types, under the names the adapter's modules use.
use std::path::Path;
pub(crate) use storage::{
    Appended, Checkpoint, Consumer, EventLog, GroupConsumer, NewRecord, Offset, Order, ReadStore,
    Record, Row, Scan, StartAt, StorageError, TopicSpec, Write, partition_for,
};

/// A fjall error as the port's: fjall refuses every write after a failed journal write
/// or fsync (the data on disk may be incomplete), so only a restart and its recovery help.
pub(crate) fn engine(error: fjall::Error) -> StorageError {
    match error {
        fjall::Error::Poisoned => StorageError::Unavailable(
            "the storage engine stopped after an I/O failure; restart the process".to_owned(),
        ),
        fjall::Error::Io(e) => StorageError::Io(e),
        other => StorageError::Engine(other.to_string()),
    }
}

/// Opens (creating if needed) the fjall database in `dir`.
fn open_database(dir: &Path) -> Result<fjall::Database, StorageError> {
    std::fs::create_dir_all(dir)?;
    fjall::Database::builder(dir).open().map_err(|e| match e {
        fjall::Error::Locked => StorageError::Locked(dir.to_path_buf()),
        other => engine(other),
    })
}

/// Work on at most this many keys runs on the caller's thread: it takes microseconds,
/// less than handing it to the blocking pool and back (two thread wake-ups).
const INLINE_ITEMS: u64 = 64;

/// Runs engine work of `items` keys: large work off the async worker threads.
async fn blocking<T, F>(items: u64, work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    if items <= INLINE_ITEMS {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Engine(format!("storage task failed: {e}")))?
}
