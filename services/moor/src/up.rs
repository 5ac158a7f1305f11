//! `moor up`: the whole cluster on this machine in one process (apiserver,
//! scheduler, controller-manager, node agent, proxy and DNS). Every
//! component still talks to the apiserver over gRPC, exactly as when they
//! run apart; `moor up` only starts them and wires their addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use moor_runtime::ContainerRuntime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Flags of `moor up`.
#[derive(Args)]
pub struct UpArgs {
    /// Where the cluster keeps its state (store, pod volumes); default ~/.moor.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address the API listens on (default 127.0.0.1:6443; with --cluster-init, port 6443 of the
    /// advertised address).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Start a cluster that more servers can join (`moor join --control-plane`): this server runs
    /// its own etcd member, on TLS from the cluster's etcd CA, instead of the embedded store.
    #[arg(long, conflicts_with = "etcd_endpoints")]
    cluster_init: bool,
    /// Comma-separated URLs of an etcd cluster of your own to use instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Name of this machine's node, and of its etcd member (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tls: crate::pki::ServeTlsArgs,
    #[command(flatten)]
    etcd_tls: crate::pki::EtcdTlsArgs,
    #[command(flatten)]
    network: crate::NetworkArgs,
    #[command(flatten)]
    pod_ranges: crate::PodRangeArgs,
    /// The service proxy's data path: userspace (it forwards) or iptables (kernel NAT rules).
    #[arg(long, default_value_t = moor_proxy::Mode::default())]
    proxy_mode: moor_proxy::Mode,
    #[command(flatten)]
    registry: crate::registry::RegistryArgs,
}

/// Flags of a server with its own etcd member (`moor up --cluster-init`,
/// `moor join --control-plane`).
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Port of this server's etcd member for clients (the apiservers), on the advertised address
    /// (default 2379).
    #[arg(long)]
    pub etcd_client_port: Option<u16>,
    /// Port of this server's etcd member for the other members, on the advertised address
    /// (default 2380).
    #[arg(long)]
    pub etcd_peer_port: Option<u16>,
    /// Run only the control plane here (a dedicated server, as the masters of Kubernetes' early
    /// deployments): no node agent, no service proxy.
    #[arg(long)]
    pub no_agent: bool,
    #[command(flatten)]
    pub node_lifecycle: crate::NodeLifecycleArgs,
}

impl ServerArgs {
    /// Refuses the etcd member's flags for a server without one (`why`
    /// names what it lacks).
    pub fn check_no_member(&self, why: &str) -> anyhow::Result<()> {
        for (flag, given) in [
            ("--etcd-client-port", self.etcd_client_port.is_some()),
            ("--etcd-peer-port", self.etcd_peer_port.is_some()),
        ] {
            anyhow::ensure!(!given, "{flag}: this server runs no etcd member ({why})");
        }
        Ok(())
    }

    /// This server's member, in `home`, at `ip`.
    pub fn member(
        &self,
        name: &str,
        home: &std::path::Path,
        ip: std::net::IpAddr,
    ) -> crate::etcd::Member {
        crate::etcd::Member {
            name: name.to_string(),
            dir: home.join("etcd"),
            ip,
            client_port: self.etcd_client_port.unwrap_or(2379),
            peer_port: self.etcd_peer_port.unwrap_or(2380),
        }
    }
}

/// Where a server keeps the cluster's objects.
pub enum Store {
    /// The embedded SQLite store under the data directory.
    Embedded,
    /// An etcd cluster run by someone else.
    External {
        /// Its client URLs.
        endpoints: Vec<String>,
        /// TLS towards it.
        tls: Option<moor_storage_etcd::EtcdTls>,
    },
    /// This server's own etcd member (in the data directory's etcd/), and
    /// how it starts the first time.
    Member(crate::etcd::Bootstrap),
}

