//! Node IPAM: every node gets its own pod range, as kube-controller-manager
//! does with `--allocate-node-cidrs`. Ranges are the `/mask` subnets of the
//! cluster CIDR, written to the node's `spec.podCIDR` (which the apiserver
//! keeps from changing once set); the node agent builds its bridge from it,
//! so pod addresses are unique across the cluster.
//!
//! The allocator is rebuilt from the Nodes themselves each time the node
//! watch (re)lists, before anything is handed out, so a controller-manager
//! that takes over from another never gives out a range a node holds. A
//! deleted node's range goes back to the pool; a node that cannot get one
//! (the cluster CIDR is full) gets a `CIDRNotAvailable` Warning and its
//! turn when a range is freed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::Ipv4Net;
use moor_api::core::v1::Node;
use moor_client::{Action, Api, Client, Reader};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{Change, Informer};
use crate::queue::{self, Queue, Worker};
use moor_client::events::Recorder;

/// Component name in logs and on Events.
const COMPONENT: &str = "node-ipam-controller";

/// Reason of the Warning on a node left without a range.
pub const CIDR_NOT_AVAILABLE: &str = "CIDRNotAvailable";

/// Most ranges one cluster CIDR may be cut into: the allocator keeps a set
/// of taken indices, not a bitmap, but a million nodes is past any cluster.
const MAX_RANGES_LOG2: u8 = 20;

/// How the cluster CIDR is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranges {
    cluster: Ipv4Net,
    mask: u8,
}

// === impl Ranges ===

impl Default for Ranges {
    /// The cluster CIDR flannel's and kubeadm's guides use, a /24 per node.
    fn default() -> Self {
        Self {
            cluster: Ipv4Net::new_assert(Ipv4Addr::new(10, 244, 0, 0), 16),
            mask: 24,
        }
    }
}

impl Ranges {
    /// `cluster` cut into `/mask` ranges; an error names what is wrong.
    pub fn new(cluster: Ipv4Net, mask: u8) -> Result<Self, String> {
        let cluster = cluster.trunc();
        if mask > 30 {
            return Err(format!(
                "node CIDR mask size /{mask} leaves no room for pods (at most /30)"
            ));
        }
        if mask < cluster.prefix_len() {
            return Err(format!(
                "node CIDR mask size /{mask} is larger than the cluster CIDR {cluster}"
            ));
        }
        if mask - cluster.prefix_len() > MAX_RANGES_LOG2 {
            return Err(format!(
                "the cluster CIDR {cluster} cut into /{mask} ranges makes more than 2^{MAX_RANGES_LOG2} of them; use a larger node CIDR mask size"
            ));
        }
        Ok(Self { cluster, mask })
    }

    /// The cluster CIDR.
    pub fn cluster(&self) -> Ipv4Net {
        self.cluster
    }

    /// How many ranges there are.
    fn count(&self) -> u32 {
        1 << (self.mask - self.cluster.prefix_len())
    }

    /// The range at `index` (below [`Self::count`]).
    fn range(&self, index: u32) -> Ipv4Net {
        let step = 1u32 << (32 - u32::from(self.mask));
        let base = u32::from(self.cluster.network());
        Ipv4Net::new(Ipv4Addr::from(base + index * step), self.mask).unwrap_or(self.cluster)
    }

    /// The index of `range` when it is one of ours.
    fn index(&self, range: Ipv4Net) -> Option<u32> {
        if range.prefix_len() != self.mask || !self.cluster.contains(&range) {
            return None;
        }
        let offset = u32::from(range.network()) - u32::from(self.cluster.network());
        Some(offset >> (32 - u32::from(self.mask)))
    }
}

/// Which ranges are taken, and where the next search starts (round robin,
/// so a freed range is not handed out again at once).
#[derive(Debug)]
struct Pool {
    ranges: Ranges,
    taken: BTreeSet<u32>,
    next: u32,
}

// === impl Pool ===

impl Pool {
    fn new(ranges: Ranges) -> Self {
        Self {
            ranges,
            taken: BTreeSet::new(),
            next: 0,
        }
    }

    /// Marks `range` taken; `false` when it is not one of ours.
    fn occupy(&mut self, range: Ipv4Net) -> bool {
        match self.ranges.index(range) {
            Some(index) => {
                self.taken.insert(index);
                true
            }
            None => false,
        }
    }

    fn release(&mut self, range: Ipv4Net) {
        if let Some(index) = self.ranges.index(range) {
            self.taken.remove(&index);
        }
    }

    /// Takes the next free range, or `None` when every one is taken.
    fn allocate(&mut self) -> Option<Ipv4Net> {
        let count = self.ranges.count();
        for step in 0..count {
            let index = (self.next + step) % count;
            if self.taken.insert(index) {
                self.next = (index + 1) % count;
                return Some(self.ranges.range(index));
            }
        }
        None
    }
}

/// The controller: a queue of node names and the pool.
pub struct Controller {
    api: Api<Node>,
    nodes: Reader<Node>,
    recorder: Recorder,
    pool: Pool,
    /// The range each node held when last seen, to free it when it goes.
    held: HashMap<String, Ipv4Net>,
    /// Nodes told they have no range, so they are told once.
    starved: HashSet<String>,
    /// Set by a (re)list of the node watch: rebuild the pool first.
    relisted: Arc<AtomicBool>,
    synced: Arc<Notify>,
    queue: Queue<String>,
    worker: Worker<String>,
}

// === impl Controller ===

