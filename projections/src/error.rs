use storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read store: {0}")]
    Store(#[from] StorageError),
    #[error("row {table}/{key} does not hold a valid view: {reason}")]
    BadRow {
        table: &'static str,
        key: String,
        reason: String,
    },
}
