//! A throwaway single-member etcd server, for tests that need a real one.
//!
//! It runs the `etcd` binary from `PATH` (Debian's `etcd-server` package) on
//! two free loopback ports with a fresh data directory, and kills it and
//! removes the directory on drop.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::free_port;

/// How many times a start is retried when another process took a port
/// between `free_port` and etcd binding it.
const ATTEMPTS: u32 = 4;
/// How long etcd gets to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the health check is retried while etcd starts.
const START_POLL: Duration = Duration::from_millis(50);
/// Bound on one HTTP request to etcd, so a wedged server fails the poll
/// instead of hanging it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running etcd, killed (and its data removed) on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_port: u16,
    /// The TLS client port, when started with [`EtcdServer::start_tls`].
    tls_port: Option<u16>,
    // Declared last so it is removed after `drop` has killed the process.
    dir: TempDir,
}

/// PEM files for an etcd that serves TLS and requires client certificates.
#[derive(Clone, Debug)]
pub struct EtcdTlsFiles {
    /// The CA that signed the server's certificate and that clients' must chain to.
    pub ca: PathBuf,
    /// The server certificate (for 127.0.0.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// Why one start attempt failed.
enum StartError {
    /// A port was taken by someone else: worth another try.
    PortTaken(anyhow::Error),
    /// Anything else: give up.
    Fatal(anyhow::Error),
}

// === impl EtcdServer ===

impl EtcdServer {
    /// Starts etcd on free loopback ports with an empty data directory and
    /// returns once it reports itself healthy (bounded by 20 s). Fails with
    /// an install hint if there is no `etcd` binary on `PATH`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Like [`EtcdServer::start`], and also serving TLS with `tls` on a
    /// second client port ([`EtcdServer::tls_endpoint`]) that requires a
    /// client certificate from `tls.ca`; the plain port stays for health.
    pub async fn start_tls(tls: &EtcdTlsFiles) -> anyhow::Result<Self> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&EtcdTlsFiles>) -> anyhow::Result<Self> {
        let binary = find_on_path("etcd", std::env::var_os("PATH")).ok_or_else(|| {
            anyhow::anyhow!(
                "the etcd binary is not on PATH; install it with `apt-get install etcd-server`"
            )
        })?;
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            match Self::try_start(&binary, tls).await {
                Ok(server) => return Ok(server),
                Err(StartError::Fatal(e)) => return Err(e),
                Err(StartError::PortTaken(e)) => {
                    tracing::warn!(attempt, error = %e, "etcd lost a port race; retrying on new ports");
                    last = Some(e);
                }
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context(format!(
                "etcd could not get free ports in {ATTEMPTS} attempts"
            )))
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The TLS client URL, `https://127.0.0.1:PORT`, if it serves one.
    pub fn tls_endpoint(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("https://127.0.0.1:{port}"))
    }

    /// The body of a plain HTTP GET of `path` (e.g. `/health`, `/metrics`)
    /// on the client port; fails unless etcd answers 200.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<String> {
        tokio::time::timeout(HTTP_TIMEOUT, http_get(self.client_port, path))
            .await
            .with_context(|| format!("GET {path} took over {HTTP_TIMEOUT:?}"))?
    }

    /// One attempt: spawn etcd on fresh ports and wait for it to be healthy.
    async fn try_start(binary: &Path, tls: Option<&EtcdTlsFiles>) -> Result<Self, StartError> {
        let fatal = StartError::Fatal;
        let dir = tempfile::Builder::new().prefix("moor-etcd-").tempdir();
        let dir = dir
            .context("creating etcd's temporary directory")
            .map_err(fatal)?;
        let client_port = free_port();
        let peer_port = std::iter::repeat_with(free_port)
            .find(|port| *port != client_port)
            .unwrap_or(client_port);
        let tls_port = tls.map(|_| {
            std::iter::repeat_with(free_port)
                .find(|port| *port != client_port && *port != peer_port)
                .unwrap_or(client_port)
        });
        let log_path = dir.path().join("etcd.log");
        let ports = Ports {
            client: client_port,
            peer: peer_port,
            tls: tls_port.zip(tls),
        };
        let child = spawn(binary, dir.path(), &ports, &log_path);
        let child = child.map_err(fatal)?;
        let mut server = Self {
            child,
            client_port,
            tls_port,
            dir,
        };
        tracing::debug!(client_port, peer_port, dir = %server.dir.path().display(), "etcd started");

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = server
                .child
                .try_wait()
                .context("polling etcd")
                .map_err(fatal)?;
            if let Some(status) = exited {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let error = anyhow::anyhow!("etcd exited with {status}; its log:\n{}", tail(&log));
                return Err(if log.contains("address already in use") {
                    StartError::PortTaken(error)
                } else {
                    StartError::Fatal(error)
                });
            }
            let health = server.http_get("/health").await;
            if health.is_ok_and(|body| body.contains(r#""health":"true""#)) {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(fatal(anyhow::anyhow!(
                    "etcd was not healthy within {START_TIMEOUT:?}; its log:\n{}",
                    tail(&log)
                )));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Killing is synchronous (SIGKILL, then reap), so the ports are free
        // and the directory unused once drop returns.
        if let Err(e) = self.child.kill() {
            tracing::warn!(error = %e, "could not kill etcd; it may outlive the test");
        }
        if let Err(e) = self.child.wait() {
            tracing::warn!(error = %e, "could not reap etcd");
        }
    }
}

