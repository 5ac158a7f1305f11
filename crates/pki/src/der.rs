//! Just enough DER to give a certificate or a signing request a subject with
//! several organizations, and to write PEM.
//!
//! rcgen keeps a distinguished name as a map with one value per attribute
//! type, so it cannot write `O=a, O=b`; Kubernetes puts each group in an O of
//! its own. So rcgen builds and signs the structure as usual, then the
//! subject is replaced by one written here and the to-be-signed part is
//! signed again with the same key and algorithm. Only definite lengths and
//! one-byte tags are read: all rcgen writes.

use rcgen::SigningKey;

use crate::Error;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const BIT_STRING: u8 = 0x03;
/// id-at-commonName, 2.5.4.3, encoded.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName, 2.5.4.10, encoded.
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// A signed structure whose subject can be rewritten.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Signed {
    /// An X.509 v3 certificate: version, serial, signature, issuer,
    /// validity, then subject.
    Certificate,
    /// A PKCS#10 request: version, then subject.
    Request,
}

/// One element: its tag, its whole encoding and its content.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

// === impl Signed ===

impl Signed {
    fn subject_index(self) -> usize {
        match self {
            Signed::Certificate => 5,
            Signed::Request => 1,
        }
    }
}

/// The DER of a subject name with the organizations first and the common
/// name last, each its own relative name, as Go's `pkix.Name` writes them.
pub(crate) fn name(common_name: &str, organizations: &[&str]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for org in organizations {
        rdns.extend(attribute(OID_ORGANIZATION, org));
    }
    rdns.extend(attribute(OID_COMMON_NAME, common_name));
    tlv(SEQUENCE, &rdns)
}

/// Checks that `value` can be a user, group or common name: not empty and
/// free of control characters (which no log or terminal shows faithfully).
pub(crate) fn check_name(value: &str, what: &str) -> Result<(), Error> {
    let reason = if value.is_empty() {
        format!("{what} must not be empty")
    } else if value.chars().any(char::is_control) {
        format!("{what} must not contain control characters")
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: value.to_owned(),
        reason,
    })
}

/// Replaces the subject of `signed` (DER) with `subject` (DER) and signs the
/// result with `key`, which must be the key that signed `signed`.
pub(crate) fn with_subject(
    signed: &[u8],
    kind: Signed,
    subject: &[u8],
    key: &impl SigningKey,
) -> Result<Vec<u8>, Error> {
    let outer = only(signed, SEQUENCE, "signed structure")?;
    let (tbs, rest) = split(outer.content)?;
    let (algorithm, _old_signature) = split(rest)?;
    if tbs.tag != SEQUENCE || algorithm.tag != SEQUENCE {
        return Err(Error::Der {
            reason: "signed structure fields",
        });
    }

    let mut fields = Vec::new();
    let mut cursor = tbs.content;
    while !cursor.is_empty() {
        let (field, rest) = split(cursor)?;
        fields.push(field);
        cursor = rest;
    }
    match fields.get(kind.subject_index()) {
        Some(field) if field.tag == SEQUENCE => {}
        _ => return Err(Error::Der { reason: "subject" }),
    }
    let mut body = Vec::with_capacity(tbs.content.len() + subject.len());
    for (i, field) in fields.iter().enumerate() {
        if i == kind.subject_index() {
            body.extend_from_slice(subject);
        } else {
            body.extend_from_slice(field.whole);
        }
    }
    let tbs = tlv(SEQUENCE, &body);

    let signature = key.sign(&tbs).map_err(|source| Error::Generate {
        what: "signature",
        source,
    })?;
    // A BIT STRING starts with its count of unused bits: none.
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0);
    bits.extend(signature);

    let mut out = tbs;
    out.extend_from_slice(algorithm.whole);
    out.extend(tlv(BIT_STRING, &bits));
    Ok(tlv(SEQUENCE, &out))
}

/// PEM text of `der` under `label`, with LF line endings.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

fn attribute(oid: &[u8], value: &str) -> Vec<u8> {
    let mut pair = tlv(OID, oid);
    pair.extend(tlv(UTF8_STRING, value.as_bytes()));
    tlv(SET, &tlv(SEQUENCE, &pair))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    match u8::try_from(content.len()) {
        Ok(len) if len < 0x80 => out.push(len),
        _ => {
            let bytes = content.len().to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            // At most size_of::<usize>() bytes follow, so this fits in 7 bits.
            out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or(0x7f));
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    out.extend_from_slice(content);
    out
}

/// `input` as exactly one element with `tag`.
fn only<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, Error> {
    match split(input)? {
        (tlv, []) if tlv.tag == tag => Ok(tlv),
        _ => Err(Error::Der { reason: what }),
    }
}

/// The first element of `input` and what follows it.
fn split(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), Error> {
    let truncated = Error::Der {
        reason: "truncated element",
    };
    let (&tag, rest) = input.split_first().ok_or(truncated)?;
    let (&first, rest) = rest.split_first().ok_or(Error::Der {
        reason: "truncated length",
    })?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > size_of::<usize>() {
            return Err(Error::Der {
                reason: "unsupported length",
            });
        }
        let (bytes, rest) = rest.split_at_checked(count).ok_or(Error::Der {
            reason: "truncated length",
        })?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len).ok_or(Error::Der {
        reason: "truncated content",
    })?;
    let header = input.len() - rest.len() - content.len();
    Ok((
        Tlv {
            tag,
            whole: &input[..header + content.len()],
            content,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    use super::*;

    #[test]
    fn lengths_round_trip_in_short_and_long_form() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = tlv(SEQUENCE, &content);
            let (parsed, rest) = split(&encoded).unwrap();
            assert_eq!(parsed.tag, SEQUENCE);
            assert_eq!(parsed.content, &content[..]);
            assert_eq!(parsed.whole, &encoded[..]);
            assert!(rest.is_empty());
        }
        assert_eq!(tlv(SET, &[0; 128])[..3], [SET, 0x81, 0x80]);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 1],
            &[0x30, 0x82, 0x01],
            &[0x30, 0x80],
        ] {
            assert!(matches!(split(bad), Err(Error::Der { .. })), "{bad:?}");
        }
    }

    #[test]
    fn name_has_one_relative_name_per_group_then_the_common_name() {
        let der = name("alice", &["dev", "ops"]);
        let (_, parsed) = x509_parser::x509::X509Name::from_der(&der)
            .map_err(|e| e.to_string())
            .unwrap();
        let orgs: Vec<_> = parsed
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["dev", "ops"]);
        let cn: Vec<_> = parsed
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["alice"]);
        assert_eq!(parsed.iter().count(), 3);
    }
}
