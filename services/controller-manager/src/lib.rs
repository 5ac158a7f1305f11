//! moor's controller-manager: the reconcile loops that make the cluster
//! converge on what its objects ask for. [`run`] starts them all against one
//! apiserver:
//!
//! - replication controllers and replica sets (`replica`): pods created,
//!   deleted, adopted and released to match each owner, never overshooting
//!   while creates are in flight;
//! - deployments (`deployment`): a replica set per template, rolled with
//!   RollingUpdate (maxSurge, maxUnavailable) or Recreate, with revisions,
//!   history limits, rollback by template, pause, minReadySeconds and the
//!   progress deadline, reported in Kubernetes' conditions;
//! - endpoints (`endpoints`): each selector service's ready and not-ready
//!   pod addresses;
//! - garbage collection (`gc`): dependents whose owners are gone are deleted;
//!   owners deleted with Orphan let go of their dependents first, with
//!   Foreground they wait until their blocking dependents are gone;
//! - namespaces (`namespace`): a terminating namespace is emptied, then let go;
//! - node lifecycle (`nodelifecycle`): nodes whose agent stopped renewing
//!   its lease become Ready=Unknown and tainted, and their pods are evicted;
//! - node IPAM (`nodeipam`): each node's pod range, cut from the cluster CIDR.
//!
//! Every loop is a client of the public API, fed by watches.

mod config;
mod deployment;
mod endpoints;
mod error;
mod fresh;
mod gc;
mod informer;
mod kinds;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod pods;
mod queue;
mod replica;
mod selector;
mod supervise;

pub use config::{Config, LeaseConfig};
pub use error::Error;
pub use nodeipam::{CIDR_NOT_AVAILABLE, Ranges as PodRanges};

use moor_api::apps::v1::{Deployment, ReplicaSet};
use moor_api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, ReplicationController, Secret, Service,
};
use moor_client::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::informer::Informer;

/// Runs every controller until `shutdown` is cancelled; with
/// `config.leader_elect`, only while holding the Lease
/// `moor-system/moor-controller-manager` (a standby takes over when the
/// leader stops renewing it).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let client = Client::connect(&config.server, &config.credentials)?;
    moor_client::follow_servers(&client, shutdown.clone());
    if !config.leader_elect {
        run_controllers(&config, client, shutdown).await;
        return Ok(());
    }
    let identity = config.identity.clone();
    moor_leader::lead(
        &client,
        "moor-controller-manager",
        &identity,
        config.lease,
        shutdown,
        |fenced, term| run_controllers(&config, fenced, term),
    )
    .await;
    Ok(())
}

/// How long controllers that crashed wait before they start again.
const RESTART_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the informers and controllers until `shutdown`, all started again
/// when one of them panics.
async fn run_controllers(config: &Config, client: Client, shutdown: CancellationToken) {
    supervise::supervise(shutdown, RESTART_PAUSE, |term| {
        start_controllers(config, client.clone(), term)
    })
    .await;
    tracing::info!("controller-manager stopped");
}

/// Starts the informers and controllers, each ending when `shutdown` is
/// cancelled.
fn start_controllers(config: &Config, client: Client, shutdown: CancellationToken) -> JoinSet<()> {
    let mut pods = Informer::<Pod>::new();
    let mut rcs = Informer::<ReplicationController>::new();
    let mut rss = Informer::<ReplicaSet>::new();
    let mut services = Informer::<Service>::new();
    let mut endpoints = Informer::<Endpoints>::new();
    let mut deployments = Informer::<Deployment>::new();
    let mut config_maps = Informer::<ConfigMap>::new();
    let mut secrets = Informer::<Secret>::new();
    let mut namespaces = Informer::<Namespace>::new();
    let mut nodes = Informer::<Node>::new();

    let rc = replica::Controller::<ReplicationController>::new(
        &client,
        rcs.reader(),
        pods.reader(),
        config,
    );
    rc.register(&mut rcs, &mut pods);
    let rs = replica::Controller::<ReplicaSet>::new(&client, rss.reader(), pods.reader(), config);
    rs.register(&mut rss, &mut pods);
    let deploy =
        deployment::Controller::new(&client, deployments.reader(), rss.reader(), pods.reader());
    deploy.register(&mut deployments, &mut rss, &mut pods);
    let ep = endpoints::Controller::new(
        &client,
        services.reader(),
        pods.reader(),
        endpoints.reader(),
    );
    ep.register(&mut services, &mut pods, &mut endpoints);

    let handles = kinds::Handles::new(
        &client,
        kinds::Readers {
            pods: pods.reader(),
            rcs: rcs.reader(),
            rss: rss.reader(),
            deployments: deployments.reader(),
            services: services.reader(),
            endpoints: endpoints.reader(),
            config_maps: config_maps.reader(),
            secrets: secrets.reader(),
        },
    );
    let gc = gc::Collector::new(handles.clone());
    gc.register_all(
        &mut pods,
        &mut rcs,
        &mut rss,
        &mut deployments,
        &mut services,
        &mut endpoints,
        &mut config_maps,
        &mut secrets,
    );
    let ns = namespace::Controller::new(&client, namespaces.reader(), handles, config);
    ns.register(&mut namespaces);
    let lifecycle = nodelifecycle::Controller::new(&client, &mut nodes, &mut pods, config);
    let ipam = config
        .pod_ranges
        .map(|ranges| nodeipam::Controller::new(&client, &mut nodes, ranges));

    let mut tasks = JoinSet::new();
    tasks.spawn(pods.run(client.api(), shutdown.clone()));
    tasks.spawn(rcs.run(client.api(), shutdown.clone()));
    tasks.spawn(rss.run(client.api(), shutdown.clone()));
    tasks.spawn(services.run(client.api(), shutdown.clone()));
    tasks.spawn(endpoints.run(client.api(), shutdown.clone()));
    tasks.spawn(deployments.run(client.api(), shutdown.clone()));
    tasks.spawn(config_maps.run(client.api(), shutdown.clone()));
    tasks.spawn(secrets.run(client.api(), shutdown.clone()));
    tasks.spawn(namespaces.run(client.api(), shutdown.clone()));
    tasks.spawn(nodes.run(client.api(), shutdown.clone()));
    tasks.spawn(rc.run(shutdown.clone()));
    tasks.spawn(rs.run(shutdown.clone()));
    tasks.spawn(deploy.run(shutdown.clone()));
    tasks.spawn(ep.run(shutdown.clone()));
    tasks.spawn(gc.run(shutdown.clone()));
    tasks.spawn(ns.run(shutdown.clone()));
    tasks.spawn(lifecycle.run(client.clone(), shutdown.clone()));
    if let Some(ipam) = ipam {
        tasks.spawn(ipam.run(shutdown.clone()));
    }
    tracing::info!(server = %config.server, "controller-manager running");
    tasks
}
