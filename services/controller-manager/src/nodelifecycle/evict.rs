//! The taint manager: pods on a node with NoExecute taints they do not
//! tolerate (long enough) are deleted, at most so many a second, so their
//! controllers recreate them where they can run.
//!
//! The delete has no grace period: the node's agent, which would confirm
//! a graceful one, is the thing that is gone. An agent that comes back
//! removes the containers of pods that no longer exist.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use moor_api::Resource;
use moor_api::core::v1::{Node, Pod, Taint};
use moor_client::{Action, Api, Client, DeleteParams, ObjectKey, Reader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decide;
use crate::informer::{Change, Informer};
use crate::queue::{self, Queue, Worker};
use crate::{Config, Error};

/// Component name in logs and on Events.
const COMPONENT: &str = "taint-eviction-controller";
/// Reason of the Event on an evicted pod (Kubernetes' word).
const REASON: &str = "TaintManagerEviction";

/// One thing to look at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    /// A node whose NoExecute taints changed: look at all its pods.
    Node(String),
    /// A pod bound to a node.
    Pod(ObjectKey),
}

/// A taint by what identifies it: key, value, effect.
type TaintId = (String, String, String);

/// Deletes pods that may no longer stay on their nodes.
pub struct Evictor {
    api: Api<Pod>,
    nodes: Reader<Node>,
    pods: Reader<Pod>,
    recorder: moor_client::events::Recorder,
    default_stay: Duration,
    limiter: RateLimiter,
    /// When each NoExecute taint of each node was first seen, by our clock.
    since: HashMap<String, HashMap<TaintId, Instant>>,
    queue: Queue<Item>,
    worker: Worker<Item>,
}

/// Spaces actions out to at most `per_second` a second, without bursts.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Option<Instant>,
}

// === impl Item ===

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Node(name) => write!(f, "node {name}"),
            Item::Pod(key) => write!(f, "pod {key}"),
        }
    }
}

// === impl Evictor ===

