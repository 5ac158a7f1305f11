//! The gRPC services: each kind's generated service trait, implemented once
//! by a macro that hands every call to that kind's registry.

use std::sync::Arc;

use futures::stream::BoxStream;
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListRequest, Scale, WatchRequest};
use moor_api::{WatchEvent, apps, coordination, core};
use tonic::{Request, Response, Status};

use crate::cache::Cache;
use crate::node_access::{NodeScoped, Write, denied, node_of};
use crate::pod_io::PodIo;
use crate::registry::{Part, Registry};

/// The gRPC face of one kind's registry.
pub struct Api<K> {
    registry: Arc<Registry<K>>,
    /// Pods only: the relay of logs and exec to node agents.
    pod_io: Option<Arc<PodIo>>,
    /// Secrets only: the pods, to tell which secrets a node's pods use.
    pods: Option<Arc<Cache<core::v1::Pod>>>,
}

impl<K> Api<K> {
    /// Serves `registry`.
    pub fn new(registry: Arc<Registry<K>>) -> Self {
        Self {
            registry,
            pod_io: None,
            pods: None,
        }
    }

    /// Lets a node read only the objects `pods` bound to it use (secrets).
    pub fn readable_by_nodes_through(mut self, pods: Arc<Cache<core::v1::Pod>>) -> Self {
        self.pods = Some(pods);
        self
    }

    /// Whether `node` may read the object `namespace/name`: for secrets,
    /// those a pod bound to it uses.
    fn node_may_get(&self, node: &str, namespace: &str, name: &str) -> Result<(), Status> {
        let Some(pods) = &self.pods else {
            return Ok(());
        };
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let used = pods.any_under(&format!("/registry/pods/{namespace}/"), |pod| {
            pod.spec.as_ref().is_some_and(|s| s.node_name == node)
                && crate::node_access::uses_secret(pod, name)
        });
        if used {
            Ok(())
        } else {
            Err(denied(
                node,
                format_args!("read secret {namespace}/{name}: no pod bound to it uses it"),
            ))
        }
    }

    /// Serves pods' logs and exec through `io`.
    pub fn with_pod_io(mut self, io: Arc<PodIo>) -> Self {
        self.pod_io = Some(io);
        self
    }

    fn pod_io(&self) -> Result<&PodIo, Status> {
        self.pod_io
            .as_deref()
            .ok_or_else(|| Status::unimplemented("this apiserver does not relay logs and exec"))
    }
}

