//! [`Agent`]: what every part of one node agent shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use moor_client::Client;
use moor_runtime::{ContainerRuntime, Docker};
use tokio_util::sync::CancellationToken;

use crate::{Config, Error, node};

/// One node agent: its settings, API client and runtime.
pub struct Agent {
    /// The node's name.
    pub name: String,
    /// Settings.
    pub config: Config,
    /// The apiserver.
    pub client: Client,
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The node's address, reported as InternalIP and as pods' hostIP.
    pub host_ip: String,
    /// The machine's hostname.
    pub hostname: String,
    /// The absolute data directory.
    pub data_dir: PathBuf,
    /// Port of the NodeAgent service (logs, exec); 0 when it does not run.
    pub agent_port: u16,
    /// Failed pulls by (pod uid, container name), for ImagePullBackOff.
    // A std Mutex: only short synchronous sections use it.
    pull_failures: Mutex<HashMap<(String, String), PullFailure>>,
}

/// The last failed pull of one container's image.
#[derive(Clone, Debug)]
pub struct PullFailure {
    /// Failures in a row.
    pub count: u32,
    /// When the last one happened.
    pub at: SystemTime,
    /// The runtime's message.
    pub message: String,
}

// === impl Agent ===

impl Agent {
    /// Prepares the data directory and finds the node's address.
    pub async fn new(
        config: Config,
        client: Client,
        runtime: Arc<dyn ContainerRuntime>,
        agent_port: u16,
    ) -> Result<Self, Error> {
        let dir = config.data_dir.join("pods");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        // Bind mounts need absolute host paths.
        let data_dir = tokio::fs::canonicalize(&config.data_dir)
            .await
            .map_err(|e| Error::io(&config.data_dir, e))?;
        Ok(Self {
            name: config.name.clone(),
            client,
            runtime,
            host_ip: host_ip(),
            hostname: hostname(),
            data_dir,
            agent_port,
            config,
            pull_failures: Mutex::default(),
        })
    }

    /// The directory of a pod's volumes.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    /// The last failed pull of a container's image, if any.
    pub fn pull_failure(&self, uid: &str, container: &str) -> Option<PullFailure> {
        self.with_pulls(|p| p.get(&(uid.to_owned(), container.to_owned())).cloned())
    }

    /// Records a failed pull; returns the failure count.
    pub fn record_pull_failure(&self, uid: &str, container: &str, message: String) -> u32 {
        self.with_pulls(|p| {
            let entry = p
                .entry((uid.to_owned(), container.to_owned()))
                .or_insert(PullFailure {
                    count: 0,
                    at: SystemTime::now(),
                    message: String::new(),
                });
            entry.count += 1;
            entry.at = SystemTime::now();
            entry.message = message;
            entry.count
        })
    }

    /// Forgets failed pulls of a container (`None`: of the whole pod).
    pub fn clear_pull_failures(&self, uid: &str, container: Option<&str>) {
        self.with_pulls(|p| p.retain(|(u, c), _| u != uid || container.is_some_and(|n| n != c)));
    }

    fn with_pulls<T>(&self, f: impl FnOnce(&mut HashMap<(String, String), PullFailure>) -> T) -> T {
        let mut guard = match self.pull_failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// Connects to Docker, reporting the node NotReady and retrying every
/// heartbeat while it does not answer. `None` when shut down first.
pub async fn connect_docker(
    config: &Config,
    client: &Client,
    shutdown: &CancellationToken,
) -> Option<Docker> {
    loop {
        match Docker::connect(&config.network).await {
            Ok(docker) => return Some(docker),
            Err(err) => {
                tracing::warn!(node = %config.name, %err, "docker does not answer; reporting NotReady and retrying");
                let message = err.to_string();
                if let Err(err) = node::report_unreachable(config, client, &message).await {
                    tracing::warn!(node = %config.name, %err, "cannot report NotReady; retrying");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(config.heartbeat) => {}
        }
    }
}

/// The address of the interface holding the default route: a UDP "connect"
/// sends nothing but makes the kernel pick the source address.
fn host_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
