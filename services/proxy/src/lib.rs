//! moor's node proxy and the cluster DNS.
//!
//! It follows the apiserver's ProxyConfig stream (a snapshot, then changes,
//! each acknowledged or rejected with a reason), puts every cluster IP on the
//! host and sends each service's cluster IP and port (and node ports on every
//! address) to ready endpoints, in one of two modes: `userspace`, an L4 proxy
//! in this process in the manner of the first Kubernetes proxy, or
//! `iptables`, NAT rules in the kernel as kube-proxy's iptables mode. The
//! cluster DNS answers on the cluster's DNS address from the same stream.

mod addresses;
mod balancer;
mod dataplane;
pub mod iptables;
mod table;
mod tcp;
mod udp;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use moor_api::proxy::v1::proxy_config_client::ProxyConfigClient;
use moor_api::proxy::v1::{ClusterNetwork, ProxyConfigRequest};
use moor_dns::Records;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use addresses::HostAddresses;
pub use table::{Frontend, Model, Protocol, Route, Table};

use crate::dataplane::Dataplane;

/// Where forwarded packets go through.
///
/// `Userspace` is the default: `Iptables` is about twice as fast
/// (BENCHMARKS.md, "Service proxy") but does not yet keep every promise of
/// the userspace mode: it spreads new connections at random instead of round
/// robin, cannot try the next endpoint when a leaving pod already refuses
/// (the window is the apiserver's update plus one iptables-restore). As
/// kube-proxy, it deletes the conntrack entries of UDP flows its new rules
/// leave stale (the `conntrack` program). (A pod
/// reaching its own service needs hairpin mode on its bridge port: the node
/// agent sets it on every sandbox.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Listeners in this process copy each connection and datagram.
    #[default]
    Userspace,
    /// NAT rules in the kernel (iptables-restore); this process only writes
    /// them.
    Iptables,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Userspace => "userspace",
            Mode::Iptables => "iptables",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "userspace" => Ok(Mode::Userspace),
            "iptables" => Ok(Mode::Iptables),
            other => Err(format!(
                "unknown proxy mode {other:?} (userspace or iptables)"
            )),
        }
    }
}

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct Config {
    /// Apiserver URL, `https://HOST:PORT` (`http://` for an `--insecure` one).
    pub server: String,
    /// How to prove who this component is to the apiserver (and which CA
    /// to trust): a client certificate, or none for an `--insecure` server.
    pub credentials: moor_rpc::Credentials,
    /// The node this proxy runs on.
    pub node: String,
    /// Interface for cluster IPs; `None`: `moor0` if the kernel has dummy
    /// links, else `lo`.
    pub interface: Option<String>,
    /// How long connections to an endpoint that went away may finish.
    pub drain: Duration,
    /// How long an idle UDP flow is kept.
    pub udp_idle: Duration,
    /// Serve cluster DNS on the cluster's DNS address.
    pub dns: bool,
    /// Where names outside the cluster domain go; empty: the host's
    /// /etc/resolv.conf.
    pub dns_upstreams: Vec<SocketAddr>,
    /// The data path.
    pub mode: Mode,
    /// Prefix of the iptables chains (iptables mode), 1 to 7 upper-case
    /// letters or digits: `MOOR`. Proxies sharing a host (tests) need one
    /// each, since a proxy replaces every chain of its prefix.
    pub chains: String,
}

