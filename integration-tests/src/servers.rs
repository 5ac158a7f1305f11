//! Servers that bring their own etcd member, started through the `moor`
//! binary as their user would (`moor up --cluster-init`, `moor token create
//! --control-plane`, `moor join --control-plane`), each a "machine" with its
//! own home and address: a loopback address of this machine, or a host of
//! the lab (`scripts/lab.sh`). Then the loss of etcd's leader's machine by a
//! pulled cable ([`cut_off`]), with its figures. Shared by the
//! process tests and `moor-bench failover`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use moor_api::Resource;
use moor_api::core::v1::ConfigMap;
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, ListParams};
use moor_storage_etcd::Members;
use moor_testkit::{Lab, LabHost, eventually};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The bound on each step that waits for the cluster.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// One server: its home (the data directory is `home/.moor`) and process.
pub struct Machine {
    /// Its name: `server-N`, its etcd member's too.
    pub name: String,
    /// The address it advertises.
    pub address: String,
    /// The lab host it runs in; `None`: this machine, on its own loopback
    /// address.
    host: Option<LabHost>,
    /// The `moor` binary.
    moor: PathBuf,
    /// Dropped (killed) before its home is removed.
    pub process: Option<Child>,
    /// Its home; a new one is a wiped disk.
    pub home: tempfile::TempDir,
}

impl Machine {
    /// Server `index + 1` at `address` (a loopback address of this
    /// machine), run by the `moor` binary at `moor`.
    pub fn new(moor: &Path, index: usize, address: &str) -> anyhow::Result<Self> {
        Ok(Self {
            name: format!("server-{}", index + 1),
            address: address.to_string(),
            host: None,
            moor: moor.to_path_buf(),
            home: tempfile::tempdir().context("a home directory")?,
            process: None,
        })
    }

    /// Server `index + 1`, in lab host `host`.
    pub fn on(moor: &Path, index: usize, host: &LabHost) -> anyhow::Result<Self> {
        Ok(Self {
            host: Some(host.clone()),
            ..Self::new(moor, index, &host.address.to_string())?
        })
    }

