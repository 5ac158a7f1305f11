//! The baseline: the two containers a pod is made of, the pause sandbox on
//! a bridge network and then the echo container in its network and IPC
//! namespaces, created and started straight through `moor_runtime::Docker`
//! (the same bollard client and create bodies the agent's calls go through),
//! with nothing of moor around them: four Docker calls per pod.
//!
//! By default the network is a plain Docker network, so Docker attaches the
//! sandbox itself, as `docker run --network` does: the baseline is what
//! Docker alone takes. With `--direct-attach moor` it is the agent's
//! network, where the runtime attaches sandboxes as it does for the agent:
//! the baseline then isolates what the control plane adds.

use moor_runtime::{ContainerRuntime, ContainerSpec, Docker, Labels, NetworkMode};
use tokio::time::{Duration, Instant};

use super::agent::remove_containers;

/// The label on every container of the baseline; its value is this run's.
const LABEL: &str = "moor-bench.pod-startup";

/// Creates baseline pods; removes them all on drop.
pub struct Direct {
    docker: Docker,
    network: String,
    /// The network this baseline made, removed on drop.
    own_network: Option<String>,
    run: String,
}

/// Who attaches the baseline's sandboxes to their network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Attach {
    /// Docker, on a network of the baseline's own without a moor range.
    Docker,
    /// moor's runtime, on the agent's network, as for the agent's pods.
    Moor,
}

// === impl Direct ===

impl Direct {
    /// Connects to Docker; sandboxes are attached by `attach`, on the
    /// agent's network `agent_network` or on one of the baseline's own.
    pub async fn connect(agent_network: &str, attach: Attach) -> anyhow::Result<Self> {
        let run = std::process::id().to_string();
        let (network, own_network) = match attach {
            Attach::Moor => (agent_network.to_owned(), None),
            Attach::Docker => {
                let network = format!("moor-bench-direct-{run}");
                let created = std::process::Command::new("docker")
                    .args(["network", "create", &network])
                    .output()?;
                anyhow::ensure!(
                    created.status.success(),
                    "docker network create {network}: {}",
                    String::from_utf8_lossy(&created.stderr).trim()
                );
                (network.clone(), Some(network))
            }
        };
        let docker = Docker::connect(&network).await?;
        docker.ensure_network(&network).await?;
        Ok(Self {
            docker,
            network,
            own_network,
            run,
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
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        remove_containers(&format!("label={LABEL}={}", self.run));
        if let Some(network) = &self.own_network {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", network])
                .output();
        }
    }
}
