//! The agent's settings.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// Which container runtime the agent drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// The local Docker Engine.
    Docker,
    /// In memory: pods report Running without containers (simulated nodes).
    Fake,
}

/// The agent service's TLS.
#[derive(Clone, Debug)]
pub struct AgentTls {
    /// The node's identity: its certificate names the node as a server too.
    pub identity: moor_pki::Identity,
    /// The cluster CA, PEM: the apiserver's client certificate chains to it.
    pub ca_pem: String,
}

/// Settings of [`crate::run`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Apiserver URL, `https://HOST:PORT` (`http://` for an `--insecure` one).
    pub server: String,
    /// How to prove who this component is to the apiserver (and which CA
    /// to trust): a client certificate, or none for an `--insecure` server.
    pub credentials: moor_rpc::Credentials,
    /// Node name (with a count: the prefix of `NAME-0` ...).
    pub name: String,
    /// Where pod volumes live (`pods/<uid>/volumes/<name>`).
    pub data_dir: PathBuf,
    /// Docker or fake.
    pub runtime: RuntimeKind,
    /// With the fake runtime: how many simulated nodes.
    pub count: Option<usize>,
    /// How often the Node status and Lease are renewed.
    pub heartbeat: Duration,
    /// How often each pod is re-checked against its containers without a change.
    pub pod_resync: Duration,
    /// How often containers and directories of vanished pods are cleaned up.
    pub gc_interval: Duration,
    /// First restart (and pull) back-off; doubles up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// The cluster bridge network, shared by every agent on the host.
    pub network: String,
    /// The sandbox image, built by images/build.sh.
    pub sandbox_image: String,
    /// CPUs a fake node reports.
    pub fake_cpus: i64,
    /// Memory a fake node reports, in bytes.
    pub fake_memory_bytes: i64,
    /// The cluster DNS server that pods with dnsPolicy ClusterFirst resolve
    /// through; `None`: every pod gets the host's resolver settings (pod/dns.rs).
    pub cluster_dns: Option<Ipv4Addr>,
    /// The cluster's DNS domain: pods search `<namespace>.svc.<domain>`,
    /// `svc.<domain>` and `<domain>`.
    pub cluster_domain: String,
    /// Where the NodeAgent service (logs and exec for the apiserver)
    /// listens; port 0 picks a free one (the Node's status tells it).
    /// `None`: not served.
    pub agent_listen: Option<std::net::SocketAddr>,
    /// Serve that service over TLS as this node, to the apiserver alone
    /// (its client certificate); `None`: plain text, callers checked with
    /// the agent token (a cluster started with `--insecure`).
    pub agent_tls: Option<AgentTls>,
    /// Static pods: every Pod manifest (YAML or JSON) in this directory
    /// runs on this node and shows in the API as a mirror pod. `None`: no
    /// static pods (mirror pods left from an earlier run are removed).
    pub manifest_dir: Option<PathBuf>,
    /// How often the manifest directory is read again.
    pub manifest_interval: Duration,
    /// How pods reach other nodes' pods (see [`crate::network`]); with
    /// anything but `Local` the agent waits for the node's pod range.
    pub network_backend: crate::network::Backend,
    /// The node's address: reported as InternalIP, pods' hostIP, and where
    /// other nodes send this node's pod traffic.
    pub node_ip: Ipv4Addr,
    /// The whole pod network: what pods send outside it is masqueraded.
    pub cluster_cidr: moor_hostnet::Ipv4Net,
}

// === impl Config ===

impl Config {
    /// Defaults as Kubernetes' kubelet has them (10 s heartbeat, 10 s to 5 min back-off).
    pub fn new(server: impl Into<String>, name: impl Into<String>, data_dir: PathBuf) -> Self {
        Self {
            server: server.into(),
            credentials: moor_rpc::Credentials::default(),
            name: name.into(),
            data_dir,
            runtime: RuntimeKind::Docker,
            count: None,
            heartbeat: Duration::from_secs(10),
            pod_resync: Duration::from_secs(2),
            gc_interval: Duration::from_secs(10),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            network: "moor".into(),
            sandbox_image: "moor/pause:0.1".into(),
            fake_cpus: 4,
            fake_memory_bytes: 16 << 30,
            cluster_dns: None,
            cluster_domain: "cluster.local".into(),
            agent_listen: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            agent_tls: None,
            manifest_dir: None,
            manifest_interval: Duration::from_secs(5),
            network_backend: crate::network::Backend::Local,
            node_ip: match moor_rpc::host_ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
            },
            cluster_cidr: moor_hostnet::Ipv4Net::new_assert(Ipv4Addr::new(10, 244, 0, 0), 16),
        }
    }

    /// The back-off after `failures` failures in a row.
    pub fn backoff(&self, failures: u32) -> Duration {
        self.backoff_base
            .saturating_mul(2u32.saturating_pow(failures.min(20)))
            .min(self.backoff_max)
    }
}
