//! `moor join https://SERVER:6443 --token TOKEN`: this machine becomes a
//! node of the cluster (node agent and proxy).
//!
//! The token pins the cluster CA by its digest. The joiner reads the
//! certificates the server presents, keeps the one whose digest the token
//! names, and stops before sending anything secret when there is none (a
//! server of another cluster, or someone in between). Then, over TLS that
//! trusts only that CA, it sends the token with a signing request for
//! `system:node:NAME`; the key never leaves the machine. The certificate
//! and the CA are kept under the data directory, so a later `moor join`
//! resumes with them and needs no token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use moor_api::authentication::v1::certificates_client::CertificatesClient;
use moor_api::authentication::v1::{JoinServerRequest, SignNodeRequest};
use moor_pki::{Csr, Identity, Token};
use moor_rpc::{ClientTls, Credentials};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The name of the node's identity files (`node.crt`, `node.key`).
const NODE_IDENTITY: &str = "node";
/// The CA file beside them.
const CA_FILE: &str = "ca.crt";

/// Flags of `moor join`.
#[derive(Args)]
pub struct JoinArgs {
    /// The cluster's apiserver, https://HOST:PORT.
    server: String,
    /// The join token `moor token create` printed; not needed when the data
    /// directory already holds this node's certificate.
    #[arg(long, env = "MOOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Where the node keeps its certificate and pod volumes; default ~/.moor/nodes/NAME
    /// (with --control-plane, where the server keeps everything: default ~/.moor).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the agent's own service (logs and exec, for the apiserver); port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:10250")]
    agent_listen: SocketAddr,
    /// Do not run the service proxy and cluster DNS (this host runs one already).
    #[arg(long)]
    no_proxy: bool,
    #[command(flatten)]
    network: crate::NetworkArgs,
    /// The service proxy's data path: userspace (it forwards) or iptables (kernel NAT rules).
    #[arg(long, default_value_t = moor_proxy::Mode::default())]
    proxy_mode: moor_proxy::Mode,
    #[command(flatten)]
    registry: crate::registry::TrustArgs,
    /// Join as a server of the control plane: this machine runs an etcd member, an apiserver, a
    /// scheduler and a controller-manager too. Takes a token from `moor token create
    /// --control-plane`, and a server started with `moor up --cluster-init` (or joined so).
    #[arg(long)]
    control_plane: bool,
    /// With --control-plane: the address the API listens on (default: port 6443 of the
    /// advertised address).
    #[arg(long, requires = "control_plane")]
    listen: Option<SocketAddr>,
    /// With --control-plane: the address other machines reach this server's API and etcd
    /// member at (default: the listen address, else the host's address on its default route).
    #[arg(long, requires = "control_plane")]
    advertise_address: Option<std::net::IpAddr>,
    /// With --control-plane: an extra DNS name or IP address the API's certificate covers
    /// (repeatable).
    #[arg(long, value_name = "NAME|IP", requires = "control_plane")]
    tls_san: Vec<String>,
    #[command(flatten)]
    server_args: crate::up::ServerArgs,
}

/// Joins (or rejoins) and runs the node until `shutdown`.
pub async fn run(args: JoinArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !args.server.starts_with("https://") {
        bail!(
            "{}: moor join needs the apiserver's https:// URL (it pins the CA by the token)",
            args.server
        );
    }
    let name = args.name.clone().unwrap_or_else(crate::hostname);
    moor_labels::validation::dns1123_subdomain(&name)
        .map_err(|why| anyhow::anyhow!("--name {name:?}: {why}"))?;
    if args.control_plane {
        return join_control_plane(args, name, shutdown).await;
    }
    anyhow::ensure!(
        !args.server_args.no_agent,
        "--no-agent: a machine joined without --control-plane runs nothing but its agent"
    );
    args.server_args.check_no_member("no --control-plane")?;
    args.server_args
        .node_lifecycle
        .check_none("a node, joined without --control-plane")?;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => crate::home()?.join(".moor").join("nodes").join(&name),
    };
    let pki_dir = data_dir.join("pki");
    let started = tokio::time::Instant::now();
    let (identity, ca) = match stored(&pki_dir, &name)? {
        Some(stored) => {
            tracing::info!(dir = %pki_dir.display(), "resuming with this node's certificate");
            stored
        }
        None => {
            let Some(token) = &args.token else {
                bail!(
                    "{} holds no certificate of node {name:?} yet: pass --token (moor token create \
                     on a server prints one)",
                    pki_dir.display()
                );
            };
            let token = Token::parse(token).context("--token")?;
            let joined = join(&args.server, &token, &name, &pki_dir).await?;
            tracing::info!(node = %name, elapsed = ?started.elapsed(), "joined the cluster");
            joined
        }
    };
    if let Some(registry) = args.registry.registry(&args.server)? {
        crate::registry::trust(&registry, &ca, &identity, &name)?;
    }
    let (credentials, agent_tls) = crate::pki::node(&identity, &ca);

    let mut tasks = JoinSet::new();
    let mut node = moor_node::Config::new(args.server.clone(), name.clone(), data_dir);
    node.credentials = credentials.clone();
    node.agent_listen = Some(args.agent_listen);
    node.agent_tls = Some(agent_tls);
    args.network.apply(&mut node);
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move { moor_node::run(node, shutdown).await.context("node agent") });
    }
    if !args.no_proxy {
        let mut proxy = moor_proxy::Config::new(args.server.clone(), name.clone());
        proxy.credentials = credentials;
        proxy.mode = args.proxy_mode;
        let shutdown = shutdown.clone();
        tasks.spawn(async move { moor_proxy::run(proxy, shutdown).await.context("proxy") });
    }
    println!("node {name} joined {}", args.server);
    crate::up::wait_all(tasks, &shutdown).await
}

