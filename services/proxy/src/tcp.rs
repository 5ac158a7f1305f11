//! TCP frontends: accept, connect to a backend (the next one when a connect
//! fails), then copy both ways until either side closes, the backend leaves
//! and its drain ends, or the frontend goes away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;

/// How long one backend gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds a listener on `addr` (with SO_REUSEADDR, so a restarted proxy can
/// bind while old connections linger in TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `listener` until `stop`.
pub async fn serve(listener: TcpListener, balancer: Arc<Balancer>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                tokio::spawn(forward(client, peer, balancer.clone(), stop.clone()));
            }
            Err(err) => {
                // Out of file descriptors and the like: back off a little
                // instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    balancer: Arc<Balancer>,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    for backend in balancer.candidates(peer.ip()) {
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await;
        let mut upstream = match connected {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(err)) => {
                tracing::debug!(backend = %backend.addr, %err, "connect failed; trying the next endpoint");
                continue;
            }
            Err(_) => {
                tracing::debug!(backend = %backend.addr, "connect timed out; trying the next endpoint");
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        balancer.used(peer.ip(), backend.addr);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = backend.gone.cancelled() => {}
            _ = stop.cancelled() => {}
        }
        return;
    }
    tracing::debug!(%peer, "no endpoint accepted the connection; closing it");
}
