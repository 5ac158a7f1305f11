//! Label selectors: which objects a Service, a ReplicaSet or
//! `kubectl get -l` picks by their labels, with the syntax and semantics of
//! `k8s.io/apimachinery/pkg/labels`.
//!
//! A [`Selector`] is a conjunction of [`Requirement`]s, kept sorted by key
//! (stably, as Kubernetes sorts them), so equal selectors print alike and
//! `Display` output parses back to an equal selector. The empty selector
//! selects everything.

mod parse;
mod requirement;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use crate::Error;

pub use requirement::{Operator, Requirement};

/// Read access to an object's labels, so selectors work on any map.
pub trait Labels {
    /// The value of the label `key`, or `None` when the object has no such
    /// label (which is not the same as an empty value).
    fn get(&self, key: &str) -> Option<&str>;
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

// === impl Labels ===

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

// === impl Selector ===

impl Selector {
    /// The selector that matches every object (what `""` parses to).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses selector text such as `app=web,tier in (front,back),!canary`.
    ///
    /// Keys must be qualified names and values label values; the error names
    /// the byte position of the offending token and what was expected there.
    pub fn parse(input: &str) -> Result<Self, Error> {
        parse::parse(input)
    }

    /// The selector requiring all of `requirements`, such as those built
    /// from a `LabelSelector`'s `matchLabels` and `matchExpressions`.
    pub fn new(requirements: impl IntoIterator<Item = Requirement>) -> Self {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        // Stable, so requirements on one key keep their given order.
        requirements.sort_by(|a, b| a.key().cmp(b.key()));
        Self { requirements }
    }

    /// The selector requiring each `key=value` pair, as a `matchLabels` map
    /// (or a ReplicaSet's plain `selector`) means.
    ///
    /// Fails on the first key or value that is not valid.
    pub fn from_match_labels<I, K, V>(labels: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let requirements = labels
            .into_iter()
            .map(|(key, value)| Requirement::new(key, Operator::Equals, vec![value.into()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(requirements))
    }

    /// Whether this selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` meets every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for Selector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selects(selector: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(selector).unwrap().matches(&labels(pairs))
    }

    #[test]
    fn empty_selector_matches_everything() {
        let everything = Selector::parse("").unwrap();
        assert!(everything.is_empty());
        assert_eq!(everything, Selector::everything());
        assert!(everything.matches(&labels(&[])));
        assert!(everything.matches(&labels(&[("a", "b")])));
        assert_eq!(everything.to_string(), "");
    }

    #[test]
    fn whitespace_only_is_the_empty_selector() {
        assert!(Selector::parse(" \t\r\n").unwrap().is_empty());
    }

    #[test]
    fn equality_needs_the_key_present_with_that_value() {
        assert!(selects("a=b", &[("a", "b")]));
        assert!(selects("a==b", &[("a", "b"), ("c", "d")]));
        assert!(!selects("a=b", &[("a", "c")]));
        assert!(!selects("a=b", &[]));
        assert!(!selects("a=b", &[("A", "b")]));
    }

    #[test]
    fn empty_value_differs_from_absent_key() {
        assert!(selects("a=", &[("a", "")]));
        assert!(!selects("a=", &[]));
        assert!(selects("a!=", &[]));
        assert!(!selects("a!=", &[("a", "")]));
        assert!(selects("a in ()", &[("a", "")]));
        assert!(!selects("a in ()", &[]));
    }

    #[test]
    fn not_equals_matches_when_the_key_is_absent() {
        assert!(selects("a!=b", &[]));
        assert!(selects("a!=b", &[("a", "c")]));
        assert!(!selects("a!=b", &[("a", "b")]));
    }

    #[test]
    fn in_needs_one_of_the_values() {
        assert!(selects("a in (b,c)", &[("a", "c")]));
        assert!(!selects("a in (b,c)", &[("a", "d")]));
        assert!(!selects("a in (b,c)", &[]));
    }

    #[test]
    fn not_in_matches_when_the_key_is_absent() {
        assert!(selects("a notin (b,c)", &[]));
        assert!(selects("a notin (b,c)", &[("a", "d")]));
        assert!(!selects("a notin (b,c)", &[("a", "b")]));
    }

    #[test]
    fn exists_and_does_not_exist() {
        assert!(selects("a", &[("a", "")]));
        assert!(!selects("a", &[("b", "")]));
        assert!(selects("!a", &[("b", "")]));
        assert!(!selects("!a", &[("a", "x")]));
    }

    #[test]
    fn greater_and_less_compare_integers() {
        assert!(selects("a>1", &[("a", "2")]));
        assert!(!selects("a>1", &[("a", "1")]));
        assert!(selects("a<1", &[("a", "-3")]));
        assert!(!selects("a<1", &[("a", "1")]));
        assert!(selects("a>09", &[("a", "10")]));
        assert!(
            !selects("a>1", &[("a", "x")]),
            "a non-integer value never matches"
        );
        assert!(!selects("a>1", &[])); // Absent key.
        assert!(!selects("a<1", &[]));
    }

    #[test]
    fn all_requirements_must_hold() {
        let selector = "app=web,tier in (front,back),!canary";
        assert!(selects(selector, &[("app", "web"), ("tier", "front")]));
        assert!(!selects(selector, &[("app", "web"), ("tier", "db")]));
        assert!(!selects(
            selector,
            &[("app", "web"), ("tier", "front"), ("canary", "1")]
        ));
        assert!(!selects(selector, &[("tier", "front")]));
    }

    #[test]
    fn works_on_hash_maps_and_trait_objects() {
        let selector = Selector::parse("a=b").unwrap();
        let map: HashMap<String, String> = [("a".to_owned(), "b".to_owned())].into();
        assert!(selector.matches(&map));
        let dynamic: &dyn Labels = &map;
        assert!(selector.matches(dynamic));
    }

    #[test]
    fn requirements_are_sorted_by_key() {
        let selector = Selector::parse("z=1,a,m in (x)").unwrap();
        let keys: Vec<&str> = selector
            .requirements()
            .iter()
            .map(Requirement::key)
            .collect();
        assert_eq!(keys, ["a", "m", "z"]);
        assert_eq!(selector.to_string(), "a,m in (x),z=1");
    }

    #[test]
    fn sorting_is_stable_for_one_key() {
        let selector = Selector::parse("b=1,a!=y,a!=x").unwrap();
        assert_eq!(selector.to_string(), "a!=y,a!=x,b=1");
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("a==b", "a=b"),
            ("  a = b , c != d ", "a=b,c!=d"),
            ("x in (c, b, a, b)", "x in (a,b,c)"),
            ("x notin(b,a)", "x notin (a,b)"),
            ("!k, j", "j,!k"),
            ("a>10,a<20", "a>10,a<20"),
            ("a in (,b)", "a in (,b)"),
            ("a in ()", "a in ()"),
            ("a=", "a="),
            ("example.com/k=V_1.x", "example.com/k=V_1.x"),
        ];
        for (input, canonical) in cases {
            assert_eq!(
                Selector::parse(input).unwrap().to_string(),
                canonical,
                "{input:?}"
            );
        }
    }

