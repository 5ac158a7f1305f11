//! Picks a backend for each new connection or flow of one frontend: round
//! robin over the ready endpoints, or the client's previous backend under
//! ClientIP affinity; and ends the connections of a backend that left, after
//! a short drain.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

/// One backend, with the token its connections end on.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The endpoint.
    pub addr: SocketAddr,
    /// Cancelled once the backend has left the set and its drain is over.
    pub gone: CancellationToken,
}

struct Backends {
    list: Vec<Backend>,
    affinity: Option<Duration>,
}

/// The backends of one frontend.
pub struct Balancer {
    current: RwLock<Arc<Backends>>,
    next: AtomicUsize,
    /// Client IP to its backend and when it last used it.
    sticky: Mutex<HashMap<IpAddr, (SocketAddr, Instant)>>,
    drain: Duration,
}

// === impl Balancer ===

impl Balancer {
    /// A balancer over `backends`; backends that leave keep their
    /// connections for `drain`.
    pub fn new(backends: &[SocketAddr], affinity: Option<Duration>, drain: Duration) -> Arc<Self> {
        let balancer = Arc::new(Self {
            current: RwLock::new(Arc::new(Backends {
                list: Vec::new(),
                affinity,
            })),
            next: AtomicUsize::new(0),
            sticky: Mutex::new(HashMap::new()),
            drain,
        });
        balancer.update(backends, affinity);
        balancer
    }

    /// Replaces the backend set. Backends that stay keep their connections;
    /// those that left get theirs closed after the drain, unless they are
    /// back by then.
    pub fn update(self: &Arc<Self>, backends: &[SocketAddr], affinity: Option<Duration>) {
        let old = self.read();
        let list: Vec<Backend> = backends
            .iter()
            .map(|addr| {
                old.list
                    .iter()
                    .find(|b| b.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Backend {
                        addr: *addr,
                        gone: CancellationToken::new(),
                    })
            })
            .collect();
        let left: Vec<Backend> = old
            .list
            .iter()
            .filter(|b| !backends.contains(&b.addr))
            .cloned()
            .collect();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Backends { list, affinity });
        if affinity.is_none() {
            self.sticky_map().clear();
        }
        for backend in left {
            self.sticky_map()
                .retain(|_, (addr, _)| *addr != backend.addr);
            let this = Arc::downgrade(self);
            let drain = self.drain;
            tokio::spawn(async move {
                tokio::time::sleep(drain).await;
                let back = this
                    .upgrade()
                    .is_some_and(|b| b.read().list.iter().any(|c| c.addr == backend.addr));
                if !back {
                    backend.gone.cancel();
                }
            });
        }
    }

    /// Ends every connection at once (the frontend is going away).
    pub fn close_all(&self) {
        for backend in &self.read().list {
            backend.gone.cancel();
        }
    }

    /// The backends to try for a client, best first: its sticky backend
    /// under affinity, then the others from the round-robin position.
    pub fn candidates(&self, client: IpAddr) -> Vec<Backend> {
        let current = self.read();
        let n = current.list.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut out: Vec<Backend> = (0..n)
            .map(|i| current.list[(start + i) % n].clone())
            .collect();
        if let Some(timeout) = current.affinity {
            let sticky = self.sticky_map().get(&client).copied();
            if let Some((addr, used)) = sticky
                && used.elapsed() < timeout
                && let Some(pos) = out.iter().position(|b| b.addr == addr)
            {
                let first = out.remove(pos);
                out.insert(0, first);
            }
        }
        out
    }

    /// Records that `client` now uses `backend` (for affinity).
    pub fn used(&self, client: IpAddr, backend: SocketAddr) {
        if self.read().affinity.is_some() {
            self.sticky_map().insert(client, (backend, Instant::now()));
        }
    }

    fn read(&self) -> Arc<Backends> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn sticky_map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (SocketAddr, Instant)>> {
        self.sticky.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn round_robin_visits_every_backend_in_turn() {
        let balancer = Balancer::new(&[addr(1), addr(2), addr(3)], None, Duration::ZERO);
        let firsts: Vec<u16> = (0..6)
            .map(|_| balancer.candidates(CLIENT)[0].addr.port())
            .collect();
        assert_eq!(firsts, vec![1, 2, 3, 1, 2, 3]);
        // Every backend is a candidate, for failover.
        assert_eq!(balancer.candidates(CLIENT).len(), 3);
    }

    #[tokio::test]
    async fn affinity_keeps_a_client_on_its_backend_until_it_leaves() {
        let balancer = Balancer::new(
            &[addr(1), addr(2)],
            Some(Duration::from_secs(60)),
            Duration::ZERO,
        );
        let first = balancer.candidates(CLIENT)[0].addr;
        balancer.used(CLIENT, first);
        for _ in 0..5 {
            assert_eq!(balancer.candidates(CLIENT)[0].addr, first);
        }
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        let seen: std::collections::HashSet<SocketAddr> =
            (0..4).map(|_| balancer.candidates(other)[0].addr).collect();
        assert_eq!(seen.len(), 2, "clients without history are spread");
        let remaining = if first == addr(1) { addr(2) } else { addr(1) };
        balancer.update(&[remaining], Some(Duration::from_secs(60)));
        assert_eq!(balancer.candidates(CLIENT)[0].addr, remaining);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_leaves_is_closed_after_the_drain_and_one_that_stays_is_not() {
        let drain = Duration::from_secs(5);
        let balancer = Balancer::new(&[addr(1), addr(2)], None, drain);
        let all = balancer.candidates(CLIENT);
        let one = all.iter().find(|b| b.addr == addr(1)).cloned();
        let two = all.iter().find(|b| b.addr == addr(2)).cloned();
        let (Some(one), Some(two)) = (one, two) else {
            panic!("both backends are candidates");
        };
        let left = tokio::time::Instant::now();
        balancer.update(&[addr(2)], None);
        tokio::task::yield_now().await;
        assert!(!one.gone.is_cancelled(), "not before the drain");
        one.gone.cancelled().await;
        assert!(left.elapsed() >= drain, "closed after the drain");
        assert!(!two.gone.is_cancelled());
        balancer.update(&[], None);
        assert!(balancer.candidates(CLIENT).is_empty());
    }
}
