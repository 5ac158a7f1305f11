//! The cluster's image registry (`moor up`; off with `--no-registry`):
//! Debian's docker-registry (the distribution v2 server) as a
//! [`crate::child`] of the server, its blobs under the data directory's
//! `registry/`, so pushed images survive restarts.
//!
//! The registry itself speaks plain HTTP on 127.0.0.1 only, which Docker
//! accepts for loopback without any configuration: `docker push
//! localhost:5000/IMAGE` works on the server's machine as it is.
//!
//! When the API is reachable from other machines, moor also serves the
//! registry on the advertised address, same port, in TLS with the
//! apiserver's certificate (renewed with it), and only to clients with a
//! certificate of the cluster CA: the registry is never open to the
//! network. Each node's Docker trusts it through
//! `/etc/docker/certs.d/HOST:PORT/` (the CA, and the node's own
//! certificate as a client certificate, `moor-node-NAME.cert` and `.key`),
//! which `moor up` and `moor join` write; Docker reads that directory at
//! every pull, so no daemon restart is needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The registry's port unless told otherwise, as Docker's own docs use.
pub const DEFAULT_PORT: u16 = 5000;
/// How long a starting registry gets to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Where Docker looks for a registry's CA and client certificate.
pub const DOCKER_CERTS_DIR: &str = "/etc/docker/certs.d";

/// Flags of the cluster's registry (`moor up`).
#[derive(Args, Clone, Debug)]
pub struct RegistryArgs {
    /// Do not run the cluster's image registry.
    #[arg(long)]
    pub no_registry: bool,
    /// Port of the cluster's image registry: plain HTTP on 127.0.0.1 (`docker push
    /// localhost:PORT/IMAGE`) and, when the API is reachable from other machines, TLS with client
    /// certificates of the cluster CA on the advertised address.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub registry_port: u16,
    /// An htpasswd file (bcrypt entries, as `htpasswd -B` writes) whose users the cluster's
    /// registry asks every client to log in as (`docker login`; pods pull with imagePullSecrets).
    #[arg(long, conflicts_with = "no_registry")]
    pub registry_htpasswd: Option<PathBuf>,
}

/// What a server's registry is: its port, and its users if it has any.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Its port, on loopback and the advertised address.
    pub port: u16,
    /// The htpasswd file clients log in against.
    pub htpasswd: Option<PathBuf>,
}

impl RegistryArgs {
    /// The registry these flags ask for, if any; the htpasswd file must be
    /// readable now (its absolute path goes into the registry's config).
    pub fn settings(&self) -> anyhow::Result<Option<Settings>> {
        if self.no_registry {
            return Ok(None);
        }
        let htpasswd =
            match &self.registry_htpasswd {
                Some(file) => Some(std::fs::canonicalize(file).with_context(|| {
                    format!("--registry-htpasswd {}: cannot read", file.display())
                })?),
                None => None,
            };
        Ok(Some(Settings {
            port: self.registry_port,
            htpasswd,
        }))
    }
}

/// Flags of a node's trust in the cluster's registry (`moor join`).
#[derive(Args, Clone, Debug)]
pub struct TrustArgs {
    /// The cluster's image registry, HOST:PORT, that this node's Docker is set up to trust
    /// (default: the server's host, port 5000).
    #[arg(long, conflicts_with = "no_registry")]
    pub registry: Option<String>,
    /// Leave this machine's Docker configuration alone (the cluster runs no registry).
    #[arg(long)]
    pub no_registry: bool,
}

