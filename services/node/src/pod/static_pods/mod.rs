//! Static pods: the Pod manifests of `--manifest-dir` run on this node
//! from the files themselves, each by a worker of its own, and show in the
//! API as mirror pods (see [`mirror`]). The directory is read every
//! `manifest_interval`: a new file starts a pod, a changed one replaces
//! it, a removed one stops it and removes its mirror. A file that does not
//! parse is logged (once per content) and skipped; the others keep running.

mod manifest;
mod mirror;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moor_api::core::v1::Pod;
use moor_runtime::labels;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::mirror::is_mirror;
use super::probe::Probers;
use super::{DEFAULT_GRACE_SECONDS, Synced, key, run_pod, stop_pod, uid_of};
use crate::Error;
use crate::agent::{Agent, StaticPod};

pub use moor_api::well_known::MIRROR_ANNOTATION as CONFIG_MIRROR;
/// Annotation of a static pod (and its mirror): the hash of its manifest.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation of a static pod (and its mirror): where it came from.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// A running worker, stopped through `removed` when its manifest goes.
struct Worker {
    removed: CancellationToken,
}

/// What the directory loop keeps between reads.
#[derive(Default)]
struct State {
    /// Workers by static pod uid.
    workers: HashMap<String, Worker>,
    /// What was last logged about each bad file (or the directory), so a
    /// problem is told once, not at every read.
    reported: HashMap<PathBuf, String>,
}

