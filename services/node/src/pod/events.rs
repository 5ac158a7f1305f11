//! Events about pods, as `kubectl describe pod` shows them (Pulled,
//! Unhealthy, Killing), through the agent's recorder: in the background,
//! dropped under load, repeats aggregated (`moor_client::events`).

use moor_api::core::v1::Pod;

use crate::agent::Agent;

/// The component events name as their source.
pub(crate) const COMPONENT: &str = "moor-node";

/// Records a Normal event about `pod`.
pub fn normal(agent: &Agent, pod: &Pod, reason: &str, message: String) {
    agent.events.normal(pod, reason, message);
}

/// Records a Warning event about `pod`.
pub fn warning(agent: &Agent, pod: &Pod, reason: &str, message: String) {
    agent.events.warning(pod, reason, message);
}