impl TrustArgs {
    /// The registry this node trusts, if any: `--registry`, else the host
    /// of the apiserver's `server` URL on the default port (none on
    /// loopback).
    pub fn registry(&self, server: &str) -> anyhow::Result<Option<String>> {
        if self.no_registry {
            return Ok(None);
        }
        if let Some(registry) = &self.registry {
            return Ok(Some(registry.clone()));
        }
        let uri: http::Uri = server
            .parse()
            .with_context(|| format!("{server}: not a URL"))?;
        let host = uri
            .host()
            .with_context(|| format!("{server}: the URL names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        // Docker reaches a registry on loopback in plain HTTP, as the
        // server's own registry answers there, and reads no certificates
        // for it.
        Ok((!loopback).then(|| format!("{host}:{DEFAULT_PORT}")))
    }
}

/// The cluster's registry of a server whose data directory is `home`.
pub struct Registry {
    /// Its port.
    pub port: u16,
    /// The htpasswd file clients log in against, if any.
    pub htpasswd: Option<PathBuf>,
    /// Where it keeps its configuration, blobs and log.
    pub dir: PathBuf,
}

impl Registry {
    /// The registry under `home`, as `settings` say.
    pub fn new(home: &Path, settings: Settings) -> Self {
        Self {
            port: settings.port,
            htpasswd: settings.htpasswd,
            dir: home.join("registry"),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// Starts it as one of `tasks` and waits until it listens on loopback;
    /// with `front`, also serves it there to clients with a certificate of
    /// the cluster CA (the TLS's client CA).
    pub async fn start(
        &self,
        front: Option<(SocketAddr, moor_rpc::ServerTls)>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        // Another registry (or anything) on the port would answer in its
        // place: refuse to start rather than serve someone else's images.
        drop(TcpListener::bind(local).await.map_err(|err| {
            anyhow::anyhow!(
                "the cluster's registry cannot listen on {local}: {err}. Is another registry \
                 running? Pick another port with --registry-port, or run without one \
                 (--no-registry)"
            )
        })?);
        let front = match front {
            Some((addr, tls)) => {
                let listener = TcpListener::bind(addr).await.map_err(|err| {
                    anyhow::anyhow!(
                        "the cluster's registry cannot listen on {addr}: {err}. Pick another \
                         port with --registry-port, or run without one (--no-registry)"
                    )
                })?;
                let acceptor = tls
                    .requiring_client_certificate()
                    .acceptor_speaking(&[b"http/1.1"])?;
                Some((listener, acceptor))
            }
            None => None,
        };
        let config = self.write_config()?;
        let log = self.log();
        {
            let log = log.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                crate::child::keep_running(
                    "the image registry",
                    log.clone(),
                    || spawn(&config, &log),
                    shutdown,
                )
                .await
                .context("the image registry")
            });
        }
        crate::etcd::retry(
            START_TIMEOUT,
            Duration::from_millis(50),
            || TcpStream::connect(local),
            |_| true,
        )
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "the cluster's registry did not listen on {local} within {START_TIMEOUT:?} \
                 ({err}); its log {} ends: {}",
                log.display(),
                crate::child::last_line(&log)
            )
        })?;
        tracing::info!(%local, log = %log.display(), "image registry started");
        if let Some((listener, acceptor)) = front {
            let addr = listener.local_addr().ok();
            tracing::info!(?addr, "serving the image registry to the cluster's nodes");
            tasks.spawn(serve_front(listener, acceptor, local, shutdown.clone()));
        }
        Ok(())
    }

    /// Writes distribution's configuration: storage under the registry's
    /// directory, HTTP on loopback, relative URLs (behind the TLS front the
    /// registry cannot know the scheme its clients use).
    fn write_config(&self) -> anyhow::Result<PathBuf> {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data)
            .with_context(|| format!("{}: cannot create", data.display()))?;
        let config = self.dir.join("config.yml");
        let mut text = format!(
            "# Written by moor at each start; edits are lost.\n\
             version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{}\n  relativeurls: true\n",
            data.display(),
            self.port
        );
        if let Some(htpasswd) = &self.htpasswd {
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: moor\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text)
            .with_context(|| format!("{}: cannot write", config.display()))?;
        Ok(config)
    }
}

fn spawn(config: &Path, log: &Path) -> anyhow::Result<tokio::process::Child> {
    let mut command = crate::child::command("docker-registry", log)?;
    command.arg("serve").arg(config);
    command.spawn().context(
        "cannot start docker-registry (through setpriv): install Debian's docker-registry \
         package, or run without the cluster's registry (--no-registry)",
    )
}

/// Accepts TLS connections with a client certificate of the cluster CA
/// and relays each to the registry on loopback.
async fn serve_front(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    registry: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "the registry's front cannot accept");
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::info!(%peer, %err, "refused a registry client");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "a registry client did not finish its handshake");
                    return;
                }
            };
            let mut tls = tls;
            let mut backend = match TcpStream::connect(registry).await {
                Ok(backend) => backend,
                Err(err) => {
                    tracing::warn!(%err, "the image registry does not answer");
                    return;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut tls, &mut backend) => {}
            }
        });
    }
}

/// Sets this machine's Docker up to pull from the cluster's registry at
/// `registry` (HOST:PORT): the cluster CA to check it, and `identity` (the
/// node `node`'s) as the client certificate it demands. Docker pairs each
/// `NAME.cert` with `NAME.key` and offers every pair, so each node writes
/// a pair of its own: the nodes of one machine (a lab's hosts) never mix
/// one's certificate with another's key. Each file is replaced whole.
pub fn trust(
    registry: &str,
    ca_pem: &str,
    identity: &moor_pki::Identity,
    node: &str,
) -> anyhow::Result<()> {
    let dir = Path::new(DOCKER_CERTS_DIR).join(registry);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let cert = format!("moor-node-{node}.cert");
    let key = format!("moor-node-{node}.key");
    // The key first: Docker reads a certificate only with its key.
    for (name, text, mode) in [
        ("ca.crt", ca_pem, 0o644),
        (key.as_str(), identity.key_pem(), 0o600),
        (cert.as_str(), identity.cert_pem(), 0o644),
    ] {
        let path = dir.join(name);
        // Its own temporary name: the nodes of a machine may write the
        // same directory at once.
        let temporary = dir.join(format!(".{name}.{}.moor", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&temporary)
                .with_context(|| format!("{}: cannot write", temporary.display()))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("{}: cannot write", temporary.display()))?;
        }
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    tracing::info!(%registry, dir = %dir.display(), "Docker trusts the cluster's registry");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(registry: Option<&str>, no_registry: bool) -> TrustArgs {
        TrustArgs {
            registry: registry.map(str::to_string),
            no_registry,
        }
    }

    #[test]
    fn a_node_trusts_the_servers_host_unless_told_otherwise() {
        let server = "https://198.18.0.2:6443";
        assert_eq!(
            args(None, false).registry(server).unwrap().as_deref(),
            Some("198.18.0.2:5000")
        );
        assert_eq!(
            args(Some("registry.lan:5443"), false)
                .registry(server)
                .unwrap()
                .as_deref(),
            Some("registry.lan:5443")
        );
        assert_eq!(args(None, true).registry(server).unwrap(), None);
        assert_eq!(
            args(None, false)
                .registry("https://127.0.0.1:6443")
                .unwrap(),
            None
        );
        assert!(args(None, false).registry("not a url").is_err());
    }
}
