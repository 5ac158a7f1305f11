//! How the `moor` binary secures its connections: the apiserver's TLS from
//! the cluster's PKI directory (created on first start), the identities of
//! the components `moor up` runs, and the credential flags of components
//! started on their own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use moor_pki::{PkiDir, ServerNames};
use moor_rpc::{ClientTls, Credentials};

/// The administrator `moor up` writes a context for: Kubernetes' group of
/// unrestricted users.
pub const ADMIN: (&str, &[&str]) = ("admin", &["system:masters"]);

/// Flags of a server's TLS (the apiserver's and `moor up`'s).
#[derive(Args, Clone, Debug)]
pub struct ServeTlsArgs {
    /// Serve plain text and authenticate nobody: anyone who reaches the port owns the cluster.
    /// Only for tests on loopback; logs a warning.
    #[arg(long)]
    pub insecure: bool,
    /// Extra DNS name or IP address the API's certificate covers (repeatable).
    #[arg(long, value_name = "NAME|IP")]
    pub tls_san: Vec<String>,
    /// The address other machines reach the API at; it goes into the certificate.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Directory of the cluster CA and the certificates issued from it
    /// (default: pki/ in the data directory, ~/.moor/pki with etcd).
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// Seconds the certificates this server issues stay valid (default a year); the API's own
    /// is renewed, without a restart, once two thirds of its life has passed.
    #[arg(long, default_value_t = 365 * 24 * 60 * 60, value_parser = clap::value_parser!(u64).range(5..))]
    pub certificate_lifetime_seconds: u64,
}

/// Flags of TLS towards etcd (Kubernetes' names).
#[derive(Args, Clone, Debug)]
pub struct EtcdTlsArgs {
    /// CA certificate (PEM file) etcd's certificate chains to: TLS to etcd, with https:// endpoints.
    #[arg(long, value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM file) to present to etcd.
    #[arg(
        long,
        value_name = "FILE",
        requires = "etcd_keyfile",
        requires = "etcd_cafile"
    )]
    pub etcd_certfile: Option<PathBuf>,
    /// The private key (PEM file) of --etcd-certfile.
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The TLS settings for `endpoints`, read and checked; `None` for
    /// plain text. https:// endpoints need a CA, and a CA needs them.
    pub fn load(&self, endpoints: &[String]) -> anyhow::Result<Option<moor_storage_etcd::EtcdTls>> {
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        let Some(ca_path) = &self.etcd_cafile else {
            anyhow::ensure!(
                https == 0,
                "https:// etcd endpoints need --etcd-cafile (and usually --etcd-certfile and --etcd-keyfile)"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            https == endpoints.len() && !endpoints.is_empty(),
            "--etcd-cafile is given, so every --etcd-endpoints URL must be https:// (TLS)"
        );
        let read = |path: &Path, flag: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("--{flag} {}: cannot read", path.display()))
        };
        let ca_pem = read(ca_path, "etcd-cafile")?;
        moor_pki::certs_from_pem(&ca_pem)
            .with_context(|| format!("--etcd-cafile {}", ca_path.display()))?;
        let client = match (&self.etcd_certfile, &self.etcd_keyfile) {
            (Some(cert), Some(key)) => {
                let pair = (read(cert, "etcd-certfile")?, read(key, "etcd-keyfile")?);
                moor_pki::Identity::from_pem(pair.0.as_str(), pair.1.as_str()).with_context(
                    || {
                        format!(
                            "--etcd-certfile {} with --etcd-keyfile {}",
                            cert.display(),
                            key.display()
                        )
                    },
                )?;
                Some(pair)
            }
            _ => None,
        };
        Ok(Some(moor_storage_etcd::EtcdTls { ca_pem, client }))
    }
}

/// Flags of a component that connects to the apiserver. Without them it
/// uses moorctl's current context (`~/.moor/config`, which `moor up`
/// writes): its server and credentials.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// URL of the apiserver: https://HOST:PORT, or http:// for one started with --insecure; or
    /// several apiservers of one cluster separated by commas, to fail over between (default: the
    /// current context's server, else https://127.0.0.1:6443).
    #[arg(long, value_name = "URL[,URL...]")]
    pub server: Option<String>,
    /// The cluster CA certificate (PEM file) to check the apiserver against.
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
    /// This component's client certificate (PEM file), signed by the cluster CA.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_certificate: Option<PathBuf>,
    /// The private key (PEM file) of --client-certificate.
    #[arg(long, value_name = "FILE", requires = "client_certificate")]
    pub client_key: Option<PathBuf>,
    /// A bearer token to authenticate with instead of a client certificate.
    #[arg(long, env = "MOOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

// === impl ClientArgs ===