impl Controller {
    /// A controller handing out `ranges`, fed by `nodes`.
    pub fn new(client: &Client, nodes: &mut Informer<Node>, ranges: Ranges) -> Self {
        let (queue, worker) = queue::queue();
        let relisted = Arc::new(AtomicBool::new(false));
        let synced = Arc::new(Notify::new());
        let this = Self {
            api: client.api(),
            nodes: nodes.reader(),
            recorder: Recorder::new(client, COMPONENT),
            pool: Pool::new(ranges),
            held: HashMap::new(),
            starved: HashSet::new(),
            relisted: relisted.clone(),
            synced: synced.clone(),
            queue: queue.clone(),
            worker,
        };
        nodes.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(name_of(new)),
            Change::Deleted(old) => queue.add(name_of(old)),
            Change::Restarted(_) => {
                relisted.store(true, Ordering::Release);
                synced.notify_one();
            }
        });
        this
    }

    /// Hands out ranges until `shutdown` is cancelled; nothing before the
    /// node watch has listed every node.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = self.synced.notified() => {}
        }
        while let Some(name) = self.worker.next(&shutdown).await {
            if self.relisted.swap(false, Ordering::AcqRel) {
                self.rebuild();
            }
            let result = self.reconcile(&name).await;
            self.worker.done(name, result, COMPONENT);
        }
    }

    /// The pool as the Nodes have it: every range a node holds is taken.
    fn rebuild(&mut self) {
        self.pool.taken.clear();
        self.held.clear();
        for node in self.nodes.list() {
            if let Some(range) = pod_cidr(&node)
                && self.pool.occupy(range)
            {
                self.held.insert(name_of(&node), range);
            }
        }
        tracing::debug!(
            controller = COMPONENT,
            taken = self.pool.taken.len(),
            "pod ranges rebuilt from the nodes"
        );
    }

    #[tracing::instrument(skip_all, fields(controller = COMPONENT, node = %name))]
    async fn reconcile(&mut self, name: &str) -> Result<Action, Error> {
        let Some(node) = self.nodes.get("", name) else {
            if let Some(range) = self.held.remove(name) {
                self.pool.release(range);
                tracing::info!(%range, "node deleted; its pod range is free");
                self.starved_get_a_turn();
            }
            self.starved.remove(name);
            return Ok(Action::AwaitChange);
        };
        if let Some(range) = pod_cidr(&node) {
            // Set by us or by hand: either way it is taken.
            if self.pool.occupy(range) {
                self.held.insert(name.to_owned(), range);
            }
            self.starved.remove(name);
            return Ok(Action::AwaitChange);
        }
        let Some(range) = self.pool.allocate() else {
            if self.starved.insert(name.to_owned()) {
                let message = format!(
                    "Node {name} has no pod range: every /{} of {} is taken",
                    self.pool.ranges.mask, self.pool.ranges.cluster
                );
                tracing::warn!("{message}");
                self.recorder
                    .warning(node.as_ref(), CIDR_NOT_AVAILABLE, message);
            }
            return Ok(Action::AwaitChange);
        };
        let mut updated = node.as_ref().clone();
        updated.spec.get_or_insert_with(Default::default).pod_cidr = range.to_string();
        match self.api.update(&updated).await {
            Ok(_) => {
                self.held.insert(name.to_owned(), range);
                self.starved.remove(name);
                tracing::info!(%range, "pod range allocated");
                Ok(Action::AwaitChange)
            }
            Err(err) => {
                self.pool.release(range);
                Err(err.into())
            }
        }
    }

    /// Queues every node still waiting for a range.
    fn starved_get_a_turn(&self) {
        for name in &self.starved {
            self.queue.add(name.clone());
        }
    }
}

fn name_of(node: &Node) -> String {
    node.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec
        .as_ref()
        .map(|s| s.pod_cidr.as_str())
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid")
    }

    #[test]
    fn ranges_cut_the_cluster_cidr_in_order() {
        let ranges = Ranges::new(net("10.244.0.0/16"), 24).expect("valid");
        assert_eq!(ranges.count(), 256);
        assert_eq!(ranges.range(0), net("10.244.0.0/24"));
        assert_eq!(ranges.range(255), net("10.244.255.0/24"));
        assert_eq!(ranges.index(net("10.244.7.0/24")), Some(7));
        assert_eq!(ranges.index(net("10.245.7.0/24")), None);
        assert_eq!(ranges.index(net("10.244.7.0/25")), None);
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        let err = Ranges::new(net("10.244.0.0/16"), 8).expect_err("mask above the cluster");
        assert!(err.contains("larger than the cluster CIDR"), "{err}");
        let err = Ranges::new(net("10.244.0.0/16"), 31).expect_err("no room");
        assert!(err.contains("at most /30"), "{err}");
        let err = Ranges::new(net("10.0.0.0/8"), 30).expect_err("too many");
        assert!(err.contains("more than 2^20"), "{err}");
    }

    #[test]
    fn the_pool_never_hands_out_a_taken_range_and_reports_when_full() {
        let mut pool = Pool::new(Ranges::new(net("10.1.0.0/22"), 24).expect("valid"));
        assert!(pool.occupy(net("10.1.1.0/24")));
        let mut handed = vec![
            pool.allocate().expect("free"),
            pool.allocate().expect("free"),
            pool.allocate().expect("free"),
        ];
        handed.sort();
        assert_eq!(
            handed,
            [net("10.1.0.0/24"), net("10.1.2.0/24"), net("10.1.3.0/24")]
        );
        assert_eq!(pool.allocate(), None);
        pool.release(net("10.1.2.0/24"));
        assert_eq!(pool.allocate(), Some(net("10.1.2.0/24")));
        assert!(!pool.occupy(net("192.168.0.0/24")), "not one of ours");
    }
}
