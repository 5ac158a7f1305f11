//! The apiserver's errors and their one conversion to a gRPC status.

use tonic::{Code, Status};

/// A field that failed validation, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.containers[0].name`.
    pub path: String,
    /// What is wrong, e.g. `Required value`.
    pub message: String,
}

/// What an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object is invalid; each field error names its path.
    #[error("{kind} {name:?} is invalid: {}", join(.errors))]
    Invalid {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// A malformed request (bad selector, bad resourceVersion, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The object (or its namespace) does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind of the missing object.
        kind: &'static str,
        /// Name of the missing object.
        name: String,
    },
    /// An object of that name exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
    },
    /// A precondition on the object's version or state failed.
    #[error("{0}")]
    Conflict(String),
    /// The operation is not allowed in the object's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A watch asked for history that is gone; re-list and watch again.
    #[error(
        "too old resource version: {requested} (oldest kept: {oldest}); list again and watch from the list's resourceVersion"
    )]
    Gone {
        /// The version asked for.
        requested: i64,
        /// The oldest version from which a watch can resume.
        oldest: i64,
    },
    /// Too large, or a client too slow to keep up.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store is unreachable; retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A defect or a store failure that a retry will not fix.
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    parts.join("; ")
}

// === impl Error ===

impl Error {
    /// An invalid-object error with a single field.
    pub fn invalid(
        kind: &'static str,
        name: &str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            kind,
            name: name.to_string(),
            errors: vec![FieldError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

impl From<moor_storage::Error> for Error {
    fn from(err: moor_storage::Error) -> Self {
        // Exhaustive on purpose: a new storage error must be placed here.
        match err {
            moor_storage::Error::AlreadyExists(key) => {
                Error::Conflict(format!("{key} already exists"))
            }
            moor_storage::Error::NotFound(key) => {
                Error::Conflict(format!("{key} was deleted meanwhile"))
            }
            moor_storage::Error::Conflict { key, .. } => Error::Conflict(format!(
                "{key} was modified meanwhile; read it again and retry"
            )),
            moor_storage::Error::Compacted {
                requested,
                compacted,
            } => Error::Gone {
                requested,
                oldest: compacted,
            },
            // Only a continue token names a revision to read at.
            moor_storage::Error::FutureRevision(revision) => Error::BadRequest(format!(
                "continue token at revision {revision}, which the store has not reached: \
                 not a token this cluster gave out"
            )),
            moor_storage::Error::Unavailable(msg) => Error::Unavailable(msg),
            moor_storage::Error::Internal(msg) => Error::Internal(msg),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::Invalid { .. } | Error::BadRequest(_) => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Conflict(_) => Code::Aborted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Gone { .. } => Code::OutOfRange,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
