//! The `Resource` trait: what generic code needs to know about a kind.

use crate::meta::v1::ObjectMeta;
use crate::{apps, coordination, core};

/// Whether a kind has a status written apart from its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    /// A `status` field written only through update-status.
    Subresource,
    /// No status: the whole object is written by update.
    None,
}

/// An API kind: a top-level proto message with metadata, stored by the
/// apiserver and served by a `<Kinds>` gRPC service.
pub trait Resource:
    prost::Message + Default + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// apiVersion in manifests, e.g. "apps/v1".
    const API_VERSION: &'static str;
    /// Kind name, e.g. "Deployment".
    const KIND: &'static str;
    /// Lowercase plural, e.g. "deployments": the storage prefix and CLI name.
    const PLURAL: &'static str;
    /// Whether objects live in a namespace.
    const NAMESPACED: bool;
    /// Fully qualified gRPC service, e.g. "moor.apps.v1.Deployments".
    const SERVICE: &'static str;
    /// Fully qualified proto message, e.g. "moor.apps.v1.Deployment".
    const MESSAGE: &'static str;
    /// Whether the kind has a status subresource.
    const STATUS: StatusKind;

    /// The kind's list message.
    type List: prost::Message + Default + Send + 'static;

    /// The object's metadata (an empty one when unset).
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, created when unset.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Sets apiVersion and kind to this kind's.
    fn set_type_meta(&mut self);
    /// Replaces this object's status with `from`'s (no-op without status).
    fn copy_status_from(&mut self, from: &Self);
    /// Clears the status (no-op without status).
    fn clear_status(&mut self);
    /// Builds a list message.
    fn into_list(items: Vec<Self>, metadata: crate::meta::v1::ListMeta) -> Self::List;
    /// Takes the items and metadata (resourceVersion, continue token) out
    /// of a list message.
    fn from_list(list: Self::List) -> (Vec<Self>, crate::meta::v1::ListMeta);

    /// The value of a field for field selectors: `metadata.name` and
    /// `metadata.namespace` for every kind, more for some.
    fn field(&self, path: &str) -> Option<String> {
        match path {
            "metadata.name" => Some(self.meta().name.clone()),
            "metadata.namespace" => Some(self.meta().namespace.clone()),
            _ => self.extra_field(path),
        }
    }

    /// Kind-specific fields for field selectors.
    fn extra_field(&self, _path: &str) -> Option<String> {
        None
    }

    /// The field selector keys this kind supports.
    fn field_keys() -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace"]
    }

    /// The object without metadata and status: equal for two objects exactly
    /// when their desired state is equal (drives `metadata.generation`).
    fn desired_state(&self) -> Self {
        let mut copy = self.clone();
        copy.clear_status();
        *copy.meta_mut() = ObjectMeta::default();
        copy
    }
}

fn empty_meta() -> &'static ObjectMeta {
    static EMPTY: std::sync::OnceLock<ObjectMeta> = std::sync::OnceLock::new();
    EMPTY.get_or_init(ObjectMeta::default)
}

macro_rules! resource {
    (
        $ty:ty, $list:ty, group = $group:literal, api_version = $api:literal,
        kind = $kind:literal, plural = $plural:literal, namespaced = $ns:literal,
        service = $svc:literal, status = $status:ident
        $(, extra = { $($extra:tt)* })?
    ) => {
        impl Resource for $ty {
            const API_VERSION: &'static str = $api;
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            const NAMESPACED: bool = $ns;
            const SERVICE: &'static str = concat!("moor.", $group, ".v1.", $svc);
            const MESSAGE: &'static str = concat!("moor.", $group, ".v1.", $kind);
            const STATUS: StatusKind = resource!(@status_kind $status);
            type List = $list;

            fn meta(&self) -> &ObjectMeta {
                self.metadata.as_ref().unwrap_or_else(|| empty_meta())
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                self.metadata.get_or_insert_with(ObjectMeta::default)
            }

            fn set_type_meta(&mut self) {
                if self.api_version != $api {
                    self.api_version = $api.to_string();
                }
                if self.kind != $kind {
                    self.kind = $kind.to_string();
                }
            }

            fn copy_status_from(&mut self, _from: &Self) {
                resource!(@copy $status self _from);
            }

            fn clear_status(&mut self) {
                resource!(@clear $status self);
            }

            fn into_list(items: Vec<Self>, metadata: crate::meta::v1::ListMeta) -> Self::List {
                <$list>::from_parts(items, metadata)
            }

            fn from_list(list: Self::List) -> (Vec<Self>, crate::meta::v1::ListMeta) {
                (list.items, list.metadata.unwrap_or_default())
            }

            $($($extra)*)?
        }

        impl $list {
            fn from_parts(items: Vec<$ty>, metadata: crate::meta::v1::ListMeta) -> Self {
                Self {
                    metadata: Some(metadata),
                    items,
                }
            }
        }

    };
    (@status_kind status) => { StatusKind::Subresource };
    (@status_kind none) => { StatusKind::None };
    (@copy status $self:ident $from:ident) => { $self.status = $from.status.clone() };
    (@copy none $self:ident $from:ident) => { () };
    (@clear status $self:ident) => { $self.status = None };
    (@clear none $self:ident) => { () };
}

