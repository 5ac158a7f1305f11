//! How to run the scheduler.

use std::time::Duration;

/// The scheduler's configuration; `moor scheduler` fills it from flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The apiserver URL, `http://HOST:PORT`.
    pub server: String,
    /// Run only while holding the `moor-scheduler` Lease in `moor-system`.
    pub leader_elect: bool,
    /// Lease timings for leader election.
    pub lease: LeaseConfig,
    /// This instance's identity in the election and on Events; unique per
    /// instance (e.g. hostname plus a random suffix).
    pub identity: String,
}

/// Leader election timings (Kubernetes' defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
    /// How long the leader tries to renew before stepping down.
    pub renew_deadline: Duration,
    /// Pause between acquire or renew attempts.
    pub retry: Duration,
}

// === impl Config ===

impl Config {
    /// Defaults for `server`: no leader election, default lease timings, and
    /// an identity from the process id.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            leader_elect: false,
            lease: LeaseConfig::default(),
            identity: format!("moor-scheduler-{}", std::process::id()),
        }
    }
}

// === impl LeaseConfig ===

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}
