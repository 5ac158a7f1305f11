//! `moor`: one binary for every server component. This file only parses
//! flags; each component is a library with `run(config, shutdown)`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod certs;
mod child;
mod etcd;
mod join;
mod leave;
mod migrate;
mod pki;
mod registry;
mod token;
mod up;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// moor: a container orchestrator in the line of early Kubernetes.
#[derive(Parser)]
#[command(name = "moor", version, about)]
struct Cli {
    /// Log filter, e.g. "info" or "moor_apiserver=debug" (also $RUST_LOG).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Log lines as text (coloured only on a terminal) or as one JSON object each, for log shippers.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the apiserver: the API, storage and watches.
    Apiserver(ApiserverArgs),
    /// Run a node agent: registers the node and runs its pods on Docker.
    Node(NodeArgs),
    /// Run the scheduler: binds pending pods to nodes.
    Scheduler(SchedulerArgs),
    /// Run the controller-manager: replication controllers, replica sets, deployments,
    /// endpoints, garbage collection and namespace deletion.
    ControllerManager(ControllerManagerArgs),
    /// Run a node's service proxy and cluster DNS: forwards cluster IPs and node ports to endpoints.
    Proxy(ProxyArgs),
    /// Run the whole cluster on this machine: apiserver, scheduler, controller-manager, node agent and proxy.
    Up(up::UpArgs),
    /// Make this machine a node of a cluster (agent and proxy), or with --control-plane one of
    /// its servers, with a join token.
    Join(join::JoinArgs),
    /// Take this (stopped) server out of the control plane: remove its etcd member.
    Leave(leave::LeaveArgs),
    /// Move this (stopped) single-machine server from the embedded store onto an etcd member of
    /// its own, keeping every object and the order of their resourceVersions.
    Migrate(migrate::MigrateArgs),
    /// Create, list and delete join tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Check the cluster's certificates: whom they name and when they expire.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
}

/// Flags of the components that talk to the apiserver under leader election.
#[derive(Args)]
struct ControlArgs {
    #[command(flatten)]
    client: pki::ClientArgs,
    /// Take part in leader election (a Lease in moor-system); only the leader acts.
    #[arg(long)]
    leader_elect: bool,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds the leader keeps trying to renew before it steps down.
    #[arg(long, default_value_t = 10)]
    renew_deadline_seconds: u64,
    /// Seconds between attempts to acquire or renew the lease.
    #[arg(long, default_value_t = 2)]
    retry_period_seconds: u64,
}

/// How a node's pods reach the rest of the cluster (`moor node`, `join`, `up`).
#[derive(Args, Clone)]
pub struct NetworkArgs {
    /// How pods reach pods on other hosts: vxlan (an overlay over any IP network), host-gw
    /// (plain routes; every host on one L2 segment) or none (this host's pods only).
    #[arg(long, default_value = "vxlan")]
    network_backend: moor_node::network::Backend,
    /// This node's address, where other nodes send its pods' traffic (default: the address of
    /// the host's default route).
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    /// The cluster's pod network, as the controller-manager's --cluster-cidr: pods' traffic
    /// leaving it is masqueraded.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
}

impl NetworkArgs {
    /// Sets the node agent's network settings.
    pub fn apply(&self, config: &mut moor_node::Config) {
        config.network_backend = self.network_backend;
        if let Some(ip) = self.node_ip {
            config.node_ip = ip;
        }
        config.cluster_cidr = self.cluster_cidr;
    }
}

/// How the controller-manager cuts the cluster's pod network into node ranges.
#[derive(Args, Clone)]
pub struct PodRangeArgs {
    /// Size of each node's pod range, as a prefix length within --cluster-cidr.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Do not hand nodes pod ranges (their agents must run with --network-backend none).
    #[arg(long)]
    no_allocate_node_cidrs: bool,
}

impl PodRangeArgs {
    /// The ranges handed out of `cluster`, or why they cannot be.
    pub fn ranges(
        &self,
        cluster: ipnet::Ipv4Net,
    ) -> anyhow::Result<Option<moor_controller_manager::PodRanges>> {
        if self.no_allocate_node_cidrs {
            return Ok(None);
        }
        moor_controller_manager::PodRanges::new(cluster, self.node_cidr_mask_size)
            .map(Some)
            .map_err(|why| anyhow::anyhow!("--cluster-cidr/--node-cidr-mask-size: {why}"))
    }
}

#[derive(Args)]
struct ControllerManagerArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// The cluster's pod network, cut into a range per node (spec.podCIDR).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    #[command(flatten)]
    pod_ranges: PodRangeArgs,
    #[command(flatten)]
    node_lifecycle: NodeLifecycleArgs,
}