/// What one server runs: the control plane on its store and, unless
/// `agent` is off, this machine's node agent and proxy.
pub struct Server {
    /// The data directory.
    pub home: PathBuf,
    /// The API's address.
    pub listen: SocketAddr,
    /// Where the objects are kept.
    pub store: Store,
    /// This machine's node (and etcd member) name.
    pub name: String,
    /// The server's own flags.
    pub server: ServerArgs,
    /// The API's TLS.
    pub tls: crate::pki::ServeTlsArgs,
    /// The node agent's service address (logs and exec); `None`: any port.
    pub agent_listen: Option<SocketAddr>,
    /// Whether to run the service proxy and cluster DNS beside the agent.
    pub proxy: bool,
    /// The pod network.
    pub network: crate::NetworkArgs,
    /// How pod ranges are cut.
    pub pod_ranges: crate::PodRangeArgs,
    /// The proxy's data path.
    pub proxy_mode: moor_proxy::Mode,
    /// The cluster's image registry, if this server runs it.
    pub registry: Option<crate::registry::Settings>,
    /// The cluster's registry (HOST:PORT) this node's Docker is set up to
    /// trust, when another server runs it.
    pub trusted_registry: Option<String>,
}

/// The address other machines reach this server at: --advertise-address,
/// else the listen address, else the host's address on its default route.
pub fn advertised(tls: &crate::pki::ServeTlsArgs, listen: Option<SocketAddr>) -> std::net::IpAddr {
    tls.advertise_address
        .or(listen.map(|l| l.ip()).filter(|ip| !ip.is_unspecified()))
        .unwrap_or_else(moor_rpc::host_ip)
}

/// Runs the cluster until `shutdown`.
pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let home = match args.data_dir {
        Some(dir) => dir,
        None => crate::home()?.join(".moor"),
    };
    if !args.cluster_init {
        args.server.check_no_member("no --cluster-init")?;
    }
    let store = if args.cluster_init {
        anyhow::ensure!(
            !args.tls.insecure,
            "--cluster-init needs TLS: the servers' etcd members and APIs are reached from other \
             machines (drop --insecure)"
        );
        Store::Member(crate::etcd::Bootstrap::NewCluster)
    } else if args.etcd_endpoints.is_empty() {
        Store::Embedded
    } else {
        Store::External {
            tls: args.etcd_tls.load(&args.etcd_endpoints)?,
            endpoints: args.etcd_endpoints,
        }
    };
    let listen = match args.listen {
        Some(listen) => listen,
        None if args.cluster_init => SocketAddr::new(advertised(&args.tls, None), 6443),
        None => SocketAddr::from(([127, 0, 0, 1], 6443)),
    };
    let server = Server {
        home,
        listen,
        store,
        name: args.node_name.unwrap_or_else(crate::hostname),
        server: args.server,
        tls: args.tls,
        agent_listen: None,
        proxy: true,
        network: args.network,
        pod_ranges: args.pod_ranges,
        proxy_mode: args.proxy_mode,
        registry: args.registry.settings()?,
        trusted_registry: None,
    };
    serve(server, shutdown).await
}

