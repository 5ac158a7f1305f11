//! A deployment's status as Kubernetes reports it: the replica counts over
//! its replica sets, the Available condition, and the Progressing condition
//! that tells a rollout moving on from one stuck past its
//! `progressDeadlineSeconds`. Pure functions of the cached state and a
//! clock reading.

use std::time::Duration;

use moor_api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use moor_api::meta::v1::Condition;
use prost_types::Timestamp;

use super::plan::Budget;
use super::sets::{available_replicas, spec_replicas, status_replicas};

/// The Available condition's type.
pub const AVAILABLE: &str = "Available";
/// The Progressing condition's type.
pub const PROGRESSING: &str = "Progressing";
/// Progressing reason once the new replica set has every pod available.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing reason once the deadline passed without progress.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing reason while paused.
pub const PAUSED: &str = "DeploymentPaused";
/// Progressing reason right after a resume.
pub const RESUMED: &str = "DeploymentResumed";

/// Counts over `all` replica sets (`new` among them, if any), the
/// conditions carried over with Available brought up to date.
pub fn calculate(
    deployment: &Deployment,
    budget: Budget,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let available = sum(available_replicas);
    let current = deployment.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.as_ref().map_or(0, |m| m.generation),
        replicas: sum(status_replicas),
        updated_replicas: new.map_or(0, status_replicas),
        ready_replicas: sum(|rs| rs.status.as_ref().map_or(0, |s| s.ready_replicas)),
        available_replicas: available,
        unavailable_replicas: (sum(spec_replicas) - available).max(0),
        conditions: current.conditions,
        collision_count: current.collision_count,
    };
    let condition = if available >= budget.min_available() {
        condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status.conditions, condition);
    status
}

/// Progressing Unknown with DeploymentPaused while paused, DeploymentResumed
/// once resumed; a rollout that timed out keeps saying so.
pub fn pause_condition(deployment: &Deployment, status: &mut DeploymentStatus, now: Timestamp) {
    let paused = deployment.spec.as_ref().is_some_and(|s| s.paused);
    let reason = find(&status.conditions, PROGRESSING).map(|c| c.reason.as_str());
    if reason == Some(TIMED_OUT) {
        return;
    }
    let was_paused = reason == Some(PAUSED);
    let condition = match (paused, was_paused) {
        (true, false) => condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now),
        (false, true) => condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed",
            now,
        ),
        _ => return,
    };
    set_condition(&mut status.conditions, condition);
}

/// Progressing True NewReplicaSetCreated: a rollout starts now.
pub fn created(deployment: &Deployment, status: &mut DeploymentStatus, rs: &str, now: Timestamp) {
    if deadline(deployment).is_some() {
        let message = format!("Created new replica set \"{rs}\"");
        let created = condition(PROGRESSING, "True", "NewReplicaSetCreated", &message, now);
        set_condition(&mut status.conditions, created);
    }
}

/// Progressing True FoundNewReplicaSet, when no Progressing condition was
/// recorded yet (e.g. a deployment from before progress was tracked).
pub fn found(deployment: &Deployment, status: &mut DeploymentStatus, rs: &str, now: Timestamp) {
    if deadline(deployment).is_some() && find(&status.conditions, PROGRESSING).is_none() {
        let message = format!("Found new replica set \"{rs}\"");
        let found = condition(PROGRESSING, "True", "FoundNewReplicaSet", &message, now);
        set_condition(&mut status.conditions, found);
    }
}

