//! Calls any RPC of moor's API by service and method name, with messages
//! built from the descriptors (`DynamicMessage`), so no verb needs code per
//! kind.

use std::str::FromStr;

use futures::{Stream, StreamExt};
use moor_rpc::Channel;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::config::Target;
use crate::error::{Error, Result};

/// A connection to the apiserver that calls methods by name.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    target: Target,
}

/// Encodes and decodes `DynamicMessage`s of the method's types.
struct DynamicCodec {
    output: MessageDescriptor,
}

/// Encodes a `DynamicMessage`.
struct DynamicEncoder;

/// Decodes into a `DynamicMessage` of one type.
struct DynamicDecoder {
    output: MessageDescriptor,
}

// === impl Client ===

impl Client {
    /// A lazily connecting client of `target`.
    pub fn new(target: Target) -> Result<Self> {
        if target.server.starts_with("https://") && target.credentials.tls.is_none() {
            return Err(Error::Usage(format!(
                "{} (chosen by {}) is https:// but no cluster CA is known to check it against: \
                 run `moor up` (it writes a context), or set one up with `moorctl config set-context \
                 NAME --server URL --certificate-authority CA.crt --client-certificate CERT.crt \
                 --client-key KEY.key --current`; an apiserver started with --insecure is \
                 --server http://HOST:PORT",
                target.server, target.chosen_by
            )));
        }
        let channel = moor_rpc::connect(&target.server, &target.credentials)?;
        Ok(Self { channel, target })
    }

    /// The typed client of the Authentication service.
    pub fn authentication(
        &self,
    ) -> moor_api::authentication::v1::authentication_client::AuthenticationClient<Channel> {
        moor_api::authentication::v1::authentication_client::AuthenticationClient::new(
            self.channel.clone(),
        )
    }

    /// The typed client of the Certificates service: servers leaving the
    /// control plane.
    pub fn certificates(
        &self,
    ) -> moor_api::authentication::v1::certificates_client::CertificatesClient<Channel> {
        moor_api::authentication::v1::certificates_client::CertificatesClient::new(
            self.channel.clone(),
        )
    }

    /// The typed client of the Pods service, for the streams of `logs` and
    /// `exec` (bidirectional, which the dynamic calls here do not cover).
    pub fn pods(&self) -> moor_api::core::v1::pods_client::PodsClient<Channel> {
        moor_api::core::v1::pods_client::PodsClient::new(self.channel.clone())
    }

    /// The typed client of the Deployments service, for `rollout`.
    pub fn deployments(
        &self,
    ) -> moor_api::apps::v1::deployments_client::DeploymentsClient<Channel> {
        moor_api::apps::v1::deployments_client::DeploymentsClient::new(self.channel.clone())
    }

    /// The typed client of the ReplicaSets service: a deployment's revisions.
    pub fn replica_sets(
        &self,
    ) -> moor_api::apps::v1::replica_sets_client::ReplicaSetsClient<Channel> {
        moor_api::apps::v1::replica_sets_client::ReplicaSetsClient::new(self.channel.clone())
    }

    /// The typed client of the ReplicationControllers service, for
    /// `rolling-update`.
    pub fn replication_controllers(
        &self,
    ) -> moor_api::core::v1::replication_controllers_client::ReplicationControllersClient<Channel>
    {
        moor_api::core::v1::replication_controllers_client::ReplicationControllersClient::new(
            self.channel.clone(),
        )
    }

    /// The typed client of the Endpoints service: where the scheduler serves.
    pub fn endpoints(
        &self,
    ) -> moor_api::core::v1::endpoints_service_client::EndpointsServiceClient<Channel> {
        moor_api::core::v1::endpoints_service_client::EndpointsServiceClient::new(
            self.channel.clone(),
        )
    }

    /// The typed client of the scheduler's Plan service, for a client made
    /// with the scheduler's address.
    pub fn scheduler(&self) -> moor_api::scheduler::v1::scheduler_client::SchedulerClient<Channel> {
        moor_api::scheduler::v1::scheduler_client::SchedulerClient::new(self.channel.clone())
    }

