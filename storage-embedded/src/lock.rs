//! One process per data directory.

use crate::StorageError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An exclusive lock on a data directory (`dir/LOCK`), held until dropped.
///
/// It is an advisory `flock`-style lock (std's `File::try_lock`): the OS releases it when
/// the process dies, so a crash never leaves a stale lock behind. Two acquires conflict
/// even inside one process, because each opens its own file description.
#[derive(Debug)]
pub struct DataDirLock {
    dir: PathBuf,
    // Held only to keep the lock: closing the file releases it.
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it; `Locked(dir)` if another process (or another
    /// lock in this one) holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, StorageError> {
        std::fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => return Err(StorageError::Io(e)),
        }
        // The holder's pid, for whoever wonders which process has the directory.
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(DataDirLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
