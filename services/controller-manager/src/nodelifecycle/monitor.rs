//! The node monitor: a node whose agent has not been heard from (its Lease
//! not renewed, its Ready heartbeat not refreshed) for the grace period is
//! made Ready=Unknown and its pods not ready; every node's not-ready and
//! unreachable taints follow its Ready condition, and its transitions are
//! recorded as Events.
//!
//! Time is this controller's own (tokio's) clock: a node is "heard from"
//! when a renewal is seen, never by comparing the agent's wall clock with
//! ours. A new or restarted controller gives every node a full grace period.

use std::collections::HashMap;
use std::time::Duration;

use moor_api::coordination::v1::Lease;
use moor_api::core::v1::{Node, Pod};
use moor_client::{Action, Api, Client, Reader};
use prost_types::Timestamp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::LEASE_NAMESPACE;
use super::decide::{self, Readiness};
use crate::Error;
use crate::informer::{Change, Informer};
use crate::pods;
use crate::queue::{self, Queue, Worker};
use moor_client::events::Recorder;

/// Component name in logs and on Events.
const COMPONENT: &str = "node-lifecycle-controller";

/// Watches node health and writes what it concludes.
pub struct Monitor {
    nodes_api: Api<Node>,
    pods_api: Api<Pod>,
    nodes: Reader<Node>,
    leases: Reader<Lease>,
    pods: Reader<Pod>,
    recorder: Recorder,
    grace: Duration,
    probes: HashMap<String, Probe>,
    queue: Queue<String>,
    worker: Worker<String>,
}

/// What the monitor last saw of one node.
struct Probe {
    /// The agent's last signs of life: lease renewTime, Ready heartbeat.
    signs: Signs,
    /// When `signs` last changed, by our clock.
    heard: Instant,
    /// The readiness last reported in an Event (or first seen).
    reported: Readiness,
}

type Signs = (Option<Timestamp>, Option<Timestamp>);

// === impl Monitor ===

