//! Field selectors, as in `kubectl get --field-selector`: a conjunction of
//! `field=value`, `field==value` and `field!=value` terms over an object's
//! fields, with the syntax of Kubernetes' `fields.ParseSelector`.
//!
//! Terms are separated by commas not preceded by a backslash. The field is
//! everything before the first operator and is taken as written; in the value,
//! `\\`, `\,` and `\=` stand for `\`, `,` and `=`, and any other backslash
//! sequence or a bare `=` is an error. Nothing is trimmed: `a = b` compares
//! the field `"a "` with `" b"`, as Kubernetes does. Empty terms are skipped,
//! so `""` and `","` select everything. Which fields exist is the caller's
//! business: see [`FieldSelector::validate_keys`].

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// How a term compares a field with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field=value` or `field!=value` condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    field: String,
    operator: Operator,
    value: String,
}

/// A conjunction of terms; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    /// Sorted by their text, as Kubernetes sorts them.
    terms: Vec<Term>,
}

/// Escapes `value` for use after a field selector operator: `\`, `,` and `=`
/// get a backslash (Kubernetes' `fields.EscapeValue`).
pub fn escape_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

// === impl Term ===

impl Term {
    /// The field, such as `status.phase`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The value, unescaped.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
        };
        write!(f, "{}{operator}{}", self.field, escape_value(&self.value))
    }
}

// === impl FieldSelector ===

impl FieldSelector {
    /// The selector that matches every object (what `""` parses to).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses selector text such as `status.phase=Running,spec.nodeName!=`.
    ///
    /// The error names the byte position of the offending term or character.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let error = |position, reason| Error::FieldSelector {
            input: input.to_owned(),
            position,
            reason,
        };
        let mut terms = Vec::new();
        for (start, text) in split_terms(input) {
            if text.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value, value_at)) = split_term(text) else {
                let reason = format!("term {text:?} has no operator, expected '=', '==' or '!='");
                return Err(error(start, reason));
            };
            let value = unescape(raw_value)
                .map_err(|(offset, reason)| error(start + value_at + offset, reason))?;
            terms.push(Term {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        terms.sort_by_cached_key(ToString::to_string);
        Ok(Self { terms })
    }

    /// Whether this selector has no terms and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms, sorted by their text.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The value `field` must equal, when a term asks for that (an index
    /// on the field can then answer instead of a scan).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator == Operator::Equals)
            .map(|t| t.value.as_str())
    }

    /// Whether an object whose fields `get` reads meets every term. A field
    /// `get` does not know compares as the empty string, as in Kubernetes.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|term| {
            let actual = get(&term.field).unwrap_or_default();
            (actual == term.value) == (term.operator == Operator::Equals)
        })
    }

    /// Fails on the first term whose field is not in `allowed`, naming the
    /// allowed ones, as the apiserver rejects a field it cannot select on.
    pub fn validate_keys(&self, allowed: &[&str]) -> Result<(), Error> {
        match self
            .terms
            .iter()
            .find(|t| !allowed.contains(&t.field.as_str()))
        {
            None => Ok(()),
            Some(term) => Err(Error::UnsupportedField {
                field: term.field.clone(),
                allowed: allowed.iter().map(|f| (*f).to_owned()).collect(),
            }),
        }
    }
}

impl FromStr for FieldSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

/// The terms of `input` with their byte offsets, split at commas that are
/// not escaped by a backslash.
fn split_terms(input: &str) -> Vec<(usize, &str)> {
    let mut terms = Vec::new();
    if input.is_empty() {
        return terms;
    }
    let (mut start, mut escaped) = (0, false);
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push((start, &input[start..i]));
            start = i + 1;
        }
    }
    terms.push((start, &input[start..]));
    terms
}

/// Splits a term at its first operator into the field, the operator, the
/// raw value and the value's offset in the term.
fn split_term(term: &str) -> Option<(&str, Operator, &str, usize)> {
    // `!=` and `==` are tried before `=` so no `=` is left on the value.
    const OPERATORS: [(&str, Operator); 3] = [
        ("!=", Operator::NotEquals),
        ("==", Operator::Equals),
        ("=", Operator::Equals),
    ];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS.iter().find_map(|&(symbol, operator)| {
            let value = rest.strip_prefix(symbol)?;
            Some((&term[..i], operator, value, i + symbol.len()))
        })
    })
}

