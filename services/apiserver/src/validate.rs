//! Validation helpers shared by every kind: a collector of field errors and
//! the checks of object metadata.

use std::collections::HashMap;

use moor_api::meta::v1::ObjectMeta;
use moor_labels::validation;

use crate::error::{Error, FieldError};

/// Collects field errors for one object.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

// === impl Errors ===

impl Errors {
    /// Records that `path` is wrong.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records a missing required field.
    pub fn required(&mut self, path: impl Into<String>) {
        self.add(path, "Required value");
    }

    /// Records `value` as invalid with the reason.
    pub fn invalid(
        &mut self,
        path: impl Into<String>,
        value: impl std::fmt::Display,
        why: impl std::fmt::Display,
    ) {
        self.add(path, format!("Invalid value: \"{value}\": {why}"));
    }

    /// Records a value outside the allowed set.
    pub fn unsupported(&mut self, path: impl Into<String>, value: &str, allowed: &[&str]) {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        self.add(
            path,
            format!(
                "Unsupported value: \"{value}\": supported values: {}",
                allowed.join(", ")
            ),
        );
    }

    /// Checks a DNS-1123 label (names of containers, ports, volumes, namespaces).
    pub fn dns_label(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.required(path);
        } else if let Err(why) = validation::dns1123_label(value) {
            self.invalid(path, value, why);
        }
    }

    /// Checks a DNS-1123 subdomain (most object names).
    pub fn dns_subdomain(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.required(path);
        } else if let Err(why) = validation::dns1123_subdomain(value) {
            self.invalid(path, value, why);
        }
    }

    /// Checks a port number.
    pub fn port(&mut self, path: &str, port: i32) {
        if !(1..=65535).contains(&port) {
            self.invalid(path, port, "must be between 1 and 65535, inclusive");
        }
    }

    /// Checks a protocol, already defaulted.
    pub fn protocol(&mut self, path: &str, protocol: &str) {
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            self.unsupported(path, protocol, &["SCTP", "TCP", "UDP"]);
        }
    }

    /// Checks label keys and values.
    pub fn labels(&mut self, path: &str, labels: &HashMap<String, String>) {
        for (key, value) in sorted(labels) {
            if let Err(why) = validation::qualified_name(key) {
                self.invalid(format!("{path}[{key}]"), key, why);
            }
            if let Err(why) = validation::label_value(value) {
                self.invalid(format!("{path}[{key}]"), value, why);
            }
        }
    }

    /// Ok, or the invalid-object error naming every recorded field.
    pub fn into_result(self, kind: &'static str, name: &str) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                kind,
                name: name.to_string(),
                errors: self.0,
            })
        }
    }
}

/// Entries of a map in key order, so error messages are deterministic.
pub fn sorted<V>(map: &HashMap<String, V>) -> Vec<(&String, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Total size of annotations Kubernetes allows.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Checks the metadata every object has. `name_is_label` selects DNS-1123
/// label names (namespaces) over subdomain names.
pub fn metadata(errors: &mut Errors, meta: &ObjectMeta, namespaced: bool, name_is_label: bool) {
    if name_is_label {
        errors.dns_label("metadata.name", &meta.name);
    } else {
        errors.dns_subdomain("metadata.name", &meta.name);
    }
    if namespaced {
        errors.dns_label("metadata.namespace", &meta.namespace);
    } else if !meta.namespace.is_empty() {
        errors.add("metadata.namespace", "Forbidden: not allowed on this type");
    }
    errors.labels("metadata.labels", &meta.labels);
    let mut size = 0;
    for (key, value) in sorted(&meta.annotations) {
        if let Err(why) = validation::qualified_name(key) {
            errors.invalid(format!("metadata.annotations[{key}]"), key, why);
        }
        size += key.len() + value.len();
    }
    if size > MAX_ANNOTATIONS_BYTES {
        errors.add(
            "metadata.annotations",
            format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
        );
    }
    for (i, owner) in meta.owner_references.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        if owner.api_version.is_empty() {
            errors.required(format!("{path}.apiVersion"));
        }
        if owner.kind.is_empty() {
            errors.required(format!("{path}.kind"));
        }
        if owner.name.is_empty() {
            errors.required(format!("{path}.name"));
        }
        if owner.uid.is_empty() {
            errors.required(format!("{path}.uid"));
        }
    }
    for (i, finalizer) in meta.finalizers.iter().enumerate() {
        if let Err(why) = validation::qualified_name(finalizer) {
            errors.invalid(format!("metadata.finalizers[{i}]"), finalizer, why);
        }
    }
}
