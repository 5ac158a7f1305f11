//! The cluster certificate authority: an ECDSA P-256 key and a self-signed
//! certificate, kept as `ca.crt` and `ca.key` in a directory, that issues
//! server certificates, client certificates, and certificates for signing
//! requests made elsewhere.
//!
//! Promises:
//! - Clients get `CN = user, O = group...` (the Kubernetes convention) and
//!   the client-auth usage only; servers get their names as SANs and the
//!   server-auth usage only. Leaves can never sign (no CA bit).
//! - A signing request decides nothing but the public key: the CA refuses
//!   one whose CN is not the user it expected, and writes the subject,
//!   groups, usages and validity itself.
//! - No certificate outlives the CA. Each starts a little in the past (a
//!   tenth of its validity, at most five minutes, as Kubernetes' signer
//!   backdates) so a peer whose clock lags a little accepts it at once.
//! - Serial numbers are 128 random bits, so renewing with the same key
//!   never repeats one.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::cert::{self, CertInfo};
use crate::der::{self, Signed};
use crate::identity::{self, Identity};
use crate::{Error, files};

#[cfg(test)]
mod tests;

/// How long a CA generated with this default lasts: ten years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// How long a leaf certificate issued with this default lasts: one year.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The CA certificate's file name in its directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key's file name in its directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// The user name prefix of a node: `system:node:<name>` (Kubernetes').
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of every node.
pub const NODES_GROUP: &str = "system:nodes";

/// The most a certificate's start is set before the moment it is issued.
const MAX_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster CA: its certificate and the key that signs with it.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    info: CertInfo,
    issuer: Issuer<'static, KeyPair>,
}

// === impl Ca ===

impl Ca {
    /// A new CA with a fresh P-256 key, named `common_name`, valid for
    /// `validity` (usually [`DEFAULT_CA_VALIDITY`]).
    pub fn generate(common_name: &str, validity: Duration) -> Result<Self, Error> {
        der::check_name(common_name, "CA common name")?;
        let key = generate_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_only(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = window(validity, None)?;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key).map_err(|source| Error::Generate {
            what: "CA certificate",
            source,
        })?;
        Self::with_key(cert.pem(), key)
    }