impl<K: crate::kinds::Kind + NodeScoped> Api<K> {
    /// The stored object `namespace/name`.
    async fn stored(&self, namespace: &str, name: &str) -> Result<K, Status> {
        let request = GetRequest {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        Ok(self.registry.get(&request).await?)
    }

    /// Refuses `write` by `node` unless the kind allows it on these objects;
    /// an update is judged against the stored object too.
    async fn node_write(
        &self,
        node: &str,
        write: Write,
        new: Option<&K>,
        stored: Option<&K>,
    ) -> Result<(), Status> {
        let fetched;
        let stored = match (stored, new, write) {
            (Some(stored), _, _) => Some(stored),
            (None, Some(new), Write::Update | Write::UpdateStatus) => {
                let meta = new.meta();
                fetched = self.stored(&meta.namespace, &meta.name).await?;
                Some(&fetched)
            }
            _ => None,
        };
        if K::node_may(node, write, new, stored) {
            return Ok(());
        }
        let meta = new.or(stored).map(moor_api::Resource::meta);
        let name = meta.map_or(String::new(), |m| {
            if m.namespace.is_empty() {
                m.name.clone()
            } else {
                format!("{}/{}", m.namespace, m.name)
            }
        });
        let verb = match write {
            Write::Create => "create",
            Write::Update => "update",
            Write::UpdateStatus => "update the status of",
            Write::Delete => "delete",
        };
        Err(denied(node, format_args!("{verb} {} {name}", K::KIND)))
    }
}

type WatchStream<K> = BoxStream<'static, Result<WatchEvent<K>, Status>>;

macro_rules! serve {
    ($kind:ty, $trait:path $(, status = $status:tt)? $(, scale = $scale:tt)? $(, bind = $bind:tt)?) => {
        #[tonic::async_trait]
        impl $trait for Api<$kind> {
            async fn create(&self, req: Request<$kind>) -> Result<Response<$kind>, Status> {
                let caller = moor_rpc::caller(&req);
                let object = req.into_inner();
                if let Some(node) = node_of(caller.as_ref()) {
                    self.node_write(node, Write::Create, Some(&object), None).await?;
                }
                Ok(Response::new(self.registry.create(object).await?))
            }

            async fn get(&self, req: Request<GetRequest>) -> Result<Response<$kind>, Status> {
                if let Some(node) = node_of(moor_rpc::caller(&req).as_ref()) {
                    self.node_may_get(node, &req.get_ref().namespace, &req.get_ref().name)?;
                }
                Ok(Response::new(self.registry.get(req.get_ref()).await?))
            }

            async fn list(&self, req: Request<ListRequest>) -> Result<Response<<$kind as moor_api::Resource>::List>, Status> {
                Ok(Response::new(self.registry.list(req.get_ref()).await?))
            }

            async fn update(&self, req: Request<$kind>) -> Result<Response<$kind>, Status> {
                let caller = moor_rpc::caller(&req);
                let object = req.into_inner();
                if let Some(node) = node_of(caller.as_ref()) {
                    self.node_write(node, Write::Update, Some(&object), None).await?;
                }
                Ok(Response::new(self.registry.update(object, Part::Main).await?))
            }

            async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<$kind>, Status> {
                if let Some(node) = node_of(moor_rpc::caller(&req).as_ref()) {
                    let stored = self.stored(&req.get_ref().namespace, &req.get_ref().name).await?;
                    self.node_write(node, Write::Delete, None, Some(&stored)).await?;
                }
                Ok(Response::new(self.registry.delete(req.get_ref()).await?))
            }

            type WatchStream = WatchStream<$kind>;

            async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
                Ok(Response::new(self.registry.watch(req.get_ref()).await?))
            }

            $(
                #[doc = concat!("Status subresource: ", stringify!($status))]
                async fn update_status(&self, req: Request<$kind>) -> Result<Response<$kind>, Status> {
                    let caller = moor_rpc::caller(&req);
                    let object = req.into_inner();
                    if let Some(node) = node_of(caller.as_ref()) {
                        self.node_write(node, Write::UpdateStatus, Some(&object), None).await?;
                    }
                    Ok(Response::new(self.registry.update(object, Part::Status).await?))
                }
            )?

            $(
                #[doc = concat!("Scale subresource: ", stringify!($scale))]
                async fn get_scale(&self, req: Request<GetRequest>) -> Result<Response<Scale>, Status> {
                    Ok(Response::new(self.registry.get_scale(req.get_ref()).await?))
                }

                async fn update_scale(&self, req: Request<Scale>) -> Result<Response<Scale>, Status> {
                    Ok(Response::new(self.registry.update_scale(req.get_ref()).await?))
                }
            )?

            $(
                #[doc = concat!("Bind: ", stringify!($bind))]
                async fn bind(&self, req: Request<core::v1::Binding>) -> Result<Response<core::v1::Pod>, Status> {
                    Ok(Response::new(self.registry.bind(req.get_ref()).await?))
                }

                type LogsStream = BoxStream<'static, Result<core::v1::PodLogChunk, Status>>;

                async fn logs(&self, req: Request<core::v1::PodLogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
                    Ok(Response::new(self.pod_io()?.logs(&self.registry, req.into_inner()).await?))
                }

                type ExecStream = BoxStream<'static, Result<core::v1::PodExecResponse, Status>>;

                async fn exec(&self, req: Request<tonic::Streaming<core::v1::PodExecRequest>>) -> Result<Response<Self::ExecStream>, Status> {
                    Ok(Response::new(self.pod_io()?.exec(&self.registry, req.into_inner()).await?))
                }
            )?
        }
    };
}

serve!(
    core::v1::Namespace,
    core::v1::namespaces_server::Namespaces,
    status = yes
);
serve!(core::v1::Node, core::v1::nodes_server::Nodes, status = yes);
serve!(
    core::v1::Pod,
    core::v1::pods_server::Pods,
    status = yes,
    bind = yes
);
serve!(
    core::v1::Service,
    core::v1::services_server::Services,
    status = yes
);
serve!(
    core::v1::Endpoints,
    core::v1::endpoints_service_server::EndpointsService
);
serve!(
    core::v1::ConfigMap,
    core::v1::config_maps_server::ConfigMaps
);
serve!(core::v1::Secret, core::v1::secrets_server::Secrets);
serve!(core::v1::Event, core::v1::events_server::Events);
serve!(
    core::v1::ReplicationController,
    core::v1::replication_controllers_server::ReplicationControllers,
    status = yes,
    scale = yes
);
serve!(
    apps::v1::ReplicaSet,
    apps::v1::replica_sets_server::ReplicaSets,
    status = yes,
    scale = yes
);
serve!(
    apps::v1::Deployment,
    apps::v1::deployments_server::Deployments,
    status = yes,
    scale = yes
);
serve!(
    coordination::v1::Lease,
    coordination::v1::leases_server::Leases
);
