//! Errors of connecting, and how etcd's errors become
//! [`moor_storage::Error`]s.

use moor_storage::Error as StorageError;
use tonic::Code;

/// Why the store could not connect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoints are not usable URLs, or do not fit the TLS settings.
    #[error("invalid etcd endpoints {endpoints:?}: {reason}")]
    Endpoints {
        /// The endpoints given.
        endpoints: Vec<String>,
        /// What is wrong with them.
        reason: String,
    },
    /// No endpoint answered a first request.
    #[error("etcd at {endpoints:?} is unreachable")]
    Unreachable {
        /// The endpoints given.
        endpoints: Vec<String>,
        /// How the first request failed.
        #[source]
        source: StorageError,
    },
}

impl From<Error> for StorageError {
    fn from(e: Error) -> Self {
        match e {
            e @ Error::Endpoints { .. } => StorageError::Internal(e.to_string()),
            Error::Unreachable { source, .. } => source,
        }
    }
}

/// The message etcd sends when history at a revision has been compacted.
const COMPACTED: &str = "required revision has been compacted";

/// Whether `e` is etcd's "required revision has been compacted".
pub(crate) fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.code() == Code::OutOfRange && status.message().contains(COMPACTED))
}

/// Whether `e` is etcd's "required revision is a future revision".
pub(crate) fn is_future_revision(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.code() == Code::OutOfRange && status.message().contains("future revision"))
}

/// Whether `e` is a member refusing a request because it knows no leader
/// (asked for with `require_leader`): refused before anything was applied,
/// so safe to send again, to another member.
pub(crate) fn is_no_leader(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.code() == Code::Unavailable && status.message().contains("no leader"))
}

/// Classifies an etcd-client failure: anything a reconnect or a retry may
/// cure is `Unavailable`; the rest is `Internal`.
pub(crate) fn storage_error(e: etcd_client::Error) -> StorageError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => status_error(&status),
        E::TransportError(e) => StorageError::Unavailable(format!("etcd transport: {e}")),
        E::IoError(e) => StorageError::Unavailable(format!("etcd i/o: {e}")),
        // The request channel of a watch closed: its connection went away.
        E::WatchError(e) => StorageError::Unavailable(format!("etcd watch: {e}")),
        E::InvalidArgs(_)
        | E::InvalidUri(_)
        | E::Utf8Error(_)
        | E::LeaseKeepAliveError(_)
        | E::ElectError(_)
        | E::InvalidMetadataValue(_)
        | E::EndpointError(_)
        | E::EndpointsNotManaged
        | E::Internal(_) => StorageError::Internal(format!("etcd: {e}")),
    }
}

/// Classifies a gRPC status from etcd.
fn status_error(status: &tonic::Status) -> StorageError {
    let message = format!("etcd: {}: {}", status.code(), status.message());
    match status.code() {
        // Connection trouble, leader elections, overload, timeouts; tonic
        // reports some broken connections as `Unknown`.
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Unknown => StorageError::Unavailable(message),
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated => StorageError::Internal(message),
    }
}