impl ClientArgs {
    /// The server and the credentials for it: from the flags, the rest
    /// from moorctl's current context.
    pub fn resolve(&self) -> anyhow::Result<(String, Credentials)> {
        let path = moorctl::config::Config::path();
        let target = moorctl::config::target(self.server.as_deref(), None, &path)?;
        let credentials = if self.certificate_authority.is_some()
            || self.client_certificate.is_some()
            || self.token.is_some()
        {
            self.credentials()?
        } else {
            target.credentials
        };
        if target.server.starts_with("https://") && credentials.tls.is_none() {
            anyhow::bail!(
                "{} is https:// but no cluster CA is known ({}): pass --certificate-authority \
                 and a --client-certificate with its --client-key (or a --token), or run `moor up` \
                 on this machine first",
                target.server,
                target.chosen_by
            );
        }
        Ok((target.server, credentials))
    }

    /// The cluster CA (PEM): --certificate-authority's, else the current
    /// context's.
    pub fn ca_pem(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.certificate_authority {
            return std::fs::read_to_string(path).map(Some).with_context(|| {
                format!("--certificate-authority {}: cannot read", path.display())
            });
        }
        let config = moorctl::config::Config::load(&moorctl::config::Config::path())?;
        Ok(config
            .current()
            .and_then(|c| c.certificate_authority_data.clone()))
    }

    /// The credentials the flags name, read from their files.
    fn credentials(&self) -> anyhow::Result<Credentials> {
        let read = |path: &Path, flag: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("--{flag} {}: cannot read", path.display()))
        };
        let tls = match &self.certificate_authority {
            Some(path) => {
                let ca = read(path, "certificate-authority")?;
                moor_pki::certs_from_pem(&ca)
                    .with_context(|| format!("--certificate-authority {}", path.display()))?;
                let tls = ClientTls::new(&ca);
                match (&self.client_certificate, &self.client_key) {
                    (Some(cert), Some(key)) => {
                        let identity = moor_pki::Identity::from_pem(
                            read(cert, "client-certificate")?,
                            read(key, "client-key")?,
                        )
                        .with_context(|| {
                            format!(
                                "--client-certificate {} with --client-key {}",
                                cert.display(),
                                key.display()
                            )
                        })?;
                        Some(tls.identity(&identity))
                    }
                    _ => Some(tls),
                }
            }
            None if self.client_certificate.is_some() => {
                anyhow::bail!("--client-certificate needs --certificate-authority as well")
            }
            // A token alone: the CA the current context trusts, if any.
            None => self.ca_pem()?.map(|ca| ClientTls::new(&ca)),
        };
        Ok(Credentials {
            tls,
            token: self.token.clone(),
        })
    }
}

/// Opens (creating on first use) the PKI directory; what it issues is
/// valid for `lifetime`.
pub fn open(dir: &Path, lifetime: Duration) -> anyhow::Result<PkiDir> {
    let pki = PkiDir::open_or_create(dir, lifetime)
        .with_context(|| format!("the cluster PKI in {}", dir.display()))?;
    if pki.created() {
        tracing::info!(dir = %dir.display(), digest = pki.ca().digest(), "created the cluster CA");
    }
    Ok(pki)
}

/// The apiserver's TLS: a certificate for every name it may be reached by.
pub fn apiserver_tls(
    pki: &PkiDir,
    listen: SocketAddr,
    args: &ServeTlsArgs,
) -> anyhow::Result<moor_apiserver::Tls> {
    let names = server_names(listen, args.advertise_address, &args.tls_san);
    let identity = serving_identity(pki, &names)?;
    tracing::info!(dns = ?names.dns, ips = ?names.ips, "serving TLS");
    Ok(moor_apiserver::Tls {
        identity,
        ca_pem: pki.ca().cert_pem().to_string(),
        signer: Some(pki.ca().clone()),
        node_cert_validity: pki.leaf_validity(),
        agent_client: pki
            .client(
                "apiserver-agent-client",
                moor_api::well_known::APISERVER_USER,
                &[],
            )
            .context("the apiserver's certificate towards node agents")?,
        control_plane: None,
    })
}

/// The names the apiserver's certificate covers: localhost and loopback,
/// this host's name, the listen address (or, listening on every address,
/// the host's address on its default route), the advertised address and
/// every `--tls-san`.
fn server_names(listen: SocketAddr, advertise: Option<IpAddr>, extra: &[String]) -> ServerNames {
    let mut names = ServerNames {
        dns: vec!["localhost".to_string()],
        ips: vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
    };
    let hostname = crate::hostname();
    if hostname != "local" {
        names.dns.push(hostname);
    }
    let listen_ip = if listen.ip().is_unspecified() {
        moor_rpc::host_ip()
    } else {
        listen.ip()
    };
    names.ips.extend([listen_ip].into_iter().chain(advertise));
    for san in extra {
        match san.parse::<IpAddr>() {
            Ok(ip) => names.ips.push(ip),
            Err(_) => names.dns.push(san.to_lowercase()),
        }
    }
    let mut seen = Vec::new();
    names.ips.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    let mut seen = Vec::new();
    names.dns.retain(|name| {
        let new = !seen.contains(name);
        seen.push(name.clone());
        new
    });
    names
}