    /// `moor ARGS` on this machine, with its home; killed when dropped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = match &self.host {
            Some(host) => Command::from(host.command(&self.moor)),
            None => Command::new(&self.moor),
        };
        command
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("MOOR_CONFIG")
            .env_remove("MOOR_TOKEN")
            .env_remove("MOOR_SERVER")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `moor up --cluster-init` (`join` empty) or `moor join URL --token T
    /// --control-plane`, without an agent: a dedicated server.
    pub fn start(&mut self, join: &[&str]) -> anyhow::Result<()> {
        let mut args: Vec<&str> = if join.is_empty() {
            // The servers' tests are not about images.
            vec![
                "up",
                "--cluster-init",
                "--no-registry",
                "--node-name",
                &self.name,
            ]
        } else {
            let mut args = vec!["join"];
            args.extend_from_slice(join);
            args.extend(["--control-plane", "--name", &self.name]);
            args
        };
        args.extend([
            "--advertise-address",
            &self.address,
            "--no-agent",
            "--log",
            "warn",
        ]);
        self.process = Some(self.command(&args).spawn().context("moor starts")?);
        Ok(())
    }

    /// Runs `moor ARGS` here to its end, which must be a success: its
    /// output, trimmed.
    pub async fn succeed(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .context("moor runs")?;
        anyhow::ensure!(
            out.status.success(),
            "moor {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Whether its process runs; one that exited is an error.
    pub fn running(&mut self) -> anyhow::Result<bool> {
        let Some(process) = self.process.as_mut() else {
            return Ok(false);
        };
        match process.try_wait().context("polling moor")? {
            None => Ok(true),
            Some(status) => anyhow::bail!("{} exited with {status}", self.name),
        }
    }

    /// Its apiserver's URL.
    pub fn url(&self) -> String {
        format!("https://{}:6443", self.address)
    }

    /// Its PKI directory.
    pub fn pki(&self) -> PathBuf {
        self.home.path().join(".moor/data/pki")
    }
}

/// The administrator's credentials `moor up` made in `pki`.
pub fn admin(pki: &Path) -> anyhow::Result<moor_rpc::Credentials> {
    let read = |name: &str| std::fs::read_to_string(pki.join(name)).context(name.to_string());
    let identity = moor_pki::Identity::from_pem(read("admin.crt")?, read("admin.key")?)?;
    Ok(moor_rpc::Credentials {
        tls: Some(moor_rpc::ClientTls::new(&read("ca.crt")?).identity(&identity)),
        token: None,
    })
}

/// The membership API of the cluster's etcd at `machines`, as the
/// apiserver whose PKI is `pki` reaches it.
pub async fn members(pki: &Path, machines: &[&Machine]) -> anyhow::Result<Members> {
    let read =
        |name: &str| std::fs::read_to_string(pki.join("etcd").join(name)).context(name.to_string());
    let tls = moor_storage_etcd::EtcdTls {
        ca_pem: read("ca.crt")?,
        client: Some((
            read("apiserver-etcd-client.crt")?,
            read("apiserver-etcd-client.key")?,
        )),
    };
    let endpoints: Vec<String> = machines
        .iter()
        .map(|m| format!("https://{}:2379", m.address))
        .collect();
    Ok(Members::connect(&endpoints, Some(&tls)).await?)
}

/// The started voting members' names, sorted.
pub async fn voters(members: &Members) -> Option<Vec<String>> {
    let mut names: Vec<String> = members
        .list()
        .await
        .ok()?
        .into_iter()
        .filter(|m| !m.is_learner && !m.name.is_empty())
        .map(|m| m.name)
        .collect();
    names.sort();
    Some(names)
}

/// Whether the apiserver at `url` answers a list.
pub async fn answers(url: &str, credentials: &moor_rpc::Credentials) -> bool {
    match Client::connect(url, credentials) {
        Ok(client) => client
            .api::<ConfigMap>()
            .list(&ListParams::default())
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// What [`three_servers`] leaves running.
pub struct Servers {
    /// The administrator's credentials, which `moor up` made.
    pub credentials: moor_rpc::Credentials,
    /// The three apiservers' URLs, the first server's first.
    pub urls: [String; 3],
    /// The membership API of their etcd.
    pub etcd: Members,
}

/// Waits for `check` to give `Some` for at most [`PATIENCE`], or fails
/// saying `what` did not happen.
async fn wait<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually(PATIENCE, check)
        .await
        .with_context(|| format!("{what}: not within {PATIENCE:?}"))
}

/// Starts three servers as their user would: `moor up --cluster-init` on
/// the first, a control-plane token made there, `moor join
/// --control-plane` on the second through the first and on the third
/// through the second; returns once etcd counts three voters, every server
/// knows every member and each serves from the cluster's CA.
pub async fn three_servers(machines: &mut [Machine; 3]) -> anyhow::Result<Servers> {
    machines[0].start(&[])?;
    let pki = machines[0].pki();
    // Its context, for moor and moorctl there, is written last.
    let config = machines[0].home.path().join(".moor/config");
    wait("moor up writes its context", || async {
        config.exists().then_some(())
    })
    .await?;
    let credentials = admin(&pki)?;
    let mut urls = Vec::new();
    let mut token = String::new();
    for index in 0..3 {
        if index > 0 {
            // A control-plane token, as its user would make it on the
            // first server; each joins through the one before it.
            if token.is_empty() {
                token = machines[0]
                    .succeed(&["token", "create", "--control-plane", "--ttl", "1h"])
                    .await?;
            }
            let through = machines[index - 1].url();
            machines[index].start(&[&through, "--token", &token])?;
        }
        let url = machines[index].url();
        wait(&format!("{} answers", machines[index].name), || async {
            answers(&url, &credentials).await.then_some(())
        })
        .await?;
        anyhow::ensure!(machines[index].running()?, "{} runs", machines[index].name);
        urls.push(url);
    }

    let all: Vec<&Machine> = machines.iter().collect();
    let etcd = members(&pki, &all).await?;
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    wait("etcd counts three voters", || async {
        (voters(&etcd).await.as_ref() == Some(&names)).then_some(())
    })
    .await?;
    // Every server learns of the members that joined after it (within
    // 10 s): a stopped server leaves through the members it knew.
    let member_urls: Vec<String> = machines
        .iter()
        .map(|m| format!("https://{}:2379", m.address))
        .collect();
    for machine in machines.iter() {
        let known = machine.home.path().join(".moor/etcd/client-urls");
        wait(
            &format!("{} knows every member's client URL", machine.name),
            || async {
                std::fs::read_to_string(&known)
                    .is_ok_and(|text| member_urls.iter().all(|u| text.contains(u)))
                    .then_some(())
            },
        )
        .await?;
    }
    // Each joined server holds the cluster's CA, not one of its own.
    let ca = std::fs::read_to_string(pki.join("ca.crt"))?;
    for machine in &machines[1..] {
        anyhow::ensure!(
            std::fs::read_to_string(machine.pki().join("ca.crt"))? == ca,
            "{} serves from the cluster CA",
            machine.name
        );
    }
    let urls = <[String; 3]>::try_from(urls).map_err(|_| anyhow::anyhow!("three URLs"))?;
    Ok(Servers {
        credentials,
        urls,
        etcd,
    })
}

/// The index of the machine whose etcd member leads, and its member id.
pub async fn leader(etcd: &Members, machines: &[Machine]) -> anyhow::Result<(usize, u64)> {
    let leader_id = etcd.leader().await?;
    let leader_name = etcd
        .list()
        .await?
        .into_iter()
        .find(|m| m.id == leader_id)
        .context("the leader is a member")?
        .name;
    let index = machines
        .iter()
        .position(|m| m.name == leader_name)
        .context("the leader is one of the machines")?;
    Ok((index, leader_id))
}

/// A client given only `url`, which learns the other apiservers from the
/// cluster (as a node joined through one server does) until the token is
/// cancelled; returns once it knows all of `urls`.
pub async fn lone_client(
    url: &str,
    urls: &[String],
    credentials: &moor_rpc::Credentials,
) -> anyhow::Result<(Client, CancellationToken)> {
    let lone = Client::connect(url, credentials)?;
    let following = CancellationToken::new();
    moor_client::follow_servers(&lone, following.clone());
    let mut published = urls.to_vec();
    published.sort();
    wait("the lone client learns all three apiservers", || async {
        let mut learned = lone.channel().servers();
        learned.sort();
        (learned == published).then_some(())
    })
    .await?;
    Ok((lone, following))
}

/// A ConfigMap in `default` named `name`.
pub fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            namespace: "default".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cm.set_type_meta();
    cm
}

/// Each probe's name and when it succeeded, if it did.
pub type Probed = Vec<(String, Option<Instant>)>;

/// Probes started by [`probe`].
pub struct Probes {
    stop: CancellationToken,
    first: Arc<std::sync::OnceLock<Instant>>,
    task: tokio::task::JoinHandle<Probed>,
}

impl Probes {
    /// Whether a probe has succeeded yet.
    pub fn answered(&self) -> bool {
        self.first.get().is_some()
    }

    /// Starts no more and returns every probe's outcome once each ended.
    pub async fn stop(self) -> anyhow::Result<Probed> {
        self.stop.cancel();
        Ok(self.task.await?)
    }
}

/// Starts a create every 200 ms (`PREFIX-0`, `PREFIX-1`, ...), each in its
/// own task, until stopped.
pub fn probe(api: moor_client::Api<ConfigMap>, prefix: &str) -> Probes {
    let prefix = prefix.to_string();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let first = Arc::new(std::sync::OnceLock::new());
    let answered = first.clone();
    let task = tokio::spawn(async move {
        let mut started = tokio::task::JoinSet::new();
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        for i in 0.. {
            tokio::select! {
                _ = stopped.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let api = api.clone();
            let answered = answered.clone();
            let name = format!("{prefix}-{i}");
            started.spawn(async move {
                let done = api.create(&config_map(&name)).await.ok().map(|_| {
                    let at = Instant::now();
                    answered.get_or_init(|| at);
                    at
                });
                (name, done)
            });
        }
        started.join_all().await
    });
    Probes { stop, first, task }
}

/// Creates acknowledged, each with when it was.
pub type Acked = Mutex<Vec<(String, Instant)>>;

/// A writer started by [`writer`].
pub struct Writer {
    stop: CancellationToken,
    /// What it has had acknowledged so far.
    pub acked: Arc<Acked>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// How many creates were acknowledged after `since`.
    pub fn acked_since(&self, since: Instant) -> usize {
        lock(&self.acked)
            .iter()
            .filter(|(_, at)| *at > since)
            .count()
    }

    /// Stops it and returns what it had acknowledged.
    pub async fn stop(self) -> anyhow::Result<Vec<(String, Instant)>> {
        self.stop.cancel();
        self.task.await?;
        Ok(std::mem::take(&mut *lock(&self.acked)))
    }
}

fn lock(acked: &Acked) -> std::sync::MutexGuard<'_, Vec<(String, Instant)>> {
    acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates one ConfigMap after another (`NAME-0`, `NAME-1`, ...) until
/// stopped, each tried again under the same name until it is acknowledged,
/// as a user would.
pub fn writer(api: moor_client::Api<ConfigMap>, name: &str) -> Writer {
    let prefix = name.to_string();
    let stop = CancellationToken::new();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("{prefix}-{i}");
                loop {
                    if stop.is_cancelled() {
                        return;
                    }
                    match api.create(&config_map(&name)).await {
                        // An earlier attempt that failed on the way back
                        // went through.
                        Ok(_) | Err(moor_client::Error::AlreadyExists(_)) => break,
                        Err(_) => {}
                    }
                }
                lock(&acked).push((name, Instant::now()));
            }
        })
    };
    Writer { stop, acked, task }
}

