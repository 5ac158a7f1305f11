//! One pod against every node: which filter each node fails or what score it
//! gets, the node to bind to, and the "why not" message when none fits.
//!
//! [`plan`] is the dry run, with no side effects; the scheduling loop and a
//! future plan RPC both build on it.

use std::collections::BTreeMap;

use moor_api::core::v1::{Node, Pod, Service};
use moor_client::{Client, ListParams};

use crate::cache::{PodInfo, spec_of};
use crate::filter::FILTERS;
use crate::score::{Context, score_nodes};
use crate::{Cache, Error, NodeInfo};

/// What one node makes of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVerdict {
    /// The node's name.
    pub node: String,
    /// The first filter it failed, e.g. "NodeResourcesFit"; `None` if it fits.
    pub failed_filter: Option<String>,
    /// Why that filter failed, in Kubernetes' words.
    pub reasons: Vec<String>,
    /// Its total score, when it fits.
    pub score: Option<i64>,
}

/// Where a pod goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Bind it to this node.
    Bind(String),
    /// It fits nowhere; the message says why.
    Unschedulable(String),
}

/// Filters and scores every node for `pod`, in node name order.
pub fn plan(cache: &Cache, pod: &Pod) -> Vec<NodeVerdict> {
    let spec = spec_of(pod);
    let info = PodInfo::new(pod);
    let ctx = Context {
        services: cache.services_of(&info.namespace, &info.labels),
    };
    let mut verdicts = Vec::new();
    let mut feasible: Vec<(usize, &NodeInfo)> = Vec::new();
    for node in cache.nodes() {
        let failed = FILTERS
            .iter()
            .find_map(|(name, f)| f(spec, &info, node).err().map(|r| (*name, r)));
        if failed.is_none() {
            feasible.push((verdicts.len(), node));
        }
        let (failed_filter, reasons) =
            failed.map_or((None, Vec::new()), |(n, r)| (Some(n.to_string()), r));
        verdicts.push(NodeVerdict {
            node: node.name().to_string(),
            failed_filter,
            reasons,
            score: None,
        });
    }
    let nodes: Vec<&NodeInfo> = feasible.iter().map(|(_, n)| *n).collect();
    let scores = score_nodes(spec, &info, &ctx, &nodes);
    for ((i, _), score) in feasible.iter().zip(scores) {
        verdicts[*i].score = Some(score);
    }
    verdicts
}

/// A cache loaded once from the API (nodes, bound pods, services): what a
/// dry run plans against when no scheduler's live cache is at hand.
pub async fn snapshot(client: &Client) -> Result<Cache, Error> {
    let all = ListParams::default();
    let (nodes, _) = client.api::<Node>().list(&all).await.map_err(Error::Api)?;
    let (pods, _) = client.api::<Pod>().list(&all).await.map_err(Error::Api)?;
    let (services, _) = client
        .api::<Service>()
        .list(&all)
        .await
        .map_err(Error::Api)?;
    let mut cache = Cache::default();
    cache.reset_nodes(nodes);
    cache.reset_services(&services);
    let bound = pods
        .into_iter()
        .filter_map(|p| crate::scheduler::bound_node(&p).map(|n| (p, n)))
        .collect();
    cache.reset_bound(bound);
    Ok(cache)
}

