//! The pod sync loop: a controller over the pods bound to this node that
//! converges the runtime to each pod and writes its status. Probers wake a
//! pod's sync when a probe's verdict changes; a lock per pod keeps its
//! syncs one at a time.

mod dns;
mod etc;
mod image;
mod init;
mod keyring;
mod links;
mod probe;
mod sources;
mod spec;
mod static_pods;
mod status;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use moor_api::core::v1::{Container, Pod, PodStatus};
use moor_client::{Action, Context, Controller, DeleteParams, ListParams};
use moor_runtime::{ContainerInfo, ContainerState, labels};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::probe::{Probers, Wake};
use self::status::{Observed, Waiting};
use crate::Error;
use crate::agent::Agent;

/// Grace period when neither the deletion nor the spec gives one.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Runs the sync loop (and the probers' wakes, and the static pods) until shutdown.
pub async fn run_controller(agent: Arc<Agent>, shutdown: CancellationToken) {
    let (probers, wakes) = Probers::new(agent.runtime.clone(), shutdown.clone());
    let probers = Arc::new(probers);
    let params = ListParams::default()
        .fields(format!("spec.nodeName={}", agent.name))
        .any_version();
    let controller = Controller::new(agent.client.api::<Pod>(), params);
    let reconcile = {
        let (agent, probers) = (agent.clone(), probers.clone());
        move |pod: Arc<Pod>, _ctx: Context<Pod>| {
            let (agent, probers) = (agent.clone(), probers.clone());
            async move { sync(&agent, &probers, &pod).await }
        }
    };
    tokio::join!(
        controller.run(reconcile, shutdown.clone()),
        static_pods::run(agent.clone(), probers.clone(), shutdown.clone()),
        wake_loop(agent, probers, wakes, shutdown),
    );
}

