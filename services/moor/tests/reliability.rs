//! The fault suite on a highly available control plane, as an operator runs
//! one: a three-member etcd cluster (real etcd processes) and two
//! `moor apiserver` processes on it, clients given both apiservers'
//! addresses. Members and apiservers are killed with SIGKILL mid-flight;
//! nothing acknowledged may be lost, repeated or reordered. Each test
//! prints its figure; RELIABILITY.md keeps the table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{Seen, config_map, value, watcher};
use futures::StreamExt;
use moor_api::Resource;
use moor_api::apps::v1::{Deployment, ReplicaSet};
use moor_api::core::v1::{ConfigMap, Pod};
use moor_client::{Client, Error as ClientError, ListParams};
use moor_testkit::EtcdCluster;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A `moor apiserver` process on the etcd cluster.
struct Apiserver {
    addr: SocketAddr,
    etcd: String,
    /// More flags for `moor apiserver`.
    extra: Vec<String>,
    child: Option<Child>,
}

impl Apiserver {
    fn start(etcd: &[String], extra: &[&str]) -> anyhow::Result<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", moor_testkit::free_port()).parse()?;
        let mut server = Self {
            addr,
            etcd: etcd.join(","),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(["apiserver", "--insecure", "--log", "warn"])
            .args(["--listen", &self.addr.to_string()])
            .args(["--etcd-endpoints", &self.etcd])
            .args(&self.extra)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no graceful shutdown, no chance to flush anything.
    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        wait_ready(&self.url()).await;
        Ok(())
    }
}

/// Waits until the apiserver at `url` answers a list.
async fn wait_ready(url: &str) {
    let client = Client::new(url).unwrap();
    let api = client.api::<ConfigMap>();
    moor_testkit::assert_eventually!(
        api.list(&ListParams::default()).await.is_ok(),
        Duration::from_secs(60),
        "apiserver at {url} never answered"
    );
}

/// Three etcd members and two apiservers on them.
struct ControlPlane {
    etcd: EtcdCluster,
    apiservers: [Apiserver; 2],
}

impl ControlPlane {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// With `extra` flags for both apiservers.
    async fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        moor_testkit::init_tracing();
        let etcd = EtcdCluster::start(3).await?;
        let endpoints = etcd.endpoints();
        let apiservers = [
            Apiserver::start(&endpoints, extra)?,
            Apiserver::start(&endpoints, extra)?,
        ];
        for apiserver in &apiservers {
            wait_ready(&apiserver.url()).await;
        }
        Ok(Self { etcd, apiservers })
    }

    /// Both apiservers, as a client's `--server` takes them.
    fn servers(&self) -> String {
        format!("{},{}", self.apiservers[0].url(), self.apiservers[1].url())
    }
}

/// R1: the etcd leader killed after 100 of 504 creates from 8 clients, and
/// an apiserver after 300: every acknowledged create is readable
/// afterwards, with the uid it was acknowledged with, and no uid repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r1_leader_and_apiserver_killed_during_creates_lose_nothing() -> anyhow::Result<()> {
    const CLIENTS: usize = 8;
    const EACH: usize = 63;
    let mut plane = ControlPlane::start().await?;
    let servers = plane.servers();
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0usize);
    let acked_tx = Arc::new(acked_tx);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let api = Client::new(&servers)?.api::<ConfigMap>();
        let acked_tx = acked_tx.clone();
        clients.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed = 0usize;
            let mut slowest = Duration::ZERO;
            for i in 0..EACH {
                let name = format!("r1-{c}-{i}");
                let started = Instant::now();
                let result = api.create(&config_map(&name, "0")).await;
                slowest = slowest.max(started.elapsed());
                match result {
                    Ok(created) => {
                        acknowledged.push((name, created.meta().uid.clone()));
                        acked_tx.send_modify(|n| *n += 1);
                    }
                    Err(ClientError::Unavailable(_)) => failed += 1,
                    Err(e) => panic!("create {name} failed with {e}, not UNAVAILABLE"),
                }
            }
            (acknowledged, failed, slowest)
        });
    }

    acked_rx.wait_for(|n| *n >= 100).await?;
    let leader = plane.etcd.wait_leader().await?;
    plane.etcd.kill(leader)?;
    acked_rx.wait_for(|n| *n >= 300).await?;
    plane.apiservers[0].kill().await?;

    let mut acknowledged = Vec::new();
    let mut failed = 0;
    let mut slowest = Duration::ZERO;
    while let Some(done) = clients.join_next().await {
        let (mine, failures, slow) = done?;
        acknowledged.extend(mine);
        failed += failures;
        slowest = slowest.max(slow);
    }

    let survivor = Client::new(&plane.apiservers[1].url())?.api::<ConfigMap>();
    let (items, _) = survivor
        .list(&ListParams::default().namespace("default"))
        .await?;
    let stored: BTreeMap<String, String> = items
        .iter()
        .map(|cm| (cm.meta().name.clone(), cm.meta().uid.clone()))
        .collect();
    for (name, uid) in &acknowledged {
        assert_eq!(
            stored.get(name),
            Some(uid),
            "{name} was acknowledged with uid {uid}"
        );
    }
    let uids: BTreeSet<&String> = stored.values().collect();
    assert_eq!(uids.len(), stored.len(), "a uid repeats");
    println!(
        "R1: {} of {} creates acknowledged and all kept; {failed} failed (UNAVAILABLE) around \
         the kills; slowest create {slowest:?}",
        acknowledged.len(),
        CLIENTS * EACH
    );
    Ok(())
}

