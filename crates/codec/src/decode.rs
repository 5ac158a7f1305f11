//! Manifests to API objects: each document's apiVersion and kind pick the
//! message, Kubernetes' spellings are turned into proto3 JSON, and the proto
//! JSON parser builds a `DynamicMessage`. Errors carry the document number
//! and the field path.

use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};
use serde_json::Value;

use crate::compat;
use crate::error::{Error, ErrorKind, Path};
use crate::input::{self, RawDocument};
use crate::kinds::{KindInfo, Kinds};

/// The kind that wraps other objects in its `items`.
const LIST_KIND: &str = "List";

/// How strictly manifests are read.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// A field the schema does not know is an error (the default); when
    /// false such fields are ignored.
    pub strict: bool,
}

/// One object of a manifest.
#[derive(Clone, Debug)]
pub struct Document {
    /// 1-based number of the document in the file.
    pub index: usize,
    /// 0-based position in the `items` of a List document, for its objects.
    pub item: Option<usize>,
    /// The object's kind.
    pub info: KindInfo,
    /// The object.
    pub message: DynamicMessage,
    /// The object as written (YAML turned into JSON), before decoding: the
    /// fields its author set, which `apply` merges and remembers.
    pub source: Value,
}

// === impl DecodeOptions ===

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { strict: true }
    }
}

impl DecodeOptions {
    /// Options that ignore unknown fields.
    pub fn relaxed() -> Self {
        Self { strict: false }
    }
}

// === impl Document ===

impl Document {
    /// metadata.name ("" when unset).
    pub fn name(&self) -> String {
        self.meta_string("name")
    }

    /// metadata.namespace ("" when unset).
    pub fn namespace(&self) -> String {
        self.meta_string("namespace")
    }

    fn meta_string(&self, field: &str) -> String {
        let Some(meta) = self.message.get_field_by_name("metadata") else {
            return String::new();
        };
        let Some(meta) = meta.as_message() else {
            return String::new();
        };
        meta.get_field_by_name(field)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Decodes every object of a YAML or JSON manifest, strictly.
pub fn decode_documents(text: &str) -> Result<Vec<Document>, Error> {
    decode_documents_with(text, &DecodeOptions::default())
}

/// Decodes every object of a YAML or JSON manifest: YAML documents separated
/// by `---` (empty ones skipped) or JSON objects; a `kind: List` document
/// stands for its items.
pub fn decode_documents_with(text: &str, options: &DecodeOptions) -> Result<Vec<Document>, Error> {
    let kinds = Kinds::global();
    let mut documents = Vec::new();
    for RawDocument { index, value } in input::parse(text)? {
        decode_document(kinds, index, value, options, &mut documents)
            .map_err(|e| e.in_document(index))?;
    }
    Ok(documents)
}

/// Decodes the object, or the objects of a List, of document `index`.
fn decode_document(
    kinds: &Kinds,
    index: usize,
    mut value: Value,
    options: &DecodeOptions,
    out: &mut Vec<Document>,
) -> Result<(), Error> {
    let (api_version, kind) = type_meta(&value, &Path::root())?;
    if kind != LIST_KIND {
        let info = kinds.get(api_version, kind)?.clone();
        let source = value.clone();
        let message = decode_message(&info.message, value, &Path::root(), options)?;
        out.push(Document {
            index,
            item: None,
            info,
            message,
            source,
        });
        return Ok(());
    }
    let items = match value.get_mut("items").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            let found = compat::describe(&other);
            let kind = ErrorKind::InvalidType {
                found,
                expected: "a list",
            };
            return Err(Error::new(kind).at(Path::root().key("items")));
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let path = Path::root().key("items").index(i);
        let (api_version, kind) = type_meta(&item, &path)?;
        let info = kinds
            .get(api_version, kind)
            .map_err(|e| e.at(path.clone()))?
            .clone();
        let source = item.clone();
        let message = decode_message(&info.message, item, &path, options)?;
        out.push(Document {
            index,
            item: Some(i),
            info,
            source,
            message,
        });
    }
    Ok(())
}

/// apiVersion and kind of an object (a List may leave out apiVersion).
fn type_meta<'v>(value: &'v Value, path: &Path) -> Result<(&'v str, &'v str), Error> {
    let Value::Object(object) = value else {
        let found = compat::describe(value);
        return Err(Error::new(ErrorKind::NotAnObject { found }).at(path.clone()));
    };
    let field = |name: &'static str| match object.get(name) {
        None | Some(Value::Null) => {
            Err(Error::new(ErrorKind::Missing { field: name }).at(path.clone()))
        }
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => {
            let kind = ErrorKind::InvalidType {
                found: compat::describe(other),
                expected: "a string",
            };
            Err(Error::new(kind).at(path.key(name)))
        }
    };
    let kind = field("kind");
    let api_version = match field("apiVersion") {
        Err(_) if kind.as_ref().is_ok_and(|k| *k == LIST_KIND) => "v1",
        api_version => api_version?,
    };
    Ok((api_version, kind?))
}

