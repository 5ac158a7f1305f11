//! API objects to JSON and YAML in Kubernetes' shape: camelCase names,
//! default values left out, `IntOrString` as a bare value, 64-bit integers as
//! numbers while JavaScript can hold them, timestamps in RFC 3339, and
//! apiVersion, kind, metadata, spec, status first. What is written here
//! decodes back to the same object.

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, SerializeOptions,
};
use serde::Serialize;
use serde_json::Value;

use crate::compat;
use crate::error::{Error, ErrorKind};
use crate::kinds::Kinds;
use crate::order::{Ordered, OrderedList};

/// Largest integer a JSON reader using doubles holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The object as a JSON value. apiVersion and kind are filled in for a kind
/// that lacks them. The value's key order is `serde_json::Map`'s: use
/// [`to_yaml`] or [`to_json_string`] for text in Kubernetes' order.
pub fn encode_json(message: &DynamicMessage) -> Result<Value, Error> {
    let desc = message.descriptor();
    let options = SerializeOptions::new().stringify_64_bit_integers(false);
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| encode_error(&desc, e))?;
    from_proto_json(&mut value, &desc);
    fill_type_meta(&mut value, &desc);
    Ok(value)
}

/// The object as YAML, keys in Kubernetes' order, ending in a newline.
pub fn to_yaml(message: &DynamicMessage) -> Result<String, Error> {
    let desc = message.descriptor();
    let value = encode_json(message)?;
    serde_yaml_ng::to_string(&Ordered::new(&value, &desc)).map_err(|e| encode_error(&desc, e))
}

/// The object as indented JSON, keys in Kubernetes' order, ending in a newline.
pub fn to_json_string(message: &DynamicMessage) -> Result<String, Error> {
    let desc = message.descriptor();
    let value = encode_json(message)?;
    pretty(&Ordered::new(&value, &desc)).map_err(|e| encode_error(&desc, e))
}

/// Objects as a `{"apiVersion": "v1", "kind": "List", "items": [...]}` value.
pub fn encode_list(items: &[DynamicMessage]) -> Result<Value, Error> {
    let items = items
        .iter()
        .map(encode_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }))
}

/// Objects as a YAML List, keys in Kubernetes' order.
pub fn list_to_yaml(items: &[DynamicMessage]) -> Result<String, Error> {
    let items = encode_items(items)?;
    serde_yaml_ng::to_string(&OrderedList { items: &items }).map_err(list_error)
}

/// Objects as an indented JSON List, keys in Kubernetes' order.
pub fn list_to_json_string(items: &[DynamicMessage]) -> Result<String, Error> {
    let items = encode_items(items)?;
    pretty(&OrderedList { items: &items }).map_err(list_error)
}

fn encode_items(items: &[DynamicMessage]) -> Result<Vec<(Value, MessageDescriptor)>, Error> {
    items
        .iter()
        .map(|m| Ok((encode_json(m)?, m.descriptor())))
        .collect()
}

/// Indented like `kubectl get -o json`.
fn pretty(value: &impl Serialize) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, formatter,
    ))?;
    out.push(b'\n');
    // serde_json writes UTF-8 only.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn encode_error(desc: &MessageDescriptor, reason: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Encode {
        message: desc.full_name().to_string(),
        reason: reason.to_string(),
    })
}

fn list_error(reason: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Encode {
        message: "List".to_string(),
        reason: reason.to_string(),
    })
}

fn fill_type_meta(value: &mut Value, desc: &MessageDescriptor) {
    let (Some(info), Value::Object(object)) = (Kinds::global().by_message(desc.full_name()), value)
    else {
        return;
    };
    object
        .entry("apiVersion")
        .or_insert_with(|| Value::String(info.api_version.clone()));
    object
        .entry("kind")
        .or_insert_with(|| Value::String(info.kind.clone()));
}

/// Rewrites proto3 JSON into Kubernetes' form (the inverse of the decoding
/// pre-pass): bare `IntOrString`, and 64-bit integers past 2^53 as strings.
fn from_proto_json(value: &mut Value, message: &MessageDescriptor) {
    if message.full_name() == compat::INT_OR_STRING {
        if let Value::Object(object) = value
            && let Some(bare) = object.get("intVal").or_else(|| object.get("strVal"))
        {
            *value = bare.clone();
        }
        return;
    }
    if compat::is_well_known(message) {
        return;
    }
    let Value::Object(object) = value else { return };
    for (key, item) in object.iter_mut() {
        if let Some(field) = message.get_field_by_json_name(key) {
            visit_field(item, &field);
        }
    }
}

fn visit_field(value: &mut Value, field: &FieldDescriptor) {
    let kind = field.kind();
    match value {
        Value::Object(entries) if field.is_map() => {
            if let Some(entry) = kind.as_message() {
                let value_kind = entry.map_entry_value_field().kind();
                entries
                    .values_mut()
                    .for_each(|v| visit_single(v, &value_kind));
            }
        }
        Value::Array(items) if field.is_list() => {
            items.iter_mut().for_each(|v| visit_single(v, &kind))
        }
        _ => visit_single(value, &kind),
    }
}

fn visit_single(value: &mut Value, kind: &Kind) {
    match kind {
        Kind::Message(message) => from_proto_json(value, message),
        kind if compat::is_64_bit(kind) => {
            if let Value::Number(n) = value {
                let safe = n
                    .as_i64()
                    .map(i64::unsigned_abs)
                    .or(n.as_u64())
                    .is_some_and(|v| v <= MAX_SAFE_INTEGER);
                if !safe {
                    *value = Value::String(n.to_string());
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeOptions, decode_message};
    use crate::error::Path;
    use serde_json::json;

    fn message(name: &str, value: Value) -> DynamicMessage {
        let desc = moor_api::descriptor_pool()
            .get_message_by_name(name)
            .unwrap();
        decode_message(&desc, value, &Path::root(), &DecodeOptions::default()).unwrap()
    }

    #[test]
    fn kubernetes_shape() {
        let pod = message(
            "moor.core.v1.Pod",
            json!({
                "metadata": {"name": "web", "generation": "7", "creationTimestamp": "2026-11-26T22:43:35Z",
                             "deletionGracePeriodSeconds": 9007199254740993_i64},
                "spec": {"containers": [{"name": "c", "livenessProbe": {"tcpSocket": {"port": 8080},
                         "httpGet": {"port": "http"}}}], "hostNetwork": false},
            }),
        );
        let value = encode_json(&pod).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "generation": 7, "creationTimestamp": "2026-11-26T22:43:35Z",
                             "deletionGracePeriodSeconds": "9007199254740993"},
                "spec": {"containers": [{"name": "c", "livenessProbe": {"tcpSocket": {"port": 8080},
                         "httpGet": {"port": "http"}}}]},
            })
        );
    }

    #[test]
    fn yaml_and_json_text_are_ordered() {
        let cm = message(
            "moor.core.v1.ConfigMap",
            json!({"kind": "ConfigMap", "apiVersion": "v1",
            "data": {"b": "1", "a": "x"}, "metadata": {"name": "cfg"}}),
        );
        let yaml = to_yaml(&cm).unwrap();
        assert_eq!(
            yaml,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: x\n  b: '1'\n"
        );
        let json = to_json_string(&cm).unwrap();
        assert!(
            json.starts_with("{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"ConfigMap\",\n"),
            "{json}"
        );
        let list = list_to_yaml(std::slice::from_ref(&cm)).unwrap();
        assert!(
            list.starts_with(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
            ),
            "{list}"
        );
    }
}
