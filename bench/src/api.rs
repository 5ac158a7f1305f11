//! `moor-bench api`: creates per second and latency through the API, on the
//! embedded store and on etcd, beside raw etcd puts of the same bytes at the
//! same concurrency, and raw etcd create-if-absent transactions (what the
//! apiserver sends for a create), which split the gap into etcd's share and
//! the apiserver's.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use moor_api::core::v1::{Container, Pod, PodSpec};
use moor_api::meta::v1::ObjectMeta;
use moor_testkit::EtcdServer;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::server::Apiserver;
use crate::stats::Samples;

/// Flags of `moor-bench api`.
#[derive(clap::Args)]
pub struct Args {
    /// Creates per measurement.
    #[arg(long, default_value_t = 3000)]
    creates: usize,
    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
}

/// One measured configuration.
pub(crate) struct Figure {
    pub(crate) rate: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

fn pod(name: String) -> Pod {
    let mut labels = std::collections::HashMap::new();
    labels.insert("app".to_string(), "bench".to_string());
    Pod {
        metadata: Some(ObjectMeta {
            name,
            labels,
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: "moor/echo:0.1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs `total` operations over `concurrency` workers; `op(i)` does one.
async fn measure<F, Fut>(total: usize, concurrency: usize, op: F) -> anyhow::Result<Figure>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut samples = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                op(i).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Figure {
        rate: all.len() as f64 / elapsed,
        p50: all.quantile_ms(0.5),
        p99: all.quantile_ms(0.99),
    })
}

pub(crate) async fn api_creates(
    server: &Apiserver,
    run: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Figure> {
    let pods = server.client()?.api::<Pod>();
    let run = run.to_string();
    measure(total, concurrency, move |i| {
        let pods = pods.clone();
        let name = format!("{run}-{i}");
        async move {
            pods.create(&pod(name)).await?;
            Ok(())
        }
    })
    .await
}

/// How a raw etcd write is sent.
#[derive(Clone, Copy)]
enum RawWrite {
    /// A bare put: the baseline of the target.
    Put,
    /// What the apiserver's etcd store sends for a create: a put
    /// conditional on the key being absent.
    CreateTxn,
}

/// Raw etcd writes of `bytes` to fresh keys, straight from this process.
async fn etcd_writes(
    endpoint: &str,
    bytes: Vec<u8>,
    run: &str,
    write: RawWrite,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Figure> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let run = run.to_string();
    measure(total, concurrency, move |i| {
        let mut kv = client.kv_client();
        let key = format!("/raw/pods/default/{run}-{i}");
        let value = bytes.clone();
        async move {
            match write {
                RawWrite::Put => {
                    kv.put(key, value, None).await?;
                }
                RawWrite::CreateTxn => {
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, value, None)]);
                    anyhow::ensure!(kv.txn(txn).await?.succeeded(), "key existed");
                }
            }
            Ok(())
        }
    })
    .await
}

fn print(name: &str, concurrency: usize, f: &Figure) {
    println!(
        "{name:<22} c={concurrency:<3} {:>9.0} creates/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        f.rate, f.p50, f.p99
    );
}

fn entry(f: &Figure) -> Value {
    json!({"per_second": f.rate.round(), "p50_ms": (f.p50 * 100.0).round() / 100.0, "p99_ms": (f.p99 * 100.0).round() / 100.0})
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    let etcd = EtcdServer::start().await?;
    let mut summary = serde_json::Map::new();
    // The stored bytes of a typical pod, as the apiserver writes them.
    let sample = {
        let server = Apiserver::start(None).await?;
        let pods = moor_client::Client::new(&server.url)?.api::<Pod>();
        let mut created = pods.create(&pod("sample".into())).await?;
        if let Some(meta) = created.metadata.as_mut() {
            meta.resource_version.clear();
        }
        prost::Message::encode_to_vec(&created)
    };
    println!(
        "moor-bench api: {} creates per figure, pod of {} bytes",
        args.creates,
        sample.len()
    );
    for &c in &args.concurrency {
        let sqlite = Apiserver::start(None).await?;
        let on_sqlite = api_creates(&sqlite, "s", args.creates, c).await?;
        drop(sqlite);
        let on_etcd_server = Apiserver::start(Some(&etcd.endpoint())).await?;
        let on_etcd = api_creates(&on_etcd_server, &format!("e{c}"), args.creates, c).await?;
        drop(on_etcd_server);
        let raw = etcd_writes(
            &etcd.endpoint(),
            sample.clone(),
            &format!("r{c}"),
            RawWrite::Put,
            args.creates,
            c,
        )
        .await?;
        let txn = etcd_writes(
            &etcd.endpoint(),
            sample.clone(),
            &format!("t{c}"),
            RawWrite::CreateTxn,
            args.creates,
            c,
        )
        .await?;
        print("api on sqlite", c, &on_sqlite);
        print("api on etcd", c, &on_etcd);
        print("raw etcd put (baseline)", c, &raw);
        print("raw etcd txn create", c, &txn);
        let ratio = on_etcd.rate / raw.rate;
        println!(
            "{:<22} c={c:<3} {:>8.0}% of raw etcd put rate",
            "api on etcd",
            ratio * 100.0
        );
        summary.insert(
            format!("c{c}"),
            json!({
                "api_sqlite": entry(&on_sqlite),
                "api_etcd": entry(&on_etcd),
                "raw_etcd_put": entry(&raw),
                "raw_etcd_txn_create": entry(&txn),
                "api_etcd_vs_raw": (ratio * 1000.0).round() / 1000.0,
            }),
        );
    }
    Ok(json!({"bench": "api", "creates": args.creates, "figures": summary}))
}