/// Syncs each pod a prober asks for, at once rather than at the next resync,
/// so readiness reaches the endpoints promptly.
async fn wake_loop(
    agent: Arc<Agent>,
    probers: Arc<Probers>,
    mut wakes: mpsc::UnboundedReceiver<Wake>,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(wake) = wakes.recv() => {
                tasks.spawn(woken(agent.clone(), probers.clone(), wake));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One sync a prober asked for, on the pod as the apiserver has it now (a
/// static pod's worker syncs its own).
async fn woken(agent: Arc<Agent>, probers: Arc<Probers>, wake: Wake) {
    if let Some(found) = agent.static_pod(&wake.uid) {
        if let Some((reason, message)) = wake.event {
            agent.events.warning(found.pod.as_ref(), &reason, message);
        }
        found.wake.notify_one();
        return;
    }
    let lock = probers.pod_lock(&wake.uid);
    let _one_at_a_time = lock.lock().await;
    let pod = match agent
        .client
        .api::<Pod>()
        .get(&wake.namespace, &wake.name)
        .await
    {
        Ok(pod) if pod.metadata.as_ref().is_some_and(|m| m.uid == wake.uid) => pod,
        Ok(_) | Err(moor_client::Error::NotFound(_)) => {
            probers.forget(&wake.uid);
            return;
        }
        Err(err) => {
            tracing::debug!(pod = %wake.name, %err, "cannot read a pod its prober woke; the next resync catches up");
            return;
        }
    };
    if let Some((reason, message)) = wake.event {
        agent.events.warning(&pod, &reason, message);
    }
    if let Err(err) = sync_locked(&agent, &probers, &pod).await {
        tracing::warn!(pod = %wake.name, %err, "sync after a probe change failed; the next resync retries");
    }
}

/// One sync of one pod, after the other syncs of the pod.
async fn sync(agent: &Agent, probers: &Probers, pod: &Pod) -> Result<Action, Error> {
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    let lock = probers.pod_lock(uid);
    let _one_at_a_time = lock.lock().await;
    sync_locked(agent, probers, pod).await
}

/// One sync of one pod; the caller holds the pod's lock. Mirror pods are
/// left to the static pods' workers: what runs comes from the manifest.
#[tracing::instrument(skip_all, fields(node = %agent.name, pod = %key(pod)))]
async fn sync_locked(agent: &Agent, probers: &Probers, pod: &Pod) -> Result<Action, Error> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.node_name != agent.name || static_pods::is_mirror(pod) {
        return Ok(Action::AwaitChange);
    }
    if meta.deletion_timestamp.is_some() {
        probers.forget(&meta.uid);
        let existing = agent
            .runtime
            .list_containers(&[(labels::POD_UID, &meta.uid)])
            .await?;
        terminate(agent, pod, &existing).await?;
        return Ok(Action::AwaitChange);
    }
    match run_pod(agent, probers, pod).await? {
        Synced::Idle => Ok(Action::AwaitChange),
        Synced::Status(new_status, next) => {
            if pod.status.as_ref() != Some(&new_status) {
                let mut updated = pod.clone();
                updated.status = Some(*new_status);
                agent.client.api::<Pod>().update_status(&updated).await?;
                tracing::debug!("pod status written");
            }
            Ok(Action::Requeue(next))
        }
    }
}

/// What one run of a pod decided.
enum Synced {
    /// Nothing runs any more (the pod is done): no status to write.
    Idle,
    /// The pod's new status; look again after this long.
    Status(Box<PodStatus>, Duration),
}

/// Converges the runtime to a pod that is not being deleted (the caller
/// holds its lock) and computes its status; `pod.status` is the last one.
async fn run_pod(agent: &Agent, probers: &Probers, pod: &Pod) -> Result<Synced, Error> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut existing = agent
        .runtime
        .list_containers(&[(labels::POD_UID, &meta.uid)])
        .await?;
    let phase = pod.status.as_ref().map_or("", |s| s.phase.as_str());
    if matches!(phase, "Succeeded" | "Failed") {
        probers.forget(&meta.uid);
        // Nothing runs again: the sandbox goes, the exited containers stay
        // until the pod is deleted (their status is already written).
        for sandbox in existing
            .iter()
            .filter(|c| c.is_sandbox() && c.state == ContainerState::Running)
        {
            agent
                .runtime
                .stop_container(&sandbox.id, Duration::ZERO)
                .await?;
        }
        return Ok(Synced::Idle);
    }
    if kill_unhealthy(agent, probers, pod, &existing).await? {
        existing = agent
            .runtime
            .list_containers(&[(labels::POD_UID, &meta.uid)])
            .await?;
    }
    let killed = probers.killed(&meta.uid);
    let mut waiting = HashMap::new();
    let mut next = agent.config.pod_resync;
    let sources = sources::Sources::fetch(agent, pod).await?;
    let links = links::ServiceLinks::default();
    let Sandbox {
        running: sandbox,
        problem,
        started,
    } = ensure_sandbox(agent, pod, &existing).await?;
    if let Some(sandbox) = &sandbox {
        etc::write(agent, pod, sandbox.ip.as_deref().unwrap_or_default()).await?;
        let volume_error = spec::prepare_volumes(agent, pod, &sources).await?;
        let inputs = Inputs {
            sandbox,
            started: &started,
            sources: &sources,
            links: &links,
            killed: &killed,
        };
        if let Some(spec::ConfigError(message)) = &volume_error {
            for container in spec.init_containers.iter().chain(&spec.containers) {
                let reason = "CreateContainerConfigError".to_string();
                waiting.insert(
                    container.name.clone(),
                    Waiting {
                        reason,
                        message: message.clone(),
                    },
                );
            }
        } else if init::advance(agent, pod, &existing, &inputs, &mut waiting, &mut next).await?
            == init::Progress::Done
        {
            for container in &spec.containers {
                let attempts = attempts_of(&existing, &container.name);
                let policy = spec.restart_policy.as_str();
                match converge(agent, pod, container, policy, &attempts, &inputs).await? {
                    Step::Fine => {}
                    Step::Wait(w, due) => {
                        waiting.insert(container.name.clone(), w);
                        next = next.min(due);
                    }
                }
            }
        }
    }
    // However the steps above went, a new sandbox's start has ended before
    // the pod is observed.
    started.wait(agent).await?;
    // Observe again: the steps above may have created, started or removed
    // containers (a runtime answers from what it already listed when they
    // did not).
    let current = agent
        .runtime
        .list_containers(&[(labels::POD_UID, &meta.uid)])
        .await?;
    let pod_ip = current
        .iter()
        .filter(|c| c.is_sandbox() && c.state == ContainerState::Running)
        .max_by_key(|c| c.attempt())
        .and_then(|c| c.ip.clone())
        .unwrap_or_default();
    probers.retain_killed(&meta.uid, &current);
    let running: Vec<(&Container, &ContainerInfo)> = spec
        .containers
        .iter()
        .filter_map(|c| {
            let latest = attempts_of(&current, &c.name).last().copied()?;
            (latest.state == ContainerState::Running).then_some((c, latest))
        })
        .collect();
    let health = probers.update(pod, &pod_ip, &running);
    let observed = Observed {
        attempts: spec
            .init_containers
            .iter()
            .chain(&spec.containers)
            .map(|c| (c.name.clone(), attempts_of(&current, &c.name)))
            .collect(),
        health,
        killed: probers.killed(&meta.uid),
        waiting,
        pod_ip,
        host_ip: agent.host_ip.clone(),
        scheme: agent.runtime.id_scheme().to_owned(),
        problem,
    };
    let new_status = status::compute(pod, &observed);
    Ok(Synced::Status(
        Box::new(new_status),
        next.max(Duration::from_millis(100)),
    ))
}

/// What creating a pod's app containers needs besides the pod.
struct Inputs<'a> {
    /// The sandbox whose namespaces they join.
    sandbox: &'a ContainerInfo,
    /// Its start, which theirs wait for.
    started: &'a SandboxStart,
    /// The config maps and secrets the pod refers to.
    sources: &'a sources::Sources,
    /// The service variables, listed on first use.
    links: &'a links::ServiceLinks,
    /// Containers killed for a failed probe (restarted unless the policy is Never).
    killed: &'a HashSet<String>,
}