/// The Progressing condition of an unpaused rollout (Kubernetes'
/// syncRolloutStatus): NewReplicaSetAvailable once complete, a fresh
/// ReplicaSetUpdated on any progress against the recorded status,
/// ProgressDeadlineExceeded once the deadline passed since the last one.
pub fn rollout_condition(
    deployment: &Deployment,
    status: &mut DeploymentStatus,
    new: Option<&str>,
    now: Timestamp,
) {
    let Some(deadline) = deadline(deployment) else {
        status.conditions.retain(|c| c.r#type != PROGRESSING);
        return;
    };
    let recorded = deployment.status.clone().unwrap_or_default();
    // The condition as this pass left it (created, resumed), the counts as
    // recorded: progress is measured against the last write.
    let current = find(&status.conditions, PROGRESSING).cloned();
    let done = status.replicas == status.updated_replicas
        && current
            .as_ref()
            .is_some_and(|c| c.reason == NEW_RS_AVAILABLE);
    if done {
        return;
    }
    let subject = new.map_or_else(
        || format!("Deployment \"{}\"", name(deployment)),
        |rs| format!("ReplicaSet \"{rs}\""),
    );
    if is_complete(deployment, status) {
        let message = format!("{subject} has successfully progressed.");
        let complete = condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &message, now);
        set_condition(&mut status.conditions, complete);
    } else if progressed(&recorded, status) {
        let message = format!("{subject} is progressing.");
        let mut updated = condition(PROGRESSING, "True", "ReplicaSetUpdated", &message, now);
        // Progress moves lastUpdateTime (and so the deadline) even when
        // the reason stays the same.
        if let Some(c) = current.filter(|c| c.status == "True") {
            updated.last_transition_time = c.last_transition_time;
        }
        status.conditions.retain(|c| c.r#type != PROGRESSING);
        status.conditions.push(updated);
    } else if timed_out(current.as_ref(), deadline, now) {
        let message = format!("{subject} has timed out progressing.");
        let failed = condition(PROGRESSING, "False", TIMED_OUT, &message, now);
        set_condition(&mut status.conditions, failed);
    }
}

/// Every replica updated and available, at the current generation.
pub fn is_complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let generation = deployment.metadata.as_ref().map_or(0, |m| m.generation);
    status.updated_replicas == desired
        && status.replicas == desired
        && status.available_replicas == desired
        && status.observed_generation >= generation
}

/// When the rollout's deadline falls due, for a reconcile then: only while
/// it is Progressing True and not complete.
pub fn deadline_in(
    deployment: &Deployment,
    status: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = deadline(deployment)?;
    let current = find(&status.conditions, PROGRESSING)?;
    if current.status != "True" || current.reason == NEW_RS_AVAILABLE {
        return None;
    }
    if is_complete(deployment, status) {
        return None;
    }
    let from = current.last_update_time?;
    let left = nanos(&from) + i128::from(deadline.as_secs()) * 1_000_000_000 - nanos(&now);
    // Just past the deadline, which must have been exceeded, not reached.
    let left = u64::try_from(left.max(0)).unwrap_or(u64::MAX);
    Some(Duration::from_nanos(left) + Duration::from_millis(100))
}

/// Whether any count moved towards the new template since `recorded`.
fn progressed(recorded: &DeploymentStatus, status: &DeploymentStatus) -> bool {
    let old_pods = |s: &DeploymentStatus| s.replicas - s.updated_replicas;
    status.updated_replicas > recorded.updated_replicas
        || old_pods(status) < old_pods(recorded)
        || status.ready_replicas > recorded.ready_replicas
        || status.available_replicas > recorded.available_replicas
}

fn timed_out(current: Option<&Condition>, deadline: Duration, now: Timestamp) -> bool {
    let Some(current) = current else {
        return false;
    };
    match current.reason.as_str() {
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => current.last_update_time.is_some_and(|from| {
            nanos(&from) + i128::from(deadline.as_secs()) * 1_000_000_000 < nanos(&now)
        }),
    }
}

