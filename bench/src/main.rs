//! `moor-bench`: measures moor against its baseline in the same run and
//! prints the figures, then one JSON line with all of them.
//!
//! The apiserver runs as a real `moor apiserver` process (found next to this
//! binary), so its memory is its own; etcd is Debian's, started on free ports.

mod api;
mod converge;
mod failover;
mod footprint;
mod overlay;
mod pod_startup;
mod proxy;
mod scale;
mod scheduler;
mod server;
mod stats;
mod tls;
mod watch;

use clap::{Parser, Subcommand};

/// Benchmarks of moor, each beside its baseline.
#[derive(Parser)]
#[command(name = "moor-bench", version, about)]
struct Cli {
    /// Which benchmark.
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Object creates through the API (sqlite and etcd) against raw etcd puts of the same bytes.
    Api(api::Args),
    /// Scale 0 -> 100 and a rolling update of 20 on one Docker node against Docker Swarm.
    Converge(converge::Args),
    /// Watch fan-out: events delivered to many watchers, delivery latency and apiserver memory.
    Watch(watch::Args),
    /// Scheduling throughput: pods from create to bound over many simulated nodes.
    Scheduler(scheduler::Args),
    /// Memory of `moor up` idle and with pods, and time to a Ready node.
    Footprint(footprint::Args),
    /// Exchanges per second and p99 through the service proxy against the pod IP directly.
    Proxy(proxy::Args),
    /// Pod create to Running through a watch against the same containers started on Docker directly.
    PodStartup(pod_startup::Args),
    /// API creates and watch fan-out over TLS with client certificates against the same in plain text.
    Tls(tls::Args),
    /// Pod to pod across two lab hosts through each network backend against host to host.
    Overlay(overlay::Args),
    /// Many live simulated nodes on one apiserver: a Deployment of 10 pods per node to Running.
    Scale(scale::Args),
    /// Three servers on the lab, the etcd leader's machine cut off: time to answer again against
    /// etcd's own election.
    Failover(failover::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let summary = match cli.command {
        Command::Api(args) => api::run(args).await?,
        Command::Converge(args) => converge::run(args).await?,
        Command::Watch(args) => watch::run(args).await?,
        Command::Scheduler(args) => scheduler::run(args).await?,
        Command::Footprint(args) => footprint::run(args).await?,
        Command::Proxy(args) => proxy::run(args).await?,
        Command::PodStartup(args) => pod_startup::run(args).await?,
        Command::Tls(args) => tls::run(args).await?,
        Command::Overlay(args) => overlay::run(args).await?,
        Command::Scale(args) => scale::run(args).await?,
        Command::Failover(args) => failover::run(args).await?,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// The in-process clusters of some benchmarks log at info by default; a
/// benchmark wants its table, so warnings only unless RUST_LOG says
/// otherwise. The cluster's own set-up leaves an installed subscriber alone.
fn quiet_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The `moor` binary a benchmark runs: `given` (its `--moor`), else the one
/// beside moor-bench; an error saying how to build it when it is missing.
fn moor_binary(given: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let moor = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("moor"),
    };
    anyhow::ensure!(
        moor.exists(),
        "{}: no moor binary (build it with `cargo build --release -p moor -p moor-bench`, or \
         pass --moor where the benchmark has it)",
        moor.display()
    );
    Ok(moor)
}
