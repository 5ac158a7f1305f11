//! `moor-bench converge`: how long moor takes to converge on one node of
//! real Docker, beside Docker Swarm doing the same on the same daemon in the
//! same run: a replication controller scaled from 0 against `docker service
//! scale`, and a rolling update one pod at a time against `docker service
//! update --update-parallelism 1`. Rounds alternate which side goes first;
//! each side starts from a daemon with none of the other's containers.
//!
//! Everything the run makes (the cluster's containers and network, the
//! services, the second image tag, the swarm if it initialised one) goes at
//! the end, also when a step failed or on Ctrl-C.

mod docker;
mod moor;
mod swarm;

use std::time::Duration;

use serde_json::{Value, json};

use self::docker::ImageTag;
use self::swarm::Swarm;

/// Target (issue 6): moor converges in at most this share of Swarm's time.
const TARGET_RATIO: f64 = 0.5;
/// Bound on any one wait (a scale, a rollout, a clean-up).
const PATIENCE: Duration = Duration::from_secs(600);

/// Flags of `moor-bench converge`.
#[derive(clap::Args)]
pub struct Args {
    /// Pods (tasks) to scale to from 0.
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    /// Pods (tasks) of the rolling update.
    #[arg(long, default_value_t = 20)]
    rollout_replicas: usize,
    /// Rounds of both measurements on both sides, the first side alternating.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The image, present locally (moor: imagePullPolicy Never).
    #[arg(long, default_value = "moor/echo:0.1")]
    image: String,
    /// Second tag of the image the rollouts move to (made and removed by the run).
    #[arg(long, default_value = "moor/echo:v2")]
    rollout_image: String,
}

/// One measured convergence.
pub struct Converged {
    /// From the request to the goal state.
    pub total: Duration,
    /// Points along the way, from the request, to show where the time went.
    pub milestones: Vec<(&'static str, Duration)>,
}

/// Every round's times, by side and measurement.
#[derive(Default)]
struct Results {
    moor_scale: Vec<Duration>,
    swarm_scale: Vec<Duration>,
    moor_rollout: Vec<Duration>,
    swarm_rollout: Vec<Duration>,
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.replicas > 0 && args.rollout_replicas > 0 && args.rounds > 0,
        "--replicas, --rollout-replicas and --rounds must be at least 1"
    );
    crate::quiet_logs();
    println!("load average at start: {}", loadavg());
    let tag = ImageTag::create(&args.image, &args.rollout_image).await?;
    let mut swarm = Swarm::join().await?;
    println!(
        "swarm: {}",
        if swarm.initialised() {
            "initialised on 127.0.0.1 for this run"
        } else {
            "this machine's existing swarm (left in place)"
        }
    );
    let cluster = moor_integration_tests::Cluster::start("bench-converge", None).await?;
    let result = tokio::select! {
        result = measure(&cluster, &mut swarm, &args, &tag.name) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cluster.stop().await;
    println!("load average at end: {}", loadavg());
    drop(swarm);
    drop(tag);
    Ok(report(&args, &result?))
}

async fn measure(
    cluster: &moor_integration_tests::Cluster,
    swarm: &mut Swarm,
    args: &Args,
    v2: &str,
) -> anyhow::Result<Results> {
    let mut results = Results::default();
    let (image, replicas, roll) = (args.image.as_str(), args.replicas, args.rollout_replicas);
    println!(
        "moor: one node agent on Docker, in this process; Swarm: one manager-worker on the same dockerd"
    );
    println!();
    println!(
        "{:<6} {:<6} {:<22} {:>9}",
        "ROUND", "SIDE", "MEASUREMENT", "SECONDS"
    );
    for r in 1..=args.rounds {
        let moor_first = r % 2 == 1;
        for moor_side in [moor_first, !moor_first] {
            let what = format!("scale 0 -> {replicas}");
            if moor_side {
                let done = moor::scale(cluster, image, replicas).await?;
                line(r, "moor", &what, &done);
                results.moor_scale.push(done.total);
                moor::scale_to_zero(cluster).await?;
            } else {
                let done = swarm.scale(image, replicas).await?;
                line(r, "swarm", &what, &done);
                results.swarm_scale.push(done.total);
            }
        }
        for moor_side in [moor_first, !moor_first] {
            let what = format!("rolling update of {roll}");
            if moor_side {
                let done = moor::rollout(cluster, image, v2, roll).await?;
                line(r, "moor", &what, &done);
                results.moor_rollout.push(done.total);
            } else {
                let done = swarm.rollout(image, v2, roll).await?;
                line(r, "swarm", &what, &done);
                results.swarm_rollout.push(done.total);
            }
        }
    }
    Ok(results)
}

/// Prints one measurement and its milestones.
fn line(round: usize, side: &str, what: &str, done: &Converged) {
    println!(
        "{round:<6} {side:<6} {what:<22} {:>9.2}",
        done.total.as_secs_f64()
    );
    for (name, at) in &done.milestones {
        println!("{:<14} {name:<32} at {:.2} s", "", at.as_secs_f64());
    }
}

fn report(args: &Args, results: &Results) -> Value {
    println!();
    println!(
        "{:<22} {:>10} {:>10} {:>11}  TARGET <= {:.0}%",
        "MEASUREMENT",
        "MOOR S",
        "SWARM S",
        "MOOR/SWARM",
        TARGET_RATIO * 100.0
    );
    let mut out = Vec::new();
    for (name, moor, swarm) in [
        (
            format!("scale 0 -> {}", args.replicas),
            &results.moor_scale,
            &results.swarm_scale,
        ),
        (
            format!("rolling update of {}", args.rollout_replicas),
            &results.moor_rollout,
            &results.swarm_rollout,
        ),
    ] {
        let (moor_s, swarm_s) = (mean(moor), mean(swarm));
        let ratio = moor_s / swarm_s;
        let met = ratio <= TARGET_RATIO;
        println!(
            "{name:<22} {moor_s:>10.2} {swarm_s:>10.2} {:>10.0}%  {}",
            ratio * 100.0,
            if met { "met" } else { "NOT met" }
        );
        out.push(json!({
            "measurement": name,
            "moor_seconds": seconds(moor),
            "swarm_seconds": seconds(swarm),
            "moor_mean_seconds": round3(moor_s),
            "swarm_mean_seconds": round3(swarm_s),
            "ratio": round3(ratio),
            "target_met": met,
        }));
    }
    json!({
        "bench": "converge",
        "replicas": args.replicas,
        "rollout_replicas": args.rollout_replicas,
        "rounds": args.rounds,
        "image": args.image,
        "results": out,
    })
}

fn mean(times: &[Duration]) -> f64 {
    times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len().max(1) as f64
}

fn seconds(times: &[Duration]) -> Vec<f64> {
    times.iter().map(|t| round3(t.as_secs_f64())).collect()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The first three fields of /proc/loadavg: how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
