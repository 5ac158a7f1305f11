//! The scheduling loop: informers feed the cache and the queue; each popped
//! pod is decided on the cache, assumed at once, and bound in the
//! background; pods that fit nowhere are told why.
//!
//! Under leader election, each term runs a fresh session (cache, queue,
//! informers) that ends with the term; binds stay conditional at the API, so
//! a deposed leader can never bind a pod twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use moor_api::core::v1::{Node, Pod, Service};
use moor_client::watcher::Event;
use moor_client::{Client, ListParams, ObjectKey, watcher};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::spec_of;
use crate::queue::Queue;
use crate::{Cache, Config, DEFAULT_SCHEDULER, Decision, Error, schedule};

mod report;

/// The informers a session waits for before its first decision.
const INFORMERS: usize = 3;

/// State shared by one session's tasks.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) events: moor_client::events::Recorder,
    // std locks: held only for synchronous cache and map work, never across an await.
    cache: Mutex<Cache>,
    pending: Mutex<HashMap<ObjectKey, Arc<Pod>>>,
    queue: Queue,
    synced: watch::Sender<usize>,
}

/// Runs the scheduler until `shutdown`: at once, or while leading when
/// `config.leader_elect`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let client = Client::connect(&config.server, &config.credentials).map_err(Error::Client)?;
    moor_client::follow_servers(&client, shutdown.clone());
    let published = match config.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| Error::Listen { addr, source })?;
            tokio::spawn(crate::service::serve(
                client.clone(),
                listener,
                shutdown.clone(),
            ));
            Some(crate::service::reachable(bound))
        }
        None => None,
    };
    if !config.leader_elect {
        session(client, config.identity.clone(), published, shutdown).await;
        return Ok(());
    }
    let identity = config.identity.clone();
    moor_leader::lead(
        &client,
        "moor-scheduler",
        &identity,
        config.lease,
        shutdown,
        |fenced, term| session(fenced, identity.clone(), published, term),
    )
    .await;
    Ok(())
}

/// One session: informers, the scheduling loop and binds, until `token`.
/// It starts by naming this scheduler's plan service as the active one.
async fn session(
    client: Client,
    identity: String,
    published: Option<std::net::SocketAddr>,
    token: CancellationToken,
) {
    if let Some(addr) = published {
        crate::service::publish(&client, addr).await;
    }
    let shared = Arc::new(Shared {
        events: moor_client::events::Recorder::reporting(&client, report::COMPONENT, &identity, ""),
        client,
        cache: Mutex::new(Cache::default()),
        pending: Mutex::new(HashMap::new()),
        queue: Queue::new(),
        synced: watch::channel(0).0,
    });
    let mut informers = JoinSet::new();
    informers.spawn(watch_nodes(shared.clone()));
    informers.spawn(watch_pods(shared.clone()));
    informers.spawn(watch_services(shared.clone()));
    let mut binds = JoinSet::new();
    let mut synced = shared.synced.subscribe();
    tokio::select! {
        _ = async { synced.wait_for(|n| *n >= INFORMERS).await.map(|_| ()) } => {
            tracing::info!("caches synced; scheduling");
            loop {
                tokio::select! {
                    (key, cycle) = shared.queue.pop() => schedule_one(&shared, key, cycle, &mut binds),
                    () = token.cancelled() => break,
                }
                while binds.try_join_next().is_some() {}
            }
        }
        () = token.cancelled() => {}
    }
    informers.abort_all();
    // Binds already sent finish, so their outcome is recorded.
    while binds.join_next().await.is_some() {}
}

/// Decides one pod and, if it fits somewhere, assumes it there and binds in
/// the background.
fn schedule_one(shared: &Arc<Shared>, key: ObjectKey, cycle: u64, binds: &mut JoinSet<()>) {
    let Some(pod) = lock(&shared.pending).get(&key).cloned() else {
        return;
    };
    let uid = pod
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let decision = {
        let mut cache = lock(&shared.cache);
        if cache.has_pod(&uid) {
            // Assumed already, its bind still running.
            return;
        }
        let decision = schedule(&cache, &pod);
        if let Decision::Bind(node) = &decision {
            cache.assume(&pod, node);
        }
        decision
    };
    match decision {
        Decision::Bind(node) => {
            binds.spawn(report::bind(shared.clone(), key, pod, node));
        }
        Decision::Unschedulable(message) => {
            tracing::debug!(pod = %key, %message, "unschedulable");
            shared.queue.unschedulable(key, cycle);
            binds.spawn(report::unschedulable(shared.clone(), pod, message));
        }
    }
}

/// Whether this scheduler should place `pod` now.
fn wants(pod: &Pod) -> bool {
    let spec = spec_of(pod);
    let deleting = pod
        .metadata
        .as_ref()
        .is_some_and(|m| m.deletion_timestamp.is_some());
    let name = if spec.scheduler_name.is_empty() {
        DEFAULT_SCHEDULER
    } else {
        spec.scheduler_name.as_str()
    };
    spec.node_name.is_empty() && name == DEFAULT_SCHEDULER && !deleting
}

