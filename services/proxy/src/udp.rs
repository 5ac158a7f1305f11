//! UDP frontends: a flow per client address, each with its own socket
//! connected to the backend picked for it, so replies find their way back;
//! a flow ends after an idle timeout or when its backend leaves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;

/// Largest datagram handled.
const MAX_DATAGRAM: usize = 65_536;

struct Flow {
    upstream: Arc<UdpSocket>,
    /// Last packet in either direction.
    last: Arc<Mutex<Instant>>,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

/// Binds a UDP socket on `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Serves `socket` until `stop`; flows idle for `idle` are forgotten.
pub async fn serve(
    socket: UdpSocket,
    balancer: Arc<Balancer>,
    idle: Duration,
    stop: CancellationToken,
) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (n, client) = match received {
            Ok(received) => received,
            Err(err) => {
                // ICMP errors from earlier sends surface here; keep serving.
                tracing::debug!(%err, "udp receive failed");
                continue;
            }
        };
        let existing = lock(&flows)
            .get(&client)
            .map(|f| (f.upstream.clone(), f.last.clone()));
        let (upstream, last) = match existing {
            Some(flow) => flow,
            None => match open(&socket, &flows, client, &balancer, idle, &stop).await {
                Some(flow) => flow,
                None => continue,
            },
        };
        *last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if let Err(err) = upstream.send(&buf[..n]).await {
            tracing::debug!(%client, %err, "udp send to endpoint failed");
        }
    }
}

/// Starts a flow for `client` to the next backend.
async fn open(
    socket: &Arc<UdpSocket>,
    flows: &Flows,
    client: SocketAddr,
    balancer: &Arc<Balancer>,
    idle: Duration,
    stop: &CancellationToken,
) -> Option<(Arc<UdpSocket>, Arc<Mutex<Instant>>)> {
    let backend = balancer.candidates(client.ip()).into_iter().next()?;
    let upstream = match connect(backend.addr).await {
        Ok(upstream) => Arc::new(upstream),
        Err(err) => {
            tracing::debug!(backend = %backend.addr, %err, "cannot open a udp flow");
            return None;
        }
    };
    balancer.used(client.ip(), backend.addr);
    let last = Arc::new(Mutex::new(Instant::now()));
    lock(flows).insert(
        client,
        Flow {
            upstream: upstream.clone(),
            last: last.clone(),
        },
    );
    let replies = Replies {
        frontend: socket.clone(),
        upstream: upstream.clone(),
        client,
        last: last.clone(),
        idle,
    };
    let flows = flows.clone();
    let gone = backend.gone.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = replies.run() => {}
            _ = gone.cancelled() => {}
            _ = stop.cancelled() => {}
        }
        lock(&flows).remove(&client);
    });
    Some((upstream, last))
}

async fn connect(backend: SocketAddr) -> std::io::Result<UdpSocket> {
    let upstream = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).await?;
    upstream.connect(backend).await?;
    Ok(upstream)
}

/// Carries a flow's replies back to its client until it is idle.
struct Replies {
    frontend: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<Mutex<Instant>>,
    idle: Duration,
}

impl Replies {
    async fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = *self.last.lock().unwrap_or_else(|p| p.into_inner()) + self.idle;
            match tokio::time::timeout_at(deadline, self.upstream.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    if let Err(err) = self.frontend.send_to(&buf[..n], self.client).await {
                        tracing::debug!(client = %self.client, %err, "udp reply failed");
                    }
                }
                // The endpoint refused (ICMP port unreachable): the next
                // datagram may still work, keep the flow until idle.
                Ok(Err(_)) => {}
                Err(_) => {
                    let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
                    if last + self.idle <= Instant::now() {
                        return;
                    }
                }
            }
        }
    }
}

fn lock(flows: &Flows) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Flow>> {
    flows.lock().unwrap_or_else(|p| p.into_inner())
}
