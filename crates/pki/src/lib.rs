//! The cluster PKI: a certificate authority, the server and client
//! certificates it issues, signing requests made where a key is to live, and
//! the join tokens that pin the CA for a machine joining the cluster.
//!
//! Pure computation, apart from loading and saving PEM files (atomically, a
//! private key with mode 0600 from its creation). Keys are ECDSA P-256,
//! signed with `ring`. Identities follow Kubernetes: a client certificate's
//! CN is the user and its O entries are the groups
//! (`CN=system:node:web-1, O=system:nodes`).
//!
//! ```
//! # fn main() -> Result<(), moor_pki::Error> {
//! use moor_pki::{Ca, Csr, Token, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY};
//!
//! let ca = Ca::generate("moor-ca", DEFAULT_CA_VALIDITY)?;
//! let token = Token::generate(ca.digest())?;
//!
//! // On the joining node: its own key, and a request for its identity.
//! let csr = Csr::new("system:node:web-1", &["system:nodes"])?;
//! // On the server, once the token's secret checked out:
//! let cert = ca.sign_csr(csr.pem(), "system:node:web-1", &["system:nodes"], DEFAULT_LEAF_VALIDITY)?;
//! let node = csr.into_identity(cert)?;
//! assert_eq!(node.info().organizations, ["system:nodes"]);
//! assert_eq!(token.ca_digest(), ca.digest());
//! # Ok(())
//! # }
//! ```

mod ca;
mod cert;
mod csr;
mod der;
mod dir;
mod error;
mod files;
mod identity;
mod token;

pub use ca::{
    CA_CERT_FILE, CA_KEY_FILE, Ca, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY, NODE_USER_PREFIX,
    NODES_GROUP,
};
pub use cert::{CertInfo, ca_digest, certs_from_pem, issued_by, pinned_cert};
pub use csr::Csr;
pub use dir::{CA_COMMON_NAME, PkiDir, ServerNames};
pub use error::Error;
pub use identity::Identity;
pub use token::{TOKEN_PREFIX, Token};
