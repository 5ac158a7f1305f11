//! The one error type of this crate: every variant names the offending key,
//! value or position, so its message alone tells a user what to fix.

use crate::selector::Operator;

/// What can be wrong with a selector or one of its parts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Label selector text that does not parse, or that names an invalid
    /// key, value or value set.
    #[error("unable to parse label selector {input:?}: at position {position}: {reason}")]
    LabelSelector {
        /// The whole selector text.
        input: String,
        /// Byte offset in `input` of the offending token (`input.len()` for
        /// the end of the string).
        position: usize,
        /// What was found and what was expected there.
        reason: String,
    },
    /// Field selector text that does not parse.
    #[error("unable to parse field selector {input:?}: at position {position}: {reason}")]
    FieldSelector {
        /// The whole selector text.
        input: String,
        /// Byte offset in `input` of the offending term or character.
        position: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A label key that is not a qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Which rule it breaks, in Kubernetes' words.
        reason: String,
    },
    /// A label value that breaks the label value rules.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value.
        value: String,
        /// Which rule it breaks, in Kubernetes' words.
        reason: String,
    },
    /// A set of values that does not fit the requirement's operator.
    #[error("invalid values {values:?} for key {key:?} with operator {operator:?}: {reason}")]
    InvalidValues {
        /// The requirement's key.
        key: String,
        /// The requirement's operator.
        operator: Operator,
        /// The values given.
        values: Vec<String>,
        /// What the operator needs.
        reason: &'static str,
    },
    /// An operator name, as written in a `matchExpressions` entry, that is
    /// not one Kubernetes knows.
    #[error(
        "{0:?} is not a valid label selector operator \
         (expected In, NotIn, Exists, DoesNotExist, Gt or Lt)"
    )]
    UnknownOperator(String),
    /// A field selector term on a field the resource does not support.
    #[error("field label not supported: {field:?} (supported: {})", .allowed.join(", "))]
    UnsupportedField {
        /// The field the term names.
        field: String,
        /// The fields that may be used.
        allowed: Vec<String>,
    },
}