/// R2: 16 clients each add 1 to one counter 200 times through Update with
/// the resourceVersion they read (a conflict means read again), spread over
/// two apiservers: the counter ends at exactly 3,200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r2_conflicting_increments_count_exactly() -> anyhow::Result<()> {
    const CLIENTS: usize = 16;
    const EACH: usize = 200;
    let plane = ControlPlane::start().await?;
    let servers = plane.servers();
    let api = Client::new(&servers)?.api::<ConfigMap>();
    api.create(&config_map("counter", "0")).await?;

    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let api = Client::new(&servers)?.api::<ConfigMap>();
        clients.spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..EACH {
                loop {
                    let mut counter = api.get("default", "counter").await?;
                    let next = value(&counter).parse::<u64>()? + 1;
                    counter.data.insert("v".into(), next.to_string());
                    match api.update(&counter).await {
                        Ok(_) => break,
                        Err(ClientError::Conflict(_)) => conflicts += 1,
                        Err(e) => return Err(anyhow::anyhow!("update failed: {e}")),
                    }
                }
            }
            anyhow::Ok(conflicts)
        });
    }
    let mut conflicts = 0;
    while let Some(done) = clients.join_next().await {
        conflicts += done??;
    }
    let counter = api.get("default", "counter").await?;
    assert_eq!(value(&counter), (CLIENTS * EACH).to_string());
    println!(
        "R2: {} increments from {CLIENTS} clients counted exactly, after {conflicts} conflicts, \
         in {:?}",
        CLIENTS * EACH,
        started.elapsed()
    );
    Ok(())
}

