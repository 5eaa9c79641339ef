use storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read store: {0}")]
    Store(#[from] StorageError),
    #[error("cannot decode {topic}/{partition}@{offset}: {reason}")]
    Decode {
        topic: String,
        partition: u32,
        offset: u64,
        reason: String,
    },
    #[error("row {table}/{key} does not hold a valid view: {reason}")]
    BadRow {
        table: &'static str,
        key: String,
        reason: String,
    },
}
