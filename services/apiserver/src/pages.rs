//! Continue tokens of paged lists: where the last page ended and the store
//! revision every page of the list is read at.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;

/// Where a paged list goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision of the list's first page.
    pub revision: i64,
    /// The store key of the last object given out.
    pub key: String,
}

impl ContinueToken {
    /// The opaque form handed to clients. It names the key relative to the
    /// kind's prefix: a token says nothing a client could not list anyway.
    pub fn encode(&self, kind_prefix: &str) -> String {
        let key = self.key.strip_prefix(kind_prefix).unwrap_or(&self.key);
        URL_SAFE_NO_PAD.encode(format!("{}/{key}", self.revision))
    }

    /// Reads a token given out for a list under `list_prefix` (a kind's
    /// prefix, or one namespace of it); a token of another list, a
    /// mangled one or one from elsewhere is refused.
    pub fn decode(token: &str, kind_prefix: &str, list_prefix: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::BadRequest(format!(
                "continue {token:?}: not a token this list gave out (pass the `continue` of \
                 the previous page's metadata, with the same namespace)"
            ))
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (revision, key) = text.split_once('/').ok_or_else(invalid)?;
        let revision: i64 = revision.parse().map_err(|_| invalid())?;
        let key = format!("{kind_prefix}{key}");
        if revision <= 0 || key.len() <= list_prefix.len() || !key.starts_with(list_prefix) {
            return Err(invalid());
        }
        Ok(Self { revision, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = "/registry/pods/";

    #[test]
    fn tokens_round_trip_within_their_list() {
        let token = ContinueToken {
            revision: 42,
            key: "/registry/pods/default/web-1".into(),
        };
        let text = token.encode(PODS);
        assert_eq!(ContinueToken::decode(&text, PODS, PODS).unwrap(), token);
        let in_default = "/registry/pods/default/";
        assert_eq!(
            ContinueToken::decode(&text, PODS, in_default).unwrap(),
            token
        );
    }

    #[test]
    fn tokens_of_another_list_or_mangled_are_refused() {
        let token = ContinueToken {
            revision: 42,
            key: "/registry/pods/default/web-1".into(),
        };
        let text = token.encode(PODS);
        for (bad, prefix) in [
            (text.as_str(), "/registry/pods/other/"),
            ("not base64!", PODS),
            (&URL_SAFE_NO_PAD.encode("x/default/web"), PODS),
            (&URL_SAFE_NO_PAD.encode("-3/default/web"), PODS),
            (&URL_SAFE_NO_PAD.encode("7"), PODS),
            (&URL_SAFE_NO_PAD.encode("7/"), PODS),
        ] {
            let err = ContinueToken::decode(bad, PODS, prefix).unwrap_err();
            assert!(
                matches!(err, Error::BadRequest(ref m) if m.contains("not a token")),
                "{bad:?} under {prefix}: {err}"
            );
        }
    }
}