    /// The server and how it was chosen.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The method `service/method`, e.g. `moor.core.v1.Pods` and `Get`.
    pub fn method(service: &str, method: &str) -> Result<MethodDescriptor> {
        let pool = moor_api::descriptor_pool();
        let svc = pool
            .get_service_by_name(service)
            .ok_or_else(|| Error::Usage(format!("unknown service {service:?}")))?;
        svc.methods().find(|m| m.name() == method).ok_or_else(|| {
            let names: Vec<String> = svc.methods().map(|m| m.name().to_string()).collect();
            Error::Usage(format!(
                "service {service} has no method {method:?} (it has {})",
                names.join(", ")
            ))
        })
    }

    /// An empty request message for the method.
    pub fn request(method: &MethodDescriptor) -> DynamicMessage {
        DynamicMessage::new(method.input())
    }

    /// Calls a unary method; a call refused for overload is sent again
    /// after the server's hint, up to [`moor_rpc::OVERLOAD_RETRIES`] times.
    pub async fn unary(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
    ) -> Result<DynamicMessage> {
        let mut retries = 0;
        loop {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready().await.map_err(|e| self.unreachable(&*e))?;
            let codec = DynamicCodec {
                output: method.output(),
            };
            let sent = grpc
                .unary(tonic::Request::new(request.clone()), path(method)?, codec)
                .await;
            match sent {
                Ok(response) => return Ok(response.into_inner()),
                // Refused for overload, never served: again after the
                // server's hint, as kubectl does with a 429.
                Err(status) => match moor_rpc::pushback(&status) {
                    Some(delay) if retries < moor_rpc::OVERLOAD_RETRIES => {
                        retries += 1;
                        tokio::time::sleep(delay).await;
                    }
                    _ => return Err(self.status(status)),
                },
            }
        }
    }

    /// Calls a server-streaming method; the stream ends with the call.
    pub async fn stream(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
    ) -> Result<impl Stream<Item = Result<DynamicMessage>> + use<>> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| self.unreachable(&*e))?;
        let codec = DynamicCodec {
            output: method.output(),
        };
        let response = grpc
            .server_streaming(tonic::Request::new(request), path(method)?, codec)
            .await
            .map_err(|s| self.status(s))?;
        let this = self.clone();
        Ok(response
            .into_inner()
            .map(move |item| item.map_err(|s| this.status(s))))
    }

    /// A status as an error: transport failures name the server and how it
    /// was chosen; others carry the server's message.
    pub fn status(&self, status: Status) -> Error {
        // A TLS handshake refused by either side surfaces as UNKNOWN with
        // the transport's error as its source.
        let refused_handshake =
            status.code() == tonic::Code::Unknown && std::error::Error::source(&status).is_some();
        if (status.code() == tonic::Code::Unavailable && is_transport(&status)) || refused_handshake
        {
            return self.unreachable(&status);
        }
        Error::Server {
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    fn unreachable(&self, err: &(dyn std::error::Error + 'static)) -> Error {
        let mut reason = moor_rpc::transport_failure(err).unwrap_or_else(|| err.to_string());
        if reason.contains("refused") {
            reason = "connection refused".to_string();
        }
        Error::Unreachable {
            server: self.target.server.clone(),
            source_of: self.target.chosen_by.clone(),
            reason,
        }
    }
}

/// Whether an UNAVAILABLE status comes from the client's transport rather
/// than from the server.
fn is_transport(status: &Status) -> bool {
    // The client's own transport errors carry their cause; a status that
    // came over the wire has none, even when it is about a connection the
    // server failed to make (to a node agent, say).
    std::error::Error::source(status).is_some()
}

fn path(method: &MethodDescriptor) -> Result<http::uri::PathAndQuery> {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    http::uri::PathAndQuery::from_str(&path)
        .map_err(|e| Error::Usage(format!("bad method path {path}: {e}")))
}

// === impl DynamicCodec ===

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder {
            output: self.output.clone(),
        }
    }
}

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.output.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the response: {e}")))
    }
}