/// How long a node may go unheard from, and what happens to its pods then:
/// flags of the controller-manager, and of every server that runs one.
#[derive(Args, Clone, Debug)]
pub struct NodeLifecycleArgs {
    /// Seconds without a lease renewal before a node is marked Unknown and tainted
    /// (default: 40).
    #[arg(long)]
    node_monitor_grace_period_seconds: Option<u64>,
    /// Seconds pods stay on a not-ready or unreachable node before they are evicted
    /// (default: 60).
    #[arg(long)]
    pod_eviction_timeout_seconds: Option<u64>,
    /// Pods evicted per second at most (0: no limit; default: 10).
    #[arg(long)]
    eviction_rate: Option<u32>,
}

impl NodeLifecycleArgs {
    /// Sets those given on the controller-manager's `config`, whose
    /// defaults are the others'.
    pub fn apply(&self, config: &mut moor_controller_manager::Config) {
        if let Some(seconds) = self.node_monitor_grace_period_seconds {
            config.node_monitor_grace_period = Duration::from_secs(seconds.max(1));
        }
        if let Some(seconds) = self.pod_eviction_timeout_seconds {
            config.pod_eviction_timeout = Duration::from_secs(seconds);
        }
        if let Some(rate) = self.eviction_rate {
            config.eviction_rate = rate;
        }
    }

    /// Refuses these flags where no controller-manager runs (`why`).
    pub fn check_none(&self, why: &str) -> anyhow::Result<()> {
        for (flag, given) in [
            (
                "--node-monitor-grace-period-seconds",
                self.node_monitor_grace_period_seconds.is_some(),
            ),
            (
                "--pod-eviction-timeout-seconds",
                self.pod_eviction_timeout_seconds.is_some(),
            ),
            ("--eviction-rate", self.eviction_rate.is_some()),
        ] {
            anyhow::ensure!(!given, "{flag}: no controller-manager runs here ({why})");
        }
        Ok(())
    }
}

#[derive(Args)]
struct SchedulerArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Address of the plan service (`moorctl schedule --dry-run`); port 0 picks one.
    /// Loopback by default: the service has no TLS yet.
    #[arg(long, default_value = "127.0.0.1:10259")]
    listen: SocketAddr,
}

#[derive(Args)]
struct NodeArgs {
    #[command(flatten)]
    client: pki::ClientArgs,
    /// Node name (with --count: the prefix of NAME-0 ... NAME-(N-1)).
    #[arg(long)]
    name: String,
    /// Directory for pod volumes (emptyDir); default ~/.moor/nodes/NAME.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Container runtime: docker, or fake for simulated nodes.
    #[arg(long, default_value = "docker", value_parser = ["docker", "fake"])]
    runtime: String,
    /// With --runtime fake: run this many simulated nodes in one process.
    #[arg(long)]
    count: Option<usize>,
    /// Seconds between node status and lease renewals.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Address of the agent's own service (logs and exec, for the apiserver); port 0 picks one.
    /// Served in plain text for an --insecure (http://) apiserver only: nodes of a TLS cluster
    /// serve it as their node after `moor join`.
    #[arg(long, default_value = "0.0.0.0:10250")]
    agent_listen: SocketAddr,
    /// Cluster DNS address for pods (default: asked from the apiserver).
    #[arg(long)]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// Static pods: run every Pod manifest (YAML or JSON) in this directory on
    /// this node, shown in the API as mirror pods named NAME-NODE.
    #[arg(long)]
    manifest_dir: Option<PathBuf>,
    /// Seconds between reads of --manifest-dir.
    #[arg(long, default_value_t = 5)]
    manifest_interval_seconds: u64,
    #[command(flatten)]
    network: NetworkArgs,
}

#[derive(Args)]
struct ProxyArgs {
    #[command(flatten)]
    client: pki::ClientArgs,
    /// Name of the node this proxy serves (reported to the apiserver).
    #[arg(long)]
    node: String,
    /// Interface to put cluster IPs on (default: moor0 where the kernel has dummy links, else lo).
    #[arg(long)]
    interface: Option<String>,
    /// Seconds connections to an endpoint that went away may still run.
    #[arg(long, default_value_t = 2)]
    drain_seconds: u64,
    /// Seconds an idle UDP flow is kept.
    #[arg(long, default_value_t = 30)]
    udp_idle_seconds: u64,
    /// Do not serve cluster DNS.
    #[arg(long)]
    no_dns: bool,
    /// Resolver for names outside the cluster, IP:PORT (repeatable; default: /etc/resolv.conf's).
    #[arg(long)]
    dns_upstream: Vec<SocketAddr>,
    /// Data path: userspace (this process forwards) or iptables (kernel NAT rules, moor's chains).
    #[arg(long, default_value_t = moor_proxy::Mode::default())]
    mode: moor_proxy::Mode,
}