/// What a container needs next.
enum Step {
    /// Running, or done for good.
    Fine,
    /// Waiting for this reason; look again after this long.
    Wait(Waiting, Duration),
}

/// Starts, restarts per `policy` (after back-off) or leaves one container.
async fn converge(
    agent: &Agent,
    pod: &Pod,
    container: &Container,
    policy: &str,
    attempts: &[&ContainerInfo],
    inputs: &Inputs<'_>,
) -> Result<Step, Error> {
    let Some(latest) = attempts.last() else {
        return start(agent, pod, container, 0, inputs).await;
    };
    match latest.state {
        ContainerState::Running => Ok(Step::Fine),
        ContainerState::Created => {
            inputs.started.wait(agent).await?;
            agent.runtime.start_container(&latest.id).await?;
            Ok(Step::Fine)
        }
        ContainerState::Exited if !status::restarts_after(policy, latest, inputs.killed) => {
            Ok(Step::Fine)
        }
        ContainerState::Exited => {
            let backoff = agent.config.backoff(latest.attempt());
            let since = latest
                .finished_at
                .and_then(|f| SystemTime::now().duration_since(f).ok())
                .unwrap_or(backoff);
            if since < backoff {
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}",
                    backoff.as_secs(),
                    container.name,
                    key(pod)
                );
                return Ok(Step::Wait(
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message,
                    },
                    backoff - since,
                ));
            }
            let step = start(agent, pod, container, latest.attempt() + 1, inputs).await?;
            // Keep the previous attempt for lastState; older ones go.
            for old in attempts.iter().rev().skip(1) {
                agent.runtime.remove_container(&old.id).await?;
            }
            Ok(step)
        }
    }
}