resource!(
    core::v1::Namespace,
    core::v1::NamespaceList,
    group = "core",
    api_version = "v1",
    kind = "Namespace",
    plural = "namespaces",
    namespaced = false,
    service = "Namespaces",
    status = status,
    extra = {
        fn extra_field(&self, path: &str) -> Option<String> {
            match path {
                "status.phase" => Some(
                    self.status
                        .as_ref()
                        .map(|s| s.phase.clone())
                        .unwrap_or_default(),
                ),
                _ => None,
            }
        }
        fn field_keys() -> &'static [&'static str] {
            &["metadata.name", "metadata.namespace", "status.phase"]
        }
    }
);
resource!(
    core::v1::Node,
    core::v1::NodeList,
    group = "core",
    api_version = "v1",
    kind = "Node",
    plural = "nodes",
    namespaced = false,
    service = "Nodes",
    status = status,
    extra = {
        fn extra_field(&self, path: &str) -> Option<String> {
            match path {
                "spec.unschedulable" => Some(
                    self.spec
                        .as_ref()
                        .is_some_and(|s| s.unschedulable)
                        .to_string(),
                ),
                _ => None,
            }
        }
        fn field_keys() -> &'static [&'static str] {
            &["metadata.name", "metadata.namespace", "spec.unschedulable"]
        }
    }
);
resource!(
    core::v1::Pod,
    core::v1::PodList,
    group = "core",
    api_version = "v1",
    kind = "Pod",
    plural = "pods",
    namespaced = true,
    service = "Pods",
    status = status,
    extra = {
        fn extra_field(&self, path: &str) -> Option<String> {
            match path {
                "spec.nodeName" => Some(
                    self.spec
                        .as_ref()
                        .map(|s| s.node_name.clone())
                        .unwrap_or_default(),
                ),
                "status.phase" => Some(
                    self.status
                        .as_ref()
                        .map(|s| s.phase.clone())
                        .unwrap_or_default(),
                ),
                _ => None,
            }
        }
        fn field_keys() -> &'static [&'static str] {
            &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "status.phase",
            ]
        }
    }
);
resource!(
    core::v1::Service,
    core::v1::ServiceList,
    group = "core",
    api_version = "v1",
    kind = "Service",
    plural = "services",
    namespaced = true,
    service = "Services",
    status = status
);
resource!(
    core::v1::Endpoints,
    core::v1::EndpointsList,
    group = "core",
    api_version = "v1",
    kind = "Endpoints",
    plural = "endpoints",
    namespaced = true,
    service = "EndpointsService",
    status = none
);
resource!(
    core::v1::ConfigMap,
    core::v1::ConfigMapList,
    group = "core",
    api_version = "v1",
    kind = "ConfigMap",
    plural = "configmaps",
    namespaced = true,
    service = "ConfigMaps",
    status = none
);
resource!(
    core::v1::Secret,
    core::v1::SecretList,
    group = "core",
    api_version = "v1",
    kind = "Secret",
    plural = "secrets",
    namespaced = true,
    service = "Secrets",
    status = none
);
resource!(
    core::v1::Event,
    core::v1::EventList,
    group = "core",
    api_version = "v1",
    kind = "Event",
    plural = "events",
    namespaced = true,
    service = "Events",
    status = none
);
resource!(
    core::v1::ReplicationController,
    core::v1::ReplicationControllerList,
    group = "core",
    api_version = "v1",
    kind = "ReplicationController",
    plural = "replicationcontrollers",
    namespaced = true,
    service = "ReplicationControllers",
    status = status
);
resource!(
    apps::v1::ReplicaSet,
    apps::v1::ReplicaSetList,
    group = "apps",
    api_version = "apps/v1",
    kind = "ReplicaSet",
    plural = "replicasets",
    namespaced = true,
    service = "ReplicaSets",
    status = status
);
resource!(
    apps::v1::Deployment,
    apps::v1::DeploymentList,
    group = "apps",
    api_version = "apps/v1",
    kind = "Deployment",
    plural = "deployments",
    namespaced = true,
    service = "Deployments",
    status = status
);
resource!(
    coordination::v1::Lease,
    coordination::v1::LeaseList,
    group = "coordination",
    api_version = "coordination.k8s.io/v1",
    kind = "Lease",
    plural = "leases",
    namespaced = true,
    service = "Leases",
    status = none
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants of every kind agree with the resource options in proto/.
    #[test]
    fn constants_match_descriptors() {
        fn check<K: Resource>() {
            let pool = crate::descriptor_pool();
            let message = pool.get_message_by_name(K::MESSAGE).expect(K::MESSAGE);
            let service = pool.get_service_by_name(K::SERVICE).expect(K::SERVICE);
            assert!(service.methods().any(|m| m.name() == "Watch"));
            let options = message.options();
            let ext = pool
                .get_extension_by_name("moor.meta.v1.resource")
                .expect("extension");
            let value = options.get_extension(&ext);
            let opts = value.as_message().expect("resource option set");
            let get = |f: &str| opts.get_field_by_name(f).expect(f).into_owned();
            assert_eq!(get("kind").as_str(), Some(K::KIND));
            assert_eq!(get("plural").as_str(), Some(K::PLURAL));
            assert_eq!(get("api_version").as_str(), Some(K::API_VERSION));
            assert_eq!(get("namespaced").as_bool(), Some(K::NAMESPACED));
            assert_eq!(get("service").as_str(), Some(K::SERVICE));
            let has_update_status = service.methods().any(|m| m.name() == "UpdateStatus");
            assert_eq!(
                has_update_status,
                K::STATUS == StatusKind::Subresource,
                "{}",
                K::KIND
            );
        }
        check::<core::v1::Namespace>();
        check::<core::v1::Node>();
        check::<core::v1::Pod>();
        check::<core::v1::Service>();
        check::<core::v1::Endpoints>();
        check::<core::v1::ConfigMap>();
        check::<core::v1::Secret>();
        check::<core::v1::Event>();
        check::<core::v1::ReplicationController>();
        check::<apps::v1::ReplicaSet>();
        check::<apps::v1::Deployment>();
        check::<coordination::v1::Lease>();
    }
}
