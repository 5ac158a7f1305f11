//! `moor-bench proxy`: exchanges per second and latency through the service
//! proxy (cluster IP) beside the same echo pod reached directly (pod IP over
//! the Docker bridge), in one run, for each proxy mode asked for (userspace,
//! iptables): one phase per mode, its rounds interleaved with direct rounds
//! so drift hits both, each mode compared with its own phase's direct rounds.
//!
//! The whole cluster runs in this process (`moor_integration_tests::Cluster`),
//! proxy included; the load generator has its own runtime and threads.

mod cpu;
pub(crate) mod deploy;
pub(crate) mod load;

use std::time::Duration;

use moor_proxy::Mode;
use serde_json::{Value, json};

use self::cpu::Cpu;
use self::load::{Generator, Round, Shape};
use crate::stats::Samples;

/// Target: proxied throughput at least this share of direct.
const TARGET_RATIO: f64 = 0.8;
/// Target: the proxy adds less than this to p99, in milliseconds.
const TARGET_ADDED_P99_MS: f64 = 1.0;

/// Flags of `moor-bench proxy`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent persistent connections (each one exchange in flight at most).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Request/response exchanges on each connection per round.
    #[arg(long, default_value_t = 2000)]
    requests_per_connection: usize,
    /// Measured rounds per path (direct and proxy interleaved), after one warm-up round each.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Bytes in each request and in each response.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Wall-clock cap on one round, in seconds (a capped round counts what it finished).
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Proxy modes to measure, one phase each, in this order (userspace, iptables).
    #[arg(long, value_delimiter = ',', default_value = "userspace,iptables")]
    mode: Vec<Mode>,
}

/// One mode's phase: its proxied rounds and the direct rounds beside them.
struct Phase {
    mode: Mode,
    direct: Path,
    proxy: Path,
}

/// One path's figures, summed over its rounds.
#[derive(Default)]
struct Path {
    samples: Samples,
    seconds: f64,
    cpu: Cpu,
    rates: Vec<f64>,
    capped: bool,
}

// === impl Path ===

impl Path {
    fn add(&mut self, mut round: Round, cpu: Cpu) -> (f64, f64) {
        let seconds = round.elapsed.as_secs_f64();
        let rate = round.samples.len() as f64 / seconds;
        let p99 = round.samples.quantile_ms(0.99);
        self.seconds += seconds;
        self.rates.push(rate);
        self.cpu += cpu;
        self.capped |= round.capped;
        self.samples.extend(round.samples);
        (rate, p99)
    }

    fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.seconds
    }

    /// CPU milliseconds per 1000 exchanges, given ticks per second.
    fn per_thousand(&self, ticks: u64, hz: f64) -> f64 {
        ticks as f64 / hz * 1000.0 / (self.samples.len() as f64 / 1000.0)
    }
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.connections > 0 && args.requests_per_connection > 0 && args.rounds > 0,
        "--connections, --requests-per-connection and --rounds must be at least 1"
    );
    crate::quiet_logs();
    anyhow::ensure!(!args.mode.is_empty(), "--mode needs at least one mode");
    let mut cluster = moor_integration_tests::Cluster::start("bench-proxy", None).await?;
    let result = measure(&mut cluster, &args).await;
    cluster.stop().await;
    result
}

