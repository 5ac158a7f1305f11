//! The scheduler's own gRPC service: `Plan`, a dry run of one decision, and
//! where the active scheduler says it serves it (the headless Service and
//! Endpoints `moor-system/moor-scheduler`, so `moorctl schedule --dry-run`
//! finds it).

use std::net::SocketAddr;

use moor_api::Resource;
use moor_api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service, ServicePort,
    ServiceSpec,
};
use moor_api::meta::v1::ObjectMeta;
use moor_api::scheduler::v1::scheduler_server::{Scheduler, SchedulerServer};
use moor_api::scheduler::v1::{NodePlan, PlanRequest, PlanResponse};
use moor_client::Client;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{Decision, plan, schedule, snapshot};

pub use moor_api::well_known::SCHEDULER_ENDPOINTS as PUBLISHED_AS;

/// Serves the Scheduler service on `listener` until `shutdown`.
pub async fn serve(client: Client, listener: TcpListener, shutdown: CancellationToken) {
    let mut server = match moor_rpc::Server::new() {
        Ok(server) => server,
        Err(err) => {
            tracing::error!(%err, "cannot build the scheduler's gRPC server");
            return;
        }
    };
    server
        .add(SchedulerServer::new(PlanService { client }))
        .await;
    if let Err(err) = server.serve(listener, shutdown).await {
        tracing::error!(%err, "the scheduler's gRPC server stopped");
    }
}

struct PlanService {
    client: Client,
}

#[tonic::async_trait]
impl Scheduler for PlanService {
    async fn plan(&self, req: Request<PlanRequest>) -> Result<Response<PlanResponse>, Status> {
        let req = req.into_inner();
        let mut pod = match (req.pod, req.name.as_str()) {
            (Some(pod), "") => pod,
            (None, "") => {
                return Err(Status::invalid_argument(
                    "name a pod (namespace, name) or give one inline (pod)",
                ));
            }
            (None, name) => {
                let namespace = if req.namespace.is_empty() {
                    "default"
                } else {
                    &req.namespace
                };
                self.client
                    .api::<Pod>()
                    .get(namespace, name)
                    .await
                    .map_err(|err| Status::not_found(err.to_string()))?
            }
            (Some(_), _) => {
                return Err(Status::invalid_argument(
                    "give either a pod's name or a pod inline, not both",
                ));
            }
        };
        if pod.meta().namespace.is_empty() {
            pod.meta_mut().namespace = "default".to_string();
        }
        let cache = snapshot(&self.client)
            .await
            .map_err(|err| Status::unavailable(err.to_string()))?;
        let verdicts = plan(&cache, &pod);
        let (node, message) = match schedule(&cache, &pod) {
            Decision::Bind(node) => (node, String::new()),
            Decision::Unschedulable(message) => (String::new(), message),
        };
        Ok(Response::new(PlanResponse {
            nodes: verdicts
                .into_iter()
                .map(|v| NodePlan {
                    node: v.node,
                    failed_filter: v.failed_filter.unwrap_or_default(),
                    reasons: v.reasons,
                    score: v.score,
                })
                .collect(),
            node,
            message,
        }))
    }
}

/// Writes the headless Service and the Endpoints naming `addr` as the
/// scheduler's service. Failures are logged: the scheduler schedules
/// without being findable.
pub async fn publish(client: &Client, addr: SocketAddr) {
    let (namespace, name) = PUBLISHED_AS;
    let meta = || {
        Some(ObjectMeta {
            name: name.to_string(),
            namespace: namespace.to_string(),
            ..Default::default()
        })
    };
    let port = i32::from(addr.port());
    let mut service = Service {
        metadata: meta(),
        spec: Some(ServiceSpec {
            cluster_ip: "None".to_string(),
            ports: vec![ServicePort {
                name: "grpc".to_string(),
                port,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    service.set_type_meta();
    let services = client.api::<Service>();
    match services.create(&service).await {
        Ok(_) | Err(moor_client::Error::AlreadyExists(_)) => {}
        Err(err) => tracing::warn!(%err, "cannot publish the scheduler's Service"),
    }
    let mut endpoints = Endpoints {
        metadata: meta(),
        subsets: vec![EndpointSubset {
            addresses: vec![EndpointAddress {
                ip: addr.ip().to_string(),
                ..Default::default()
            }],
            ports: vec![EndpointPort {
                name: "grpc".to_string(),
                port,
                protocol: "TCP".to_string(),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    endpoints.set_type_meta();
    let api = client.api::<Endpoints>();
    let written = match api.get(namespace, name).await {
        Ok(current) => {
            endpoints.meta_mut().resource_version = current.meta().resource_version.clone();
            api.update(&endpoints).await.map(drop)
        }
        Err(moor_client::Error::NotFound(_)) => api.create(&endpoints).await.map(drop),
        Err(err) => Err(err),
    };
    match written {
        Ok(()) => tracing::info!(%addr, "scheduler plan service published"),
        Err(err) => tracing::warn!(%err, "cannot publish the scheduler's Endpoints"),
    }
}

/// The address others reach `bound` at: itself, or the host's address
/// when bound to every interface.
pub fn reachable(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    SocketAddr::new(moor_rpc::host_ip(), bound.port())
}
