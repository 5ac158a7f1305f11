//! The node agent under test: a `moor node` process of its own (so its
//! memory is its own figure), joined to the in-process cluster's apiserver.
//! The cluster's in-process agent is cordoned, so the scheduler places every
//! pod on this one. Killed, and its containers removed, on drop.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use moor_api::core::v1::Node;
use moor_client::Client;
use moor_integration_tests::Cluster;
use tokio::process::{Child, Command};

use super::until;

/// The Docker network of a `moor node` process: its default, as `moor node`
/// has no flag for it.
pub const NETWORK: &str = "moor";

/// A running `moor node` process.
pub struct Agent {
    child: Child,
    /// Its node name (the `moor.node` label of its containers).
    pub name: String,
    _data_dir: tempfile::TempDir,
}

// === impl Agent ===

impl Agent {
    /// Starts `moor node` (found next to this binary) against `cluster`,
    /// cordons the cluster's own node and waits until this one is Ready.
    pub async fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        let moor = crate::moor_binary(None)?;
        let data_dir = tempfile::tempdir()?;
        let name = format!("{}-agent", cluster.node);
        let child = Command::new(&moor)
            .args(["node", "--server", &cluster.url, "--name", &name])
            // Port 0: several agents (and tests) share this host.
            .args(["--agent-listen", "127.0.0.1:0", "--log", "warn"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", moor.display()))?;
        let agent = Self {
            child,
            name,
            _data_dir: data_dir,
        };
        cordon(&cluster.client, &cluster.node).await?;
        let nodes = cluster.client.api::<Node>();
        until("the `moor node` agent's node to be Ready", async || {
            nodes.get("", &agent.name).await.ok().is_some_and(is_ready)
        })
        .await?;
        Ok(agent)
    }

    /// Resident memory of the agent process now and its peak, in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        crate::server::rss_mib(self.child.id().context("the `moor node` agent exited")?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Killed first, so it cannot recreate what is removed next.
        let _ = self.child.start_kill();
        remove_containers(&format!("label=moor.node={}", self.name));
    }
}

/// Marks node `name` unschedulable, retrying on conflicts with its heartbeat.
async fn cordon(client: &Client, name: &str) -> anyhow::Result<()> {
    let nodes = client.api::<Node>();
    until("the in-process node to register", async || {
        nodes.get("", name).await.is_ok()
    })
    .await?;
    for _ in 0..20 {
        let mut node = nodes.get("", name).await?;
        node.spec.get_or_insert_default().unschedulable = true;
        match nodes.update(&node).await {
            Ok(_) => return Ok(()),
            Err(moor_client::Error::Conflict(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    anyhow::bail!("could not cordon node {name}: conflicts every time")
}

fn is_ready(node: Node) -> bool {
    node.status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// Removes every container matching a `docker ps` filter. Synchronous: it
/// runs in `Drop`, also after a failure or a panic.
pub fn remove_containers(filter: &str) {
    let Ok(out) = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", filter])
        .output()
    else {
        return;
    };
    let ids = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}