/// Stops running containers whose startup or liveness probe failed (the
/// converge that follows restarts them per the policy); true when any was.
async fn kill_unhealthy(
    agent: &Agent,
    probers: &Probers,
    pod: &Pod,
    existing: &[ContainerInfo],
) -> Result<bool, Error> {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    let mut killed = false;
    for container in &spec.containers {
        let attempts = attempts_of(existing, &container.name);
        let Some(latest) = attempts
            .last()
            .filter(|c| c.state == ContainerState::Running)
        else {
            continue;
        };
        let Some(failure) = probers.failure(uid, &latest.id) else {
            continue;
        };
        let grace = failure
            .grace_seconds
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        let mut message = format!(
            "Container {} failed {} probe",
            container.name,
            failure.probe.as_str().to_lowercase()
        );
        if spec.restart_policy != "Never" {
            message.push_str(", will be restarted");
        }
        tracing::info!(container = %container.name, reason = %failure.message, grace_seconds = grace, "killing container: {message}");
        agent.events.normal(pod, "Killing", message);
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        agent.runtime.stop_container(&latest.id, grace).await?;
        probers.mark_killed(uid, &latest.id);
        killed = true;
    }
    Ok(killed)
}

/// Ensures the image per the pull policy, then creates and starts attempt `attempt`.
async fn start(
    agent: &Agent,
    pod: &Pod,
    container: &Container,
    attempt: u32,
    inputs: &Inputs<'_>,
) -> Result<Step, Error> {
    if let Some(wait) = image::ensure(agent, pod, container, inputs.sources).await? {
        return Ok(wait);
    }
    let sandbox = inputs.sandbox;
    let pod_ip = sandbox.ip.clone().unwrap_or_default();
    let mut spec = match spec::app(
        agent,
        pod,
        container,
        attempt,
        &sandbox.id,
        &pod_ip,
        inputs.sources,
    ) {
        Ok(spec) => spec,
        Err(spec::ConfigError(message)) => {
            let reason = "CreateContainerConfigError".into();
            return Ok(Step::Wait(
                Waiting { reason, message },
                agent.config.backoff_max,
            ));
        }
    };
    spec.env = inputs.links.add_to(agent, pod, spec.env).await?;
    let id = agent.runtime.create_container(&spec).await?;
    inputs.started.wait(agent).await?;
    if let Err(err) = agent.runtime.start_container(&id).await {
        // The container stays, exited with the engine's error; the next
        // sync backs off from it like from a crash.
        tracing::warn!(container = %container.name, %err, "container failed to start");
    } else {
        tracing::info!(container = %container.name, attempt, "started container");
    }
    Ok(Step::Fine)
}

