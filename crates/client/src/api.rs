//! [`Client`] and the typed, kind-generic [`Api`].
//!
//! Every kind's service has the same methods, so one generic implementation
//! calls `/{K::SERVICE}/{Method}` with prost's codec instead of wrapping each
//! generated client.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use moor_api::core::v1::{Binding, Pod};
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListRequest, Scale, WatchRequest};
use moor_api::{Resource, WatchEvent, apps, core};
use moor_rpc::Channel;
use tonic::GrpcMethod;
use tonic::client::Grpc;

use crate::Error;

/// A connection to one apiserver; cheap to clone, all clones share it.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    fence: Option<Fence>,
}

/// A check made right before every write a [`Client::fenced`] client sends:
/// a leader's writes stop the moment it can no longer be sure it leads,
/// even when it learns so only later (a process paused past its lease).
/// `Err` names why; the write then fails with [`Error::Unavailable`].
#[derive(Clone)]
pub struct Fence(Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl Fence {
    /// A fence that lets writes through while `check` says so.
    pub fn new(check: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }

    /// Whether a write may go now; `Err` says why not.
    pub fn check(&self) -> Result<(), String> {
        (self.0)()
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

/// Typed access to one kind `K`.
#[derive(Debug)]
pub struct Api<K> {
    channel: Channel,
    fence: Option<Fence>,
    _kind: PhantomData<fn() -> K>,
}

/// Filters for list (and for the watches a watcher opens).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Only this namespace; empty: every namespace.
    pub namespace: String,
    /// Label selector, e.g. `app=web`.
    pub label_selector: String,
    /// Field selector, e.g. `metadata.name=web`.
    pub field_selector: String,
    /// Empty: the latest objects; `"0"`: whatever the apiserver's watch
    /// cache holds (see [`ListParams::any_version`]). Lists only: a watch
    /// takes its starting point from [`WatchParams::resource_version`].
    pub resource_version: String,
    /// Lists only: read in pages of at most this many objects (0: one
    /// answer with everything). [`Api::list`] still returns the whole list,
    /// every page read at the first page's version.
    pub limit: i64,
}

/// Filters and the starting point of a raw watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchParams {
    /// The filters.
    pub filters: ListParams,
    /// Resume after this version; empty: ADDED for every current object first.
    pub resource_version: String,
    /// Ask for BOOKMARK events.
    pub allow_bookmarks: bool,
}

/// Preconditions and options of a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteParams {
    /// Delete only at this resourceVersion.
    pub resource_version: Option<String>,
    /// Delete only this incarnation.
    pub uid: Option<String>,
    /// Grace period; unset: the object's default.
    pub grace_period_seconds: Option<i64>,
    /// Background, Foreground or Orphan; unset: Background.
    pub propagation_policy: Option<String>,
}

/// Workload kinds with a scale subresource.
pub trait Scalable: Resource {}

impl Scalable for core::v1::ReplicationController {}
impl Scalable for apps::v1::ReplicaSet {}
impl Scalable for apps::v1::Deployment {}

// === impl Client ===

