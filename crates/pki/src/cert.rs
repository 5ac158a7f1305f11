//! Reading certificates: who a certificate names, what it is valid for, and
//! when it should be renewed; and the SHA-256 digest that pins a CA.
//!
//! Renewal follows roughly what kubelet's certificate manager and k3s do: a
//! certificate is due once less than a third of its lifetime
//! (`not_after - not_before`) remains. A third leaves time for several
//! retries when the CA is briefly unreachable, and scales from the default
//! year (renewed after eight months) down to the seconds tests use.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;
use x509_parser::x509::AttributeTypeAndValue;

use crate::Error;

/// What a certificate says, as plain values.
///
/// Under the Kubernetes convention a client certificate's common name is the
/// user and its organizations are the user's groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name (CN), if it has one.
    pub common_name: Option<String>,
    /// The subject's organizations (O), in order: the groups of a client.
    pub organizations: Vec<String>,
    /// The issuer's common name, if it has one.
    pub issuer_common_name: Option<String>,
    /// The serial number, as lowercase hexadecimal.
    pub serial: String,
    /// Start of validity (whole seconds).
    pub not_before: SystemTime,
    /// End of validity (whole seconds).
    pub not_after: SystemTime,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether basic constraints mark it as a certificate authority.
    pub is_ca: bool,
    /// SHA-256 of its DER encoding, as lowercase hexadecimal (for a CA, the
    /// digest join tokens pin).
    pub sha256: String,
}

// === impl CertInfo ===

impl CertInfo {
    /// Reads the first certificate of a PEM text.
    pub fn parse(pem: &str) -> Result<Self, Error> {
        let der = first_cert_der(pem)?;
        Self::from_der(&der)
    }

    /// Reads a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::InvalidCert {
            reason: e.to_string(),
        })?;
        let subject = cert.subject();
        let common_name = attr_strings(subject.iter_common_name())?.into_iter().next();
        let organizations = attr_strings(subject.iter_organization())?;
        let issuer_common_name = attr_strings(cert.issuer().iter_common_name())?
            .into_iter()
            .next();

        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| Error::InvalidCert {
                reason: format!("subject alternative names: {e}"),
            })?;
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => ip_addresses.push(ip_from_bytes(bytes)?),
                // Other kinds (URIs, e-mail...) are not ours to interpret.
                _ => {}
            }
        }

        Ok(CertInfo {
            common_name,
            organizations,
            issuer_common_name,
            serial: hex(cert.raw_serial()),
            not_before: system_time(cert.validity().not_before)?,
            not_after: system_time(cert.validity().not_after)?,
            dns_names,
            ip_addresses,
            is_ca: cert.is_ca(),
            sha256: sha256_hex(der),
        })
    }

    /// The whole lifetime, `not_after - not_before` (zero if inverted).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// Time left until `not_after` as seen at `now`; zero once expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// Whether the certificate should be renewed at `now`: less than a third
    /// of its lifetime remains (or it has expired). See the module docs for
    /// why a third.
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        self.remaining(now) < self.lifetime() / 3
    }

    /// Whether `now` lies within `not_before..=not_after`, in whole
    /// seconds as certificates and TLS stacks count them: a certificate is
    /// still valid during the second its `not_after` names (rustls agrees).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        let now = now.duration_since(UNIX_EPOCH).map_or(now, |since| {
            UNIX_EPOCH + Duration::from_secs(since.as_secs())
        });
        self.not_before <= now && now <= self.not_after
    }
}

