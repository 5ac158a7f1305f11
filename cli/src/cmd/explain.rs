//! `explain KIND[.field.path]`: the kind's or field's documentation, taken
//! from the comments of proto/ kept in the descriptors' source info.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::cmd::{kind, out};
use crate::error::{Error, Result};

/// Runs `explain`.
pub fn run(path: &str) -> Result<()> {
    out(&explain(path)?)
}

/// The text `explain` prints.
pub fn explain(path: &str) -> Result<String> {
    let mut parts = path.split('.');
    let kind_name = parts.next().unwrap_or_default();
    let info = kind(kind_name)?;
    let mut message = info.message.clone();
    let mut field: Option<FieldDescriptor> = None;
    let mut walked = Vec::new();
    for part in parts {
        if let Some(f) = &field {
            message = f.kind().as_message().cloned().ok_or_else(|| {
                Error::Usage(format!(
                    "field {:?} of {} has no fields",
                    walked.join("."),
                    info.kind
                ))
            })?;
        }
        let next = message
            .get_field_by_json_name(part)
            .or_else(|| message.get_field_by_name(part))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "field {part:?} does not exist in {} ({})",
                    message.name(),
                    if walked.is_empty() {
                        info.kind.clone()
                    } else {
                        walked.join(".")
                    }
                ))
            })?;
        walked.push(part.to_string());
        field = Some(next);
    }
    let mut text = format!(
        "KIND:       {}\nVERSION:    {}\n\n",
        info.kind, info.api_version
    );
    let fields_of = match &field {
        Some(f) => {
            text.push_str(&format!("FIELD: {} <{}>\n\n", f.json_name(), type_name(f)));
            text.push_str(&format!("DESCRIPTION:\n{}\n", indent(&field_comment(f), 4)));
            f.kind()
                .as_message()
                .cloned()
                .filter(|m| !m.is_map_entry() && !is_opaque(m))
        }
        None => {
            text.push_str(&format!(
                "DESCRIPTION:\n{}\n",
                indent(&message_comment(&message), 4)
            ));
            Some(message)
        }
    };
    if let Some(message) = fields_of {
        text.push_str("\nFIELDS:\n");
        for f in message.fields() {
            text.push_str(&format!("  {}\t<{}>\n", f.json_name(), type_name(&f)));
            let comment = field_comment(&f);
            if !comment.is_empty() {
                text.push_str(&indent(&comment, 4));
                text.push('\n');
            }
            text.push('\n');
        }
    }
    Ok(text)
}

/// Messages shown as a scalar: timestamps, IntOrString.
fn is_opaque(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.protobuf.")
        || message.full_name() == "moor.meta.v1.IntOrString"
}

/// The field's type in kubectl's words: string, integer, boolean, Object
/// names, []T, map[string]T.
fn type_name(field: &FieldDescriptor) -> String {
    let kind = field.kind();
    if field.is_map()
        && let Some(entry) = kind.as_message()
    {
        return format!(
            "map[string]{}",
            scalar(&entry.map_entry_value_field().kind())
        );
    }
    let name = scalar(&kind);
    if field.is_list() {
        format!("[]{name}")
    } else {
        name
    }
}

fn scalar(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => "Time".to_string(),
        Kind::Message(m) => m.name().to_string(),
        Kind::Enum(e) => e.name().to_string(),
        Kind::Bool => "boolean".to_string(),
        Kind::String => "string".to_string(),
        Kind::Bytes => "[]byte".to_string(),
        Kind::Double | Kind::Float => "number".to_string(),
        _ => "integer".to_string(),
    }
}

fn message_comment(message: &MessageDescriptor) -> String {
    comment(
        message.parent_file().file_descriptor_proto(),
        message.path(),
    )
}

fn field_comment(field: &FieldDescriptor) -> String {
    comment(field.parent_file().file_descriptor_proto(), field.path())
}

/// The leading comment of the element at `path` in the file's source info.
fn comment(file: &prost_types::FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.clone())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_kinds_and_fields() {
        let text = explain("pods").unwrap();
        assert!(
            text.starts_with("KIND:       Pod\nVERSION:    v1\n"),
            "{text}"
        );
        assert!(text.contains("A group of containers"), "{text}");
        assert!(text.contains("  metadata\t<ObjectMeta>"), "{text}");
        let text = explain("po.spec.containers").unwrap();
        assert!(text.contains("FIELD: containers <[]Container>"), "{text}");
        assert!(text.contains("  image\t<string>"), "{text}");
        let err = explain("pods.spec.nope").unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }
}
