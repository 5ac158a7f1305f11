//! What a node's credentials may do: Kubernetes' node authorizer, in the
//! small. A caller is a node when its certificate names `system:node:NAME`
//! in `system:nodes` (what `moor join` and `moor up` give node agents).
//!
//! A node reads what running its pods needs (nodes, pods, services,
//! endpoints, config maps, namespaces, leases, events, the proxy's stream)
//! and, of the secrets, only those its own pods use (env, volumes, image
//! pulls). It writes only its
//! own Node and Lease, the status of pods bound to it, its mirror pods
//! and events. Everything else is PERMISSION_DENIED. Methods are checked
//! before any service runs ([`method_allowed`]); the objects a write
//! touches, by the service ([`NodeScoped`]).

use moor_api::core::v1::{ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service};
use moor_api::{Resource, apps, coordination, core};
use moor_rpc::Caller;
use tonic::Status;

/// The group every node's certificate names.
pub(crate) const NODES_GROUP: &str = "system:nodes";
/// Where node agents keep their Leases (the node agent's `LEASE_NAMESPACE`).
const LEASE_NAMESPACE: &str = "moor-system";

/// A write a service is about to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Create,
    Update,
    UpdateStatus,
    Delete,
}

/// The node `caller` acts for, if it is one.
pub(crate) fn node_of(caller: Option<&Caller>) -> Option<&str> {
    let caller = caller?;
    if !caller.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    caller.user.strip_prefix("system:node:")
}

/// Whether a node may call the method at `path` at all.
pub(crate) fn method_allowed(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    let read = matches!(method, "Get" | "List" | "Watch");
    match service {
        "moor.core.v1.Nodes" => read || matches!(method, "Create" | "Update" | "UpdateStatus"),
        "moor.core.v1.Pods" => {
            read || matches!(method, "Create" | "Update" | "UpdateStatus" | "Delete")
        }
        "moor.coordination.v1.Leases" => read || matches!(method, "Create" | "Update"),
        "moor.core.v1.Events" => read || matches!(method, "Create" | "Update"),
        // One secret at a time, and only those its pods use (checked by the service).
        "moor.core.v1.Secrets" => method == "Get",
        "moor.core.v1.Services"
        | "moor.core.v1.EndpointsService"
        | "moor.core.v1.ConfigMaps"
        | "moor.core.v1.Namespaces" => read,
        "moor.proxy.v1.ProxyConfig" => true,
        "moor.authentication.v1.Authentication" => method == "WhoAmI",
        // Its own name only, checked by the service: a renewal.
        "moor.authentication.v1.Certificates" => method == "SignNode",
        _ => false,
    }
}

/// A refusal naming the node and what it tried.
pub(crate) fn denied(node: &str, what: impl std::fmt::Display) -> Status {
    Status::permission_denied(format!("node {node} may not {what}"))
}

/// The writes a node may make to objects of a kind; by default none.
pub(crate) trait NodeScoped: moor_api::Resource {
    /// Whether `node` may make `write` to an object that is `stored` now and
    /// `new` after (absent for a create, respectively a delete).
    fn node_may(_node: &str, _write: Write, _new: Option<&Self>, _stored: Option<&Self>) -> bool {
        false
    }
}

fn name_of<K: moor_api::Resource>(object: Option<&K>) -> Option<&str> {
    object.map(|o| o.meta().name.as_str())
}

impl NodeScoped for Node {
    fn node_may(node: &str, write: Write, new: Option<&Self>, stored: Option<&Self>) -> bool {
        write != Write::Delete
            && name_of(new) == Some(node)
            && stored.is_none_or(|s| s.meta().name == node)
    }
}

impl NodeScoped for coordination::v1::Lease {
    fn node_may(node: &str, write: Write, new: Option<&Self>, _stored: Option<&Self>) -> bool {
        write != Write::Delete
            && new.is_some_and(|l| l.meta().name == node && l.meta().namespace == LEASE_NAMESPACE)
    }
}

fn bound_to(pod: Option<&Pod>, node: &str) -> bool {
    pod.and_then(|p| p.spec.as_ref())
        .is_some_and(|s| s.node_name == node)
}

fn is_mirror(pod: Option<&Pod>) -> bool {
    pod.is_some_and(|p| {
        p.meta()
            .annotations
            .contains_key(moor_api::well_known::MIRROR_ANNOTATION)
    })
}

impl NodeScoped for Pod {
    fn node_may(node: &str, write: Write, new: Option<&Self>, stored: Option<&Self>) -> bool {
        match write {
            // Status of pods bound to it; its pods' deletion once they stopped.
            Write::UpdateStatus | Write::Delete => bound_to(stored, node),
            // Mirror pods of its static pods, bound to itself.
            Write::Create => is_mirror(new) && bound_to(new, node),
            Write::Update => {
                is_mirror(stored) && bound_to(stored, node) && is_mirror(new) && bound_to(new, node)
            }
        }
    }
}

