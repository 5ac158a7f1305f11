//! [`Failover`]: one gRPC channel over several servers that serve the same
//! thing (the members of an etcd cluster, a cluster's apiservers).
//!
//! A client sticks to one server while it works, and moves to the next when
//! that one fails: a connection that cannot be made, a connection that
//! breaks, or an answer of UNAVAILABLE (an etcd member without a leader, an
//! apiserver shutting down). It never moves back by itself, so a server that
//! returns gets the clients of the next failure elsewhere. Each client
//! starts at a random server, so many clients spread over all of them, or
//! at the first, its own machine's ([`Start`]).
//! etcd's own Go client pinned one endpoint the same way; spreading each
//! client's requests over every server instead (what a balanced tonic
//! channel does) keeps sending a share of them to a dead one.
//!
//! A request is handed to a server only once a connection to it is up, so a
//! server that cannot be reached costs a connection attempt, not a failed
//! call. What cannot be taken back is a request already handed over: when
//! the connection breaks under it (or broke while idle and its server is
//! gone), that call fails and the caller decides whether to retry, since
//! only the caller knows whether the call is safe to repeat.
//!
//! A machine that is cut off (a pulled cable, a dead switch port) closes
//! nothing: its connections look open until something notices. Each
//! connection here asks the kernel to notice ([`DEAD_AFTER`]): data of ours,
//! a keep-alive probe among it, left unacknowledged that long by the
//! server's kernel ends the connection. It is the peer's kernel that
//! answers, not its process, so a server too busy to answer an HTTP/2 ping
//! in time is not taken for a dead one.

use std::collections::hash_map::RandomState;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower_service::Service;

/// The error type of a call: whatever the transport said.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// gRPC's code for UNAVAILABLE, as it appears in a `grpc-status` header.
const UNAVAILABLE: &[u8] = b"14";

/// How long data sent on a connection may stay unacknowledged by the
/// server's machine before the connection is taken for dead
/// (`TCP_USER_TIMEOUT`). Long enough for a few retransmissions on a lossy
/// LAN (they start at 200 ms and double), short enough that the clients of
/// a machine cut off move to another server within the 5 s a cluster
/// should take to answer again.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);

/// How long a connection may be idle before the kernel probes the server's
/// machine (TCP keep-alive), and how often it probes after that: an idle
/// connection (a watch with nothing to say) has data in flight, the probe,
/// for [`DEAD_AFTER`] to time.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Several servers behind one channel; cheap to clone, clones share the
/// connections and the choice of server.
#[derive(Clone)]
pub struct Failover {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("servers", &self.servers())
            .field("current", &self.current())
            .finish()
    }
}

struct Shared {
    /// The servers; replaced whole when the set changes (`set_servers`).
    servers: RwLock<Arc<[Arc<Server>]>>,
    /// The index of the server requests go to.
    current: AtomicUsize,
    /// Numbers connections, so that a late report about a broken one does
    /// not drop its replacement.
    next_connection: AtomicU64,
}

struct Server {
    endpoint: Endpoint,
    /// The connection, once made; `None` before the first call and after
    /// it broke.
    connection: Mutex<Option<Connection>>,
    /// Held while connecting, so that concurrent calls wait for one
    /// attempt instead of each making their own.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Connection {
    channel: Channel,
    id: u64,
}

// === impl Failover ===

impl Failover {
    /// A channel over `endpoints` (each with its TLS, timeouts and
    /// keep-alive already set), starting at the server `start` says;
    /// `None` when there are none. Connects lazily, on the first call.
    pub fn new(endpoints: Vec<Endpoint>, start: Start) -> Option<Self> {
        if endpoints.is_empty() {
            return None;
        }
        let start = match start {
            Start::Random => random_index(endpoints.len()),
            Start::First => 0,
        };
        let servers: Arc<[Arc<Server>]> = endpoints.into_iter().map(Server::new).collect();
        Some(Self {
            shared: Arc::new(Shared {
                servers: RwLock::new(servers),
                current: AtomicUsize::new(start),
                next_connection: AtomicU64::new(0),
            }),
        })
    }

    /// The servers, in the order given.
    pub fn servers(&self) -> Vec<Uri> {
        self.shared
            .list()
            .iter()
            .map(|server| server.endpoint.uri().clone())
            .collect()
    }

    /// The server requests go to now.
    pub fn current(&self) -> Uri {
        let list = self.shared.list();
        let index = self.shared.current.load(Ordering::Relaxed) % list.len();
        list[index].endpoint.uri().clone()
    }

    /// Replaces the servers with `endpoints` (none: nothing changes), as
    /// the set of a cluster's servers changes. Servers that stay keep their
    /// connections, and requests stay on the current server while it is in
    /// the set; otherwise they move to a random one of the new set. Calls
    /// under way finish where they are.
    pub fn set_servers(&self, endpoints: Vec<Endpoint>) {
        if endpoints.is_empty() {
            return;
        }
        let mut servers = self
            .shared
            .servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = servers
            .get(self.shared.current.load(Ordering::Relaxed) % servers.len())
            .map(|server| server.endpoint.uri().clone());
        let next: Arc<[Arc<Server>]> = endpoints
            .into_iter()
            .map(|endpoint| {
                servers
                    .iter()
                    .find(|server| server.endpoint.uri() == endpoint.uri())
                    .cloned()
                    .unwrap_or_else(|| Server::new(endpoint))
            })
            .collect();
        let index = current
            .and_then(|uri| next.iter().position(|s| *s.endpoint.uri() == uri))
            .unwrap_or_else(|| random_index(next.len()));
        *servers = next;
        self.shared.current.store(index, Ordering::Relaxed);
    }
}

