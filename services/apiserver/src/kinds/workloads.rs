//! Strategies of replication controllers, replica sets and deployments, and
//! the scale subresource they share.

use std::collections::HashMap;

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment};
use moor_api::core::v1::{PodTemplateSpec, ReplicationController};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{IntOrString, LabelSelector};
use moor_labels::{Operator, Requirement, Selector};

use super::Kind;
use super::pod::{defaults as pod_defaults, validate_spec};
use crate::validate::Errors;

/// A workload with a replica count: has the scale subresource.
pub trait Scalable: Kind {
    /// Desired replicas.
    fn replicas(&self) -> i32;
    /// Sets desired replicas.
    fn set_replicas(&mut self, replicas: i32);
    /// Observed replicas.
    fn status_replicas(&self) -> i32;
    /// The selector in string form.
    fn selector_string(&self) -> String;
}

/// Converts a LabelSelector message to a selector, naming the field at fault.
pub fn label_selector(
    selector: &LabelSelector,
    path: &str,
    errors: &mut Errors,
) -> Option<Selector> {
    let mut requirements = Vec::new();
    let mut labels: Vec<_> = selector.match_labels.iter().collect();
    labels.sort();
    for (key, value) in labels {
        match Requirement::new(key.clone(), Operator::Equals, vec![value.clone()]) {
            Ok(r) => requirements.push(r),
            Err(err) => errors.invalid(format!("{path}.matchLabels[{key}]"), value, err),
        }
    }
    for (i, expr) in selector.match_expressions.iter().enumerate() {
        let op = match expr.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                errors.unsupported(
                    format!("{path}.matchExpressions[{i}].operator"),
                    other,
                    &["DoesNotExist", "Exists", "In", "NotIn"],
                );
                continue;
            }
        };
        match Requirement::new(expr.key.clone(), op, expr.values.clone()) {
            Ok(r) => requirements.push(r),
            Err(err) => errors.invalid(format!("{path}.matchExpressions[{i}]"), &expr.key, err),
        }
    }
    Some(Selector::new(requirements))
}

fn validate_template(
    template: Option<&PodTemplateSpec>,
    selector: Option<&Selector>,
    errors: &mut Errors,
) {
    let Some(template) = template else {
        errors.required("spec.template");
        return;
    };
    let labels: HashMap<String, String> = template
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    errors.labels("spec.template.metadata.labels", &labels);
    if let Some(selector) = selector {
        if selector.is_empty() {
            errors.add(
                "spec.selector",
                "Invalid value: empty selector is invalid for deployment",
            );
        } else if !selector.matches(&labels) {
            errors.invalid(
                "spec.template.metadata.labels",
                format_labels(&labels),
                "`selector` does not match template `labels`",
            );
        }
    }
    match &template.spec {
        Some(spec) => validate_spec(spec, "spec.template.spec", errors),
        None => errors.required("spec.template.spec"),
    }
}

fn format_labels(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

fn template_defaults(template: &mut Option<PodTemplateSpec>) {
    if let Some(spec) = template.as_mut().and_then(|t| t.spec.as_mut()) {
        pod_defaults(spec);
    }
}

fn check_replicas(replicas: Option<i32>, errors: &mut Errors) {
    if let Some(n) = replicas.filter(|n| *n < 0) {
        errors.invalid("spec.replicas", n, "must be greater than or equal to 0");
    }
}

impl Kind for ReplicationController {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        if spec.selector.is_empty()
            && let Some(meta) = spec.template.as_ref().and_then(|t| t.metadata.as_ref())
        {
            spec.selector = meta.labels.clone();
        }
        let spec_labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .map(|m| m.labels.clone());
        if let Some(labels) = spec_labels
            && self.meta().labels.is_empty()
        {
            self.meta_mut().labels = labels;
        }
        template_defaults(&mut self.spec.get_or_insert_with(Default::default).template);
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut Errors) {
        let spec = self.spec.clone().unwrap_or_default();
        check_replicas(spec.replicas, errors);
        errors.labels("spec.selector", &spec.selector);
        let selector = Selector::from_match_labels(spec.selector.clone()).ok();
        if spec.selector.is_empty() {
            errors.required("spec.selector");
        }
        validate_template(
            spec.template.as_ref(),
            selector.as_ref().filter(|s| !s.is_empty()),
            errors,
        );
    }
}

