//! Container probes as Kubernetes runs them: a prober task per running
//! container that has probes, keyed by container id. The startup probe holds
//! back the others until it succeeds; then liveness and readiness run side by
//! side, each every `periodSeconds`.
//!
//! A prober only reports: it publishes the container's [`Health`] and, when
//! that changes, wakes the pod's sync, which stays the owner of state: it
//! kills containers that failed their startup or liveness probe and writes
//! readiness into the pod's status. A prober ends when its container stops
//! running or the sync drops it.

mod check;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use moor_api::core::v1::{Container, Pod, Probe};
use moor_runtime::{ContainerInfo, ContainerRuntime, ContainerState};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What the probes say about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The startup probe succeeded (or there is none).
    pub started: bool,
    /// The readiness probe succeeded last (or there is none and the
    /// container started).
    pub ready: bool,
    /// The startup or liveness probe failed `failureThreshold` times in a
    /// row: the container is to be killed.
    pub failed: Option<Failure>,
}

/// A failed startup or liveness probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `Startup` or `Liveness`.
    pub probe: Kind,
    /// The last attempt's error.
    pub message: String,
    /// The probe's own grace period for the kill, if it sets one.
    pub grace_seconds: Option<i64>,
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// startupProbe.
    Startup,
    /// livenessProbe.
    Liveness,
    /// readinessProbe.
    Readiness,
}

/// A request to sync a pod at once, sent by a prober whose verdict changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wake {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid (a pod of the same name may replace it).
    pub uid: String,
    /// An event to record about the pod: (reason, message).
    pub event: Option<(String, String)>,
}

/// The probers of every pod on the node, and a lock per pod that serialises
/// its syncs (the controller's and the ones probers ask for).
pub struct Probers {
    runtime: Arc<dyn ContainerRuntime>,
    wake: mpsc::UnboundedSender<Wake>,
    shutdown: CancellationToken,
    // A std Mutex: held only in short synchronous sections.
    pods: Mutex<HashMap<String, PodProbers>>,
}

/// One pod's probers, by container id.
#[derive(Default)]
struct PodProbers {
    lock: Arc<tokio::sync::Mutex<()>>,
    containers: HashMap<String, Prober>,
    /// Containers the sync killed for a failed probe: restarted unless the
    /// policy is Never, whatever their exit code.
    killed: HashSet<String>,
}

/// A running prober task.
struct Prober {
    cancel: CancellationToken,
    health: watch::Receiver<Health>,
}

/// Probe settings with Kubernetes' defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    initial_delay: Duration,
    timeout: Duration,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

/// What one prober task needs.
struct Task {
    runtime: Arc<dyn ContainerRuntime>,
    id: String,
    container: Container,
    pod_ip: String,
    started_at: Option<SystemTime>,
    pod: Wake,
    health: watch::Sender<Health>,
    wake: mpsc::UnboundedSender<Wake>,
}

/// How a probe loop ended.
enum Verdict {
    /// The startup probe succeeded.
    Passed,
    /// Startup or liveness failed `failureThreshold` times in a row.
    Failed(String),
    /// The container stopped running.
    Gone,
}

// === impl Health ===

impl Health {
    /// Before any probe ran.
    fn initial(container: &Container) -> Self {
        let started = container.startup_probe.is_none();
        Self {
            started,
            ready: started && container.readiness_probe.is_none(),
            failed: None,
        }
    }
}

// === impl Kind ===

impl Kind {
    /// As Kubernetes names it in messages: `Liveness`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }
}

// === impl Probers ===