/// Undoes [`escape_value`], or says at which byte offset and why it cannot.
fn unescape(raw: &str) -> Result<String, (usize, String)> {
    let mut value = String::with_capacity(raw.len());
    let mut escape_at = None;
    for (i, c) in raw.char_indices() {
        if let Some(at) = escape_at.take() {
            if !matches!(c, '\\' | ',' | '=') {
                return Err((at, format!("invalid escape sequence '\\{c}' in value")));
            }
            value.push(c);
            continue;
        }
        match c {
            '\\' => escape_at = Some(i),
            ',' | '=' => return Err((i, format!("unescaped '{c}' in value, write '\\{c}'"))),
            _ => value.push(c),
        }
    }
    if let Some(at) = escape_at {
        return Err((at, "value ends with an unfinished escape '\\'".to_owned()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The terms `input` parses to, as (field, operator, value).
    fn terms(input: &str) -> Vec<(String, Operator, String)> {
        let selector = FieldSelector::parse(input).unwrap();
        let terms = selector.terms().iter();
        terms
            .map(|t| (t.field().to_owned(), t.operator(), t.value().to_owned()))
            .collect()
    }

    fn term(field: &str, operator: Operator, value: &str) -> (String, Operator, String) {
        (field.to_owned(), operator, value.to_owned())
    }

    fn fails_with(input: &str, position: usize, reason: &str) {
        let expected = Error::FieldSelector {
            input: input.to_owned(),
            position,
            reason: reason.to_owned(),
        };
        assert_eq!(FieldSelector::parse(input), Err(expected), "{input:?}");
    }

    fn object(fields: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let fields: BTreeMap<String, String> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |field| fields.get(field).cloned()
    }

    fn selects(selector: &str, fields: &[(&str, &str)]) -> bool {
        FieldSelector::parse(selector)
            .unwrap()
            .matches(object(fields))
    }

    #[test]
    fn empty_terms_select_everything() {
        for input in ["", ",", ",,"] {
            let selector = FieldSelector::parse(input).unwrap();
            assert!(selector.is_empty(), "{input:?}");
            assert_eq!(selector, FieldSelector::everything());
            assert!(selector.matches(object(&[])));
        }
        assert_eq!(terms("a=b,"), [term("a", Operator::Equals, "b")]);
    }

    #[test]
    fn parses_each_operator() {
        assert_eq!(terms("a=b"), [term("a", Operator::Equals, "b")]);
        assert_eq!(terms("a==b"), [term("a", Operator::Equals, "b")]);
        assert_eq!(terms("a!=b"), [term("a", Operator::NotEquals, "b")]);
        assert_eq!(terms("a="), [term("a", Operator::Equals, "")]);
        assert_eq!(terms("a!="), [term("a", Operator::NotEquals, "")]);
    }

    #[test]
    fn parses_apiserver_fields() {
        let parsed = terms("metadata.name=web-1,spec.nodeName!=,status.phase==Running");
        assert_eq!(
            parsed,
            [
                term("metadata.name", Operator::Equals, "web-1"),
                term("spec.nodeName", Operator::NotEquals, ""),
                term("status.phase", Operator::Equals, "Running"),
            ]
        );
    }

    #[test]
    fn splits_at_the_first_operator() {
        assert_eq!(terms("a!b=c"), [term("a!b", Operator::Equals, "c")]);
        assert_eq!(terms("=b"), [term("", Operator::Equals, "b")]);
        assert_eq!(terms("!=b"), [term("", Operator::NotEquals, "b")]);
    }

    #[test]
    fn does_not_trim_whitespace() {
        assert_eq!(terms("a = b"), [term("a ", Operator::Equals, " b")]);
    }

    #[test]
    fn unescapes_values() {
        assert_eq!(
            terms(r"a=x\,y\=z\\w"),
            [term("a", Operator::Equals, r"x,y=z\w")]
        );
        assert_eq!(
            terms(r"a=\\,b=c").len(),
            2,
            r"'\\' does not escape the comma"
        );
    }

    #[test]
    fn escaped_commas_do_not_split_and_fields_stay_raw() {
        assert_eq!(terms(r"a\,b=c"), [term(r"a\,b", Operator::Equals, "c")]);
        assert_eq!(terms(r"a\=b"), [term(r"a\", Operator::Equals, "b")]);
    }

    #[test]
    fn terms_are_sorted_by_text() {
        let selector = FieldSelector::parse("b=1,a!=2,a=3").unwrap();
        assert_eq!(selector.to_string(), "a!=2,a=3,b=1");
    }

    #[test]
    fn display_round_trips_through_parse() {
        for input in [
            "a=b",
            "a==b,c!=d",
            r"a=x\,y\=z\\w,b!=\\",
            r"a\,b=c",
            "a=,b!=",
            "a = b",
            "é=ü",
        ] {
            let selector = FieldSelector::parse(input).unwrap();
            let printed = selector.to_string();
            let reparsed: FieldSelector = printed.parse().unwrap();
            assert_eq!(reparsed, selector, "{input:?} printed as {printed:?}");
        }
        assert_eq!(FieldSelector::parse("a==b").unwrap().to_string(), "a=b");
    }

    #[test]
    fn rejects_terms_without_operator() {
        let reason = "term \"a\" has no operator, expected '=', '==' or '!='";
        fails_with("a", 0, reason);
        fails_with("b=1,a", 4, reason);
        fails_with(
            " ",
            0,
            "term \" \" has no operator, expected '=', '==' or '!='",
        );
        fails_with("é=1,a", 5, reason);
    }

    #[test]
    fn rejects_bad_escapes_at_the_backslash() {
        fails_with(r"a=x\y", 3, r"invalid escape sequence '\y' in value");
        fails_with(r"b=1,a=\n", 6, r"invalid escape sequence '\n' in value");
        fails_with(r"a=x\", 3, r"value ends with an unfinished escape '\'");
    }

    #[test]
    fn rejects_unescaped_equals_in_values() {
        fails_with("a=b=c", 3, r"unescaped '=' in value, write '\='");
        fails_with("a!==b", 3, r"unescaped '=' in value, write '\='");
        fails_with("a===b", 3, r"unescaped '=' in value, write '\='");
    }

    #[test]
    fn error_message_names_input_and_position() {
        let err = FieldSelector::parse("a=1,b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to parse field selector \"a=1,b\": at position 4: term \"b\" has no \
             operator, expected '=', '==' or '!='"
        );
    }

    #[test]
    fn equals_compares_the_field() {
        assert!(selects(
            "status.phase=Running",
            &[("status.phase", "Running")]
        ));
        assert!(!selects(
            "status.phase=Running",
            &[("status.phase", "Pending")]
        ));
        assert!(!selects("status.phase=Running", &[]));
    }

    #[test]
    fn missing_fields_compare_as_empty() {
        assert!(selects("spec.nodeName=", &[]));
        assert!(selects("spec.nodeName==", &[("spec.nodeName", "")]));
        assert!(!selects("spec.nodeName!=", &[]));
        assert!(selects("spec.nodeName!=node-1", &[]));
    }

    #[test]
    fn not_equals_and_conjunction() {
        let selector = "spec.nodeName!=,status.phase!=Succeeded";
        assert!(selects(
            selector,
            &[("spec.nodeName", "n1"), ("status.phase", "Running")]
        ));
        assert!(!selects(selector, &[("status.phase", "Running")]));
        assert!(!selects(
            selector,
            &[("spec.nodeName", "n1"), ("status.phase", "Succeeded")]
        ));
    }

    #[test]
    fn matches_unescaped_values() {
        assert!(selects(r"metadata.name=a\,b", &[("metadata.name", "a,b")]));
    }

    #[test]
    fn validate_keys_accepts_allowed_fields() {
        let allowed = [
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "status.phase",
        ];
        let selector = FieldSelector::parse("spec.nodeName=n,status.phase!=Failed").unwrap();
        assert_eq!(selector.validate_keys(&allowed), Ok(()));
        assert_eq!(FieldSelector::everything().validate_keys(&[]), Ok(()));
    }

    #[test]
    fn validate_keys_names_the_field_and_the_allowed_ones() {
        let allowed = ["metadata.name", "status.phase"];
        let err = FieldSelector::parse("metadata.name=a,spec.foo=b")
            .unwrap()
            .validate_keys(&allowed)
            .unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedField {
                field: "spec.foo".to_owned(),
                allowed: vec!["metadata.name".to_owned(), "status.phase".to_owned()],
            }
        );
        assert_eq!(
            err.to_string(),
            "field label not supported: \"spec.foo\" (supported: metadata.name, status.phase)"
        );
    }

    #[test]
    fn escape_value_escapes_specials_only() {
        assert_eq!(escape_value(r"a,b=c\d"), r"a\,b\=c\\d");
        assert_eq!(escape_value("plain é"), "plain é");
        assert_eq!(escape_value(""), "");
    }
}
