//! Manifests in YAML or JSON to and from moor's API objects, in the shape
//! Kubernetes users know: proto3 JSON names (`containerPort`, `podIP`),
//! `IntOrString` as bare values, quantities as strings, several documents
//! per file, `kind: List`. Everything is driven by the descriptors of
//! proto/: kinds come from their `(moor.meta.v1.resource)` option, fields
//! from the messages, so a new kind or field needs no change here.
//!
//! Errors name the document and the field path
//! (`document 2: spec.containers[0].imagePullPolicyy: unknown field`), and
//! what the encoder writes the decoder reads back to the same object.

mod compat;
mod decode;
mod encode;
mod error;
mod input;
mod kinds;
mod order;
mod suggest;
mod typed;

pub use decode::{DecodeOptions, Document, decode_documents, decode_documents_with};
pub use encode::{
    encode_json, encode_list, list_to_json_string, list_to_yaml, to_json_string, to_yaml,
};
pub use error::{Error, ErrorKind, Path, Segment};
pub use kinds::{Column, KindInfo, Kinds};
pub use typed::{decode_as, from_manifest, to_dynamic, to_json};
