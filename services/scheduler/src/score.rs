//! Scores: of the nodes that fit, which suits the pod best? Each scorer gives
//! 0..=[`MAX_SCORE`] per node (after normalizing across the feasible nodes);
//! the total is their weighted sum.

use std::collections::HashMap;

use moor_api::core::v1::PodSpec;

use crate::NodeInfo;
use crate::cache::{PodInfo, selects};
use crate::filter::{term_matches, tolerated};

/// The best score one scorer gives. Finer than Kubernetes' 100 so that one
/// more small pod on a large node still changes the score.
pub const MAX_SCORE: i64 = 1000;

/// How raw values become scores across the feasible nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    /// Raw values are already scores.
    None,
    /// Scaled so the highest raw value gets [`MAX_SCORE`].
    Max,
    /// Reversed: the lowest raw value gets [`MAX_SCORE`], the highest 0.
    ReverseMax,
}

/// What scorers know about the pod beyond its spec.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Selectors of the services that select the pod.
    pub services: Vec<HashMap<String, String>>,
}

/// A scorer: raw value for one node.
pub type Scorer = fn(&PodSpec, &PodInfo, &Context, &NodeInfo) -> i64;

/// The scorers with name, weight and normalization.
pub const SCORERS: &[(&str, i64, Normalize, Scorer)] = &[
    ("LeastAllocated", 1, Normalize::None, least_allocated),
    (
        "BalancedAllocation",
        1,
        Normalize::None,
        balanced_allocation,
    ),
    ("SelectorSpread", 2, Normalize::ReverseMax, spread),
    ("NodeAffinity", 2, Normalize::Max, preferred_affinity),
    (
        "TaintToleration",
        3,
        Normalize::ReverseMax,
        prefer_no_schedule,
    ),
];

/// Weighted total scores of `nodes` for the pod, in the same order.
pub fn score_nodes(spec: &PodSpec, pod: &PodInfo, ctx: &Context, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut totals = vec![0; nodes.len()];
    for (_, weight, normalize, scorer) in SCORERS {
        let raw: Vec<i64> = nodes.iter().map(|n| scorer(spec, pod, ctx, n)).collect();
        for (total, score) in totals.iter_mut().zip(normalized(&raw, *normalize)) {
            *total += weight * score;
        }
    }
    totals
}

/// Applies a normalization to raw values.
pub fn normalized(raw: &[i64], how: Normalize) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    match how {
        Normalize::None => raw.to_vec(),
        Normalize::Max if max <= 0 => vec![0; raw.len()],
        Normalize::Max => raw.iter().map(|r| r * MAX_SCORE / max).collect(),
        Normalize::ReverseMax if max <= 0 => vec![MAX_SCORE; raw.len()],
        Normalize::ReverseMax => raw.iter().map(|r| MAX_SCORE * (max - r) / max).collect(),
    }
}

/// Fraction of `have` that `used` is, in [`MAX_SCORE`] units, capped.
fn fraction(used: i128, have: i128) -> i64 {
    if have <= 0 {
        return MAX_SCORE;
    }
    let used = used.max(0);
    // In 64 bits when nothing overflows (always, for real nodes): a 128-bit
    // division costs several times more, on every node of every decision.
    if let (Ok(u), Ok(h)) = (i64::try_from(used), i64::try_from(have))
        && let Some(scaled) = u.checked_mul(MAX_SCORE)
    {
        return (scaled / h).min(MAX_SCORE);
    }
    // Past i128 too (requests near its range): divide first.
    let max = i128::from(MAX_SCORE);
    let f = used
        .checked_mul(max)
        .map_or_else(|| used / (have / max).max(1), |scaled| scaled / have)
        .min(max);
    i64::try_from(f).unwrap_or(MAX_SCORE)
}

fn fractions(pod: &PodInfo, node: &NodeInfo) -> (i64, i64) {
    let used = node.nonzero_requested + pod.nonzero;
    (
        fraction(used.milli_cpu, node.allocatable.milli_cpu),
        fraction(used.memory, node.allocatable.memory),
    )
}

/// Prefers nodes with more CPU and memory left after placing the pod.
pub fn least_allocated(_: &PodSpec, pod: &PodInfo, _: &Context, node: &NodeInfo) -> i64 {
    let (cpu, memory) = fractions(pod, node);
    ((MAX_SCORE - cpu) + (MAX_SCORE - memory)) / 2
}

