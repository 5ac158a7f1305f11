//! A cluster's PKI directory: the CA and the certificates issued from it
//! for this machine's components, each kept as `<name>.crt` and
//! `<name>.key`. Opening it creates what is missing and reissues what is due
//! for renewal (or no longer names what it must), so starting a server is
//! all the setup there is.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{CA_CERT_FILE, Ca, DEFAULT_CA_VALIDITY, Error, Identity};

/// The common name of a CA this module creates.
pub const CA_COMMON_NAME: &str = "moor-ca";

/// The PKI directory of a cluster (`<data dir>/pki`).
pub struct PkiDir {
    dir: PathBuf,
    ca: Arc<Ca>,
    leaf_validity: Duration,
    created: bool,
}

/// What a server certificate must name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerNames {
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

// === impl PkiDir ===

impl PkiDir {
    /// Opens the PKI in `dir`, creating a CA (valid ten years) if there is
    /// none. Certificates it issues are valid for `leaf_validity`.
    pub fn open_or_create(dir: &Path, leaf_validity: Duration) -> Result<Self, Error> {
        Self::open_or_create_named(dir, CA_COMMON_NAME, leaf_validity)
    }

    /// [`PkiDir::open_or_create`] with a CA named `ca_common_name` if it
    /// creates one: for a second CA of the cluster, as etcd's.
    pub fn open_or_create_named(
        dir: &Path,
        ca_common_name: &str,
        leaf_validity: Duration,
    ) -> Result<Self, Error> {
        let mut created = false;
        let ca = if dir.join(CA_CERT_FILE).exists() {
            Ca::load(dir)?
        } else {
            let ca = Ca::generate(ca_common_name, DEFAULT_CA_VALIDITY)?;
            ca.save(dir)?;
            created = true;
            ca
        };
        Ok(Self {
            dir: dir.to_owned(),
            ca: Arc::new(ca),
            leaf_validity,
            created,
        })
    }

    /// Whether opening it created the CA.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The CA (shared, for a server that signs with it).
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// How long certificates issued here are valid.
    pub fn leaf_validity(&self) -> Duration {
        self.leaf_validity
    }

    /// The server identity stored as `name`, issued (or reissued) when it
    /// is missing, due for renewal, not from this CA, or missing one of
    /// `names`.
    pub fn server(&self, name: &str, names: &ServerNames) -> Result<Identity, Error> {
        self.named(name, names, false)
    }

    /// The peer identity stored as `name` (see [`Ca::issue_peer`]), issued
    /// or reissued like [`PkiDir::server`]'s.
    pub fn peer(&self, name: &str, names: &ServerNames) -> Result<Identity, Error> {
        self.named(name, names, true)
    }

    fn named(&self, name: &str, names: &ServerNames, peer: bool) -> Result<Identity, Error> {
        self.stored(name, |identity| {
            let info = identity.info();
            names.dns.iter().all(|d| info.dns_names.contains(d))
                && names.ips.iter().all(|ip| info.ip_addresses.contains(ip))
        })
        .map_or_else(
            || {
                let dns: Vec<&str> = names.dns.iter().map(String::as_str).collect();
                let issue = if peer {
                    Ca::issue_peer
                } else {
                    Ca::issue_server
                };
                let identity = issue(&self.ca, name, &dns, &names.ips, self.leaf_validity)?;
                identity.save(&self.dir, name)?;
                Ok(identity)
            },
            Ok,
        )
    }

    /// The client identity stored as `name` for `user` in `groups`, issued
    /// (or reissued) when it is missing, due for renewal, not from this CA
    /// or naming someone else.
    pub fn client(&self, name: &str, user: &str, groups: &[&str]) -> Result<Identity, Error> {
        self.stored(name, |identity| {
            let info = identity.info();
            info.common_name.as_deref() == Some(user) && info.organizations == groups
        })
        .map_or_else(
            || {
                let identity = self.ca.issue_client(user, groups, self.leaf_validity)?;
                identity.save(&self.dir, name)?;
                Ok(identity)
            },
            Ok,
        )
    }

    /// The node identity stored as `file` for node `name` (see
    /// [`Ca::issue_node`]), issued (or reissued) like [`PkiDir::client`]'s.
    pub fn node(&self, file: &str, name: &str) -> Result<Identity, Error> {
        let user = format!("{}{name}", crate::NODE_USER_PREFIX);
        self.stored(file, |identity| {
            let info = identity.info();
            info.common_name.as_deref() == Some(user.as_str())
                && info.organizations == [crate::NODES_GROUP]
                && info.dns_names == [name]
        })
        .map_or_else(
            || {
                let identity = self.ca.issue_node(name, self.leaf_validity)?;
                identity.save(&self.dir, file)?;
                Ok(identity)
            },
            Ok,
        )
    }