impl NodeScoped for Event {
    fn node_may(_node: &str, write: Write, _new: Option<&Self>, _stored: Option<&Self>) -> bool {
        matches!(write, Write::Create | Write::Update)
    }
}

impl NodeScoped for Namespace {}
impl NodeScoped for Service {}
impl NodeScoped for Endpoints {}
impl NodeScoped for ConfigMap {}
impl NodeScoped for Secret {}
impl NodeScoped for core::v1::ReplicationController {}
impl NodeScoped for apps::v1::ReplicaSet {}
impl NodeScoped for apps::v1::Deployment {}

/// Whether `pod` uses the secret `name` (its namespace is the pod's).
pub(crate) fn uses_secret(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let in_volumes = spec
        .volumes
        .iter()
        .any(|v| v.secret.as_ref().is_some_and(|s| s.secret_name == name));
    let in_env = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .flat_map(|c| &c.env)
        .filter_map(|e| e.value_from.as_ref())
        .any(|from| from.secret_key_ref.as_ref().is_some_and(|s| s.name == name));
    let to_pull = spec.image_pull_secrets.iter().any(|r| r.name == name);
    in_volumes || in_env || to_pull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_calls_what_running_pods_needs_and_nothing_else() {
        for path in [
            "/moor.core.v1.Pods/Watch",
            "/moor.core.v1.Pods/UpdateStatus",
            "/moor.core.v1.Nodes/UpdateStatus",
            "/moor.coordination.v1.Leases/Update",
            "/moor.core.v1.Secrets/Get",
            "/moor.proxy.v1.ProxyConfig/Stream",
            "/moor.core.v1.Events/Create",
        ] {
            assert!(method_allowed(path), "{path}");
        }
        for path in [
            "/moor.core.v1.Secrets/List",
            "/moor.core.v1.Secrets/Watch",
            "/moor.core.v1.Secrets/Create",
            "/moor.core.v1.Pods/Bind",
            "/moor.core.v1.Pods/Exec",
            "/moor.core.v1.Pods/Logs",
            "/moor.core.v1.Nodes/Delete",
            "/moor.apps.v1.Deployments/List",
            "/moor.core.v1.Namespaces/Delete",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "nonsense",
        ] {
            assert!(!method_allowed(path), "{path}");
        }
    }

    fn pod(node: &str, mirror: bool) -> Pod {
        let mut pod = Pod::default();
        pod.meta_mut().name = "p".into();
        if mirror {
            pod.meta_mut().annotations.insert(
                moor_api::well_known::MIRROR_ANNOTATION.to_string(),
                "x".into(),
            );
        }
        pod.spec = Some(core::v1::PodSpec {
            node_name: node.into(),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn a_node_writes_only_its_own_objects() {
        let mut mine = Node::default();
        mine.meta_mut().name = "a".into();
        let mut other = Node::default();
        other.meta_mut().name = "b".into();
        assert!(Node::node_may(
            "a",
            Write::UpdateStatus,
            Some(&mine),
            Some(&mine)
        ));
        assert!(!Node::node_may(
            "a",
            Write::UpdateStatus,
            Some(&other),
            Some(&other)
        ));
        assert!(!Node::node_may(
            "a",
            Write::Update,
            Some(&mine),
            Some(&other)
        ));
        assert!(!Node::node_may("a", Write::Delete, None, Some(&mine)));

        let (on_a, on_b) = (pod("a", false), pod("b", false));
        assert!(Pod::node_may(
            "a",
            Write::UpdateStatus,
            Some(&on_a),
            Some(&on_a)
        ));
        assert!(
            !Pod::node_may("a", Write::UpdateStatus, Some(&on_a), Some(&on_b)),
            "the stored binding counts"
        );
        assert!(Pod::node_may("a", Write::Delete, None, Some(&on_a)));
        assert!(!Pod::node_may("a", Write::Delete, None, Some(&on_b)));
        assert!(
            !Pod::node_may("a", Write::Create, Some(&on_a), None),
            "only mirror pods"
        );
        assert!(Pod::node_may(
            "a",
            Write::Create,
            Some(&pod("a", true)),
            None
        ));
        assert!(!Pod::node_may(
            "a",
            Write::Create,
            Some(&pod("b", true)),
            None
        ));
        assert!(!ConfigMap::node_may(
            "a",
            Write::Create,
            Some(&ConfigMap::default()),
            None
        ));
    }

    #[test]
    fn a_pod_uses_its_image_pull_secrets() {
        let mut with = pod("a", false);
        if let Some(spec) = with.spec.as_mut() {
            spec.image_pull_secrets = vec![core::v1::LocalObjectReference {
                name: "regcred".into(),
            }];
        }
        assert!(uses_secret(&with, "regcred"));
        assert!(!uses_secret(&with, "other"));
        assert!(!uses_secret(&pod("a", false), "regcred"));
    }
}
