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
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Comma-separated etcd URLs to use instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Name of this machine's node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
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
}

/// Runs the cluster until `shutdown`.
pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let home = match args.data_dir {
        Some(dir) => dir,
        None => crate::home()?.join(".moor"),
    };
    let pod_ranges = args.pod_ranges.ranges(args.network.cluster_cidr)?;
    check_docker().await?;
    let storage = if args.etcd_endpoints.is_empty() {
        moor_apiserver::Storage::DataDir(home.join("data"))
    } else {
        moor_apiserver::Storage::Etcd(args.etcd_endpoints.clone())
    };
    let mut config = moor_apiserver::Config::new(storage);
    config.listen = args.listen;
    config.etcd_tls = args.etcd_tls.load(&args.etcd_endpoints)?;
    let pki = if args.tls.insecure {
        crate::pki::warn_insecure(args.listen);
        None
    } else {
        let dir = match &args.tls.pki_dir {
            Some(dir) => dir.clone(),
            None => home.join("data").join("pki"),
        };
        let pki = crate::pki::open(
            &dir,
            Duration::from_secs(args.tls.certificate_lifetime_seconds),
        )?;
        config.tls = Some(crate::pki::apiserver_tls(&pki, args.listen, &args.tls)?);
        Some(std::sync::Arc::new(pki))
    };
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
    let mut tasks = JoinSet::new();
    if let (Some(pki), Some(tls)) = (&pki, apiserver.tls()) {
        tokio::spawn(crate::pki::renew_serving(
            pki.clone(),
            args.listen,
            args.tls.clone(),
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

    let mut scheduler = moor_scheduler::Config::new(url.clone());
    scheduler.credentials = credentials("scheduler", "system:kube-scheduler", &[])?;
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
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            moor_controller_manager::run(controllers, shutdown)
                .await
                .context("controller-manager")
        });
    }
    tracing::info!("controller-manager started");

    let node_name = match args.node_name {
        Some(name) => name,
        None => crate::hostname(),
    };
    let mut node = moor_node::Config::new(url.clone(), node_name.clone(), home.join("node"));
    args.network.apply(&mut node);
    if let Some(pki) = &pki {
        // One identity for both sides: the node towards the apiserver, and
        // its agent's service towards the apiserver's calls.
        let identity = pki
            .node("node", &node_name)
            .context("this node's certificate")?;
        let (credentials, agent_tls) = crate::pki::node(&identity, pki.ca().cert_pem());
        node.credentials = credentials;
        node.agent_tls = Some(agent_tls);
    }
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move { moor_node::run(node, shutdown).await.context("node agent") });
    }
    tracing::info!(node = %node_name, "node agent started");
    let mut proxy = moor_proxy::Config::new(url.clone(), node_name.clone());
    proxy.credentials = credentials("proxy", "system:kube-proxy", &[])?;
    proxy.mode = args.proxy_mode;
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move { moor_proxy::run(proxy, shutdown).await.context("proxy") });
    }
    tracing::info!("proxy and cluster DNS started");

    let config_path = write_context(&url, pki.as_ref())?;
    println!(
        "moor is up: the API listens on {url} (context \"moor\" in {})",
        config_path.display()
    );
    println!("try:");
    println!("  moorctl get nodes");
    println!("  moorctl apply -f examples/pod.yaml");
    println!("  moorctl get pods -o wide");

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
