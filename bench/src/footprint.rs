//! `moor-bench footprint`: memory of `moor up` (the whole cluster in one
//! process) idle and with pods running, and the time from start to a Ready
//! node. For comparison, the servers people pick instead publish about
//! 768 MB to 1.6 GB (k3s server) and 510 MB (k0s controller).

use std::time::Duration;

use moor_api::core::v1::{Container, Node, Pod, PodSpec};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, DeleteParams, ListParams};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::server::{Process, rss_mib};

/// Flags of `moor-bench footprint`.
#[derive(clap::Args)]
pub struct Args {
    /// Pods to run for the loaded figure.
    #[arg(long, default_value_t = 10)]
    pods: usize,
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: format!("footprint-{i}"),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: "moor/echo:0.1".into(),
                image_pull_policy: "Never".into(),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    let home = tempfile::tempdir()?;
    let port = moor_testkit::free_port();
    let node = format!("footprint-{}", std::process::id());
    let started = Instant::now();
    let up = Process::moor_with_home(
        &[
            "up",
            // Moor's own footprint, without the registry's process.
            "--no-registry",
            // Plain text: the client below has no credentials.
            "--insecure",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            &node,
            "--log",
            "warn",
        ],
        home.path(),
    )?;
    let client = Client::new(&format!("http://127.0.0.1:{port}"))?;
    let nodes = client.api::<Node>();
    until("a Ready node", async || {
        nodes
            .get("", &node)
            .await
            .ok()
            .and_then(|n| n.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == "True")
            })
    })
    .await?;
    let ready_after = started.elapsed();
    // Let start-up allocations settle before the idle figure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = rss_mib(up.pid()?)?;

    let pods = client.api::<Pod>();
    for i in 0..args.pods {
        pods.create(&pod(i)).await?;
    }
    until("every pod Running", async || {
        let (items, _) = pods
            .list(&ListParams::default().namespace("default"))
            .await
            .unwrap_or_default();
        items
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
            .count()
            == args.pods
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (loaded, peak) = rss_mib(up.pid()?)?;
    for i in 0..args.pods {
        pods.delete(
            "default",
            &format!("footprint-{i}"),
            &DeleteParams::default(),
        )
        .await?;
    }
    until("the pods to go", async || {
        pods.list(&ListParams::default().namespace("default"))
            .await
            .map(|(items, _)| items.is_empty())
            .unwrap_or(false)
    })
    .await?;
    drop(up);

    println!(
        "moor-bench footprint: `moor up` (apiserver, scheduler, controller-manager, node agent, proxy and DNS in one process)"
    );
    println!("start to Ready node   {:.2} s", ready_after.as_secs_f64());
    println!("RSS idle, no pods     {idle:.1} MiB");
    println!(
        "RSS with {} pods       {loaded:.1} MiB (peak {peak:.1} MiB)",
        args.pods
    );
    Ok(json!({
        "bench": "footprint",
        "ready_seconds": (ready_after.as_secs_f64() * 100.0).round() / 100.0,
        "rss_idle_mib": (idle * 10.0).round() / 10.0,
        "rss_pods_mib": (loaded * 10.0).round() / 10.0,
        "rss_peak_mib": (peak * 10.0).round() / 10.0,
        "pods": args.pods,
    }))
}
