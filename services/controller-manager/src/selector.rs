//! A `LabelSelector` message as a [`Selector`], the same conversion the
//! apiserver validates with (services/apiserver's `label_selector`).

use moor_api::meta::v1::LabelSelector;
use moor_labels::{Operator, Requirement, Selector};

/// The selector `selector` means; an error says which part is unusable.
pub fn from_label_selector(selector: &LabelSelector) -> Result<Selector, String> {
    let mut requirements = Vec::new();
    let mut labels: Vec<_> = selector.match_labels.iter().collect();
    labels.sort();
    for (key, value) in labels {
        let requirement = Requirement::new(key.clone(), Operator::Equals, vec![value.clone()])
            .map_err(|e| format!("matchLabels[{key}]: {e}"))?;
        requirements.push(requirement);
    }
    for (i, expr) in selector.match_expressions.iter().enumerate() {
        let op = match expr.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(format!(
                    "matchExpressions[{i}].operator: {other:?} unsupported"
                ));
            }
        };
        let requirement = Requirement::new(expr.key.clone(), op, expr.values.clone())
            .map_err(|e| format!("matchExpressions[{i}]: {e}"))?;
        requirements.push(requirement);
    }
    Ok(Selector::new(requirements))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use moor_api::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn converts_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: HashMap::from([("app".into(), "web".into())]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["a".into(), "b".into()],
            }],
        };
        let s = from_label_selector(&selector).unwrap();
        let labels = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
        let bad = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "x".into(),
                operator: "Near".into(),
                values: vec![],
            }],
            ..Default::default()
        };
        assert!(from_label_selector(&bad).is_err());
    }
}