/// Runs the static pods until shutdown. Without a manifest directory it
/// only removes mirror pods an earlier run left.
pub async fn run(agent: Arc<Agent>, probers: Arc<Probers>, shutdown: CancellationToken) {
    let Some(dir) = agent.config.manifest_dir.clone() else {
        if let Err(err) = mirror::remove_orphans(&agent, &HashSet::new()).await {
            tracing::debug!(%err, "cannot look for mirror pods of an earlier run");
        }
        return;
    };
    tracing::info!(node = %agent.name, dir = %dir.display(), "running the static pods of the manifest directory");
    let mut state = State::default();
    let mut tasks = JoinSet::new();
    let mut ticks = tokio::time::interval(agent.config.manifest_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {
                let keep = read_dir(&agent, &probers, &dir, &mut state, &mut tasks, &shutdown).await;
                if let Err(err) = mirror::remove_orphans(&agent, &keep).await {
                    tracing::warn!(%err, "cannot look for orphaned mirror pods; retrying at the next read");
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Workers return at once on shutdown: the containers keep running.
    while tasks.join_next().await.is_some() {}
}

/// One read of the directory: starts, replaces and stops workers. Returns
/// the namespace and name of every static pod (whose mirrors stay).
async fn read_dir(
    agent: &Arc<Agent>,
    probers: &Arc<Probers>,
    dir: &Path,
    state: &mut State,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> HashSet<(String, String)> {
    let scan = match manifest::scan(dir, &agent.name).await {
        Ok(scan) => {
            state.reported.remove(dir);
            scan
        }
        Err(err) => {
            let message = err.to_string();
            if state.reported.get(dir) != Some(&message) {
                tracing::warn!(dir = %dir.display(), %err, "cannot read the manifest directory; static pods keep running as they are");
                state.reported.insert(dir.to_path_buf(), message);
            }
            return keep_all(agent, state);
        }
    };
    let mut bad: HashMap<PathBuf, String> = scan.bad.into_iter().collect();
    let mut wanted: HashMap<String, manifest::Manifest> = HashMap::new();
    let mut names = HashSet::new();
    for found in scan.pods {
        let name = names_of(&found.pod);
        if !names.insert(name.clone()) {
            let why = format!(
                "pod {}/{} is already defined by another file",
                name.0, name.1
            );
            bad.insert(found.path, why);
            continue;
        }
        wanted.insert(uid_of(&found.pod).to_owned(), found);
    }
    for (path, why) in &bad {
        if state.reported.get(path) != Some(why) {
            tracing::warn!(file = %path.display(), error = %why, "skipping a static pod manifest that cannot be used; fix the file");
        }
    }
    state.reported.retain(|path, _| path == dir);
    state.reported.extend(bad);
    state.workers.retain(|uid, worker| {
        let keep = wanted.contains_key(uid);
        if !keep {
            worker.removed.cancel();
        }
        keep
    });
    for (uid, found) in wanted {
        if state.workers.contains_key(&uid) {
            continue;
        }
        let pod = Arc::new(found.pod);
        let wake = Arc::new(Notify::new());
        agent.add_static(
            &uid,
            StaticPod {
                pod: pod.clone(),
                wake: wake.clone(),
            },
        );
        tracing::info!(pod = %key(&pod), file = %found.path.display(), "starting static pod");
        let removed = CancellationToken::new();
        let ends = Ends {
            removed: removed.clone(),
            shutdown: shutdown.clone(),
            wake,
        };
        tasks.spawn(worker(agent.clone(), probers.clone(), (*pod).clone(), ends));
        state.workers.insert(uid, Worker { removed });
    }
    names
}

/// The names of the static pods running now (the directory could not be read).
fn keep_all(agent: &Agent, state: &State) -> HashSet<(String, String)> {
    state
        .workers
        .keys()
        .filter_map(|uid| agent.static_pod(uid))
        .map(|s| names_of(&s.pod))
        .collect()
}

/// How a worker is woken or ended.
struct Ends {
    /// The manifest is gone: stop the pod.
    removed: CancellationToken,
    /// The agent stops: leave the containers running.
    shutdown: CancellationToken,
    /// A prober asks for a sync.
    wake: Arc<Notify>,
}

/// Runs one static pod until its manifest goes (then stops it) or the agent
/// stops (then leaves it running for the next agent to adopt).
async fn worker(agent: Arc<Agent>, probers: Arc<Probers>, mut pod: Pod, ends: Ends) {
    pod.status = mirror::last_status(&agent, &pod).await;
    loop {
        let next = match sync(&agent, &probers, &mut pod).await {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(pod = %key(&pod), %err, "static pod sync failed; retrying");
                agent.config.pod_resync
            }
        };
        tokio::select! {
            biased;
            () = ends.shutdown.cancelled() => return,
            () = ends.removed.cancelled() => break,
            () = ends.wake.notified() => {}
            () = tokio::time::sleep(next) => {}
        }
    }
    tracing::info!(pod = %key(&pod), "static pod manifest removed or changed; stopping the pod");
    loop {
        match stop(&agent, &probers, &pod).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(pod = %key(&pod), %err, "cannot stop the static pod yet; retrying");
            }
        }
        tokio::select! {
            () = ends.shutdown.cancelled() => return,
            () = tokio::time::sleep(agent.config.pod_resync) => {}
        }
    }
    agent.remove_static(uid_of(&pod));
    tracing::info!(pod = %key(&pod), "static pod stopped and its mirror removed");
}

/// One sync: the containers from the manifest, then the mirror. Returns
/// when to sync again.
#[tracing::instrument(skip_all, fields(node = %agent.name, pod = %key(pod)))]
async fn sync(agent: &Agent, probers: &Probers, pod: &mut Pod) -> Result<Duration, Error> {
    let next = {
        let lock = probers.pod_lock(uid_of(pod));
        let _one_at_a_time = lock.lock().await;
        match run_pod(agent, probers, pod).await? {
            Synced::Idle => agent.config.pod_resync,
            Synced::Status(status, next) => {
                pod.status = Some(*status);
                next
            }
        }
    };
    mirror::sync(agent, pod).await?;
    Ok(next)
}

/// Stops a static pod's containers with its grace period and removes its mirror.
async fn stop(agent: &Agent, probers: &Probers, pod: &Pod) -> Result<(), Error> {
    let uid = uid_of(pod);
    let lock = probers.pod_lock(uid);
    let _one_at_a_time = lock.lock().await;
    probers.forget(uid);
    let existing = agent
        .runtime
        .list_containers(&[(labels::POD_UID, uid)])
        .await?;
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    stop_pod(agent, pod, &existing, grace).await?;
    mirror::remove(agent, pod).await
}

fn names_of(pod: &Pod) -> (String, String) {
    pod.metadata
        .as_ref()
        .map_or_else(Default::default, |m| (m.namespace.clone(), m.name.clone()))
}
