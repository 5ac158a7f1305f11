//! How to run the scheduler.

/// The scheduler's configuration; `moor scheduler` fills it from flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// Apiserver URL, `https://HOST:PORT` (`http://` for an `--insecure` one).
    pub server: String,
    /// How to prove who this component is to the apiserver (and which CA
    /// to trust): a client certificate, or none for an `--insecure` server.
    pub credentials: moor_rpc::Credentials,
    /// Run only while holding the `moor-scheduler` Lease in `moor-system`.
    pub leader_elect: bool,
    /// Lease timings for leader election.
    pub lease: LeaseConfig,
    /// This instance's identity in the election and on Events; unique per
    /// instance (e.g. hostname plus a random suffix).
    pub identity: String,
    /// Where the plan service (dry runs) listens; port 0 picks a free one.
    /// The active scheduler publishes it as `moor-system/moor-scheduler`.
    pub listen: Option<std::net::SocketAddr>,
}

/// Leader election timings (Kubernetes' defaults).
pub type LeaseConfig = moor_leader::Timing;

// === impl Config ===

impl Config {
    /// Defaults for `server`: no leader election, default lease timings, and
    /// an identity from the process id.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            credentials: moor_rpc::Credentials::default(),
            leader_elect: false,
            lease: LeaseConfig::default(),
            identity: format!("moor-scheduler-{}", std::process::id()),
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }
}
