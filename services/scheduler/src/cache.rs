//! The scheduling cache: every node, and on each what its bound and assumed
//! pods commit, plus service selectors for spreading.
//!
//! A decision is "assumed" into the cache at once so the next pod sees it,
//! while the bind runs in the background; the watch later confirms it, or a
//! failed bind forgets it. Plain data, no I/O: the caller holds the lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use moor_api::Resource;
use moor_api::core::v1::{Node, Pod, PodSpec, Service};
use moor_api::meta::v1::ObjectMeta;

use crate::Resources;
use crate::filter::HostPort;
use crate::resources::{nonzero_requests, pod_requests};

/// What the scheduler needs to know of a pod, computed once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// uid.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// uid of the controlling owner (replica set, replication controller...).
    pub owner: Option<String>,
    /// Requests, for fitting.
    pub requests: Resources,
    /// Requests with defaults for containers that request nothing, for scoring.
    pub nonzero: Resources,
    /// Host ports the pod's containers claim.
    pub host_ports: Vec<HostPort>,
}

/// One node and what is committed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The Node; `None` while pods name a node the cache has not seen.
    pub node: Option<Arc<Node>>,
    /// Whether its Ready condition is True, read once per node update:
    /// every decision looks at it on hundreds of nodes.
    pub ready: bool,
    /// What the node offers.
    pub allocatable: Resources,
    /// Sum of the requests of its bound and assumed pods.
    pub requested: Resources,
    /// Same, with scoring defaults.
    pub nonzero_requested: Resources,
    /// Its pods by uid.
    pub pods: HashMap<String, Arc<PodInfo>>,
}

/// Where a known pod sits.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    node: String,
    assumed: bool,
}

/// Nodes, committed pods and service selectors.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    pods: HashMap<String, Placement>,
    services: HashMap<(String, String), HashMap<String, String>>,
}

// === impl PodInfo ===

impl PodInfo {
    /// Extracts what scheduling needs from `pod`.
    pub fn new(pod: &Pod) -> Self {
        let (meta, spec) = (pod.meta(), spec_of(pod));
        let owner = controller_of(meta).map(str::to_owned);
        Self {
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            labels: meta.labels.clone(),
            owner,
            requests: pod_requests(spec),
            nonzero: nonzero_requests(spec),
            host_ports: HostPort::of(spec),
        }
    }
}

// === impl NodeInfo ===

impl NodeInfo {
    /// A node with no pods yet.
    pub fn new(node: Node) -> Self {
        Self {
            ready: is_ready(&node),
            allocatable: Resources::allocatable(&node),
            node: Some(Arc::new(node)),
            ..Self::default()
        }
    }

    /// The node's name ("" when unknown).
    pub fn name(&self) -> &str {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.as_ref())
            .map_or("", |m| m.name.as_str())
    }

    /// Adds a pod's requests.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested = self.requested + pod.requests;
        self.nonzero_requested = self.nonzero_requested + pod.nonzero;
        if let Some(old) = self.pods.insert(pod.uid.clone(), pod) {
            self.requested = self.requested - old.requests;
            self.nonzero_requested = self.nonzero_requested - old.nonzero;
        }
    }

    /// Removes a pod's requests.
    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(old) = self.pods.remove(uid) {
            self.requested = self.requested - old.requests;
            self.nonzero_requested = self.nonzero_requested - old.nonzero;
        }
    }
}

/// The pod's spec, or an empty one: borrowed, as the meta of
/// [`Resource::meta`], since decisions read it on every watch event.
pub(crate) fn spec_of(pod: &Pod) -> &PodSpec {
    static EMPTY: std::sync::OnceLock<PodSpec> = std::sync::OnceLock::new();
    pod.spec
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(PodSpec::default))
}

