//! The one error type of this crate. Messages are lowercase and never contain
//! a private key or a token secret, so an error can be logged or shown as is.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;

/// What can go wrong creating, reading, signing or storing certificates,
/// keys, requests and join tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (missing, unreadable).
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written, synced or renamed into place.
    #[error("writing {}", path.display())]
    Write {
        /// The file (the final name, not the temporary one).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what it should hold.
    #[error("invalid contents in {}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<Error>,
    },
    /// Text that should hold a PEM certificate does not.
    #[error("invalid certificate: {reason}")]
    InvalidCert {
        /// What is wrong, as the parser said it.
        reason: String,
    },
    /// Text that should hold a PEM private key does not.
    #[error("invalid private key")]
    InvalidKey {
        /// The parser's error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate signing request that does not parse, or whose
    /// signature does not verify against its own public key.
    #[error("invalid certificate signing request")]
    InvalidCsr {
        /// The parser's error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate signing request asks for another identity than the one
    /// the signer expected, so the requester tried to pick its own name.
    #[error("certificate signing request is for {found:?}, expected {expected:?}")]
    CsrIdentity {
        /// The user name the signer expected.
        expected: String,
        /// The common name in the request (empty when it has none).
        found: String,
    },
    /// A private key that does not belong to the certificate beside it.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// A certificate used as a CA that is not one.
    #[error("certificate {common_name:?} is not a certificate authority")]
    NotCa {
        /// Its subject common name.
        common_name: String,
    },
    /// The CA's own certificate has expired, so nothing it signs would
    /// verify.
    #[error("the CA certificate expired at {}", humantime(*not_after))]
    CaExpired {
        /// When it expired.
        not_after: SystemTime,
    },
    /// A name that cannot go in a certificate: an empty user or group, an
    /// invalid DNS name, or a server certificate with no name at all.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A validity that is zero, or that ends beyond what a certificate can
    /// express.
    #[error("validity {validity:?} is out of range")]
    Validity {
        /// The validity asked for.
        validity: Duration,
    },
    /// The certificate generator failed to build or sign something.
    #[error("generating {what}")]
    Generate {
        /// What was being built.
        what: &'static str,
        /// The generator's error.
        #[source]
        source: rcgen::Error,
    },
    /// The certificate generator produced DER this crate could not rewrite
    /// (a bug here or there, never the caller's input).
    #[error("unexpected DER from the certificate generator: {reason}")]
    Der {
        /// Which structure was not as expected.
        reason: &'static str,
    },
    /// The operating system's random source failed.
    #[error("reading the operating system's random source")]
    Random {
        /// The random source's error.
        #[source]
        source: getrandom::Error,
    },
    /// A join token that does not start with `MOOR1-`.
    #[error("join token does not start with \"MOOR1-\"")]
    TokenPrefix,
    /// A join token that is not `MOOR1-<ca digest>-<id>.<secret>`.
    #[error("join token is not of the form MOOR1-<ca digest>-<id>.<secret>")]
    TokenShape,
    /// A CA digest (in a token, or given to make one) of the wrong length.
    #[error("CA digest has {len} characters, expected 64")]
    DigestLength {
        /// Its length in characters.
        len: usize,
    },
    /// A CA digest (in a token, or given to make one) that is not lowercase
    /// hexadecimal.
    #[error("CA digest is not lowercase hexadecimal")]
    DigestChars,
    /// A join token whose id is not 6 characters from `[a-z0-9]`.
    #[error("join token id must be 6 characters from [a-z0-9]")]
    TokenId,
    /// A join token whose secret is not 32 characters from `[a-z0-9]`. The
    /// secret itself is never part of the message.
    #[error("join token secret must be 32 characters from [a-z0-9]")]
    TokenSecret,
}

// === impl Error ===

impl Error {
    /// Wraps this error as the contents of `path` being wrong.
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Error::Corrupt {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

/// RFC 3339 in UTC, for messages.
fn humantime(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|utc| utc.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{t:?}"))
}
