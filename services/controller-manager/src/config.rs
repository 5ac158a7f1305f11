//! The controller-manager's settings.

use std::time::Duration;

/// Settings of [`crate::run`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Apiserver URL, `http://HOST:PORT`.
    pub server: String,
    /// Run only while holding the controller-manager lease.
    pub leader_elect: bool,
    /// Lease timing for leader election.
    pub lease: LeaseConfig,
    /// This instance's identity in the election; unique per instance.
    pub identity: String,
    /// How long an issued pod create or delete is waited for on the watch
    /// before a replica controller stops trusting its own bookkeeping.
    pub expectations_timeout: Duration,
    /// Most pod creates or deletes one replica reconcile issues at once.
    pub burst_replicas: usize,
    /// How often a terminating namespace is checked again while content remains.
    pub namespace_resync: Duration,
}

// === impl Config ===

impl Config {
    /// Defaults as Kubernetes' kube-controller-manager has them (5 min
    /// expectations, bursts of 500), against `server`.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            leader_elect: false,
            lease: LeaseConfig::default(),
            identity: format!("moor-controller-manager-{}", std::process::id()),
            expectations_timeout: Duration::from_secs(300),
            burst_replicas: 500,
            namespace_resync: Duration::from_secs(2),
        }
    }
}

/// Lease timing of leader election (Kubernetes' defaults: 15 s, 10 s, 2 s).
pub type LeaseConfig = moor_leader::Timing;
