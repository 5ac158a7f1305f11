//! An in-process apiserver on a loopback port, for the client's tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use moor_api::core::v1::ConfigMap;
use moor_api::meta::v1::ObjectMeta;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running apiserver.
pub struct Server {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: JoinHandle<Result<(), moor_apiserver::StartError>>,
}

impl Server {
    /// Starts an apiserver on `addr` (port 0 for any) over `data_dir`.
    pub async fn start(data_dir: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(data_dir, addr, |_| {}).await
    }

    /// Starts an apiserver with `tweak` applied to its config.
    pub async fn start_with(
        data_dir: &Path,
        addr: SocketAddr,
        tweak: impl FnOnce(&mut moor_apiserver::Config),
    ) -> anyhow::Result<Self> {
        let mut config =
            moor_apiserver::Config::new(moor_apiserver::Storage::DataDir(data_dir.into()));
        config.listen = addr;
        tweak(&mut config);
        let server = moor_apiserver::ApiServer::bind(config).await?;
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until its port is free.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

/// A ConfigMap in "default" with one data entry and labels.
pub fn config_map(name: &str, value: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        data: HashMap::from([("value".to_string(), value.to_string())]),
        ..Default::default()
    }
}