/// The uid of the object's controlling owner, if any.
fn controller_of(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// Whether `node`'s Ready condition is True.
fn is_ready(node: &Node) -> bool {
    node.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

// === impl Cache ===

impl Cache {
    /// Adds or updates a node, keeping its pods.
    pub fn set_node(&mut self, node: Node) {
        let name = node
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let info = self.nodes.entry(name).or_default();
        info.ready = is_ready(&node);
        info.allocatable = Resources::allocatable(&node);
        info.node = Some(Arc::new(node));
    }

    /// Removes a node; pods still bound to it stay accounted.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            info.node = None;
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// Replaces every node (after a re-list).
    pub fn reset_nodes(&mut self, nodes: Vec<Node>) {
        let keep: std::collections::HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.as_ref().map(|m| m.name.clone()))
            .collect();
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
        for node in nodes {
            self.set_node(node);
        }
    }

    /// The nodes in name order, with their committed pods; only those with
    /// a Node object.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.node.is_some())
    }

    /// The nodes in name order from the `start`th slot, wrapping around:
    /// where a decision that looks at only some nodes begins. A slot is a
    /// node or a name pods are bound to before its Node is seen.
    pub fn nodes_from(&self, start: usize) -> impl Iterator<Item = &NodeInfo> {
        // No Vec of every node per decision: walking the map is cheaper than
        // allocating and filling one, thousands of times a second.
        let all = self.nodes.values();
        all.clone()
            .skip(start)
            .chain(all.take(start))
            .filter(|n| n.node.is_some())
    }

    /// How many slots [`Self::nodes_from`] rotates over.
    pub fn node_slots(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the pod is bound or assumed.
    pub fn has_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Whether the pod is assumed and not yet confirmed.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Records a pod bound to `node`, confirming an assumption.
    pub fn add_bound(&mut self, pod: &Pod, node: &str) {
        // Every status update of a bound pod comes here. Its requests never
        // change once bound, its labels and controller may (spreading counts
        // them): an unchanged pod already in place is only marked confirmed.
        let meta = pod.meta();
        let in_place = self.nodes.get(node).and_then(|n| n.pods.get(&meta.uid));
        let same = in_place.is_some_and(|info| {
            meta.labels == info.labels && controller_of(meta) == info.owner.as_deref()
        });
        if same && let Some(placement) = self.pods.get_mut(&meta.uid) {
            placement.assumed = false;
            return;
        }
        self.place(Arc::new(PodInfo::new(pod)), node, false);
    }

    /// Assumes `pod` on `node` before the bind completes.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        self.place(Arc::new(PodInfo::new(pod)), node, true);
    }

    /// Drops an assumption whose bind failed; a confirmed pod stays.
    pub fn forget(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    /// Removes a pod (deleted, or finished); true if it was accounted.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(placement) = self.pods.remove(uid) else {
            return false;
        };
        if let Some(info) = self.nodes.get_mut(&placement.node) {
            info.remove_pod(uid);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(&placement.node);
            }
        }
        true
    }

    /// Replaces every bound pod (after a re-list); assumptions stay.
    pub fn reset_bound(&mut self, bound: Vec<(Pod, String)>) {
        let confirmed: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| !p.assumed)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in confirmed {
            self.remove_pod(&uid);
        }
        for (pod, node) in bound {
            self.add_bound(&pod, &node);
        }
    }

    /// Adds or updates a service's selector.
    pub fn set_service(&mut self, service: &Service) {
        let meta = service.metadata.clone().unwrap_or_default();
        let selector = service.spec.clone().unwrap_or_default().selector;
        self.services.insert((meta.namespace, meta.name), selector);
    }

    /// Removes a service.
    pub fn remove_service(&mut self, service: &Service) {
        let meta = service.metadata.clone().unwrap_or_default();
        self.services.remove(&(meta.namespace, meta.name));
    }

    /// Replaces every service (after a re-list).
    pub fn reset_services(&mut self, services: &[Service]) {
        self.services.clear();
        for s in services {
            self.set_service(s);
        }
    }

    /// Selectors of the services in `namespace` that select `labels`.
    pub fn services_of(
        &self,
        namespace: &str,
        labels: &HashMap<String, String>,
    ) -> Vec<HashMap<String, String>> {
        self.services
            .iter()
            .filter(|((ns, _), sel)| ns == namespace && !sel.is_empty() && selects(sel, labels))
            .map(|(_, sel)| sel.clone())
            .collect()
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str, assumed: bool) {
        let uid = info.uid.clone();
        if let Some(old) = self.pods.get(&uid)
            && old.node != node
        {
            self.remove_pod(&uid);
        }
        self.nodes
            .entry(node.to_string())
            .or_default()
            .add_pod(info);
        self.pods.insert(
            uid,
            Placement {
                node: node.to_string(),
                assumed,
            },
        );
    }
}

