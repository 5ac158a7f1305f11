//! `moor-bench overlay`: pod to pod across two hosts of the lab
//! (`scripts/lab.sh`), through each network backend asked for, against host
//! to host between the same two hosts' namespaces, in one run.
//!
//! For each backend a fresh two-host lab runs `moor up` on the first host
//! and `moor join` on the second, both with that backend; a pod on each host
//! runs the echo server. The pod path is the client pod's namespace to the
//! server pod's echo port (veth, bridge, the backend, the other host's
//! bridge, veth); the host path is the first host's namespace to an echo
//! server in the second host's namespace (the lab's bridge alone). Rounds
//! alternate A B B A so drift hits both. Each round measures exchanges per
//! second with their latency, then a bulk transfer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Context;
use moor_api::Resource;
use moor_api::core::v1::{Container, Pod, PodSpec};
use moor_api::meta::v1::ObjectMeta;
use moor_client::Client;
use moor_testkit::Lab;
use serde_json::{Value, json};

use crate::proxy::deploy::until;
use crate::proxy::load::{Generator, Shape};
use crate::stats::Samples;

/// Target: pod-to-pod throughput at least this share of host-to-host.
const TARGET_RATIO: f64 = 0.9;
/// Target: the overlay adds at most this to p99, in milliseconds.
const TARGET_ADDED_P99_MS: f64 = 0.1;
/// The pods' raw echo port.
const POD_PORT: u16 = 9000;
/// The host echo server's port.
const HOST_PORT: u16 = 9001;

/// Flags of `moor-bench overlay`.
#[derive(clap::Args)]
pub struct Args {
    /// Network backends to measure, one lab each, in this order.
    #[arg(long, value_delimiter = ',', default_value = "vxlan,host-gw")]
    backend: Vec<String>,
    /// Concurrent persistent connections (each one exchange in flight at most).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Request/response exchanges on each connection per round.
    #[arg(long, default_value_t = 2000)]
    requests_per_connection: usize,
    /// Bytes in each request and in each response.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Megabytes sent (and echoed back) by each round's bulk transfer.
    #[arg(long, default_value_t = 256)]
    bulk_megabytes: usize,
    /// Measured rounds per path, after one warm-up round each.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Wall-clock cap on one round's exchanges, in seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Threads of each load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The moor binary (default: the one beside moor-bench).
    #[arg(long)]
    moor: Option<PathBuf>,
}

/// One path's figures over its rounds.
#[derive(Default)]
struct Figures {
    samples: Samples,
    seconds: f64,
    rates: Vec<f64>,
    bulk: Vec<f64>,
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.connections > 0 && args.requests_per_connection > 0 && args.rounds > 0,
        "--connections, --requests-per-connection and --rounds must be at least 1"
    );
    let moor = crate::moor_binary(args.moor.as_deref())?;
    println!(
        "moor-bench overlay: {} connections x {} exchanges of {} bytes each way, then {} MB \
         each way in bulk, per round; {} rounds per path after a warm-up round each",
        args.connections, args.requests_per_connection, args.size, args.bulk_megabytes, args.rounds
    );
    let mut backends = Vec::new();
    for backend in &args.backend {
        backends.push(measure(&args, &moor, backend).await?);
    }
    Ok(json!({
        "benchmark": "overlay",
        "connections": args.connections,
        "requests_per_connection": args.requests_per_connection,
        "size": args.size,
        "bulk_megabytes": args.bulk_megabytes,
        "rounds": args.rounds,
        "backends": backends,
    }))
}

