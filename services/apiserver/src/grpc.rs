//! The gRPC services: each kind's generated service trait, implemented once
//! by a macro that hands every call to that kind's registry.

use std::sync::Arc;

use futures::stream::BoxStream;
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListRequest, Scale, WatchRequest};
use moor_api::{WatchEvent, apps, coordination, core};
use tonic::{Request, Response, Status};

use crate::pod_io::PodIo;
use crate::registry::{Part, Registry};

/// The gRPC face of one kind's registry.
pub struct Api<K> {
    registry: Arc<Registry<K>>,
    /// Pods only: the relay of logs and exec to node agents.
    pod_io: Option<Arc<PodIo>>,
}

impl<K> Api<K> {
    /// Serves `registry`.
    pub fn new(registry: Arc<Registry<K>>) -> Self {
        Self {
            registry,
            pod_io: None,
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

type WatchStream<K> = BoxStream<'static, Result<WatchEvent<K>, Status>>;

macro_rules! serve {
    ($kind:ty, $trait:path $(, status = $status:tt)? $(, scale = $scale:tt)? $(, bind = $bind:tt)?) => {
        #[tonic::async_trait]
        impl $trait for Api<$kind> {
            async fn create(&self, req: Request<$kind>) -> Result<Response<$kind>, Status> {
                Ok(Response::new(self.registry.create(req.into_inner()).await?))
            }

            async fn get(&self, req: Request<GetRequest>) -> Result<Response<$kind>, Status> {
                Ok(Response::new(self.registry.get(req.get_ref()).await?))
            }

            async fn list(&self, req: Request<ListRequest>) -> Result<Response<<$kind as moor_api::Resource>::List>, Status> {
                Ok(Response::new(self.registry.list(req.get_ref()).await?))
            }

            async fn update(&self, req: Request<$kind>) -> Result<Response<$kind>, Status> {
                Ok(Response::new(self.registry.update(req.into_inner(), Part::Main).await?))
            }

            async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<$kind>, Status> {
                Ok(Response::new(self.registry.delete(req.get_ref()).await?))
            }

            type WatchStream = WatchStream<$kind>;

            async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
                Ok(Response::new(self.registry.watch(req.get_ref()).await?))
            }

            $(
                #[doc = concat!("Status subresource: ", stringify!($status))]
                async fn update_status(&self, req: Request<$kind>) -> Result<Response<$kind>, Status> {
                    Ok(Response::new(self.registry.update(req.into_inner(), Part::Status).await?))
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
