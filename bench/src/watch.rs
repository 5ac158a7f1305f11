//! `moor-bench watch`: one writer changes an object at a steady rate while
//! many watchers receive every change; measures delivery latency (write sent
//! to event received) and the apiserver's memory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use moor_api::core::v1::ConfigMap;
use moor_api::meta::v1::{EventType, ObjectMeta};
use moor_client::{Client, ListParams, WatchParams};
use serde_json::{Value, json};

use crate::server::Apiserver;
use crate::stats::Samples;

/// Flags of `moor-bench watch`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent watchers.
    #[arg(long, default_value_t = 1000)]
    pub(crate) watchers: usize,
    /// Changes per second written.
    #[arg(long, default_value_t = 100)]
    pub(crate) rate: u64,
    /// Seconds of writing.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Client connections the watchers share (HTTP/2 multiplexes the rest).
    #[arg(long, default_value_t = 20)]
    pub(crate) connections: usize,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn config_map(stamp: u128) -> ConfigMap {
    let mut cm = ConfigMap {
        metadata: Some(ObjectMeta {
            name: "bench-watch".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cm.data.insert("sent".into(), stamp.to_string());
    cm
}

/// What one fan-out run measured.
pub(crate) struct FanOut {
    /// Delivery latency of every event received.
    pub(crate) samples: Samples,
    /// Watchers that received fewer events than were written.
    pub(crate) short: usize,
    /// Events written.
    pub(crate) expected: usize,
    /// Apiserver RSS with the watchers connected, after the load, and peak (MiB).
    pub(crate) rss: (f64, f64, f64),
}

/// Opens `args.watchers` watches on `server`, writes `args.rate` changes a
/// second for `args.seconds`, and collects every delivery.
pub(crate) async fn fan_out(server: &Apiserver, args: &Args) -> anyhow::Result<FanOut> {
    let writer = server.client()?.api::<ConfigMap>();
    let created = writer.create(&config_map(now_nanos())).await?;
    let from = created
        .metadata
        .map(|m| m.resource_version)
        .unwrap_or_default();
    let expected = (args.rate * args.seconds) as usize;

    let clients: Vec<Client> = (0..args.connections.max(1))
        .map(|_| server.client())
        .collect::<Result<_, _>>()?;
    let mut watchers = tokio::task::JoinSet::new();
    for w in 0..args.watchers {
        let api = clients[w % clients.len()].api::<ConfigMap>();
        let params = WatchParams {
            filters: ListParams::default().namespace("default"),
            resource_version: from.clone(),
            allow_bookmarks: false,
        };
        let mut stream = api.watch(&params).await?;
        watchers.spawn(async move {
            let mut samples = Samples::default();
            while samples.len() < expected {
                let Some(event) = stream.next().await else {
                    break;
                };
                let event = event?;
                if event.r#type != EventType::Modified as i32 {
                    continue;
                }
                let received = now_nanos();
                let sent: u128 = event
                    .object
                    .and_then(|o| o.data.get("sent").and_then(|s| s.parse().ok()))
                    .unwrap_or(received);
                samples.push(Duration::from_nanos(received.saturating_sub(sent) as u64));
            }
            anyhow::Ok(samples)
        });
    }
    let (connected_rss, _) = server.rss_mib()?;

    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / args.rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..expected {
        ticker.tick().await;
        writer.update(&config_map(now_nanos())).await?;
    }
    let (busy_rss, peak_rss) = server.rss_mib()?;
    let mut all = Samples::default();
    let mut short = 0;
    while let Some(done) = watchers.join_next().await {
        let samples = done??;
        if samples.len() < expected {
            short += 1;
        }
        all.extend(samples);
    }
    Ok(FanOut {
        samples: all,
        short,
        expected,
        rss: (connected_rss, busy_rss, peak_rss),
    })
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    let server = Apiserver::start(None).await?;
    let (idle_rss, _) = server.rss_mib()?;
    println!(
        "moor-bench watch: {} watchers over {} connections, {} changes/s for {} s",
        args.watchers,
        args.connections.max(1),
        args.rate,
        args.seconds
    );
    let FanOut {
        samples: mut all,
        short,
        expected,
        rss: (connected_rss, busy_rss, peak_rss),
    } = fan_out(&server, &args).await?;
    let (p50, p99, max) = (
        all.quantile_ms(0.5),
        all.quantile_ms(0.99),
        all.quantile_ms(1.0),
    );
    println!(
        "deliveries          {} of {} ({} watchers short)",
        all.len(),
        expected * args.watchers,
        short
    );
    println!("delivery latency    p50 {p50:.2} ms   p99 {p99:.2} ms   max {max:.2} ms");
    println!(
        "apiserver RSS       idle {idle_rss:.1} MiB   {} watchers {connected_rss:.1} MiB   after load {busy_rss:.1} MiB   peak {peak_rss:.1} MiB",
        args.watchers
    );
    Ok(json!({
        "bench": "watch",
        "watchers": args.watchers,
        "rate": args.rate,
        "seconds": args.seconds,
        "deliveries": all.len(),
        "expected": expected * args.watchers,
        "p50_ms": (p50 * 100.0).round() / 100.0,
        "p99_ms": (p99 * 100.0).round() / 100.0,
        "max_ms": (max * 100.0).round() / 100.0,
        "rss_idle_mib": (idle_rss * 10.0).round() / 10.0,
        "rss_watchers_mib": (connected_rss * 10.0).round() / 10.0,
        "rss_peak_mib": (peak_rss * 10.0).round() / 10.0,
    }))
}
