//! The agent's own gRPC service, NodeAgent: a container's log and commands
//! run in a container, for the apiserver to relay, and for no one else.
//! Over TLS (the default) the agent serves as its node and accepts only the
//! apiserver's client certificate; in a plain-text (`--insecure`) cluster
//! every call must carry the agent token (Secret moor-system/node-agent-token).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use moor_api::core::v1::{
    PodExecRequest, PodExecResponse, PodExecStart, PodLogChunk, PodLogsRequest, Secret,
};
use moor_api::node::v1::node_agent_server::NodeAgent;
use moor_runtime::{ExecSpec, LogOptions, OutputStream, labels};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::agent::Agent;

/// Serves NodeAgent on `listener` until `shutdown`.
pub async fn serve(agent: Arc<Agent>, listener: TcpListener, shutdown: CancellationToken) {
    let mut server = match moor_rpc::Server::new() {
        Ok(server) => server,
        Err(err) => {
            tracing::error!(%err, "cannot build the node agent's gRPC server");
            return;
        }
    };
    if let Some(tls) = &agent.config.agent_tls {
        let tls = match moor_rpc::ServerTls::new(
            &tls.identity,
            &tls.ca_pem,
            moor_rpc::ClientAuth::Required,
        ) {
            Ok(tls) => tls,
            Err(err) => {
                tracing::error!(%err, "cannot serve the node agent over TLS");
                return;
            }
        };
        server.tls(tls).authenticate(Arc::new(OnlyTheApiserver));
    }
    server
        .add(moor_api::node::v1::node_agent_server::NodeAgentServer::new(
            NodeAgentService { agent },
        ))
        .await;
    if let Err(err) = server.serve(listener, shutdown).await {
        tracing::error!(%err, "the node agent's gRPC server stopped");
    }
}

/// Lets in the apiserver's certificate and no other.
struct OnlyTheApiserver;

impl moor_rpc::Authenticator for OnlyTheApiserver {
    fn token(&self, _token: &str) -> moor_rpc::TokenFuture {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn authorize(&self, caller: &moor_rpc::Caller, _path: &str) -> Result<(), Status> {
        if caller.user == moor_api::well_known::APISERVER_USER {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "the node agent serves the apiserver only, not {}",
                caller.user
            )))
        }
    }
}

struct NodeAgentService {
    agent: Arc<Agent>,
}

impl NodeAgentService {
    /// Accepts the call only from the apiserver: over TLS its certificate
    /// (checked again here, whatever the layer let through), else the
    /// cluster's token.
    async fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.agent.config.agent_tls.is_some() {
            return match moor_rpc::caller(req) {
                Some(caller) if caller.user == moor_api::well_known::APISERVER_USER => Ok(()),
                _ => Err(Status::permission_denied(
                    "the node agent serves the apiserver only",
                )),
            };
        }
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the node agent serves the apiserver only"))?;
        let (namespace, name, key) = moor_api::well_known::NODE_AGENT_TOKEN;
        let secret = self
            .agent
            .client
            .api::<Secret>()
            .get(namespace, name)
            .await
            .map_err(|err| Status::unavailable(format!("cannot read the agent token: {err}")))?;
        let expected = secret.data.get(key).map(Vec::as_slice).unwrap_or_default();
        if expected.is_empty() || given.as_bytes() != expected {
            return Err(Status::unauthenticated(
                "the node agent serves the apiserver only",
            ));
        }
        Ok(())
    }

    /// The engine id of container `container` of pod `namespace/name` on
    /// this node: the current instance, or the one before with `previous`.
    async fn container(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        previous: bool,
    ) -> Result<String, Status> {
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let found = self
            .agent
            .runtime
            .list_containers(&[
                (labels::NODE, self.agent.name.as_str()),
                (labels::POD_NAMESPACE, namespace),
                (labels::POD_NAME, name),
            ])
            .await
            .map_err(|err| Status::unavailable(err.to_string()))?;
        let mut apps: Vec<(String, u32, String)> = found
            .into_iter()
            .filter_map(|c| {
                let container = c.labels.get(labels::CONTAINER_NAME)?.clone();
                let attempt = c
                    .labels
                    .get(labels::CONTAINER_ATTEMPT)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0);
                Some((container, attempt, c.id))
            })
            .collect();
        let mut names: Vec<String> = apps.iter().map(|(n, _, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(Status::not_found(format!(
                "pod {namespace}/{name} has no containers on node {}",
                self.agent.name
            )));
        }
        let wanted = match container {
            "" if names.len() == 1 => names[0].clone(),
            "" => {
                return Err(Status::invalid_argument(format!(
                    "a container name must be given for pod {name}: one of [{}]",
                    names.join(", ")
                )));
            }
            c if names.iter().any(|n| n == c) => c.to_string(),
            c => {
                return Err(Status::not_found(format!(
                    "container {c} is not valid for pod {name}: one of [{}]",
                    names.join(", ")
                )));
            }
        };
        apps.retain(|(n, _, _)| *n == wanted);
        apps.sort_by_key(|a| std::cmp::Reverse(a.1));
        let index = usize::from(previous);
        apps.into_iter()
            .nth(index)
            .map(|(_, _, id)| id)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "previous terminated container {wanted} in pod {name} not found"
                ))
            })
    }
}

