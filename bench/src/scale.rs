//! `moor-bench scale`: many live simulated nodes on one apiserver. Real
//! processes: `moor apiserver` (SQLite), `moor scheduler`, `moor
//! controller-manager` and `moor node --runtime fake --count N` (N agents
//! in one process, each heartbeating and running its pods as a real agent
//! does, without containers). Once every node is Ready, one Deployment of
//! `pods-per-node x N` replicas is created; reported: the time until every
//! pod runs (or how many did within the bound), pods per second, the
//! apiserver's peak resident memory, and how many nodes were ever marked
//! not Ready after they first were.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use moor_api::Resource;
use moor_api::apps::v1::Deployment;
use moor_api::core::v1::{Node, Pod};
use moor_client::watcher::Event;
use moor_client::{Client, ListParams};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::server::{Apiserver, Process, Transport};

const APP: &str = "scale";

/// Flags of `moor-bench scale`.
#[derive(clap::Args)]
pub struct Args {
    /// Simulated nodes (one `moor node --runtime fake --count N` process).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods per node, all in one Deployment.
    #[arg(long, default_value_t = 10)]
    pods_per_node: usize,
    /// The agents' heartbeat, in seconds.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Longest wait for the nodes to be Ready, and again for the pods to run.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Store the cluster in a real etcd started for the run, instead of
    /// the embedded SQLite.
    #[arg(long)]
    etcd: bool,
    /// A flag for `moor apiserver` (repeatable), e.g.
    /// `--apiserver-arg=--max-requests-in-flight=100000` for an A/B without its limits.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    apiserver_arg: Vec<String>,
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    crate::quiet_logs();
    let etcd = match args.etcd {
        true => Some(moor_testkit::EtcdServer::start().await?),
        false => None,
    };
    let endpoint = etcd.as_ref().map(moor_testkit::EtcdServer::endpoint);
    let apiserver =
        Apiserver::start_with(endpoint.as_deref(), Transport::Plain, &args.apiserver_arg).await?;
    let url = apiserver.url.clone();
    let client = apiserver.client()?;
    let bound = Duration::from_secs(args.max_seconds);
    let _scheduler = Process::moor(&[
        "scheduler",
        "--server",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--log",
        "warn",
    ])?;
    // A /8 of /24s: every simulated node gets a range, as real ones do.
    let _controllers = Process::moor(&[
        "controller-manager",
        "--server",
        &url,
        "--cluster-cidr",
        "10.0.0.0/8",
        "--log",
        "warn",
    ])?;
    let started = Instant::now();
    let count = args.nodes.to_string();
    let heartbeat = args.heartbeat_seconds.to_string();
    let _agents = Process::moor(&[
        "node",
        "--server",
        &url,
        "--runtime",
        "fake",
        "--count",
        &count,
        "--name",
        "sim",
        "--heartbeat-seconds",
        &heartbeat,
        "--log",
        "warn",
    ])?;
    println!(
        "moor-bench scale: {} simulated nodes, {} pods each, heartbeat {} s, store {}",
        args.nodes,
        args.pods_per_node,
        args.heartbeat_seconds,
        if args.etcd { "etcd" } else { "sqlite" }
    );

