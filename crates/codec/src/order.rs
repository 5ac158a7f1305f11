//! Key order of written objects, for people reading `get -o yaml`:
//! apiVersion, kind, metadata, spec and status first, then the other fields
//! in proto field order (which follows Kubernetes' own), map keys sorted.
//! `serde_json::Map` does not keep insertion order, so the order is applied
//! while serializing, from the descriptors.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::compat;

/// Fields written first, in this order, wherever a message has them.
const FIRST: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// A JSON value of a message, serialized with its keys in order.
pub(crate) struct Ordered<'a> {
    value: &'a Value,
    shape: Shape,
}

/// What a value holds, as far as key order cares.
#[derive(Clone)]
enum Shape {
    /// Keys in JSON map order.
    Plain,
    /// Fields of a message.
    Message(MessageDescriptor),
    /// Items of a list.
    List(Box<Shape>),
    /// Values of a map, keys sorted.
    Map(Box<Shape>),
}

/// A List of objects, serialized with each item in order.
pub(crate) struct OrderedList<'a> {
    /// The items' JSON values and messages.
    pub items: &'a [(Value, MessageDescriptor)],
}

// === impl Ordered ===

impl<'a> Ordered<'a> {
    /// `value`, the JSON form of a `message`.
    pub(crate) fn new(value: &'a Value, message: &MessageDescriptor) -> Self {
        Self {
            value,
            shape: message_shape(message),
        }
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (&self.shape, self.value) {
            (Shape::Message(message), Value::Object(object)) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for field in ordered_fields(message) {
                    if let Some((key, value)) = object.get_key_value(field.json_name()) {
                        map.serialize_entry(
                            key,
                            &Ordered {
                                value,
                                shape: field_shape(&field),
                            },
                        )?;
                    }
                }
                // Keys the message does not know (none from our encoder).
                for (key, value) in object {
                    if message.get_field_by_json_name(key).is_none() {
                        map.serialize_entry(key, value)?;
                    }
                }
                map.end()
            }
            (Shape::List(item), Value::Array(items)) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    seq.serialize_element(&Ordered {
                        value,
                        shape: (**item).clone(),
                    })?;
                }
                seq.end()
            }
            (Shape::Map(item), Value::Object(object)) => {
                let mut entries: Vec<_> = object.iter().collect();
                entries.sort_by_key(|(key, _)| *key);
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(
                        key,
                        &Ordered {
                            value,
                            shape: (**item).clone(),
                        },
                    )?;
                }
                map.end()
            }
            _ => self.value.serialize(serializer),
        }
    }
}

// === impl OrderedList ===

impl Serialize for OrderedList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a [(Value, MessageDescriptor)]);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(
                    self.0
                        .iter()
                        .map(|(value, message)| Ordered::new(value, message)),
                )
            }
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("apiVersion", "v1")?;
        map.serialize_entry("kind", "List")?;
        map.serialize_entry("items", &Items(self.items))?;
        map.end()
    }
}

fn message_shape(message: &MessageDescriptor) -> Shape {
    if compat::is_well_known(message) || message.full_name() == compat::INT_OR_STRING {
        Shape::Plain
    } else {
        Shape::Message(message.clone())
    }
}

fn kind_shape(kind: Kind) -> Shape {
    match kind {
        Kind::Message(message) => message_shape(&message),
        _ => Shape::Plain,
    }
}

fn field_shape(field: &FieldDescriptor) -> Shape {
    let kind = field.kind();
    if field.is_map() {
        let value = kind
            .as_message()
            .map(|entry| entry.map_entry_value_field().kind());
        Shape::Map(Box::new(value.map_or(Shape::Plain, kind_shape)))
    } else if field.is_list() {
        Shape::List(Box::new(kind_shape(kind)))
    } else {
        kind_shape(kind)
    }
}

fn ordered_fields(message: &MessageDescriptor) -> Vec<FieldDescriptor> {
    let mut fields: Vec<_> = message.fields().collect();
    let rank = |f: &FieldDescriptor| {
        FIRST
            .iter()
            .position(|n| *n == f.json_name())
            .unwrap_or(FIRST.len())
    };
    fields.sort_by_key(|f| (rank(f), f.number()));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_fields_first_then_field_order_and_sorted_maps() {
        let desc = moor_api::descriptor_pool()
            .get_message_by_name("moor.core.v1.ConfigMap")
            .unwrap();
        let value = json!({
            "data": {"z": "1", "a": "2"},
            "metadata": {"name": "x", "labels": {"b": "1", "a": "2"}},
            "kind": "ConfigMap",
            "apiVersion": "v1",
        });
        let text = serde_json::to_string(&Ordered::new(&value, &desc)).unwrap();
        assert_eq!(
            text,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"2","b":"1"}},"data":{"a":"2","z":"1"}}"#
        );
    }

    #[test]
    fn nested_messages_follow_field_numbers() {
        let desc = moor_api::descriptor_pool()
            .get_message_by_name("moor.core.v1.Container")
            .unwrap();
        let value =
            json!({"ports": [{"protocol": "TCP", "containerPort": 80}], "image": "i", "name": "n"});
        let text = serde_json::to_string(&Ordered::new(&value, &desc)).unwrap();
        assert_eq!(
            text,
            r#"{"name":"n","image":"i","ports":[{"containerPort":80,"protocol":"TCP"}]}"#
        );
    }
}
