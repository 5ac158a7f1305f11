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
use moor_api::authentication::v1::SignNodeRequest;
use moor_api::authentication::v1::certificates_client::CertificatesClient;
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
    /// Where the node keeps its certificate and pod volumes; default ~/.moor/nodes/NAME.
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

/// Pins the CA by the token, asks for a node certificate and keeps it.
async fn join(
    server: &str,
    token: &Token,
    name: &str,
    pki_dir: &Path,
) -> anyhow::Result<(Identity, String)> {
    let chain = moor_rpc::server_chain(server).await?;
    let Some(ca) = moor_pki::pinned_cert(&chain, token.ca_digest()) else {
        bail!(
            "the server at {server} does not present the CA the token pins (digest {}…): it is \
             not the cluster the token is for, or something in between answers for it; nothing \
             was sent",
            &token.ca_digest()[..16]
        );
    };
    let csr = Csr::new(&format!("system:node:{name}"), &["system:nodes"])?;
    let credentials = Credentials {
        tls: Some(ClientTls::new(&ca)),
        token: Some(token.reveal()),
    };
    let channel = moor_rpc::connect(server, &credentials)?;
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
