//! moor's apiserver: the only reader and writer of storage.
//!
//! It serves every kind's gRPC service over one generic registry (validation,
//! defaulting, optimistic concurrency, graceful deletion), keeps one watch
//! cache per kind fed by a single store watch, and fans changes out to every
//! watcher. `ApiServer::bind` then `run`, or `run(config, shutdown)`.

mod alloc;
mod authentication;
mod cache;
mod certificates;
mod error;
mod grpc;
mod kinds;
mod node_access;
mod pages;
mod peers;
mod pod_io;
mod priority;
mod propagation;
mod proxy_config;
mod registry;
mod subresources;
mod validate;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use moor_api::{apps, coordination, core, proxy};
use moor_storage::Store;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use registry::MAX_OBJECT_BYTES;

use crate::alloc::Allocator;
use crate::cache::Cache;
use crate::grpc::Api;
use crate::kinds::Kind;
use crate::proxy_config::ProxyConfigService;
use crate::registry::{Registry, Shared};

/// Where the apiserver keeps its data.
#[derive(Clone, Debug)]
pub enum Storage {
    /// The embedded SQLite store in this directory.
    DataDir(PathBuf),
    /// An etcd cluster.
    Etcd {
        /// Its members' client URLs.
        endpoints: Vec<String>,
        /// Which member is asked first: `First` when the first is this
        /// machine's own member.
        start: moor_storage_etcd::Start,
    },
}

/// How to run the apiserver.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to serve gRPC on.
    pub listen: SocketAddr,
    /// The store.
    pub storage: Storage,
    /// Range cluster IPs come from; its tenth address is the cluster DNS.
    pub service_cidr: Ipv4Net,
    /// Range node ports come from.
    pub node_ports: RangeInclusive<u16>,
    /// The DNS domain of the cluster, e.g. "cluster.local".
    pub cluster_domain: String,
    /// Recent events each kind's watch cache keeps for resuming watchers.
    pub watch_cache_events: usize,
    /// How often watchers that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How often store history older than one interval is compacted.
    pub compaction_interval: Duration,
    /// Serve TLS and authenticate every caller; `None`: plain text, and
    /// every caller may do anything (`--insecure`, or a test on loopback).
    pub tls: Option<Tls>,
    /// TLS towards etcd (`https://` endpoints); `None`: plain text.
    pub etcd_tls: Option<moor_storage_etcd::EtcdTls>,
    /// Requests served at once; past them requests wait briefly, then are
    /// refused with RESOURCE_EXHAUSTED.
    pub limits: moor_rpc::Limits,
    /// Where clients on other machines reach this apiserver, published in
    /// the Endpoints `default/kubernetes` for clients to learn every
    /// apiserver (port 0: the bound port); `None`: not published.
    pub advertise: Option<SocketAddr>,
}

/// The apiserver's TLS: its certificate, and the CA its clients'
/// certificates must chain to.
#[derive(Clone)]
pub struct Tls {
    /// The server certificate and key; the CA follows the certificate, so
    /// a joining node can pin it.
    pub identity: moor_pki::Identity,
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// The CA with its key, to sign node certificates (`SignNode`); `None`:
    /// this apiserver signs none.
    pub signer: Option<Arc<moor_pki::Ca>>,
    /// How long the node certificates it signs are valid.
    pub node_cert_validity: Duration,
    /// The apiserver's client certificate towards node agents (user
    /// [`moor_api::well_known::APISERVER_USER`]).
    pub agent_client: moor_pki::Identity,
    /// What a server joining the control plane is handed (`JoinServer`);
    /// `None`: this server runs no etcd member, so none can join through it.
    pub control_plane: Option<ControlPlane>,
}