/// Decides for `pod`: the best-scoring node, ties broken by a hash of the
/// pod's uid and the node's name (deterministic, yet different pods break
/// ties differently).
///
/// On large clusters only a share of the nodes is filtered and scored, as
/// Kubernetes does (`percentageOfNodesToScore`): the search starts at a
/// node chosen by the pod's uid and stops once enough feasible nodes are
/// found. When none is found, every node was looked at and the "why not"
/// message covers them all.
pub fn schedule(cache: &Cache, pod: &Pod) -> Decision {
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    let slots = cache.node_slots();
    let want = feasible_to_find(slots);
    if want >= slots {
        return best_of(&plan(cache, pod), uid);
    }
    let spec = spec_of(pod);
    let info = PodInfo::new(pod);
    let ties = TieBreak::new(uid);
    let start = (ties.of("") % slots as u64) as usize;
    let feasible: Vec<&NodeInfo> = cache
        .nodes_from(start)
        .filter(|node| FILTERS.iter().all(|(_, f)| f(spec, &info, node).is_ok()))
        .take(want)
        .collect();
    if feasible.is_empty() {
        return best_of(&plan(cache, pod), uid);
    }
    let ctx = Context {
        services: cache.services_of(&info.namespace, &info.labels),
    };
    let scores = score_nodes(spec, &info, &ctx, &feasible);
    // Hashing is dearer than scoring: break ties among the top nodes only.
    let top = scores.iter().copied().max();
    let best = feasible
        .iter()
        .zip(scores)
        .filter(|(_, s)| Some(*s) == top)
        .max_by_key(|(n, _)| std::cmp::Reverse(ties.of(n.name())));
    match best {
        Some((node, _)) => Decision::Bind(node.name().to_string()),
        None => best_of(&plan(cache, pod), uid),
    }
}