/// Creates per second over `acked` (in order), from the first to the last.
pub fn rate(acked: &[(String, Instant)]) -> f64 {
    match (acked.first(), acked.last()) {
        (Some((_, first)), Some((_, last))) if last > first => {
            (acked.len() - 1) as f64 / last.duration_since(*first).as_secs_f64()
        }
        _ => 0.0,
    }
}

/// What [`cut_off`] measured.
#[derive(Clone, Debug)]
pub struct CutFigures {
    /// The server whose machine was cut off.
    pub lost: String,
    /// From the cut until the two left had a leader (elected anew when the
    /// leader was cut; at once when a follower was): etcd's own
    /// failover, the anchor.
    pub elected: Duration,
    /// From the cut until a fresh create through a client that was on the
    /// cut-off server was acknowledged.
    pub answered_again: Duration,
    /// The longest a writer of all three servers went without an
    /// acknowledged create around the cut.
    pub writer_gap: Duration,
    /// Probes (a fresh create every 200 ms through the client that was on
    /// the cut-off server) acknowledged, of those sent.
    pub probes_acknowledged: (usize, usize),
    /// The writer's creates per second before the cut, after it, and once
    /// the machine was back.
    pub rates: (f64, f64, f64),
    /// Creates acknowledged in all, each found afterwards.
    pub acknowledged: usize,
}

