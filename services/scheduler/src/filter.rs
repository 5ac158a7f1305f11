//! Filters: may this pod run on this node at all? Each says why not in
//! Kubernetes' words, so the "0/5 nodes are available: ..." message reads as
//! a Kubernetes user expects.

use moor_api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

use crate::NodeInfo;
use crate::cache::PodInfo;

/// A filter: `Err` holds the reasons the node does not fit.
pub type Filter = fn(&PodSpec, &PodInfo, &NodeInfo) -> Result<(), Vec<String>>;

/// The filters in the order they run; the first that fails names the node's
/// verdict.
pub const FILTERS: &[(&str, Filter)] = &[
    ("NodeReady", node_ready),
    ("NodeUnschedulable", node_unschedulable),
    ("NodeAffinity", node_affinity),
    ("TaintToleration", taint_toleration),
    ("NodePorts", node_ports),
    ("NodeResourcesFit", resources_fit),
];

/// A host port a container claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// Host IP; "0.0.0.0" for all.
    pub ip: String,
    /// The port.
    pub port: i32,
}

// === impl HostPort ===

impl HostPort {
    /// The host ports of every container and init container of a pod.
    pub fn of(spec: &PodSpec) -> Vec<Self> {
        spec.containers
            .iter()
            .chain(&spec.init_containers)
            .flat_map(|c| &c.ports)
            .filter(|p| p.host_port > 0)
            .map(|p| Self {
                protocol: if p.protocol.is_empty() {
                    "TCP".to_string()
                } else {
                    p.protocol.clone()
                },
                ip: if p.host_ip.is_empty() {
                    "0.0.0.0".to_string()
                } else {
                    p.host_ip.clone()
                },
                port: p.host_port,
            })
            .collect()
    }

    /// Whether two claims collide: same protocol and port, and the same IP
    /// or either on all addresses.
    pub fn conflicts(&self, other: &Self) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The node reports Ready=True.
pub fn node_ready(_: &PodSpec, _: &PodInfo, node: &NodeInfo) -> Result<(), Vec<String>> {
    if node.ready {
        Ok(())
    } else {
        Err(vec!["node(s) were not ready".to_string()])
    }
}

/// The node is not cordoned.
pub fn node_unschedulable(_: &PodSpec, _: &PodInfo, node: &NodeInfo) -> Result<(), Vec<String>> {
    let cordoned = node
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .is_some_and(|s| s.unschedulable);
    if cordoned {
        Err(vec!["node(s) were unschedulable".to_string()])
    } else {
        Ok(())
    }
}

/// nodeSelector and required node affinity.
pub fn node_affinity(spec: &PodSpec, _: &PodInfo, info: &NodeInfo) -> Result<(), Vec<String>> {
    // Borrowed: filters run for every node for every pod.
    let node = info.node.as_deref();
    let labels = node.and_then(|n| n.metadata.as_ref()).map(|m| &m.labels);
    let selector_ok = spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let empty = Node::default();
    let node = node.unwrap_or(&empty);
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(vec![
            "node(s) didn't match Pod's node affinity/selector".to_string(),
        ])
    }
}

/// Whether a node selector term (its requirements ANDed) matches `node`; an
/// empty term matches nothing, as in Kubernetes.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let meta = node.metadata.as_ref();
    let label = |key: &str| meta.and_then(|m| m.labels.get(key)).map(String::as_str);
    let name = meta.map_or("", |m| m.name.as_str());
    let labels_ok = term
        .match_expressions
        .iter()
        .all(|r| requirement_matches(r, label(&r.key)));
    let fields_ok = term.match_fields.iter().all(|r| {
        r.key == "metadata.name"
            && matches!(r.operator.as_str(), "In" | "NotIn")
            && requirement_matches(r, Some(name))
    });
    labels_ok && fields_ok
}

/// Whether one requirement holds for a label's value (`None`: absent).
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| r.values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(int), r.values.as_slice()) else {
                return false;
            };
            let Some(want) = int(want) else { return false };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Every NoSchedule and NoExecute taint is tolerated.
pub fn taint_toleration(spec: &PodSpec, _: &PodInfo, info: &NodeInfo) -> Result<(), Vec<String>> {
    let taints = info
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .map(|s| s.taints.as_slice())
        .unwrap_or(&[]);
    let untolerated = taints
        .iter()
        .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
        .find(|t| !tolerated(t, &spec.tolerations));
    match untolerated {
        None => Ok(()),
        Some(t) => Err(vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key, t.value
        )]),
    }
}

/// Whether any toleration tolerates `taint`.
pub fn tolerated(taint: &Taint, tolerations: &[Toleration]) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t.effect.is_empty() || t.effect == taint.effect;
        let key_ok = t.key.is_empty() || t.key == taint.key;
        let value_ok = match t.operator.as_str() {
            "Exists" => true,
            _ => !t.key.is_empty() && t.value == taint.value,
        };
        effect_ok && key_ok && value_ok
    })
}

