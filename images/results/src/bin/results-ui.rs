//! `results-ui`: renders the API's results as one HTML page with a form to record a run.
//! See `moor_results::ui` for the endpoints.

use std::process::ExitCode;

use clap::Parser;
use moor_results::client::Url;
use moor_results::{http, log, ui};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Renders the results API's results as one HTML page (GET /) with a form to record a run
/// (POST /results); /healthz and /readyz.
#[derive(Debug, Parser)]
#[command(name = "results-ui")]
struct Args {
    /// TCP port to serve HTTP on, on all addresses.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The API's URL; its host name is resolved through /etc/resolv.conf on every request.
    #[arg(long, value_name = "URL", default_value = "http://results-api:8080")]
    api: Url,
    /// The page's title.
    #[arg(long, env = "TITLE", default_value = "Test results")]
    title: String,
    /// How many of the latest results the page lists, 1 to 1000.
    #[arg(long, env = "PAGE_SIZE", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    page_size: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pod = http::pod_name();
    log::init(&pod);
    let listener = match TcpListener::bind(("0.0.0.0", args.port)).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(port = args.port, error = %err, "cannot listen; exiting");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = args.port, api = %args.api, page_size = args.page_size, "serving results-ui");
    let shutdown = CancellationToken::new();
    let config = ui::Config {
        api: args.api,
        title: args.title,
        page_size: args.page_size,
        pod,
        resolv_conf: "/etc/resolv.conf".into(),
    };
    let server = ui::serve(listener, config, shutdown.clone());
    match moor_results::run_until_signal(server, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the server failed; exiting");
            ExitCode::FAILURE
        }
    }
}