/// Which server's machine [`cut_off`] cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The one whose etcd member leads.
    Leader,
    /// One whose member follows.
    Follower,
}

/// On three servers each in a lab host of its own ([`three_servers`] on
/// [`Machine::on`]): pulls the cable of the `target` server's host while a
/// client of all three writes without pause and a client that was on the
/// cut-off server probes; plugs it back in after the writer has had
/// `after` more creates acknowledged. Fails unless creates go on through
/// the other two, the cut-off server runs on, and, once back, it serves
/// every acknowledged create with no uid twice. May be called again on the
/// same servers.
pub async fn cut_off(
    lab: &Lab,
    machines: &mut [Machine; 3],
    servers: &Servers,
    target: Target,
    after: usize,
) -> anyhow::Result<CutFigures> {
    let Servers {
        credentials,
        urls,
        etcd,
    } = servers;
    let client = Client::connect(&urls.join(","), credentials)?;
    let api = client.api::<ConfigMap>();
    let (leading, leader_id) = leader(etcd, machines).await?;
    let lost = match target {
        Target::Leader => leading,
        Target::Follower => (leading + 1) % machines.len(),
    };
    let lost_id = match target {
        Target::Leader => leader_id,
        Target::Follower => {
            etcd.list()
                .await?
                .into_iter()
                .find(|m| m.name == machines[lost].name)
                .context("the follower is a member")?
                .id
        }
    };
    // Names of this round's own: a round after another on the same servers
    // must not find its creates done already.
    let round = format!("{target:?}-{}", machines[lost].name).to_lowercase();
    let writer = writer(api.clone(), &format!("w-{round}"));
    let started = Instant::now();
    wait("the writer's first 100 creates", || async {
        (writer.acked_since(started) >= 100).then_some(())
    })
    .await?;

    let (lone, following) = lone_client(&machines[lost].url(), urls, credentials).await?;
    // etcd's own failover, the anchor: when the two left have a leader
    // (at once when a follower is cut).
    let survivors: Vec<&Machine> = machines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lost)
        .map(|(_, m)| m)
        .collect();
    let survivors = members(&machines[0].pki(), &survivors).await?;
    lab.cut(lost).map_err(anyhow::Error::msg)?;
    let cut = Instant::now();
    let elected = tokio::spawn(async move {
        eventually(PATIENCE, || async {
            let id = survivors.leader().await.ok()?;
            (id != 0 && id != lost_id).then(Instant::now)
        })
        .await
    });
    // Fresh creates every 200 ms through the client that was on the
    // cut-off server: the worst case, as the writer may have been on
    // another.
    // Both, however fast the writer: it may have been on another server
    // all along and reach `after` before the lone client has noticed.
    let probes = probe(lone.api::<ConfigMap>(), &format!("probe-{round}"));
    wait(
        "creates go on through the other two servers, the lone client's too",
        || async { (writer.acked_since(cut) >= after && probes.answered()).then_some(()) },
    )
    .await?;
    let probed = probes.stop().await?;
    following.cancel();
    anyhow::ensure!(machines[lost].running()?, "the cut-off server runs on");

    // Plugged back in, it catches up: it serves every acknowledged write.
    lab.reconnect(lost).map_err(anyhow::Error::msg)?;
    let reconnected = Instant::now();
    wait("creates go on once it is back", || async {
        (writer.acked_since(reconnected) >= after / 10).then_some(())
    })
    .await?;
    let acked = writer.stop().await?;
    let mut acknowledged: Vec<String> = acked.iter().map(|(name, _)| name.clone()).collect();
    acknowledged.extend(
        probed
            .iter()
            .filter(|(_, at)| at.is_some())
            .map(|(name, _)| name.clone()),
    );
    let returned = Client::connect(&machines[lost].url(), credentials)?;
    let listed = wait(
        "the returned server serves every acknowledged create",
        || async {
            let (listed, _) = returned
                .api::<ConfigMap>()
                .list(&ListParams::default().namespace("default"))
                .await
                .ok()?;
            let names: std::collections::HashSet<&str> =
                listed.iter().map(|cm| cm.meta().name.as_str()).collect();
            acknowledged
                .iter()
                .all(|name| names.contains(name.as_str()))
                .then_some(listed)
        },
    )
    .await?;
    let mut uids: Vec<&str> = listed.iter().map(|cm| cm.meta().uid.as_str()).collect();
    uids.sort_unstable();
    uids.dedup();
    anyhow::ensure!(uids.len() == listed.len(), "no uid twice");
    anyhow::ensure!(machines[lost].running()?, "the returned server runs");

    let elected = elected
        .await?
        .context("the two left elect a leader")?
        .duration_since(cut);
    let answered_again = probed
        .iter()
        .filter_map(|(_, at)| *at)
        .min()
        .context("a client given only the lost server created through another")?
        .duration_since(cut);
    let writer_gap = acked
        .windows(2)
        .map(|pair| pair[1].1.duration_since(pair[0].1))
        .max()
        .unwrap_or_default();
    let window = |from: Option<Instant>, to: Option<Instant>| -> Vec<(String, Instant)> {
        acked
            .iter()
            .filter(|(_, at)| from.is_none_or(|from| *at > from) && to.is_none_or(|to| *at <= to))
            .cloned()
            .collect()
    };
    Ok(CutFigures {
        lost: machines[lost].name.clone(),
        elected,
        answered_again,
        writer_gap,
        probes_acknowledged: (
            probed.iter().filter(|(_, at)| at.is_some()).count(),
            probed.len(),
        ),
        rates: (
            rate(&window(None, Some(cut))),
            rate(&window(Some(cut), Some(reconnected))),
            rate(&window(Some(reconnected), None)),
        ),
        acknowledged: acknowledged.len(),
    })
}
