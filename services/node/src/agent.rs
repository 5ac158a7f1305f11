//! [`Agent`]: what every part of one node agent shares.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::FutureExt;
use moor_api::core::v1::Pod;
use moor_client::Client;
use moor_runtime::{ContainerRuntime, Docker, RegistryAuth};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Config, Error, node};

/// The component the node's events name as their source.
const EVENT_COMPONENT: &str = "moor-node";

/// One node agent: its settings, API client and runtime.
pub struct Agent {
    /// The node's name.
    pub name: String,
    /// Settings.
    pub config: Config,
    /// The apiserver.
    pub client: Client,
    /// Events about this node's pods.
    pub events: moor_client::events::Recorder,
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The node's address, reported as InternalIP and as pods' hostIP.
    pub host_ip: String,
    /// The machine's hostname.
    pub hostname: String,
    /// The absolute data directory.
    pub data_dir: PathBuf,
    /// Port of the NodeAgent service (logs, exec); 0 when it does not run.
    pub agent_port: u16,
    /// The sandbox image and the cluster network are known to be there
    /// (checked again after a failed sandbox create).
    pub sandbox_ready: std::sync::atomic::AtomicBool,
    /// The host's resolver settings, read on first use (pods with
    /// dnsPolicy Default get them; a change needs an agent restart, as
    /// kubelet's --resolv-conf does).
    pub host_resolv_conf: tokio::sync::OnceCell<String>,
    /// Failed pulls by (pod uid, container name), for ImagePullBackOff.
    // A std Mutex: only short synchronous sections use it.
    pull_failures: Mutex<HashMap<(String, String), PullFailure>>,
    /// Pulls running in the background, by (pod uid, container name).
    // A std Mutex: only short synchronous sections use it.
    pulls: Mutex<HashMap<(String, String), Pull>>,
    /// The Node status last written (heartbeat times left out) and when:
    /// an unchanged one is written again only now and then.
    pub reported: Mutex<Option<(moor_api::core::v1::NodeStatus, tokio::time::Instant)>>,
    /// The node's Lease as last written, renewed without reading it first.
    pub lease: Mutex<Option<moor_api::coordination::v1::Lease>>,
    /// The static pods this agent runs, by uid (the mirror pods in the API
    /// have other uids).
    // A std Mutex: only short synchronous sections use it.
    statics: Mutex<HashMap<String, StaticPod>>,
}

/// A static pod (from the manifest directory) as the rest of the agent sees it.
#[derive(Clone)]
pub struct StaticPod {
    /// The pod as its manifest defines it (no status).
    pub pod: Arc<Pod>,
    /// Wakes the pod's worker for a sync (a prober's verdict changed).
    pub wake: Arc<Notify>,
}

/// An image pull running in the background for one container, so the pod's
/// status can say ContainerCreating meanwhile; aborted when dropped (the
/// pod went away).
pub struct Pull {
    image: String,
    started: Instant,
    task: JoinHandle<Result<(), moor_runtime::Error>>,
}

/// Where the background pull of one container's image is.
pub enum PullState {
    /// None runs.
    Idle,
    /// Still pulling this image.
    Running,
    /// Done: the image, how long it took, and how it ended.
    Done(String, std::time::Duration, Result<(), String>),
}

/// The last failed pull of one container's image.
#[derive(Clone, Debug)]
pub struct PullFailure {
    /// Failures in a row.
    pub count: u32,
    /// When the last one happened.
    pub at: SystemTime,
    /// The runtime's message.
    pub message: String,
}

// === impl Agent ===

impl Agent {
    /// Prepares the data directory and finds the node's address.
    pub async fn new(
        config: Config,
        client: Client,
        runtime: Arc<dyn ContainerRuntime>,
        agent_port: u16,
    ) -> Result<Self, Error> {
        let dir = config.data_dir.join("pods");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        // Bind mounts need absolute host paths.
        let data_dir = tokio::fs::canonicalize(&config.data_dir)
            .await
            .map_err(|e| Error::io(&config.data_dir, e))?;
        Ok(Self {
            name: config.name.clone(),
            events: moor_client::events::Recorder::reporting(
                &client,
                EVENT_COMPONENT,
                &config.name,
                &config.name,
            ),
            client,
            runtime,
            host_ip: config.node_ip.to_string(),
            hostname: hostname(),
            data_dir,
            agent_port,
            sandbox_ready: std::sync::atomic::AtomicBool::new(false),
            host_resolv_conf: tokio::sync::OnceCell::new(),
            config,
            pull_failures: Mutex::default(),
            pulls: Mutex::default(),
            statics: Mutex::default(),
            reported: Mutex::default(),
            lease: Mutex::default(),
        })
    }

    /// The directory of a pod's volumes.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    /// The last failed pull of a container's image, if any.
    pub fn pull_failure(&self, uid: &str, container: &str) -> Option<PullFailure> {
        self.with_pulls(|p| p.get(&(uid.to_owned(), container.to_owned())).cloned())
    }

