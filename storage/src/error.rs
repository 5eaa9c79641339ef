//! The one error type of the storage layer.

use std::path::PathBuf;

/// What can go wrong in a storage port. Callers map `Unavailable` to HTTP 503 and
/// `Invalid` to a 4xx; everything else is a server-side failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),

    #[error("topic {topic:?} has no partition {partition}")]
    InvalidPartition { topic: String, partition: u32 },

    /// The caller passed something the store cannot hold (a bad topic name, a key too
    /// long for the engine, zero partitions).
    #[error("invalid storage request: {0}")]
    Invalid(String),

    #[error(
        "data directory {} is in use by another process (is another drone-delivery \
         running on it?)",
        .0.display()
    )]
    Locked(PathBuf),

    /// The store cannot take the write now (its writer failed or stopped).
    #[error("storage unavailable: {0}")]
    Unavailable(String),

    #[error("storage engine error: {0}")]
    Engine(String),

    #[error("corrupt data in the store: {0}")]
    Corrupt(String),

    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}