impl Client {
    /// A client for the plain-text apiserver at `url` (`http://HOST:PORT`,
    /// an `--insecure` server); connects lazily and reconnects on the next
    /// call after a failure.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::connect(url, &moor_rpc::Credentials::default())
    }

    /// A client for the apiserver at `url` (`https://HOST:PORT`) that
    /// proves itself with `credentials`.
    pub fn connect(url: &str, credentials: &moor_rpc::Credentials) -> Result<Self, Error> {
        let channel = moor_rpc::connect(url, credentials).map_err(Error::Channel)?;
        Ok(Self {
            channel,
            fence: None,
        })
    }

    /// This client, on the same connection, with every write checked by
    /// `fence` first.
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            channel: self.channel.clone(),
            fence: Some(fence),
        }
    }

    /// This client without a fence: for writes that report work rather
    /// than do it (events).
    pub fn unfenced(&self) -> Self {
        Self {
            channel: self.channel.clone(),
            fence: None,
        }
    }

    /// The channel, for services outside the kinds' (the proxy's stream).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Typed access to kind `K`.
    pub fn api<K: Resource>(&self) -> Api<K> {
        Api {
            channel: self.channel.clone(),
            fence: self.fence.clone(),
            _kind: PhantomData,
        }
    }

    /// The cluster's network settings: service range, DNS address and
    /// domain, node port range.
    pub async fn cluster_network(&self) -> Result<moor_api::proxy::v1::ClusterNetwork, Error> {
        let mut client =
            moor_api::proxy::v1::proxy_config_client::ProxyConfigClient::new(self.channel.clone());
        Ok(client
            .get_cluster_network(moor_api::proxy::v1::GetClusterNetworkRequest {})
            .await?
            .into_inner())
    }

    /// Waits until the apiserver answers (it serves the `default`
    /// namespace from its first moment), for at most `within`; the last
    /// error otherwise. For starting a cluster and tools that start one.
    pub async fn wait_ready(&self, within: std::time::Duration) -> Result<(), Error> {
        let namespaces = self.api::<core::v1::Namespace>();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match namespaces.get("", "default").await {
                Ok(_) => return Ok(()),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }
}

// === impl ListParams ===

impl ListParams {
    /// Only objects in `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Only objects matching the label selector.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = selector.into();
        self
    }

    /// Only objects matching the field selector.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = selector.into();
        self
    }

    /// Lists answered from the apiserver's watch cache (Kubernetes'
    /// `resourceVersion=0`): cheap, indexed for pods by `spec.nodeName`,
    /// possibly behind the store but never behind what a watch on the same
    /// apiserver has delivered. For callers that act only on objects they
    /// learned of through such a watch (a node agent on its pods).
    pub fn any_version(mut self) -> Self {
        self.resource_version = "0".into();
        self
    }
}

