//! Kubernetes' spellings that proto3 JSON does not have, turned into proto3
//! JSON before parsing, guided by the descriptors: `IntOrString` as a bare
//! integer or string, quantities written as YAML numbers (`cpu: 1`), and
//! integers as numbers. The same pass finds unknown fields, so that their
//! error names the field itself (the proto JSON parser names its parent).

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::de::Unexpected;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Path};

/// The message written as a bare integer or string.
pub(crate) const INT_OR_STRING: &str = "moor.meta.v1.IntOrString";

/// Map fields of quantities (`map<string, string>`), by proto name.
const QUANTITY_MAPS: &[&str] = &["limits", "requests", "capacity", "allocatable"];

/// String fields holding one quantity, by proto name.
const QUANTITY_FIELDS: &[&str] = &["size_limit"];

/// Whether the proto JSON mapping gives this message a special form
/// (Timestamp as a string, ...): such values are left to the parser.
pub(crate) fn is_well_known(message: &MessageDescriptor) -> bool {
    message.package_name() == "google.protobuf"
}

/// Whether a field kind is a 64-bit integer, which proto3 JSON may quote.
pub(crate) fn is_64_bit(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64
    )
}

fn is_integer(kind: &Kind) -> bool {
    is_64_bit(kind)
        || matches!(
            kind,
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32
        )
}

/// A value described as serde's errors do, e.g. `string "three"`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => Unexpected::Bool(*b).to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Unexpected::Signed(i).to_string(),
            (_, Some(u), _) => Unexpected::Unsigned(u).to_string(),
            (_, _, Some(f)) => Unexpected::Float(f).to_string(),
            _ => format!("number {n}"),
        },
        Value::String(s) => Unexpected::Str(s).to_string(),
        Value::Array(_) => Unexpected::Seq.to_string(),
        Value::Object(_) => Unexpected::Map.to_string(),
    }
}

/// Rewrites `value`, a message of type `message` at `path`, into proto3 JSON.
/// With `strict`, a field the message does not have is an error.
pub(crate) fn to_proto_json(
    value: &mut Value,
    message: &MessageDescriptor,
    path: &Path,
    strict: bool,
) -> Result<(), Error> {
    Prepass { strict }.message(value, message, path)
}

struct Prepass {
    strict: bool,
}

// === impl Prepass ===

impl Prepass {
    fn message(
        &self,
        value: &mut Value,
        message: &MessageDescriptor,
        path: &Path,
    ) -> Result<(), Error> {
        if message.full_name() == INT_OR_STRING {
            return int_or_string(value, path);
        }
        if is_well_known(message) {
            return Ok(());
        }
        // Any other shape is reported by the proto JSON parser, with its path.
        let Value::Object(object) = value else {
            return Ok(());
        };
        for (key, item) in object.iter_mut() {
            let field = message
                .get_field_by_json_name(key)
                .or_else(|| message.get_field_by_name(key));
            match field {
                Some(field) => self.field(item, &field, &path.key(key))?,
                None if self.strict => {
                    return Err(Error::new(ErrorKind::UnknownField).at(path.key(key)));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn field(&self, value: &mut Value, field: &FieldDescriptor, path: &Path) -> Result<(), Error> {
        let kind = field.kind();
        if field.is_map() {
            let Some(entry) = kind.as_message() else {
                return Ok(());
            };
            let value_kind = entry.map_entry_value_field().kind();
            let quantity = QUANTITY_MAPS.contains(&field.name()) && value_kind == Kind::String;
            if let Value::Object(entries) = value {
                for (key, item) in entries.iter_mut() {
                    self.single(item, &value_kind, &path.key(key), quantity)?;
                }
            }
        } else if field.is_list() {
            if let Value::Array(items) = value {
                for (i, item) in items.iter_mut().enumerate() {
                    self.single(item, &kind, &path.index(i), false)?;
                }
            }
        } else {
            let quantity = QUANTITY_FIELDS.contains(&field.name()) && kind == Kind::String;
            self.single(value, &kind, path, quantity)?;
        }
        Ok(())
    }

    fn single(
        &self,
        value: &mut Value,
        kind: &Kind,
        path: &Path,
        quantity: bool,
    ) -> Result<(), Error> {
        if let Kind::Message(message) = kind {
            return self.message(value, message, path);
        }
        match value {
            Value::Number(n) if quantity => {
                *value = Value::String(n.to_string());
                Ok(())
            }
            _ if is_integer(kind) => integer(value, kind, path),
            _ => Ok(()),
        }
    }
}

/// Checks an integer field's value, to word errors as serde does rather than
/// as the integer parser does ("invalid digit found in string").
fn integer(value: &Value, kind: &Kind, path: &Path) -> Result<(), Error> {
    let n = match value {
        // proto3 JSON takes integers as strings too.
        Value::String(s) => match s.parse::<i128>() {
            Ok(n) => n,
            Err(_) => return Err(invalid_type(value, "an integer", path)),
        },
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i128::from(i),
            (_, Some(u), _) => i128::from(u),
            (_, _, Some(f)) if f.fract() != 0.0 => {
                return Err(invalid_type(value, "an integer", path));
            }
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    let (fits, expected) = match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            (i32::try_from(n).is_ok(), "a 32-bit integer")
        }
        Kind::Uint32 | Kind::Fixed32 => (u32::try_from(n).is_ok(), "an unsigned 32-bit integer"),
        Kind::Uint64 | Kind::Fixed64 => (u64::try_from(n).is_ok(), "an unsigned 64-bit integer"),
        _ => (i64::try_from(n).is_ok(), "a 64-bit integer"),
    };
    if fits {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::InvalidValue {
            found: describe(value),
            expected,
        })
        .at(path.clone()))
    }
}

/// `8080` becomes `{"intVal": 8080}`, `"http"` becomes `{"strVal": "http"}`;
/// the proto form is kept.
fn int_or_string(value: &mut Value, path: &Path) -> Result<(), Error> {
    let proto = match value {
        Value::Null | Value::Object(_) => return Ok(()),
        Value::String(s) => serde_json::json!({ "strVal": s }),
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => serde_json::json!({ "intVal": i }),
            None => return Err(invalid_type(value, "a 32-bit integer or a string", path)),
        },
        Value::Bool(_) | Value::Array(_) => {
            return Err(invalid_type(value, "an integer or a string", path));
        }
    };
    *value = proto;
    Ok(())
}