/// The running sandbox, created when missing; or the problem preventing it.
async fn ensure_sandbox(
    agent: &Agent,
    pod: &Pod,
    existing: &[ContainerInfo],
) -> Result<Sandbox, Error> {
    let sandboxes: Vec<&ContainerInfo> = existing.iter().filter(|c| c.is_sandbox()).collect();
    let latest = sandboxes.iter().max_by_key(|c| c.attempt()).copied();
    if let Some(sandbox) = latest.filter(|c| c.state == ContainerState::Running) {
        return Ok(Sandbox {
            running: Some(sandbox.clone()),
            ..Sandbox::default()
        });
    }
    let image = &agent.config.sandbox_image;
    // The image and the network are checked once, not per sandbox (a burst
    // of pods would queue on them); a failed create checks both again.
    let checked = agent.sandbox_ready.load(Ordering::Relaxed);
    if !checked && agent.runtime.image_id(image).await?.is_none() {
        let message = format!(
            "the sandbox image {image} is missing on node {}: build it with images/build.sh",
            agent.name
        );
        tracing::warn!(%message, "cannot create pod sandbox");
        let reason = "SandboxImageMissing".into();
        return Ok(Sandbox {
            problem: Some(Waiting { reason, message }),
            ..Sandbox::default()
        });
    }
    // A new sandbox means a new network namespace: every container of the
    // pod is created again in it.
    for container in sandboxes_last(existing) {
        agent.runtime.remove_container(&container.id).await?;
    }
    if !checked {
        agent.runtime.ensure_network(&agent.config.network).await?;
        agent.sandbox_ready.store(true, Ordering::Relaxed);
    }
    let attempt = latest.map_or(0, |c| c.attempt() + 1);
    let id = match agent
        .runtime
        .create_container(&spec::sandbox(agent, pod, attempt))
        .await
    {
        Ok(id) => id,
        Err(err) => {
            agent.sandbox_ready.store(false, Ordering::Relaxed);
            return Err(err.into());
        }
    };
    // When the runtime gave the sandbox its address at creation (moor
    // attaches it), the pod's containers are created while it starts, and
    // started once it has; otherwise its address is known only once it runs.
    let created = agent.runtime.inspect_container(&id).await?;
    let started = SandboxStart::spawn(agent, id.clone(), attempt);
    if created.as_ref().is_some_and(|c| c.ip.is_some()) {
        return Ok(Sandbox {
            running: created,
            problem: None,
            started,
        });
    }
    started.wait(agent).await?;
    let running = agent.runtime.inspect_container(&id).await?;
    Ok(Sandbox {
        running,
        problem: None,
        started,
    })
}

/// `containers` in the order to remove them: a sandbox after the containers
/// that share its network namespace, which holds its address until then.
pub(crate) fn sandboxes_last<'a>(
    containers: impl IntoIterator<Item = &'a ContainerInfo>,
) -> Vec<&'a ContainerInfo> {
    let mut ordered: Vec<&ContainerInfo> = containers.into_iter().collect();
    ordered.sort_by_key(|c| c.is_sandbox());
    ordered
}

/// What [`ensure_sandbox`] found or made.
#[derive(Default)]
struct Sandbox {
    /// The sandbox: running, or being started by `started`.
    running: Option<ContainerInfo>,
    /// Why there is none.
    problem: Option<Waiting>,
    /// The start of a new sandbox.
    started: SandboxStart,
}