/// A lab and a cluster on it with `backend`, its pods, and the rounds.
async fn measure(args: &Args, moor: &Path, backend: &str) -> anyhow::Result<Value> {
    let lab = tokio::task::spawn_blocking(|| {
        Lab::up("bench-ov", 2, &["moor/pause:0.1", "moor/echo:0.1"]).map_err(anyhow::Error::msg)
    })
    .await??;
    let hosts = lab.hosts().to_vec();
    let home = tempfile::tempdir()?;
    let listen = format!("{}:6443", hosts[0].address);
    let mut processes = Processes(Vec::new());
    processes.0.push(spawn(
        lab.command(0, moor),
        home.path(),
        &[
            "up",
            "--no-registry",
            "--listen",
            &listen,
            "--node-name",
            "h1",
            "--network-backend",
            backend,
            "--log",
            "warn",
        ],
    )?);
    let config = home.path().join(".moor/config");
    until("moor up to write its context", async || config.exists()).await?;
    let target = moorctl::config::target(None, None, &config)?;
    let client = Client::connect(&target.server, &target.credentials)?;
    until("the first node to be Ready", async || {
        moor_integration_tests::ready_nodes(&client).await.len() == 1
    })
    .await?;
    let token = std::process::Command::new(moor)
        .args(["token", "create", "--ttl", "10m"])
        .env("HOME", home.path())
        .output()?;
    anyhow::ensure!(token.status.success(), "moor token create failed");
    let token = String::from_utf8(token.stdout)?;
    let data = home.path().join("h2");
    processes.0.push(spawn(
        lab.command(1, moor),
        home.path(),
        &[
            "join",
            &format!("https://{listen}"),
            "--token",
            token.trim(),
            "--name",
            "h2",
            "--data-dir",
            data.to_str().context("a UTF-8 temporary directory")?,
            "--network-backend",
            backend,
            "--log",
            "warn",
        ],
    )?);
    until("both nodes to be Ready", async || {
        moor_integration_tests::ready_nodes(&client).await.len() == 2
    })
    .await?;

    let pods = client.api::<Pod>();
    pods.create(&echo_pod("client", "h1")).await?;
    pods.create(&echo_pod("server", "h2")).await?;
    let mut server_ip = None;
    until("both pods to run", async || {
        server_ip = pod_ip(&client, "server").await;
        server_ip.is_some() && pod_ip(&client, "client").await.is_some()
    })
    .await?;
    let server_ip = server_ip.context("the server pod has no IP")?;
    let client_pid = sandbox_pid(&hosts[0].docker_host, "client")?;

    // The host path's echo server, in the second host's namespace.
    let host_server = SocketAddr::from((hosts[1].address, HOST_PORT));
    let server_runtime = Generator::in_namespace(1, &hosts[1].netns)?;
    server_runtime.serve_echo(host_server).await?;

    let pod_generator = Generator::in_namespace(
        args.client_threads,
        Path::new(&format!("/proc/{client_pid}/ns/net")),
    )?;
    let host_generator = Generator::in_namespace(args.client_threads, &hosts[0].netns)?;
    let pod_server = SocketAddr::from((server_ip, POD_PORT));
    until("the pod echo port to answer", async || {
        pod_generator.answers(pod_server, args.size).await
    })
    .await?;
    until("the host echo port to answer", async || {
        host_generator.answers(host_server, args.size).await
    })
    .await?;

    let shape = Shape {
        connections: args.connections,
        per_connection: args.requests_per_connection,
        size: args.size,
        cap: Duration::from_secs(args.max_seconds),
    };
    let bulk_bytes = args.bulk_megabytes << 20;
    for (generator, addr) in [(&host_generator, host_server), (&pod_generator, pod_server)] {
        generator.round(addr, shape).await?;
        generator.bulk(addr, bulk_bytes).await?;
    }
    println!();
    println!(
        "backend {backend}: pod {pod_server} from pod {client_pid}'s namespace; host {host_server} from host 1"
    );
    println!(
        "{:<6} {:<6} {:>12} {:>8} {:>10}",
        "ROUND", "PATH", "EXCHANGES/S", "P99 MS", "BULK MB/S"
    );
    let (mut host, mut pod) = (Figures::default(), Figures::default());
    for r in 0..args.rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for via_pods in order {
            let (name, generator, addr, path) = if via_pods {
                ("pod", &pod_generator, pod_server, &mut pod)
            } else {
                ("host", &host_generator, host_server, &mut host)
            };
            let mut round = generator.round(addr, shape).await?;
            let seconds = round.elapsed.as_secs_f64();
            let rate = round.samples.len() as f64 / seconds;
            let p99 = round.samples.quantile_ms(0.99);
            let took = generator.bulk(addr, bulk_bytes).await?;
            let mbps = args.bulk_megabytes as f64 / took.as_secs_f64();
            path.seconds += seconds;
            path.rates.push(rate);
            path.bulk.push(mbps);
            path.samples.extend(round.samples);
            println!(
                "{:<6} {name:<6} {rate:>12.0} {p99:>8.3} {mbps:>10.1}",
                r + 1
            );
        }
    }
    let summary = report(backend, &mut host, &mut pod);
    drop(processes);
    drop(lab);
    Ok(summary)
}