/// Whether an equality selector selects `labels`.
pub fn selects(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
pub(crate) mod tests {
    use moor_api::core::v1::{NodeStatus, PodSpec};
    use moor_api::meta::v1::ObjectMeta;

    use super::*;
    use crate::resources::tests::container;

    pub(crate) fn node(name: &str) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.to_string(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: HashMap::from([
                    ("cpu".to_string(), "4".to_string()),
                    ("memory".to_string(), "8Gi".to_string()),
                    ("pods".to_string(), "110".to_string()),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(uid: &str, cpu: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: uid.to_string(),
                uid: uid.to_string(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container(cpu, "")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What the cache holds of pod `uid` on node `name`.
    fn placed<'a>(cache: &'a Cache, name: &str, uid: &str) -> Option<&'a PodInfo> {
        cache
            .nodes
            .get(name)
            .and_then(|n| n.pods.get(uid))
            .map(Arc::as_ref)
    }

    fn cpu_on(cache: &Cache, name: &str) -> i128 {
        cache.nodes.get(name).map_or(0, |n| n.requested.milli_cpu)
    }

    #[test]
    fn assume_then_confirm_counts_once() {
        let mut cache = Cache::default();
        cache.set_node(node("a"));
        cache.assume(&pod("p", "1"), "a");
        assert!(cache.is_assumed("p"));
        assert_eq!(cpu_on(&cache, "a"), 1000);
        cache.add_bound(&pod("p", "1"), "a");
        assert!(!cache.is_assumed("p"));
        assert_eq!(cpu_on(&cache, "a"), 1000);
        // A late failure of our own bind must not drop a confirmed pod.
        cache.forget("p");
        assert_eq!(cpu_on(&cache, "a"), 1000);
    }

    #[test]
    fn a_bound_pod_relabelled_or_adopted_is_seen_as_it_is_now() {
        let mut cache = Cache::default();
        cache.set_node(node("a"));
        cache.add_bound(&pod("p", "1"), "a");
        let mut relabelled = pod("p", "1");
        if let Some(meta) = relabelled.metadata.as_mut() {
            meta.labels = HashMap::from([("tier".to_string(), "web".to_string())]);
        }
        cache.add_bound(&relabelled, "a");
        let labels = placed(&cache, "a", "p").map(|info| info.labels.clone());
        assert_eq!(labels, relabelled.metadata.clone().map(|m| m.labels));
        // Adopted by a controller: spreading counts it as that one's.
        if let Some(meta) = relabelled.metadata.as_mut() {
            meta.owner_references = vec![moor_api::meta::v1::OwnerReference {
                uid: "rs-1".to_string(),
                controller: Some(true),
                ..Default::default()
            }];
        }
        cache.add_bound(&relabelled, "a");
        let owner = placed(&cache, "a", "p").and_then(|info| info.owner.clone());
        assert_eq!(owner.as_deref(), Some("rs-1"));
        assert_eq!(cpu_on(&cache, "a"), 1000);
    }

    #[test]
    fn forget_and_move_release_requests() {
        let mut cache = Cache::default();
        cache.set_node(node("a"));
        cache.set_node(node("b"));
        cache.assume(&pod("p", "1"), "a");
        cache.forget("p");
        assert_eq!(cpu_on(&cache, "a"), 0);
        cache.assume(&pod("q", "1"), "a");
        // Someone else bound it to b.
        cache.add_bound(&pod("q", "1"), "b");
        assert_eq!(cpu_on(&cache, "a"), 0);
        assert_eq!(cpu_on(&cache, "b"), 1000);
        assert!(cache.remove_pod("q"));
        assert_eq!(cpu_on(&cache, "b"), 0);
    }

    #[test]
    fn pods_on_unknown_nodes_are_kept_but_not_offered() {
        let mut cache = Cache::default();
        cache.add_bound(&pod("p", "1"), "ghost");
        assert_eq!(cache.nodes().count(), 0);
        cache.set_node(node("ghost"));
        assert_eq!(
            cache.nodes().next().map(|n| n.requested.milli_cpu),
            Some(1000)
        );
        cache.reset_nodes(vec![node("other")]);
        assert_eq!(
            cache.nodes().map(NodeInfo::name).collect::<Vec<_>>(),
            ["other"]
        );
    }

    #[test]
    fn nodes_from_rotates_in_name_order_past_unknown_nodes() {
        let mut cache = Cache::default();
        for name in ["c", "a", "d"] {
            cache.set_node(node(name));
        }
        cache.add_bound(&pod("p", "1"), "b");
        assert_eq!(cache.node_slots(), 4);
        let from = |start| {
            cache
                .nodes_from(start)
                .map(NodeInfo::name)
                .collect::<Vec<_>>()
        };
        assert_eq!(from(0), ["a", "c", "d"]);
        assert_eq!(from(1), ["c", "d", "a"]);
        assert_eq!(from(3), ["d", "a", "c"]);
    }
}
