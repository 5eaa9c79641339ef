use api::Problem;
use domain::{DomainError, ErrorKind};
use storage::StorageError;
use warp::http::StatusCode;

/// Why a command was not carried out. `problem` is the one place these become HTTP.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {id} does not exist")]
    NotFound { kind: &'static str, id: String },
    #[error("expected version {expected} but {kind} {id} is at version {actual}")]
    VersionConflict {
        kind: &'static str,
        id: String,
        expected: u64,
        actual: u64,
    },
    /// The caller may not do this (an analyst changing anything, an account acting for
    /// another or on the fleet).
    #[error("{0}")]
    Forbidden(String),
    /// A retry of an idempotency key with another request than the first.
    #[error(
        "this Idempotency-Key was first used with a different request (another body or path); use a new key for a new request"
    )]
    KeyReused,
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the event log cannot take the write: {0}")]
    Unavailable(String),
    /// An append to this partition had an unknown outcome; it is settled before the
    /// next decision (the command side retries the step itself).
    #[error("{}/{partition} is being settled after an append whose outcome is unknown; retry", topic.name())]
    InDoubt {
        topic: schemas::events::Topic,
        partition: u32,
    },
    /// Another process owns the partition number: the request goes to it (or, when it
    /// cannot, 503 with `Retry-After`).
    #[error("partition {partition} of the command topics is owned by another command-api; retry")]
    Elsewhere { partition: u32 },
    /// The partition number is being taken over (marked and folded) here.
    #[error("partition {partition} of the command topics is changing hands; retry")]
    Moving { partition: u32 },
    /// A peer `command-api` refused a step on an aggregate it owns.
    #[error("{detail}")]
    Peer { status: StatusCode, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<domain::ValueError> for CommandError {
    fn from(e: domain::ValueError) -> Self {
        CommandError::Invalid(e.to_string())
    }
}

impl From<StorageError> for CommandError {
    fn from(e: StorageError) -> Self {
        // Whatever the cause, the events were not (known to be) durably appended.
        CommandError::Unavailable(e.to_string())
    }
}

impl CommandError {
    pub fn status(&self) -> StatusCode {
        match self {
            CommandError::Invalid(_) => StatusCode::BAD_REQUEST,
            CommandError::NotFound { .. } => StatusCode::NOT_FOUND,
            CommandError::Forbidden(_) => StatusCode::FORBIDDEN,
            CommandError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            CommandError::VersionConflict { .. } => StatusCode::CONFLICT,
            CommandError::Domain(e) => match e.kind() {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Rule => StatusCode::UNPROCESSABLE_ENTITY,
            },
            CommandError::Unavailable(_)
            | CommandError::InDoubt { .. }
            | CommandError::Elsewhere { .. }
            | CommandError::Moving { .. } => StatusCode::SERVICE_UNAVAILABLE,
            CommandError::Peer { status, .. } => *status,
            CommandError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Label for the `outcome` of the commands metric.
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "invalid",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNPROCESSABLE_ENTITY => "rule_violated",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "error",
        }
    }

    /// The command was refused on its merits (4xx): nothing about it is in doubt.
    pub fn is_refusal(&self) -> bool {
        self.status().is_client_error()
    }

    pub fn problem(&self) -> Problem {
        Problem::new(self.status(), self.to_string())
    }

    /// A mid-command step on a partition that changed hands: the command is not
    /// forwarded as a whole (part of it is written), the client retries.
    pub fn after_first_step(self) -> CommandError {
        match self {
            CommandError::Elsewhere { partition } => CommandError::Moving { partition },
            other => other,
        }
    }

    /// Seconds a client should wait before retrying, for an answer that asks it to.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(
            self,
            CommandError::Elsewhere { .. }
                | CommandError::Moving { .. }
                | CommandError::InDoubt { .. }
        )
        .then_some(1)
    }
}