fn invalid_type(value: &Value, expected: &'static str, path: &Path) -> Error {
    Error::new(ErrorKind::InvalidType {
        found: describe(value),
        expected,
    })
    .at(path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prepass(message: &str, mut value: Value, strict: bool) -> Result<Value, Error> {
        let desc = moor_api::descriptor_pool()
            .get_message_by_name(message)
            .unwrap();
        to_proto_json(&mut value, &desc, &Path::root(), strict)?;
        Ok(value)
    }

    #[test]
    fn int_or_string_and_quantities_become_proto_json() {
        let container = json!({
            "name": "web",
            "resources": {"limits": {"cpu": 1, "memory": "128Mi"}, "requests": {"cpu": 0.5}},
            "livenessProbe": {"httpGet": {"port": "http"}, "tcpSocket": {"port": 8080}},
        });
        let out = prepass("moor.core.v1.Container", container, true).unwrap();
        assert_eq!(
            out["resources"]["limits"],
            json!({"cpu": "1", "memory": "128Mi"})
        );
        assert_eq!(out["resources"]["requests"]["cpu"], json!("0.5"));
        assert_eq!(
            out["livenessProbe"]["httpGet"]["port"],
            json!({"strVal": "http"})
        );
        assert_eq!(
            out["livenessProbe"]["tcpSocket"]["port"],
            json!({"intVal": 8080})
        );
    }

    #[test]
    fn unknown_fields_are_named_or_ignored() {
        let spec =
            json!({"containers": [{"name": "a"}, {"name": "b", "imagePullPolicyy": "Always"}]});
        let err = prepass("moor.core.v1.PodSpec", spec.clone(), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "containers[1].imagePullPolicyy: unknown field"
        );
        assert!(prepass("moor.core.v1.PodSpec", spec, false).is_ok());
    }

    #[test]
    fn snake_case_names_are_walked_too() {
        let port = json!({"target_port": 80});
        let out = prepass("moor.core.v1.ServicePort", port, true).unwrap();
        assert_eq!(out["target_port"], json!({"intVal": 80}));
    }

    #[test]
    fn bad_values_get_serde_wording() {
        let err = prepass(
            "moor.apps.v1.DeploymentSpec",
            json!({"replicas": "three"}),
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"replicas: invalid type: string "three", expected an integer"#
        );
        assert!(
            prepass(
                "moor.apps.v1.DeploymentSpec",
                json!({"replicas": "3"}),
                true
            )
            .is_ok()
        );
        let err = prepass(
            "moor.apps.v1.DeploymentSpec",
            json!({"replicas": 1.5}),
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "replicas: invalid type: floating point `1.5`, expected an integer"
        );
        let err = prepass(
            "moor.core.v1.ContainerPort",
            json!({"containerPort": 99999999999_i64}),
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "containerPort: invalid value: integer `99999999999`, expected a 32-bit integer"
        );
        let err =
            prepass("moor.core.v1.ServicePort", json!({"targetPort": 1.5}), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "targetPort: invalid type: floating point `1.5`, expected a 32-bit integer or a string"
        );
    }
}
