//! TLS for servers and channels, from the cluster PKI's identities: the
//! server's certificate and the CA its clients' certificates must chain
//! to; a channel's CA and its own certificate; and the caller a verified
//! client certificate names (Kubernetes' convention: CN is the user, each
//! O a group).

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Whether a server demands a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no connection: for servers only components talk to.
    Required,
    /// A certificate, if presented, must verify; callers without one must
    /// authenticate otherwise (a bearer token).
    Optional,
}

/// A server's TLS settings.
#[derive(Clone, Debug)]
pub struct ServerTls {
    identity: Identity,
    client_ca: Certificate,
    client_auth: ClientAuth,
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
    ) -> Self {
        Self {
            identity: Identity::from_pem(identity.cert_pem(), identity.key_pem()),
            client_ca: Certificate::from_pem(client_ca_pem),
            client_auth,
        }
    }

    pub(crate) fn config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.client_ca.clone())
            .client_auth_optional(self.client_auth == ClientAuth::Optional)
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
