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
    /// An administrator's credentials (none for plain text).
    pub credentials: moor_rpc::Credentials,
    _dir: Option<tempfile::TempDir>,
    _pki: Option<tempfile::TempDir>,
}

/// How the apiserver under measurement talks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `--insecure`: plain text, nobody authenticated.
    Plain,
    /// The default: TLS, every caller with a client certificate.
    Tls,
}

impl Apiserver {
    /// Starts one in plain text on the embedded store in a temp dir, or on `etcd`.
    pub async fn start(etcd: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(etcd, Transport::Plain, &[]).await
    }

    /// Starts one speaking `transport`, with `extra` flags; over TLS the
    /// benchmark is an administrator with a certificate from the server's
    /// new CA.
    pub async fn start_with(
        etcd: Option<&str>,
        transport: Transport,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let moor = sibling("moor")?;
        let port = moor_testkit::free_port();
        let mut cmd = Command::new(&moor);
        cmd.args([
            "apiserver",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
        ]);
        let pki = tempfile::tempdir()?;
        match transport {
            Transport::Plain => {
                cmd.arg("--insecure");
            }
            Transport::Tls => {
                cmd.arg("--pki-dir").arg(pki.path());
            }
        }
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
            .args(extra)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", moor.display()))?;
        let (url, credentials) = match transport {
            Transport::Plain => (
                format!("http://127.0.0.1:{port}"),
                moor_rpc::Credentials::default(),
            ),
            Transport::Tls => (
                format!("https://127.0.0.1:{port}"),
                admin(pki.path()).await?,
            ),
        };
        let server = Self {
            child,
            url,
            credentials,
            _dir: dir,
            _pki: Some(pki),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// A client of the server, as its administrator.
    pub fn client(&self) -> anyhow::Result<moor_client::Client> {
        Ok(moor_client::Client::connect(&self.url, &self.credentials)?)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        self.client()?
            .wait_ready(Duration::from_secs(10))
            .await
            .with_context(|| format!("moor apiserver at {} did not become ready", self.url))
    }

    /// Resident memory of the process now, and its peak, in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        rss_mib(self.child.id().context("apiserver exited")?)
    }
}

/// An administrator's credentials from the CA the apiserver creates in
/// `pki` on its start (waited for: the CA appears once it runs).
async fn admin(pki: &std::path::Path) -> anyhow::Result<moor_rpc::Credentials> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pki.join("apiserver.crt").exists() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the apiserver made no CA in {}",
            pki.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ca = moor_pki::Ca::load(pki)?;
    let identity = ca.issue_client(
        "bench",
        &["system:masters"],
        moor_pki::DEFAULT_LEAF_VALIDITY,
    )?;
    Ok(moor_rpc::Credentials {
        tls: Some(moor_rpc::ClientTls::new(ca.cert_pem()).identity(&identity)),
        token: None,
    })
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