impl Evictor {
    /// An evictor over these caches, with `config`'s eviction timeout and rate.
    pub fn new(client: &Client, nodes: Reader<Node>, pods: Reader<Pod>, config: &Config) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            api: client.api(),
            nodes,
            pods,
            recorder: moor_client::events::Recorder::new(client, COMPONENT),
            default_stay: config.pod_eviction_timeout,
            limiter: RateLimiter::new(config.eviction_rate),
            since: HashMap::new(),
            queue,
            worker,
        }
    }

    /// Looks at a node when its NoExecute taints change, and at a bound
    /// pod when it changes.
    pub fn register(&self, nodes: &mut Informer<Node>, pods: &mut Informer<Pod>) {
        let queue = self.queue.clone();
        nodes.on_change(move |change| match change {
            Change::Applied { old, new } => {
                if old.map(decide::no_execute) != Some(decide::no_execute(new)) {
                    queue.add(Item::Node(new.meta().name.clone()));
                }
            }
            Change::Deleted(old) => queue.add(Item::Node(old.meta().name.clone())),
            Change::Restarted(_) => {}
        });
        let queue = self.queue.clone();
        pods.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && new.spec.as_ref().is_some_and(|s| !s.node_name.is_empty())
            {
                queue.add(Item::Pod(ObjectKey::of(new)));
            }
        });
    }

    /// Evicts until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(item) = self.worker.next(&shutdown).await {
            let result = match &item {
                Item::Node(name) => Ok(self.node_changed(name)),
                Item::Pod(key) => self.check_pod(key).await,
            };
            self.worker.done(item, result, COMPONENT);
        }
    }

    /// Notes when the node's NoExecute taints appeared and looks at each
    /// of its pods.
    fn node_changed(&mut self, name: &str) -> Action {
        let Some(node) = self.nodes.get("", name) else {
            self.since.remove(name);
            return Action::AwaitChange;
        };
        if self.taint_times(&node).is_empty() {
            return Action::AwaitChange;
        }
        self.pods
            .list()
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name == name))
            .for_each(|p| self.queue.add(Item::Pod(ObjectKey::of(p.as_ref()))));
        Action::AwaitChange
    }

    /// Deletes the pod when its time on its tainted node is up; otherwise
    /// comes back when it will be.
    #[tracing::instrument(skip_all, fields(controller = COMPONENT, pod = %key))]
    async fn check_pod(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(pod) = self.pods.get_key(key) else {
            return Ok(Action::AwaitChange);
        };
        let node_name = pod.spec.as_ref().map_or("", |s| s.node_name.as_str());
        let Some(node) = self.nodes.get("", node_name) else {
            return Ok(Action::AwaitChange);
        };
        let times = self.taint_times(&node);
        let taints: Vec<(&Taint, Instant)> = times.iter().map(|(t, at)| (t, *at)).collect();
        let Some((at, taint)) = decide::evict_at(&pod, &taints, self.default_stay) else {
            return Ok(Action::AwaitChange);
        };
        let now = Instant::now();
        if at > now {
            return Ok(Action::Requeue(at - now));
        }
        self.limiter.acquire().await;
        let params = DeleteParams {
            uid: Some(pod.meta().uid.clone()),
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let meta = pod.meta();
        match self.api.delete(&meta.namespace, &meta.name, &params).await {
            Ok(_) => {
                let taint = format!("{}:{}", taint.key, taint.effect);
                tracing::info!(node = %node_name, %taint, "evicted pod; its controller recreates it elsewhere");
                let message = format!(
                    "deleted from node {node_name}: taint {taint} is not tolerated any longer"
                );
                self.recorder.normal(pod.as_ref(), REASON, message);
            }
            // Gone already, or a new pod took the name.
            Err(moor_client::Error::NotFound(_) | moor_client::Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::AwaitChange)
    }

    /// The node's NoExecute taints and when each appeared; remembers new
    /// ones and forgets those gone. A taint seen for the first time counts
    /// from its timeAdded when that is in the past (a restarted
    /// controller), else from now.
    fn taint_times(&mut self, node: &Node) -> Vec<(Taint, Instant)> {
        let name = &node.meta().name;
        let taints = decide::no_execute(node);
        if taints.is_empty() {
            self.since.remove(name);
            return Vec::new();
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        let seen = self.since.entry(name.clone()).or_default();
        seen.retain(|id, _| taints.iter().any(|t| id_of(t) == *id));
        taints
            .into_iter()
            .map(|t| {
                let at = *seen.entry(id_of(t)).or_insert_with(|| {
                    let added = t.time_added.and_then(|a| SystemTime::try_from(a).ok());
                    let age = added.and_then(|a| wall.duration_since(a).ok());
                    // Older than this host's monotonic clock (just after a
                    // reboot): counted from now.
                    age.and_then(|age| now.checked_sub(age)).unwrap_or(now)
                });
                (t.clone(), at)
            })
            .collect()
    }
}

fn id_of(taint: &Taint) -> TaintId {
    (taint.key.clone(), taint.value.clone(), taint.effect.clone())
}

// === impl RateLimiter ===

impl RateLimiter {
    /// At most `per_second` acquisitions a second; 0: no limit.
    pub fn new(per_second: u32) -> Self {
        let interval = match per_second {
            0 => Duration::ZERO,
            n => Duration::from_secs(1) / n,
        };
        Self {
            interval,
            next: None,
        }
    }

    /// Waits for this action's turn.
    pub async fn acquire(&mut self) {
        let now = Instant::now();
        let at = self.next.map_or(now, |next| next.max(now));
        self.next = Some(at + self.interval);
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limiter_spaces_actions_out() {
        let mut limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
        // Idle time is not saved up for a burst.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(100));

        let mut unlimited = RateLimiter::new(0);
        let start = Instant::now();
        for _ in 0..100 {
            unlimited.acquire().await;
        }
        assert_eq!(Instant::now(), start);
    }
}
