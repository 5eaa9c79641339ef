use api::Problem;
use storage::StorageError;
use warp::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {id} does not exist")]
    NotFound { kind: &'static str, id: String },
    /// Reads for operators and analysts only.
    #[error("{0}")]
    Forbidden(String),
    #[error("the read store is unavailable: {0}")]
    Unavailable(String),
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        QueryError::Unavailable(e.to_string())
    }
}

impl QueryError {
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
            QueryError::NotFound { .. } => StatusCode::NOT_FOUND,
            QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
            QueryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn problem(&self) -> Problem {
        Problem::new(self.status(), self.to_string())
    }
}
