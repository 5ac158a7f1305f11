//! What controllers ask of a pod: is it active, ready, available, who
//! controls it.

use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::Pod;
use moor_api::meta::v1::{ObjectMeta, OwnerReference};

/// Whether the pod counts towards its owner's replicas: not being deleted
/// and not finished.
pub fn is_active(pod: &Pod) -> bool {
    pod.meta().deletion_timestamp.is_none() && !is_finished(pod)
}

/// Whether the pod is done for good (Succeeded or Failed): nothing of it
/// runs again. A terminating pod is not finished until it is gone.
pub fn is_finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    matches!(phase, "Succeeded" | "Failed")
}

/// The time the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<prost_types::Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time)
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been ready for `min_ready` at `now`; when not yet,
/// also how long until it will be (for a requeue).
pub fn available(pod: &Pod, min_ready: Duration, now: prost_types::Timestamp) -> Availability {
    match ready_since(pod) {
        None => Availability::No,
        Some(_) if min_ready.is_zero() => Availability::Yes,
        // Ready without a transition time: trust it, as Kubernetes does.
        Some(None) => Availability::Yes,
        Some(Some(since)) => {
            let ready_for = now.seconds.saturating_sub(since.seconds);
            let needed = i64::try_from(min_ready.as_secs()).unwrap_or(i64::MAX);
            if ready_for >= needed {
                Availability::Yes
            } else {
                let left = u64::try_from(needed - ready_for).unwrap_or(1);
                Availability::After(Duration::from_secs(left))
            }
        }
    }
}

/// Whether a pod is available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Ready for long enough.
    Yes,
    /// Ready, available after this long.
    After(Duration),
    /// Not ready.
    No,
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The current time as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}