impl ProxyArgs {
    fn config(self) -> anyhow::Result<moor_proxy::Config> {
        let (server, credentials) = self.client.resolve()?;
        let mut config = moor_proxy::Config::new(server, self.node);
        config.credentials = credentials;
        config.interface = self.interface;
        config.drain = Duration::from_secs(self.drain_seconds);
        config.udp_idle = Duration::from_secs(self.udp_idle_seconds.max(1));
        config.dns = !self.no_dns;
        config.dns_upstreams = self.dns_upstream;
        config.mode = self.mode;
        Ok(config)
    }
}

#[derive(Args)]
struct ApiserverArgs {
    /// Address to serve the gRPC API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory of the embedded SQLite store (default ~/.moor/data unless --etcd-endpoints is given).
    #[arg(long, conflicts_with = "etcd_endpoints")]
    data_dir: Option<PathBuf>,
    /// Comma-separated etcd URLs, e.g. http://127.0.0.1:2379; replaces the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// IPv4 range that service cluster IPs are allocated from; its tenth address is the cluster DNS.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: ipnet::Ipv4Net,
    /// Range of node ports, FIRST-LAST.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: std::ops::RangeInclusive<u16>,
    /// DNS domain of the cluster.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Recent events each kind's watch cache keeps, for watchers that resume.
    #[arg(long, default_value_t = 10_000)]
    watch_cache_events: usize,
    /// Seconds between bookmarks sent to watchers that ask for them.
    #[arg(long, default_value_t = 10)]
    bookmark_interval_seconds: u64,
    /// Seats for requests served at once (one each; a list one per 100 objects of its kind, up
    /// to 10), besides lease renewals, node status and binds (which have 200 seats of their own)
    /// and streams; past it requests wait up to 10 s, then are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_in_flight: u32,
    /// Of --max-requests-in-flight, the seats one caller (user, or connection without TLS) holds
    /// at most; as many of its requests may wait, the rest are refused at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_per_caller: u32,
    #[command(flatten)]
    tls: pki::ServeTlsArgs,
    #[command(flatten)]
    etcd_tls: pki::EtcdTlsArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One readable line (with its causes), not a backtrace.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log)?)
        // Colour codes are for a person at a terminal, not for a file or pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        match cli.command {
            Command::Apiserver(args) => run_apiserver(args, shutdown).await,
            Command::Up(args) => up::run(args, shutdown).await,
            Command::Join(args) => join::run(args, shutdown).await,
            Command::Leave(args) => leave::run(args).await,
            Command::Migrate(args) => migrate::run(args, shutdown).await,
            Command::Token(command) => token::run(command).await,
            Command::Certs(command) => certs::run(command),
            Command::ControllerManager(ControllerManagerArgs {
                control: args,
                cluster_cidr,
                pod_ranges,
                node_lifecycle,
            }) => {
                let (server, credentials) = args.client.resolve()?;
                let mut config = moor_controller_manager::Config::new(server);
                config.credentials = credentials;
                node_lifecycle.apply(&mut config);
                config.pod_ranges = pod_ranges.ranges(cluster_cidr)?;
                config.leader_elect = args.leader_elect;
                config.lease = moor_controller_manager::LeaseConfig {
                    duration: Duration::from_secs(args.lease_duration_seconds.max(1)),
                    renew_deadline: Duration::from_secs(args.renew_deadline_seconds.max(1)),
                    retry: Duration::from_secs(args.retry_period_seconds.max(1)),
                };
                moor_controller_manager::run(config, shutdown).await?;
                Ok(())
            }
            Command::Scheduler(SchedulerArgs {
                control: args,
                listen,
            }) => {
                let (server, credentials) = args.client.resolve()?;
                let mut config = moor_scheduler::Config::new(server);
                config.credentials = credentials;
                config.listen = Some(listen);
                config.leader_elect = args.leader_elect;
                config.lease = moor_scheduler::LeaseConfig {
                    duration: Duration::from_secs(args.lease_duration_seconds.max(1)),
                    renew_deadline: Duration::from_secs(args.renew_deadline_seconds.max(1)),
                    retry: Duration::from_secs(args.retry_period_seconds.max(1)),
                };
                moor_scheduler::run(config, shutdown).await?;
                Ok(())
            }
            Command::Proxy(args) => {
                moor_proxy::run(args.config()?, shutdown).await?;
                Ok(())
            }
            Command::Node(args) => {
                let data_dir = match args.data_dir {
                    Some(dir) => dir,
                    None => home()?.join(".moor").join("nodes").join(&args.name),
                };
                let (server, credentials) = args.client.resolve()?;
                let mut config = moor_node::Config::new(server, args.name, data_dir);
                config.credentials = credentials;
                config.runtime = match args.runtime.as_str() {
                    "fake" => moor_node::RuntimeKind::Fake,
                    _ => moor_node::RuntimeKind::Docker,
                };
                if args.count.is_some() && config.runtime != moor_node::RuntimeKind::Fake {
                    anyhow::bail!("--count needs --runtime fake");
                }
                args.network.apply(&mut config);
                config.count = args.count;
                config.heartbeat = Duration::from_secs(args.heartbeat_seconds.max(1));
                // The agent service in plain text, checked by a token only an
                // --insecure apiserver keeps, is no service for a TLS cluster:
                // nothing of moor listens in plain text off loopback there.
                config.agent_listen = if config.server.starts_with("https://") {
                    tracing::info!(
                        "no logs and exec service: this node has no serving certificate \
                         (nodes that need one join with `moor join`)"
                    );
                    None
                } else {
                    Some(args.agent_listen)
                };
                config.cluster_dns = args.cluster_dns;
                config.manifest_dir = args.manifest_dir;
                config.manifest_interval =
                    Duration::from_secs(args.manifest_interval_seconds.max(1));
                moor_node::run(config, shutdown).await?;
                Ok(())
            }
        }
    })
}