impl Config {
    /// Defaults: 2 s drain, 30 s UDP idle timeout, DNS on.
    pub fn new(server: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            credentials: moor_rpc::Credentials::default(),
            node: node.into(),
            interface: None,
            drain: Duration::from_secs(2),
            udp_idle: Duration::from_secs(30),
            dns: true,
            dns_upstreams: Vec::new(),
            mode: Mode::default(),
            chains: "MOOR".to_string(),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host's interfaces could not be prepared.
    #[error("cannot prepare the interface for cluster IPs")]
    Host(#[from] moor_hostnet::Error),
    /// iptables mode cannot run.
    #[error("cannot prepare the iptables rules")]
    Iptables(#[from] iptables::Error),
    /// The server URL or credentials are not usable.
    #[error("cannot reach the apiserver")]
    Client(#[from] moor_client::Error),
}

/// The data path in use.
enum Forwarding {
    Userspace(Dataplane),
    Iptables(iptables::Kernel),
}

/// Runs the proxy until `shutdown`; takes its addresses off the host when
/// it stops.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let host = HostAddresses::open(config.interface.clone()).await?;
    let forwarding = match config.mode {
        Mode::Userspace => Forwarding::Userspace(Dataplane::new(
            config.drain,
            config.udp_idle,
            shutdown.clone(),
        )),
        Mode::Iptables => Forwarding::Iptables(iptables::Kernel::open(&config.chains).await?),
    };
    tracing::info!(node = %config.node, interface = host.interface(), mode = %config.mode, "proxy starting");
    // One channel for every stream, so that the servers it learns stay.
    let client = moor_client::Client::connect(&config.server, &config.credentials)?;
    moor_client::follow_servers(&client, shutdown.clone());
    let mut proxy = Proxy {
        channel: client.channel(),
        forwarding,
        model: Model::default(),
        host,
        dns: None,
        config,
        shutdown: shutdown.clone(),
    };
    let mut version = String::new();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match proxy.follow(&mut version).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                tracing::warn!(%err, "proxy config stream lost; reconnecting");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    proxy.stop().await;
    Ok(())
}

/// The DNS server's feed and settings.
struct Dns {
    records: watch::Sender<Arc<Records>>,
    domain: String,
}

// === impl Forwarding ===

impl Forwarding {
    /// Listening frontends, or moor's chains in the kernel.
    fn size(&self) -> usize {
        match self {
            Forwarding::Userspace(dataplane) => dataplane.listening(),
            Forwarding::Iptables(kernel) => kernel.chains(),
        }
    }
}

struct Proxy {
    config: Config,
    /// To the apiservers.
    channel: moor_rpc::Channel,
    model: Model,
    forwarding: Forwarding,
    host: HostAddresses,
    dns: Option<Dns>,
    shutdown: CancellationToken,
}

impl Proxy {
    /// Follows one stream until it ends; `version` is the last applied.
    async fn follow(&mut self, version: &mut String) -> Result<(), tonic::Status> {
        let mut client =
            ProxyConfigClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX);
        let (tx, rx) = mpsc::channel(16);
        let first = ProxyConfigRequest {
            node: self.config.node.clone(),
            resume_version: version.clone(),
            ..Default::default()
        };
        // The channel is fresh and has room.
        let _ = tx.try_send(first);
        let mut updates = client
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        loop {
            let update = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                update = updates.message() => update?,
            };
            let Some(update) = update else {
                return Ok(());
            };
            // Whatever else already arrived goes in too: the host converges
            // to the latest configuration, not to each one in between (an
            // iptables rewrite takes tens of milliseconds; under churn the
            // stale states in between would be served, late, one by one).
            let mut batch = vec![update];
            let mut closed = false;
            while let Some(next) = updates.message().now_or_never() {
                match next? {
                    Some(update) => batch.push(update),
                    None => {
                        closed = true;
                        break;
                    }
                }
            }
            let taken = batch.len();
            let kind = if batch.iter().any(|u| u.snapshot) {
                "snapshot"
            } else {
                "changes"
            };
            let mut applied = String::new();
            for update in batch {
                applied = update.version.clone();
                self.model.apply(update);
            }
            let problems = self.converge().await;
            if problems.is_empty() {
                tracing::debug!(version = %applied, kind, updates = taken, frontends = self.forwarding.size(), "applied");
            } else {
                tracing::warn!(version = %applied, problems = %problems.join("; "), "applied in part");
            }
            *version = applied.clone();
            let ack = ProxyConfigRequest {
                version: applied,
                error: problems.join("; "),
                ..Default::default()
            };
            if tx.send(ack).await.is_err() || closed {
                return Ok(());
            }
        }
    }

    /// Converges the host addresses, listeners and DNS to the model.
    async fn converge(&mut self) -> Vec<String> {
        let (table, mut problems) = self.model.table();
        let network = self.model.network.clone().unwrap_or_default();
        let dns_ip = network.dns_ip.parse::<Ipv4Addr>().ok();
        match network.service_cidr.parse::<ipnet::Ipv4Net>() {
            Ok(range) => {
                let mut wanted = table.cluster_ips.clone();
                if self.config.dns {
                    wanted.extend(dns_ip);
                }
                // Never touch addresses outside the service range.
                wanted.retain(|ip| range.contains(ip));
                problems.extend(self.host.converge(range, wanted).await);
            }
            Err(_) => problems.push(format!(
                "the cluster network has no usable service CIDR ({:?})",
                network.service_cidr
            )),
        }
        problems.extend(match &mut self.forwarding {
            Forwarding::Userspace(dataplane) => dataplane.apply(&table).await,
            Forwarding::Iptables(kernel) => kernel.apply(&table).await,
        });
        if self.config.dns
            && let Some(ip) = dns_ip
        {
            problems.extend(self.dns(ip, &network, table).await);
        }
        problems
    }

    /// Feeds the DNS server, starting it on first use.
    async fn dns(
        &mut self,
        ip: Ipv4Addr,
        network: &ClusterNetwork,
        table: Table,
    ) -> Option<String> {
        let domain = match network.cluster_domain.as_str() {
            "" => "cluster.local".to_string(),
            d => d.to_string(),
        };
        let records = Arc::new(Records::new(&domain, table.dns));
        if let Some(dns) = &self.dns
            && dns.domain == domain
        {
            dns.records.send_replace(records);
            return None;
        }
        let (tx, rx) = watch::channel(records);
        let upstreams = if self.config.dns_upstreams.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            moor_dns::upstreams_from_resolv_conf(&text)
        } else {
            self.config.dns_upstreams.clone()
        };
        let addr = SocketAddr::from((ip, 53));
        let server = match moor_dns::Server::bind(addr, upstreams, rx).await {
            Ok(server) => server,
            Err(err) => return Some(format!("cannot serve DNS on {addr}: {err}")),
        };
        tokio::spawn(server.serve(self.shutdown.child_token()));
        tracing::info!(%addr, %domain, "cluster DNS serving");
        self.dns = Some(Dns {
            records: tx,
            domain,
        });
        None
    }

    /// Closes the frontends (or removes the rules) and takes the cluster
    /// IPs off the host.
    async fn stop(&mut self) {
        match &mut self.forwarding {
            Forwarding::Userspace(dataplane) => dataplane.close(),
            Forwarding::Iptables(kernel) => kernel.close().await,
        }
        if let Some(range) = self
            .model
            .network
            .as_ref()
            .and_then(|n| n.service_cidr.parse::<ipnet::Ipv4Net>().ok())
        {
            for problem in self.host.converge(range, Default::default()).await {
                tracing::warn!(%problem, "could not remove a cluster IP");
            }
        }
        tracing::info!("proxy stopped");
    }
}
