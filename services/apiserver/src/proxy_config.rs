//! The ProxyConfig service: services and endpoints streamed to every node's
//! proxy as one versioned configuration.
//!
//! A version is `"<services revision>-<endpoints revision>"`: each part is the
//! last change of that kind the proxy has been sent, so a reconnecting proxy
//! resumes each kind from the watch cache where it left off. When either
//! cannot resume (too old for the cache's buffer, or a stream that fell
//! behind) the proxy gets a fresh snapshot instead.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use moor_api::Resource;
use moor_api::core::v1::{Endpoints, Service};
use moor_api::meta::v1::EventType;
use moor_api::proxy::v1::proxy_config_server::ProxyConfig;
use moor_api::proxy::v1::{
    ClusterNetwork, GetClusterNetworkRequest, ProxyConfigRequest, ProxyConfigUpdate,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::{Cache, Change, Live, Start};

/// Updates queued per proxy before the stream waits for it to read.
const QUEUE: usize = 8;

/// The ProxyConfig service over the service and endpoints watch caches.
pub struct ProxyConfigService {
    services: Arc<Cache<Service>>,
    endpoints: Arc<Cache<Endpoints>>,
    network: ClusterNetwork,
    shutdown: CancellationToken,
}

// === impl ProxyConfigService ===

impl ProxyConfigService {
    /// Serves the two caches and the cluster's network settings.
    pub fn new(
        services: Arc<Cache<Service>>,
        endpoints: Arc<Cache<Endpoints>>,
        network: ClusterNetwork,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            services,
            endpoints,
            network,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl ProxyConfig for ProxyConfigService {
    type StreamStream = BoxStream<'static, Result<ProxyConfigUpdate, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<ProxyConfigRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut requests = req.into_inner();
        let first = requests.message().await?.ok_or_else(|| {
            Status::invalid_argument("the stream closed before its first message")
        })?;
        if first.node.is_empty() {
            return Err(Status::invalid_argument(
                "the first message must name the node (field `node`)",
            ));
        }
        let resume = match first.resume_version.as_str() {
            "" => None,
            text => Some(Version::parse(text).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "resume_version {text:?} is not a version this apiserver sent"
                ))
            })?),
        };
        self.services.wait_primed().await?;
        self.endpoints.wait_primed().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let feed = Feed {
            node: first.node,
            services: self.services.clone(),
            endpoints: self.endpoints.clone(),
            network: self.network.clone(),
            tx,
        };
        tokio::spawn(feed.run(resume, requests, self.shutdown.clone()));
        Ok(Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx).boxed(),
        ))
    }

    async fn get_cluster_network(
        &self,
        _req: Request<GetClusterNetworkRequest>,
    ) -> Result<Response<ClusterNetwork>, Status> {
        Ok(Response::new(self.network.clone()))
    }
}

/// The cluster network settings the apiserver was started with.
pub fn cluster_network(
    cidr: ipnet::Ipv4Net,
    dns_ip: Ipv4Addr,
    domain: &str,
    node_ports: &std::ops::RangeInclusive<u16>,
) -> ClusterNetwork {
    ClusterNetwork {
        service_cidr: cidr.to_string(),
        dns_ip: dns_ip.to_string(),
        cluster_domain: domain.to_string(),
        node_port_min: i32::from(*node_ports.start()),
        node_port_max: i32::from(*node_ports.end()),
    }
}

/// A configuration version: the last revision sent of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    services: i64,
    endpoints: i64,
}

impl Version {
    fn parse(text: &str) -> Option<Self> {
        let (s, e) = text.split_once('-')?;
        Some(Self {
            services: s.parse().ok()?,
            endpoints: e.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.services, self.endpoints)
    }
}

/// Objects changed since the last update, by "namespace/name": the latest
/// state, or `None` once deleted.
struct Pending<K> {
    changed: BTreeMap<String, Option<K>>,
    /// Revision of the last change taken, delivered or not.
    seen: i64,
}

impl<K: Resource> Pending<K> {
    fn new(seen: i64) -> Self {
        Self {
            changed: BTreeMap::new(),
            seen,
        }
    }

    /// Takes one change unless it was already sent (a change the cache
    /// replayed may also arrive live; re-list changes share one revision).
    fn take(&mut self, change: &Change<K>) {
        if change.revision < self.seen || (change.revision == self.seen && !change.synthetic) {
            return;
        }
        self.seen = change.revision;
        let meta = change.object.meta();
        let key = format!("{}/{}", meta.namespace, meta.name);
        let state = (change.kind != EventType::Deleted).then(|| (*change.object).clone());
        self.changed.insert(key, state);
    }

    /// Splits into changed objects and deleted keys.
    fn drain(&mut self) -> (Vec<K>, Vec<String>) {
        let mut objects = Vec::new();
        let mut deleted = Vec::new();
        for (key, state) in std::mem::take(&mut self.changed) {
            match state {
                Some(object) => objects.push(object),
                None => deleted.push(key),
            }
        }
        (objects, deleted)
    }
}

/// Why a feed stops serving its current subscriptions.
enum Restart {
    /// A live receiver fell behind the cache's buffer: send a snapshot.
    Lagged,
    /// The cache is gone: the apiserver is stopping.
    Closed,
}

/// One proxy's stream.
struct Feed {
    node: String,
    services: Arc<Cache<Service>>,
    endpoints: Arc<Cache<Endpoints>>,
    network: ClusterNetwork,
    tx: mpsc::Sender<Result<ProxyConfigUpdate, Status>>,
}

// === impl Feed ===

impl Feed {
    async fn run(
        self,
        mut resume: Option<Version>,
        mut requests: Streaming<ProxyConfigRequest>,
        shutdown: CancellationToken,
    ) {
        tracing::info!(node = %self.node, resume = ?resume.map(|v| v.to_string()), "proxy connected");
        loop {
            match self.serve(resume, &mut requests, &shutdown).await {
                Ok(()) => break,
                Err(Restart::Lagged) => {
                    tracing::info!(node = %self.node, "proxy stream fell behind; sending a snapshot");
                    resume = None;
                }
                Err(Restart::Closed) => break,
            }
        }
        tracing::info!(node = %self.node, "proxy disconnected");
    }