/// R3: 20 watchers given both apiservers; one apiserver killed, started
/// again, then the other killed, while a writer makes 600 changes. Each
/// watcher's events are exactly the acknowledged writes, in order, with no
/// gap or repeat, and no watcher lists again: the surviving apiserver still
/// has the history they resume from.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r3_watchers_resume_on_the_other_apiserver_without_gap_or_relist() -> anyhow::Result<()> {
    const WATCHERS: usize = 20;
    const MUTATIONS: usize = 600;
    let mut plane = ControlPlane::start().await?;
    let servers = plane.servers();
    let api = Client::new(&servers)?.api::<ConfigMap>();
    api.create(&config_map("seed", "0")).await?;

    let (done_tx, done_rx) = tokio::sync::watch::channel(None);
    let (mut receivers, mut tasks) = common::watchers(&servers, WATCHERS, &done_rx);
    // Every watcher has its first list before the writes start, so each
    // sees every write as a change.
    for rx in &mut receivers {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await? {
            Some(Seen::Listed(_)) => {}
            _ => anyhow::bail!("a watcher did not start with a list"),
        }
    }
    // The truth: every acknowledged write, in order.
    let mut truth: Vec<(i64, String, String)> = Vec::new();
    let mut i = 0u32;
    let mut unavailable = 0;
    while truth.len() < MUTATIONS {
        if truth.len() == 200 && plane.apiservers[0].child.is_some() {
            plane.apiservers[0].kill().await?;
        }
        if truth.len() == 300 && plane.apiservers[0].child.is_none() {
            plane.apiservers[0].restart().await?;
        }
        if truth.len() == 400 && plane.apiservers[1].child.is_some() {
            plane.apiservers[1].kill().await?;
        }
        i += 1;
        let name = format!("cm-{}", i % 40);
        let result = match api.update(&config_map(&name, &i.to_string())).await {
            Err(ClientError::NotFound(_)) => api.create(&config_map(&name, &i.to_string())).await,
            other => other,
        };
        match result {
            Ok(object) => {
                let meta = object.meta();
                truth.push((meta.resource_version.parse()?, name, i.to_string()));
            }
            // Sent to the apiserver as it died: not acknowledged, and the
            // next write goes to the other.
            Err(ClientError::Unavailable(_)) => unavailable += 1,
            Err(e) => anyhow::bail!("write failed: {e}"),
        }
    }
    let mut last = BTreeMap::from([("seed".to_string(), "0".to_string())]);
    for (_, name, value) in &truth {
        last.insert(name.clone(), value.clone());
    }
    done_tx.send(Some(last))?;
    for (w, mut rx) in receivers.into_iter().enumerate() {
        let mut at = 0usize;
        let mut lists = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(Seen::Change(rv, name, value))) => {
                    let Some(k) = truth[at..].iter().position(|t| t.0 == rv) else {
                        anyhow::bail!("watcher {w}: change at {rv} repeats or is out of order");
                    };
                    assert_eq!(k, 0, "watcher {w}: {k} writes skipped before {rv}");
                    assert_eq!((&truth[at].1, &truth[at].2), (&name, &value), "watcher {w}");
                    at += 1;
                }
                Ok(Some(Seen::Listed(_))) => lists += 1,
                Ok(None) => break,
                Err(_) => anyhow::bail!("watcher {w} stalled after write {at} of {}", truth.len()),
            }
        }
        assert_eq!(at, truth.len(), "watcher {w} saw every write");
        assert_eq!(lists, 0, "watcher {w} listed again");
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!(
        "R3: {WATCHERS} watchers saw all {} writes once and in order across two apiserver \
         kills, without listing again; {unavailable} writes failed as their apiserver died",
        truth.len()
    );
    Ok(())
}

/// R4: writes past what the apiservers' watch caches keep (50 events),
/// then the store compacted: a watch from an old resourceVersion gets
/// OUT_OF_RANGE on either apiserver, and a watcher that was away while it
/// happened (its apiserver killed and started again on the compacted
/// store) lists again and converges on the final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r4_after_compaction_old_versions_are_gone_and_watchers_list_again() -> anyhow::Result<()> {
    let mut plane = ControlPlane::start_with(&["--watch-cache-events", "50"]).await?;
    let first = Client::new(&plane.apiservers[0].url())?;
    let api = first.api::<ConfigMap>();
    let seed = api.create(&config_map("seed", "0")).await?;
    let old = seed.meta().resource_version.clone();

    // A watcher on the first apiserver only, holding the seed.
    let (done_tx, done_rx) = tokio::sync::watch::channel(None);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let follower = tokio::spawn(watcher(plane.apiservers[0].url(), done_rx, tx));
    match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await? {
        Some(Seen::Listed(state)) if state.contains_key("seed") => {}
        _ => anyhow::bail!("the watcher did not start with a list holding the seed"),
    }

    // Away: its apiserver dies; 200 writes through the other; compaction.
    plane.apiservers[0].kill().await?;
    let other = Client::new(&plane.apiservers[1].url())?.api::<ConfigMap>();
    let mut last = BTreeMap::from([("seed".to_string(), "0".to_string())]);
    for i in 0..200 {
        let name = format!("cm-{}", i % 10);
        let value = i.to_string();
        match other.update(&config_map(&name, &value)).await {
            Err(ClientError::NotFound(_)) => {
                other.create(&config_map(&name, &value)).await?;
            }
            result => {
                result?;
            }
        }
        last.insert(name, value);
    }
    let store = moor_storage_etcd::EtcdStore::connect(&plane.etcd.endpoints()).await?;
    let revision = moor_storage::Store::current_revision(&store).await?;
    moor_storage::Store::compact(&store, revision).await?;

    // An old version is gone from the other apiserver (past its cache) ...
    let params = moor_client::WatchParams {
        filters: ListParams::default().namespace("default"),
        resource_version: old.clone(),
        allow_bookmarks: false,
    };
    let gone = match other.watch(&params).await {
        Err(e) => e,
        Ok(mut events) => match events.next().await {
            Some(Err(e)) => e,
            other => anyhow::bail!("a watch from {old} after compaction gave {other:?}"),
        },
    };
    assert!(matches!(gone, ClientError::Gone(_)), "{gone}");

    // ... and the watcher, back on its restarted apiserver, lists again
    // and ends with every write.
    plane.apiservers[0].restart().await?;
    done_tx.send(Some(last.clone()))?;
    let mut lists = 0;
    while let Some(seen) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await? {
        if let Seen::Listed(_) = seen {
            lists += 1;
        }
    }
    follower.await??;
    assert!(lists >= 1, "the watcher never listed again");
    println!(
        "R4: a watch from resourceVersion {old} after compaction at {revision}: OUT_OF_RANGE; \
         the watcher away meanwhile listed again ({lists}x) and converged on {} objects",
        last.len()
    );
    Ok(())
}

