//! A certificate with its private key: what a server or a client presents in
//! a TLS handshake. An `Identity` always holds a key that matches its
//! certificate, and shows the key neither in `Debug` nor in errors.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::cert::{self, CertInfo};
use crate::{Error, files};

/// A certificate (possibly followed by its chain) and its private key, as
/// PEM and as the DER types rustls and tonic take.
#[derive(Clone)]
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the key.
    key_der: Vec<u8>,
    info: CertInfo,
}

// === impl Identity ===

impl Identity {
    /// Pairs a PEM certificate (the leaf first, then any chain) with its PEM
    /// private key; an error if either does not parse or they do not match.
    pub fn from_pem(
        cert_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Result<Self, Error> {
        let key_pem = key_pem.into();
        let key = parse_key(&key_pem)?;
        Self::with_key(cert_pem.into(), key_pem, &key)
    }

    /// Like [`Identity::from_pem`] with the key already parsed.
    pub(crate) fn with_key(
        cert_pem: String,
        key_pem: String,
        key: &KeyPair,
    ) -> Result<Self, Error> {
        let chain = cert::certs_from_pem(&cert_pem)?;
        let leaf = chain.first().ok_or_else(|| Error::InvalidCert {
            reason: "no CERTIFICATE block".to_owned(),
        })?;
        check_key_matches(leaf, key)?;
        let info = CertInfo::from_der(leaf)?;
        Ok(Identity {
            cert_pem,
            key_pem,
            chain,
            key_der: key.serialize_der(),
            info,
        })
    }

    /// Reads `<name>.crt` and `<name>.key` from `dir`; errors name the file
    /// at fault.
    pub fn load(dir: &Path, name: &str) -> Result<Self, Error> {
        let (cert_path, key_path) = paths(dir, name);
        let cert_pem = files::read(&cert_path)?;
        let key_pem = files::read(&key_path)?;
        let key = parse_key(&key_pem).map_err(|e| e.in_file(&key_path))?;
        Self::with_key(cert_pem, key_pem, &key).map_err(|e| match e {
            Error::KeyMismatch => e.in_file(&key_path),
            e => e.in_file(&cert_path),
        })
    }

    /// Writes `<name>.crt` (mode 0644) and `<name>.key` (mode 0600) into
    /// `dir`, each atomically, creating `dir` (mode 0700) if needed.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), Error> {
        let (cert_path, key_path) = paths(dir, name);
        files::create_dir(dir)?;
        files::write_atomic(&key_path, self.key_pem.as_bytes(), files::KEY_MODE)?;
        files::write_atomic(&cert_path, self.cert_pem.as_bytes(), files::CERT_MODE)
    }

    /// The certificate (and chain) as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key as PEM (PKCS#8). Secret: keep it out of logs.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// What the leaf certificate says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// The certificate chain, leaf first, as DER.
    pub fn cert_chain_der(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    /// The private key as DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The chain and key as rustls' `ConfigBuilder::with_single_cert` and
    /// `with_client_auth_cert` take them.
    pub fn to_der(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.cert_chain_der(), self.key_der())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("info", &self.info)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Parses a PEM private key.
pub(crate) fn parse_key(key_pem: &str) -> Result<KeyPair, Error> {
    KeyPair::from_pem(key_pem).map_err(|source| Error::InvalidKey { source })
}

/// Errors unless `key` is the private half of the certificate's public key.
pub(crate) fn check_key_matches(cert_der: &[u8], key: &KeyPair) -> Result<(), Error> {
    if cert::public_key(cert_der)? == key.der_bytes() {
        Ok(())
    } else {
        Err(Error::KeyMismatch)
    }
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::Ca;

    const HOUR: Duration = Duration::from_secs(60 * 60);

    fn identity() -> (Ca, Identity) {
        let ca = Ca::generate("moor-ca", HOUR).unwrap();
        let id = ca.issue_client("alice", &["dev"], HOUR).unwrap();
        (ca, id)
    }

    #[test]
    fn der_forms_are_the_pem_contents() {
        let (_, id) = identity();
        let (chain, key) = id.to_der();
        assert_eq!(chain.len(), 1);
        assert_eq!(
            &*chain[0],
            &pem::parse(id.cert_pem()).unwrap().into_contents()[..]
        );
        assert_eq!(
            key.secret_der(),
            &pem::parse(id.key_pem()).unwrap().into_contents()[..]
        );
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
    }

    #[test]
    fn a_chain_keeps_every_certificate_in_order() {
        let (ca, id) = identity();
        let chain = format!("{}{}", id.cert_pem(), ca.cert_pem());
        let both = Identity::from_pem(chain, id.key_pem()).unwrap();
        let der = both.cert_chain_der();
        assert_eq!(der.len(), 2);
        assert_eq!(der[1], ca.cert_der());
        assert_eq!(both.info(), id.info(), "info is the leaf's");
    }

    #[test]
    fn a_key_for_another_certificate_is_refused() {
        let (ca, id) = identity();
        let other = ca.issue_client("bob", &[], HOUR).unwrap();
        let err = Identity::from_pem(id.cert_pem(), other.key_pem()).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch), "{err:?}");
        let err = Identity::from_pem(id.cert_pem(), "nope").unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    }

    #[test]
    fn saved_identity_loads_back_with_a_private_key_file() {
        let (_, id) = identity();
        let dir = tempfile::tempdir().unwrap();
        id.save(dir.path(), "node").unwrap();
        let mode = fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Identity::load(dir.path(), "node").unwrap();
        assert_eq!(loaded.cert_pem(), id.cert_pem());
        assert_eq!(loaded.key_pem(), id.key_pem());
    }

    #[test]
    fn loading_a_missing_or_corrupt_file_names_it() {
        let (_, id) = identity();
        let dir = tempfile::tempdir().unwrap();
        let err = Identity::load(dir.path(), "node").unwrap_err();
        let crt = dir.path().join("node.crt");
        assert!(
            matches!(&err, Error::Read { path, .. } if *path == crt),
            "{err:?}"
        );

        id.save(dir.path(), "node").unwrap();
        let key = dir.path().join("node.key");
        fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Identity::load(dir.path(), "node").unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { path, .. } if *path == key),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*key.to_string_lossy()), "{err}");

        id.save(dir.path(), "node").unwrap();
        fs::write(&crt, "").unwrap();
        let err = Identity::load(dir.path(), "node").unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { path, .. } if *path == crt),
            "{err:?}"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let (_, id) = identity();
        let shown = format!("{id:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
