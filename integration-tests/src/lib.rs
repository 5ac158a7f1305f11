//! Helpers for moor's end-to-end tests: an apiserver on a free port, and a
//! whole cluster on the real Docker daemon.

pub mod browser;
mod cluster;
mod objects;
pub mod results_ui;
pub mod servers;

pub use cluster::{Cluster, remove_docker_leftovers, remove_pod_network_leftovers};
pub use objects::{is_ready, light_deployment, ready_nodes};

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

/// An in-process apiserver over the embedded store in a temp dir; stopped on drop.
pub struct Apiserver {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Apiserver {
    /// Starts one on 127.0.0.1 and a free port.
    pub async fn start() -> anyhow::Result<Self> {
        moor_testkit::init_tracing();
        let dir = tempfile::tempdir()?;
        let mut config =
            moor_apiserver::Config::new(moor_apiserver::Storage::DataDir(dir.path().to_path_buf()));
        config.listen = "127.0.0.1:0".parse()?;
        let server = moor_apiserver::ApiServer::bind(config).await?;
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = server.run(token).await {
                eprintln!("apiserver failed: {:#}", anyhow::Error::from(err));
            }
        });
        Ok(Self {
            addr,
            shutdown,
            _dir: dir,
        })
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