impl Monitor {
    /// A monitor over these caches; a node is given `grace` to renew.
    pub fn new(
        client: &Client,
        nodes: Reader<Node>,
        leases: Reader<Lease>,
        pods: Reader<Pod>,
        grace: Duration,
    ) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            nodes_api: client.api(),
            pods_api: client.api(),
            nodes,
            leases,
            pods,
            recorder: Recorder::new(client, COMPONENT),
            grace,
            probes: HashMap::new(),
            queue,
            worker,
        }
    }

    /// Checks a node when it or its lease changes.
    pub fn register(&self, nodes: &mut Informer<Node>, leases: &mut Informer<Lease>) {
        let queue = self.queue.clone();
        nodes.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(name_of(new)),
            Change::Deleted(old) => queue.add(name_of(old)),
            Change::Restarted(_) => {}
        });
        let queue = self.queue.clone();
        leases.on_change(move |change| {
            let lease = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(old) => old,
                Change::Restarted(_) => return,
            };
            let meta = lease.metadata.as_ref();
            if meta.is_some_and(|m| m.namespace == LEASE_NAMESPACE) {
                queue.add(meta.map(|m| m.name.clone()).unwrap_or_default());
            }
        });
    }

    /// Monitors until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(name) = self.worker.next(&shutdown).await {
            let result = self.reconcile(&name).await;
            self.worker.done(name, result, COMPONENT);
        }
    }

    /// Brings one node's Ready condition, taints and pods in line with
    /// when its agent was last heard from; comes back when the grace
    /// period would run out.
    #[tracing::instrument(skip_all, fields(controller = COMPONENT, node = %node))]
    async fn reconcile(&mut self, node: &str) -> Result<Action, Error> {
        let Some(cached) = self.nodes.get("", node) else {
            self.probes.remove(node);
            return Ok(Action::AwaitChange);
        };
        let left = self.time_left(node, &cached);
        let mut current = (*cached).clone();
        if left.is_zero() {
            let status = current.status.clone().unwrap_or_default();
            if let Some(status) = decide::mark_unknown(&status, pods::now()) {
                current.status = Some(status);
                current = self.nodes_api.update_status(&current).await?;
                tracing::warn!(
                    grace = ?self.grace,
                    "node agent stopped renewing its lease; node is Ready=Unknown and its pods will be evicted unless they tolerate it"
                );
            }
        }
        let readiness = decide::readiness(&current);
        let taints = current
            .spec
            .as_ref()
            .map(|s| s.taints.as_slice())
            .unwrap_or(&[]);
        if let Some(taints) = decide::reconcile_taints(taints, readiness, pods::now()) {
            current.spec.get_or_insert_default().taints = taints;
            current = self.nodes_api.update(&current).await?;
            tracing::info!(?readiness, "node taints follow its Ready condition");
        }
        self.report(&current, readiness).await;
        // Only while nobody hears from the agent: one that is back (its
        // status not yet written) reports its pods itself.
        if left.is_zero() && readiness == Readiness::Unknown {
            self.mark_pods_not_ready(node).await?;
        }
        Ok(match left.is_zero() {
            true => Action::AwaitChange,
            false => Action::Requeue(left),
        })
    }

    /// How much of the grace period is left since the agent of `node` was
    /// last heard from.
    fn time_left(&mut self, name: &str, node: &Node) -> Duration {
        let now = Instant::now();
        let lease = self.leases.get(LEASE_NAMESPACE, name);
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time);
        let heartbeat = decide::ready_condition(node).and_then(|c| c.last_heartbeat_time);
        let signs = (renewed, heartbeat);
        let probe = self
            .probes
            .entry(name.to_string())
            .or_insert_with(|| Probe {
                signs,
                heard: now,
                reported: decide::readiness(node),
            });
        if probe.signs != signs {
            probe.signs = signs;
            probe.heard = now;
        }
        self.grace
            .saturating_sub(now.saturating_duration_since(probe.heard))
    }

    /// Records a NodeNotReady or NodeReady Event when readiness changed
    /// since the last one.
    async fn report(&mut self, node: &Node, readiness: Readiness) {
        let name = name_of(node);
        let Some(probe) = self.probes.get_mut(&name) else {
            return;
        };
        let before = std::mem::replace(&mut probe.reported, readiness);
        let message = decide::ready_condition(node)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        match (before, readiness) {
            (Readiness::Ready, Readiness::NotReady | Readiness::Unknown) => {
                let message = format!("node {name} is not ready: {message}");
                self.recorder.normal(node, "NodeNotReady", message);
            }
            (Readiness::NotReady | Readiness::Unknown, Readiness::Ready) => {
                let message = format!("node {name} is ready again");
                self.recorder.normal(node, "NodeReady", message);
            }
            _ => {}
        }
    }

    /// Sets Ready=False on the node's ready pods: nobody runs their probes
    /// any more, and endpoints must stop sending them traffic now rather
    /// than when they are evicted.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        let mut errors = Vec::new();
        let now = pods::now();
        for pod in self.pods.list() {
            let on_node = pod.spec.as_ref().is_some_and(|s| s.node_name == node);
            if !on_node || !pods::is_ready(&pod) {
                continue;
            }
            let mut pod = (*pod).clone();
            let status = pod.status.get_or_insert_default();
            for ready in status.conditions.iter_mut().filter(|c| c.r#type == "Ready") {
                ready.status = "False".into();
                ready.reason = "NodeUnreachable".into();
                ready.message = decide::MESSAGE_UNKNOWN.into();
                ready.last_transition_time = Some(now);
            }
            match self.pods_api.update_status(&pod).await {
                Ok(_) | Err(moor_client::Error::NotFound(_)) => {}
                Err(e) => errors.push(e.into()),
            }
        }
        Error::collect(errors)
    }
}

fn name_of(node: &Node) -> String {
    node.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use moor_api::coordination::v1::LeaseSpec;
    use moor_api::meta::v1::ObjectMeta;
    use moor_client::watcher::Event;

    use super::*;

    fn lease(renewed: i64) -> Lease {
        Lease {
            metadata: Some(ObjectMeta {
                name: "n".into(),
                namespace: LEASE_NAMESPACE.into(),
                ..Default::default()
            }),
            spec: Some(LeaseSpec {
                renew_time: Some(Timestamp {
                    seconds: renewed,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_period_runs_from_the_last_renewal_seen() {
        let client = Client::new("http://127.0.0.1:1").unwrap();
        let (_, nodes) = moor_client::store::<Node>();
        let (mut leases_w, leases) = moor_client::store::<Lease>();
        let (_, pods) = moor_client::store::<Pod>();
        let grace = Duration::from_secs(40);
        let mut monitor = Monitor::new(&client, nodes, leases, pods, grace);
        let node = Node {
            metadata: Some(ObjectMeta {
                name: "n".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // First sight, lease or not: a full grace period.
        assert_eq!(monitor.time_left("n", &node), grace);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(monitor.time_left("n", &node), Duration::from_secs(10));
        leases_w.apply(&Event::Applied(lease(1_000)));
        assert_eq!(monitor.time_left("n", &node), grace, "a renewal is seen");
        tokio::time::sleep(Duration::from_secs(25)).await;
        // The same renewal seen again is no news.
        leases_w.apply(&Event::Applied(lease(1_000)));
        assert_eq!(monitor.time_left("n", &node), Duration::from_secs(15));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(monitor.time_left("n", &node), Duration::ZERO);
        // However far the agent's clock is from ours, a change is a renewal.
        leases_w.apply(&Event::Applied(lease(5)));
        assert_eq!(monitor.time_left("n", &node), grace);
    }
}
