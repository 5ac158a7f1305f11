//! Node lifecycle: the controller-side half of node health, as Kubernetes'
//! node lifecycle controller and taint manager do it.
//!
//! - [`monitor`]: a node whose agent stops renewing its Lease
//!   (`moor-system/<node>`) for `Config::node_monitor_grace_period` becomes
//!   Ready=Unknown; every node carries `node.kubernetes.io/unreachable`
//!   (Ready=Unknown) or `node.kubernetes.io/not-ready` (Ready=False) taints,
//!   NoSchedule and NoExecute, exactly while its Ready condition says so.
//! - [`evict`]: pods on a node with NoExecute taints they do not tolerate
//!   are deleted after `Config::pod_eviction_timeout` (or their own
//!   tolerationSeconds), at most `Config::eviction_rate` a second; their
//!   controllers recreate them, and the scheduler keeps them off tainted
//!   nodes.
//!
//! The controller follows node leases itself; nodes and pods come from the
//! controller-manager's shared informers.

mod decide;
mod evict;
mod monitor;

use moor_api::coordination::v1::Lease;
use moor_api::core::v1::{Node, Pod};
use moor_client::{Client, ListParams};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::informer::Informer;

/// Where node agents keep their Leases (moor-node's `LEASE_NAMESPACE`).
const LEASE_NAMESPACE: &str = "moor-system";

/// The node monitor and the taint manager, with their lease cache.
pub struct Controller {
    leases: Informer<Lease>,
    monitor: monitor::Monitor,
    evictor: evict::Evictor,
}

// === impl Controller ===

impl Controller {
    /// Both halves, fed by their own lease informer and by `nodes` and `pods`.
    pub fn new(
        client: &Client,
        nodes: &mut Informer<Node>,
        pods: &mut Informer<Pod>,
        config: &Config,
    ) -> Self {
        let mut leases = Informer::new();
        let monitor = monitor::Monitor::new(
            client,
            nodes.reader(),
            leases.reader(),
            pods.reader(),
            config.node_monitor_grace_period,
        );
        monitor.register(nodes, &mut leases);
        let evictor = evict::Evictor::new(client, nodes.reader(), pods.reader(), config);
        evictor.register(nodes, pods);
        Self {
            leases,
            monitor,
            evictor,
        }
    }

    /// Runs the lease informer and both loops until `shutdown` is cancelled.
    pub async fn run(self, client: Client, shutdown: CancellationToken) {
        let params = ListParams::default().namespace(LEASE_NAMESPACE);
        let leases = moor_client::watcher(client.api::<Lease>(), params);
        tokio::join!(
            self.leases.run_stream(leases, shutdown.clone()),
            self.monitor.run(shutdown.clone()),
            self.evictor.run(shutdown),
        );
    }
}
