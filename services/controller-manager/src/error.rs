//! The controller-manager's errors.

/// What stops the controller-manager, or one reconcile (which is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or did not answer.
    #[error("apiserver: {0}")]
    Api(#[from] moor_client::Error),
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