impl Probers {
    /// An empty registry; probers send their wakes to the receiver.
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<Wake>) {
        let (wake, wakes) = mpsc::unbounded_channel();
        let probers = Self {
            runtime,
            wake,
            shutdown,
            pods: Mutex::default(),
        };
        (probers, wakes)
    }

    /// The lock that serialises syncs of pod `uid`.
    pub fn pod_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.with(|pods| pods.entry(uid.to_owned()).or_default().lock.clone())
    }

    /// The failed startup or liveness probe of container `id`, if any.
    pub fn failure(&self, uid: &str, id: &str) -> Option<Failure> {
        self.with(|pods| {
            let prober = pods.get(uid)?.containers.get(id)?;
            prober.health.borrow().failed.clone()
        })
    }

    /// Notes that the sync killed container `id` for a failed probe, and
    /// stops its prober.
    pub fn mark_killed(&self, uid: &str, id: &str) {
        self.with(|pods| {
            let pod = pods.entry(uid.to_owned()).or_default();
            if let Some(prober) = pod.containers.remove(id) {
                prober.cancel.cancel();
            }
            pod.killed.insert(id.to_owned());
        });
    }

    /// The containers of pod `uid` killed for a failed probe.
    pub fn killed(&self, uid: &str) -> HashSet<String> {
        self.with(|pods| pods.get(uid).map(|p| p.killed.clone()).unwrap_or_default())
    }

    /// Forgets kill marks of containers no longer in `existing`.
    pub fn retain_killed(&self, uid: &str, existing: &[ContainerInfo]) {
        self.with(|pods| {
            if let Some(pod) = pods.get_mut(uid) {
                pod.killed.retain(|id| existing.iter().any(|c| c.id == *id));
            }
        });
    }

    /// Makes the pod's probers match its running containers (`running`:
    /// each spec container with its running attempt): starts the missing
    /// ones, stops those of containers gone. Returns each container's
    /// health by name (none for containers without probes).
    pub fn update(
        &self,
        pod: &Pod,
        pod_ip: &str,
        running: &[(&Container, &ContainerInfo)],
    ) -> HashMap<String, Health> {
        let meta = pod.metadata.clone().unwrap_or_default();
        let probed: Vec<_> = running
            .iter()
            .filter(|(c, info)| has_probes(c) && info.state == ContainerState::Running)
            .collect();
        self.with(|pods| {
            let entry = pods.entry(meta.uid.clone()).or_default();
            let keep: HashSet<&str> = probed.iter().map(|(_, info)| info.id.as_str()).collect();
            entry.containers.retain(|id, prober| {
                let keep = keep.contains(id.as_str());
                if !keep {
                    prober.cancel.cancel();
                }
                keep
            });
            let mut health = HashMap::new();
            for (container, info) in probed {
                let prober = entry.containers.entry(info.id.clone()).or_insert_with(|| {
                    let (tx, rx) = watch::channel(Health::initial(container));
                    let cancel = self.shutdown.child_token();
                    let task = Task {
                        runtime: self.runtime.clone(),
                        id: info.id.clone(),
                        container: (*container).clone(),
                        pod_ip: pod_ip.to_owned(),
                        started_at: info.started_at,
                        pod: Wake {
                            namespace: meta.namespace.clone(),
                            name: meta.name.clone(),
                            uid: meta.uid.clone(),
                            event: None,
                        },
                        health: tx,
                        wake: self.wake.clone(),
                    };
                    tracing::debug!(container = %container.name, id = %info.id, "starting prober");
                    let stop = cancel.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = task.run() => {}
                        }
                    });
                    Prober { cancel, health: rx }
                });
                health.insert(container.name.clone(), prober.health.borrow().clone());
            }
            health
        })
    }

    /// Stops the probers of pod `uid` and forgets it (the pod is gone or done).
    pub fn forget(&self, uid: &str) {
        self.with(|pods| {
            if let Some(pod) = pods.remove(uid) {
                pod.containers.values().for_each(|p| p.cancel.cancel());
            }
        });
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, PodProbers>) -> T) -> T {
        let mut guard = match self.pods.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// Whether the agent runs probes for `container`.
pub fn has_probes(container: &Container) -> bool {
    container.startup_probe.is_some()
        || container.liveness_probe.is_some()
        || container.readiness_probe.is_some()
}

// === impl Settings ===

impl Settings {
    fn of(probe: &Probe) -> Self {
        let seconds = |value: i32, default: u64, min: u64| {
            Duration::from_secs(
                u64::try_from(value)
                    .ok()
                    .filter(|v| *v > 0)
                    .unwrap_or(default)
                    .max(min),
            )
        };
        let count = |value: i32, default: u32| {
            u32::try_from(value)
                .ok()
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            period: seconds(probe.period_seconds, 10, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

// === impl Task ===

impl Task {
    async fn run(self) {
        if let Some(startup) = self.container.startup_probe.clone() {
            match self.probe_until_verdict(Kind::Startup, &startup).await {
                Verdict::Passed => {
                    let no_readiness = self.container.readiness_probe.is_none();
                    self.publish(None, |h| {
                        h.started = true;
                        h.ready = no_readiness;
                    });
                }
                Verdict::Failed(message) => return self.fail(Kind::Startup, &startup, message),
                Verdict::Gone => return,
            }
        }
        let liveness = async {
            match self.container.liveness_probe.clone() {
                Some(probe) => match self.probe_until_verdict(Kind::Liveness, &probe).await {
                    Verdict::Failed(message) => self.fail(Kind::Liveness, &probe, message),
                    Verdict::Passed | Verdict::Gone => {}
                },
                None => std::future::pending().await,
            }
        };
        let readiness = async {
            match self.container.readiness_probe.clone() {
                Some(probe) => self.readiness(&probe).await,
                None => std::future::pending().await,
            }
        };
        // Either ending ends both: the container is gone or to be killed.
        tokio::select! {
            () = liveness => {}
            () = readiness => {}
        }
    }

    /// Runs a startup or liveness probe until it passes (startup only),
    /// fails `failureThreshold` times in a row, or the container goes.
    async fn probe_until_verdict(&self, kind: Kind, probe: &Probe) -> Verdict {
        let settings = Settings::of(probe);
        self.initial_delay(settings).await;
        let mut failures = 0;
        loop {
            if !self.running().await {
                return Verdict::Gone;
            }
            match self.attempt(probe, settings).await {
                Ok(()) if kind == Kind::Startup => return Verdict::Passed,
                Ok(()) => failures = 0,
                Err(message) => {
                    failures += 1;
                    tracing::debug!(container = %self.container.name, probe = kind.as_str(), failures, %message, "probe failed");
                    if failures >= settings.failure_threshold {
                        return Verdict::Failed(message);
                    }
                }
            }
            tokio::time::sleep(settings.period).await;
        }
    }

    /// Runs the readiness probe until the container goes, flipping `ready`
    /// after `successThreshold` successes or `failureThreshold` failures.
    async fn readiness(&self, probe: &Probe) {
        let settings = Settings::of(probe);
        self.initial_delay(settings).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            if !self.running().await {
                return;
            }
            match self.attempt(probe, settings).await {
                Ok(()) => {
                    (successes, failures) = (successes + 1, 0);
                    if successes >= settings.success_threshold {
                        self.publish(None, |h| h.ready = true);
                    }
                }
                Err(message) => {
                    (successes, failures) = (0, failures + 1);
                    if failures >= settings.failure_threshold {
                        let event = format!("{} probe failed: {message}", Kind::Readiness.as_str());
                        self.publish(Some(("Unhealthy".into(), event)), |h| h.ready = false);
                    }
                }
            }
            tokio::time::sleep(settings.period).await;
        }
    }

    /// Publishes a failed startup or liveness probe: the sync kills the container.
    fn fail(&self, kind: Kind, probe: &Probe, message: String) {
        tracing::info!(container = %self.container.name, probe = kind.as_str(), %message, "probe failed; the container will be restarted");
        let event = format!("{} probe failed: {message}", kind.as_str());
        let failure = Failure {
            probe: kind,
            message,
            grace_seconds: probe.termination_grace_period_seconds,
        };
        self.publish(Some(("Unhealthy".into(), event)), |h| {
            h.ready = false;
            h.failed = Some(failure);
        });
    }

    /// Changes the health; on a change, wakes the pod's sync.
    fn publish(&self, event: Option<(String, String)>, change: impl FnOnce(&mut Health)) {
        let changed = self.health.send_if_modified(|health| {
            let before = health.clone();
            change(health);
            *health != before
        });
        if changed {
            let wake = Wake {
                event,
                ..self.pod.clone()
            };
            // The receiver goes only at shutdown.
            let _ = self.wake.send(wake);
        }
    }

    async fn attempt(&self, probe: &Probe, settings: Settings) -> Result<(), String> {
        let target = check::Target {
            runtime: self.runtime.as_ref(),
            id: &self.id,
            container: &self.container,
            pod_ip: &self.pod_ip,
        };
        check::run(&target, probe, settings.timeout).await
    }

    /// Waits out what is left of `initialDelaySeconds` since the container started.
    async fn initial_delay(&self, settings: Settings) {
        let since = self
            .started_at
            .and_then(|s| SystemTime::now().duration_since(s).ok())
            .unwrap_or_default();
        tokio::time::sleep(settings.initial_delay.saturating_sub(since)).await;
    }

    async fn running(&self) -> bool {
        match self.runtime.inspect_container(&self.id).await {
            Ok(info) => info.is_some_and(|i| i.state == ContainerState::Running),
            // The engine may be down for a moment: keep probing (and failing).
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests;