async fn run_apiserver(args: ApiserverArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (storage, pki_dir) = if args.etcd_endpoints.is_empty() {
        let dir = match args.data_dir {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        let pki_dir = dir.join("pki");
        (moor_apiserver::Storage::DataDir(dir), pki_dir)
    } else {
        let pki_dir = home()?.join(".moor").join("pki");
        (
            moor_apiserver::Storage::Etcd {
                endpoints: args.etcd_endpoints.clone(),
                start: moor_storage_etcd::Start::Random,
            },
            pki_dir,
        )
    };
    let mut config = moor_apiserver::Config::new(storage);
    config.etcd_tls = args.etcd_tls.load(&args.etcd_endpoints)?;
    let pki = if args.tls.insecure {
        pki::warn_insecure(args.listen);
        None
    } else {
        let pki = pki::open(
            args.tls.pki_dir.as_deref().unwrap_or(&pki_dir),
            Duration::from_secs(args.tls.certificate_lifetime_seconds),
        )?;
        config.tls = Some(pki::apiserver_tls(&pki, args.listen, &args.tls)?);
        Some(std::sync::Arc::new(pki))
    };
    config.listen = args.listen;
    config.advertise = Some(SocketAddr::new(
        up::advertised(&args.tls, Some(args.listen)),
        args.listen.port(),
    ));
    config.service_cidr = args.service_cidr;
    config.node_ports = args.service_node_port_range;
    config.cluster_domain = args.cluster_domain;
    config.watch_cache_events = args.watch_cache_events;
    config.bookmark_interval = Duration::from_secs(args.bookmark_interval_seconds.max(1));
    config.limits.workload = args.max_requests_in_flight as usize;
    config.limits.per_caller = args.max_requests_per_caller as usize;
    let server = moor_apiserver::ApiServer::bind(config).await?;
    if let (Some(pki), Some(tls)) = (pki, server.tls()) {
        tokio::spawn(pki::renew_serving(
            pki,
            args.listen,
            args.tls.clone(),
            tls,
            shutdown.clone(),
        ));
    }
    server.run(shutdown).await?;
    Ok(())
}

/// Parses "30000-32767".
fn parse_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not FIRST-LAST"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let (low, high) = (port(low)?, port(high)?);
    if low == 0 || low > high {
        return Err(format!(
            "{text:?}: FIRST must be 1 or more and not above LAST"
        ));
    }
    Ok(low..=high)
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    Ok(home()?.join(".moor").join("data"))
}

/// This machine's host name, lower case ("local" when it has none).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_string())
}

/// The user's home directory.
fn home() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow::anyhow!("$HOME is not set; pass --data-dir"))?;
    Ok(PathBuf::from(home))
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted; shutting down"),
        _ = term => tracing::info!("terminated; shutting down"),
    }
    shutdown.cancel();
}
