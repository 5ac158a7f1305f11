//! The runtime's errors.

/// What can go wrong talking to a container engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine did not answer (down, socket missing, timeout).
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// A pull failed; the message is the engine's.
    #[error("{0}")]
    Pull(String),
    /// The engine refused or failed a request.
    #[error("container runtime: {0}")]
    Engine(String),
}
