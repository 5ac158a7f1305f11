//! A throwaway etcd cluster of several members on loopback, for fault
//! tests: kill a member (SIGKILL), find the leader, start a member again.
//!
//! Members run the `etcd` binary from `PATH` with etcd's default heartbeat
//! and election timeouts (100 ms, 1 s), so that a lost leader is replaced as
//! it would be in production. Every member is killed and the data removed
//! on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::etcd::{find_on_path, http_get, tail};
use crate::{eventually, free_port};

/// How long the members get to elect a leader and report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one HTTP request to a member.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Several etcd members forming one cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    members: Vec<Member>,
    /// The `--initial-cluster` value every member started with.
    initial_cluster: String,
    // Declared last so it is removed after every member is killed.
    dir: TempDir,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The process, `None` while killed.
    child: Option<Child>,
}

// === impl EtcdCluster ===

impl EtcdCluster {
    /// Starts `size` members and returns once each reports itself healthy
    /// (which needs an elected leader).
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        let binary = find_on_path("etcd", std::env::var_os("PATH")).ok_or_else(|| {
            anyhow::anyhow!(
                "the etcd binary is not on PATH; install it with `apt-get install etcd-server`"
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("moor-etcd-cluster-")
            .tempdir()
            .context("creating the cluster's temporary directory")?;
        let mut ports = Vec::new();
        while ports.len() < size * 2 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("member-{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            binary,
            members,
            initial_cluster,
            dir,
        };
        for index in 0..size {
            cluster.spawn(index)?;
        }
        for index in 0..size {
            cluster.wait_member_healthy(index).await?;
        }
        Ok(cluster)
    }

    /// The client URLs of every member, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The client URL of member `index`.
    pub fn endpoint(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[index].client_port)
    }

    /// The member that says it leads, among the running ones.
    pub async fn leader(&self) -> anyhow::Result<Option<usize>> {
        for (index, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let metrics = self.get(index, "/metrics").await;
            if metrics.is_ok_and(|m| m.lines().any(|line| line == "etcd_server_is_leader 1")) {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }

    /// Waits until some running member leads, and returns it.
    pub async fn wait_leader(&self) -> anyhow::Result<usize> {
        let leader = eventually(START_TIMEOUT, || async {
            self.leader().await.ok().flatten()
        });
        leader
            .await
            .with_context(|| format!("no member became leader within {START_TIMEOUT:?}"))
    }

    /// Kills member `index` with SIGKILL, as a crash would.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let member = &mut self.members[index];
        let mut child = member
            .child
            .take()
            .with_context(|| format!("{} is not running", member.name))?;
        child.kill().context("killing etcd")?;
        child.wait().context("reaping etcd")?;
        Ok(())
    }

    /// Starts member `index` again on its data and ports, and waits for it
    /// to report healthy.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.spawn(index)?;
        self.wait_member_healthy(index).await
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let data = self.dir.path().join(&self.members[index].name);
        let log_path = self.log_path(index);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("opening etcd's log file")?;
        let log_err = log.try_clone().context("duplicating etcd's log file")?;
        let member = &self.members[index];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new(&self.binary)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "moor-test"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.members[index].child = Some(child);
        Ok(())
    }

    /// Waits until every running member reports healthy: each knows a
    /// leader.
    pub async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        for index in 0..self.members.len() {
            if self.members[index].child.is_some() {
                self.wait_member_healthy(index).await?;
            }
        }
        Ok(())
    }

    /// Waits until member `index` reports healthy; fails at once, with
    /// its log, if it exits.
    async fn wait_member_healthy(&mut self, index: usize) -> anyhow::Result<()> {
        let port = self.members[index].client_port;
        let child = &mut self.members[index].child;
        let outcome = eventually(START_TIMEOUT, || {
            // Checked before each poll, outside the future, which then
            // borrows nothing.
            let exited = match child.as_mut().map(Child::try_wait) {
                None => Some(Err(anyhow::anyhow!("etcd {index} is not running"))),
                Some(Ok(Some(status))) => {
                    *child = None;
                    Some(Err(anyhow::anyhow!("etcd {index} exited with {status}")))
                }
                Some(Ok(None)) => None,
                Some(Err(e)) => Some(Err(anyhow::Error::new(e).context("polling etcd"))),
            };
            async move {
                if exited.is_some() {
                    return exited;
                }
                let health = get(port, "/health").await;
                health
                    .is_ok_and(|body| body.contains(r#""health":"true""#))
                    .then_some(Ok(()))
            }
        })
        .await
        .unwrap_or_else(|| {
            Err(anyhow::anyhow!(
                "etcd {index} was not healthy within {START_TIMEOUT:?}"
            ))
        });
        outcome.map_err(|e| {
            let log = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
            e.context(format!("its log:\n{}", tail(&log)))
        })
    }

    async fn get(&self, index: usize, path: &str) -> anyhow::Result<String> {
        get(self.members[index].client_port, path).await
    }

    fn log_path(&self, index: usize) -> PathBuf {
        log_path(self.dir.path(), &self.members[index].name)
    }
}

/// GET `path` from the member on `port`, bounded.
async fn get(port: u16, path: &str) -> anyhow::Result<String> {
    tokio::time::timeout(HTTP_TIMEOUT, http_get(port, path))
        .await
        .with_context(|| format!("GET {path} took over {HTTP_TIMEOUT:?}"))?
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                if let Err(e) = child.kill() {
                    tracing::warn!(error = %e, "could not kill etcd; it may outlive the test");
                }
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn three_members_elect_again_after_the_leader_dies() {
        crate::init_tracing();
        let mut cluster = EtcdCluster::start(3).await.expect("cluster starts");
        let leader = cluster.wait_leader().await.expect("a leader");
        cluster.kill(leader).expect("kill");
        let next = cluster.wait_leader().await.expect("a new leader");
        assert_ne!(next, leader);
        cluster
            .restart(leader)
            .await
            .expect("the old leader rejoins");
    }
}
