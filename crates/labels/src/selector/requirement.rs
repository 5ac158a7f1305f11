//! One condition of a label selector: a key, an operator and values, checked
//! as Kubernetes' `labels.NewRequirement` checks them.

use std::fmt;
use std::str::FromStr;

use super::Labels;
use crate::{Error, validation};

/// How a requirement tests a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present with this value.
    Equals,
    /// `key!=value`: the label is absent, or present with another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent, or present with none of the
    /// values.
    NotIn,
    /// `key`: the label is present, whatever its value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>1`: the label is present and its value is an integer greater
    /// than the requirement's.
    Gt,
    /// `key<1`: the label is present and its value is an integer less than
    /// the requirement's.
    Lt,
}

/// One condition on one label; build it with [`Requirement::new`] or by
/// parsing a [`Selector`](super::Selector).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and free of duplicates: `in` and `notin` take a set.
    values: Vec<String>,
}

// === impl Operator ===

impl FromStr for Operator {
    type Err = Error;

    /// Reads the operator names of a `matchExpressions` entry (`In`,
    /// `NotIn`, `Exists`, `DoesNotExist`) and of node selector terms (`Gt`,
    /// `Lt`). Equality has no such name: `matchLabels` expresses it.
    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "In" => Ok(Self::In),
            "NotIn" => Ok(Self::NotIn),
            "Exists" => Ok(Self::Exists),
            "DoesNotExist" => Ok(Self::DoesNotExist),
            "Gt" => Ok(Self::Gt),
            "Lt" => Ok(Self::Lt),
            _ => Err(Error::UnknownOperator(name.to_owned())),
        }
    }
}

// === impl Requirement ===

impl Requirement {
    /// A requirement on `key`, checked as Kubernetes checks one: the key must
    /// be a qualified name and every value a label value; `In` and `NotIn`
    /// need at least one value, `Equals` and `NotEquals` exactly one,
    /// `Exists` and `DoesNotExist` none, and `Gt` and `Lt` exactly one that
    /// is a 64-bit integer.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        mut values: Vec<String>,
    ) -> Result<Self, Error> {
        let key = key.into();
        if let Err(reason) = validation::qualified_name(&key) {
            return Err(Error::InvalidKey { key, reason });
        }
        if let Some(reason) = values_problem(operator, &values) {
            return Err(Error::InvalidValues {
                key,
                operator,
                values,
                reason,
            });
        }
        for value in &values {
            if let Err(reason) = validation::label_value(value) {
                return Err(Error::InvalidValue {
                    key,
                    value: value.clone(),
                    reason,
                });
            }
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates; empty for `Exists` and
    /// `DoesNotExist`.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` meets this requirement. As in Kubernetes, `NotEquals`
    /// and `NotIn` hold when the label is absent, and `Gt` and `Lt` never
    /// hold for a value that is not an integer.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.has_value(v)),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(|v| self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let actual = value.and_then(|v| v.parse::<i64>().ok());
                let bound = self.values.first().and_then(|v| v.parse::<i64>().ok());
                match (actual, bound) {
                    (Some(actual), Some(bound)) if self.operator == Operator::Gt => actual > bound,
                    (Some(actual), Some(bound)) => actual < bound,
                    _ => false,
                }
            }
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }
}

/// What is wrong with the number or form of `values` for `operator`, in
/// Kubernetes' words.
fn values_problem(operator: Operator, values: &[String]) -> Option<&'static str> {
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        Operator::Equals | Operator::NotEquals if values.len() != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::Gt | Operator::Lt if values.len() != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        Operator::Gt | Operator::Lt if values.iter().any(|v| v.parse::<i64>().is_err()) => {
            Some("for 'Gt', 'Lt' operators, the value must be an integer")
        }
        _ => None,
    }
}

