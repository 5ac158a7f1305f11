//! Join tokens: `MOOR1-<ca digest>-<id>.<secret>`, after Docker Swarm's
//! `SWMTKN-1-<ca digest>-<secret>` and kubeadm's `<id>.<secret>`.
//!
//! - The CA digest (64 lowercase hex characters, SHA-256 of the CA
//!   certificate's DER) lets a joining node trust the CA a server presents
//!   before it has any certificate: it pins the CA.
//! - The id (6 characters of `[a-z0-9]`) names the token in lists and logs.
//! - The secret (32 characters of `[a-z0-9]`, about 165 bits from the
//!   operating system's random source) proves the joiner was given the
//!   token. Servers keep only its SHA-256 ([`Token::secret_hash`]); the
//!   secret is random enough that a plain hash needs no salt or stretching.
//!
//! Neither `Display` nor `Debug` shows the secret; [`Token::reveal`] is the
//! one way to get the whole token back as text, and no error quotes it.

use std::fmt;

use crate::Error;
use crate::cert::sha256_hex;

/// The version prefix every token starts with.
pub const TOKEN_PREFIX: &str = "MOOR1-";

const DIGEST_LEN: usize = 64;
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A join token: the CA digest it pins, its id and its secret.
#[derive(Clone)]
pub struct Token {
    ca_digest: String,
    id: String,
    secret: String,
}

// === impl Token ===

impl Token {
    /// A new token pinning `ca_digest` (as [`crate::Ca::digest`] gives it),
    /// with a random id and secret.
    pub fn generate(ca_digest: &str) -> Result<Self, Error> {
        check_digest(ca_digest)?;
        Ok(Token {
            ca_digest: ca_digest.to_owned(),
            id: random_string(ID_LEN)?,
            secret: random_string(SECRET_LEN)?,
        })
    }

    /// Parses a token as printed by [`Token::reveal`]; surrounding
    /// whitespace (a trailing newline from a file) is ignored.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let rest = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(Error::TokenPrefix)?;
        let (ca_digest, rest) = rest.split_once('-').ok_or(Error::TokenShape)?;
        let (id, secret) = rest.split_once('.').ok_or(Error::TokenShape)?;
        check_digest(ca_digest)?;
        if !is_token_part(id, ID_LEN) {
            return Err(Error::TokenId);
        }
        if !is_token_part(secret, SECRET_LEN) {
            return Err(Error::TokenSecret);
        }
        Ok(Token {
            ca_digest: ca_digest.to_owned(),
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The token's id: public, for lists, logs and deletion.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The CA digest the token pins.
    pub fn ca_digest(&self) -> &str {
        &self.ca_digest
    }

    /// The secret. Send it, hash it, never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, secret included: what `moor token create` prints
    /// once and `moor join --token` reads.
    pub fn reveal(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}-{}.{}",
            self.ca_digest, self.id, self.secret
        )
    }

    /// SHA-256 of this token's secret, as stored.
    pub fn hash(&self) -> String {
        Self::secret_hash(&self.secret)
    }

    /// SHA-256 of a secret as lowercase hexadecimal: the form servers store.
    pub fn secret_hash(secret: &str) -> String {
        sha256_hex(secret.as_bytes())
    }

    /// Whether `secret` hashes to `stored_hash`, comparing in time that does
    /// not depend on where the two differ.
    pub fn verify_secret(secret: &str, stored_hash: &str) -> bool {
        constant_time_eq(Self::secret_hash(secret).as_bytes(), stored_hash.as_bytes())
    }
}

impl fmt::Display for Token {
    /// The token with its secret hidden: `MOOR1-<digest>-<id>.<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}{}-{}.<redacted>", self.ca_digest, self.id)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_digest", &self.ca_digest)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Checks a CA digest: 64 characters of lowercase hexadecimal.
fn check_digest(digest: &str) -> Result<(), Error> {
    let len = digest.chars().count();
    if len != DIGEST_LEN {
        return Err(Error::DigestLength { len });
    }
    if !digest
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Error::DigestChars);
    }
    Ok(())
}

fn is_token_part(part: &str, len: usize) -> bool {
    part.len() == len && part.bytes().all(|b| ALPHABET.contains(&b))
}

/// `len` characters drawn uniformly from [`ALPHABET`].
fn random_string(len: usize) -> Result<String, Error> {
    // Bytes of 252 and above are dropped so that `b % 36` is uniform
    // (252 = 7 * 36).
    const LIMIT: u8 = 252;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|source| Error::Random { source })?;
        for b in buf.iter().filter(|b| **b < LIMIT) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 36)]));
        }
    }
    Ok(out)
}