    // Node readiness, followed for the whole run.
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel((0usize, 0usize));
    let follower = tokio::spawn(follow_nodes(client.clone(), ready_tx));
    let deadline = Instant::now() + bound;
    loop {
        let (ready, _) = *ready_rx.borrow();
        if ready >= args.nodes {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {} nodes Ready after {bound:?}",
            args.nodes
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), ready_rx.changed()).await;
    }
    let nodes_ready = started.elapsed();
    let (rss_nodes, _) = apiserver.rss_mib()?;
    println!(
        "{} nodes Ready in {:.1} s; apiserver {rss_nodes:.0} MiB",
        args.nodes,
        nodes_ready.as_secs_f64()
    );

    let replicas = args.nodes * args.pods_per_node;
    let (running_tx, mut running_rx) = tokio::sync::watch::channel(0usize);
    let counter = tokio::spawn(follow_pods(client.clone(), running_tx));
    client
        .api::<Deployment>()
        .create(&moor_integration_tests::light_deployment(APP, replicas))
        .await
        .context("creating the deployment")?;
    let created = Instant::now();
    let deadline = created + bound;
    let mut last_print = Instant::now();
    let all_running = loop {
        let running = *running_rx.borrow();
        if running >= replicas {
            break Some(created.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            let (rss, _) = apiserver.rss_mib()?;
            println!(
                "{:>6.1} s: {running} of {replicas} pods Running; apiserver {rss:.0} MiB",
                created.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), running_rx.changed()).await;
    };
    let running = *running_rx.borrow();
    let (rss, peak) = apiserver.rss_mib()?;
    let (_, not_ready) = *ready_rx.borrow();
    follower.abort();
    counter.abort();
    match all_running {
        Some(took) => println!(
            "all {replicas} pods Running {:.1} s after the Deployment's create: {:.0} pods/s",
            took.as_secs_f64(),
            replicas as f64 / took.as_secs_f64()
        ),
        None => println!("{running} of {replicas} pods Running after {bound:?}"),
    }
    println!(
        "apiserver now {rss:.0} MiB, peak {peak:.0} MiB; nodes ever not Ready after Ready: {not_ready}"
    );
    Ok(json!({
        "benchmark": "scale",
        "store": if args.etcd { "etcd" } else { "sqlite" },
        "nodes": args.nodes,
        "pods": replicas,
        "nodes_ready_seconds": nodes_ready.as_secs_f64(),
        "all_running_seconds": all_running.map(|d| d.as_secs_f64()),
        "running": running,
        "pods_per_second": all_running.map(|d| replicas as f64 / d.as_secs_f64()),
        "apiserver_rss_mib_nodes_ready": rss_nodes,
        "apiserver_rss_mib_end": rss,
        "apiserver_peak_rss_mib": peak,
        "nodes_not_ready_after_ready": not_ready,
    }))
}

/// Keeps `(nodes Ready now, nodes ever not Ready after being Ready)`.
async fn follow_nodes(client: Client, tx: tokio::sync::watch::Sender<(usize, usize)>) {
    let mut ready: HashMap<String, bool> = HashMap::new();
    let mut lapsed: HashSet<String> = HashSet::new();
    let mut events = std::pin::pin!(moor_client::watcher(
        client.api::<Node>(),
        ListParams::default()
    ));
    while let Some(event) = events.next().await {
        let nodes = match event {
            Ok(Event::Applied(node)) => vec![node],
            Ok(Event::Restarted(nodes)) => nodes,
            Ok(Event::Deleted(_)) | Err(_) => continue,
        };
        for node in nodes {
            let name = node.meta().name.clone();
            let now = moor_integration_tests::is_ready(&node);
            if ready.get(&name) == Some(&true) && !now {
                lapsed.insert(name.clone());
            }
            ready.insert(name, now);
        }
        let _ = tx.send((ready.values().filter(|r| **r).count(), lapsed.len()));
    }
}

/// Keeps the number of the deployment's pods Running.
async fn follow_pods(client: Client, tx: tokio::sync::watch::Sender<usize>) {
    let mut running: HashSet<String> = HashSet::new();
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={APP}"));
    let mut events = std::pin::pin!(moor_client::watcher(client.api::<Pod>(), params));
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Applied(pod)) => {
                let name = pod.meta().name.clone();
                if is_running(&pod) {
                    running.insert(name);
                } else {
                    running.remove(&name);
                }
            }
            Ok(Event::Deleted(pod)) => {
                running.remove(&pod.meta().name);
            }
            Ok(Event::Restarted(pods)) => {
                running = pods
                    .iter()
                    .filter(|p| is_running(p))
                    .map(|p| p.meta().name.clone())
                    .collect();
            }
            Err(_) => continue,
        }
        let _ = tx.send(running.len());
    }
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase == "Running")
}
