//! The running frontends, converged to a [`Table`]: a listener exists while
//! its route has ready endpoints, so a service without any refuses
//! connections at once (the kernel answers for the closed port) instead of
//! accepting and hanging.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;
use crate::table::{Frontend, Protocol, Route, Table};
use crate::{tcp, udp};

struct Running {
    balancer: Arc<Balancer>,
    stop: CancellationToken,
}

/// The listeners and their balancers.
pub struct Dataplane {
    running: HashMap<Frontend, Running>,
    drain: Duration,
    udp_idle: Duration,
    shutdown: CancellationToken,
}

// === impl Dataplane ===

impl Dataplane {
    /// No frontends yet.
    pub fn new(drain: Duration, udp_idle: Duration, shutdown: CancellationToken) -> Self {
        Self {
            running: HashMap::new(),
            drain,
            udp_idle,
            shutdown,
        }
    }

    /// How many frontends are listening.
    pub fn listening(&self) -> usize {
        self.running.len()
    }

    /// Converges to `table`; returns the frontends that could not listen.
    pub async fn apply(&mut self, table: &Table) -> Vec<String> {
        let wanted = |frontend: &Frontend| {
            table
                .routes
                .get(frontend)
                .is_some_and(|route| !route.backends.is_empty())
        };
        let stale: Vec<Frontend> = self
            .running
            .keys()
            .filter(|f| !wanted(f))
            .copied()
            .collect();
        for frontend in stale {
            if let Some(running) = self.running.remove(&frontend) {
                tracing::debug!(%frontend, "frontend closed");
                running.stop.cancel();
                running.balancer.close_all();
            }
        }
        let mut problems = Vec::new();
        for (frontend, route) in &table.routes {
            if route.backends.is_empty() {
                continue;
            }
            if let Some(running) = self.running.get(frontend) {
                running.balancer.update(&route.backends, route.affinity);
                continue;
            }
            match self.start(*frontend, route).await {
                Ok(running) => {
                    tracing::debug!(%frontend, service = %route.service, "frontend listening");
                    self.running.insert(*frontend, running);
                }
                Err(err) => problems.push(format!(
                    "cannot listen on {frontend} for {}: {err}",
                    route.service
                )),
            }
        }
        problems
    }

    async fn start(&self, frontend: Frontend, route: &Route) -> std::io::Result<Running> {
        let balancer = Balancer::new(&route.backends, route.affinity, self.drain);
        let stop = self.shutdown.child_token();
        let addr = SocketAddr::V4(frontend.listen);
        match frontend.protocol {
            Protocol::Tcp => {
                let listener = tcp::bind(addr)?;
                tokio::spawn(tcp::serve(listener, balancer.clone(), stop.clone()));
            }
            Protocol::Udp => {
                let socket = udp::bind(addr).await?;
                tokio::spawn(udp::serve(
                    socket,
                    balancer.clone(),
                    self.udp_idle,
                    stop.clone(),
                ));
            }
        }
        Ok(Running { balancer, stop })
    }

    /// Closes every frontend.
    pub fn close(&mut self) {
        for (_, running) in self.running.drain() {
            running.stop.cancel();
            running.balancer.close_all();
        }
    }
}
