//! Text to JSON values: a YAML stream (documents separated by `---`) or a
//! stream of JSON objects, one `serde_json::Value` per non-empty document,
//! numbered by position in the file.

use serde::Deserialize;
use serde::de::Unexpected;

use crate::error::{Error, ErrorKind, Path};

/// One non-empty document of a file, as a JSON value.
#[derive(Debug)]
pub(crate) struct RawDocument {
    /// 1-based number of the document in the file (empty ones count).
    pub index: usize,
    /// The document.
    pub value: serde_json::Value,
}

/// Splits `text` into documents: JSON when it starts with `{`, else YAML.
pub(crate) fn parse(text: &str) -> Result<Vec<RawDocument>, Error> {
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_yaml(text)
    }
}

fn parse_json(text: &str) -> Result<Vec<RawDocument>, Error> {
    let mut documents = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for (i, value) in stream.enumerate() {
        let index = i + 1;
        let value = value.map_err(|e| syntax("json", e.to_string()).in_document(index))?;
        if !value.is_null() {
            documents.push(RawDocument { index, value });
        }
    }
    Ok(documents)
}

fn parse_yaml(text: &str) -> Result<Vec<RawDocument>, Error> {
    let mut documents = Vec::new();
    // After a parse error the iterator repeats the error forever: the `?`
    // below leaves the loop at the first one.
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let in_doc = |e: serde_yaml_ng::Error| syntax("yaml", e.to_string()).in_document(index);
        let mut value = serde_yaml_ng::Value::deserialize(document).map_err(in_doc)?;
        value.apply_merge().map_err(in_doc)?;
        if value.is_null() {
            continue;
        }
        let value = yaml_to_json(value, &Path::root()).map_err(|e| e.in_document(index))?;
        documents.push(RawDocument { index, value });
    }
    Ok(documents)
}

fn syntax(format: &'static str, message: String) -> Error {
    Error::new(ErrorKind::Syntax { format, message })
}

/// Converts a YAML value to JSON, rejecting what JSON cannot hold: keys that
/// are not strings, and NaN or infinite numbers. Tags are dropped.
fn yaml_to_json(value: serde_yaml_ng::Value, path: &Path) -> Result<serde_json::Value, Error> {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => number(&n).ok_or_else(|| {
            Error::new(ErrorKind::InvalidType {
                found: format!("number {n}"),
                expected: "a finite number",
            })
            .at(path.clone())
        })?,
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &path.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut object = serde_json::Map::new();
            for (key, value) in mapping {
                let Y::String(key) = key else {
                    let found = describe_key(&key);
                    return Err(Error::new(ErrorKind::NonStringKey { found }).at(path.clone()));
                };
                let value = yaml_to_json(value, &path.key(&key))?;
                object.insert(key, value);
            }
            J::Object(object)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value, path)?,
    })
}

fn number(n: &serde_yaml_ng::Number) -> Option<serde_json::Value> {
    if let Some(i) = n.as_i64() {
        Some(i.into())
    } else if let Some(u) = n.as_u64() {
        Some(u.into())
    } else {
        serde_json::Number::from_f64(n.as_f64()?).map(serde_json::Value::Number)
    }
}

fn describe_key(key: &serde_yaml_ng::Value) -> String {
    use serde_yaml_ng::Value as Y;
    let described = match key {
        Y::Null => "null".to_string(),
        Y::Bool(b) => Unexpected::Bool(*b).to_string(),
        Y::Number(n) => format!("number {n}"),
        Y::String(s) => Unexpected::Str(s).to_string(),
        Y::Sequence(_) => return "a sequence".to_string(),
        Y::Mapping(_) => return "a mapping".to_string(),
        Y::Tagged(tagged) => return describe_key(&tagged.value),
    };
    format!("{described} (quote it)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(text: &str) -> Vec<(usize, serde_json::Value)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|d| (d.index, d.value))
            .collect()
    }

    #[test]
    fn yaml_documents_are_numbered_and_empty_ones_skipped() {
        let text = "---\na: 1\n---\n# only a comment\n---\nb: [x, 2]\n---\n";
        assert_eq!(
            values(text),
            [(1, json!({"a": 1})), (3, json!({"b": ["x", 2]}))]
        );
        assert!(values("").is_empty());
        assert!(values("# nothing\n").is_empty());
    }

    #[test]
    fn json_stream() {
        let text = r#"{"a": 1} {"b": "two"}"#;
        assert_eq!(
            values(text),
            [(1, json!({"a": 1})), (2, json!({"b": "two"}))]
        );
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n";
        assert_eq!(values(text)[0].1["other"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn non_string_keys_are_rejected_with_a_path() {
        let err = parse("---\n---\ndata:\n  items:\n  - 80: http\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2: data.items[0]: map keys must be strings, found number 80 (quote it)"
        );
    }

    #[test]
    fn syntax_errors_name_the_document() {
        let err = parse("a: 1\n---\nb: [1, 2\n").unwrap_err();
        assert_eq!(err.document, Some(2), "{err}");
        assert!(
            err.to_string().starts_with("document 2: invalid yaml: "),
            "{err}"
        );
        let err = parse(r#"{"a": 1} {"b": }"#).unwrap_err();
        assert!(
            err.to_string().starts_with("document 2: invalid json: "),
            "{err}"
        );
    }
}
