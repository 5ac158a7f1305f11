//! A whole cluster in the test process, on the real Docker daemon: apiserver,
//! scheduler, controller-manager, a Docker node agent and the proxy with DNS,
//! each talking to the apiserver over gRPC as in production.
//!
//! Tests run side by side on one host, so each cluster gets its own service
//! range (10.201.N.0/24), node port range and Docker network, and removes
//! its containers and network on drop, also when the test panicked.
//!
//! More Docker node agents can join a cluster ([`Cluster::start_node`]) and
//! be stopped like a lost machine ([`Cluster::stop_node`]): their containers
//! outlive them and are removed on drop too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moor_client::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A component task and the token that stops it.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn spawn<F>(name: &'static str, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let future = run(stop.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = future.await {
                eprintln!("{name} failed: {err:#}");
            }
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A node agent started after the cluster, and whether it still runs.
struct ExtraNode {
    name: String,
    agent: Option<Running>,
}

/// A running cluster; everything stops and is cleaned up on drop.
pub struct Cluster {
    /// The apiserver's URL.
    pub url: String,
    /// A client of it.
    pub client: Client,
    /// The node's name (also its Docker network's suffix).
    pub node: String,
    /// The service range of this cluster.
    pub service_cidr: ipnet::Ipv4Net,
    /// The first node port of this cluster's range (20 ports).
    pub node_port_base: u16,
    /// Resolver the cluster DNS forwards other names to.
    pub dns_upstream: Option<SocketAddr>,
    network: String,
    data_dir: tempfile::TempDir,
    apiserver: Option<Running>,
    components: Vec<Running>,
    extra_nodes: Vec<ExtraNode>,
    proxy: Option<Running>,
    /// The proxy's data path; `None`: the proxy's default.
    proxy_mode: Option<moor_proxy::Mode>,
}

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Starts every component for test `name`; `dns_upstream` is where the
    /// cluster DNS sends names outside the cluster (none: SERVFAIL).
    pub async fn start(name: &str, dns_upstream: Option<SocketAddr>) -> anyhow::Result<Self> {
        Self::start_with(name, dns_upstream, |_| {}).await
    }

    /// [`Cluster::start`] with the controller-manager's settings changed by
    /// `controllers` first (e.g. short node lifecycle periods).
    pub async fn start_with(
        name: &str,
        dns_upstream: Option<SocketAddr>,
        controllers: impl FnOnce(&mut moor_controller_manager::Config),
    ) -> anyhow::Result<Self> {
        moor_testkit::init_tracing();
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let slot = (std::process::id().wrapping_mul(7).wrapping_add(n)) % 250;
        let service_cidr: ipnet::Ipv4Net = format!("10.201.{slot}.0/24").parse()?;
        let node_port_base = 20000 + u16::try_from(slot)? * 20;
        let node = format!("{name}-{}-{n}", std::process::id());
        let data_dir = tempfile::tempdir()?;

        let mut config = moor_apiserver::Config::new(moor_apiserver::Storage::DataDir(
            data_dir.path().join("store"),
        ));
        config.listen = "127.0.0.1:0".parse()?;
        config.service_cidr = service_cidr;
        config.node_ports = node_port_base..=node_port_base + 19;
        let server = moor_apiserver::ApiServer::bind(config).await?;
        let url = format!("http://{}", server.local_addr());
        let apiserver = Running::spawn(
            "apiserver",
            |stop| async move { Ok(server.run(stop).await?) },
        );
        let client = Client::new(&url)?;
        client.wait_ready(Duration::from_secs(20)).await?;

        let mut cluster = Self {
            url: url.clone(),
            client,
            node: node.clone(),
            service_cidr,
            node_port_base,
            dns_upstream,
            network: format!("moor-test-{node}"),
            data_dir,
            apiserver: Some(apiserver),
            components: Vec::new(),
            extra_nodes: Vec::new(),
            proxy: None,
            proxy_mode: None,
        };
        let scheduler = moor_scheduler::Config::new(url.clone());
        cluster
            .components
            .push(Running::spawn("scheduler", |stop| async move {
                Ok(moor_scheduler::run(scheduler, stop).await?)
            }));
        let mut config = moor_controller_manager::Config::new(url.clone());
        controllers(&mut config);
        cluster
            .components
            .push(Running::spawn("controller-manager", |stop| async move {
                Ok(moor_controller_manager::run(config, stop).await?)
            }));
        let agent = cluster.agent_config(&node, "node");
        cluster
            .components
            .push(Running::spawn("node agent", |stop| async move {
                Ok(moor_node::run(agent, stop).await?)
            }));
        cluster.start_proxy();
        Ok(cluster)
    }

    /// Settings of a Docker node agent `name` of this cluster, on the
    /// cluster's network, with its volumes under `dir` in the data dir;
    /// short heartbeats and back-offs so that tests move quickly.
    fn agent_config(&self, name: &str, dir: &str) -> moor_node::Config {
        let mut agent = moor_node::Config::new(
            self.url.clone(),
            name.to_string(),
            self.data_dir.path().join(dir),
        );
        agent.heartbeat = Duration::from_secs(1);
        agent.pod_resync = Duration::from_millis(300);
        agent.backoff_base = Duration::from_secs(1);
        agent.backoff_max = Duration::from_secs(4);
        agent.network = self.network.clone();
        agent
    }

    /// Starts another Docker node agent, named `<node>-<suffix>`, with its
    /// own data dir, on the cluster's network; returns its name.
    pub fn start_node(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.node);
        let agent = self.agent_config(&name, &format!("node-{suffix}"));
        self.extra_nodes.push(ExtraNode {
            name: name.clone(),
            agent: Some(Running::spawn("node agent", |stop| async move {
                Ok(moor_node::run(agent, stop).await?)
            })),
        });
        name
    }

    /// Stops node agent `name` (one of [`Cluster::start_node`]) as if its
    /// machine were lost: it stops heartbeating, its containers keep
    /// running (they are removed on drop). False if no such agent runs.
    pub async fn stop_node(&mut self, name: &str) -> bool {
        let agent = self
            .extra_nodes
            .iter_mut()
            .find(|n| n.name == name)
            .and_then(|n| n.agent.take());
        match agent {
            Some(agent) => {
                agent.stop().await;
                true
            }
            None => false,
        }
    }

    /// The proxy's settings for this cluster.
    pub fn proxy_config(&self) -> moor_proxy::Config {
        let mut config = moor_proxy::Config::new(self.url.clone(), self.node.clone());
        config.dns_upstreams = self.dns_upstream.into_iter().collect();
        config.drain = Duration::from_secs(1);
        if let Some(mode) = self.proxy_mode {
            config.mode = mode;
        }
        // Clusters side by side each need their own iptables chains.
        config.chains = format!("MT{}", self.service_cidr.network().octets()[2]);
        config
    }

    /// [`Cluster::start`] with the proxy in `mode` (its first, default-mode
    /// start is stopped and replaced).
    pub async fn start_with_proxy(name: &str, mode: moor_proxy::Mode) -> anyhow::Result<Self> {
        let mut cluster = Self::start(name, None).await?;
        cluster.set_proxy_mode(mode).await;
        Ok(cluster)
    }

    /// Restarts the proxy in `mode`.
    pub async fn set_proxy_mode(&mut self, mode: moor_proxy::Mode) {
        self.stop_proxy().await;
        self.proxy_mode = Some(mode);
        self.start_proxy();
    }

    /// Starts the proxy (again).
    pub fn start_proxy(&mut self) {
        let config = self.proxy_config();
        self.proxy = Some(Running::spawn("proxy", |stop| async move {
            Ok(moor_proxy::run(config, stop).await?)
        }));
    }

    /// Stops the proxy and waits until it has let go of its listeners.
    pub async fn stop_proxy(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop().await;
        }
    }

    /// The cluster's Docker network.
    pub fn network(&self) -> String {
        self.network.clone()
    }

    /// The cluster DNS address (the tenth of the service range).
    pub fn dns_ip(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::from(self.service_cidr.network()) + 10)
    }

    /// Stops every component, the apiserver last.
    pub async fn stop(mut self) {
        self.stop_proxy().await;
        for node in &mut self.extra_nodes {
            if let Some(agent) = node.agent.take() {
                agent.stop().await;
            }
        }
        for component in self.components.drain(..) {
            component.stop().await;
        }
        if let Some(apiserver) = self.apiserver.take() {
            apiserver.stop().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for running in self
            .proxy
            .iter()
            .chain(self.extra_nodes.iter().filter_map(|n| n.agent.as_ref()))
            .chain(self.components.iter())
            .chain(self.apiserver.iter())
        {
            running.stop.cancel();
        }
        for node in &self.extra_nodes {
            remove_node_containers(&node.name);
        }
        remove_docker_leftovers(&self.node, &self.network);
    }
}