/// The ports one etcd listens on.
struct Ports<'a> {
    client: u16,
    peer: u16,
    /// A TLS client port and its files.
    tls: Option<(u16, &'a EtcdTlsFiles)>,
}

/// Spawns etcd as a single-member cluster, its output going to `log_path`.
fn spawn(binary: &Path, dir: &Path, ports: &Ports<'_>, log_path: &Path) -> anyhow::Result<Child> {
    let client_url = format!("http://127.0.0.1:{}", ports.client);
    let peer_url = format!("http://127.0.0.1:{}", ports.peer);
    let log = File::create(log_path).context("creating etcd's log file")?;
    let log_err = log.try_clone().context("duplicating etcd's log file")?;
    let mut command = Command::new(binary);
    let (listen, advertise) = match ports.tls {
        Some((port, files)) => {
            command
                .arg("--cert-file")
                .arg(&files.cert)
                .arg("--key-file")
                .arg(&files.key)
                .arg("--trusted-ca-file")
                .arg(&files.ca)
                .arg("--client-cert-auth");
            let tls_url = format!("https://127.0.0.1:{port}");
            (format!("{client_url},{tls_url}"), tls_url)
        }
        None => (client_url.clone(), client_url),
    };
    command
        .args(["--name", "moor-test"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &listen])
        .args(["--advertise-client-urls", &advertise])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("moor-test={peer_url}")])
        // A lone member has no peer to lose: short timeouts only make it
        // elect itself sooner.
        .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
        .args(["--logger", "zap", "--log-outputs", "stderr"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))
}

/// A minimal HTTP/1.0 GET; etcd's health and metrics endpoints need no more.
pub(crate) async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {status}");
    }
    Ok(body.to_owned())
}

/// The first file called `name` in the directories of a `PATH` value.
pub(crate) fn find_on_path(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The last lines of a log, enough to see why a process died.
pub(crate) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_not_found() {
        assert_eq!(find_on_path("etcd", None), None);
        assert_eq!(
            find_on_path("etcd", Some(OsString::from("/nonexistent"))),
            None
        );
    }

    #[tokio::test]
    async fn starts_answers_and_cleans_up() {
        crate::init_tracing();
        let server = EtcdServer::start().await.expect("etcd starts");
        let endpoint = server.endpoint();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
        let health = server.http_get("/health").await.expect("health");
        assert!(health.contains(r#""health":"true""#), "{health}");
        let metrics = server.http_get("/metrics").await.expect("metrics");
        assert!(
            metrics.contains("etcd_server_has_leader 1"),
            "metrics say no leader"
        );

        let dir = server.dir.path().to_owned();
        let port = server.client_port;
        drop(server);
        assert!(
            !dir.exists(),
            "data directory {} left behind",
            dir.display()
        );
        let connect = TcpStream::connect(("127.0.0.1", port)).await;
        assert!(
            connect.is_err(),
            "etcd still listening on {port} after drop"
        );
    }

    #[tokio::test]
    async fn two_servers_run_side_by_side() {
        let (a, b) = tokio::join!(EtcdServer::start(), EtcdServer::start());
        let (a, b) = (a.expect("first etcd"), b.expect("second etcd"));
        assert_ne!(a.endpoint(), b.endpoint());
    }
}
