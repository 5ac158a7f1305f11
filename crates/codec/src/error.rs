//! The codec's error: what went wrong, in which document of the file and at
//! which field path, so the CLI can prefix a file name and print one line
//! such as `app.yaml: document 2: spec.containers[0].imagePullPolicyy: unknown field`.

use std::fmt;

/// A failure to decode or encode, with where it happened.
#[derive(Debug)]
pub struct Error {
    /// 1-based number of the document in the file, when the error is about one.
    pub document: Option<usize>,
    /// Field path inside the document (empty: the document as a whole).
    pub path: Path,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong, without the location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is not valid YAML or JSON.
    #[error("invalid {format}: {message}")]
    Syntax {
        /// "yaml" or "json".
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document is not a mapping.
    #[error("expected an object with apiVersion and kind, found {found}")]
    NotAnObject {
        /// What was found instead, e.g. "a sequence".
        found: String,
    },
    /// A document lacks apiVersion or kind.
    #[error("missing {field} (every object needs apiVersion and kind)")]
    Missing {
        /// "apiVersion" or "kind".
        field: &'static str,
    },
    /// No kind of this name exists.
    #[error("unknown kind {kind:?} (apiVersion {api_version:?}){}", did_you_mean(.suggestion))]
    UnknownKind {
        /// apiVersion as written.
        api_version: String,
        /// kind as written.
        kind: String,
        /// The nearest known kind name.
        suggestion: Option<String>,
    },
    /// The kind exists, but under another apiVersion.
    #[error("kind {kind} is not in apiVersion {api_version:?}: {kind} is {expected}")]
    WrongApiVersion {
        /// kind as written.
        kind: String,
        /// apiVersion as written.
        api_version: String,
        /// The kind's apiVersion.
        expected: String,
    },
    /// A CLI resource name (kind, plural or short name) that matches no kind.
    #[error("unknown resource type {name:?}{}", did_you_mean(.suggestion))]
    UnknownResource {
        /// The name as given.
        name: String,
        /// The nearest known name.
        suggestion: Option<String>,
    },
    /// A field the schema does not have.
    #[error("unknown field")]
    UnknownField,
    /// A YAML mapping key that is not a string.
    #[error("map keys must be strings, found {found}")]
    NonStringKey {
        /// The key, described, e.g. "integer 80".
        found: String,
    },
    /// A value of the wrong type.
    #[error("invalid type: {found}, expected {expected}")]
    InvalidType {
        /// The value, described as serde does, e.g. `string "three"`.
        found: String,
        /// What the field takes, e.g. "an integer".
        expected: &'static str,
    },
    /// A value of the right type but out of range.
    #[error("invalid value: {found}, expected {expected}")]
    InvalidValue {
        /// The value, described as serde does, e.g. "integer `99999999999`".
        found: String,
        /// What the field takes, e.g. "a 32-bit integer".
        expected: &'static str,
    },
    /// A value the schema rejects, in the words of the proto JSON parser.
    #[error("{0}")]
    Invalid(String),
    /// `decode_as` was asked for another kind than the document's.
    #[error("expected a {expected}, found a {found}")]
    WrongKind {
        /// The kind asked for.
        expected: &'static str,
        /// The document's kind.
        found: String,
    },
    /// A manifest meant to hold exactly one object holds another number.
    #[error("expected exactly one object, found {found}")]
    NotOneObject {
        /// How many objects there were.
        found: usize,
    },
    /// A message name the descriptor pool does not have.
    #[error("message {0} is not in the descriptor pool")]
    UnknownMessage(String),
    /// A dynamic message did not convert to its Rust type (a bug: they come
    /// from the same descriptors).
    #[error("cannot convert to {message}")]
    Transcode {
        /// The message's full name.
        message: String,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
    /// A message could not be written, e.g. a timestamp out of range.
    #[error("cannot encode {message}: {reason}")]
    Encode {
        /// The message's full name.
        message: String,
        /// The serializer's message.
        reason: String,
    },
}

/// A field path inside a document, printed as `spec.containers[0].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path {
    segments: Vec<Segment>,
}

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A field name or map key, as written in the document.
    Key(String),
    /// A position in a list.
    Index(usize),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default()
}

// === impl Error ===

impl Error {
    /// An error with no location yet.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            document: None,
            path: Path::default(),
            kind,
        }
    }

    /// Sets the document number.
    pub fn in_document(mut self, document: usize) -> Self {
        self.document = Some(document);
        self
    }

    /// Sets the field path.
    pub fn at(mut self, path: Path) -> Self {
        self.path = path;
        self
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(document) = self.document {
            write!(f, "document {document}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.kind)
    }
}

// The kind's message is part of our Display, so the chain continues with
// the kind's own source, not the kind itself.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

// === impl Path ===

impl Path {
    /// The empty path: the document itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// Whether the path is empty.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// This path followed by a field name or map key.
    pub fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_string()))
    }

    /// This path followed by a list position.
    pub fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// This path followed by `rest`.
    pub fn join(&self, rest: &Path) -> Self {
        let mut segments = self.segments.clone();
        segments.extend(rest.segments.iter().cloned());
        Self { segments }
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = self.segments.clone();
        segments.push(segment);
        Self { segments }
    }
}

impl From<&serde_path_to_error::Path> for Path {
    fn from(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let segments = path
            .iter()
            .map(|s| match s {
                S::Seq { index } => Segment::Index(*index),
                S::Map { key } => Segment::Key(key.clone()),
                S::Enum { variant } => Segment::Key(variant.clone()),
                S::Unknown => Segment::Key("?".to_string()),
            })
            .collect();
        Self { segments }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prefixes_document_and_path() {
        let path = Path::root()
            .key("spec")
            .key("containers")
            .index(0)
            .key("image");
        let err = Error::new(ErrorKind::UnknownField).in_document(2).at(path);
        assert_eq!(
            err.to_string(),
            "document 2: spec.containers[0].image: unknown field"
        );
        assert_eq!(
            Error::new(ErrorKind::UnknownField).to_string(),
            "unknown field"
        );
    }

    #[test]
    fn suggestion_is_appended() {
        let kind = ErrorKind::UnknownKind {
            api_version: "apps/v1".into(),
            kind: "Deploymnet".into(),
            suggestion: Some("Deployment".into()),
        };
        assert_eq!(
            kind.to_string(),
            r#"unknown kind "Deploymnet" (apiVersion "apps/v1"); did you mean "Deployment"?"#
        );
    }
}
