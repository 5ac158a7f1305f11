//! What a call to the apiserver can fail with, classified by gRPC code.

/// A failed call, sorted into the cases callers act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL is not usable.
    #[error("cannot build a channel: {0}")]
    Channel(#[source] moor_rpc::Error),
    /// The object does not exist (NOT_FOUND).
    #[error("not found: {}", .0.message())]
    NotFound(#[source] tonic::Status),
    /// An object of that name exists already (ALREADY_EXISTS).
    #[error("already exists: {}", .0.message())]
    AlreadyExists(#[source] tonic::Status),
    /// The resourceVersion or uid precondition did not hold (ABORTED): read
    /// the object again and retry.
    #[error("conflict: {}", .0.message())]
    Conflict(#[source] tonic::Status),
    /// The request or object is invalid (INVALID_ARGUMENT).
    #[error("invalid: {}", .0.message())]
    Invalid(#[source] tonic::Status),
    /// The requested resourceVersion is older than the kept history
    /// (OUT_OF_RANGE): list again.
    #[error("resource version gone: {}", .0.message())]
    Gone(#[source] tonic::Status),
    /// The apiserver could not be reached (UNAVAILABLE or a transport
    /// error, a refused TLS handshake among them).
    #[error("apiserver unavailable: {}", unavailable(.0))]
    Unavailable(#[source] tonic::Status),
    /// Any other status.
    #[error("{}: {}", .0.code(), .0.message())]
    Other(#[source] tonic::Status),
}

// === impl Error ===

impl Error {
    /// The gRPC status behind the error, if it came from a call.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Channel(_) => None,
            Self::NotFound(s)
            | Self::AlreadyExists(s)
            | Self::Conflict(s)
            | Self::Invalid(s)
            | Self::Gone(s)
            | Self::Unavailable(s)
            | Self::Other(s) => Some(s),
        }
    }

    /// Whether the status code is `code`.
    pub fn is_code(&self, code: tonic::Code) -> bool {
        self.status().is_some_and(|s| s.code() == code)
    }
}

/// The message of an UNAVAILABLE status, with the transport's cause.
fn unavailable(status: &tonic::Status) -> String {
    match moor_rpc::transport_failure(status) {
        Some(cause) => format!("{}: {cause}", status.message()),
        None => status.message().to_string(),
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        // A TLS handshake refused by either side comes as UNKNOWN with the
        // transport's error as its source, and a call whose connection
        // closed before it went out (the server died) as CANCELLED with
        // hyper's: the server is not usable. Statuses the server sends
        // carry no source.
        if matches!(status.code(), Code::Unknown | Code::Cancelled)
            && std::error::Error::source(&status).is_some()
        {
            return Self::Unavailable(status);
        }
        // Exhaustive on purpose: a new code must be placed here.
        match status.code() {
            Code::NotFound => Self::NotFound(status),
            Code::AlreadyExists => Self::AlreadyExists(status),
            Code::Aborted => Self::Conflict(status),
            Code::InvalidArgument => Self::Invalid(status),
            Code::OutOfRange => Self::Gone(status),
            Code::Unavailable => Self::Unavailable(status),
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss
            | Code::Unauthenticated => Self::Other(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert!(matches!(
            Error::from(tonic::Status::aborted("x")),
            Error::Conflict(_)
        ));
        assert!(matches!(
            Error::from(tonic::Status::out_of_range("x")),
            Error::Gone(_)
        ));
        assert!(matches!(
            Error::from(tonic::Status::not_found("x")),
            Error::NotFound(_)
        ));
        let e = Error::from(tonic::Status::resource_exhausted("x"));
        assert!(matches!(e, Error::Other(_)));
        assert!(e.is_code(tonic::Code::ResourceExhausted));
        // CANCELLED from the server is the server's; from the transport
        // (with its error as the source), the server is gone.
        assert!(matches!(
            Error::from(tonic::Status::cancelled("x")),
            Error::Other(_)
        ));
        let closed: Box<dyn std::error::Error + Send + Sync> = "connection closed".into();
        let mut transport = tonic::Status::cancelled("operation was canceled");
        transport.set_source(closed.into());
        assert!(
            matches!(Error::from(transport), Error::Unavailable(_)),
            "a cancelled call with a transport error is the server's absence"
        );
    }
}