/// No host port the pod claims is taken on the node.
pub fn node_ports(_: &PodSpec, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<String>> {
    let taken = pod.host_ports.iter().any(|want| {
        node.pods
            .values()
            .flat_map(|p| &p.host_ports)
            .any(|have| want.conflicts(have))
    });
    if taken {
        Err(vec![
            "node(s) didn't have free ports for the requested pod ports".to_string(),
        ])
    } else {
        Ok(())
    }
}

/// CPU, memory and pod count fit in what is left of allocatable; every
/// shortage is named.
pub fn resources_fit(_: &PodSpec, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<String>> {
    let free = node.allocatable - node.requested;
    let mut reasons = Vec::new();
    if pod.requests.pods > free.pods {
        reasons.push("Too many pods".to_string());
    }
    if pod.requests.milli_cpu > 0 && pod.requests.milli_cpu > free.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if pod.requests.memory > 0 && pod.requests.memory > free.memory {
        reasons.push("Insufficient memory".to_string());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use moor_api::core::v1::{
        Affinity, ContainerPort, NodeAffinity, NodeCondition, NodeSelector, NodeSpec, Pod,
    };
    use moor_api::meta::v1::ObjectMeta;

    use super::*;
    use crate::cache::tests::node;
    use crate::resources::tests::container;

    fn run(f: Filter, spec: &PodSpec, info: &NodeInfo) -> Result<(), Vec<String>> {
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Default::default()
        };
        f(spec, &PodInfo::new(&pod), info)
    }

    fn ready(mut n: Node) -> Node {
        n.status
            .get_or_insert_with(Default::default)
            .conditions
            .push(NodeCondition {
                r#type: "Ready".to_string(),
                status: "True".to_string(),
                ..Default::default()
            });
        n
    }

    fn labelled(labels: &[(&str, &str)]) -> NodeInfo {
        let mut n = node("n1");
        n.metadata.get_or_insert_with(ObjectMeta::default).labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NodeInfo::new(n)
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn with_required(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_and_cordon() {
        let spec = PodSpec::default();
        assert!(run(node_ready, &spec, &NodeInfo::new(ready(node("a")))).is_ok());
        assert_eq!(
            run(node_ready, &spec, &NodeInfo::new(node("a"))),
            Err(vec!["node(s) were not ready".to_string()])
        );
        let mut n = node("a");
        n.spec = Some(NodeSpec {
            unschedulable: true,
            ..Default::default()
        });
        assert_eq!(
            run(node_unschedulable, &spec, &NodeInfo::new(n)),
            Err(vec!["node(s) were unschedulable".to_string()])
        );
        assert!(run(node_unschedulable, &spec, &NodeInfo::new(node("a"))).is_ok());
    }

    #[test]
    fn resources_name_every_shortage() {
        let mut info = NodeInfo::new(node("a")); // 4 cpu, 8Gi, 110 pods
        let big = PodSpec {
            containers: vec![container("3", "7Gi")],
            ..Default::default()
        };
        assert!(run(resources_fit, &big, &info).is_ok());
        let pod = Pod {
            spec: Some(big.clone()),
            metadata: Some(ObjectMeta {
                uid: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        info.add_pod(std::sync::Arc::new(PodInfo::new(&pod)));
        assert_eq!(
            run(resources_fit, &big, &info),
            Err(vec![
                "Insufficient cpu".to_string(),
                "Insufficient memory".to_string()
            ])
        );
        // Requests of nothing fit anywhere with room for a pod.
        assert!(run(resources_fit, &PodSpec::default(), &info).is_ok());
        info.allocatable.pods = 1;
        assert_eq!(
            run(resources_fit, &PodSpec::default(), &info),
            Err(vec!["Too many pods".to_string()])
        );
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let info = labelled(&[("disk", "ssd"), ("zone", "a")]);
        let mut spec = PodSpec {
            node_selector: HashMap::from([("disk".into(), "ssd".into())]),
            ..Default::default()
        };
        assert!(run(node_affinity, &spec, &info).is_ok());
        spec.node_selector.insert("zone".into(), "b".into());
        assert_eq!(
            run(node_affinity, &spec, &info),
            Err(vec![
                "node(s) didn't match Pod's node affinity/selector".to_string()
            ])
        );
    }

    #[test]
    fn affinity_operators() {
        let info = labelled(&[("disk", "ssd"), ("cores", "8")]);
        let ok = |r: NodeSelectorRequirement| {
            run(
                node_affinity,
                &with_required(vec![NodeSelectorTerm {
                    match_expressions: vec![r],
                    ..Default::default()
                }]),
                &info,
            )
            .is_ok()
        };
        assert!(ok(req("disk", "In", &["hdd", "ssd"])));
        assert!(!ok(req("disk", "In", &["hdd"])));
        assert!(ok(req("disk", "NotIn", &["hdd"])));
        assert!(!ok(req("disk", "NotIn", &["ssd"])));
        assert!(ok(req("gpu", "NotIn", &["x"])));
        assert!(ok(req("disk", "Exists", &[])));
        assert!(!ok(req("gpu", "Exists", &[])));
        assert!(ok(req("gpu", "DoesNotExist", &[])));
        assert!(!ok(req("disk", "DoesNotExist", &[])));
        assert!(ok(req("cores", "Gt", &["4"])));
        assert!(!ok(req("cores", "Gt", &["8"])));
        assert!(ok(req("cores", "Lt", &["16"])));
        assert!(!ok(req("disk", "Lt", &["16"])));
        assert!(!ok(req("cores", "Bogus", &["1"])));
    }

    #[test]
    fn affinity_terms_are_ored_and_match_fields_name() {
        let info = labelled(&[("disk", "ssd")]);
        let by_name = |names: &[&str], op: &str| NodeSelectorTerm {
            match_fields: vec![req("metadata.name", op, names)],
            ..Default::default()
        };
        assert!(
            run(
                node_affinity,
                &with_required(vec![by_name(&["n1"], "In")]),
                &info
            )
            .is_ok()
        );
        assert!(
            run(
                node_affinity,
                &with_required(vec![by_name(&["n1"], "NotIn")]),
                &info
            )
            .is_err()
        );
        let miss = NodeSelectorTerm {
            match_expressions: vec![req("disk", "In", &["hdd"])],
            ..Default::default()
        };
        assert!(run(node_affinity, &with_required(vec![miss.clone()]), &info).is_err());
        assert!(
            run(
                node_affinity,
                &with_required(vec![miss, by_name(&["n1"], "In")]),
                &info
            )
            .is_ok()
        );
        // An empty term matches nothing.
        assert!(
            run(
                node_affinity,
                &with_required(vec![NodeSelectorTerm::default()]),
                &info
            )
            .is_err()
        );
    }

    #[test]
    fn taints_need_tolerations_except_prefer_no_schedule() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: v.into(),
            effect: e.into(),
            ..Default::default()
        };
        let mut n = node("a");
        n.spec = Some(NodeSpec {
            taints: vec![
                taint("dedicated", "gpu", "NoSchedule"),
                taint("soft", "", "PreferNoSchedule"),
            ],
            ..Default::default()
        });
        let info = NodeInfo::new(n);
        assert_eq!(
            run(taint_toleration, &PodSpec::default(), &info),
            Err(vec![
                "node(s) had untolerated taint {dedicated: gpu}".to_string()
            ])
        );
        let tol = |k: &str, op: &str, v: &str, e: &str| Toleration {
            key: k.into(),
            operator: op.into(),
            value: v.into(),
            effect: e.into(),
            ..Default::default()
        };
        for t in [
            tol("dedicated", "Equal", "gpu", "NoSchedule"),
            tol("dedicated", "Exists", "", ""),
            tol("", "Exists", "", ""),
        ] {
            let spec = PodSpec {
                tolerations: vec![t.clone()],
                ..Default::default()
            };
            assert!(run(taint_toleration, &spec, &info).is_ok(), "{t:?}");
        }
        for t in [
            tol("dedicated", "Equal", "cpu", "NoSchedule"),
            tol("dedicated", "Exists", "", "NoExecute"),
        ] {
            let spec = PodSpec {
                tolerations: vec![t.clone()],
                ..Default::default()
            };
            assert!(run(taint_toleration, &spec, &info).is_err(), "{t:?}");
        }
        let mut n = node("b");
        n.spec = Some(NodeSpec {
            taints: vec![taint("evict", "", "NoExecute")],
            ..Default::default()
        });
        assert!(run(taint_toleration, &PodSpec::default(), &NodeInfo::new(n)).is_err());
    }

    #[test]
    fn host_ports_conflict_on_protocol_port_and_ip() {
        let port = |p: i32, proto: &str, ip: &str| ContainerPort {
            host_port: p,
            container_port: 80,
            protocol: proto.into(),
            host_ip: ip.into(),
            ..Default::default()
        };
        let spec_with = |ports: Vec<ContainerPort>| PodSpec {
            containers: vec![moor_api::core::v1::Container {
                ports,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut info = NodeInfo::new(node("a"));
        let bound = Pod {
            spec: Some(spec_with(vec![port(8080, "TCP", "10.0.0.1")])),
            metadata: Some(ObjectMeta {
                uid: "b".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        info.add_pod(std::sync::Arc::new(PodInfo::new(&bound)));
        assert!(run(node_ports, &spec_with(vec![port(8080, "", "")]), &info).is_err());
        assert!(
            run(
                node_ports,
                &spec_with(vec![port(8080, "TCP", "10.0.0.1")]),
                &info
            )
            .is_err()
        );
        assert!(
            run(
                node_ports,
                &spec_with(vec![port(8080, "TCP", "10.0.0.2")]),
                &info
            )
            .is_ok()
        );
        assert!(run(node_ports, &spec_with(vec![port(8080, "UDP", "")]), &info).is_ok());
        assert!(run(node_ports, &spec_with(vec![port(8081, "TCP", "")]), &info).is_ok());
        assert!(run(node_ports, &spec_with(vec![port(0, "TCP", "")]), &info).is_ok());
    }
}