/// Runs one server until `shutdown`.
pub async fn serve(server: Server, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Server {
        home,
        listen,
        store,
        name: node_name,
        server: server_args,
        tls: tls_args,
        agent_listen,
        proxy,
        network,
        pod_ranges,
        proxy_mode,
        registry,
        trusted_registry,
    } = server;
    let agent = !server_args.no_agent;
    let pod_ranges = pod_ranges.ranges(network.cluster_cidr)?;
    if agent {
        check_docker().await?;
    }
    let pki = if tls_args.insecure {
        crate::pki::warn_insecure(listen);
        None
    } else {
        let dir = match &tls_args.pki_dir {
            Some(dir) => dir.clone(),
            None => home.join("data").join("pki"),
        };
        let pki = crate::pki::open(
            &dir,
            Duration::from_secs(tls_args.certificate_lifetime_seconds),
        )?;
        Some(std::sync::Arc::new(pki))
    };
    let mut tasks = JoinSet::new();
    let mut control_plane = None;
    let (storage, etcd_tls, several_servers) = match store {
        Store::Embedded => (
            moor_apiserver::Storage::DataDir(home.join("data")),
            None,
            false,
        ),
        Store::External { endpoints, tls } => (
            moor_apiserver::Storage::Etcd {
                endpoints,
                start: moor_storage_etcd::Start::Random,
            },
            tls,
            true,
        ),
        Store::Member(bootstrap) => {
            let pki = pki
                .as_ref()
                .context("a server with its own etcd member needs TLS")?;
            let member = server_args.member(&node_name, &home, advertised(&tls_args, Some(listen)));
            if !member.has_data() && home.join("data").join("moor.db").exists() {
                bail!(
                    "{} holds a cluster on the embedded store: a new etcd member would start an \
                     empty cluster beside it. Use another --data-dir",
                    home.join("data").display()
                );
            }
            let etcd_pki = crate::etcd::pki(pki.path(), pki.leaf_validity())?;
            let tls = crate::etcd::client_tls(&etcd_pki)?;
            let etcd_ca = etcd_pki.ca().clone();
            let endpoints =
                crate::etcd::start(member, etcd_pki, bootstrap, &tls, &mut tasks, &shutdown)
                    .await?;
            control_plane = Some(moor_apiserver::ControlPlane {
                etcd_ca,
                etcd_endpoints: endpoints.clone(),
                member_name: node_name.clone(),
            });
            // Its own member first (etcd::start lists it first): it lives
            // and dies with this server, and forwards to etcd's leader.
            let storage = moor_apiserver::Storage::Etcd {
                endpoints,
                start: moor_storage_etcd::Start::First,
            };
            (storage, Some(tls), true)
        }
    };
    let mut config = moor_apiserver::Config::new(storage);
    config.listen = listen;
    config.advertise = Some(SocketAddr::new(
        advertised(&tls_args, Some(listen)),
        listen.port(),
    ));
    config.etcd_tls = etcd_tls;
    if let Some(pki) = &pki {
        let mut tls = crate::pki::apiserver_tls(pki, listen, &tls_args)?;
        tls.control_plane = control_plane;
        config.tls = Some(tls);
    }
    // Each component proves who it is with a certificate of its own, as
    // when it runs on another machine (Kubernetes' user names).
    let credentials = |name: &str, user: &str, groups: &[&str]| match &pki {
        Some(pki) => crate::pki::component(pki, name, user, groups),
        None => Ok(moor_rpc::Credentials::default()),
    };
    let apiserver = moor_apiserver::ApiServer::bind(config)
        .await
        .map_err(|err| match err {
            moor_apiserver::StartError::Listen { addr, source } => anyhow::anyhow!(
                "cannot listen on {addr}: {source}. Is another `moor up` or apiserver running? \
             Stop it, or pick another address with --listen"
            ),
            other => anyhow::Error::from(other),
        })?;
    let url = crate::pki::local_url(apiserver.local_addr(), pki.is_some());
    let admin = credentials("admin", crate::pki::ADMIN.0, crate::pki::ADMIN.1)?;
    let apiserver_tls = apiserver.tls();
    if let (Some(pki), Some(tls)) = (&pki, apiserver_tls.clone()) {
        tokio::spawn(crate::pki::renew_serving(
            pki.clone(),
            listen,
            tls_args.clone(),
            tls,
            shutdown.clone(),
        ));
    }
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move { apiserver.run(shutdown).await.context("apiserver") });
    }
    moor_client::Client::connect(&url, &admin)?
        .wait_ready(Duration::from_secs(10))
        .await
        .with_context(|| format!("the apiserver at {url} did not become ready"))?;
    tracing::info!(%url, "apiserver ready");

    // Served to other machines when the API is, with the API's certificate.
    let advertised_ip = advertised(&tls_args, Some(listen));
    let registry_front = match apiserver_tls {
        Some(tls) if !listen.ip().is_loopback() => registry
            .as_ref()
            .map(|r| (SocketAddr::new(advertised_ip, r.port), tls)),
        _ => None,
    };
    let registry_front_addr = registry_front.as_ref().map(|(addr, _)| *addr);
    // This node pulls the cluster's images by the name the other nodes use.
    let trusted_registry = registry_front_addr
        .map(|addr| addr.to_string())
        .or(trusted_registry);
    if let Some(settings) = registry.clone() {
        crate::registry::Registry::new(&home, settings)
            .start(registry_front, &mut tasks, &shutdown)
            .await?;
    }

    // With several servers, one scheduler and one controller-manager act
    // at a time: the holders of their Leases.
    let identity = format!("{node_name}-{}", std::process::id());
    let mut scheduler = moor_scheduler::Config::new(url.clone());
    scheduler.credentials = credentials("scheduler", "system:kube-scheduler", &[])?;
    scheduler.leader_elect = several_servers;
    scheduler.identity = identity.clone();
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            moor_scheduler::run(scheduler, shutdown)
                .await
                .context("scheduler")
        });
    }
    tracing::info!("scheduler started");
    let mut controllers = moor_controller_manager::Config::new(url.clone());
    controllers.pod_ranges = pod_ranges;
    controllers.credentials =
        credentials("controller-manager", "system:kube-controller-manager", &[])?;
    controllers.leader_elect = several_servers;
    controllers.identity = identity;
    server_args.node_lifecycle.apply(&mut controllers);
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            moor_controller_manager::run(controllers, shutdown)
                .await
                .context("controller-manager")
        });
    }
    tracing::info!("controller-manager started");

    if agent {
        let mut node = moor_node::Config::new(url.clone(), node_name.clone(), home.join("node"));
        network.apply(&mut node);
        if agent_listen.is_some() {
            node.agent_listen = agent_listen;
        }
        if let Some(pki) = &pki {
            // One identity for both sides: the node towards the apiserver, and
            // its agent's service towards the apiserver's calls.
            let identity = pki
                .node("node", &node_name)
                .context("this node's certificate")?;
            if let Some(registry) = &trusted_registry {
                crate::registry::trust(registry, pki.ca().cert_pem(), &identity, &node_name)?;
            }
            let (credentials, agent_tls) = crate::pki::node(&identity, pki.ca().cert_pem());
            node.credentials = credentials;
            node.agent_tls = Some(agent_tls);
        }
        {
            let shutdown = shutdown.clone();
            tasks.spawn(async move { moor_node::run(node, shutdown).await.context("node agent") });
        }
        tracing::info!(node = %node_name, "node agent started");
    }
    if agent && proxy {
        let mut proxy = moor_proxy::Config::new(url.clone(), node_name.clone());
        proxy.credentials = credentials("proxy", "system:kube-proxy", &[])?;
        proxy.mode = proxy_mode;
        {
            let shutdown = shutdown.clone();
            tasks.spawn(async move { moor_proxy::run(proxy, shutdown).await.context("proxy") });
        }
        tracing::info!("proxy and cluster DNS started");
    }

    let config_path = write_context(&url, pki.as_ref())?;
    println!(
        "moor is up: the API listens on {url} (context \"moor\" in {})",
        config_path.display()
    );
    if let Some(settings) = &registry {
        let port = settings.port;
        println!("the cluster's image registry: docker push localhost:{port}/IMAGE:TAG");
        if let Some(front) = registry_front_addr {
            println!("  nodes pull it as {front}/IMAGE:TAG (TLS, cluster certificates only)");
        }
    }
    if agent {
        println!("try:");
        println!("  moorctl get nodes");
        println!("  moorctl apply -f examples/pod.yaml");
        println!("  moorctl get pods -o wide");
    } else {
        // A dedicated server: pods need nodes joined from elsewhere.
        println!("no node here (--no-agent): join nodes with `moor token create` and `moor join`");
    }

    let result = wait_all(tasks, &shutdown).await;
    tracing::info!("moor stopped; pods keep running and are adopted by the next `moor up`");
    result
}

