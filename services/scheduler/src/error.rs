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
    /// The plan service cannot listen.
    #[error("cannot listen on {addr} for the plan service: {source} (pick another with --listen)")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
