//! The one way moor builds gRPC servers and client channels.
//!
//! Every component serves through [`Server`] and connects through
//! [`connect`], so message limits, keepalives, health, reflection, tracing,
//! TLS and authentication are decided here once.

mod admission;
mod auth;
mod channel;
mod pin;
mod tls;

pub use admission::{Classify, Limits, OVERLOAD_RETRIES, Priority, pushback};
pub use auth::{AUTHENTICATED_GROUP, Authenticator, CertificatesOnly, TokenFuture};
pub use channel::{Channel, Credentials, channel, connect, transport_failure};
pub use pin::server_chain;
pub use tls::{Caller, ClientAuth, ClientTls, ServerTls, caller};

use std::sync::Arc;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;

/// Largest message accepted or sent: objects are capped at 1.5 MiB by the
/// apiserver, lists of many objects need more.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What building a server or channel can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL does not parse.
    #[error("invalid server URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// Serving failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    /// Reflection could not load the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The TLS settings were refused.
    #[error("TLS settings: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// A server's TLS settings were refused.
    #[error("TLS settings: {0}")]
    TlsSettings(String),
    /// The credentials do not fit the URL.
    #[error("cannot connect to {url}: {reason}")]
    Credentials {
        /// The server URL.
        url: String,
        /// What does not fit.
        reason: String,
    },
}

/// A gRPC server under construction: add services, then serve.
pub struct Server {
    routes: RoutesBuilder,
    health: tonic_health::server::HealthReporter,
    tls: Option<ServerTls>,
    authenticator: Arc<dyn Authenticator>,
    admission: Option<Arc<admission::Admission>>,
}

// === impl Server ===

impl Server {
    /// A server with health and reflection (v1 and v1alpha) over moor's API
    /// descriptors already in place.
    pub fn new() -> Result<Self, Error> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        let v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(moor_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(Error::Reflection)?;
        let v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(moor_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(Error::Reflection)?;
        routes.add_service(v1);
        routes.add_service(v1alpha);
        Ok(Self {
            routes,
            health,
            tls: None,
            authenticator: Arc::new(CertificatesOnly),
            admission: None,
        })
    }

    /// Adds a service; it is reported SERVING by the health service.
    pub async fn add<S>(&mut self, service: S) -> &mut Self
    where
        S: tower_service::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.health
            .set_service_status(S::NAME, tonic_health::ServingStatus::Serving)
            .await;
        self.routes.add_service(service);
        self
    }

    /// Serves TLS with `tls` instead of plain text. Every call but health
    /// checks must then come from an authenticated caller: a verified
    /// client certificate, or a bearer token the authenticator knows.
    pub fn tls(&mut self, tls: ServerTls) -> &mut Self {
        self.tls = Some(tls);
        self
    }

    /// Checks bearer tokens with `authenticator` (by default none is known).
    pub fn authenticate(&mut self, authenticator: Arc<dyn Authenticator>) -> &mut Self {
        self.authenticator = authenticator;
        self
    }

    /// Bounds the requests served at once to `limits`, ranked by
    /// `classify`; past them requests wait briefly, then are refused with
    /// RESOURCE_EXHAUSTED (by default every request is served at once).
    pub fn admit(&mut self, limits: Limits, classify: Classify) -> &mut Self {
        self.admission = Some(Arc::new(admission::Admission::new(limits, classify)));
        self
    }

    /// Serves on `listener` until `shutdown` is cancelled, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        tracing::debug!(?addr, "serving gRPC");
        let auth = auth::AuthLayer {
            enabled: self.tls.is_some(),
            authenticator: self.authenticator,
            callers: Arc::default(),
        };
        // Authentication first: admission shares seats out by caller.
        let router = tonic::transport::Server::builder()
            .layer(auth)
            .layer(admission::AdmissionLayer(self.admission))
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(self.routes.routes());
        let acceptor = self.tls.as_ref().map(ServerTls::acceptor).transpose()?;
        let stopping = shutdown.clone();
        let serving = async move {
            match acceptor {
                Some(acceptor) => {
                    let incoming = handshakes(listener, acceptor, shutdown.clone());
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                        .await
                }
                None => {
                    // TCP_NODELAY on every accepted connection. Set here because
                    // the builder's `tcp_nodelay` is ignored for a listener of our
                    // own: without it, small responses waited for the peer's
                    // delayed ACK (about 40 ms, the p99 of every call under
                    // concurrent load).
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                        .await
                }
            }
        };
        // Draining waits for every call in flight; a stream the client
        // keeps open (a health Watch) would hold the server for ever.
        tokio::select! {
            served = serving => served.map_err(Error::Serve),
            () = async {
                stopping.cancelled().await;
                tokio::time::sleep(DRAIN).await;
            } => {
                tracing::warn!(?addr, "calls still open {DRAIN:?} after shutdown; closing them");
                Ok(())
            }
        }
    }
}

/// How long a stopping server lets the calls in flight finish.
pub const DRAIN: Duration = Duration::from_secs(5);

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections of `listener` that complete a TLS handshake, each
/// handshake on its own task so a slow client holds up no other.
fn handshakes(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<
    Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: a pause instead of a spin.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // See the plain-text branch of `serve` for why.
            let _ = stream.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// This machine's address on its default route: what a server bound to every
/// interface tells others to reach it at. A UDP "connect" sends nothing but
/// makes the kernel pick the source address; 127.0.0.1 without a route.
pub fn host_ip() -> std::net::IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip())
}
