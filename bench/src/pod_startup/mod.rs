//! `moor-bench pod-startup`: the time from a pod's create call returning to
//! the pod seen Running (with its pod IP) through a watch, beside creating
//! and starting the same two containers straight through Docker, in one run:
//! one pod at a time, and bursts created all at once. Also the node agent's
//! memory idle and with a burst's pods running.
//!
//! The control plane is the in-process cluster (`moor_integration_tests::
//! Cluster`); the agent under test is a `moor node` process of its own, so
//! its memory is its own figure (see [`agent`]). One-at-a-time pods are
//! deleted (and waited for) before the next, on both sides, and the two
//! sides alternate A B B A so that drift hits both alike.

mod agent;
mod direct;
mod moor;

use serde_json::{Value, json};
use tokio::time::{Duration, Instant};

use self::agent::Agent;
use self::direct::{Attach, Direct};
use self::moor::{Pods, Timing};
use crate::stats::Samples;

/// Target (issue 4): moor's median minus the direct median, in milliseconds.
const TARGET_OVERHEAD_MS: f64 = 50.0;
/// Bound on any one wait (a burst on a loaded machine takes a while).
const PATIENCE: Duration = Duration::from_secs(300);

/// Flags of `moor-bench pod-startup`.
#[derive(clap::Args)]
pub struct Args {
    /// Pods started one at a time, on each side (after one warm-up pod each).
    #[arg(long, default_value_t = 20)]
    pods: usize,
    /// Pods in a burst, created all at once.
    #[arg(long, default_value_t = 50)]
    burst: usize,
    /// Bursts on each side.
    #[arg(long, default_value_t = 1)]
    bursts: usize,
    /// Who attaches the baseline's sandboxes: Docker (as `docker run
    /// --network` does), or moor's runtime as for the agent's pods.
    #[arg(long, value_enum, default_value_t = Attach::Docker)]
    direct_attach: Attach,
}

/// Everything measured, per side.
#[derive(Default)]
struct Figures {
    single_direct: Samples,
    single_moor: Vec<Timing>,
    burst_direct: Samples,
    burst_direct_totals: Samples,
    burst_moor: Vec<Timing>,
    burst_moor_totals: Samples,
    /// Agent RSS idle, with a burst's pods, and its peak, in MiB.
    rss: (f64, f64, f64),
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.pods > 0 && args.burst > 0 && args.bursts > 0,
        "--pods, --burst and --bursts must be at least 1"
    );
    crate::quiet_logs();
    let load_before = loadavg();
    println!("load average before: {load_before}");
    let cluster = moor_integration_tests::Cluster::start("bench-pods", None).await?;
    let result = measure(&cluster, &args).await;
    cluster.stop().await;
    let figures = result?;
    Ok(report(&args, figures, &load_before))
}

async fn measure(
    cluster: &moor_integration_tests::Cluster,
    args: &Args,
) -> anyhow::Result<Figures> {
    // Both remove their containers on drop, also on an early return.
    let agent = Agent::start(cluster).await?;
    let direct = Direct::connect(agent::NETWORK, args.direct_attach).await?;
    let mut pods = Pods::watch(&cluster.client).await?;
    let mut figures = Figures::default();
    println!(
        "moor-bench pod-startup: agent `moor node` {} in its own process; {} pods one at a time, \
         {} burst(s) of {} on each side; the direct side's sandboxes attached by {:?}",
        agent.name, args.pods, args.bursts, args.burst, args.direct_attach
    );

    // Let start-up allocations settle before the idle figure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    figures.rss.0 = agent.rss_mib()?.0;

    // Warm-up, not counted: first connections, caches, the service list.
    let warm = ["warm-up".to_owned()];
    pods.start_one(&warm[0]).await?;
    pods.delete(&warm).await?;
    direct.start_pod(&warm[0]).await?;
    direct.remove_all().await?;

    for i in 0..args.pods {
        let name = [format!("one-{i}")];
        for moor_first in [i % 2 == 0, i % 2 != 0] {
            if moor_first {
                figures.single_moor.push(pods.start_one(&name[0]).await?);
                pods.delete(&name).await?;
            } else {
                figures
                    .single_direct
                    .push(direct.start_pod(&name[0]).await?);
                direct.remove_all().await?;
            }
        }
    }

    for round in 0..args.bursts {
        let names: Vec<String> = (0..args.burst)
            .map(|i| format!("burst-{round}-{i}"))
            .collect();
        for moor_first in [round % 2 == 0, round % 2 != 0] {
            if moor_first {
                let burst = pods.start_burst(&names).await?;
                figures.burst_moor_totals.push(burst.total);
                figures.burst_moor.extend(burst.pods);
                if round == 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    figures.rss.1 = agent.rss_mib()?.0;
                }
                pods.delete(&names).await?;
            } else {
                let started = Instant::now();
                let starts = names.iter().map(|name| direct.start_pod(name));
                for took in futures::future::try_join_all(starts).await? {
                    figures.burst_direct.push(took);
                }
                figures.burst_direct_totals.push(started.elapsed());
                direct.remove_all().await?;
            }
        }
    }
    figures.rss.2 = agent.rss_mib()?.1;
    Ok(figures)
}

