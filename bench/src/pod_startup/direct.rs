//! The baseline: the two containers a pod is made of, the pause sandbox on
//! the agent's network and then the echo container in its network and IPC
//! namespaces, created and started straight through `moor_runtime::Docker`
//! (the same bollard client and create bodies the agent's calls go through),
//! with nothing of moor around them: four Docker calls per pod.

use std::net::Ipv4Addr;

use moor_runtime::{ContainerRuntime, ContainerSpec, DnsConfig, Docker, Labels, NetworkMode};
use tokio::time::{Duration, Instant};

use super::agent::remove_containers;

/// The label on every container of the baseline; its value is this run's.
const LABEL: &str = "moor-bench.pod-startup";

/// Creates baseline pods; removes them all on drop.
pub struct Direct {
    docker: Docker,
    network: String,
    dns: DnsConfig,
    run: String,
}

// === impl Direct ===

impl Direct {
    /// Connects to Docker; sandboxes go on `network` and resolve through
    /// `dns`, as the agent's do.
    pub async fn connect(network: &str, dns: Ipv4Addr) -> anyhow::Result<Self> {
        let docker = Docker::connect(network).await?;
        docker.ensure_network(network).await?;
        Ok(Self {
            docker,
            network: network.to_owned(),
            // What the agent gives a ClusterFirst pod in namespace default.
            dns: DnsConfig {
                servers: vec![dns.to_string()],
                searches: [
                    "default.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                ]
                .map(String::from)
                .into(),
                options: vec!["ndots:5".into()],
            },
            run: std::process::id().to_string(),
        })
    }

    /// Creates and starts pod `name`'s sandbox, then its echo container;
    /// returns the time from the first create to the second start.
    pub async fn start_pod(&self, name: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let sandbox = self.docker.create_container(&self.sandbox(name)).await?;
        self.docker.start_container(&sandbox).await?;
        let app = self
            .docker
            .create_container(&self.app(name, &sandbox))
            .await?;
        self.docker.start_container(&app).await?;
        Ok(started.elapsed())
    }

    /// Removes every baseline container of this run: app containers first,
    /// then the sandboxes whose namespaces they used.
    pub async fn remove_all(&self) -> anyhow::Result<()> {
        let all = self.docker.list_containers(&[(LABEL, &self.run)]).await?;
        let (sandboxes, apps): (Vec<_>, Vec<_>) = all.iter().partition(|c| c.is_sandbox());
        for group in [apps, sandboxes] {
            let removals = group.iter().map(|c| self.docker.remove_container(&c.id));
            for result in futures::future::join_all(removals).await {
                result?;
            }
        }
        Ok(())
    }

    fn labels(&self) -> Labels {
        Labels::from([(LABEL.to_owned(), self.run.clone())])
    }

    fn sandbox(&self, name: &str) -> ContainerSpec {
        let mut labels = self.labels();
        // The agent's sandbox label, so `remove_all` can tell them apart.
        labels.insert(moor_runtime::labels::SANDBOX.into(), "true".into());
        ContainerSpec {
            name: format!("moor-bench-{}-{name}-POD", self.run),
            image: "moor/pause:0.1".into(),
            command: vec![],
            args: vec![],
            working_dir: String::new(),
            env: vec![],
            labels,
            mounts: vec![],
            network: NetworkMode::Network(self.network.clone()),
            ipc_container: None,
            hostname: Some(name.to_owned()),
            ports: vec![],
            nano_cpus: None,
            memory_bytes: None,
            dns: Some(self.dns.clone()),
        }
    }

    fn app(&self, name: &str, sandbox: &str) -> ContainerSpec {
        ContainerSpec {
            name: format!("moor-bench-{}-{name}-echo", self.run),
            image: super::moor::IMAGE.into(),
            command: vec![],
            args: vec!["serve".into()],
            working_dir: String::new(),
            env: vec![],
            labels: self.labels(),
            mounts: vec![],
            network: NetworkMode::Container(sandbox.to_owned()),
            ipc_container: Some(sandbox.to_owned()),
            hostname: None,
            ports: vec![],
            nano_cpus: None,
            memory_bytes: None,
            dns: None,
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        remove_containers(&format!("label={LABEL}={}", self.run));
    }
}
