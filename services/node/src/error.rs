//! The agent's errors.

/// What can stop a sync or a heartbeat (both are retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] moor_runtime::Error),
    /// The apiserver refused or did not answer.
    #[error("apiserver: {0}")]
    Api(#[from] moor_client::Error),
    /// The services of a pod's namespace could not be listed, so its
    /// containers cannot get their service variables yet.
    #[error(
        "cannot list the services of namespace {namespace:?} for the containers' service variables: {source}"
    )]
    Services {
        /// The pod's namespace.
        namespace: String,
        /// Why the list failed.
        #[source]
        source: moor_client::Error,
    },
    /// The NodeAgent service (logs, exec) cannot listen.
    #[error(
        "cannot listen on {addr} for logs and exec: {source} (pick another with --agent-listen)"
    )]
    AgentListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pod network between hosts could not be set up or kept.
    #[error("pod network: {0}")]
    Network(String),
    /// The data directory.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

// === impl Error ===

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