/// This node's stored identity and the CA, if its data directory has them
/// and they are still valid; an error if they belong to another node.
fn stored(pki_dir: &Path, name: &str) -> anyhow::Result<Option<(Identity, String)>> {
    if !pki_dir.join(format!("{NODE_IDENTITY}.crt")).exists() {
        return Ok(None);
    }
    let identity = Identity::load(pki_dir, NODE_IDENTITY)?;
    let ca_path = pki_dir.join(CA_FILE);
    let ca = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("{}: cannot read", ca_path.display()))?;
    let user = format!("system:node:{name}");
    let info = identity.info();
    if info.common_name.as_deref() != Some(user.as_str()) {
        bail!(
            "{} holds the certificate of {:?}, not of node {name:?}: use another --data-dir or --name",
            pki_dir.display(),
            info.common_name.as_deref().unwrap_or("nobody")
        );
    }
    if !info.is_valid_at(SystemTime::now()) {
        tracing::warn!(dir = %pki_dir.display(), "this node's certificate has expired; a token is needed again");
        return Ok(None);
    }
    if !info.dns_names.iter().any(|n| n == name) {
        tracing::warn!(dir = %pki_dir.display(), "this node's certificate predates serving certificates; a token is needed again");
        return Ok(None);
    }
    Ok(Some((identity, ca)))
}

/// Joins the control plane (first time: fetches the cluster's keys, adds
/// this machine's etcd member as a learner) and runs the server until
/// `shutdown`.
async fn join_control_plane(
    args: JoinArgs,
    name: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let home = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => crate::home()?.join(".moor"),
    };
    let tls = crate::pki::ServeTlsArgs {
        insecure: false,
        tls_san: args.tls_san.clone(),
        advertise_address: args.advertise_address,
        pki_dir: None,
        certificate_lifetime_seconds: moor_pki::DEFAULT_LEAF_VALIDITY.as_secs(),
    };
    let ip = crate::up::advertised(&tls, args.listen);
    let listen = args.listen.unwrap_or(SocketAddr::new(ip, 6443));
    let member = args.server_args.member(&name, &home, ip);
    let bootstrap = if member.has_data() {
        tracing::info!(dir = %member.dir.display(), "resuming with this server's etcd member");
        // The flags of a first start; etcd reads its data instead.
        crate::etcd::Bootstrap::NewCluster
    } else {
        let Some(token) = &args.token else {
            bail!(
                "{} holds no etcd member yet: pass --token (`moor token create --control-plane` \
                 on a server prints one)",
                member.dir.display()
            );
        };
        let token = Token::parse(token).context("--token")?;
        add_member(
            &args.server,
            &token,
            &member,
            &home.join("data").join("pki"),
        )
        .await?
    };
    let server = crate::up::Server {
        home,
        listen,
        store: crate::up::Store::Member(bootstrap),
        name,
        server: args.server_args,
        tls,
        agent_listen: Some(args.agent_listen),
        proxy: !args.no_proxy,
        network: args.network,
        pod_ranges: crate::PodRangeArgs {
            node_cidr_mask_size: 24,
            no_allocate_node_cidrs: false,
        },
        proxy_mode: args.proxy_mode,
        registry: None,
        trusted_registry: args.registry.registry(&args.server)?,
    };
    crate::up::serve(server, shutdown).await
}