    /// Records a failed pull; returns the failure count.
    pub fn record_pull_failure(&self, uid: &str, container: &str, message: String) -> u32 {
        self.with_pulls(|p| {
            let entry = p
                .entry((uid.to_owned(), container.to_owned()))
                .or_insert(PullFailure {
                    count: 0,
                    at: SystemTime::now(),
                    message: String::new(),
                });
            entry.count += 1;
            entry.at = SystemTime::now();
            entry.message = message;
            entry.count
        })
    }

    /// Forgets failed pulls of a container (`None`: of the whole pod, whose
    /// pulls in flight are also aborted).
    pub fn clear_pull_failures(&self, uid: &str, container: Option<&str>) {
        self.with_pulls(|p| p.retain(|(u, c), _| u != uid || container.is_some_and(|n| n != c)));
        if container.is_none() {
            let aborted: Vec<Pull> = {
                let mut pulls = locked(&self.pulls);
                let keys: Vec<_> = pulls.keys().filter(|(u, _)| u == uid).cloned().collect();
                keys.iter().filter_map(|k| pulls.remove(k)).collect()
            };
            drop(aborted);
        }
    }

    /// Starts pulling `image` for a container in the background, with each
    /// of `credentials` in turn until one pull succeeds (anonymously when
    /// there are none), as kubelet does.
    pub fn start_pull(
        &self,
        uid: &str,
        container: &str,
        image: &str,
        credentials: Vec<RegistryAuth>,
    ) {
        let runtime = self.runtime.clone();
        let owned = image.to_owned();
        let pull = Pull {
            image: image.to_owned(),
            started: Instant::now(),
            task: tokio::spawn(async move { pull(&*runtime, &owned, &credentials).await }),
        };
        locked(&self.pulls).insert((uid.to_owned(), container.to_owned()), pull);
    }

    /// The background pull of a container: a finished one is handed over once.
    pub fn pull_state(&self, uid: &str, container: &str) -> PullState {
        let key = (uid.to_owned(), container.to_owned());
        let mut pulls = locked(&self.pulls);
        let Some(pull) = pulls.get(&key) else {
            return PullState::Idle;
        };
        if !pull.task.is_finished() {
            return PullState::Running;
        }
        let Some(mut pull) = pulls.remove(&key) else {
            return PullState::Idle;
        };
        drop(pulls);
        // The task is finished, so its result is ready without waiting.
        let result = match (&mut pull.task).now_or_never() {
            Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => Err(err.to_string()),
            Some(Err(err)) => Err(format!("the pull stopped: {err}")),
            None => Err("the pull stopped".to_owned()),
        };
        PullState::Done(pull.image.clone(), pull.started.elapsed(), result)
    }

    /// Registers a static pod the agent is about to run.
    pub fn add_static(&self, uid: &str, pod: StaticPod) {
        locked(&self.statics).insert(uid.to_owned(), pod);
    }

    /// Forgets a static pod whose containers are gone.
    pub fn remove_static(&self, uid: &str) {
        locked(&self.statics).remove(uid);
    }

    /// The static pod of this uid, if it is one.
    pub fn static_pod(&self, uid: &str) -> Option<StaticPod> {
        locked(&self.statics).get(uid).cloned()
    }

    /// The uids of every static pod.
    pub fn static_uids(&self) -> HashSet<String> {
        locked(&self.statics).keys().cloned().collect()
    }

    fn with_pulls<T>(&self, f: impl FnOnce(&mut HashMap<(String, String), PullFailure>) -> T) -> T {
        f(&mut locked(&self.pull_failures))
    }
}

// === impl Pull ===

impl Drop for Pull {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pulls `image` with each of `credentials` until one pull succeeds, or
/// anonymously when there are none. Every pull failing gives each one's
/// message, as kubelet aggregates them (`[first, second]`).
async fn pull(
    runtime: &dyn ContainerRuntime,
    image: &str,
    credentials: &[RegistryAuth],
) -> Result<(), moor_runtime::Error> {
    if credentials.is_empty() {
        return runtime.pull_image(image, None).await;
    }
    let mut errors = Vec::new();
    for auth in credentials {
        match runtime.pull_image(image, Some(auth)).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                tracing::debug!(image, username = %auth.username, %err, "pull with these credentials failed");
                errors.push(err);
            }
        }
    }
    if errors.len() == 1 {
        return Err(errors.remove(0));
    }
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(moor_runtime::Error::Pull(format!(
        "[{}]",
        messages.join(", ")
    )))
}

/// Locks a std Mutex held only in short synchronous sections; a panic
/// while holding it leaves nothing half-done, so poisoning is ignored.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Connects to Docker, reporting the node NotReady and retrying every
/// heartbeat while it does not answer. `None` when shut down first.
pub async fn connect_docker(
    config: &Config,
    subnet: Option<moor_runtime::NodeSubnet>,
    client: &Client,
    shutdown: &CancellationToken,
) -> Option<Docker> {
    loop {
        match Docker::connect_with(&config.network, subnet.clone()).await {
            Ok(docker) => return Some(docker),
            Err(err) => {
                tracing::warn!(node = %config.name, %err, "docker does not answer; reporting NotReady and retrying");
                let message = err.to_string();
                if let Err(err) = node::report_unreachable(config, client, &message).await {
                    tracing::warn!(node = %config.name, %err, "cannot report NotReady; retrying");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(config.heartbeat) => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