/// A new sandbox's start, under way while the pod's containers are created;
/// they start once it is done. Default: nothing to wait for.
#[derive(Default)]
struct SandboxStart(Option<Shared<BoxFuture<'static, Result<(), String>>>>);

impl SandboxStart {
    /// Starts sandbox `id` in a task of its own.
    fn spawn(agent: &Agent, id: String, attempt: u32) -> Self {
        use tracing::Instrument;
        let runtime = agent.runtime.clone();
        let task = tokio::spawn(
            async move {
                runtime.start_container(&id).await?;
                tracing::info!(attempt, "started pod sandbox");
                Ok::<(), moor_runtime::Error>(())
            }
            .in_current_span(),
        );
        let outcome = async move {
            match task.await {
                Ok(started) => started.map_err(|e| e.to_string()),
                Err(panicked) => Err(panicked.to_string()),
            }
        };
        Self(Some(outcome.boxed().shared()))
    }

    /// Waits for the start; its failure fails every caller.
    async fn wait(&self, agent: &Agent) -> Result<(), Error> {
        let Some(outcome) = &self.0 else {
            return Ok(());
        };
        outcome.clone().await.map_err(|message| {
            // The network may have gone behind the agent's back (a `docker
            // network prune` succeeds while no container of Docker's is on
            // it): the next sandbox checks it again.
            agent.sandbox_ready.store(false, Ordering::Relaxed);
            Error::Runtime(moor_runtime::Error::Engine(format!(
                "starting the pod sandbox: {message}"
            )))
        })
    }
}

/// Graceful deletion: stop and remove the containers, and confirm so the
/// apiserver removes the pod.
async fn terminate(agent: &Agent, pod: &Pod, existing: &[ContainerInfo]) -> Result<(), Error> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let grace = meta
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    stop_pod(agent, pod, existing, grace).await?;
    let params = DeleteParams {
        uid: Some(meta.uid.clone()),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match agent
        .client
        .api::<Pod>()
        .delete(&meta.namespace, &meta.name, &params)
        .await
    {
        Ok(_) | Err(moor_client::Error::NotFound(_)) => {}
        Err(err) => return Err(err.into()),
    }
    tracing::info!("pod stopped and removed");
    Ok(())
}

/// Stops app containers: their stop signal once, SIGKILL for those still
/// running when the grace period ends; removes them, then the sandbox, and
/// the pod's directory.
///
/// Once the signal has gone out, the grace period's end is written into the
/// pod's directory ([`STOPPING`]): an agent restarted meanwhile finishes the
/// same stop, without a second signal and without starting the grace period
/// over (unless the grace period was shortened since). An agent that dies
/// between the signal and the write signals again when it is back.
async fn stop_pod(
    agent: &Agent,
    pod: &Pod,
    existing: &[ContainerInfo],
    grace: Duration,
) -> Result<(), Error> {
    let uid = uid_of(pod);
    let dir = agent.pod_dir(uid);
    let stopping = dir.join(STOPPING);
    let apps: Vec<&ContainerInfo> = existing
        .iter()
        .filter(|c| !c.is_sandbox() && c.state == ContainerState::Running)
        .collect();
    let deadline = match signalled(&stopping).await {
        Some(deadline) => {
            tracing::info!("resuming the pod's stop: its containers had their signal");
            deadline.min(moor_runtime::deadline_after(grace))
        }
        None => {
            tracing::info!(grace_seconds = grace.as_secs(), "stopping pod");
            let signals = apps.iter().map(|c| agent.runtime.signal_stop(&c.id));
            for result in futures::future::join_all(signals).await {
                result?;
            }
            let deadline = moor_runtime::deadline_after(grace);
            let millis = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| Error::io(&dir, e))?;
            tokio::fs::write(&stopping, millis.to_string())
                .await
                .map_err(|e| Error::io(&stopping, e))?;
            deadline
        }
    };
    let kills = apps.iter().map(|c| agent.runtime.kill_at(&c.id, deadline));
    for result in futures::future::join_all(kills).await {
        result?;
    }
    // A removal kills what still runs (the sandbox, a container that
    // outlived its grace period).
    for container in sandboxes_last(existing) {
        agent.runtime.remove_container(&container.id).await?;
    }
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io(&dir, err)),
    }
    agent.clear_pull_failures(uid, None);
    Ok(())
}

/// The file in a pod's directory that says its containers have had their
/// stop signal, holding the grace period's end (milliseconds since the
/// epoch).
const STOPPING: &str = "stopping";

/// The grace period's end written at `path` by an earlier stop, if any.
async fn signalled(path: &std::path::Path) -> Option<SystemTime> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    let millis: u64 = text.trim().parse().ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// A container's attempts, oldest first.
fn attempts_of<'a>(containers: &'a [ContainerInfo], name: &str) -> Vec<&'a ContainerInfo> {
    let mut attempts: Vec<&ContainerInfo> = containers
        .iter()
        .filter(|c| !c.is_sandbox() && c.label(labels::CONTAINER_NAME) == name)
        .collect();
    attempts.sort_by_key(|c| c.attempt());
    attempts
}

/// The pod's uid ("" when unset).
fn uid_of(pod: &Pod) -> &str {
    pod.metadata.as_ref().map_or("", |m| m.uid.as_str())
}

fn key(pod: &Pod) -> String {
    pod.metadata
        .as_ref()
        .map_or_else(String::new, |m| format!("{}/{}", m.namespace, m.name))
}