fn report(backend: &str, host: &mut Figures, pod: &mut Figures) -> Value {
    let rate = |p: &Figures| p.samples.len() as f64 / p.seconds;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (host_rate, pod_rate) = (rate(host), rate(pod));
    let (host_p99, pod_p99) = (
        host.samples.quantile_ms(0.99),
        pod.samples.quantile_ms(0.99),
    );
    let (host_bulk, pod_bulk) = (mean(&host.bulk), mean(&pod.bulk));
    let exchange_ratio = pod_rate / host_rate;
    let bulk_ratio = pod_bulk / host_bulk;
    let added_p99 = pod_p99 - host_p99;
    let ratio_met = exchange_ratio >= TARGET_RATIO && bulk_ratio >= TARGET_RATIO;
    let p99_met = added_p99 <= TARGET_ADDED_P99_MS;
    println!();
    println!(
        "{backend}: exchanges pod/host {:.1}% ({pod_rate:.0}/s vs {host_rate:.0}/s), bulk {:.1}% \
         ({pod_bulk:.0} vs {host_bulk:.0} MB/s), target >= {:.0}%: {}",
        exchange_ratio * 100.0,
        bulk_ratio * 100.0,
        TARGET_RATIO * 100.0,
        verdict(ratio_met)
    );
    println!(
        "{backend}: p99 pod {pod_p99:.3} ms, host {host_p99:.3} ms, added {added_p99:.3} ms, \
         target <= {TARGET_ADDED_P99_MS} ms: {}",
        verdict(p99_met)
    );
    json!({
        "backend": backend,
        "host": {"exchanges_per_second": round1(host_rate), "p99_ms": round3(host_p99), "bulk_mb_per_second": round1(host_bulk), "rounds": host.rates, "bulk_rounds": host.bulk},
        "pod": {"exchanges_per_second": round1(pod_rate), "p99_ms": round3(pod_p99), "bulk_mb_per_second": round1(pod_bulk), "rounds": pod.rates, "bulk_rounds": pod.bulk},
        "exchange_ratio": round3(exchange_ratio),
        "bulk_ratio": round3(bulk_ratio),
        "added_p99_ms": round3(added_p99),
        "ratio_target_met": ratio_met,
        "p99_target_met": p99_met,
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Processes killed when dropped (before the lab goes).
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(mut command: std::process::Command, home: &Path, args: &[&str]) -> anyhow::Result<Child> {
    Ok(command
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_CONFIG")
        .stdout(Stdio::null())
        .spawn()?)
}

fn echo_pod(name: &str, node: &str) -> Pod {
    let mut pod = Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            node_name: node.into(),
            containers: vec![Container {
                name: "echo".into(),
                image: "moor/echo:0.1".into(),
                image_pull_policy: "Never".into(),
                args: ["serve", "--port", "8080", "--echo-port", "9000"]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.set_type_meta();
    pod
}

async fn pod_ip(client: &Client, name: &str) -> Option<Ipv4Addr> {
    let pod = client.api::<Pod>().get("default", name).await.ok()?;
    let status = pod.status?;
    (status.phase == "Running")
        .then(|| status.pod_ip.parse().ok())
        .flatten()
}

/// The process id of pod `name`'s sandbox on the dockerd at `docker_host`.
fn sandbox_pid(docker_host: &str, name: &str) -> anyhow::Result<u32> {
    let docker = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new("docker")
            .arg("-H")
            .arg(docker_host)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label={}", moor_runtime::labels::SANDBOX),
        "--filter",
        &format!("label={}={name}", moor_runtime::labels::POD_NAME),
    ])?;
    let id = id
        .lines()
        .next()
        .context("no sandbox container")?
        .to_owned();
    Ok(docker(&["inspect", "-f", "{{.State.Pid}}", &id])?.parse()?)
}
