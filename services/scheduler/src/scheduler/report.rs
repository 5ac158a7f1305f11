//! Talking back to the API about one pod: the bind, the PodScheduled
//! condition, and the Scheduled / FailedScheduling events.

use std::sync::Arc;
use std::time::SystemTime;

use moor_api::core::v1::{Binding, Pod};
use moor_api::meta::v1::{Condition, ObjectMeta, ObjectReference};
use moor_client::ObjectKey;
use prost_types::Timestamp;

use super::Shared;

/// Component name on events, as Kubernetes' scheduler reports itself.
pub(super) const COMPONENT: &str = "moor-scheduler";
/// Attempts at writing the condition when the pod changes under us.
const STATUS_ATTEMPTS: usize = 3;

/// Binds `pod` to `node` (already assumed in the cache); on failure forgets
/// the assumption and retries the pod after a back-off.
pub(super) async fn bind(shared: Arc<Shared>, key: ObjectKey, pod: Arc<Pod>, node: String) {
    let meta = pod.metadata.clone().unwrap_or_default();
    let binding = Binding {
        metadata: Some(ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        }),
        target: Some(ObjectReference {
            kind: "Node".to_string(),
            name: node.clone(),
            ..Default::default()
        }),
    };
    match shared.client.api::<Pod>().bind(&binding).await {
        Ok(_) => {
            tracing::debug!(pod = %key, %node, "bound");
            shared.bound(&key);
            let message = format!("Successfully assigned {key} to {node}");
            shared
                .events
                .record(pod.as_ref(), "Normal", "Scheduled", "Binding", message);
        }
        Err(error) => {
            // A conflict means the pod was bound (or changed) meanwhile: the
            // watch tells us which; either way our assumption is void.
            tracing::info!(pod = %key, %node, %error, "bind failed; forgetting and retrying");
            shared.forget(&meta.uid);
            shared.retry(key);
        }
    }
}

/// Sets PodScheduled=False with `message` (unless it already says so) and
/// records a FailedScheduling event.
pub(super) async fn unschedulable(shared: Arc<Shared>, pod: Arc<Pod>, message: String) {
    if let Err(error) = set_condition(&shared, &pod, &message).await {
        let key = ObjectKey::of(pod.as_ref());
        tracing::warn!(pod = %key, %error, "could not record PodScheduled=False; the next attempt tries again");
    }
    shared.events.record(
        pod.as_ref(),
        "Warning",
        "FailedScheduling",
        "Scheduling",
        message,
    );
}

async fn set_condition(
    shared: &Shared,
    pod: &Pod,
    message: &str,
) -> Result<(), moor_client::Error> {
    let api = shared.client.api::<Pod>();
    let meta = pod.metadata.clone().unwrap_or_default();
    for _ in 0..STATUS_ATTEMPTS {
        let mut current = api.get(&meta.namespace, &meta.name).await?;
        let same_pod = current.metadata.as_ref().is_some_and(|m| m.uid == meta.uid);
        let unbound = current.spec.as_ref().is_none_or(|s| s.node_name.is_empty());
        if !same_pod || !unbound {
            return Ok(());
        }
        let status = current.status.get_or_insert_with(Default::default);
        let old = status
            .conditions
            .iter()
            .find(|c| c.r#type == "PodScheduled");
        if old.is_some_and(|c| {
            c.status == "False" && c.reason == "Unschedulable" && c.message == message
        }) {
            return Ok(());
        }
        let transition = match old {
            Some(c) if c.status == "False" => c.last_transition_time,
            _ => Some(now()),
        };
        status.conditions.retain(|c| c.r#type != "PodScheduled");
        status.conditions.push(Condition {
            r#type: "PodScheduled".to_string(),
            status: "False".to_string(),
            reason: "Unschedulable".to_string(),
            message: message.to_string(),
            last_transition_time: transition,
            ..Default::default()
        });
        match api.update_status(&current).await {
            Ok(_) => return Ok(()),
            Err(moor_client::Error::Conflict(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}
