//! The pure decisions of node lifecycle, with no I/O and no clock of their
//! own: what a node's Ready condition says, which taints that calls for,
//! whether a pod tolerates a taint, and when a pod must leave a node.

use std::time::Duration;

use moor_api::core::v1::{Node, NodeCondition, NodeStatus, Pod, Taint, Toleration};
use prost_types::Timestamp;
use tokio::time::Instant;

/// Taint key of a node whose agent stopped renewing its lease (Ready=Unknown).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key of a node whose agent reports it not ready (Ready=False).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint effect that evicts pods already on the node.
pub const NO_EXECUTE: &str = "NoExecute";
/// The taint effect that keeps new pods off the node.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// Reason of a Ready condition this controller set to Unknown.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
/// Message of a Ready condition this controller set to Unknown.
pub const MESSAGE_UNKNOWN: &str = "the node agent stopped renewing its lease";

/// What a node's Ready condition says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready=True.
    Ready,
    /// Ready=False: the agent is alive and says the node cannot run pods.
    NotReady,
    /// Ready=Unknown (or any other value): nobody vouches for the node.
    Unknown,
    /// No Ready condition yet: the agent has not reported.
    Unreported,
}

/// Whether a pod may stay on a node with a NoExecute taint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stay {
    /// Tolerated without a time limit.
    Forever,
    /// For this long after the taint appeared.
    For(Duration),
}

/// The node's Ready condition.
pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
}

/// What the node's Ready condition says.
pub fn readiness(node: &Node) -> Readiness {
    match ready_condition(node).map(|c| c.status.as_str()) {
        None => Readiness::Unreported,
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        Some(_) => Readiness::Unknown,
    }
}

/// The taints (key, effect) that `readiness` calls for, as Kubernetes'
/// node lifecycle controller sets them: NoSchedule keeps new pods away,
/// NoExecute evicts those already there.
pub fn wanted_taints(readiness: Readiness) -> &'static [(&'static str, &'static str)] {
    match readiness {
        // Nothing to say about a node that never reported: the grace
        // period turns it Unknown if its agent never shows up.
        Readiness::Ready | Readiness::Unreported => &[],
        Readiness::NotReady => &[(NOT_READY, NO_SCHEDULE), (NOT_READY, NO_EXECUTE)],
        Readiness::Unknown => &[(UNREACHABLE, NO_SCHEDULE), (UNREACHABLE, NO_EXECUTE)],
    }
}

/// Whether this controller owns taints with `key`.
pub fn is_managed(key: &str) -> bool {
    key == UNREACHABLE || key == NOT_READY
}

/// `current` with the managed taints made to match `readiness`, other
/// taints and the managed ones still wanted kept as they are (with their
/// timeAdded); `None` when nothing changes. New NoExecute taints are
/// stamped `now`.
pub fn reconcile_taints(
    current: &[Taint],
    readiness: Readiness,
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let wanted = wanted_taints(readiness);
    let is_wanted = |t: &Taint| wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e);
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(&t.key) || is_wanted(t))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == *key && t.effect == *effect) {
            taints.push(Taint {
                key: (*key).to_string(),
                value: String::new(),
                effect: (*effect).to_string(),
                time_added: (*effect == NO_EXECUTE).then_some(now),
            });
        }
    }
    (taints != current).then_some(taints)
}