/// Whether the first certificate of `cert_pem` carries a signature by the
/// CA certificate `ca_der`'s key.
pub fn issued_by(cert_pem: &str, ca_der: &[u8]) -> bool {
    let Ok(der) = first_cert_der(cert_pem) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(&der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The certificate among `chain` (DER, as a server presented it) whose
/// digest is `digest`, as PEM: how a joining node picks out the CA its
/// token pins. `None` when no certificate matches.
pub fn pinned_cert(chain: &[CertificateDer<'_>], digest: &str) -> Option<String> {
    let cert = chain
        .iter()
        .find(|cert| sha256_hex(cert.as_ref()).eq_ignore_ascii_case(digest))?;
    Some(pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec())))
}

/// The CA digest of a PEM certificate: SHA-256 of its DER encoding, as
/// lowercase hexadecimal (64 characters). A joining node compares it with the
/// digest in its join token before trusting the CA a server presents.
pub fn ca_digest(cert_pem: &str) -> Result<String, Error> {
    Ok(sha256_hex(&first_cert_der(cert_pem)?))
}

/// The DER of every certificate in a PEM text, in order (what rustls takes
/// as a chain or a root store); an error if there is none.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidCert {
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::InvalidCert {
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(chain)
}

/// The first certificate of a PEM text.
pub(crate) fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, Error> {
    certs_from_pem(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidCert {
            reason: "no CERTIFICATE block".to_owned(),
        })
}

/// The raw subject public key of a DER certificate (for EC keys, the point).
pub(crate) fn public_key(der: &[u8]) -> Result<Vec<u8>, Error> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::InvalidCert {
        reason: e.to_string(),
    })?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// SHA-256 of `bytes` as lowercase hexadecimal.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn attr_strings<'a, 'b: 'a>(
    attrs: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
) -> Result<Vec<String>, Error> {
    attrs
        .map(|attr| {
            attr.as_str()
                .map(str::to_owned)
                .map_err(|e| Error::InvalidCert {
                    reason: format!("subject attribute: {e}"),
                })
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr, Error> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::from(v4));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return Ok(IpAddr::from(v6));
    }
    Err(Error::InvalidCert {
        reason: format!("IP address SAN of {} bytes", bytes.len()),
    })
}

fn system_time(t: ASN1Time) -> Result<SystemTime, Error> {
    let secs = t.timestamp();
    let offset = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    time.ok_or_else(|| Error::InvalidCert {
        reason: format!("validity time {secs} out of range"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(not_before: u64, not_after: u64) -> CertInfo {
        CertInfo {
            common_name: None,
            organizations: vec![],
            issuer_common_name: None,
            serial: String::new(),
            not_before: UNIX_EPOCH + Duration::from_secs(not_before),
            not_after: UNIX_EPOCH + Duration::from_secs(not_after),
            dns_names: vec![],
            ip_addresses: vec![],
            is_ca: false,
            sha256: String::new(),
        }
    }

    #[test]
    fn needs_renewal_once_less_than_a_third_remains() {
        // Lifetime 3000 s from t=1000: due once fewer than 1000 s remain.
        let cert = info(1000, 4000);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert!(!cert.needs_renewal(at(1000)));
        assert!(!cert.needs_renewal(at(2999)));
        // Exactly a third remaining is not yet less than a third.
        assert!(!cert.needs_renewal(at(3000)));
        assert!(cert.needs_renewal(at(3000) + Duration::from_nanos(1)));
        assert!(cert.needs_renewal(at(4000)));
        assert!(cert.needs_renewal(at(9000)), "expired");
        assert!(!cert.needs_renewal(at(10)), "not yet valid");
    }

    #[test]
    fn remaining_and_validity_window() {
        let cert = info(1000, 4000);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(cert.lifetime(), Duration::from_secs(3000));
        assert_eq!(cert.remaining(at(1500)), Duration::from_secs(2500));
        assert_eq!(cert.remaining(at(5000)), Duration::ZERO);
        assert!(cert.is_valid_at(at(1000)) && cert.is_valid_at(at(4000)));
        assert!(!cert.is_valid_at(at(999)) && !cert.is_valid_at(at(4001)));
    }

    #[test]
    fn hex_and_digest() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        // SHA-256 of the empty string.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            CertInfo::parse("hello"),
            Err(Error::InvalidCert { .. })
        ));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            CertInfo::parse(bad),
            Err(Error::InvalidCert { .. })
        ));
        assert!(matches!(ca_digest(""), Err(Error::InvalidCert { .. })));
    }
}
