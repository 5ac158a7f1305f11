//! `moor-bench scheduler`: pods per second from create to bound, observed
//! through a watch, with a real `moor scheduler` process against a real
//! apiserver over many nodes (Node objects as simulated nodes register them).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use moor_api::core::v1::{
    Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use moor_api::meta::v1::{EventType, ObjectMeta};
use moor_client::{Api, Client, ListParams, WatchParams};
use moor_testkit::EtcdServer;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::server::{Apiserver, Process};
use crate::stats::Samples;

/// Flags of `moor-bench scheduler`.
#[derive(clap::Args)]
pub struct Args {
    /// Simulated nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Concurrent clients creating nodes and pods.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn node(i: usize) -> Node {
    let resources: HashMap<String, String> = [("cpu", "4"), ("memory", "16Gi"), ("pods", "110")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Node {
        metadata: Some(ObjectMeta {
            name: format!("hollow-{i}"),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: resources.clone(),
            allocatable: resources,
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(i: usize) -> Pod {
    let requests: HashMap<String, String> = [("cpu", "10m"), ("memory", "16Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Pod {
        metadata: Some(ObjectMeta {
            name: format!("p-{i}"),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: "moor/echo:0.1".into(),
                resources: Some(ResourceRequirements {
                    requests,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `count` objects from `make` over `concurrency` clients.
async fn create_all<K: moor_api::Resource>(
    api: Api<K>,
    count: usize,
    concurrency: usize,
    make: fn(usize) -> K,
    sent: Option<Arc<std::sync::Mutex<Vec<Option<Instant>>>>>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (api, next, sent) = (api.clone(), next.clone(), sent.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                if let Some(sent) = &sent {
                    // A short critical section without an await.
                    if let Ok(mut sent) = sent.lock() {
                        sent[i] = Some(Instant::now());
                    }
                }
                api.create(&make(i)).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

async fn measure(args: &Args, etcd: Option<&str>) -> anyhow::Result<Value> {
    let server = Apiserver::start(etcd).await?;
    let client = Client::new(&server.url)?;
    let started = Instant::now();
    create_all(
        client.api::<Node>(),
        args.nodes,
        args.concurrency,
        node,
        None,
    )
    .await?;
    println!(
        "  {} nodes registered in {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    let scheduler = Process::moor(&["scheduler", "--server", &server.url, "--log", "warn"])?;

    let pods = client.api::<Pod>();
    let params = WatchParams {
        filters: ListParams::default().namespace("default"),
        ..Default::default()
    };
    let (_, rv) = pods
        .list(&ListParams::default().namespace("default"))
        .await?;
    let mut stream = pods
        .watch(&WatchParams {
            resource_version: rv,
            ..params
        })
        .await?;
    let sent = Arc::new(std::sync::Mutex::new(vec![None; args.pods]));
    let creator = tokio::spawn(create_all(
        pods.clone(),
        args.pods,
        args.concurrency,
        pod,
        Some(sent.clone()),
    ));
    let begin = Instant::now();
    let mut bound = vec![None; args.pods];
    let mut count = 0;
    while count < args.pods {
        let Some(event) = stream.next().await else {
            anyhow::bail!("watch ended after {count} bound pods")
        };
        let event = event?;
        if event.r#type != EventType::Modified as i32 {
            continue;
        }
        let Some(pod) = event.object else { continue };
        let name = pod.metadata.map(|m| m.name).unwrap_or_default();
        let on_node = pod.spec.is_some_and(|s| !s.node_name.is_empty());
        let index: Option<usize> = name.strip_prefix("p-").and_then(|i| i.parse().ok());
        if let (true, Some(i)) = (on_node, index)
            && i < bound.len()
            && bound[i].is_none()
        {
            bound[i] = Some(Instant::now());
            count += 1;
        }
    }
    let elapsed = begin.elapsed().as_secs_f64();
    creator.await??;
    drop(scheduler);
    let mut latency = Samples::default();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    for (s, b) in sent.iter().zip(&bound) {
        if let (Some(s), Some(b)) = (s, b) {
            latency.push(b.saturating_duration_since(*s));
        }
    }
    let rate = args.pods as f64 / elapsed;
    let (p50, p99) = (latency.quantile_ms(0.5), latency.quantile_ms(0.99));
    Ok(
        json!({"pods_per_second": rate.round(), "p50_ms": (p50 * 10.0).round() / 10.0, "p99_ms": (p99 * 10.0).round() / 10.0, "seconds": (elapsed * 10.0).round() / 10.0}),
    )
}

/// Runs the benchmark on both stores and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    println!(
        "moor-bench scheduler: {} nodes, {} pods, {} concurrent creators",
        args.nodes, args.pods, args.concurrency
    );
    println!("apiserver on sqlite:");
    let sqlite = measure(&args, None).await?;
    println!("  {sqlite}");
    let etcd = EtcdServer::start().await?;
    println!("apiserver on etcd:");
    let on_etcd = measure(&args, Some(&etcd.endpoint())).await?;
    println!("  {on_etcd}");
    Ok(
        json!({"bench": "scheduler", "nodes": args.nodes, "pods": args.pods, "sqlite": sqlite, "etcd": on_etcd}),
    )
}
