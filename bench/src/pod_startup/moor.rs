//! The moor side: pods created through the API and followed through the
//! bench's own watch, which notes when each was first seen bound to a node
//! and first seen Running with a pod IP, and when it was gone.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use moor_api::Resource;
use moor_api::core::v1::{Container, Pod, PodSpec};
use moor_api::meta::v1::ObjectMeta;
use moor_client::watcher::{self, Event};
use moor_client::{Api, Client, DeleteParams, ListParams};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

use super::PATIENCE;

/// The image of every pod's one container.
pub const IMAGE: &str = "moor/echo:0.1";
/// The label selecting the bench's pods.
const LABEL: (&str, &str) = ("moor-bench", "pod-startup");
const NAMESPACE: &str = "default";

/// One pod's times, from its create call returning.
pub struct Timing {
    /// The create call itself (sent to returned).
    pub create: Duration,
    /// To the pod first seen bound to a node (the scheduler's part).
    pub bound: Duration,
    /// To the pod first seen Running with a pod IP.
    pub running: Duration,
}

/// A burst: each pod's times, and from the first create sent to the last
/// pod seen Running.
pub struct Burst {
    /// Per pod.
    pub pods: Vec<Timing>,
    /// The whole burst.
    pub total: Duration,
}

/// Creates, follows and deletes the bench's pods.
pub struct Pods {
    api: Api<Pod>,
    changes: mpsc::UnboundedReceiver<Change>,
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
    gone: HashSet<String>,
    /// The watch; aborted on drop.
    _watch: JoinSet<()>,
}

/// What the watch saw, stamped when it saw it.
enum Change {
    /// The watch's first list is in: later changes will be seen.
    Synced,
    Bound(String, Instant),
    Running(String, Instant),
    Gone(String),
}

// === impl Pods ===

impl Pods {
    /// Opens the watch and waits for its first list.
    pub async fn watch(client: &Client) -> anyhow::Result<Self> {
        let api = client.api::<Pod>();
        let params = ListParams::default()
            .namespace(NAMESPACE)
            .labels(format!("{}={}", LABEL.0, LABEL.1));
        let (tx, mut changes) = mpsc::unbounded_channel();
        let mut watch = JoinSet::new();
        watch.spawn(follow(watcher::watcher(api.clone(), params), tx));
        match tokio::time::timeout(PATIENCE, changes.recv()).await {
            Ok(Some(Change::Synced)) => {}
            _ => anyhow::bail!("the pod watch did not start"),
        }
        Ok(Self {
            api,
            changes,
            bound: HashMap::new(),
            running: HashMap::new(),
            gone: HashSet::new(),
            _watch: watch,
        })
    }

    /// Creates pod `name` and waits until it is Running; returns its times.
    pub async fn start_one(&mut self, name: &str) -> anyhow::Result<Timing> {
        let sent = Instant::now();
        self.api.create(&pod(name)).await?;
        let created = Instant::now();
        self.until(|p| p.running.contains_key(name)).await?;
        Ok(self.timing(name, sent, created))
    }

    /// Creates every pod of `names` at once and waits until all are Running.
    pub async fn start_burst(&mut self, names: &[String]) -> anyhow::Result<Burst> {
        let api = &self.api;
        let started = Instant::now();
        let creates = names.iter().map(|name| async move {
            let sent = Instant::now();
            api.create(&pod(name)).await?;
            anyhow::Ok((sent, Instant::now()))
        });
        let created = futures::future::try_join_all(creates).await?;
        self.until(|p| names.iter().all(|n| p.running.contains_key(n)))
            .await?;
        let last = names
            .iter()
            .filter_map(|n| self.running.get(n))
            .max()
            .copied()
            .unwrap_or(started);
        let pods = names
            .iter()
            .zip(created)
            .map(|(name, (sent, created))| self.timing(name, sent, created))
            .collect();
        Ok(Burst {
            pods,
            total: last - started,
        })
    }

    /// Deletes the pods (gracefully: the agent stops their containers) and
    /// waits until they are gone from the API.
    pub async fn delete(&mut self, names: &[String]) -> anyhow::Result<()> {
        let params = DeleteParams::default();
        let deletes = names
            .iter()
            .map(|name| self.api.delete(NAMESPACE, name, &params));
        futures::future::try_join_all(deletes).await?;
        self.until(|p| names.iter().all(|n| p.gone.contains(n)))
            .await
    }

    fn timing(&self, name: &str, sent: Instant, created: Instant) -> Timing {
        let since = |at: Option<&Instant>| at.map_or(Duration::ZERO, |at| *at - created);
        Timing {
            create: created - sent,
            bound: since(self.bound.get(name)),
            running: since(self.running.get(name)),
        }
    }

    /// Takes in what the watch saw until `done` holds.
    async fn until(&mut self, done: impl Fn(&Self) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            let change = tokio::time::timeout_at(deadline, self.changes.recv()).await;
            match change {
                Ok(Some(Change::Bound(name, at))) => _ = self.bound.insert(name, at),
                Ok(Some(Change::Running(name, at))) => _ = self.running.insert(name, at),
                Ok(Some(Change::Gone(name))) => _ = self.gone.insert(name),
                Ok(Some(Change::Synced)) => {}
                Ok(None) => anyhow::bail!("the pod watch ended"),
                Err(_) => anyhow::bail!("timed out after {PATIENCE:?} waiting for the pods"),
            }
        }
        Ok(())
    }
}

/// Forwards the first bound and the first Running of each pod, and its
/// deletion, stamped as the watch delivers them.
async fn follow(
    events: impl futures::Stream<Item = Result<Event<Pod>, moor_client::Error>>,
    tx: mpsc::UnboundedSender<Change>,
) {
    let mut events = std::pin::pin!(events);
    let mut bound = HashSet::new();
    let mut running = HashSet::new();
    while let Some(event) = events.next().await {
        let at = Instant::now();
        let (pods, deleted) = match event {
            Ok(Event::Applied(pod)) => (vec![pod], false),
            Ok(Event::Deleted(pod)) => (vec![pod], true),
            Ok(Event::Restarted(pods)) => {
                let _ = tx.send(Change::Synced);
                (pods, false)
            }
            // The watcher resumes by itself.
            Err(_) => continue,
        };
        for pod in pods {
            let name = pod.metadata.as_ref().map_or("", |m| m.name.as_str());
            let change = if deleted {
                Some(Change::Gone(name.to_owned()))
            } else if is_running(&pod) && running.insert(name.to_owned()) {
                // Bound and Running in one event: bound at the same time.
                if bound.insert(name.to_owned()) {
                    let _ = tx.send(Change::Bound(name.to_owned(), at));
                }
                Some(Change::Running(name.to_owned(), at))
            } else if is_bound(&pod) && bound.insert(name.to_owned()) {
                Some(Change::Bound(name.to_owned(), at))
            } else {
                None
            };
            if let Some(change) = change
                && tx.send(change).is_err()
            {
                return;
            }
        }
    }
}

fn is_bound(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty())
}

fn is_running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| s.phase == "Running" && !s.pod_ip.is_empty())
}

/// A pod of one echo container, as the issue has it.
fn pod(name: &str) -> Pod {
    let mut pod = Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: NAMESPACE.into(),
            labels: [(LABEL.0.to_owned(), LABEL.1.to_owned())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "echo".into(),
                image: IMAGE.into(),
                image_pull_policy: "Never".into(),
                args: vec!["serve".into()],
                ..Default::default()
            }],
            // The echo server exits on SIGTERM; this bounds a stuck one.
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.set_type_meta();
    pod
}
