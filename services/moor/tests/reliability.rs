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