    /// Reissues every certificate stored here (not the CA) now, naming
    /// what each named before: the names of those reissued, in order.
    pub fn rotate(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(|source| Error::Read {
                path: self.dir.clone(),
                source,
            })?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let file = entry.file_name().to_string_lossy().into_owned();
                file.strip_suffix(".crt").map(str::to_string)
            })
            .filter(|name| format!("{name}.crt") != crate::CA_CERT_FILE)
            .collect();
        names.sort();
        for name in &names {
            let old = Identity::load(&self.dir, name)?;
            let info = old.info();
            let user = info.common_name.clone().unwrap_or_default();
            let groups: Vec<&str> = info.organizations.iter().map(String::as_str).collect();
            let renewed = match user.strip_prefix(crate::NODE_USER_PREFIX) {
                Some(node) if info.dns_names.iter().any(|d| d == node) => {
                    self.ca.issue_node(node, self.leaf_validity)?
                }
                _ if !info.dns_names.is_empty() || !info.ip_addresses.is_empty() => {
                    let dns: Vec<&str> = info.dns_names.iter().map(String::as_str).collect();
                    self.ca
                        .issue_server(&user, &dns, &info.ip_addresses, self.leaf_validity)?
                }
                _ => self.ca.issue_client(&user, &groups, self.leaf_validity)?,
            };
            renewed.save(&self.dir, name)?;
        }
        Ok(names)
    }

    /// The stored identity `name` if it is from this CA, not due for
    /// renewal, and `fits`.
    fn stored(&self, name: &str, fits: impl Fn(&Identity) -> bool) -> Option<Identity> {
        let identity = Identity::load(&self.dir, name).ok()?;
        let info = identity.info();
        let current = crate::cert::issued_by(identity.cert_pem(), &self.ca.cert_der())
            && !info.needs_renewal(SystemTime::now());
        (current && fits(&identity)).then_some(identity)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::DEFAULT_LEAF_VALIDITY;

    fn names(ips: &[&str]) -> ServerNames {
        ServerNames {
            dns: vec!["localhost".into()],
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn rotate_reissues_every_certificate_with_the_same_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::open_or_create(dir.path(), DEFAULT_LEAF_VALIDITY).unwrap();
        let server = pki.server("apiserver", &names(&["127.0.0.1"])).unwrap();
        let admin = pki.client("admin", "admin", &["system:masters"]).unwrap();
        let node = pki.node("node", "web-1").unwrap();
        assert_eq!(pki.rotate().unwrap(), ["admin", "apiserver", "node"]);
        for (name, old) in [("apiserver", &server), ("admin", &admin), ("node", &node)] {
            let new = Identity::load(dir.path(), name).unwrap();
            assert_ne!(new.info().serial, old.info().serial, "{name} reissued");
            assert_eq!(new.info().common_name, old.info().common_name, "{name}");
            assert_eq!(new.info().organizations, old.info().organizations, "{name}");
            assert_eq!(new.info().dns_names, old.info().dns_names, "{name}");
            assert_eq!(new.info().ip_addresses, old.info().ip_addresses, "{name}");
        }
        assert!(
            crate::Ca::load(dir.path()).unwrap().digest() == pki.ca().digest(),
            "the CA stays"
        );
    }

    #[test]
    fn the_ca_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = PkiDir::open_or_create(dir.path(), DEFAULT_LEAF_VALIDITY).unwrap();
        assert!(first.created());
        let again = PkiDir::open_or_create(dir.path(), DEFAULT_LEAF_VALIDITY).unwrap();
        assert!(!again.created());
        assert_eq!(first.ca().digest(), again.ca().digest());
    }

    #[test]
    fn a_server_certificate_is_kept_while_it_fits_and_reissued_for_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::open_or_create(dir.path(), DEFAULT_LEAF_VALIDITY).unwrap();
        let first = pki.server("apiserver", &names(&["127.0.0.1"])).unwrap();
        let same = pki.server("apiserver", &names(&["127.0.0.1"])).unwrap();
        assert_eq!(first.info().serial, same.info().serial, "kept");
        let wider = pki
            .server("apiserver", &names(&["127.0.0.1", "198.18.0.2"]))
            .unwrap();
        assert_ne!(first.info().serial, wider.info().serial, "reissued");
        assert!(
            wider
                .info()
                .ip_addresses
                .contains(&"198.18.0.2".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn certificates_due_for_renewal_or_from_another_ca_are_reissued() {
        let dir = tempfile::tempdir().unwrap();
        // A lifetime so short that the certificate is soon due.
        let short = PkiDir::open_or_create(dir.path(), Duration::from_secs(1)).unwrap();
        let first = short.client("admin", "admin", &["system:masters"]).unwrap();
        moor_testkit::assert_eventually!(
            first.info().needs_renewal(SystemTime::now()),
            Duration::from_secs(10),
            "the short certificate falls due"
        );
        let pki = PkiDir::open_or_create(dir.path(), DEFAULT_LEAF_VALIDITY).unwrap();
        let renewed = pki.client("admin", "admin", &["system:masters"]).unwrap();
        assert_ne!(first.info().serial, renewed.info().serial, "renewed");
        let kept = pki.client("admin", "admin", &["system:masters"]).unwrap();
        assert_eq!(renewed.info().serial, kept.info().serial, "kept");

        // Another CA in the same place: what the old one issued is replaced.
        std::fs::remove_file(dir.path().join(crate::CA_CERT_FILE)).unwrap();
        let other = PkiDir::open_or_create(dir.path(), DEFAULT_LEAF_VALIDITY).unwrap();
        assert!(other.created());
        let reissued = other.client("admin", "admin", &["system:masters"]).unwrap();
        assert_ne!(kept.info().serial, reissued.info().serial);
        assert!(crate::cert::issued_by(
            reissued.cert_pem(),
            &other.ca().cert_der()
        ));
        assert!(!crate::cert::issued_by(
            kept.cert_pem(),
            &other.ca().cert_der()
        ));
    }
}
