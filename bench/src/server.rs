//! The processes a benchmark measures: `moor apiserver` and etcd.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// A `moor apiserver` child process; killed on drop.
pub struct Apiserver {
    child: Child,
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Apiserver {
    /// Starts one on the embedded store in a temp dir, or on `etcd`.
    pub async fn start(etcd: Option<&str>) -> anyhow::Result<Self> {
        let moor = sibling("moor")?;
        let port = moor_testkit::free_port();
        let mut cmd = Command::new(&moor);
        cmd.args([
            "apiserver",
            "--insecure",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
        ]);
        let dir = match etcd {
            Some(endpoint) => {
                cmd.args(["--etcd-endpoints", endpoint]);
                None
            }
            None => {
                let dir = tempfile::tempdir()?;
                cmd.arg("--data-dir").arg(dir.path());
                Some(dir)
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", moor.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let server = Self {
            child,
            url,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = moor_client::Client::new(&self.url)?;
        client
            .wait_ready(Duration::from_secs(10))
            .await
            .with_context(|| format!("moor apiserver at {} did not become ready", self.url))
    }

    /// Resident memory of the process now, and its peak, in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        rss_mib(self.child.id().context("apiserver exited")?)
    }
}

/// Resident memory of process `pid` now, and its peak, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// A binary built next to this one (`cargo build --release -p moor`).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it first with `cargo build --release -p moor -p moor-bench`",
        path.display()
    );
    Ok(path)
}

/// Another `moor` subcommand as a child process; killed on drop.
pub struct Process {
    child: Child,
}

impl Process {
    /// Runs `moor ARGS...`.
    pub fn moor(args: &[&str]) -> anyhow::Result<Self> {
        let moor = sibling("moor")?;
        let child = Command::new(&moor)
            .args(args)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child })
    }

    /// Runs `moor ARGS...` with `$HOME` set to `home`.
    pub fn moor_with_home(args: &[&str], home: &std::path::Path) -> anyhow::Result<Self> {
        let moor = sibling("moor")?;
        let child = Command::new(&moor)
            .args(args)
            .env("HOME", home)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child })
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process exited")
    }
}
