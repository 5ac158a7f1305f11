//! What stops the scheduler.

/// A fatal scheduler error; per-pod failures are retried, not returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built (a bad server URL).
    #[error("cannot reach the apiserver")]
    Client(#[source] moor_client::Error),
    /// A call to the apiserver failed.
    #[error("apiserver call failed")]
    Api(#[source] moor_client::Error),
}