/// A server's share of the control plane that a joining server receives:
/// the etcd CA (with the cluster CA of [`Tls::signer`]) and where etcd is.
#[derive(Clone)]
pub struct ControlPlane {
    /// The CA of etcd's peer and client certificates, with its key.
    pub etcd_ca: Arc<moor_pki::Ca>,
    /// The etcd members' client URLs, reachable from other machines.
    pub etcd_endpoints: Vec<String>,
    /// The name of this server's own etcd member, which `RemoveServer`
    /// leaves alone.
    pub member_name: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("identity", &self.identity)
            .field("signs_nodes", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The cluster DNS address: the tenth of the service CIDR, as in
    /// Kubernetes; never allocated to a service.
    pub fn dns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.network()).wrapping_add(10))
    }

    /// Defaults for `storage`: 127.0.0.1:6443, 10.96.0.0/12, node ports 30000-32767.
    pub fn new(storage: Storage) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            storage,
            service_cidr: Ipv4Net::new(std::net::Ipv4Addr::new(10, 96, 0, 0), 12)
                .unwrap_or_default(),
            node_ports: alloc::DEFAULT_NODE_PORTS,
            cluster_domain: "cluster.local".into(),
            watch_cache_events: 10_000,
            bookmark_interval: Duration::from_secs(10),
            compaction_interval: Duration::from_secs(300),
            tls: None,
            etcd_tls: None,
            limits: moor_rpc::Limits::default(),
            advertise: None,
        }
    }
}

