//! Pods' logs and exec: the apiserver finds the pod's node and relays the
//! call to that node's agent. Over TLS (the default) the apiserver presents
//! its own client certificate and expects the agent's to name the node;
//! a plain-text (`--insecure`) cluster uses the agent token in a Secret.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use moor_api::core::v1::{
    Node, Pod, PodExecRequest, PodExecResponse, PodLogChunk, PodLogsRequest, Secret,
};
use moor_api::meta::v1::GetRequest;
use moor_api::node::v1::node_agent_client::NodeAgentClient;
use moor_api::well_known::NODE_AGENT_TOKEN;
use moor_rpc::Channel;
use tokio::sync::mpsc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Status, Streaming};

use crate::cache::Cache;
use crate::registry::Registry;

/// Puts the agent token on every call (plain-text clusters only).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    }
}

/// Finds node agents and calls them.
pub struct PodIo {
    nodes: Arc<Cache<Node>>,
    secrets: Arc<Cache<Secret>>,
    /// The CA and the apiserver's client certificate, for agents over TLS.
    tls: Option<moor_rpc::ClientTls>,
}

// === impl PodIo ===

impl PodIo {
    /// Reads nodes and the token from their watch caches; reaches agents
    /// over TLS with `tls` when given.
    pub fn new(
        nodes: Arc<Cache<Node>>,
        secrets: Arc<Cache<Secret>>,
        tls: Option<moor_rpc::ClientTls>,
    ) -> Self {
        Self {
            nodes,
            secrets,
            tls,
        }
    }

    /// Relays a log request to the pod's node.
    pub async fn logs(
        &self,
        pods: &Registry<Pod>,
        mut req: PodLogsRequest,
    ) -> Result<BoxStream<'static, Result<PodLogChunk, Status>>, Status> {
        if req.namespace.is_empty() {
            req.namespace = "default".into();
        }
        let (mut agent, at) = self.agent(pods, &req.namespace, &req.name).await?;
        let stream = agent
            .logs(req)
            .await
            .map_err(|s| agent_error(&at, s))?
            .into_inner();
        Ok(stream.boxed())
    }

    /// Relays an exec stream to the pod's node: the first message names the
    /// pod; everything the caller sends after it is passed on as it comes.
    pub async fn exec(
        &self,
        pods: &Registry<Pod>,
        mut requests: Streaming<PodExecRequest>,
    ) -> Result<BoxStream<'static, Result<PodExecResponse, Status>>, Status> {
        let mut first = requests.message().await?.ok_or_else(|| {
            Status::invalid_argument("the exec stream closed before its first message")
        })?;
        let start = first
            .start
            .as_mut()
            .ok_or_else(|| Status::invalid_argument("the first exec message must carry `start`"))?;
        if start.namespace.is_empty() {
            start.namespace = "default".into();
        }
        if start.command.is_empty() {
            return Err(Status::invalid_argument(
                "start.command: Required value: a command to run",
            ));
        }
        let (namespace, name) = (start.namespace.clone(), start.name.clone());
        let (mut agent, at) = self.agent(pods, &namespace, &name).await?;
        let (tx, rx) = mpsc::channel(16);
        // Room for one: the channel is new.
        let _ = tx.try_send(first);
        tokio::spawn(async move {
            while let Some(Ok(message)) = requests.next().await {
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        let stream = agent
            .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| agent_error(&at, s))?
            .into_inner();
        Ok(stream.boxed())
    }

    /// A client of the agent running `namespace/name`, with the token on
    /// every call, and where the agent is (for errors).
    async fn agent(
        &self,
        pods: &Registry<Pod>,
        namespace: &str,
        name: &str,
    ) -> Result<(NodeAgentClient<InterceptedService<Channel, Bearer>>, String), Status> {
        let pod = pods
            .get(&GetRequest {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .await?;
        let node_name = pod.spec.map(|s| s.node_name).unwrap_or_default();
        if node_name.is_empty() {
            return Err(Status::failed_precondition(format!(
                "pod {namespace}/{name} is not scheduled to a node yet"
            )));
        }
        let node = self
            .nodes
            .get(&format!("/registry/nodes/{node_name}"))
            .ok_or_else(|| {
                Status::unavailable(format!("node {node_name} of pod {name} is not registered"))
            })?;
        let status = node.status.clone().unwrap_or_default();
        let ip = status
            .addresses
            .iter()
            .find(|a| a.r#type == "InternalIP")
            .map(|a| a.address.clone())
            .unwrap_or_default();
        let port = status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map_or(0, |e| e.port);
        if ip.is_empty() || port == 0 {
            return Err(Status::unavailable(format!(
                "node {node_name} does not report its agent's address (status.addresses InternalIP \
                 and status.daemonEndpoints); is it a simulated node?"
            )));
        }
        let (channel, bearer) = match &self.tls {
            // The agent's certificate must name the node (its DNS name is
            // the node's name), whatever address it answers on.
            Some(tls) => {
                let credentials = moor_rpc::Credentials {
                    tls: Some(tls.clone().domain(node_name.clone())),
                    token: None,
                };
                let channel = moor_rpc::connect(&format!("https://{ip}:{port}"), &credentials)
                    .map_err(|err| Status::internal(err.to_string()))?;
                (channel, None)
            }
            None => {
                let token = self.token()?;
                let channel = moor_rpc::channel(&format!("http://{ip}:{port}"))
                    .map_err(|err| Status::internal(err.to_string()))?;
                let bearer = format!("Bearer {token}").parse().map_err(|_| {
                    Status::internal("the node agent token is not valid header text")
                })?;
                (channel, Some(bearer))
            }
        };
        Ok((
            NodeAgentClient::with_interceptor(channel, Bearer(bearer)),
            format!("node {node_name} at {ip}:{port}"),
        ))
    }

    /// The token node agents accept.
    fn token(&self) -> Result<String, Status> {
        let (namespace, name, key) = NODE_AGENT_TOKEN;
        self.secrets
            .get(&format!("/registry/secrets/{namespace}/{name}"))
            .and_then(|s| s.data.get(key).cloned())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::internal(format!(
                    "the Secret {namespace}/{name} with key {key:?} is missing"
                ))
            })
    }
}

/// A failed call to a node agent: a transport failure becomes UNAVAILABLE
/// naming the agent, so the caller does not take it for its own connection
/// to the apiserver failing.
fn agent_error(at: &str, status: Status) -> Status {
    match moor_rpc::transport_failure(&status) {
        Some(cause) => Status::unavailable(format!("cannot reach the node agent of {at}: {cause}")),
        None => status,
    }
}
