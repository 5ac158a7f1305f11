//! Labels and selectors with Kubernetes' semantics: the name and label
//! validation rules of `k8s.io/apimachinery/pkg/util/validation`, label
//! selectors as `labels.Parse` reads them, and field selectors as
//! `fields.ParseSelector` reads them.
//!
//! Pure functions over strings: no I/O, no allocation beyond the values
//! returned. A selector that parses here parses in Kubernetes and selects the
//! same objects, and its `Display` form parses back to an equal selector.

mod error;
pub mod fields;
pub mod selector;
pub mod validation;

pub use error::Error;
pub use fields::FieldSelector;
pub use selector::{Labels, Operator, Requirement, Selector};
