//! Certificate signing requests made where the key is to live: a joining
//! node creates its own key and asks the CA to sign a request for it, so the
//! private key never crosses the network.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::der::{self, Signed};
use crate::{Error, Identity};

/// A PEM signing request and the PEM private key it was made with.
#[derive(Clone)]
pub struct Csr {
    pem: String,
    key_pem: String,
}

// === impl Csr ===

impl Csr {
    /// A request for a client certificate `CN = user, O = group...`, with a
    /// fresh P-256 key. The signer checks the CN and decides the groups; the
    /// groups here only say what the requester expects.
    pub fn new(user: &str, groups: &[&str]) -> Result<Self, Error> {
        der::check_name(user, "user name")?;
        for group in groups {
            der::check_name(group, "group name")?;
        }
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Generate {
                what: "P-256 key",
                source,
            })?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, user);
        params.distinguished_name = name;
        let request = params
            .serialize_request(&key)
            .map_err(|source| Error::Generate {
                what: "certificate signing request",
                source,
            })?;
        // rcgen writes one O at most; see the `der` module.
        let subject = der::name(user, groups);
        let der = der::with_subject(request.der(), Signed::Request, &subject, &key)?;
        Ok(Csr {
            pem: der::pem("CERTIFICATE REQUEST", &der),
            key_pem: key.serialize_pem(),
        })
    }

    /// The request as PEM: what is sent to the CA.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The private key as PEM (PKCS#8). Secret: it stays on this machine.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Pairs the certificate the CA returned with this request's key; an
    /// error if the certificate is for another key.
    pub fn into_identity(self, cert_pem: impl Into<String>) -> Result<Identity, Error> {
        Identity::from_pem(cert_pem, self.key_pem)
    }
}

impl fmt::Debug for Csr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csr")
            .field("pem", &self.pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::cert::first_cert_der;

    #[test]
    fn request_names_user_and_every_group_and_its_signature_verifies() {
        let csr = Csr::new("system:node:web-1", &["system:nodes", "moor:lab"]).unwrap();
        assert!(
            csr.pem()
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")
        );
        let der = pem::parse(csr.pem()).unwrap().into_contents();
        let (_, request) = X509CertificationRequest::from_der(&der).unwrap();
        // The subject was rewritten after rcgen signed: the new signature
        // must still be the key's.
        request.verify_signature().unwrap();
        let subject = &request.certification_request_info.subject;
        let cn: Vec<_> = subject
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let orgs: Vec<_> = subject
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["system:node:web-1"]);
        assert_eq!(orgs, ["system:nodes", "moor:lab"]);
        // rcgen, as the CA uses it, accepts the request too.
        rcgen::CertificateSigningRequestParams::from_pem(csr.pem()).unwrap();
    }

    #[test]
    fn empty_user_or_group_is_refused() {
        assert!(matches!(Csr::new("", &[]), Err(Error::InvalidName { .. })));
        assert!(matches!(
            Csr::new("u", &[""]),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            Csr::new("u\n", &[]),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let csr = Csr::new("alice", &[]).unwrap();
        let shown = format!("{csr:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn garbage_is_not_a_certificate_for_this_key() {
        let csr = Csr::new("alice", &[]).unwrap();
        assert!(matches!(
            csr.clone().into_identity("nope"),
            Err(Error::InvalidCert { .. })
        ));
        // A certificate for some other key is refused (the request's own
        // DER is no certificate, so use a fresh CA's).
        let ca = crate::Ca::generate("other", crate::DEFAULT_CA_VALIDITY).unwrap();
        assert!(first_cert_der(ca.cert_pem()).is_ok());
        assert!(matches!(
            csr.into_identity(ca.cert_pem()),
            Err(Error::KeyMismatch)
        ));
    }
}