/// Waits for every component; the first to fail stops the rest, and its
/// error is the result.
pub async fn wait_all(
    mut tasks: JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(err) = outcome {
            if result.is_ok() {
                result = Err(err);
            }
            shutdown.cancel();
        }
    }
    result
}

/// Fails with what to do when Docker is not there or the sandbox image is missing.
async fn check_docker() -> anyhow::Result<()> {
    let docker = moor_runtime::Docker::connect("moor").await.map_err(|err| {
        anyhow::anyhow!(
            "Docker is not reachable ({err}). Start it (`sudo systemctl start docker`, or `sudo dockerd &`) \
             and make sure this user may use /var/run/docker.sock"
        )
    })?;
    if docker.image_id("moor/pause:0.1").await?.is_none() {
        bail!("the pod sandbox image moor/pause:0.1 is missing: build it with ./images/build.sh");
    }
    Ok(())
}

/// Points moorctl's current context at this cluster, as its administrator
/// (the CA and the admin's certificate, from `pki`; none when insecure).
fn write_context(
    url: &str,
    pki: Option<&std::sync::Arc<moor_pki::PkiDir>>,
) -> anyhow::Result<PathBuf> {
    let path = moorctl::config::Config::path();
    let mut config = moorctl::config::Config::load(&path)?;
    config.set_context("moor", Some(url.to_string()), None);
    if let Some(pki) = pki {
        let (user, groups) = crate::pki::ADMIN;
        let admin = pki.client("admin", user, groups)?;
        config.set_credentials(
            "moor",
            pki.ca().cert_pem(),
            admin.cert_pem(),
            admin.key_pem(),
        );
    } else {
        config.clear_credentials("moor");
    }
    config.current_context = "moor".to_string();
    config.save(&path)?;
    Ok(path)
}