/// Why the apiserver could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source} (is another apiserver or `moor up` running?)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The embedded store could not be opened.
    #[error("cannot open the data directory")]
    Sqlite(#[from] moor_storage_sqlite::Error),
    /// etcd could not be reached.
    #[error("cannot connect to etcd")]
    Etcd(#[from] moor_storage_etcd::Error),
    /// The built-in namespaces could not be created.
    #[error("cannot create the built-in namespaces")]
    Bootstrap(#[source] Error),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] moor_rpc::Error),
}

/// An apiserver bound to its address, ready to run.
pub struct ApiServer {
    config: Config,
    listener: TcpListener,
    store: Arc<dyn Store>,
    tls: Option<moor_rpc::ServerTls>,
}

// === impl ApiServer ===

impl ApiServer {
    /// Opens the store and binds the listen address.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        if config.service_cidr.prefix_len() > 28 {
            return Err(StartError::Config(format!(
                "--service-cidr {} is too small: use a /28 or larger (its tenth address is the cluster DNS)",
                config.service_cidr
            )));
        }
        if config.node_ports.is_empty() {
            return Err(StartError::Config(
                "--service-node-port-range is empty".to_string(),
            ));
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let store: Arc<dyn Store> = match &config.storage {
            Storage::DataDir(dir) => Arc::new(moor_storage_sqlite::SqliteStore::open(dir)?),
            Storage::Etcd { endpoints, start } => Arc::new(
                moor_storage_etcd::EtcdStore::connect_with(
                    endpoints,
                    config.etcd_tls.as_ref(),
                    *start,
                )
                .await?,
            ),
        };
        let tls = match &config.tls {
            Some(tls) => Some(moor_rpc::ServerTls::new(
                &tls.identity,
                &tls.ca_pem,
                // Optional: a caller without a certificate may bring a token.
                moor_rpc::ClientAuth::Optional,
            )?),
            None => None,
        };
        Ok(Self {
            config,
            listener,
            store,
            tls,
        })
    }

    /// The server's TLS, to renew its certificate while it runs (`None`:
    /// plain text).
    pub fn tls(&self) -> Option<moor_rpc::ServerTls> {
        self.tls.clone()
    }

    /// The address the apiserver listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let size = self.config.watch_cache_events;
        let namespace_cache = Cache::<core::v1::Namespace>::new(size);
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            alloc: Allocator::new(
                self.store.clone(),
                self.config.service_cidr,
                self.config.dns_ip(),
                self.config.node_ports.clone(),
            ),
            shutdown: shutdown.clone(),
            bookmark_interval: self.config.bookmark_interval,
            namespaces: namespace_cache.clone(),
            primed: std::sync::Mutex::new(Vec::new()),
            ranking: Arc::default(),
        });
        let mut tasks = JoinSet::new();
        let mut server = moor_rpc::Server::new()?;
        if let Some(tls) = &self.tls {
            server.tls(tls.clone());
        }
        let ranking = shared.ranking.clone();
        server.admit(
            self.config.limits,
            Arc::new(move |path, caller| ranking.classify(path, caller)),
        );
        server
            .add(
                moor_api::authentication::v1::authentication_server::AuthenticationServer::new(
                    authentication::WhoAmI,
                ),
            )
            .await;

        let namespaces = registry_with(&shared, namespace_cache, &mut tasks);
        bootstrap(&namespaces)
            .await
            .map_err(StartError::Bootstrap)?;
        // Every service takes and sends messages up to one limit, so a
        // request too large is the apiserver's own RESOURCE_EXHAUSTED (its
        // object size check) for every kind, never tonic's OUT_OF_RANGE
        // (which clients read as "history gone, re-list").
        macro_rules! limited {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(moor_rpc::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(moor_rpc::MAX_MESSAGE_BYTES)
            };
        }
        server
            .add(limited!(
                core::v1::namespaces_server::NamespacesServer::new(Api::new(namespaces))
            ))
            .await;
        macro_rules! add {
            ($kind:ty, $server:ty) => {
                let registry = registry::<$kind>(&shared, size, &mut tasks);
                server
                    .add(limited!(<$server>::new(Api::new(registry))))
                    .await;
            };
        }
        let nodes = registry::<core::v1::Node>(&shared, size, &mut tasks);
        let secrets = registry::<core::v1::Secret>(&shared, size, &mut tasks);
        // Node agents list their pods by spec.nodeName.
        let pods = registry_with(
            &shared,
            Cache::<core::v1::Pod>::indexed(size, "spec.nodeName"),
            &mut tasks,
        );
        // Join tokens are Secrets; a token's holder may only ask for a
        // node certificate, which the CA's holder signs.
        server.authenticate(Arc::new(certificates::Access::new(secrets.clone())));
        let signer = self
            .config
            .tls
            .as_ref()
            .and_then(|tls| tls.signer.clone().map(|ca| (ca, tls.node_cert_validity)));
        let control_plane = self
            .config
            .tls
            .as_ref()
            .and_then(|tls| tls.control_plane.clone());
        // etcd's membership, for RemoveServer; nothing is sent until asked.
        let members = match &control_plane {
            Some(control_plane) => Some(
                moor_storage_etcd::Members::connect(
                    &control_plane.etcd_endpoints,
                    self.config.etcd_tls.as_ref(),
                )
                .await?,
            ),
            None => None,
        };
        server
            .add(
                moor_api::authentication::v1::certificates_server::CertificatesServer::new(
                    certificates::NodeSigner::new(signer, control_plane, members, nodes.clone()),
                ),
            )
            .await;
        let agent_tls = self
            .config
            .tls
            .as_ref()
            .map(|tls| moor_rpc::ClientTls::new(&tls.ca_pem).identity(&tls.agent_client));
        if agent_tls.is_none() {
            // Plain text: agents check the apiserver's calls with a token.
            bootstrap_agent_token(&secrets)
                .await
                .map_err(StartError::Bootstrap)?;
        }
        let pod_io = Arc::new(pod_io::PodIo::new(
            nodes.cache().clone(),
            secrets.cache().clone(),
            agent_tls,
        ));
        server
            .add(limited!(core::v1::nodes_server::NodesServer::new(
                Api::new(nodes)
            )))
            .await;
        server
            .add(limited!(core::v1::secrets_server::SecretsServer::new(
                Api::new(secrets).readable_by_nodes_through(pods.cache().clone())
            )))
            .await;
        server
            .add(limited!(core::v1::pods_server::PodsServer::new(
                Api::new(pods).with_pod_io(pod_io)
            )))
            .await;
        let services = registry::<core::v1::Service>(&shared, size, &mut tasks);
        let endpoints = registry::<core::v1::Endpoints>(&shared, size, &mut tasks);
        server
            .add(
                // A snapshot of every service and endpoints goes in one
                // message, however large the cluster.
                limited!(proxy::v1::proxy_config_server::ProxyConfigServer::new(
                    ProxyConfigService::new(
                        services.cache().clone(),
                        endpoints.cache().clone(),
                        proxy_config::cluster_network(
                            self.config.service_cidr,
                            self.config.dns_ip(),
                            &self.config.cluster_domain,
                            &self.config.node_ports,
                        ),
                        shutdown.clone(),
                    )
                ))
                .max_encoding_message_size(usize::MAX),
            )
            .await;
        server
            .add(limited!(core::v1::services_server::ServicesServer::new(
                Api::new(services)
            )))
            .await;
        let leases = registry::<coordination::v1::Lease>(&shared, size, &mut tasks);
        if let Some(advertise) = self.config.advertise {
            let advertise = match advertise.port() {
                0 => SocketAddr::new(advertise.ip(), self.local_addr().port()),
                _ => advertise,
            };
            tasks.spawn(peers::publish(
                advertise,
                leases.clone(),
                endpoints.clone(),
                shutdown.clone(),
            ));
        }
        server
            .add(limited!(
                core::v1::endpoints_service_server::EndpointsServiceServer::new(Api::new(
                    endpoints
                ))
            ))
            .await;
        server
            .add(limited!(
                coordination::v1::leases_server::LeasesServer::new(Api::new(leases))
            ))
            .await;
        add!(
            core::v1::ConfigMap,
            core::v1::config_maps_server::ConfigMapsServer<Api<core::v1::ConfigMap>>
        );
        add!(
            core::v1::Event,
            core::v1::events_server::EventsServer<Api<core::v1::Event>>
        );
        add!(
            core::v1::ReplicationController,
            core::v1::replication_controllers_server::ReplicationControllersServer<
                Api<core::v1::ReplicationController>,
            >
        );
        add!(
            apps::v1::ReplicaSet,
            apps::v1::replica_sets_server::ReplicaSetsServer<Api<apps::v1::ReplicaSet>>
        );
        add!(
            apps::v1::Deployment,
            apps::v1::deployments_server::DeploymentsServer<Api<apps::v1::Deployment>>
        );

        tasks.spawn(compact(
            self.store.clone(),
            self.config.compaction_interval,
            shutdown.clone(),
        ));
        // Serve once every watch cache holds the store's state: a watcher
        // that resumes here from a version it saw before this apiserver
        // started finds the events after it, instead of a cache whose
        // history begins after writes this apiserver already answered.
        let primed = std::mem::take(
            &mut *shared
                .primed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for mut cache in primed {
            tokio::select! {
                _ = cache.wait_for(|primed| *primed) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        tracing::info!(
            addr = %self.local_addr(),
            storage = ?self.config.storage,
            tls = self.config.tls.is_some(),
            "apiserver ready"
        );
        let served = server.serve(self.listener, shutdown.clone()).await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        tracing::info!("apiserver stopped");
        Ok(served?)
    }
}

/// Runs an apiserver until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    ApiServer::bind(config).await?.run(shutdown).await
}

