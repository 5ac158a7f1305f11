//! Events about pods, as `kubectl describe pod` shows them (Unhealthy,
//! Killing). Recording is best effort and in the background, as kubelet's
//! recorder: an event is worth less than the action it reports, so it
//! never delays it, and failures are logged, never returned.

use std::time::SystemTime;

use moor_api::core::v1::{Event, EventSource, Pod};
use moor_api::meta::v1::{ObjectMeta, ObjectReference};
use prost_types::Timestamp;

use crate::agent::Agent;

/// The component events name as their source.
const COMPONENT: &str = "moor-node";

/// Records a Normal event about `pod`.
pub fn normal(agent: &Agent, pod: &Pod, reason: &str, message: String) {
    record(agent, pod, "Normal", reason, message);
}

/// Records a Warning event about `pod`.
pub fn warning(agent: &Agent, pod: &Pod, reason: &str, message: String) {
    record(agent, pod, "Warning", reason, message);
}

fn record(agent: &Agent, pod: &Pod, kind: &str, reason: &str, message: String) {
    let meta = pod.metadata.clone().unwrap_or_default();
    let now = SystemTime::now();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let event = Event {
        metadata: Some(ObjectMeta {
            // Kubernetes names events "<object>.<hex nanoseconds>".
            name: format!("{}.{nanos:x}", meta.name),
            namespace: meta.namespace.clone(),
            ..Default::default()
        }),
        involved_object: Some(ObjectReference {
            kind: "Pod".into(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            api_version: "v1".into(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        }),
        reason: reason.into(),
        message,
        source: Some(EventSource {
            component: COMPONENT.into(),
            host: agent.name.clone(),
        }),
        first_timestamp: Some(Timestamp::from(now)),
        last_timestamp: Some(Timestamp::from(now)),
        count: 1,
        r#type: kind.into(),
        reporting_component: COMPONENT.into(),
        reporting_instance: agent.name.clone(),
        ..Default::default()
    };
    let (events, reason) = (agent.client.api::<Event>(), reason.to_owned());
    tokio::spawn(async move {
        if let Err(err) = events.create(&event).await {
            tracing::debug!(pod = %meta.name, reason, %err, "event not recorded");
        }
    });
}