/// Fetches the cluster's keys from `server` (pinned by the token) into
/// `pki_dir`, and adds `member` to etcd as a learner: how it starts.
async fn add_member(
    server: &str,
    token: &Token,
    member: &crate::etcd::Member,
    pki_dir: &Path,
) -> anyhow::Result<crate::etcd::Bootstrap> {
    let (_, channel) = pinned(server, token).await?;
    let keys = tokio::time::timeout(
        Duration::from_secs(30),
        CertificatesClient::new(channel).join_server(JoinServerRequest {
            server_name: member.name.clone(),
        }),
    )
    .await
    .context("the apiserver did not answer within 30 s")?
    .map_err(|status| {
        anyhow::anyhow!(
            "the apiserver refused to let {} join the control plane: {}",
            member.name,
            status.message()
        )
    })?
    .into_inner();
    keep_ca(pki_dir, &keys.ca_pem, &keys.ca_key_pem)?;
    keep_ca(
        &pki_dir.join("etcd"),
        &keys.etcd_ca_pem,
        &keys.etcd_ca_key_pem,
    )?;
    let etcd_pki = crate::etcd::pki(pki_dir, moor_pki::DEFAULT_LEAF_VALIDITY)?;
    let tls = crate::etcd::client_tls(&etcd_pki)?;
    let members = moor_storage_etcd::Members::connect(&keys.etcd_endpoints, Some(&tls)).await?;
    let peer = member.peer_url();
    let listed = members.list().await.context("listing etcd's members")?;
    let list = match listed.iter().find(|m| m.peer_urls.contains(&peer)) {
        // Added by an earlier attempt that stopped before it started.
        Some(m) if m.name.is_empty() => listed,
        Some(m) => bail!(
            "etcd already has a member at {peer} ({:?}): remove it first (`moor leave` on that \
             server once it is stopped; if its data is lost, `moorctl delete node {} \
             --remove-etcd-member` through another server), or advertise another address",
            m.name,
            m.name
        ),
        None => {
            let (id, list) = add_learner(&members, &peer).await?;
            tracing::info!(id, %peer, "added this server's etcd member as a learner");
            list
        }
    };
    // Every member by its peer URL; etcd checks the set, not the names.
    let initial = list
        .iter()
        .filter_map(|m| {
            let url = m.peer_urls.first()?;
            let name = if m.peer_urls.contains(&peer) {
                member.name.clone()
            } else if m.name.is_empty() {
                format!("unstarted-{:x}", m.id)
            } else {
                m.name.clone()
            };
            Some(format!("{name}={url}"))
        })
        .collect::<Vec<_>>()
        .join(",");
    crate::etcd::remember(
        &member.dir.join(crate::etcd::KNOWN_FILE),
        &keys.etcd_endpoints,
    )?;
    Ok(crate::etcd::Bootstrap::Join(initial))
}

/// Adds a learner at `peer`. etcd holds one learner at a time, and adds
/// none until every voter has been connected for 5 s ("unhealthy
/// cluster"): while another server is joining, or has just joined, this
/// one waits its turn.
async fn add_learner(
    members: &moor_storage_etcd::Members,
    peer: &str,
) -> anyhow::Result<(u64, Vec<moor_storage_etcd::Member>)> {
    crate::etcd::retry(
        Duration::from_secs(120),
        Duration::from_secs(1),
        || members.add_learner(peer),
        |err| {
            let text = err.to_string();
            text.contains("too many learner") || text.contains("unhealthy cluster")
        },
    )
    .await
    .with_context(|| format!("adding this server's etcd member ({peer}) as a learner"))
}

/// Keeps a CA (certificate and key) in `dir`; one there already must be
/// the same.
fn keep_ca(dir: &Path, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
    let ca = moor_pki::Ca::from_pem(cert_pem, key_pem).context("the CA the server sent")?;
    if dir.join(moor_pki::CA_CERT_FILE).exists() {
        let held =
            moor_pki::Ca::load(dir).with_context(|| format!("the CA in {}", dir.display()))?;
        anyhow::ensure!(
            held.digest() == ca.digest(),
            "{} holds another cluster's CA: use another --data-dir",
            dir.display()
        );
        return Ok(());
    }
    ca.save(dir)
        .with_context(|| format!("{}: cannot keep the CA", dir.display()))
}

/// Connects to `server` trusting only the CA the token pins (and sending
/// nothing before it is found), authenticated by the token: the CA (PEM)
/// and the channel.
async fn pinned(server: &str, token: &Token) -> anyhow::Result<(String, moor_rpc::Channel)> {
    let chain = moor_rpc::server_chain(server).await?;
    let Some(ca) = moor_pki::pinned_cert(&chain, token.ca_digest()) else {
        bail!(
            "the server at {server} does not present the CA the token pins (digest {}…): it is \
             not the cluster the token is for, or something in between answers for it; nothing \
             was sent",
            &token.ca_digest()[..16]
        );
    };
    let credentials = Credentials {
        tls: Some(ClientTls::new(&ca)),
        token: Some(token.reveal()),
    };
    let channel = moor_rpc::connect(server, &credentials)?;
    Ok((ca, channel))
}

/// Pins the CA by the token, asks for a node certificate and keeps it.
async fn join(
    server: &str,
    token: &Token,
    name: &str,
    pki_dir: &Path,
) -> anyhow::Result<(Identity, String)> {
    let (ca, channel) = pinned(server, token).await?;
    let csr = Csr::new(&format!("system:node:{name}"), &["system:nodes"])?;
    let signed = tokio::time::timeout(
        Duration::from_secs(30),
        CertificatesClient::new(channel).sign_node(SignNodeRequest {
            node_name: name.to_string(),
            csr_pem: csr.pem().to_string(),
        }),
    )
    .await
    .context("the apiserver did not answer within 30 s")?
    .map_err(|status| {
        anyhow::anyhow!("the apiserver refused to join {name}: {}", status.message())
    })?
    .into_inner();
    let identity = csr.into_identity(signed.certificate_pem)?;
    identity.save(pki_dir, NODE_IDENTITY)?;
    std::fs::write(pki_dir.join(CA_FILE), &ca)
        .with_context(|| format!("{}: cannot write", pki_dir.join(CA_FILE).display()))?;
    Ok((identity, ca))
}