/// Parses one object of a known message type; `path` is where it sits in
/// its document.
pub(crate) fn decode_message(
    message: &MessageDescriptor,
    mut value: Value,
    path: &Path,
    options: &DecodeOptions,
) -> Result<DynamicMessage, Error> {
    compat::to_proto_json(&mut value, message, path, options.strict)?;
    let parse_options = DeserializeOptions::new().deny_unknown_fields(options.strict);
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(message.clone(), deserializer, &parse_options).map_err(
        |e| {
            let inner = Path::from(&track.path());
            Error::new(ErrorKind::Invalid(e.to_string())).at(path.join(&inner))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        decode_documents(text).unwrap_err().to_string()
    }

    #[test]
    fn missing_type_meta_is_named() {
        assert_eq!(
            error("kind: Pod\nmetadata: {name: a}\n"),
            "document 1: missing apiVersion (every object needs apiVersion and kind)"
        );
        assert_eq!(
            error("apiVersion: v1\n---\napiVersion: v1\nmetadata: {}\n"),
            "document 1: missing kind (every object needs apiVersion and kind)"
        );
        assert_eq!(
            error("- a\n- b\n"),
            "document 1: expected an object with apiVersion and kind, found sequence"
        );
        assert_eq!(
            error("apiVersion: 1\nkind: Pod\n"),
            "document 1: apiVersion: invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn parser_errors_keep_their_path() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    app: [web]\n";
        assert_eq!(
            error(text),
            "document 1: metadata.labels.app: invalid type: sequence, expected a string"
        );
        let text = "apiVersion: v1\nkind: Pod\nstatus:\n  startTime: yesterday\n";
        assert!(
            error(text).starts_with("document 1: status.startTime: "),
            "{}",
            error(text)
        );
    }

    #[test]
    fn list_items_are_numbered_by_document_and_item() {
        let text = "kind: ConfigMap\napiVersion: v1\n---\napiVersion: v1\nkind: List\nitems:\n\
                    - {apiVersion: v1, kind: Secret}\n- {apiVersion: v1, kind: Pod, spec: {nodeNam: x}}\n";
        assert_eq!(
            error(text),
            "document 2: items[1].spec.nodeNam: unknown field"
        );
        let text = "kind: List\nitems:\n- {apiVersion: v1, kind: Secret}\n- {kind: Pod}\n";
        assert_eq!(
            error(text),
            "document 1: items[1]: missing apiVersion (every object needs apiVersion and kind)"
        );
    }

    #[test]
    fn relaxed_options_ignore_unknown_fields() {
        let text =
            "apiVersion: v1\nkind: Pod\nspec:\n  nodeName: n1\n  nodeNam: x\n  extra: {a: 1}\n";
        let docs = decode_documents_with(text, &DecodeOptions::relaxed()).unwrap();
        assert_eq!(docs.len(), 1);
        let spec = docs[0].message.get_field_by_name("spec").unwrap();
        let node = spec
            .as_message()
            .unwrap()
            .get_field_by_name("node_name")
            .unwrap();
        assert_eq!(node.as_str(), Some("n1"));
    }

    #[test]
    fn names_are_read_from_metadata() {
        let docs =
            decode_documents("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: prod}\n")
                .unwrap();
        assert_eq!(
            (docs[0].name().as_str(), docs[0].namespace().as_str()),
            ("web", "prod")
        );
        assert_eq!((docs[0].index, docs[0].item), (1, None));
    }
}