    #[test]
    fn display_round_trips_through_parse() {
        let inputs = [
            "a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1,m<2",
            "in=in,notin in (in,notin),!in",
            "a in (,,b,),b notin (),c=,d!=",
            "b=2,a=1,a=0,b=1",
            "example.com/app=web,x.y/z notin (1,2,3)",
        ];
        for input in inputs {
            let selector = Selector::parse(input).unwrap();
            let printed = selector.to_string();
            let reparsed: Selector = printed.parse().unwrap();
            assert_eq!(reparsed, selector, "{input:?} printed as {printed:?}");
            assert_eq!(reparsed.to_string(), printed);
        }
    }

    #[test]
    fn new_sorts_by_key() {
        let selector = Selector::new([
            Requirement::new("b", Operator::Exists, vec![]).unwrap(),
            Requirement::new("a", Operator::In, vec!["x".into()]).unwrap(),
        ]);
        assert_eq!(selector.to_string(), "a in (x),b");
        assert_eq!(selector, Selector::parse("b,a in (x)").unwrap());
    }

    #[test]
    fn from_match_labels_requires_every_pair() {
        let map: HashMap<String, String> = [("b", "2"), ("a", "1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let selector = Selector::from_match_labels(map).unwrap();
        assert_eq!(selector.to_string(), "a=1,b=2");
        assert!(selector.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!selector.matches(&labels(&[("a", "1")])));
    }

    #[test]
    fn from_match_labels_of_nothing_is_everything() {
        let selector = Selector::from_match_labels(Vec::<(String, String)>::new()).unwrap();
        assert!(selector.is_empty());
    }

    #[test]
    fn from_match_labels_validates_keys_and_values() {
        assert!(matches!(
            Selector::from_match_labels([("bad key", "v")]),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            Selector::from_match_labels([("k", "bad value")]),
            Err(Error::InvalidValue { .. })
        ));
    }

    #[test]
    fn from_str_parses() {
        let selector: Selector = "a=b".parse().unwrap();
        assert_eq!(selector, Selector::parse("a=b").unwrap());
        assert!("a=(".parse::<Selector>().is_err());
    }
}
