//! A server's own etcd member (`moor up --cluster-init`, `moor join
//! --control-plane`): Debian's etcd binary as a child process, its data
//! under moor's data directory, peer and client traffic on TLS from the
//! cluster's etcd CA (`pki/etcd/`, beside the cluster CA; a CA of its own
//! so that no node certificate opens etcd), restarted when it exits, and
//! stopped with moor.
//!
//! It runs as a [`crate::child`]: a crashed or killed server leaves no
//! member behind holding its ports and data.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use moor_pki::{PkiDir, ServerNames};
use moor_storage_etcd::{EtcdTls, Members};
use tokio::process::Child;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The etcd CA's common name.
const ETCD_CA_NAME: &str = "moor-etcd-ca";
/// The user of the apiserver's client certificate towards etcd.
const APISERVER_ETCD_USER: &str = "moor-apiserver";
/// How long a starting member gets to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a new learner gets to catch up and be promoted.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);
/// The file in the member's directory listing the members' client URLs.
pub const KNOWN_FILE: &str = "client-urls";
/// How often that list is brought up to date.
const KNOWN_REFRESH: Duration = Duration::from_secs(10);

/// This server's etcd member.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its name in the cluster: the server's name.
    pub name: String,
    /// Its directory: `data/` (etcd's), `etcd.log`.
    pub dir: PathBuf,
    /// The address other servers reach it at.
    pub ip: IpAddr,
    /// Port of its client URL (the apiservers').
    pub client_port: u16,
    /// Port of its peer URL (the other members').
    pub peer_port: u16,
}

/// How a member starts the first time; later starts use its data.
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// It is the whole, new cluster.
    NewCluster,
    /// It joins the cluster of these members (`name=peer-url,...`, itself
    /// included), already added as a learner.
    Join(String),
}

impl Member {
    /// Where clients reach it.
    pub fn client_url(&self) -> String {
        url(self.ip, self.client_port)
    }

    /// Where the other members reach it.
    pub fn peer_url(&self) -> String {
        url(self.ip, self.peer_port)
    }

    /// Whether it has run here before (its data directory holds a member).
    pub fn has_data(&self) -> bool {
        self.dir.join("data").join("member").exists()
    }
}

fn url(ip: IpAddr, port: u16) -> String {
    format!("https://{}", std::net::SocketAddr::new(ip, port))
}

/// The cluster's etcd CA in `pki_dir/etcd`, created with the cluster on the
/// first server; a joining server writes the one it was handed there first.
pub fn pki(pki_dir: &Path, lifetime: Duration) -> anyhow::Result<PkiDir> {
    let dir = pki_dir.join("etcd");
    PkiDir::open_or_create_named(&dir, ETCD_CA_NAME, lifetime)
        .with_context(|| format!("the etcd CA in {}", dir.display()))
}

/// The apiserver's TLS towards etcd: the etcd CA and a client certificate
/// from it.
pub fn client_tls(pki: &PkiDir) -> anyhow::Result<EtcdTls> {
    let client = pki
        .client("apiserver-etcd-client", APISERVER_ETCD_USER, &[])
        .context("the apiserver's certificate towards etcd")?;
    Ok(EtcdTls {
        ca_pem: pki.ca().cert_pem().to_string(),
        client: Some((client.cert_pem().to_string(), client.key_pem().to_string())),
    })
}

/// Starts `member` and keeps it running until `shutdown`, then stops it.
async fn run(
    member: Member,
    pki: PkiDir,
    bootstrap: Bootstrap,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let names = ServerNames {
        dns: vec!["localhost".to_string(), crate::hostname()],
        ips: vec![member.ip, IpAddr::V4(Ipv4Addr::LOCALHOST)],
    };
    // One certificate for both sides: peers dial each other with it.
    pki.peer("member", &names)
        .context("etcd's member certificate")?;
    std::fs::create_dir_all(&member.dir)
        .with_context(|| format!("{}: cannot create", member.dir.display()))?;
    crate::child::keep_running(
        "etcd",
        member.dir.join("etcd.log"),
        || spawn(&member, pki.path(), &bootstrap),
        shutdown,
    )
    .await
}

fn spawn(member: &Member, pki_dir: &Path, bootstrap: &Bootstrap) -> anyhow::Result<Child> {
    let log_path = member.dir.join("etcd.log");
    let file = |name: &str| pki_dir.join(name);
    let (initial_cluster, state) = match bootstrap {
        Bootstrap::NewCluster => (format!("{}={}", member.name, member.peer_url()), "new"),
        Bootstrap::Join(cluster) => (cluster.clone(), "existing"),
    };
    let mut command = crate::child::command("etcd", &log_path)?;
    command
        .args(["--name", &member.name])
        .arg("--data-dir")
        .arg(member.dir.join("data"))
        .args(["--listen-client-urls", &member.client_url()])
        .args(["--advertise-client-urls", &member.client_url()])
        .args(["--listen-peer-urls", &member.peer_url()])
        .args(["--initial-advertise-peer-urls", &member.peer_url()])
        .args(["--initial-cluster", &initial_cluster])
        .args(["--initial-cluster-state", state])
        .args(["--initial-cluster-token", "moor"])
        .arg("--cert-file")
        .arg(file("member.crt"))
        .arg("--key-file")
        .arg(file("member.key"))
        .arg("--trusted-ca-file")
        .arg(file(moor_pki::CA_CERT_FILE))
        .arg("--client-cert-auth")
        .arg("--peer-cert-file")
        .arg(file("member.crt"))
        .arg("--peer-key-file")
        .arg(file("member.key"))
        .arg("--peer-trusted-ca-file")
        .arg(file(moor_pki::CA_CERT_FILE))
        .arg("--peer-client-cert-auth")
        .args(["--logger", "zap", "--log-outputs", "stderr"]);
    let child = command.spawn().context(
        "cannot start etcd (through setpriv): install Debian's etcd-server package, or run \
         without --cluster-init on the embedded store",
    )?;
    tracing::info!(
        name = %member.name,
        client = %member.client_url(),
        peer = %member.peer_url(),
        log = %log_path.display(),
        "etcd member started"
    );
    Ok(child)
}