/// Prefers nodes whose CPU and memory use stay in proportion.
pub fn balanced_allocation(_: &PodSpec, pod: &PodInfo, _: &Context, node: &NodeInfo) -> i64 {
    let (cpu, memory) = fractions(pod, node);
    MAX_SCORE - (cpu - memory).abs() / 2
}

/// Raw: pods on the node with the same controller, or selected by a service
/// that selects this pod (fewer is better).
pub fn spread(_: &PodSpec, pod: &PodInfo, ctx: &Context, node: &NodeInfo) -> i64 {
    if pod.owner.is_none() && ctx.services.is_empty() {
        return 0;
    }
    let count = node
        .pods
        .values()
        .filter(|p| p.namespace == pod.namespace && p.uid != pod.uid)
        .filter(|p| {
            (pod.owner.is_some() && p.owner == pod.owner)
                || ctx.services.iter().any(|s| selects(s, &p.labels))
        })
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Raw: sum of the weights of the preferred node affinity terms the node
/// matches.
pub fn preferred_affinity(spec: &PodSpec, _: &PodInfo, _: &Context, node: &NodeInfo) -> i64 {
    let Some(n) = node.node.as_deref() else {
        return 0;
    };
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .map_or(0, |na| {
            na.preferred_during_scheduling_ignored_during_execution
                .iter()
                .filter(|p| p.preference.as_ref().is_some_and(|t| term_matches(t, n)))
                .map(|p| i64::from(p.weight))
                .sum()
        })
}

/// Raw: PreferNoSchedule taints the pod does not tolerate (fewer is better).
pub fn prefer_no_schedule(spec: &PodSpec, _: &PodInfo, _: &Context, node: &NodeInfo) -> i64 {
    let taints = node
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .map(|s| s.taints.as_slice())
        .unwrap_or(&[]);
    let n = taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(t, &spec.tolerations))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use moor_api::core::v1::{
        Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, Pod,
        PreferredSchedulingTerm, Taint, Toleration,
    };
    use moor_api::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;
    use crate::cache::tests::node;
    use crate::resources::tests::container;

    fn pod(uid: &str, cpu: &str, memory: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                uid: uid.into(),
                name: uid.into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container(cpu, memory)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn info_of(p: &Pod) -> (PodSpec, PodInfo) {
        (p.spec.clone().unwrap_or_default(), PodInfo::new(p))
    }

    #[test]
    fn fractions_of_requests_near_the_range_are_full() {
        assert_eq!(fraction(i128::MAX, 4000), MAX_SCORE);
        assert_eq!(fraction(i128::MAX / 2, i128::MAX), MAX_SCORE / 2);
    }

    #[test]
    fn fractions_in_64_bits_match_128() {
        let wide = |used: i128, have: i128| {
            i64::try_from((used * i128::from(MAX_SCORE) / have).min(i128::from(MAX_SCORE)))
                .unwrap_or(MAX_SCORE)
        };
        let cases = [(0, 4000), (2500, 4000), (5000, 4000), (17 << 40, 16 << 40)];
        for (used, have) in cases {
            assert_eq!(fraction(used, have), wide(used, have), "{used}/{have}");
        }
        // Past 64 bits once scaled: the 128-bit path answers.
        assert_eq!(
            fraction(i128::from(i64::MAX), i128::from(i64::MAX)),
            MAX_SCORE
        );
        assert_eq!(
            fraction(i128::from(i64::MAX) / 4, i128::from(i64::MAX)),
            249
        );
        assert_eq!(fraction(-5, 100), 0);
        assert_eq!(fraction(5, 0), MAX_SCORE);
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let empty = NodeInfo::new(node("a"));
        let mut busy = NodeInfo::new(node("b"));
        busy.add_pod(Arc::new(PodInfo::new(&pod("x", "2", "4Gi"))));
        let (spec, p) = info_of(&pod("p", "1", "1Gi"));
        let ctx = Context::default();
        assert!(least_allocated(&spec, &p, &ctx, &empty) > least_allocated(&spec, &p, &ctx, &busy));
        // 1 of 4 cpu and 1 of 8Gi: (750 + 875) / 2.
        assert_eq!(least_allocated(&spec, &p, &ctx, &empty), 812);
    }

    #[test]
    fn one_more_default_pod_always_lowers_least_allocated() {
        let mut n = NodeInfo::new(node("a"));
        let (spec, p) = info_of(&pod("p", "", ""));
        let ctx = Context::default();
        let mut last = least_allocated(&spec, &p, &ctx, &n);
        for i in 0..20 {
            n.add_pod(Arc::new(PodInfo::new(&pod(&format!("x{i}"), "", ""))));
            let now = least_allocated(&spec, &p, &ctx, &n);
            assert!(now < last, "{i}: {now} !< {last}");
            last = now;
        }
    }

    #[test]
    fn balanced_prefers_even_cpu_and_memory_use() {
        let mut cpu_heavy = NodeInfo::new(node("a"));
        cpu_heavy.add_pod(Arc::new(PodInfo::new(&pod("x", "3", "1Gi"))));
        let mut even = NodeInfo::new(node("b"));
        even.add_pod(Arc::new(PodInfo::new(&pod("y", "1", "4Gi"))));
        let (spec, p) = info_of(&pod("p", "500m", "1Gi"));
        let ctx = Context::default();
        assert!(
            balanced_allocation(&spec, &p, &ctx, &even)
                > balanced_allocation(&spec, &p, &ctx, &cpu_heavy)
        );
    }

    #[test]
    fn spread_counts_siblings_of_the_same_owner_or_service() {
        let owned = |uid: &str, owner: &str| {
            let mut p = pod(uid, "", "");
            let meta = p.metadata.get_or_insert_with(Default::default);
            meta.owner_references = vec![OwnerReference {
                uid: owner.into(),
                controller: Some(true),
                ..Default::default()
            }];
            meta.labels = HashMap::from([("app".into(), "web".into())]);
            p
        };
        let mut a = NodeInfo::new(node("a"));
        a.add_pod(Arc::new(PodInfo::new(&owned("s1", "rs1"))));
        a.add_pod(Arc::new(PodInfo::new(&owned("s2", "rs1"))));
        a.add_pod(Arc::new(PodInfo::new(&owned("o1", "rs2"))));
        let (spec, p) = info_of(&owned("p", "rs1"));
        let ctx = Context::default();
        assert_eq!(spread(&spec, &p, &ctx, &a), 2);
        let by_service = Context {
            services: vec![HashMap::from([("app".into(), "web".into())])],
        };
        assert_eq!(spread(&spec, &p, &by_service, &a), 3);
        assert_eq!(
            normalized(&[2, 0, 1], Normalize::ReverseMax),
            vec![0, 1000, 500]
        );
        let (lone_spec, lone) = info_of(&pod("q", "", ""));
        assert_eq!(spread(&lone_spec, &lone, &ctx, &a), 0);
    }

    #[test]
    fn preferred_affinity_sums_matching_weights() {
        let mut n = node("a");
        n.metadata.get_or_insert_with(Default::default).labels =
            HashMap::from([("zone".into(), "x".into()), ("disk".into(), "ssd".into())]);
        let info = NodeInfo::new(n);
        let term = |k: &str, v: &str, w: i32| PreferredSchedulingTerm {
            weight: w,
            preference: Some(NodeSelectorTerm {
                match_expressions: vec![NodeSelectorRequirement {
                    key: k.into(),
                    operator: "In".into(),
                    values: vec![v.into()],
                }],
                ..Default::default()
            }),
        };
        let spec = PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    preferred_during_scheduling_ignored_during_execution: vec![
                        term("zone", "x", 10),
                        term("disk", "ssd", 5),
                        term("zone", "y", 50),
                    ],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let p = PodInfo::default();
        assert_eq!(
            preferred_affinity(&spec, &p, &Context::default(), &info),
            15
        );
        assert_eq!(normalized(&[15, 0, 30], Normalize::Max), vec![500, 0, 1000]);
    }

    #[test]
    fn prefer_no_schedule_only_scores() {
        let mut n = node("a");
        n.spec = Some(NodeSpec {
            taints: vec![Taint {
                key: "soft".into(),
                effect: "PreferNoSchedule".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let tainted = NodeInfo::new(n);
        let clean = NodeInfo::new(node("b"));
        let p = PodInfo::default();
        let ctx = Context::default();
        let spec = PodSpec::default();
        assert!(crate::filter::taint_toleration(&spec, &p, &tainted).is_ok());
        let totals = score_nodes(&spec, &p, &ctx, &[&tainted, &clean]);
        assert!(totals[1] > totals[0]);
        let tolerant = PodSpec {
            tolerations: vec![Toleration {
                key: "soft".into(),
                operator: "Exists".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(prefer_no_schedule(&tolerant, &p, &ctx, &tainted), 0);
    }
}