/// R9: a Deployment of 50 deleted in the foreground, the controller-manager
/// killed (SIGKILL) right after the delete and started again: once it is
/// back, the Deployment, its ReplicaSet and every pod are gone, none held
/// by a finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r9_foreground_deletion_survives_a_controller_manager_kill() -> anyhow::Result<()> {
    const REPLICAS: usize = 50;
    let plane = ControlPlane::start().await?;
    let servers = plane.servers();
    let client = Client::new(&servers)?;
    let controller_manager = [
        "controller-manager",
        "--server",
        &servers,
        "--cluster-cidr",
        "10.0.0.0/8",
    ];
    let _scheduler = common::moor(&["scheduler", "--server", &servers, "--listen", "127.0.0.1:0"]);
    let mut controllers = common::moor(&controller_manager);
    let _agents = common::fake_nodes(&servers, 5, "r9", &[]);
    moor_testkit::assert_eventually!(
        moor_integration_tests::ready_nodes(&client).await.len() == 5,
        Duration::from_secs(60),
        "5 simulated nodes Ready"
    );
    let deployments = client.api::<Deployment>();
    deployments
        .create(&moor_integration_tests::light_deployment("r9", REPLICAS))
        .await?;
    let mine = ListParams::default().namespace("default").labels("app=r9");
    let pods = client.api::<Pod>();
    moor_testkit::assert_eventually!(
        pods.list(&mine).await.is_ok_and(|(pods, _)| pods
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
            .count()
            == REPLICAS),
        Duration::from_secs(120),
        "{REPLICAS} pods Running"
    );

    let started = Instant::now();
    let foreground = moor_client::DeleteParams {
        propagation_policy: Some("Foreground".into()),
        ..Default::default()
    };
    deployments.delete("default", "r9", &foreground).await?;
    controllers.kill().await?;
    let (left, _) = pods.list(&mine).await?;
    let left = left.len();
    let mut controllers = common::moor(&controller_manager);

    let replica_sets = client.api::<ReplicaSet>();
    moor_testkit::assert_eventually!(
        matches!(
            deployments.get("default", "r9").await,
            Err(ClientError::NotFound(_))
        ) && replica_sets
            .list(&mine)
            .await
            .is_ok_and(|(sets, _)| sets.is_empty())
            && pods
                .list(&mine)
                .await
                .is_ok_and(|(pods, _)| pods.is_empty()),
        Duration::from_secs(120),
        "the deployment, its replica set and its pods are gone"
    );
    assert!(
        controllers.try_wait()?.is_none(),
        "the controller-manager died"
    );
    println!(
        "R9: foreground deletion of {REPLICAS} pods finished {:?} after the delete, the \
         controller-manager killed with {left} pods left and started again",
        started.elapsed()
    );
    Ok(())
}

