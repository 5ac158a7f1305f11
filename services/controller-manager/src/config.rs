//! The controller-manager's settings.

use std::time::Duration;

/// Settings of [`crate::run`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Apiserver URL, `https://HOST:PORT` (`http://` for an `--insecure` one).
    pub server: String,
    /// How to prove who this component is to the apiserver (and which CA
    /// to trust): a client certificate, or none for an `--insecure` server.
    pub credentials: moor_rpc::Credentials,
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
    /// How long a node's agent may go without renewing its Lease before
    /// the node is marked Ready=Unknown and tainted unreachable.
    pub node_monitor_grace_period: Duration,
    /// How long pods stay on a node tainted not-ready or unreachable when
    /// they have no toleration of their own for it.
    pub pod_eviction_timeout: Duration,
    /// Most pods evicted from tainted nodes per second; 0: no limit.
    pub eviction_rate: u32,
    /// The pod ranges handed to nodes (`spec.podCIDR`); `None`: none are.
    pub pod_ranges: Option<crate::PodRanges>,
}

// === impl Config ===

impl Config {
    /// Defaults as Kubernetes' kube-controller-manager has them (5 min
    /// expectations, bursts of 500), against `server`.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            credentials: moor_rpc::Credentials::default(),
            leader_elect: false,
            lease: LeaseConfig::default(),
            identity: format!("moor-controller-manager-{}", std::process::id()),
            expectations_timeout: Duration::from_secs(300),
            burst_replicas: 500,
            namespace_resync: Duration::from_secs(2),
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(60),
            eviction_rate: 10,
            pod_ranges: Some(crate::PodRanges::default()),
        }
    }
}

/// Lease timing of leader election (Kubernetes' defaults: 15 s, 10 s, 2 s).
pub type LeaseConfig = moor_leader::Timing;