/// Which server a new channel sends to first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A random one, so that many clients of the same servers spread.
    Random,
    /// The first given: the one on the client's own machine (an apiserver's
    /// own etcd member, as Kubernetes' stacked etcd and k3s have it), which
    /// fails and returns together with the client.
    First,
}

/// A random index below `len` (which is not zero): where a client starts.
fn random_index(len: usize) -> usize {
    (RandomState::new().build_hasher().finish() as usize) % len
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send + 'static>>;

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the chosen server's, awaited inside the call: which
        // server that is is only known once a connection is up.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.shared.clone().send(request))
    }
}

// === impl Shared ===

impl Shared {
    /// Connects to the current server, or the ones after it in turn, and
    /// hands `request` to the first that is up.
    async fn send(
        self: Arc<Self>,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let list = self.list();
        let count = list.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..count {
            let server = &list[(first + step) % count];
            match self.connect(server).await {
                Ok(connection) => return self.call(server.clone(), connection, request).await,
                Err(error) => {
                    tracing::debug!(
                        server = %server.endpoint.uri(),
                        %error,
                        "cannot connect; trying the next server"
                    );
                    self.move_from(server);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.map_or_else(|| "no server to send to".into(), Into::into))
    }

    /// The servers now.
    fn list(&self) -> Arc<[Arc<Server>]> {
        self.servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The connection to `server`, made if there is none.
    async fn connect(&self, server: &Server) -> Result<Connection, tonic::transport::Error> {
        if let Some(connection) = server.live() {
            return Ok(connection);
        }
        let _connecting = server.connecting.lock().await;
        // Someone else may have connected while this waited.
        if let Some(connection) = server.live() {
            return Ok(connection);
        }
        let channel = server
            .endpoint
            .connect_with_connector(connector(&server.endpoint))
            .await?;
        let connection = Connection {
            channel,
            id: self.next_connection.fetch_add(1, Ordering::Relaxed),
        };
        *server.lock() = Some(connection.clone());
        Ok(connection)
    }

    /// Sends `request` on `connection` to `server`, and watches the
    /// answer for signs that the server is gone.
    async fn call(
        self: Arc<Self>,
        server: Arc<Server>,
        connection: Connection,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let mut channel = connection.channel.clone();
        let sent = async {
            poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(request).await
        };
        match sent.await {
            Err(error) => {
                self.broken(&server, connection.id);
                Err(error.into())
            }
            Ok(response) => {
                if unavailable(response.headers()) {
                    self.move_from(&server);
                }
                let (parts, body) = response.into_parts();
                let body = Watched {
                    body,
                    shared: self,
                    server,
                    connection: connection.id,
                };
                Ok(http::Response::from_parts(parts, Body::new(body)))
            }
        }
    }

    /// Connection `id` to `server` failed: forget it (the next call
    /// connects anew) and move on to the next server.
    fn broken(&self, server: &Arc<Server>, id: u64) {
        let mut connection = server.lock();
        if connection.as_ref().is_some_and(|c| c.id == id) {
            *connection = None;
        }
        drop(connection);
        self.move_from(server);
    }

    /// Moves requests to the server after `server`, unless another call
    /// already moved them (or it has left the set).
    fn move_from(&self, server: &Arc<Server>) {
        let list = self.list();
        let Some(index) = list.iter().position(|s| Arc::ptr_eq(s, server)) else {
            return;
        };
        let next = (index + 1) % list.len();
        if next != index
            && self
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                from = %list[index].endpoint.uri(),
                to = %list[next].endpoint.uri(),
                "server failed; moving to the next"
            );
        }
    }
}

// === impl Server ===

impl Server {
    fn new(endpoint: Endpoint) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // A panic elsewhere while holding the lock leaves a valid Option.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live(&self) -> Option<Connection> {
        self.lock().clone()
    }
}

/// How a connection to `endpoint` is made: with its TCP settings, and with
/// the kernel watching for a server machine gone silent (see
/// [`DEAD_AFTER`]). The endpoint adds its TLS and connect timeout.
fn connector(endpoint: &Endpoint) -> HttpConnector {
    let mut http = HttpConnector::new();
    // https:// too: TLS goes over this connection.
    http.enforce_http(false);
    http.set_nodelay(endpoint.get_tcp_nodelay());
    http.set_keepalive(Some(PROBE_EVERY));
    http.set_keepalive_interval(Some(PROBE_EVERY));
    http.set_tcp_user_timeout(Some(DEAD_AFTER));
    http
}

/// Whether gRPC headers (or trailers) say UNAVAILABLE.
fn unavailable(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() == UNAVAILABLE)
}

/// A response body that reports its connection broken when reading it
/// fails, and its server unavailable when its trailers say so: a watch
/// stream is how a long-lived client first learns that its server died.
struct Watched {
    body: Body,
    shared: Arc<Shared>,
    server: Arc<Server>,
    connection: u64,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Err(_))) => self.shared.broken(&self.server, self.connection),
            Poll::Ready(Some(Ok(frame))) if frame.trailers_ref().is_some_and(unavailable) => {
                self.shared.move_from(&self.server);
            }
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unavailable_from_grpc_status() {
        let mut headers = http::HeaderMap::new();
        assert!(!unavailable(&headers));
        headers.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(!unavailable(&headers));
        headers.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert!(unavailable(&headers));
        headers.insert("grpc-status", http::HeaderValue::from_static("140"));
        assert!(!unavailable(&headers));
    }

    #[test]
    fn needs_a_server() {
        assert!(Failover::new(Vec::new(), Start::Random).is_none());
    }
}
