//! `results-api`: stores test-run results in `DIR/results.jsonl` and serves them as JSON.
//! See `moor_results::api` for the endpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use moor_results::{api, http, log};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Stores test-run results in DIR/results.jsonl (shared safely by replicas) and serves them
/// as JSON: GET/POST /results, GET /summary, /healthz, /readyz.
#[derive(Debug, Parser)]
#[command(name = "results-api")]
struct Args {
    /// TCP port to serve HTTP on, on all addresses.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Directory holding results.jsonl; replicas may share it.
    #[arg(long, value_name = "DIR", default_value = "/data")]
    data: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pod = http::pod_name();
    log::init(&pod);
    // The kubelet's DirectoryOrCreate makes the directory; this covers running by hand.
    // A failure is not fatal: /readyz stays 503 and says why.
    if let Err(err) = std::fs::create_dir_all(&args.data) {
        tracing::warn!(dir = %args.data.display(), error = %err, "cannot create the data directory; not ready until it exists");
    }
    let listener = match TcpListener::bind(("0.0.0.0", args.port)).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(port = args.port, error = %err, "cannot listen; exiting");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = args.port, data = %args.data.display(), "serving results-api");
    let shutdown = CancellationToken::new();
    let config = api::Config {
        data: args.data,
        pod,
    };
    let server = api::serve(listener, config, shutdown.clone());
    match moor_results::run_until_signal(server, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the server failed; exiting");
            ExitCode::FAILURE
        }
    }
}
