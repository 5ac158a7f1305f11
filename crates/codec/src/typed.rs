//! The generated Rust types (`moor_api::core::v1::Pod`, ...) to and from the
//! codec's dynamic messages, through their protobuf encoding.

use moor_api::Resource;
use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::decode::{Document, decode_documents};
use crate::encode::encode_json;
use crate::error::{Error, ErrorKind};

/// The document's object as its Rust type; an error if it is another kind.
pub fn decode_as<K: Resource>(document: &Document) -> Result<K, Error> {
    let found = document.message.descriptor();
    if found.full_name() != K::MESSAGE {
        let kind = ErrorKind::WrongKind {
            expected: K::KIND,
            found: document.info.kind.clone(),
        };
        return Err(Error::new(kind).in_document(document.index));
    }
    document.message.transcode_to::<K>().map_err(|source| {
        let kind = ErrorKind::Transcode {
            message: K::MESSAGE.to_string(),
            source,
        };
        Error::new(kind).in_document(document.index)
    })
}

/// The object of a manifest that must hold exactly one object, of kind `K`.
pub fn from_manifest<K: Resource>(text: &str) -> Result<K, Error> {
    match decode_documents(text)?.as_slice() {
        [document] => decode_as(document),
        documents => Err(ErrorKind::NotOneObject {
            found: documents.len(),
        }
        .into()),
    }
}

/// The object as a dynamic message of moor's descriptor pool.
pub fn to_dynamic<K: Resource>(object: &K) -> Result<DynamicMessage, Error> {
    let desc = moor_api::descriptor_pool()
        .get_message_by_name(K::MESSAGE)
        .ok_or_else(|| ErrorKind::UnknownMessage(K::MESSAGE.to_string()))?;
    let mut message = DynamicMessage::new(desc);
    message
        .transcode_from(object)
        .map_err(|source| ErrorKind::Transcode {
            message: K::MESSAGE.to_string(),
            source,
        })?;
    Ok(message)
}

/// The object as a JSON value in Kubernetes' shape (see [`encode_json`]).
pub fn to_json<K: Resource>(object: &K) -> Result<serde_json::Value, Error> {
    encode_json(&to_dynamic(object)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::apps::v1::Deployment;
    use moor_api::core::v1::Pod;

    #[test]
    fn typed_round_trip() {
        let pod: Pod = from_manifest("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n").unwrap();
        assert_eq!(pod.meta().name, "web");
        let json = to_json(&pod).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}})
        );
    }

    #[test]
    fn wrong_kind_and_count_are_errors() {
        let err = from_manifest::<Deployment>("apiVersion: v1\nkind: Pod\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: expected a Deployment, found a Pod"
        );
        let err = from_manifest::<Pod>("").unwrap_err();
        assert_eq!(err.to_string(), "expected exactly one object, found 0");
    }
}