/// Removes the containers of node agent `node` and the Docker network
/// `network`. Synchronous on purpose: it runs in `Drop`, also when the test
/// panicked.
pub fn remove_docker_leftovers(node: &str, network: &str) {
    remove_node_containers(node);
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", network])
        .output();
}

/// Removes what a node agent with a network backend (`moor up`'s default)
/// leaves on this host besides containers: its Docker networks on node
/// pod ranges (those no container uses), the VXLAN device and its iptables
/// rules. Call after the containers are gone (see
/// [`remove_docker_leftovers`]); only one such agent may run on the host.
pub fn remove_pod_network_leftovers() {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let networks = run(
        "docker",
        &["network", "ls", "-q", "--filter", "label=moor.node-range"],
    );
    for network in networks.split_whitespace() {
        run("docker", &["network", "rm", network]);
    }
    run("ip", &["link", "delete", "moor.1"]);
    for table in ["nat", "filter"] {
        for rule in run("iptables", &["-w", "-t", table, "-S"]).lines() {
            if rule.starts_with("-A ") && rule.contains("\"moor: ") {
                let mut args = vec!["-w".to_owned(), "-t".to_owned(), table.to_owned()];
                args.push("-D".to_owned());
                // `-A CHAIN rest` as iptables-save quotes it; the comment is
                // the only quoted part.
                let rest = rule.trim_start_matches("-A ");
                let (before, after) = rest.split_once('"').unwrap_or((rest, ""));
                args.extend(before.split_whitespace().map(str::to_owned));
                let (comment, tail) = after.split_once('"').unwrap_or((after, ""));
                args.push(comment.to_owned());
                args.extend(tail.split_whitespace().map(str::to_owned));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run("iptables", &args);
            }
        }
    }
}

/// Removes every container of node agent `node`, found by its label.
fn remove_node_containers(node: &str) {
    let filter = format!("label=moor.node={node}");
    if let Ok(out) = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
    {
        let ids = String::from_utf8_lossy(&out.stdout);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}
