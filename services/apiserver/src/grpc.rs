//! The gRPC services: each kind's generated service trait, implemented once
//! by a macro that hands every call to that kind's registry.

use std::sync::Arc;

use futures::stream::BoxStream;
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListRequest, Scale, WatchRequest};
use moor_api::{WatchEvent, apps, coordination, core};
use tonic::{Request, Response, Status};

use crate::registry::{Part, Registry};

/// The gRPC face of one kind's registry.
pub struct Api<K> {
    registry: Arc<Registry<K>>,
}

impl<K> Api<K> {
    /// Serves `registry`.
    pub fn new(registry: Arc<Registry<K>>) -> Self {
        Self { registry }
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