// === impl Api ===

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
            fence: self.fence.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: Resource> Api<K> {
    /// Creates `object`; returns it as stored.
    pub async fn create(&self, object: &K) -> Result<K, Error> {
        self.unary("Create", object.clone()).await
    }

    /// Reads one object (`namespace` is ignored for cluster-scoped kinds).
    pub async fn get(&self, namespace: &str, name: &str) -> Result<K, Error> {
        let request = GetRequest {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.unary("Get", request).await
    }

    /// Lists matching objects and the resourceVersion the list is consistent
    /// at; in pages of `params.limit` when it is set, all read at one version.
    pub async fn list(&self, params: &ListParams) -> Result<(Vec<K>, String), Error> {
        let (mut items, mut meta) = self.list_page(params, "").await?;
        while !meta.r#continue.is_empty() {
            let (more, next) = self.list_page(params, &meta.r#continue).await?;
            items.extend(more);
            meta = next;
        }
        Ok((items, meta.resource_version))
    }

    /// One page of a list: at most `params.limit` objects after the page
    /// `continue_token` ended (empty: the first page). The metadata's
    /// `continue` leads to the next page; empty on the last.
    pub async fn list_page(
        &self,
        params: &ListParams,
        continue_token: &str,
    ) -> Result<(Vec<K>, moor_api::meta::v1::ListMeta), Error> {
        let request = ListRequest {
            namespace: params.namespace.clone(),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            // A continued list is read at its first page's version.
            resource_version: if continue_token.is_empty() {
                params.resource_version.clone()
            } else {
                String::new()
            },
            limit: params.limit,
            r#continue: continue_token.to_string(),
        };
        let list: K::List = self.unary("List", request).await?;
        Ok(K::from_list(list))
    }

    /// Replaces the object's spec and metadata; conditional on its
    /// resourceVersion when set ([`Error::Conflict`] when stale).
    pub async fn update(&self, object: &K) -> Result<K, Error> {
        self.unary("Update", object.clone()).await
    }

    /// Replaces the object's status (kinds with a status subresource).
    pub async fn update_status(&self, object: &K) -> Result<K, Error> {
        self.unary("UpdateStatus", object.clone()).await
    }

    /// Deletes an object; returns it as it was last (or marked for deletion).
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<K, Error> {
        let request = DeleteRequest {
            namespace: namespace.into(),
            name: name.into(),
            resource_version: params.resource_version.clone().unwrap_or_default(),
            uid: params.uid.clone().unwrap_or_default(),
            grace_period_seconds: params.grace_period_seconds,
            propagation_policy: params.propagation_policy.clone().unwrap_or_default(),
        };
        self.unary("Delete", request).await
    }

    /// Opens one raw watch stream; it does not resume by itself (see
    /// [`crate::watcher()`] for that).
    pub async fn watch(
        &self,
        params: &WatchParams,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, Error>>, Error> {
        let request = WatchRequest {
            namespace: params.filters.namespace.clone(),
            label_selector: params.filters.label_selector.clone(),
            field_selector: params.filters.field_selector.clone(),
            resource_version: params.resource_version.clone(),
            allow_bookmarks: params.allow_bookmarks,
        };
        let (mut grpc, path, request) = self.prepare("Watch", request).await?;
        let codec = tonic_prost::ProstCodec::<WatchRequest, WatchEvent<K>>::default();
        let stream = grpc
            .server_streaming(request, path, codec)
            .await?
            .into_inner();
        Ok(stream.map(|item| item.map_err(Error::from)).boxed())
    }

    /// Calls a unary method of `K`'s service. A call the server refused for
    /// overload, with a hint of when to come back, is sent again then (it
    /// was never served, so it is safe to repeat), up to
    /// [`moor_rpc::OVERLOAD_RETRIES`] times, as client-go retries a 429.
    async fn unary<Req, Resp>(&self, method: &'static str, message: Req) -> Result<Resp, Error>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut retries = 0;
        let write = !matches!(method, "Get" | "List" | "GetScale");
        loop {
            let (mut grpc, path, request) = self.prepare(method, message.clone()).await?;
            // Checked last, once nothing but sending is left.
            if let (true, Some(fence)) = (write, &self.fence) {
                fence.check().map_err(|why| {
                    Error::Unavailable(tonic::Status::unavailable(format!(
                        "{method} not sent: {why}"
                    )))
                })?;
            }
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            match grpc.unary(request, path, codec).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => match moor_rpc::pushback(&status) {
                    Some(delay) if retries < moor_rpc::OVERLOAD_RETRIES => {
                        retries += 1;
                        tracing::debug!(method, ?delay, retries, "server busy; calling again");
                        tokio::time::sleep(delay).await;
                    }
                    _ => return Err(status.into()),
                },
            }
        }
    }

    /// A ready gRPC client, the method's path and the request.
    async fn prepare<Req>(
        &self,
        method: &'static str,
        message: Req,
    ) -> Result<(Grpc<Channel>, http::uri::PathAndQuery, tonic::Request<Req>), Error> {
        let mut grpc = Grpc::new(self.channel.clone())
            .max_decoding_message_size(moor_rpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(moor_rpc::MAX_MESSAGE_BYTES);
        grpc.ready().await.map_err(|e| {
            Error::Unavailable(tonic::Status::unavailable(format!(
                "channel not ready: {e}"
            )))
        })?;
        let path = http::uri::PathAndQuery::try_from(format!("/{}/{method}", K::SERVICE))
            .map_err(|e| Error::Other(tonic::Status::internal(format!("bad method path: {e}"))))?;
        let mut request = tonic::Request::new(message);
        request
            .extensions_mut()
            .insert(GrpcMethod::new(K::SERVICE, method));
        Ok((grpc, path, request))
    }
}

impl Api<Pod> {
    /// Binds a pod to the node named in `binding.target`.
    pub async fn bind(&self, binding: &Binding) -> Result<Pod, Error> {
        self.unary("Bind", binding.clone()).await
    }
}

impl<K: Scalable> Api<K> {
    /// Reads a workload's scale.
    pub async fn get_scale(&self, namespace: &str, name: &str) -> Result<Scale, Error> {
        let request = GetRequest {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.unary("GetScale", request).await
    }

    /// Sets a workload's desired replicas.
    pub async fn update_scale(&self, scale: &Scale) -> Result<Scale, Error> {
        self.unary("UpdateScale", scale.clone()).await
    }
}
