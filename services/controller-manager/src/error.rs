//! The controller-manager's errors.

/// What stops the controller-manager, or one reconcile (which is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or did not answer.
    #[error("apiserver: {0}")]
    Api(#[from] moor_client::Error),
    /// An object changed between the read a decision came from and the
    /// write that carries it out; the reconcile decides again.
    #[error("{0}")]
    Changed(String),
    /// Several reconcile steps failed; the first is kept.
    #[error("{count} operations failed, first: {first}")]
    Several {
        /// How many failed.
        count: usize,
        /// The first failure.
        #[source]
        first: Box<Error>,
    },
}

// === impl Error ===

impl Error {
    /// Whether this is optimistic concurrency at work (the object changed
    /// since it was read), which a retry resolves: not worth a warning.
    pub(crate) fn is_conflict(&self) -> bool {
        match self {
            Error::Api(moor_client::Error::Conflict(_)) | Error::Changed(_) => true,
            Error::Api(_) => false,
            Error::Several { count: _, first } => first.is_conflict(),
        }
    }

    /// Folds many results into one error naming the first failure.
    pub(crate) fn collect(errors: Vec<Error>) -> Result<(), Error> {
        let count = errors.len();
        match errors.into_iter().next() {
            None => Ok(()),
            Some(first) if count == 1 => Err(first),
            Some(first) => Err(Error::Several {
                count,
                first: Box::new(first),
            }),
        }
    }
}
