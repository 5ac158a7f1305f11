//! The moor node agent. [`run`] registers a Node, renews its Lease and keeps
//! the Ready condition true while the container runtime answers, and
//! converges the runtime to the pods bound to the node: a sandbox per pod
//! holding the network namespace, init containers in order, app containers
//! joined to it, volumes, liveness, readiness and startup probes, restarts
//! with back-off, status written only on change, graceful deletion, and
//! removal of containers whose pod is gone. A restarted agent adopts the
//! containers it finds (by their labels) instead of restarting them. Pods
//! resolve through the cluster DNS (per dnsPolicy; the agent writes each
//! pod's /etc/resolv.conf and /etc/hosts itself) and their containers get
//! Kubernetes-style variables for the services of their namespace. The
//! agent's own gRPC service (NodeAgent) streams logs and runs exec sessions
//! for the apiserver, which relays `moorctl logs` and `moorctl exec`.
//! Images are pulled in the background per imagePullPolicy, with Pod events
//! (Pulling, Pulled, Failed). Static pods: the Pod manifests of
//! [`Config::manifest_dir`] run from the files and show in the API as
//! mirror pods.
//!
//! With the fake runtime and a count, one process runs many simulated nodes.

mod agent;
mod config;
mod error;
mod gc;
pub mod network;
mod node;
mod pod;
mod server;

pub use config::{AgentTls, Config, RuntimeKind};
pub use error::Error;

use std::sync::Arc;

use moor_runtime::{ContainerRuntime, Fake};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;

/// Simulated nodes sharing one connection to the apiserver.
const AGENTS_PER_CONNECTION: usize = 50;

/// Runs the agent (or, with the fake runtime and a count, `count` simulated
/// agents named `NAME-0` ...) until `shutdown` is cancelled. Containers keep
/// running after shutdown; the next agent adopts them.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    // The agent's own: a failed overlay stops the rest, not the caller's.
    let shutdown = shutdown.child_token();
    let client = moor_client::Client::connect(&config.server, &config.credentials)?;
    moor_client::follow_servers(&client, shutdown.clone());
    let mut agents = JoinSet::new();
    match (config.runtime, config.count) {
        (RuntimeKind::Fake, Some(count)) => {
            let mut client = client;
            for i in 0..count {
                // A connection per group of simulated nodes, as real nodes
                // have one each: thousands of nodes' watches and writes
                // over one HTTP/2 connection are one task's work at each end.
                if i > 0 && i % AGENTS_PER_CONNECTION == 0 {
                    client = moor_client::Client::connect(&config.server, &config.credentials)?;
                    moor_client::follow_servers(&client, shutdown.clone());
                }
                let mut one = config.clone();
                one.name = format!("{}-{i}", config.name);
                one.data_dir = config.data_dir.join(&one.name);
                let runtime = Arc::new(Fake::new(config.fake_cpus, config.fake_memory_bytes));
                agents.spawn(run_one(one, client.clone(), runtime, shutdown.clone()));
            }
        }
        (RuntimeKind::Fake, None) => {
            let runtime = Arc::new(Fake::new(config.fake_cpus, config.fake_memory_bytes));
            agents.spawn(run_one(config, client, runtime, shutdown));
        }
        (RuntimeKind::Docker, _) => {
            let mut config = config;
            let subnet = if config.network_backend == network::Backend::Local {
                None
            } else {
                let Some((network, overlay)) = network::set_up(&config, &client, &shutdown).await?
                else {
                    return Ok(());
                };
                agents.spawn({
                    let (client, shutdown) = (client.clone(), shutdown.clone());
                    async move {
                        let result = overlay.run(client, shutdown.clone()).await;
                        // Pods on a range the cluster no longer routes here
                        // are unreachable: stop the agent rather than run them.
                        shutdown.cancel();
                        result
                    }
                });
                // One network per pod range: a node given a new range
                // (deleted and joined again) starts on a new bridge; the old
                // one's containers go with their pods.
                config.network = format!(
                    "{}-{}-{}",
                    config.network,
                    network.range.network(),
                    network.range.prefix_len()
                );
                Some(moor_runtime::NodeSubnet {
                    node: config.name.clone(),
                    range: network.range,
                    mtu: Some(network.mtu),
                })
            };
            let Some(runtime) = agent::connect_docker(&config, subnet, &client, &shutdown).await
            else {
                return Ok(());
            };
            if config.cluster_dns.is_none() {
                let Some(()) = discover_cluster_dns(&mut config, &client, &shutdown).await else {
                    return Ok(());
                };
            }
            agents.spawn(run_one(config, client, Arc::new(runtime), shutdown));
        }
    }
    let mut result = Ok(());
    while let Some(done) = agents.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => result = Err(err),
            Err(err) => tracing::error!(%err, "node agent task panicked"),
        }
    }
    result
}

/// Asks the apiserver for the cluster DNS address and domain, retrying
/// until it answers; `None` on shutdown. An apiserver without the
/// ProxyConfig service leaves pods on the host's resolver settings.
async fn discover_cluster_dns(
    config: &mut Config,
    client: &moor_client::Client,
    shutdown: &CancellationToken,
) -> Option<()> {
    loop {
        match client.cluster_network().await {
            Ok(network) => {
                config.cluster_dns = network.dns_ip.parse().ok();
                if !network.cluster_domain.is_empty() {
                    config.cluster_domain = network.cluster_domain;
                }
                tracing::info!(dns = ?config.cluster_dns, domain = %config.cluster_domain, "pods resolve through the cluster DNS");
                return Some(());
            }
            Err(moor_client::Error::Other(status))
                if status.code() == tonic::Code::Unimplemented =>
            {
                tracing::warn!(
                    "the apiserver has no cluster network settings; pods use the host's resolver settings"
                );
                return Some(());
            }
            Err(err) => {
                tracing::info!(%err, "waiting for the apiserver's cluster network settings");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Runs one agent on a runtime the caller built (tests inject a [`Fake`]
/// they can take down).
pub async fn run_with_runtime(
    config: Config,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = moor_client::Client::connect(&config.server, &config.credentials)?;
    run_one(config, client, runtime, shutdown).await
}

async fn run_one(
    config: Config,
    client: moor_client::Client,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // Simulated nodes have nothing to show: only real runtimes serve logs and exec.
    let listener = match config.agent_listen {
        Some(addr) if runtime.id_scheme() != "fake" => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::AgentListen { addr, source })?,
        ),
        _ => None,
    };
    let port = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or(0, |a| a.port());
    let agent = Arc::new(Agent::new(config, client, runtime, port).await?);
    tracing::info!(node = %agent.name, agent_port = port, "node agent starting");
    let mut tasks = JoinSet::new();
    if let Some(listener) = listener {
        tasks.spawn(server::serve(agent.clone(), listener, shutdown.clone()));
    }
    tasks.spawn(node::heartbeat_loop(agent.clone(), shutdown.clone()));
    tasks.spawn(gc::gc_loop(agent.clone(), shutdown.clone()));
    tasks.spawn(pod::run_controller(agent.clone(), shutdown.clone()));
    while tasks.join_next().await.is_some() {}
    tracing::info!(node = %agent.name, "node agent stopped; containers keep running");
    Ok(())
}