    /// Sends a start (snapshot or resumed changes), then changes as they
    /// come, until the proxy or the apiserver goes away.
    async fn serve(
        &self,
        resume: Option<Version>,
        requests: &mut Streaming<ProxyConfigRequest>,
        shutdown: &CancellationToken,
    ) -> Result<(), Restart> {
        let subscribed = resume.map(|v| {
            let s = self.services.subscribe(Some(v.services));
            let e = self.endpoints.subscribe(Some(v.endpoints));
            (v, s, e)
        });
        let (mut services, mut endpoints, mut service_rx, mut endpoint_rx, first) = match subscribed
        {
            Some((v, (Start::Replay(s), srx), (Start::Replay(e), erx))) => {
                let mut services = Pending::new(v.services);
                let mut endpoints = Pending::new(v.endpoints);
                s.iter().for_each(|c| services.take(c));
                e.iter().for_each(|c| endpoints.take(c));
                (services, endpoints, srx, erx, None)
            }
            _ => {
                if resume.is_some() {
                    tracing::info!(node = %self.node, "proxy cannot resume; sending a snapshot");
                }
                let ((Start::Snapshot(s, srev), srx), (Start::Snapshot(e, erev), erx)) = (
                    self.services.subscribe(None),
                    self.endpoints.subscribe(None),
                ) else {
                    // subscribe(None) always starts with a snapshot.
                    return Ok(());
                };
                let snapshot = ProxyConfigUpdate {
                    version: Version {
                        services: srev,
                        endpoints: erev,
                    }
                    .to_string(),
                    snapshot: true,
                    services: s.iter().map(|o| (**o).clone()).collect(),
                    endpoints: e.iter().map(|o| (**o).clone()).collect(),
                    network: Some(self.network.clone()),
                    ..Default::default()
                };
                (
                    Pending::new(srev),
                    Pending::new(erev),
                    srx,
                    erx,
                    Some(snapshot),
                )
            }
        };
        let mut next = match first {
            Some(snapshot) => Some(snapshot),
            // A resume is confirmed with the changes since (maybe none).
            None => Some(self.update(&mut services, &mut endpoints)),
        };
        loop {
            if let Some(update) = next.take() {
                tokio::select! {
                    sent = self.tx.send(Ok(update)) => if sent.is_err() { return Ok(()) },
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = self.tx.send(Err(Status::unavailable(
                        "apiserver is shutting down; reconnect and resume"))).await;
                    return Ok(());
                }
                request = requests.next() => match request {
                    Some(Ok(request)) => self.acknowledged(&request),
                    // The proxy went away (or broke its stream).
                    _ => return Ok(()),
                },
                change = service_rx.recv() => {
                    services.take(&*received(change)?);
                    drain(&mut service_rx, &mut services)?;
                    drain(&mut endpoint_rx, &mut endpoints)?;
                    next = Some(self.update(&mut services, &mut endpoints));
                }
                change = endpoint_rx.recv() => {
                    endpoints.take(&*received(change)?);
                    drain(&mut service_rx, &mut services)?;
                    drain(&mut endpoint_rx, &mut endpoints)?;
                    next = Some(self.update(&mut services, &mut endpoints));
                }
            }
        }
    }

    /// An incremental update of everything pending.
    fn update(
        &self,
        services: &mut Pending<Service>,
        endpoints: &mut Pending<Endpoints>,
    ) -> ProxyConfigUpdate {
        let version = Version {
            services: services.seen,
            endpoints: endpoints.seen,
        };
        let (changed_services, deleted_services) = services.drain();
        let (changed_endpoints, deleted_endpoints) = endpoints.drain();
        ProxyConfigUpdate {
            version: version.to_string(),
            snapshot: false,
            services: changed_services,
            endpoints: changed_endpoints,
            deleted_services,
            deleted_endpoints,
            network: None,
        }
    }

    fn acknowledged(&self, request: &ProxyConfigRequest) {
        if request.error.is_empty() {
            tracing::debug!(node = %self.node, version = %request.version, "proxy applied version");
        } else {
            tracing::warn!(
                node = %self.node,
                version = %request.version,
                error = %request.error,
                "proxy rejected a configuration version; it keeps serving its last good one"
            );
        }
    }
}

/// A change from a live receiver; falling behind restarts the feed.
fn received<K>(
    change: Result<Arc<Change<K>>, broadcast::error::RecvError>,
) -> Result<Arc<Change<K>>, Restart> {
    change.map_err(|err| match err {
        broadcast::error::RecvError::Lagged(_) => Restart::Lagged,
        broadcast::error::RecvError::Closed => Restart::Closed,
    })
}

/// Takes every change already waiting, so one update carries a burst.
fn drain<K: Resource>(rx: &mut Live<K>, pending: &mut Pending<K>) -> Result<(), Restart> {
    loop {
        match rx.try_recv() {
            Ok(change) => pending.take(&change),
            Err(broadcast::error::TryRecvError::Empty) => return Ok(()),
            Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(Restart::Lagged),
            Err(broadcast::error::TryRecvError::Closed) => return Err(Restart::Closed),
        }
    }
}