#[tonic::async_trait]
impl NodeAgent for NodeAgentService {
    type LogsStream = BoxStream<'static, Result<PodLogChunk, Status>>;

    async fn logs(
        &self,
        req: Request<PodLogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.authorize(&req).await?;
        let req = req.into_inner();
        let id = self
            .container(&req.namespace, &req.name, &req.container, req.previous)
            .await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let options = LogOptions {
            follow: req.follow,
            tail: req.tail_lines.map(|n| u64::try_from(n).unwrap_or(0)),
            timestamps: req.timestamps,
            since: req.since_seconds.map(|s| now - s.max(0)),
        };
        let stream = self
            .agent
            .runtime
            .logs(&id, &options)
            .await
            .map_err(|err| Status::unavailable(err.to_string()))?;
        Ok(Response::new(
            stream
                .map(|chunk| {
                    chunk
                        .map(|c| PodLogChunk {
                            data: c.data.to_vec(),
                            stream: stream_name(c.stream).to_string(),
                        })
                        .map_err(|err| Status::unavailable(err.to_string()))
                })
                .boxed(),
        ))
    }

    type ExecStream = BoxStream<'static, Result<PodExecResponse, Status>>;

    async fn exec(
        &self,
        req: Request<Streaming<PodExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.authorize(&req).await?;
        let mut requests = req.into_inner();
        let start: PodExecStart = requests
            .message()
            .await?
            .and_then(|m| m.start)
            .ok_or_else(|| Status::invalid_argument("the first exec message must carry `start`"))?;
        let id = self
            .container(&start.namespace, &start.name, &start.container, false)
            .await?;
        let size = start.size.map(|s| {
            (
                u16::try_from(s.width).unwrap_or(u16::MAX),
                u16::try_from(s.height).unwrap_or(u16::MAX),
            )
        });
        let spec = ExecSpec {
            command: start.command,
            stdin: start.stdin,
            tty: start.tty,
            size,
        };
        let session = self
            .agent
            .runtime
            .exec_attached(&id, &spec)
            .await
            .map_err(|err| Status::failed_precondition(err.to_string()))?;
        let exec_id = session.exec_id.clone();
        let mut input = session.input;
        let runtime = self.agent.runtime.clone();
        let resize_id = exec_id.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = requests.next().await {
                if !message.stdin.is_empty() && input.write_all(&message.stdin).await.is_err() {
                    break;
                }
                if let Some(size) = message.resize {
                    let (w, h) = (
                        u16::try_from(size.width).unwrap_or(u16::MAX),
                        u16::try_from(size.height).unwrap_or(u16::MAX),
                    );
                    let _ = runtime.exec_resize(&resize_id, w, h).await;
                }
                if message.stdin_closed {
                    break;
                }
            }
            // Closing our end closes the command's stdin.
            let _ = input.shutdown().await;
        });
        let output = session.output.map(|chunk| {
            chunk
                .map(|c| match c.stream {
                    OutputStream::Stdout => PodExecResponse {
                        stdout: c.data.to_vec(),
                        ..Default::default()
                    },
                    OutputStream::Stderr => PodExecResponse {
                        stderr: c.data.to_vec(),
                        ..Default::default()
                    },
                })
                .map_err(|err| Status::unavailable(err.to_string()))
        });
        let runtime = self.agent.runtime.clone();
        let exit = futures::stream::once(async move { exit_code(&*runtime, &exec_id).await });
        Ok(Response::new(output.chain(exit).boxed()))
    }
}

/// The command's exit code once its output ended: the engine may take a
/// moment to record it.
async fn exit_code(
    runtime: &dyn moor_runtime::ContainerRuntime,
    exec_id: &str,
) -> Result<PodExecResponse, Status> {
    for _ in 0..100 {
        match runtime.exec_exit_code(exec_id).await {
            Ok(Some(code)) => {
                return Ok(PodExecResponse {
                    exit_code: Some(i32::try_from(code).unwrap_or(-1)),
                    ..Default::default()
                });
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(err) => return Err(Status::unavailable(err.to_string())),
        }
    }
    Err(Status::unavailable(
        "the command's output ended but it has not exited",
    ))
}

fn stream_name(stream: OutputStream) -> &'static str {
    match stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    }
}
