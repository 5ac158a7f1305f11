//! A real apiserver for tests: on the embedded store or a real etcd, on a
//! free loopback port, restartable on the same address and data.

#![allow(dead_code)]

use std::net::SocketAddr;

use moor_api::core::v1::pods_client::PodsClient;
use moor_apiserver::{ApiServer, Config, Storage};
use moor_rpc::Channel;
use moor_testkit::EtcdServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which store a test runs on.
pub enum Backend {
    /// Embedded SQLite in a temp dir.
    Sqlite(tempfile::TempDir),
    /// A real etcd started for the test.
    Etcd(EtcdServer),
}

/// A running apiserver.
pub struct TestServer {
    pub backend: Backend,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    tweak: fn(&mut Config),
}

impl TestServer {
    pub async fn sqlite() -> anyhow::Result<Self> {
        Self::sqlite_with(|_| {}).await
    }

    /// On the embedded store, with `tweak` applied to the configuration.
    pub async fn sqlite_with(tweak: fn(&mut Config)) -> anyhow::Result<Self> {
        moor_testkit::init_tracing();
        Self::start(
            Backend::Sqlite(tempfile::tempdir()?),
            "127.0.0.1:0".parse()?,
            tweak,
        )
        .await
    }

    pub async fn etcd() -> anyhow::Result<Self> {
        Self::etcd_with(|_| {}).await
    }

    /// On a fresh etcd, with `tweak` applied to the configuration.
    pub async fn etcd_with(tweak: fn(&mut Config)) -> anyhow::Result<Self> {
        moor_testkit::init_tracing();
        Self::start(
            Backend::Etcd(EtcdServer::start().await?),
            "127.0.0.1:0".parse()?,
            tweak,
        )
        .await
    }

    async fn start(
        backend: Backend,
        listen: SocketAddr,
        tweak: fn(&mut Config),
    ) -> anyhow::Result<Self> {
        let (addr, shutdown, task) = launch(storage(&backend), listen, tweak).await?;
        Ok(Self {
            backend,
            addr,
            shutdown,
            task: Some(task),
            tweak,
        })
    }

    /// Stops the apiserver and starts a new one on the same address and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        // The listener is gone once the task ended, and tokio binds with
        // SO_REUSEADDR, so the same address is free at once.
        let (_, shutdown, task) = launch(storage(&self.backend), self.addr, self.tweak).await?;
        self.shutdown = shutdown;
        self.task = Some(task);
        Ok(())
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn channel(&self) -> Channel {
        moor_rpc::channel(&self.url()).expect("valid url")
    }

    pub fn pods(&self) -> PodsClient<Channel> {
        PodsClient::new(self.channel())
    }
}

fn storage(backend: &Backend) -> Storage {
    match backend {
        Backend::Sqlite(dir) => Storage::DataDir(dir.path().to_path_buf()),
        Backend::Etcd(etcd) => Storage::Etcd {
            endpoints: vec![etcd.endpoint()],
            start: moor_storage_etcd::Start::First,
        },
    }
}

async fn launch(
    storage: Storage,
    listen: SocketAddr,
    tweak: fn(&mut Config),
) -> anyhow::Result<(SocketAddr, CancellationToken, JoinHandle<()>)> {
    let mut config = Config::new(storage);
    config.listen = listen;
    config.bookmark_interval = std::time::Duration::from_millis(200);
    tweak(&mut config);
    let server = ApiServer::bind(config).await?;
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(err) = server.run(token).await {
            panic!("apiserver failed: {err}");
        }
    });
    Ok((addr, shutdown, task))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A minimal valid pod.
pub fn pod(name: &str) -> moor_api::core::v1::Pod {
    use moor_api::core::v1::{Container, Pod, PodSpec};
    use moor_api::meta::v1::ObjectMeta;
    Pod {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: "moor/echo:0.1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits until the apiserver at `url` answers (after a restart).
pub async fn wait_ready(url: &str) {
    use moor_api::core::v1::namespaces_client::NamespacesClient;
    let mut client = NamespacesClient::new(moor_rpc::channel(url).expect("valid url"));
    moor_testkit::assert_eventually!(
        client
            .list(moor_api::meta::v1::ListRequest::default())
            .await
            .is_ok(),
        std::time::Duration::from_secs(30),
        "the apiserver at {url} never answered"
    );
}

/// A ConfigMap in `default` with `labels` and `data.v = value`.
pub fn config_map(
    name: &str,
    labels: &[(&str, &str)],
    value: &str,
) -> moor_api::core::v1::ConfigMap {
    let mut cm = moor_api::core::v1::ConfigMap {
        metadata: Some(moor_api::meta::v1::ObjectMeta {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cm.data.insert("v".into(), value.into());
    cm
}
