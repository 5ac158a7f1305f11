//! moorctl's errors: each prints as the one line a user sees on stderr.

use std::path::PathBuf;

use tonic::Code;

/// What a moorctl command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached.
    #[error("cannot reach the server at {server} (chosen by {source_of}): {reason}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// How it was chosen: the --server flag, $MOOR_SERVER or a context.
        source_of: String,
        /// Why, e.g. "connection refused".
        reason: String,
    },
    /// The server answered with an error status.
    #[error("Error from server ({}): {message}", reason(*.code))]
    Server {
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// A manifest (or its file) is wrong.
    #[error("{file}: {source}")]
    Manifest {
        /// The file, or "-" for stdin.
        file: String,
        /// What is wrong, with document and field path.
        #[source]
        source: Box<moor_codec::Error>,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file could not be read or written.
    #[error("config {}: {reason}", .path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An unknown kind, a missing object and other codec failures.
    #[error("{0}")]
    Codec(#[source] Box<moor_codec::Error>),
    /// A bad server URL.
    #[error("{0}")]
    Rpc(#[from] moor_rpc::Error),
    /// Wrong use of a verb's arguments.
    #[error("{0}")]
    Usage(String),
    /// A wait that did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A command run by `exec` ended with a non-zero code; moorctl exits with it.
    #[error("command terminated with exit code {0}")]
    Exited(i32),
    /// An `exec` stream that ended without the command's exit code.
    #[error("the exec stream ended without the command's exit code (connection to the node lost?)")]
    NoExitCode,
    /// Writing output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// moorctl's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kubernetes' name for a status code, as kubectl prints it in
/// `Error from server (NotFound): ...`.
fn reason(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "Invalid",
        Code::DeadlineExceeded => "Timeout",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "Forbidden",
        Code::ResourceExhausted => "TooManyRequests",
        Code::FailedPrecondition => "BadRequest",
        Code::Aborted => "Conflict",
        Code::OutOfRange => "Expired",
        Code::Unimplemented => "MethodNotAllowed",
        Code::Internal => "InternalError",
        Code::Unavailable => "ServiceUnavailable",
        Code::DataLoss => "InternalError",
        Code::Unauthenticated => "Unauthorized",
    }
}

// === impl Error ===

impl From<moor_codec::Error> for Error {
    fn from(err: moor_codec::Error) -> Self {
        Self::Codec(Box::new(err))
    }
}

impl Error {
    /// The gRPC code of a server error.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The process exit status this error ends moorctl with: the remote
    /// command's own code for `exec` (as kubectl does), else 1.
    pub fn exit_status(&self) -> u8 {
        match self {
            // A code outside 1..=255 cannot be passed on as it is; 1 still
            // says "failed" where truncating to a byte could say "ok".
            Self::Exited(code) => u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_like_kubectl() {
        let err = Error::Server {
            code: Code::NotFound,
            message: r#"pods "x" not found"#.into(),
        };
        assert_eq!(
            err.to_string(),
            r#"Error from server (NotFound): pods "x" not found"#
        );
    }

    #[test]
    fn exec_exit_codes_pass_through() {
        assert_eq!(Error::Exited(3).exit_status(), 3);
        assert_eq!(Error::Exited(255).exit_status(), 255);
        assert_eq!(Error::Exited(256).exit_status(), 1);
        assert_eq!(Error::Exited(-1).exit_status(), 1);
        assert_eq!(Error::Exited(0).exit_status(), 1);
        assert_eq!(Error::NoExitCode.exit_status(), 1);
        assert_eq!(Error::Usage("x".into()).exit_status(), 1);
        assert_eq!(
            Error::Exited(3).to_string(),
            "command terminated with exit code 3"
        );
    }
}