    /// A CA from its PEM certificate and PEM private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        Self::with_key(cert_pem.to_owned(), identity::parse_key(key_pem)?)
    }

    /// Reads `ca.crt` and `ca.key` from `dir`. A missing, unreadable or
    /// invalid file, or a key that does not match the certificate, is an
    /// error naming that file.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = files::read(&cert_path)?;
        let key_pem = files::read(&key_path)?;
        let key = identity::parse_key(&key_pem).map_err(|e| e.in_file(&key_path))?;
        Self::with_key(cert_pem, key).map_err(|e| match e {
            Error::KeyMismatch => e.in_file(&key_path),
            e => e.in_file(&cert_path),
        })
    }

    /// Writes `ca.key` (mode 0600, from its creation) then `ca.crt` into
    /// `dir`, each atomically, creating `dir` (mode 0700) if needed. An
    /// existing CA there is replaced: refusing is the caller's call. A crash
    /// between the two files leaves a pair that [`Ca::load`] refuses as
    /// mismatched (or a missing `ca.crt`), never a wrong CA in use.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        files::create_dir(dir)?;
        let key_pem = self.key_pem();
        files::write_atomic(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), files::KEY_MODE)?;
        files::write_atomic(
            &dir.join(CA_CERT_FILE),
            self.cert_pem.as_bytes(),
            files::CERT_MODE,
        )
    }

    /// The CA certificate as PEM: what every member trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER, for a rustls root store.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The CA private key as PEM (PKCS#8). Secret: only another control
    /// plane server may ever receive it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// SHA-256 of the CA certificate's DER as lowercase hexadecimal: the
    /// digest join tokens pin.
    pub fn digest(&self) -> &str {
        &self.info.sha256
    }

    /// What the CA certificate says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// A server certificate for `common_name` with the given DNS names and
    /// IP addresses as subject alternative names (at least one), valid for
    /// `validity` (usually [`DEFAULT_LEAF_VALIDITY`]).
    pub fn issue_server(
        &self,
        common_name: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<Identity, Error> {
        self.issue_named(common_name, dns_names, ips, validity, false)
    }

    /// A certificate like [`Ca::issue_server`]'s that also serves as a
    /// client certificate: for members of a cluster that dial each other,
    /// as etcd's peers do, each presenting the one certificate both ways.
    pub fn issue_peer(
        &self,
        common_name: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<Identity, Error> {
        self.issue_named(common_name, dns_names, ips, validity, true)
    }

    fn issue_named(
        &self,
        common_name: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
        validity: Duration,
        client_too: bool,
    ) -> Result<Identity, Error> {
        der::check_name(common_name, "server common name")?;
        if dns_names.is_empty() && ips.is_empty() {
            return Err(Error::InvalidName {
                name: common_name.to_owned(),
                reason: "a server certificate needs at least one DNS name or IP address".to_owned(),
            });
        }
        let mut params = self.leaf_params(common_name, validity)?;
        for name in dns_names {
            params.subject_alt_names.push(dns_san(name)?);
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if client_too {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let key = generate_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "server certificate",
                source,
            })?;
        Identity::with_key(cert.pem(), key.serialize_pem(), &key)
    }

    /// A client certificate for `user` in `groups` (`CN = user`,
    /// `O = group` each), with a fresh key, valid for `validity`.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<Identity, Error> {
        let key = generate_key()?;
        let cert_pem = self.client_cert(&key, user, groups, None, validity)?;
        Identity::with_key(cert_pem, key.serialize_pem(), &key)
    }

    /// Signs a PEM certificate signing request made elsewhere (the requester
    /// keeps its key) as a client certificate for `expected_user` in
    /// `groups`, and returns the certificate PEM.
    ///
    /// The request's signature must verify (the requester holds the key) and
    /// its CN must be `expected_user`; anything else it asks for (groups,
    /// names, usages, CA) is ignored: the signer decides.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        expected_user: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<String, Error> {
        let public_key = self.checked_csr(csr_pem, expected_user)?;
        self.client_cert(&public_key, expected_user, groups, None, validity)
    }

    /// A node's identity, with a fresh key: `CN=system:node:<name>,
    /// O=system:nodes`, usable as a client (to the apiserver) and as a
    /// server (its agent, to the apiserver) under the DNS name `name`.
    pub fn issue_node(&self, name: &str, validity: Duration) -> Result<Identity, Error> {
        let key = generate_key()?;
        let user = format!("{NODE_USER_PREFIX}{name}");
        let cert_pem = self.client_cert(&key, &user, &[NODES_GROUP], Some(name), validity)?;
        Identity::with_key(cert_pem, key.serialize_pem(), &key)
    }

    /// Signs a node's PEM certificate signing request as [`Ca::issue_node`]
    /// would issue it: the request's CN must be `system:node:<name>`, and
    /// the signer decides everything else.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        name: &str,
        validity: Duration,
    ) -> Result<String, Error> {
        let user = format!("{NODE_USER_PREFIX}{name}");
        let public_key = self.checked_csr(csr_pem, &user)?;
        self.client_cert(&public_key, &user, &[NODES_GROUP], Some(name), validity)
    }

    /// The public key of a PEM signing request whose signature verifies
    /// and whose CN is `expected_user`.
    fn checked_csr(&self, csr_pem: &str, expected_user: &str) -> Result<rcgen::PublicKey, Error> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|source| Error::InvalidCsr { source })?;
        let found = match csr.params.distinguished_name.get(&DnType::CommonName) {
            Some(DnValue::Utf8String(s)) => s.clone(),
            Some(DnValue::PrintableString(s)) => s.as_str().to_owned(),
            Some(DnValue::Ia5String(s)) => s.as_str().to_owned(),
            // Other encodings hold no name we issue.
            _ => String::new(),
        };
        if found != expected_user {
            return Err(Error::CsrIdentity {
                expected: expected_user.to_owned(),
                found,
            });
        }
        Ok(csr.public_key)
    }

    /// PEM of a client certificate for `public_key`.
    fn client_cert(
        &self,
        public_key: &impl PublicKeyData,
        user: &str,
        groups: &[&str],
        server_name: Option<&str>,
        validity: Duration,
    ) -> Result<String, Error> {
        der::check_name(user, "user name")?;
        for group in groups {
            der::check_name(group, "group name")?;
        }
        let mut params = self.leaf_params(user, validity)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(name) = server_name {
            params.subject_alt_names.push(dns_san(name)?);
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "client certificate",
                source,
            })?;
        // rcgen writes one O at most; see the `der` module.
        let subject = der::name(user, groups);
        let der = der::with_subject(cert.der(), Signed::Certificate, &subject, self.issuer.key())?;
        Ok(der::pem("CERTIFICATE", &der))
    }

    /// What every leaf shares: subject CN, validity, serial, no CA bit, a
    /// signature-only key usage, and the link to this CA's key.
    fn leaf_params(
        &self,
        common_name: &str,
        validity: Duration,
    ) -> Result<CertificateParams, Error> {
        if self.info.not_after <= SystemTime::now() {
            return Err(Error::CaExpired {
                not_after: self.info.not_after,
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_only(common_name);
        (params.not_before, params.not_after) = window(validity, Some(self.info.not_after))?;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    /// A CA from its PEM certificate and its parsed key, checked to be a CA
    /// and to match.
    fn with_key(cert_pem: String, key: KeyPair) -> Result<Self, Error> {
        let cert_der = cert::first_cert_der(&cert_pem)?;
        let info = CertInfo::from_der(&cert_der)?;
        if !info.is_ca {
            return Err(Error::NotCa {
                common_name: info.common_name.unwrap_or_default(),
            });
        }
        identity::check_key_matches(&cert_der, &key)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| Error::InvalidCert {
            reason: e.to_string(),
        })?;
        Ok(Ca {
            cert_pem,
            cert_der,
            info,
            issuer,
        })
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.info.common_name)
            .field("digest", &self.info.sha256)
            .field("not_after", &self.info.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn generate_key() -> Result<KeyPair, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Generate {
        what: "P-256 key",
        source,
    })
}

fn common_name_only(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn dns_san(name: &str) -> Result<SanType, Error> {
    let invalid = |reason: &str| Error::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid(
            "an IP address given as a DNS name; pass it as an IP",
        ));
    }
    if name.is_empty() {
        return Err(invalid("DNS name must not be empty"));
    }
    let ia5 = name
        .try_into()
        .map_err(|_| invalid("DNS name must be ASCII"))?;
    Ok(SanType::DnsName(ia5))
}

/// 128 random bits, positive and with a non-zero first byte so the DER
/// integer keeps all 16 bytes.
fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|source| Error::Random { source })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `not_before` and `not_after` for a certificate issued now, to the second,
/// with `not_after` no later than `ceiling`.
fn window(
    validity: Duration,
    ceiling: Option<SystemTime>,
) -> Result<(OffsetDateTime, OffsetDateTime), Error> {
    let bad = || Error::Validity { validity };
    if validity < Duration::from_secs(1) {
        return Err(bad());
    }
    let now = SystemTime::now();
    let backdate = (validity / 10).min(MAX_BACKDATE);
    let not_before = now.checked_sub(backdate).ok_or_else(bad)?;
    let mut not_after = now.checked_add(validity).ok_or_else(bad)?;
    if let Some(ceiling) = ceiling {
        not_after = not_after.min(ceiling);
    }
    let utc = |t: SystemTime| -> Option<OffsetDateTime> {
        let secs = i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
        OffsetDateTime::from_unix_timestamp(secs).ok()
    };
    Ok((
        utc(not_before).ok_or_else(bad)?,
        utc(not_after).ok_or_else(bad)?,
    ))
}

#[cfg(test)]
mod node_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Csr;

    #[test]
    fn a_node_certificate_names_the_node_as_user_group_and_server() {
        let ca = Ca::generate("moor-ca", DEFAULT_CA_VALIDITY).unwrap();
        let issued = ca.issue_node("web-1", DEFAULT_LEAF_VALIDITY).unwrap();
        let csr = Csr::new("system:node:web-1", &[]).unwrap();
        let signed = ca
            .sign_node_csr(csr.pem(), "web-1", DEFAULT_LEAF_VALIDITY)
            .unwrap();
        let signed = csr.into_identity(signed).unwrap();
        for identity in [&issued, &signed] {
            let info = identity.info();
            assert_eq!(info.common_name.as_deref(), Some("system:node:web-1"));
            assert_eq!(info.organizations, [NODES_GROUP]);
            assert_eq!(info.dns_names, ["web-1"]);
        }
        let other = Csr::new("system:node:web-2", &[]).unwrap();
        assert!(
            ca.sign_node_csr(other.pem(), "web-1", DEFAULT_LEAF_VALIDITY)
                .is_err()
        );
    }
}
