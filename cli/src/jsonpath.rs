//! The part of kubectl's JSONPath that people use: paths such as
//! `.spec.containers[0].image`, `[*]` and `['a.b']` steps, templates with
//! `{...}` blocks, `{"\n"}` literals and `{range ...}{end}`.

use serde_json::Value;

use crate::error::{Error, Result};

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Path(String),
    Range(String, Vec<Piece>),
}

/// The values at `path` (leading `$` and `.` optional); empty when absent.
pub fn eval<'a>(value: &'a Value, path: &str) -> Result<Vec<&'a Value>> {
    let steps = parse_path(path)?;
    let mut current = vec![value];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match (step, v) {
                (Step::Key(k), Value::Object(map)) => next.extend(map.get(k)),
                (Step::Index(i), Value::Array(items)) => next.extend(items.get(*i)),
                (Step::All, Value::Array(items)) => next.extend(items.iter()),
                (Step::All, Value::Object(map)) => next.extend(map.values()),
                _ => {}
            }
        }
        current = next;
    }
    Ok(current)
}

/// A value as text: strings bare, everything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders a kubectl JSONPath template such as `{.metadata.name}` or
/// `{range .items[*]}{.metadata.name}{"\n"}{end}`.
pub fn render(template: &str, value: &Value) -> Result<String> {
    let pieces = parse_template(template)?;
    let mut out = String::new();
    render_pieces(&pieces, value, &mut out)?;
    Ok(out)
}

fn render_pieces(pieces: &[Piece], value: &Value, out: &mut String) -> Result<()> {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Path(path) => {
                let values: Vec<String> = eval(value, path)?.into_iter().map(text).collect();
                out.push_str(&values.join(" "));
            }
            Piece::Range(path, body) => {
                for item in eval(value, path)? {
                    render_pieces(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn parse_template(template: &str) -> Result<Vec<Piece>> {
    let mut stack: Vec<(String, Vec<Piece>)> = vec![(String::new(), Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            push(&mut stack, Piece::Text(rest.to_string()));
            break;
        };
        if open > 0 {
            push(&mut stack, Piece::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| bad(template, "unclosed {"))?;
        let block = rest[open + 1..open + close].trim();
        rest = &rest[open + close + 1..];
        if let Some(literal) = block.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
            let literal = literal.replace("\\n", "\n").replace("\\t", "\t");
            push(&mut stack, Piece::Text(literal));
        } else if let Some(path) = block.strip_prefix("range ") {
            stack.push((path.trim().to_string(), Vec::new()));
        } else if block == "end" {
            let (path, body) = stack
                .pop()
                .filter(|_| !stack.is_empty())
                .ok_or_else(|| bad(template, "{end} without {range}"))?;
            push(&mut stack, Piece::Range(path, body));
        } else {
            parse_path(block)?;
            push(&mut stack, Piece::Path(block.to_string()));
        }
    }
    if stack.len() != 1 {
        return Err(bad(template, "{range} without {end}"));
    }
    Ok(stack.pop().map(|(_, pieces)| pieces).unwrap_or_default())
}

fn push(stack: &mut [(String, Vec<Piece>)], piece: Piece) {
    if let Some((_, pieces)) = stack.last_mut() {
        pieces.push(piece);
    }
}

fn parse_path(path: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path.trim().strip_prefix('$').unwrap_or(path.trim());
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end > 0 {
                steps.push(Step::Key(after[..end].to_string()));
            }
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| bad(path, "unclosed ["))?;
            let inner = after[..end].trim();
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(key) = quoted(inner) {
                Step::Key(key.to_string())
            } else {
                Step::Index(inner.parse().map_err(|_| bad(path, "bad index"))?)
            });
            rest = &after[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Ok(steps)
}

fn quoted(s: &str) -> Option<&str> {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn bad(expr: &str, why: &str) -> Error {
    Error::Usage(format!("bad JSONPath {expr:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_templates() {
        let v = json!({"items": [
            {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}}},
            {"metadata": {"name": "b"}}]});
        let names: Vec<String> = eval(&v, ".items[*].metadata.name")
            .unwrap()
            .into_iter()
            .map(text)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            render("{.items[0].metadata.labels['app.kubernetes.io/name']}", &v).unwrap(),
            "x"
        );
        assert_eq!(
            render(r#"{range .items[*]}{.metadata.name}{"\n"}{end}"#, &v).unwrap(),
            "a\nb\n"
        );
        assert_eq!(render("n={.items[*].metadata.name}", &v).unwrap(), "n=a b");
        assert!(render("{range .items}", &v).is_err());
        assert!(eval(&v, ".missing.deeper").unwrap().is_empty());
    }
}