/// Starts this server's member as one of `tasks`, waits until it is a
/// voting member of a cluster that answers (a learner is promoted once it
/// has caught up), and returns the voting members' client URLs (its own
/// first), for the apiserver. `tls` is the apiserver's towards etcd.
pub async fn start(
    member: Member,
    pki: PkiDir,
    bootstrap: Bootstrap,
    tls: &EtcdTls,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<String>> {
    let local = member.client_url();
    let peer = member.peer_url();
    let known_path = member.dir.join(KNOWN_FILE);
    {
        let member = member.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            run(member, pki, bootstrap, shutdown)
                .await
                .context("etcd member")
        });
    }
    // Asked through this member and the others last known, for a learner
    // does not answer, and a restarted member only once it has a leader.
    let mut endpoints = vec![local.clone()];
    endpoints.extend(known(&known_path).into_iter().filter(|e| *e != local));
    let members = Members::connect(&endpoints, Some(tls)).await?;
    let listed = retry(
        START_TIMEOUT,
        Duration::from_millis(200),
        || members.list(),
        |_| true,
    )
    .await
    .map_err(|err| {
        anyhow::anyhow!(
            "etcd ({}) did not answer within {START_TIMEOUT:?}: {err}; its log: {}",
            endpoints.join(","),
            member.dir.join("etcd.log").display()
        )
    })?;
    let Some(me) = listed.into_iter().find(|m| m.peer_urls.contains(&peer)) else {
        anyhow::bail!(
            "etcd's members do not include this server's ({peer}): it was removed from the \
             cluster. To join again, move {} away and run `moor join --control-plane` with a \
             new token",
            member.dir.display()
        );
    };
    if me.is_learner {
        tracing::info!(
            id = me.id,
            "waiting for this server's etcd learner to catch up"
        );
        promote(&members, me.id).await?;
        tracing::info!(id = me.id, "this server's etcd member votes now");
    }
    let mut urls = voting_client_urls(&members).await?;
    // This server's own member first: the apiserver starts there.
    urls.sort_by_key(|url| *url != local);
    if let Err(err) = remember(&known_path, &urls) {
        tracing::warn!(%err, "cannot keep the etcd members' URLs for the next start");
    }
    tasks.spawn(keep_known(
        members,
        known_path,
        urls.clone(),
        shutdown.clone(),
    ));
    Ok(urls)
}

/// Keeps the list of the members' client URLs current as servers join and
/// leave, for this server's next start and for `moor leave`, which reach
/// the cluster through them.
async fn keep_known(
    members: Members,
    path: PathBuf,
    mut known: Vec<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(KNOWN_REFRESH) => {}
        }
        match voting_client_urls(&members).await {
            Ok(urls) if urls != known => {
                tracing::info!(members = ?urls, "etcd's members changed");
                match remember(&path, &urls) {
                    Ok(()) => known = urls,
                    Err(err) => tracing::warn!(%err, "cannot keep the etcd members' URLs"),
                }
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(err = format!("{err:#}"), "cannot list etcd's members"),
        }
    }
}

/// Writes the members' client URLs where the next start finds them.
pub fn remember(path: &Path, urls: &[String]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    std::fs::write(path, urls.join("\n"))
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// The members' client URLs the last start knew.
pub fn known(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Promotes learner `id` through `members` once it has caught up.
async fn promote(members: &Members, id: u64) -> anyhow::Result<()> {
    // Already a voter: promoted before a restart. (etcd says "... which is
    // in sync with leader" while it must wait.)
    fn voter(err: &impl std::fmt::Display) -> bool {
        err.to_string()
            .ends_with("can only promote a learner member")
    }
    match retry(
        PROMOTE_TIMEOUT,
        Duration::from_millis(500),
        || members.promote(id),
        |err| !voter(err),
    )
    .await
    {
        Err(err) if !voter(&err) => anyhow::bail!(
            "this server's etcd member was not promoted within {PROMOTE_TIMEOUT:?}: {err}"
        ),
        _ => Ok(()),
    }
}

/// Calls `attempt` every `every` until it succeeds, fails in a way `again`
/// does not accept, or `within` has passed: its last outcome. For etcd's
/// membership changes, which it refuses until the cluster is ready, and for
/// a child that is starting to listen (the registry).
pub async fn retry<T, E, F, Fut>(
    within: Duration,
    every: Duration,
    mut attempt: F,
    again: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Err(err) if again(&err) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(%err, "not ready; trying again");
                tokio::time::sleep(every).await;
            }
            done => return done,
        }
    }
}

/// The client URLs of every started voting member, for the apiserver.
async fn voting_client_urls(members: &Members) -> anyhow::Result<Vec<String>> {
    let list = members.list().await.context("listing etcd's members")?;
    let urls: Vec<String> = list
        .into_iter()
        .filter(|m| !m.is_learner)
        .flat_map(|m| m.client_urls)
        .collect();
    anyhow::ensure!(!urls.is_empty(), "etcd lists no member with a client URL");
    Ok(urls)
}