impl fmt::Display for Requirement {
    /// Kubernetes' canonical form: `key=v`, `key!=v`, `key in (a,b)`,
    /// `key notin (a,b)`, `key`, `!key`, `key>1`, `key<1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map_or("", String::as_str);
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Gt => write!(f, "{key}>{first}"),
            Operator::Lt => write!(f, "{key}<{first}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn values(vs: &[&str]) -> Vec<String> {
        vs.iter().map(|v| (*v).to_owned()).collect()
    }

    fn req(key: &str, operator: Operator, vs: &[&str]) -> Result<Requirement, Error> {
        Requirement::new(key, operator, values(vs))
    }

    fn reason(result: Result<Requirement, Error>) -> &'static str {
        match result {
            Err(Error::InvalidValues { reason, .. }) => reason,
            other => panic!("expected InvalidValues, got {other:?}"),
        }
    }

    #[test]
    fn new_accepts_each_operator_with_the_right_values() {
        assert!(req("a", Operator::Equals, &["b"]).is_ok());
        assert!(req("a", Operator::NotEquals, &[""]).is_ok());
        assert!(req("a", Operator::In, &["b", "c"]).is_ok());
        assert!(req("a", Operator::NotIn, &[""]).is_ok());
        assert!(req("a", Operator::Exists, &[]).is_ok());
        assert!(req("a", Operator::DoesNotExist, &[]).is_ok());
        assert!(
            req("a", Operator::Gt, &["-1"]).is_err(),
            "'-1' is not a label value"
        );
        assert!(req("a", Operator::Gt, &["10"]).is_ok());
        assert!(req("a", Operator::Lt, &["0"]).is_ok());
    }

    #[test]
    fn new_rejects_wrong_value_counts() {
        let in_empty = "for 'in', 'notin' operators, values set can't be empty";
        assert_eq!(reason(req("a", Operator::In, &[])), in_empty);
        assert_eq!(reason(req("a", Operator::NotIn, &[])), in_empty);
        let exact = "exact-match compatibility requires one single value";
        assert_eq!(reason(req("a", Operator::Equals, &[])), exact);
        assert_eq!(reason(req("a", Operator::NotEquals, &["b", "c"])), exact);
        assert_eq!(reason(req("a", Operator::Equals, &["b", "b"])), exact);
        let none = "values set must be empty for exists and does not exist";
        assert_eq!(reason(req("a", Operator::Exists, &["b"])), none);
        assert_eq!(reason(req("a", Operator::DoesNotExist, &[""])), none);
        let one = "for 'Gt', 'Lt' operators, exactly one value is required";
        assert_eq!(reason(req("a", Operator::Gt, &[])), one);
        assert_eq!(reason(req("a", Operator::Lt, &["1", "2"])), one);
    }

    #[test]
    fn new_requires_an_i64_for_gt_and_lt() {
        let integer = "for 'Gt', 'Lt' operators, the value must be an integer";
        assert_eq!(reason(req("a", Operator::Gt, &["x"])), integer);
        assert_eq!(reason(req("a", Operator::Lt, &[""])), integer);
        assert_eq!(reason(req("a", Operator::Gt, &["1.5"])), integer);
        assert_eq!(
            reason(req("a", Operator::Gt, &["9223372036854775808"])),
            integer
        );
        assert!(req("a", Operator::Gt, &["9223372036854775807"]).is_ok());
    }

    #[test]
    fn new_validates_the_key_first() {
        let err = req("-a", Operator::In, &[]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidKey { key, .. } if key == "-a"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid label key \"-a\": name part must")
        );
    }

    #[test]
    fn new_validates_values() {
        let err = req("a", Operator::In, &["ok", "not ok"]).unwrap_err();
        let Error::InvalidValue { key, value, .. } = &err else {
            panic!("expected InvalidValue, got {err:?}");
        };
        assert_eq!((key.as_str(), value.as_str()), ("a", "not ok"));
        let long = "v".repeat(64);
        assert!(req("a", Operator::Equals, &[&long]).is_err());
        assert!(req("a", Operator::Equals, &[&long[..63]]).is_ok());
    }

    #[test]
    fn new_sorts_and_dedups_values() {
        let r = req("a", Operator::In, &["c", "a", "b", "a"]).unwrap();
        assert_eq!(r.values(), ["a", "b", "c"]);
        assert_eq!(r.key(), "a");
        assert_eq!(r.operator(), Operator::In);
    }

    #[test]
    fn invalid_values_message_names_key_and_operator() {
        let err = req("a", Operator::Gt, &["x"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid values [\"x\"] for key \"a\" with operator Gt: for 'Gt', 'Lt' operators, \
             the value must be an integer"
        );
    }

    #[test]
    fn display_uses_selector_syntax() {
        let cases = [
            (req("a", Operator::Equals, &["b"]), "a=b"),
            (req("a", Operator::NotEquals, &["b"]), "a!=b"),
            (req("a", Operator::In, &["c", "b"]), "a in (b,c)"),
            (req("a", Operator::NotIn, &["b"]), "a notin (b)"),
            (req("a", Operator::In, &[""]), "a in ()"),
            (req("a", Operator::Exists, &[]), "a"),
            (req("a", Operator::DoesNotExist, &[]), "!a"),
            (req("a", Operator::Gt, &["1"]), "a>1"),
            (req("a", Operator::Lt, &["1"]), "a<1"),
        ];
        for (r, text) in cases {
            assert_eq!(r.unwrap().to_string(), text);
        }
    }

    #[test]
    fn matches_each_operator() {
        let labels: BTreeMap<String, String> = [("a", "1"), ("e", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let yes = |op, key: &str, vs: &[&str]| req(key, op, vs).unwrap().matches(&labels);
        assert!(yes(Operator::Equals, "a", &["1"]));
        assert!(!yes(Operator::Equals, "a", &["2"]));
        assert!(yes(Operator::Equals, "e", &[""]));
        assert!(!yes(Operator::Equals, "x", &[""]));
        assert!(yes(Operator::NotEquals, "a", &["2"]));
        assert!(yes(Operator::NotEquals, "x", &["2"]));
        assert!(!yes(Operator::NotEquals, "a", &["1"]));
        assert!(yes(Operator::In, "a", &["0", "1"]));
        assert!(!yes(Operator::In, "x", &["1"]));
        assert!(yes(Operator::NotIn, "x", &["1"]));
        assert!(!yes(Operator::NotIn, "a", &["1", "2"]));
        assert!(yes(Operator::Exists, "e", &[]));
        assert!(!yes(Operator::Exists, "x", &[]));
        assert!(yes(Operator::DoesNotExist, "x", &[]));
        assert!(!yes(Operator::DoesNotExist, "e", &[]));
        assert!(yes(Operator::Gt, "a", &["0"]));
        assert!(!yes(Operator::Gt, "e", &["0"]), "'' is not an integer");
        assert!(yes(Operator::Lt, "a", &["2"]));
        assert!(!yes(Operator::Lt, "x", &["2"]));
    }

    #[test]
    fn operator_from_api_names() {
        let names = [
            ("In", Operator::In),
            ("NotIn", Operator::NotIn),
            ("Exists", Operator::Exists),
            ("DoesNotExist", Operator::DoesNotExist),
            ("Gt", Operator::Gt),
            ("Lt", Operator::Lt),
        ];
        for (name, operator) in names {
            assert_eq!(name.parse::<Operator>(), Ok(operator));
        }
        for bad in ["in", "Equals", "=", ""] {
            assert_eq!(
                bad.parse::<Operator>(),
                Err(Error::UnknownOperator(bad.to_owned()))
            );
        }
        assert_eq!(
            Error::UnknownOperator("in".into()).to_string(),
            "\"in\" is not a valid label selector operator (expected In, NotIn, Exists, \
             DoesNotExist, Gt or Lt)"
        );
    }
}