/// The status with Ready set to Unknown because the lease went stale; the
/// last heartbeat is kept, so it tells when the agent was last heard.
/// `None` when Ready is Unknown already.
pub fn mark_unknown(status: &NodeStatus, now: Timestamp) -> Option<NodeStatus> {
    let old = status.conditions.iter().find(|c| c.r#type == "Ready");
    if old.is_some_and(|c| !matches!(c.status.as_str(), "True" | "False")) {
        return None;
    }
    let mut status = status.clone();
    status.conditions.retain(|c| c.r#type != "Ready");
    status.conditions.push(NodeCondition {
        r#type: "Ready".into(),
        status: "Unknown".into(),
        last_heartbeat_time: old.and_then(|c| c.last_heartbeat_time),
        last_transition_time: Some(now),
        reason: REASON_UNKNOWN.into(),
        message: MESSAGE_UNKNOWN.into(),
    });
    Some(status)
}

/// The node's NoExecute taints.
pub fn no_execute(node: &Node) -> Vec<&Taint> {
    node.spec
        .as_ref()
        .map(|s| s.taints.iter().filter(|t| t.effect == NO_EXECUTE).collect())
        .unwrap_or_default()
}

/// Whether `toleration` tolerates `taint`, by Kubernetes' rules (the
/// scheduler's filter applies the same ones).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.is_empty() || toleration.effect == taint.effect;
    let key_ok = toleration.key.is_empty() || toleration.key == taint.key;
    let value_ok = match toleration.operator.as_str() {
        "Exists" => true,
        _ => !toleration.key.is_empty() && toleration.value == taint.value,
    };
    effect_ok && key_ok && value_ok
}

/// How long a pod with `tolerations` may stay after NoExecute `taint`
/// appeared. Untolerated, the not-ready and unreachable taints give it
/// `default` (Kubernetes gives every pod such a toleration at admission),
/// any other taint nothing. Tolerated, the most lenient matching
/// toleration counts: one without tolerationSeconds keeps it forever.
pub fn stay(taint: &Taint, tolerations: &[Toleration], default: Duration) -> Stay {
    let mut matching = tolerations
        .iter()
        .filter(|t| tolerates(t, taint))
        .peekable();
    if matching.peek().is_none() {
        return match is_managed(&taint.key) {
            true => Stay::For(default),
            false => Stay::For(Duration::ZERO),
        };
    }
    matching
        .map(|t| match t.toleration_seconds {
            None => Stay::Forever,
            Some(secs) => Stay::For(Duration::from_secs(u64::try_from(secs).unwrap_or(0))),
        })
        .max_by_key(|s| match s {
            Stay::Forever => (true, Duration::ZERO),
            Stay::For(d) => (false, *d),
        })
        .unwrap_or(Stay::Forever)
}

/// When `pod` must leave its node, given the node's NoExecute taints and
/// when each appeared, and the taint that sends it; `None`: it may stay.
pub fn evict_at<'a>(
    pod: &Pod,
    taints: &[(&'a Taint, Instant)],
    default: Duration,
) -> Option<(Instant, &'a Taint)> {
    let tolerations = pod
        .spec
        .as_ref()
        .map_or(&[][..], |s| s.tolerations.as_slice());
    taints
        .iter()
        .filter_map(|(taint, since)| match stay(taint, tolerations, default) {
            Stay::Forever => None,
            Stay::For(d) => Some((*since + d, *taint)),
        })
        .min_by_key(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{NodeSpec, PodSpec};

    use super::*;

    fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints,
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready
                    .map(|s| NodeCondition {
                        r#type: "Ready".into(),
                        status: s.into(),
                        last_heartbeat_time: Some(ts(5)),
                        last_transition_time: Some(ts(1)),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ts(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op.into(),
            effect: effect.into(),
            toleration_seconds: secs,
            ..Default::default()
        }
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    #[test]
    fn readiness_follows_the_ready_condition() {
        assert_eq!(readiness(&node(Some("True"), vec![])), Readiness::Ready);
        assert_eq!(readiness(&node(Some("False"), vec![])), Readiness::NotReady);
        assert_eq!(
            readiness(&node(Some("Unknown"), vec![])),
            Readiness::Unknown
        );
        assert_eq!(readiness(&node(None, vec![])), Readiness::Unreported);
    }

    #[test]
    fn taints_follow_readiness_and_leave_others_alone() {
        let dedicated = taint("dedicated", NO_SCHEDULE);
        let unknown =
            reconcile_taints(std::slice::from_ref(&dedicated), Readiness::Unknown, ts(9)).unwrap();
        assert_eq!(
            keys(&unknown),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(unknown[2].time_added, Some(ts(9)), "NoExecute is stamped");
        assert_eq!(unknown[1].time_added, None);
        // Already as wanted: no write, and the stamp is kept.
        assert_eq!(reconcile_taints(&unknown, Readiness::Unknown, ts(20)), None);

        let not_ready = reconcile_taints(&unknown, Readiness::NotReady, ts(30)).unwrap();
        assert_eq!(
            keys(&not_ready),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        let ready = reconcile_taints(&not_ready, Readiness::Ready, ts(40)).unwrap();
        assert_eq!(keys(&ready), ["dedicated:NoSchedule"]);
        assert_eq!(
            reconcile_taints(&ready, Readiness::Unreported, ts(50)),
            None
        );
    }

    #[test]
    fn a_stale_lease_makes_ready_unknown_once() {
        let status = node(Some("True"), vec![]).status.unwrap();
        let unknown = mark_unknown(&status, ts(60)).unwrap();
        let ready = &unknown.conditions[0];
        assert_eq!(unknown.conditions.len(), 1);
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("Unknown", REASON_UNKNOWN, MESSAGE_UNKNOWN)
        );
        assert_eq!(ready.last_transition_time, Some(ts(60)));
        assert_eq!(ready.last_heartbeat_time, Some(ts(5)), "last heard kept");
        assert_eq!(mark_unknown(&unknown, ts(70)), None);
        let never = mark_unknown(&NodeStatus::default(), ts(60)).unwrap();
        assert_eq!(never.conditions[0].status, "Unknown");
    }

    #[test]
    fn tolerations_match_by_kubernetes_rules() {
        let t = Taint {
            value: "v".into(),
            ..taint(UNREACHABLE, NO_EXECUTE)
        };
        assert!(tolerates(&tol("", "Exists", "", None), &t));
        assert!(tolerates(&tol(UNREACHABLE, "Exists", NO_EXECUTE, None), &t));
        assert!(!tolerates(
            &tol(UNREACHABLE, "Exists", NO_SCHEDULE, None),
            &t
        ));
        assert!(!tolerates(&tol(NOT_READY, "Exists", "", None), &t));
        let equal = Toleration {
            value: "v".into(),
            ..tol(UNREACHABLE, "Equal", "", None)
        };
        assert!(tolerates(&equal, &t));
        assert!(
            !tolerates(&tol(UNREACHABLE, "Equal", "", None), &t),
            "value differs"
        );
    }

    #[test]
    fn how_long_a_pod_may_stay() {
        let default = Duration::from_secs(60);
        let unreachable = taint(UNREACHABLE, NO_EXECUTE);
        let other = taint("example.com/drain", NO_EXECUTE);
        assert_eq!(stay(&unreachable, &[], default), Stay::For(default));
        assert_eq!(stay(&other, &[], default), Stay::For(Duration::ZERO));
        let five = tol(UNREACHABLE, "Exists", NO_EXECUTE, Some(5));
        assert_eq!(
            stay(&unreachable, std::slice::from_ref(&five), default),
            Stay::For(Duration::from_secs(5))
        );
        let ten = tol("", "Exists", "", Some(10));
        assert_eq!(
            stay(&unreachable, &[five.clone(), ten], default),
            Stay::For(Duration::from_secs(10)),
            "the most lenient toleration counts"
        );
        let forever = tol(UNREACHABLE, "Exists", "", None);
        assert_eq!(stay(&unreachable, &[five, forever], default), Stay::Forever);
        let negative = tol(UNREACHABLE, "Exists", "", Some(-3));
        assert_eq!(
            stay(&unreachable, &[negative], default),
            Stay::For(Duration::ZERO)
        );
    }

    #[test]
    fn a_pod_goes_at_the_earliest_deadline() {
        let default = Duration::from_secs(60);
        let start = Instant::now();
        let unreachable = taint(UNREACHABLE, NO_EXECUTE);
        let drain = taint("example.com/drain", NO_EXECUTE);
        let pod = |tolerations| Pod {
            spec: Some(PodSpec {
                tolerations,
                ..Default::default()
            }),
            ..Default::default()
        };
        let later = start + Duration::from_secs(100);
        let due = |pod: &Pod, taints: &[(&Taint, Instant)]| {
            evict_at(pod, taints, default).map(|(at, taint)| (at, taint.key.clone()))
        };
        let plain = pod(vec![]);
        assert_eq!(due(&plain, &[]), None, "no taints: stays");
        assert_eq!(
            due(&plain, &[(&unreachable, start)]),
            Some((start + default, UNREACHABLE.to_string()))
        );
        assert_eq!(
            due(&plain, &[(&unreachable, later), (&drain, later)]),
            Some((later, drain.key.clone())),
            "a foreign NoExecute taint evicts at once"
        );
        let patient = pod(vec![tol(UNREACHABLE, "Exists", NO_EXECUTE, Some(300))]);
        assert_eq!(
            due(&patient, &[(&unreachable, start)]),
            Some((start + Duration::from_secs(300), UNREACHABLE.to_string()))
        );
        let stubborn = pod(vec![tol("", "Exists", "", None)]);
        assert_eq!(
            due(&stubborn, &[(&unreachable, start), (&drain, start)]),
            None
        );
    }
}