/// A component's credentials: a client certificate for `user` in `groups`
/// from the PKI directory (kept as `name`), and the CA to check the
/// apiserver against.
pub fn component(
    pki: &PkiDir,
    name: &str,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<Credentials> {
    let identity = pki
        .client(name, user, groups)
        .with_context(|| format!("the certificate of {user}"))?;
    Ok(Credentials {
        tls: Some(ClientTls::new(pki.ca().cert_pem()).identity(&identity)),
        token: None,
    })
}

/// The apiserver's serving identity from `pki` (reissued when due), with
/// the CA after its certificate so a joining node can pin it by its
/// token's digest.
fn serving_identity(pki: &PkiDir, names: &ServerNames) -> anyhow::Result<moor_pki::Identity> {
    let leaf = pki
        .server("apiserver", names)
        .context("the apiserver's certificate")?;
    let mut chain = leaf.cert_pem().to_string();
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    chain.push_str(pki.ca().cert_pem());
    moor_pki::Identity::from_pem(chain, leaf.key_pem()).context("the apiserver's certificate chain")
}

/// Renews the apiserver's certificate while it serves: checks as often as
/// a thirtieth of its lifetime (between a second and an hour) and hands a
/// reissued one to `tls`, for the handshakes that follow.
pub async fn renew_serving(
    pki: std::sync::Arc<PkiDir>,
    listen: SocketAddr,
    args: ServeTlsArgs,
    tls: moor_rpc::ServerTls,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let names = server_names(listen, args.advertise_address, &args.tls_san);
    let every = (pki.leaf_validity() / 30).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut serial = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match serving_identity(&pki, &names) {
            Ok(identity) => {
                let now = identity.info().serial.clone();
                if serial.as_ref().is_some_and(|s| *s == now) {
                    continue;
                }
                match tls.renew(&identity) {
                    Ok(()) if serial.is_some() => {
                        tracing::info!(serial = %now, "renewed the apiserver's certificate");
                    }
                    Ok(()) => {}
                    Err(err) => tracing::warn!(%err, "cannot serve the renewed certificate"),
                }
                serial = Some(now);
            }
            Err(err) => tracing::warn!(
                err = format!("{err:#}"),
                "cannot renew the apiserver's certificate; will retry"
            ),
        }
    }
}

/// A node's credentials towards the apiserver and its agent's TLS, from
/// one identity: `system:node:NAME`, a server certificate for NAME too.
pub fn node(identity: &moor_pki::Identity, ca_pem: &str) -> (Credentials, moor_node::AgentTls) {
    (
        Credentials {
            tls: Some(ClientTls::new(ca_pem).identity(identity)),
            token: None,
        },
        moor_node::AgentTls {
            identity: identity.clone(),
            ca_pem: ca_pem.to_string(),
        },
    )
}

/// The URL clients on this machine use for a server bound to `addr`: an
/// unspecified address is reached on loopback.
pub fn local_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(host, addr.port()))
}

/// Warns that the server serves plain text to anyone.
pub fn warn_insecure(listen: SocketAddr) {
    tracing::warn!(
        %listen,
        "--insecure: serving plain text without authentication; anyone who reaches this \
         address owns the cluster"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_loopback_the_listen_address_the_advertised_one_and_extra_sans() {
        let names = server_names(
            "198.18.0.2:6443".parse().unwrap(),
            Some("198.18.0.9".parse().unwrap()),
            &["api.example".into(), "10.1.2.3".into(), "localhost".into()],
        );
        assert!(names.dns.contains(&"localhost".to_string()));
        assert!(names.dns.contains(&"api.example".to_string()));
        assert_eq!(
            names.dns.iter().filter(|n| *n == "localhost").count(),
            1,
            "no name twice"
        );
        for ip in ["127.0.0.1", "::1", "198.18.0.2", "198.18.0.9", "10.1.2.3"] {
            assert!(
                names.ips.contains(&ip.parse().unwrap()),
                "{ip} in {names:?}"
            );
        }
    }

    #[test]
    fn a_server_on_every_address_is_reached_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:6443".parse().unwrap(), true),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            local_url("[::]:7".parse().unwrap(), false),
            "http://[::1]:7"
        );
    }
}
