//! TLS for servers and channels, from the cluster PKI's identities: the
//! server's certificate and the CA its clients' certificates must chain
//! to; a channel's CA and its own certificate; and the caller a verified
//! client certificate names (Kubernetes' convention: CN is the user, each
//! O a group).
//!
//! A server's handshakes go through rustls directly (tonic's own TLS takes
//! a fixed certificate): every handshake reads the certificate from a slot
//! that [`ServerTls::renew`] replaces, so a renewed certificate serves new
//! connections while the open ones carry on.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::Error;

/// Whether a server demands a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no connection: for servers only components talk to.
    Required,
    /// A certificate, if presented, must verify; callers without one must
    /// authenticate otherwise (a bearer token).
    Optional,
}

/// A server's TLS settings. Clones share the certificate: renewing it
/// through one renews it for the server that holds another.
#[derive(Clone, Debug)]
pub struct ServerTls {
    certificate: Arc<CertificateSlot>,
    client_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    client_auth: ClientAuth,
}

/// The certificate every new handshake presents.
#[derive(Debug)]
struct CertificateSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|key| key.clone())
    }
}

/// The cryptography of every handshake: ring, as tonic's client side uses
/// (rustls marks it deprecated for lacking post-quantum key exchange, which
/// aws-lc-rs has at the price of a C and cmake build).
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn settings_error(what: &str, err: impl std::fmt::Display) -> Error {
    Error::TlsSettings(format!("{what}: {err}"))
}

fn certified_key(identity: &moor_pki::Identity) -> Result<Arc<CertifiedKey>, Error> {
    let (chain, key) = identity.to_der();
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| settings_error("the server's key", e))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// A channel's TLS settings.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca: Certificate,
    identity: Option<Identity>,
    domain: Option<String>,
}

/// Who a request comes from: as its verified client certificate says
/// (Kubernetes' convention), or as the token it presented stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The certificate's common name.
    pub user: String,
    /// Its organizations.
    pub groups: Vec<String>,
}

// === impl ServerTls ===

impl ServerTls {
    /// Serves as `identity`; client certificates must chain to the CA in
    /// `client_ca_pem`.
    pub fn new(
        identity: &moor_pki::Identity,
        client_ca_pem: &str,
        client_auth: ClientAuth,
    ) -> Result<Self, Error> {
        let client_ca = moor_pki::certs_from_pem(client_ca_pem)
            .map_err(|e| settings_error("the client CA", e))?;
        Ok(Self {
            certificate: Arc::new(CertificateSlot(RwLock::new(certified_key(identity)?))),
            client_ca,
            client_auth,
        })
    }

    /// Presents `identity` from the next handshake on; connections already
    /// open keep theirs.
    pub fn renew(&self, identity: &moor_pki::Identity) -> Result<(), Error> {
        let key = certified_key(identity)?;
        let mut slot = self
            .certificate
            .0
            .write()
            .map_err(|_| Error::TlsSettings("the certificate slot is poisoned".to_string()))?;
        *slot = key;
        Ok(())
    }

    /// The same certificate, renewed with it, for a server that demands a
    /// client certificate of every connection.
    pub fn requiring_client_certificate(&self) -> Self {
        Self {
            client_auth: ClientAuth::Required,
            ..self.clone()
        }
    }

    /// The acceptor of a gRPC server's connections.
    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, Error> {
        self.acceptor_speaking(&[b"h2"])
    }

    /// The acceptor of a server whose clients may negotiate the
    /// application protocols `alpn` (none: whatever they speak).
    pub fn acceptor_speaking(&self, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, Error> {
        let provider = provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in &self.client_ca {
            roots
                .add(cert.clone())
                .map_err(|e| settings_error("the client CA", e))?;
        }
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if self.client_auth == ClientAuth::Optional {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier
            .build()
            .map_err(|e| settings_error("the client verifier", e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| settings_error("TLS versions", e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.certificate.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

// === impl ClientTls ===

impl ClientTls {
    /// Trusts servers whose certificate chains to the CA in `ca_pem`.
    pub fn new(ca_pem: &str) -> Self {
        Self {
            ca: Certificate::from_pem(ca_pem),
            identity: None,
            domain: None,
        }
    }

    /// Presents `identity` to the server.
    pub fn identity(mut self, identity: &moor_pki::Identity) -> Self {
        self.identity = Some(Identity::from_pem(identity.cert_pem(), identity.key_pem()));
        self
    }

    /// Expects the server's certificate to name `domain` instead of the
    /// URL's host.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    pub(crate) fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(self.ca.clone());
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        config
    }
}

/// The authenticated caller of `request`: by its verified client
/// certificate or its bearer token. `None` on a plain-text server, which
/// authenticates nobody.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Caller> {
    request.extensions().get::<Caller>().cloned()
}
