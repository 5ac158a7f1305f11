//! Why one attempt to acquire or renew did not succeed.

/// A failed attempt; the elector retries after `retry_period`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another candidate holds a lease that has not expired.
    #[error("lease is held by {holder:?}")]
    HeldByOther {
        /// The current holder.
        holder: String,
    },
    /// The call to the apiserver failed (a conflict means another candidate
    /// wrote first).
    #[error("lease call failed")]
    Api(
        #[from]
        #[source]
        moor_client::Error,
    ),
    /// The attempt took longer than the renew deadline allowed.
    #[error("lease call timed out")]
    Timeout,
}