/// A leader-elected component (`moor scheduler` or `moor controller-manager`
/// with `--leader-elect` and 3 s leases), its log in a file to read.
struct Elected {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Elected {
    fn start(component: &str, servers: &str, extra: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_moor"))
            .args([component, "--server", servers, "--leader-elect"])
            .args(["--lease-duration-seconds", "3"])
            .args(["--renew-deadline-seconds", "2"])
            .args(["--retry-period-seconds", "1"])
            .args(extra)
            .args(["--log", "info", "--log-format", "json"])
            // moor logs to standard output.
            .stdout(log.reopen().expect("the log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("moor starts");
        Self { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Whether its log says a term of leadership ended.
    fn term_ended(&self) -> bool {
        std::fs::read_to_string(self.log.path()).is_ok_and(|log| log.contains("term ended"))
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal sent");
    }
}

/// The holder of the Lease `moor-system/NAME`.
async fn holder(client: &Client, name: &str) -> Option<String> {
    let lease = client
        .api::<moor_api::coordination::v1::Lease>()
        .get("moor-system", name)
        .await
        .ok()?;
    lease.spec?.holder_identity
}

/// The holder of the Lease `moor-system/NAME` and which of `candidates`
/// it is (their identities end with their process id).
async fn leading(client: &Client, name: &str, candidates: &[Elected]) -> (String, usize) {
    let leader = holder(client, name).await.expect("a leader");
    let index = candidates
        .iter()
        .position(|c| leader.ends_with(&format!("-{}", c.pid())))
        .expect("the leader is one of the candidates");
    (leader, index)
}

/// What a watcher saw of a Deployment's pods: the most alive at once, and
/// every pod that was bound to a second node.
#[derive(Default)]
struct PodHistory {
    live: BTreeSet<String>,
    most_live: usize,
    node: BTreeMap<String, String>,
    rebound: Vec<String>,
}

impl PodHistory {
    fn saw(&mut self, pod: &Pod) {
        let name = pod.meta().name.clone();
        if let Some(node) = pod.spec.as_ref().map(|s| s.node_name.clone())
            && !node.is_empty()
            && self
                .node
                .insert(name.clone(), node.clone())
                .is_some_and(|n| n != node)
        {
            self.rebound.push(name.clone());
        }
        if pod.meta().deletion_timestamp.is_some() {
            self.live.remove(&name);
        } else {
            self.live.insert(name);
            self.most_live = self.most_live.max(self.live.len());
        }
    }
}

/// R5: two schedulers and two controller-managers elect leaders (3 s
/// leases). The controller-manager leader is paused (SIGSTOP) until the
/// other has taken over, 10 of a Deployment's 20 pods are deleted and
/// replaced by the new leader, and the paused one is resumed and left to
/// notice it lost. Then the scheduler leader is killed (SIGKILL) as the
/// Deployment grows to 30. A watcher follows every pod: the Deployment
/// never has more than its count of live pods, and no pod is bound twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r5_paused_and_killed_leaders_neither_overshoot_nor_bind_twice() -> anyhow::Result<()> {
    let plane = ControlPlane::start().await?;
    let servers = plane.servers();
    let client = Client::new(&servers)?;
    let cm_flags = ["--cluster-cidr", "10.0.0.0/8"];
    let controllers = [
        Elected::start("controller-manager", &servers, &cm_flags),
        Elected::start("controller-manager", &servers, &cm_flags),
    ];
    let scheduler_flags = ["--listen", "127.0.0.1:0"];
    let mut schedulers = [
        Elected::start("scheduler", &servers, &scheduler_flags),
        Elected::start("scheduler", &servers, &scheduler_flags),
    ];
    let _agents = common::fake_nodes(&servers, 5, "r5", &[]);
    moor_testkit::assert_eventually!(
        moor_integration_tests::ready_nodes(&client).await.len() == 5,
        Duration::from_secs(60),
        "5 simulated nodes Ready"
    );

    // Every pod of the Deployment, from its first event on.
    let history = Arc::new(std::sync::Mutex::new(PodHistory::default()));
    let mine = ListParams::default().namespace("default").labels("app=r5");
    let pods = client.api::<Pod>();
    let following = {
        let history = history.clone();
        let mut events = Box::pin(moor_client::watcher(pods.clone(), mine.clone()));
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut history = history.lock().unwrap();
                match event {
                    Ok(moor_client::watcher::Event::Applied(pod)) => history.saw(&pod),
                    Ok(moor_client::watcher::Event::Deleted(pod)) => {
                        history.live.remove(&pod.meta().name);
                    }
                    Ok(moor_client::watcher::Event::Restarted(all)) => {
                        history.live.clear();
                        all.iter().for_each(|pod| history.saw(pod));
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let deployments = client.api::<Deployment>();
    deployments
        .create(&moor_integration_tests::light_deployment("r5", 20))
        .await?;
    let running = |count: usize| {
        let pods = pods.clone();
        let mine = mine.clone();
        async move {
            pods.list(&mine).await.is_ok_and(|(pods, _)| {
                pods.iter()
                    .filter(|p| p.meta().deletion_timestamp.is_none())
                    .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
                    .count()
                    == count
            })
        }
    };
    moor_testkit::assert_eventually!(running(20).await, Duration::from_secs(120), "20 Running");

    // The controller-manager leader paused past its lease.
    let (leader, paused) = leading(&client, "moor-controller-manager", &controllers).await;
    controllers[paused].signal(rustix::process::Signal::STOP);
    moor_testkit::assert_eventually!(
        holder(&client, "moor-controller-manager")
            .await
            .is_some_and(|h| h != leader),
        Duration::from_secs(60),
        "the other controller-manager takes over"
    );
    let (listed, _) = pods.list(&mine).await?;
    for pod in listed.iter().take(10) {
        pods.delete("default", &pod.meta().name, &Default::default())
            .await?;
    }
    moor_testkit::assert_eventually!(
        running(20).await,
        Duration::from_secs(120),
        "the new leader replaces the 10"
    );
    controllers[paused].signal(rustix::process::Signal::CONT);
    moor_testkit::assert_eventually!(
        controllers[paused].term_ended(),
        Duration::from_secs(60),
        "the resumed controller-manager learns that its term ended; its log:\n{}",
        controllers[paused].log_tail()
    );
    // Once the watcher has caught up with the store, what it saw while the
    // Deployment counted 20 is final.
    moor_testkit::assert_eventually!(
        {
            let (listed, _) = pods.list(&mine).await?;
            let live: BTreeSet<String> = listed
                .iter()
                .filter(|p| p.meta().deletion_timestamp.is_none())
                .map(|p| p.meta().name.clone())
                .collect();
            live == history.lock().unwrap().live
        },
        Duration::from_secs(60),
        "the watcher catches up"
    );
    let most_at_20 = std::mem::take(&mut history.lock().unwrap().most_live);
    assert!(
        most_at_20 <= 20,
        "at most 20 live pods at once while the Deployment counted 20, saw {most_at_20}"
    );

    // The scheduler leader killed as the Deployment grows.
    let (_, killed) = leading(&client, "moor-scheduler", &schedulers).await;
    let mut scaled = deployments.get("default", "r5").await?;
    scaled.spec.as_mut().expect("a spec").replicas = Some(30);
    deployments.update(&scaled).await?;
    schedulers[killed].child.kill().await?;
    moor_testkit::assert_eventually!(running(30).await, Duration::from_secs(120), "30 Running");

    following.abort();
    let history = history.lock().unwrap();
    assert!(
        history.rebound.is_empty(),
        "pods bound to a second node: {:?}",
        history.rebound
    );
    assert!(
        history.most_live <= 30,
        "at most 30 live pods at once after the scale-up, saw {}",
        history.most_live
    );
    println!(
        "R5: controller-manager leader paused past its lease and resumed, scheduler leader \
         killed; at most {most_at_20} live pods while 20 were wanted, {} while 30 were; {} \
         pods bound, none twice",
        history.most_live,
        history.node.len()
    );
    Ok(())
}