/// `progressDeadlineSeconds`, unless unset or "never" (i32::MAX).
fn deadline(deployment: &Deployment) -> Option<Duration> {
    let seconds = deployment
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)?;
    (seconds != i32::MAX).then(|| Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

fn name(deployment: &Deployment) -> &str {
    deployment.metadata.as_ref().map_or("", |m| m.name.as_str())
}

fn nanos(t: &Timestamp) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

fn find<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.r#type == kind)
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> Condition {
    Condition {
        r#type: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(now),
        last_update_time: Some(now),
        ..Default::default()
    }
}

/// Kubernetes' SetDeploymentCondition: nothing changes when status and
/// reason are the same; the transition time is kept when only the reason
/// changes.
fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    if let Some(current) = find(conditions, &new.r#type) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time;
        }
    }
    conditions.retain(|c| c.r#type != new.r#type);
    conditions.push(new);
}

#[cfg(test)]
mod tests {
    use moor_api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use moor_api::meta::v1::ObjectMeta;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn deployment(replicas: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                generation: 2,
                ..Default::default()
            }),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(10),
                ..Default::default()
            }),
            status: Some(status),
            ..Default::default()
        }
    }

    fn rs(replicas: i32, ready: i32) -> ReplicaSet {
        ReplicaSet {
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: ready,
                available_replicas: ready,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn budget(desired: i32) -> Budget {
        Budget {
            desired,
            surge: 1,
            unavailable: 1,
            rolling: true,
        }
    }

    fn progressing(status: &DeploymentStatus) -> (&str, &str) {
        let c = find(&status.conditions, PROGRESSING).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn counts_and_availability() {
        let d = deployment(3, DeploymentStatus::default());
        let (old, new) = (rs(1, 1), rs(3, 1));
        let s = calculate(&d, budget(3), Some(&new), &[&new, &old], at(0));
        assert_eq!(
            (s.replicas, s.updated_replicas, s.ready_replicas),
            (4, 3, 2)
        );
        assert_eq!((s.available_replicas, s.unavailable_replicas), (2, 2));
        assert_eq!(s.observed_generation, 2);
        let available = find(&s.conditions, AVAILABLE).unwrap();
        assert_eq!(available.reason, "MinimumReplicasAvailable");
    }

    #[test]
    fn a_stuck_rollout_times_out_after_the_deadline() {
        let mut recorded = DeploymentStatus::default();
        let d = deployment(2, DeploymentStatus::default());
        created(&d, &mut recorded, "web-1", at(100));
        let d = deployment(2, recorded);
        let new = rs(2, 0);
        let mut s = calculate(&d, budget(2), Some(&new), &[&new], at(105));
        rollout_condition(&d, &mut s, Some("web-1"), at(105));
        // The new set's pods exist: updatedReplicas grew, that is progress.
        assert_eq!(progressing(&s), ("True", "ReplicaSetUpdated"));
        let d = deployment(2, s.clone());
        let mut s = calculate(&d, budget(2), Some(&new), &[&new], at(110));
        rollout_condition(&d, &mut s, Some("web-1"), at(110));
        assert_eq!(progressing(&s), ("True", "ReplicaSetUpdated"));
        assert_eq!(
            deadline_in(&d, &s, at(110)),
            Some(Duration::from_millis(5100))
        );
        let mut s = calculate(&d, budget(2), Some(&new), &[&new], at(116));
        rollout_condition(&d, &mut s, Some("web-1"), at(116));
        assert_eq!(progressing(&s), ("False", TIMED_OUT));
        assert_eq!(deadline_in(&d, &s, at(116)), None);
    }

    #[test]
    fn completion_and_pause() {
        let d = deployment(2, DeploymentStatus::default());
        let new = rs(2, 2);
        let mut s = calculate(&d, budget(2), Some(&new), &[&new], at(1));
        rollout_condition(&d, &mut s, Some("web-1"), at(1));
        assert_eq!(progressing(&s), ("True", NEW_RS_AVAILABLE));
        let mut paused = deployment(2, s.clone());
        paused.spec.as_mut().unwrap().paused = true;
        pause_condition(&paused, &mut s, at(2));
        assert_eq!(progressing(&s), ("Unknown", PAUSED));
        let resumed = deployment(2, s.clone());
        pause_condition(&resumed, &mut s, at(3));
        assert_eq!(progressing(&s), ("Unknown", RESUMED));
    }
}