/// The node a pod holds resources on: bound and not finished.
pub(crate) fn bound_node(pod: &Pod) -> Option<String> {
    let node = pod
        .spec
        .as_ref()
        .map(|s| s.node_name.clone())
        .unwrap_or_default();
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    (!node.is_empty() && !matches!(phase, "Succeeded" | "Failed")).then_some(node)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn watch_nodes(shared: Arc<Shared>) {
    let mut first = true;
    let mut stream = std::pin::pin!(watcher(shared.client.api::<Node>(), ListParams::default()));
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Restarted(nodes)) => lock(&shared.cache).reset_nodes(nodes),
            Ok(Event::Applied(node)) => lock(&shared.cache).set_node(node),
            Ok(Event::Deleted(node)) => {
                let name = node.metadata.map(|m| m.name).unwrap_or_default();
                lock(&shared.cache).remove_node(&name);
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "node watch failed; it resumes by itself");
                continue;
            }
        }
        shared.queue.move_all();
        mark_synced(&shared, &mut first);
    }
}

async fn watch_services(shared: Arc<Shared>) {
    let mut first = true;
    let mut stream = std::pin::pin!(watcher(
        shared.client.api::<Service>(),
        ListParams::default()
    ));
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Restarted(services)) => {
                lock(&shared.cache).reset_services(&services);
                mark_synced(&shared, &mut first);
            }
            Ok(Event::Applied(s)) => lock(&shared.cache).set_service(&s),
            Ok(Event::Deleted(s)) => lock(&shared.cache).remove_service(&s),
            Err(error) => tracing::warn!(%error, "service watch failed; it resumes by itself"),
        }
    }
}

async fn watch_pods(shared: Arc<Shared>) {
    let mut first = true;
    let mut stream = std::pin::pin!(watcher(shared.client.api::<Pod>(), ListParams::default()));
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Restarted(pods)) => {
                restart_pods(&shared, pods);
                mark_synced(&shared, &mut first);
            }
            Ok(Event::Applied(pod)) => applied_pod(&shared, pod),
            Ok(Event::Deleted(pod)) => {
                let key = ObjectKey::of(&pod);
                let uid = pod
                    .metadata
                    .as_ref()
                    .map(|m| m.uid.clone())
                    .unwrap_or_default();
                lock(&shared.pending).remove(&key);
                shared.queue.done(&key);
                if lock(&shared.cache).remove_pod(&uid) {
                    shared.queue.move_all();
                }
            }
            Err(error) => tracing::warn!(%error, "pod watch failed; it resumes by itself"),
        }
    }
}

fn restart_pods(shared: &Shared, pods: Vec<Pod>) {
    let mut bound = Vec::new();
    let mut pending = HashMap::new();
    for pod in pods {
        if let Some(node) = bound_node(&pod) {
            bound.push((pod, node));
        } else if wants(&pod) {
            pending.insert(ObjectKey::of(&pod), Arc::new(pod));
        }
    }
    lock(&shared.cache).reset_bound(bound);
    let keys: Vec<ObjectKey> = pending.keys().cloned().collect();
    *lock(&shared.pending) = pending;
    for key in keys {
        shared.queue.add(key);
    }
    shared.queue.move_all();
}

fn applied_pod(shared: &Shared, pod: Pod) {
    let key = ObjectKey::of(&pod);
    let uid = pod
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    if let Some(node) = bound_node(&pod) {
        lock(&shared.pending).remove(&key);
        shared.queue.done(&key);
        lock(&shared.cache).add_bound(&pod, &node);
        return;
    }
    let assigned = pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty());
    if assigned && lock(&shared.cache).remove_pod(&uid) {
        // A bound pod finished: its resources are free again.
        shared.queue.move_all();
    }
    if !wants(&pod) {
        lock(&shared.pending).remove(&key);
        shared.queue.done(&key);
        return;
    }
    let pod = Arc::new(pod);
    let unchanged = lock(&shared.pending)
        .insert(key.clone(), pod.clone())
        .is_some_and(|old| {
            old.spec == pod.spec
                && old.metadata.as_ref().map(|m| &m.labels)
                    == pod.metadata.as_ref().map(|m| &m.labels)
        });
    // Our own status writes change only the status: no reason to retry.
    if !unchanged {
        shared.queue.add(key);
    }
}

fn mark_synced(shared: &Shared, first: &mut bool) {
    if std::mem::take(first) {
        shared.synced.send_modify(|n| *n += 1);
    }
}

/// `run` must stay spawnable.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>(_: &T) {}
    is_send(&run(Config::new(""), CancellationToken::new()));
}

// === impl Shared ===

impl Shared {
    pub(crate) fn forget(&self, uid: &str) {
        lock(&self.cache).forget(uid);
    }

    pub(crate) fn bound(&self, key: &ObjectKey) {
        self.queue.done(key);
    }

    pub(crate) fn retry(&self, key: ObjectKey) {
        self.queue.backoff(key);
    }
}