/// Equality whose running time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const SECRET: &str = "0123456789abcdefghijklmnopqrstuv";

    fn text(digest: &str, id: &str, secret: &str) -> String {
        format!("MOOR1-{digest}-{id}.{secret}")
    }

    #[test]
    fn generated_token_round_trips_through_its_text() {
        let token = Token::generate(DIGEST).unwrap();
        assert_eq!(token.id().len(), 6);
        assert_eq!(token.secret().len(), 32);
        assert!(is_token_part(token.id(), 6) && is_token_part(token.secret(), 32));
        let text = token.reveal();
        assert_eq!(text.len(), "MOOR1-".len() + 64 + 1 + 6 + 1 + 32);
        let parsed = Token::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(parsed.ca_digest(), DIGEST);
        assert_eq!(parsed.id(), token.id());
        assert_eq!(parsed.secret(), token.secret());
        assert_eq!(parsed.reveal(), text);
    }

    #[test]
    fn generated_tokens_differ() {
        let a = Token::generate(DIGEST).unwrap();
        let b = Token::generate(DIGEST).unwrap();
        assert_ne!(a.secret(), b.secret());
        assert_ne!(a.reveal(), b.reveal());
    }

    #[test]
    fn display_and_debug_never_show_the_secret() {
        let token = Token::parse(&text(DIGEST, "abc123", SECRET)).unwrap();
        let shown = format!("{token} {token:?} {token:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("abc123") && shown.contains(DIGEST));
        assert_eq!(
            token.to_string(),
            format!("MOOR1-{DIGEST}-abc123.<redacted>")
        );
        assert!(token.reveal().ends_with(SECRET));
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let cases = [
            (format!("SWMTKN-1-{DIGEST}-abc123.{SECRET}"), "prefix"),
            (format!("moor1-{DIGEST}-abc123.{SECRET}"), "prefix"),
            (String::new(), "prefix"),
            (format!("MOOR1-{DIGEST}"), "shape"),
            (format!("MOOR1-{DIGEST}-abc123{SECRET}"), "shape"),
            (text(&DIGEST[1..], "abc123", SECRET), "digest length"),
            (
                text(&format!("{DIGEST}00"), "abc123", SECRET),
                "digest length",
            ),
            (
                text(&DIGEST.to_uppercase(), "abc123", SECRET),
                "digest chars",
            ),
            (
                text(&DIGEST.replace('0', "g"), "abc123", SECRET),
                "digest chars",
            ),
            (text(DIGEST, "abc12", SECRET), "id"),
            (text(DIGEST, "abc1234", SECRET), "id"),
            (text(DIGEST, "ABC123", SECRET), "id"),
            (text(DIGEST, "abc-12", SECRET), "id"),
            (text(DIGEST, "abc123", &SECRET[1..]), "secret"),
            (text(DIGEST, "abc123", &format!("{SECRET}x")), "secret"),
            (text(DIGEST, "abc123", &SECRET.replace('a', "A")), "secret"),
            (text(DIGEST, "abc123", &SECRET.replace('a', ".")), "secret"),
        ];
        for (input, want) in cases {
            let err = Token::parse(&input).unwrap_err();
            let got = match err {
                Error::TokenPrefix => "prefix",
                Error::TokenShape => "shape",
                Error::DigestLength { .. } => "digest length",
                Error::DigestChars => "digest chars",
                Error::TokenId => "id",
                Error::TokenSecret => "secret",
                ref other => panic!("{input}: unexpected {other:?}"),
            };
            assert_eq!(got, want, "{input}: {err}");
            assert!(!err.to_string().contains(&SECRET[..10]), "{err}");
        }
        assert!(matches!(
            Token::parse(&text(&DIGEST[2..], "abc123", SECRET)),
            Err(Error::DigestLength { len: 62 })
        ));
    }

    #[test]
    fn generate_refuses_a_bad_digest() {
        assert!(matches!(
            Token::generate("abc"),
            Err(Error::DigestLength { len: 3 })
        ));
        let upper = DIGEST.to_uppercase();
        assert!(matches!(Token::generate(&upper), Err(Error::DigestChars)));
    }

    #[test]
    fn secret_hash_verifies_only_the_same_secret() {
        let token = Token::generate(DIGEST).unwrap();
        let stored = token.hash();
        assert_eq!(stored, Token::secret_hash(token.secret()));
        assert_eq!(stored.len(), 64);
        assert_ne!(stored, token.secret());
        assert!(Token::verify_secret(token.secret(), &stored));
        let other = Token::generate(DIGEST).unwrap();
        assert!(!Token::verify_secret(other.secret(), &stored));
        assert!(!Token::verify_secret(token.secret(), &stored[..63]));
        assert!(!Token::verify_secret(token.secret(), ""));
        // The stored form is the hash, not the secret itself.
        assert!(!Token::verify_secret(token.secret(), token.secret()));
    }

    #[test]
    fn known_hash() {
        assert_eq!(
            Token::secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