/// How many feasible nodes to find before scoring: Kubernetes' adaptive
/// share (50% less 1% per 125 nodes, at least 5%), and at least 100 nodes.
fn feasible_to_find(total: usize) -> usize {
    const MIN_NODES: usize = 100;
    if total <= MIN_NODES {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(5);
    (total * percent / 100).max(MIN_NODES).min(total)
}

/// The best-scoring node of a full plan, or why none fits.
fn best_of(verdicts: &[NodeVerdict], uid: &str) -> Decision {
    let ties = TieBreak::new(uid);
    let best = verdicts
        .iter()
        .filter_map(|v| v.score.map(|s| (s, v)))
        .max_by_key(|(s, v)| (*s, std::cmp::Reverse(ties.of(&v.node))));
    match best {
        Some((_, v)) => Decision::Bind(v.node.clone()),
        None => Decision::Unschedulable(fit_error_message(verdicts)),
    }
}

/// Kubernetes' wording: `0/5 nodes are available: 2 Insufficient cpu, 3
/// node(s) had untolerated taint {dedicated: gpu}.` Reasons are counted per
/// node and sorted as text, as Kubernetes sorts them.
pub fn fit_error_message(verdicts: &[NodeVerdict]) -> String {
    if verdicts.is_empty() {
        return "no nodes available to schedule pods".to_string();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in verdicts.iter().flat_map(|v| &v.reasons) {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let fit = verdicts.iter().filter(|v| v.score.is_some()).count();
    format!(
        "{fit}/{} nodes are available: {}.",
        verdicts.len(),
        parts.join(", ")
    )
}

/// FNV-1a of a pod's uid and a node's name: stable across runs and Rust
/// versions. The uid's part is hashed once per pod, not once per node.
struct TieBreak(u64);

impl TieBreak {
    const PRIME: u64 = 0x0100_0000_01b3;

    /// The hash state after `uid` and a separator.
    fn new(uid: &str) -> Self {
        Self(Self::extend(0xcbf2_9ce4_8422_2325, uid.bytes().chain([0])))
    }

    /// The tie-break value of `node` for this pod.
    fn of(&self, node: &str) -> u64 {
        Self::extend(self.0, node.bytes())
    }

    fn extend(mut hash: u64, bytes: impl Iterator<Item = u8>) -> u64 {
        for byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(Self::PRIME);
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{NodeCondition, NodeSpec, PodSpec, Taint};
    use moor_api::meta::v1::ObjectMeta;

    use super::*;
    use crate::cache::tests::node;
    use crate::resources::tests::container;

    fn ready(name: &str) -> moor_api::core::v1::Node {
        let mut n = node(name);
        n.status
            .get_or_insert_with(Default::default)
            .conditions
            .push(NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        n
    }

    fn pod(uid: &str, cpu: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                uid: uid.into(),
                name: uid.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container(cpu, "")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sampling_still_finds_the_only_fitting_node_and_explains_misses_fully() {
        let mut cache = Cache::default();
        for i in 0..300 {
            cache.set_node(if i == 217 {
                ready(&format!("n{i:03}"))
            } else {
                node(&format!("n{i:03}"))
            });
        }
        assert_eq!(
            schedule(&cache, &pod("p", "1")),
            Decision::Bind("n217".into())
        );
        let mut none = Cache::default();
        for i in 0..300 {
            none.set_node(node(&format!("n{i:03}")));
        }
        match schedule(&none, &pod("p", "1")) {
            Decision::Unschedulable(message) => assert!(
                message.starts_with("0/300 nodes are available"),
                "{message}"
            ),
            other => panic!("expected unschedulable, got {other:?}"),
        }
    }

    #[test]
    fn large_clusters_score_a_share_of_nodes() {
        assert_eq!(feasible_to_find(50), 50);
        assert_eq!(feasible_to_find(100), 100);
        assert_eq!(feasible_to_find(1000), 420);
        assert_eq!(feasible_to_find(5000), 500);
        assert_eq!(feasible_to_find(100_000), 5000);
    }

    #[test]
    fn why_not_counts_and_sorts_like_kubernetes() {
        let mut cache = Cache::default();
        for name in ["a", "b", "c"] {
            cache.set_node(ready(name));
        }
        for name in ["g1", "g2"] {
            let mut n = ready(name);
            n.spec = Some(NodeSpec {
                taints: vec![Taint {
                    key: "dedicated".into(),
                    value: "gpu".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            cache.set_node(n);
        }
        let verdicts = plan(&cache, &pod("p", "5"));
        assert_eq!(verdicts.len(), 5);
        assert_eq!(
            verdicts[0].failed_filter.as_deref(),
            Some("NodeResourcesFit")
        );
        assert_eq!(
            verdicts[3].failed_filter.as_deref(),
            Some("TaintToleration")
        );
        assert_eq!(
            schedule(&cache, &pod("p", "5")),
            Decision::Unschedulable(
                "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu.".into()
            )
        );
        assert_eq!(
            fit_error_message(&[]),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn plan_scores_feasible_nodes_and_schedule_picks_the_best() {
        let mut cache = Cache::default();
        cache.set_node(ready("a"));
        cache.set_node(ready("b"));
        cache.set_node(node("not-ready"));
        cache.add_bound(&pod("x", "2"), "a");
        let verdicts = plan(&cache, &pod("p", "1"));
        assert!(verdicts[0].score < verdicts[1].score);
        assert_eq!(verdicts[2].failed_filter.as_deref(), Some("NodeReady"));
        assert_eq!(verdicts[2].score, None);
        assert_eq!(schedule(&cache, &pod("p", "1")), Decision::Bind("b".into()));
    }

    #[test]
    fn ties_break_deterministically_by_pod_and_node() {
        let mut cache = Cache::default();
        for i in 0..10 {
            cache.set_node(ready(&format!("n{i}")));
        }
        let first = schedule(&cache, &pod("uid-1", ""));
        assert_eq!(schedule(&cache, &pod("uid-1", "")), first);
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|i| schedule(&cache, &pod(&format!("uid-{i}"), "")))
            .collect();
        assert!(
            spread.len() > 3,
            "ties should not all go to one node: {spread:?}"
        );
    }

    #[test]
    fn assumed_pods_spread_evenly_over_equal_nodes() {
        let mut cache = Cache::default();
        for i in 0..5 {
            cache.set_node(ready(&format!("n{i}")));
        }
        for i in 0..23 {
            let p = pod(&format!("p{i}"), "");
            let Decision::Bind(node) = schedule(&cache, &p) else {
                panic!("unschedulable")
            };
            cache.assume(&p, &node);
        }
        let counts: Vec<usize> = cache.nodes().map(|n| n.pods.len()).collect();
        let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{counts:?}");
    }
}
