//! Strategies of namespaces and nodes.

use moor_api::Resource;
use moor_api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus, Node};

use super::Kind;
use crate::validate::Errors;

/// The finalizer that holds a namespace until its content is deleted.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

impl Kind for Namespace {
    const NAME_IS_LABEL: bool = true;

    fn prepare_create(&mut self) {
        self.status = Some(NamespaceStatus {
            phase: "Active".to_string(),
        });
        let spec = self.spec.get_or_insert_with(NamespaceSpec::default);
        if !spec.finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
            spec.finalizers.push(NAMESPACE_FINALIZER.to_string());
        }
    }

    fn has_finalizers(&self) -> bool {
        !self.meta().finalizers.is_empty()
            || self.spec.as_ref().is_some_and(|s| !s.finalizers.is_empty())
    }

    fn mark_deleting(&mut self) {
        self.status = Some(NamespaceStatus {
            phase: "Terminating".to_string(),
        });
    }
}

impl Kind for Node {
    // The node agent registers its node with its status already known.
    fn prepare_create(&mut self) {}

    fn validate(&self, old: Option<&Self>, errors: &mut Errors) {
        let pod_cidr = |node: &Node| node.spec.as_ref().map(|s| s.pod_cidr.clone());
        let cidr = pod_cidr(self).unwrap_or_default();
        if !cidr.is_empty() && cidr.parse::<ipnet::Ipv4Net>().is_err() {
            errors.invalid(
                "spec.podCIDR",
                &cidr,
                "must be an IPv4 CIDR such as 10.244.1.0/24",
            );
        }
        // Pods hold addresses from it and other nodes route it: moving it
        // would strand both (Kubernetes refuses the same).
        let before = old.and_then(pod_cidr).unwrap_or_default();
        if !before.is_empty() && before != cidr {
            errors.add(
                "spec.podCIDR",
                format!("Forbidden: may not change once set (it is {before})"),
            );
        }
        if let Some(spec) = &self.spec {
            for (i, taint) in spec.taints.iter().enumerate() {
                if let Err(why) = moor_labels::validation::qualified_name(&taint.key) {
                    errors.invalid(format!("spec.taints[{i}].key"), &taint.key, why);
                }
                if !matches!(
                    taint.effect.as_str(),
                    "NoSchedule" | "PreferNoSchedule" | "NoExecute"
                ) {
                    errors.unsupported(
                        format!("spec.taints[{i}].effect"),
                        &taint.effect,
                        &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                    );
                }
            }
        }
    }
}