/// A registry for `K` with its watch cache running in `tasks`.
fn registry<K: Kind>(
    shared: &Arc<Shared>,
    size: usize,
    tasks: &mut JoinSet<()>,
) -> Arc<Registry<K>> {
    registry_with(shared, Cache::<K>::new(size), tasks)
}

/// A registry for `K` over `cache`, which starts running in `tasks`.
fn registry_with<K: Kind>(
    shared: &Arc<Shared>,
    cache: Arc<Cache<K>>,
    tasks: &mut JoinSet<()>,
) -> Arc<Registry<K>> {
    tasks.spawn(cache.clone().run(
        shared.store.clone(),
        Registry::<K>::prefix(),
        shared.shutdown.clone(),
    ));
    shared
        .primed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(cache.primed());
    let counted = cache.clone();
    shared
        .ranking
        .count(K::SERVICE, Arc::new(move || counted.len()));
    Arc::new(Registry::new(shared.clone(), cache))
}

/// Creates the namespaces that always exist.
async fn bootstrap(namespaces: &Registry<core::v1::Namespace>) -> Result<(), Error> {
    for name in ["default", "moor-system"] {
        let mut ns = core::v1::Namespace::default();
        moor_api::Resource::meta_mut(&mut ns).name = name.to_string();
        match namespaces.create(ns).await {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Creates the Secret with the token node agents accept from the apiserver,
/// once per cluster.
async fn bootstrap_agent_token(secrets: &Registry<core::v1::Secret>) -> Result<(), Error> {
    let (namespace, name, key) = moor_api::well_known::NODE_AGENT_TOKEN;
    let mut secret = core::v1::Secret::default();
    let meta = moor_api::Resource::meta_mut(&mut secret);
    meta.namespace = namespace.to_string();
    meta.name = name.to_string();
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    secret.data.insert(key.to_string(), token.into_bytes());
    match secrets.create(secret).await {
        Ok(_) | Err(Error::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Compacts store history every `interval` to the revision seen one interval
/// earlier, so watchers can resume across that long and the log stays small.
async fn compact(store: Arc<dyn Store>, interval: Duration, shutdown: CancellationToken) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Some(revision) = previous
            && let Err(err) = store.compact(revision).await
        {
            tracing::warn!(%err, revision, "compaction failed; will retry");
        }
        previous = store.current_revision().await.ok();
    }
}