async fn measure(
    cluster: &mut moor_integration_tests::Cluster,
    args: &Args,
) -> anyhow::Result<Value> {
    let generator = Generator::new(args.client_threads)?;
    let echo = deploy::echo(cluster, &generator, args.size).await?;
    let shape = Shape {
        connections: args.connections,
        per_connection: args.requests_per_connection,
        size: args.size,
        cap: Duration::from_secs(args.max_seconds),
    };
    let hz = clock_ticks_per_second();
    println!(
        "moor-bench proxy: {} connections x {} exchanges of {} bytes each way per round, \
         {} rounds per path after a warm-up round each",
        args.connections, args.requests_per_connection, args.size, args.rounds
    );
    println!(
        "direct: pod {}   proxy: cluster IP {} (the proxy runs in this process)",
        echo.direct, echo.service
    );

    // The control plane's own background, to read the CPU split against.
    let before = Cpu::read(echo.pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = Cpu::read(echo.pid)? - before;
    println!(
        "idle, no load: moor {:.1}% of a core, machine {:.1}% busy",
        idle.moor as f64 / hz / 2.0 * 100.0,
        idle.busy as f64 / idle.total.max(1) as f64 * 100.0
    );

    let mut phases = Vec::new();
    for &mode in &args.mode {
        cluster.set_proxy_mode(mode).await;
        deploy::until(
            &format!("the cluster IP to echo in {mode} mode"),
            async || generator.answers(echo.service, args.size).await,
        )
        .await?;
        phases.push(phase(mode, &generator, &echo, shape, args.rounds).await?);
    }
    Ok(report(args, &echo, &mut phases, hz))
}

/// One mode's warm-up and rounds, direct and proxied interleaved.
async fn phase(
    mode: Mode,
    generator: &Generator,
    echo: &deploy::Echo,
    shape: Shape,
    rounds: usize,
) -> anyhow::Result<Phase> {
    for addr in [echo.direct, echo.service] {
        generator.round(addr, shape).await?;
    }
    let mut phase = Phase {
        mode,
        direct: Path::default(),
        proxy: Path::default(),
    };
    let name = mode.to_string();
    println!();
    println!(
        "{:<6} {:<9} {:>12} {:>8}",
        "ROUND", "PATH", "EXCHANGES/S", "P99 MS"
    );
    for r in 0..rounds {
        // A B B A ...: a linear drift over the phase cancels out.
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for via_proxy in order {
            let (name, addr, path) = if via_proxy {
                (name.as_str(), echo.service, &mut phase.proxy)
            } else {
                ("direct", echo.direct, &mut phase.direct)
            };
            let before = Cpu::read(echo.pid)?;
            let round = generator.round(addr, shape).await?;
            let cpu = Cpu::read(echo.pid)? - before;
            let (rate, p99) = path.add(round, cpu);
            println!("{:<6} {name:<9} {rate:>12.0} {p99:>8.3}", r + 1);
        }
    }
    Ok(phase)
}

fn report(args: &Args, echo: &deploy::Echo, phases: &mut [Phase], hz: f64) -> Value {
    println!();
    println!(
        "{:<18} {:>10} {:>12} {:>8} {:>8} {:>9}",
        "PATH", "EXCHANGES", "EXCHANGES/S", "P50 MS", "P99 MS", "P99.9 MS"
    );
    let mut out = Vec::new();
    for phase in phases.iter_mut() {
        let mode = phase.mode;
        let direct = figures(&format!("direct ({mode})"), &mut phase.direct);
        let proxy = figures(&mode.to_string(), &mut phase.proxy);
        out.push((mode, direct, proxy));
    }
    let mut json_phases = Vec::new();
    for (phase, (mode, direct, proxy)) in phases.iter().zip(&out) {
        let ratio = proxy.0 / direct.0;
        let round_ratios: Vec<f64> = phase
            .proxy
            .rates
            .iter()
            .zip(&phase.direct.rates)
            .map(|(p, d)| p / d)
            .collect();
        let low = round_ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let high = round_ratios.iter().copied().fold(0.0, f64::max);
        let added_p99 = proxy.2 - direct.2;
        let ratio_met = ratio >= TARGET_RATIO;
        let p99_met = added_p99 < TARGET_ADDED_P99_MS;
        println!();
        println!(
            "{mode}/direct throughput {:.1}% (rounds {:.1}%..{:.1}%), target >= {:.0}%: {}",
            ratio * 100.0,
            low * 100.0,
            high * 100.0,
            TARGET_RATIO * 100.0,
            verdict(ratio_met)
        );
        println!(
            "{mode}: added p99 {added_p99:.3} ms, target < {TARGET_ADDED_P99_MS} ms: {}",
            verdict(p99_met)
        );
        json_phases.push(json!({
            "mode": mode.to_string(),
            "direct": entry(*direct, &phase.direct, hz),
            "proxy": entry(*proxy, &phase.proxy, hz),
            "throughput_ratio": round3(ratio),
            "added_p99_ms": round3(added_p99),
            "ratio_target_met": ratio_met,
            "p99_target_met": p99_met,
        }));
    }
    println!();
    println!(
        "CPU ms per 1000 exchanges (2 cores; `moor` is the proxy plus the idle control plane)"
    );
    println!(
        "{:<18} {:>8} {:>6} {:>6} {:>8} {:>6} {:>9} {:>13}",
        "PATH", "LOADGEN", "MOOR", "ECHO", "SOFTIRQ", "OTHER", "MACHINE", "MACHINE BUSY"
    );
    for phase in phases.iter() {
        let mode = phase.mode;
        for (name, path) in [
            (format!("direct ({mode})"), &phase.direct),
            (mode.to_string(), &phase.proxy),
        ] {
            let c = cpu(path, hz);
            println!(
                "{name:<18} {:>8.1} {:>6.1} {:>6.1} {:>8.1} {:>6.1} {:>9.1} {:>12.0}%",
                c.load, c.moor, c.echo, c.softirq, c.other, c.machine, c.busy
            );
        }
    }
    json!({
        "bench": "proxy",
        "connections": args.connections,
        "requests_per_connection": args.requests_per_connection,
        "rounds": args.rounds,
        "size": args.size,
        "direct_addr": echo.direct.to_string(),
        "service_addr": echo.service.to_string(),
        "phases": json_phases,
    })
}

/// Rate, p50, p99, p99.9 of a path.
type Figures = (f64, f64, f64, f64);

/// Prints a path's line and returns its figures.
fn figures(name: &str, path: &mut Path) -> Figures {
    let figure = (
        path.rate(),
        path.samples.quantile_ms(0.5),
        path.samples.quantile_ms(0.99),
        path.samples.quantile_ms(0.999),
    );
    println!(
        "{name:<18} {:>10} {:>12.0} {:>8.3} {:>8.3} {:>9.3}{}",
        path.samples.len(),
        figure.0,
        figure.1,
        figure.2,
        figure.3,
        if path.capped { "  (capped)" } else { "" }
    );
    figure
}

/// CPU milliseconds per 1000 exchanges, split; `busy` in percent.
struct CpuSplit {
    load: f64,
    moor: f64,
    echo: f64,
    softirq: f64,
    other: f64,
    machine: f64,
    busy: f64,
}

fn cpu(path: &Path, hz: f64) -> CpuSplit {
    let c = path.cpu;
    let per = |ticks| path.per_thousand(ticks, hz);
    // Other processes on the machine (builds, Docker) and kernel time not
    // charged to a task: how noisy the round was.
    let other = c.busy.saturating_sub(c.load + c.moor + c.echo + c.softirq);
    CpuSplit {
        load: per(c.load),
        moor: per(c.moor),
        echo: per(c.echo),
        softirq: per(c.softirq),
        other: per(other),
        machine: per(c.busy),
        busy: c.busy as f64 / c.total.max(1) as f64 * 100.0,
    }
}

fn entry(figures: Figures, path: &Path, hz: f64) -> Value {
    let (rate, p50, p99, p999) = figures;
    let c = cpu(path, hz);
    json!({
        "exchanges": path.samples.len(),
        "per_second": rate.round(),
        "p50_ms": round3(p50),
        "p99_ms": round3(p99),
        "p999_ms": round3(p999),
        "capped": path.capped,
        "cpu_per_1000": {
            "loadgen_ms": round2(c.load),
            "moor_ms": round2(c.moor),
            "echo_ms": round2(c.echo),
            "machine_ms": round2(c.machine),
            "softirq_ms": round2(c.softirq),
            "other_ms": round2(c.other),
            "machine_busy_percent": c.busy.round(),
        },
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Clock ticks per second of /proc's CPU counters (100 on Linux nearly always).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