impl Kind for ReplicaSet {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        template_defaults(&mut spec.template);
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut Errors) {
        let spec = self.spec.clone().unwrap_or_default();
        check_replicas(spec.replicas, errors);
        let selector = match &spec.selector {
            Some(s) => label_selector(s, "spec.selector", errors),
            None => {
                errors.required("spec.selector");
                None
            }
        };
        validate_template(spec.template.as_ref(), selector.as_ref(), errors);
    }
}

fn selector_text(selector: Option<&LabelSelector>) -> String {
    let mut errors = Errors::default();
    selector
        .and_then(|s| label_selector(s, "", &mut errors))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

impl Kind for Deployment {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        if strategy.r#type.is_empty() {
            strategy.r#type = "RollingUpdate".to_string();
        }
        if strategy.r#type == "RollingUpdate" {
            let rolling = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            let quarter = || {
                Some(IntOrString {
                    value: Some(Value::StrVal("25%".to_string())),
                })
            };
            if rolling
                .max_unavailable
                .as_ref()
                .is_none_or(|v| v.value.is_none())
            {
                rolling.max_unavailable = quarter();
            }
            if rolling.max_surge.as_ref().is_none_or(|v| v.value.is_none()) {
                rolling.max_surge = quarter();
            }
        }
        template_defaults(&mut spec.template);
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut Errors) {
        let spec = self.spec.clone().unwrap_or_default();
        check_replicas(spec.replicas, errors);
        let selector = match &spec.selector {
            Some(s) => label_selector(s, "spec.selector", errors),
            None => {
                errors.required("spec.selector");
                None
            }
        };
        validate_template(spec.template.as_ref(), selector.as_ref(), errors);
        let strategy = spec.strategy.unwrap_or_default();
        match strategy.r#type.as_str() {
            "RollingUpdate" => {
                let rolling = strategy.rolling_update.unwrap_or_default();
                let surge = int_or_percent(
                    rolling.max_surge.as_ref(),
                    "spec.strategy.rollingUpdate.maxSurge",
                    errors,
                );
                let unavailable = int_or_percent(
                    rolling.max_unavailable.as_ref(),
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    errors,
                );
                if surge == Some(0) && unavailable == Some(0) {
                    errors.add(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        "Invalid value: may not be 0 when `maxSurge` is 0",
                    );
                }
            }
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errors.add(
                        "spec.strategy.rollingUpdate",
                        "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                    );
                }
            }
            other => {
                errors.unsupported("spec.strategy.type", other, &["Recreate", "RollingUpdate"])
            }
        }
    }
}

/// Checks a count or percentage; returns it when it is a plain number or 0%.
fn int_or_percent(value: Option<&IntOrString>, path: &str, errors: &mut Errors) -> Option<i32> {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::IntVal(n)) if *n < 0 => {
            errors.invalid(path, n, "must be greater than or equal to 0");
            None
        }
        Some(Value::IntVal(n)) => Some(*n),
        Some(Value::StrVal(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i32>().ok()) {
            Some(p) if (0..=100).contains(&p) => (p == 0).then_some(0),
            _ => {
                errors.invalid(
                    path,
                    s,
                    "must be an integer or a percentage between 0% and 100% (e.g. '25%')",
                );
                None
            }
        },
        None => None,
    }
}

/// The scale accessors are the same for every workload: `spec.replicas`
/// (default 1) and `status.replicas`; only the selector's form differs.
macro_rules! scalable {
    ($($kind:ty => |$this:ident| $selector:expr;)*) => {
        $(
            impl Scalable for $kind {
                fn replicas(&self) -> i32 {
                    self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
                }
                fn set_replicas(&mut self, replicas: i32) {
                    self.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
                }
                fn status_replicas(&self) -> i32 {
                    self.status.as_ref().map(|s| s.replicas).unwrap_or(0)
                }
                fn selector_string(&self) -> String {
                    let $this = self;
                    $selector
                }
            }
        )*
    };
}

scalable! {
    ReplicationController => |rc| {
        let selector = rc.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        Selector::from_match_labels(selector).map(|s| s.to_string()).unwrap_or_default()
    };
    ReplicaSet => |rs| selector_text(rs.spec.as_ref().and_then(|s| s.selector.as_ref()));
    Deployment => |d| selector_text(d.spec.as_ref().and_then(|s| s.selector.as_ref()));
}