fn report(args: &Args, mut f: Figures, load_before: &str) -> Value {
    let mut single_moor = running(&f.single_moor);
    let mut burst_moor = running(&f.burst_moor);
    println!();
    println!(
        "{:<14} {:<7} {:>5} {:>8} {:>8} {:>8}   ALL STARTED (MS)",
        "PHASE", "PATH", "PODS", "P50 MS", "P99 MS", "MAX MS"
    );
    let one = "one at a time";
    let burst = format!("burst of {}", args.burst);
    let rows = [
        line(one, "direct", &mut f.single_direct, None),
        line(one, "moor", &mut single_moor, None),
        line(
            &burst,
            "direct",
            &mut f.burst_direct,
            Some(&mut f.burst_direct_totals),
        ),
        line(
            &burst,
            "moor",
            &mut burst_moor,
            Some(&mut f.burst_moor_totals),
        ),
    ];
    println!();
    println!("moor's time split (p50 / p99 ms, from the create call returning):");
    let split_single = split(one, &f.single_moor);
    let split_burst = split(&burst, &f.burst_moor);
    let p50 = |row: &Value| row["p50_ms"].as_f64().unwrap_or(f64::NAN);
    let single_overhead = p50(&rows[1]) - p50(&rows[0]);
    let burst_overhead = p50(&rows[3]) - p50(&rows[2]);
    println!();
    for (phase, overhead) in [(one, single_overhead), (burst.as_str(), burst_overhead)] {
        println!(
            "moor overhead at the median, {phase}: {overhead:+.1} ms, target < {TARGET_OVERHEAD_MS} ms: {}",
            verdict(overhead < TARGET_OVERHEAD_MS)
        );
    }
    let (idle, loaded, peak) = f.rss;
    println!(
        "`moor node` agent RSS: idle {idle:.1} MiB, with {} pods {loaded:.1} MiB, peak {peak:.1} MiB",
        args.burst
    );
    let load_after = loadavg();
    println!("load average before: {load_before}");
    println!("load average after:  {load_after}");
    json!({
        "bench": "pod-startup",
        "pods": args.pods,
        "burst": args.burst,
        "bursts": args.bursts,
        "direct_attach": format!("{:?}", args.direct_attach).to_lowercase(),
        "single": { "direct": rows[0], "moor": rows[1], "moor_split": split_single,
                    "overhead_p50_ms": round1(single_overhead) },
        "burst_of": { "direct": rows[2], "moor": rows[3], "moor_split": split_burst,
                      "overhead_p50_ms": round1(burst_overhead) },
        "target_met": single_overhead < TARGET_OVERHEAD_MS && burst_overhead < TARGET_OVERHEAD_MS,
        "agent_rss_mib": { "idle": round1(idle), "with_burst": round1(loaded), "peak": round1(peak) },
        "loadavg": { "before": load_before, "after": load_after },
    })
}

/// Prints one row and returns it as JSON.
fn line(phase: &str, path: &str, samples: &mut Samples, totals: Option<&mut Samples>) -> Value {
    let (p50, p99, max) = (
        samples.quantile_ms(0.5),
        samples.quantile_ms(0.99),
        samples.quantile_ms(1.0),
    );
    let all = totals.map(|t| t.quantile_ms(0.5));
    println!(
        "{phase:<14} {path:<7} {:>5} {p50:>8.1} {p99:>8.1} {max:>8.1}   {}",
        samples.len(),
        all.map_or_else(String::new, |a| format!("{a:.1} (median of bursts)")),
    );
    json!({
        "n": samples.len(),
        "p50_ms": round1(p50),
        "p99_ms": round1(p99),
        "max_ms": round1(max),
        "all_started_ms": all.map(round1),
    })
}

/// Prints and returns moor's split: the create call, to bound, bound to Running.
fn split(phase: &str, timings: &[Timing]) -> Value {
    let mut create = collect(timings.iter().map(|t| t.create));
    let mut bound = collect(timings.iter().map(|t| t.bound));
    let mut agent = collect(timings.iter().map(|t| t.running.saturating_sub(t.bound)));
    let pair = |s: &mut Samples| (s.quantile_ms(0.5), s.quantile_ms(0.99));
    let (c, b, a) = (pair(&mut create), pair(&mut bound), pair(&mut agent));
    println!(
        "  {phase:<14} create call {:.1} / {:.1}   to bound {:.1} / {:.1}   bound to Running {:.1} / {:.1}",
        c.0, c.1, b.0, b.1, a.0, a.1
    );
    json!({
        "create_call_ms": [round1(c.0), round1(c.1)],
        "to_bound_ms": [round1(b.0), round1(b.1)],
        "bound_to_running_ms": [round1(a.0), round1(a.1)],
    })
}

fn running(timings: &[Timing]) -> Samples {
    collect(timings.iter().map(|t| t.running))
}

fn collect(durations: impl Iterator<Item = Duration>) -> Samples {
    let mut samples = Samples::default();
    durations.for_each(|d| samples.push(d));
    samples
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The machine's load: 1, 5 and 15 minute averages, runnable/total tasks.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.trim().to_owned())
        .unwrap_or_default()
}

/// Waits until `check` holds, polling, for at most [`PATIENCE`].
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
