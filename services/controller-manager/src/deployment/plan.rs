//! What one reconcile of a deployment does to its replica sets, decided from
//! the cached state alone (no I/O), so that every strategy is unit-tested.
//!
//! Promises, as Kubernetes' deployment controller: RollingUpdate never has
//! more than `replicas + maxSurge` pods asked for, nor scales old sets below
//! `replicas - maxUnavailable` available pods (unavailable old pods go
//! first); Recreate starts the new set only once no old pod is left; a
//! paused deployment only follows changes of `replicas`.

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, ReplicaSet};
use moor_api::meta::v1::IntOrString;
use moor_api::meta::v1::int_or_string::Value;

use super::sets::{available_replicas, spec_replicas, status_replicas};

/// One change to a replica set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the replica set of the current template with this many pods.
    Create(i32),
    /// Set a replica set's `spec.replicas`.
    Scale {
        /// The replica set.
        name: String,
        /// Its replicas now.
        from: i32,
        /// Its replicas wanted.
        to: i32,
    },
}

/// The rollout parameters of a deployment, resolved to pod counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `spec.replicas`.
    pub desired: i32,
    /// Pods allowed above `desired` (0 for Recreate).
    pub surge: i32,
    /// Pods allowed to be unavailable (0 for Recreate).
    pub unavailable: i32,
    /// Whether the strategy is RollingUpdate.
    pub rolling: bool,
}

// === impl Budget ===

impl Budget {
    /// maxSurge and maxUnavailable as pod counts, as Kubernetes resolves
    /// them: surge rounds up, unavailability down, and both zero would
    /// deadlock, so unavailability is then 1.
    pub fn of(deployment: &Deployment) -> Self {
        let spec = deployment.spec.clone().unwrap_or_default();
        let desired = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.unwrap_or_default();
        if strategy.r#type == "Recreate" {
            return Self {
                desired,
                surge: 0,
                unavailable: 0,
                rolling: false,
            };
        }
        let rolling = strategy.rolling_update.unwrap_or_default();
        let surge = resolve(rolling.max_surge.as_ref(), desired, true);
        let unavailable = resolve(rolling.max_unavailable.as_ref(), desired, false);
        let (surge, unavailable) = if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        };
        Self {
            desired,
            surge,
            unavailable: unavailable.min(desired),
            rolling: true,
        }
    }

    /// The fewest available pods the deployment may have.
    pub fn min_available(&self) -> i32 {
        self.desired - self.unavailable
    }
}

/// An int-or-percent of `total`; a missing or unreadable value is 25%.
fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    let percent = match value.and_then(|v| v.value.as_ref()) {
        Some(Value::IntVal(n)) => return (*n).max(0),
        Some(Value::StrVal(s)) => s.trim_end_matches('%').parse().unwrap_or(25),
        None => 25,
    };
    let scaled = i64::from(total).saturating_mul(percent);
    let count = if round_up {
        scaled.saturating_add(99) / 100
    } else {
        scaled / 100
    };
    i32::try_from(count.max(0)).unwrap_or(i32::MAX)
}

fn scale(rs: &ReplicaSet, to: i32) -> Option<Step> {
    let from = spec_replicas(rs);
    (from != to).then(|| Step::Scale {
        name: rs.meta().name.clone(),
        from,
        to,
    })
}

/// One RollingUpdate step: the new set up within the surge (or created),
/// else old sets down within the unavailability budget. `old` is oldest
/// first.
///
/// An old set counts the pods it still has while it scales down (its
/// status), not only its new spec: the new set's pods would otherwise be
/// created while the old set's are still being deleted, past maxSurge.
/// Kubernetes counts specs alone, and can overshoot so for a moment.
pub fn rolling(budget: Budget, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Vec<Step> {
    let desired = budget.desired;
    // Saturating: replicas and maxSurge are clients' numbers, up to i32::MAX.
    let old_total = old
        .iter()
        .map(|rs| spec_replicas(rs).max(status_replicas(rs)))
        .fold(0i32, i32::saturating_add);
    let new_replicas = new.map_or(0, spec_replicas);
    let total = old_total.saturating_add(new_replicas);
    let wanted = if new_replicas >= desired {
        desired
    } else {
        let room = desired
            .saturating_add(budget.surge)
            .saturating_sub(total)
            .max(0);
        new_replicas + room.min(desired - new_replicas)
    };
    let Some(new) = new else {
        // Old sets are scaled on the next pass, once the cache has the new one.
        return vec![Step::Create(wanted)];
    };
    if let Some(step) = scale(new, wanted) {
        return vec![step];
    }
    scale_down_old(budget, new, old)
}

/// Old sets down, oldest first: unavailable pods wherever the total allows,
/// available ones while enough stay available.
fn scale_down_old(budget: Budget, new: &ReplicaSet, old: &[ReplicaSet]) -> Vec<Step> {
    let min_available = budget.min_available();
    let all = || std::iter::once(new).chain(old);
    let total = all().map(spec_replicas).fold(0i32, i32::saturating_add);
    let available = all()
        .map(available_replicas)
        .fold(0i32, i32::saturating_add);
    let new_unavailable = spec_replicas(new).saturating_sub(available_replicas(new));
    let mut cleanup = total
        .saturating_sub(min_available)
        .saturating_sub(new_unavailable)
        .max(0);
    let mut budget = available.saturating_sub(min_available).max(0);
    let mut steps = Vec::new();
    for rs in old {
        let replicas = spec_replicas(rs);
        if replicas == 0 {
            continue;
        }
        let unhealthy = (replicas - available_replicas(rs)).max(0);
        let drop_unhealthy = unhealthy.min(cleanup);
        cleanup -= drop_unhealthy;
        // Capped by what may go in all (Kubernetes' maxScaledDown): a set's
        // availableReplicas lags its scale-down, so the budget alone would
        // take healthy pods again before any new pod is ready.
        let drop_healthy = (replicas - drop_unhealthy).min(budget).min(cleanup);
        budget -= drop_healthy;
        cleanup -= drop_healthy;
        steps.extend(scale(rs, replicas - drop_unhealthy - drop_healthy));
    }
    steps
}

/// One Recreate step: every old set to zero; once their pods are gone (none
/// counted by their sets, and `old_pods_run` false: terminating pods run on
/// until their grace period ends), the new set created or scaled to
/// `desired`.
pub fn recreate(
    budget: Budget,
    new: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    old_pods_run: bool,
) -> Vec<Step> {
    let steps: Vec<Step> = old.iter().filter_map(|rs| scale(rs, 0)).collect();
    if !steps.is_empty() || old_pods_run || old.iter().map(status_replicas).sum::<i32>() > 0 {
        return steps;
    }
    match new {
        None => vec![Step::Create(budget.desired)],
        Some(new) => scale(new, budget.desired).into_iter().collect(),
    }
}

/// A paused deployment: no rollout, only scaling. With one active set (or
/// none: the newest), that set gets `desired`; with several under
/// RollingUpdate, the newest absorbs the change of `desired + maxSurge`
/// (Kubernetes spreads it proportionally; moor keeps it simple). `new` is
/// the set of the current template if there is one; `old` is oldest first.
pub fn paused(budget: Budget, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Vec<Step> {
    let newest_first: Vec<&ReplicaSet> = new.into_iter().chain(old.iter().rev()).collect();
    let active: Vec<&ReplicaSet> = newest_first
        .iter()
        .copied()
        .filter(|rs| spec_replicas(rs) > 0)
        .collect();
    if active.len() <= 1 {
        let target = active.first().or(newest_first.first());
        return target
            .and_then(|rs| scale(rs, budget.desired))
            .into_iter()
            .collect();
    }
    if !budget.rolling {
        return Vec::new();
    }
    let total = active
        .iter()
        .map(|rs| spec_replicas(rs))
        .fold(0i32, i32::saturating_add);
    let mut change = budget
        .desired
        .saturating_add(budget.surge)
        .saturating_sub(total);
    let mut steps = Vec::new();
    for rs in active {
        if change == 0 {
            break;
        }
        let replicas = spec_replicas(rs);
        let to = (replicas + change).max(0);
        change -= to - replicas;
        steps.extend(scale(rs, to));
    }
    steps
}

/// The old sets to delete beyond `limit` kept for rollback, oldest first:
/// only sets scaled to zero, with no pods left and their scale-down seen by
/// the replica set controller. `old` is oldest first.
pub fn history_to_delete(old: &[ReplicaSet], limit: i32) -> Vec<&ReplicaSet> {
    let excess = usize::try_from(i64::try_from(old.len()).unwrap_or(i64::MAX) - i64::from(limit))
        .unwrap_or(0);
    old.iter()
        .take(excess)
        .filter(|rs| {
            let observed = rs.status.as_ref().map_or(0, |s| s.observed_generation);
            spec_replicas(rs) == 0
                && status_replicas(rs) == 0
                && rs.meta().generation <= observed
                && rs.meta().deletion_timestamp.is_none()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use moor_api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
    use moor_api::meta::v1::ObjectMeta;

    use super::*;

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                generation: 1,
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: available,
                observed_generation: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rolling_budget(desired: i32, surge: i32, unavailable: i32) -> Budget {
        Budget {
            desired,
            surge,
            unavailable,
            rolling: true,
        }
    }

    fn to(name: &str, from: i32, to: i32) -> Step {
        Step::Scale {
            name: name.into(),
            from,
            to,
        }
    }

    #[test]
    fn the_new_set_waits_for_the_old_sets_pods_to_go() {
        let b = rolling_budget(4, 1, 1);
        let new = rs("v2", 1, 0);
        // Scaled down to 3, its fourth pod not yet gone: no room yet.
        let mut old = rs("v1", 3, 3);
        if let Some(status) = old.status.as_mut() {
            status.replicas = 4;
        }
        assert_eq!(rolling(b, Some(&new), std::slice::from_ref(&old)), []);
        let old = rs("v1", 3, 3);
        assert_eq!(rolling(b, Some(&new), &[old]), [to("v2", 1, 2)]);
    }

    #[test]
    fn the_largest_budgets_a_client_can_write_plan_without_overflow() {
        // maxSurge 2147483647 (accepted by the API) once panicked here and
        // took the deployment controller down.
        let b = rolling_budget(4, i32::MAX, 1);
        let old = [rs("v1", 4, 4)];
        assert_eq!(rolling(b, None, &old), [Step::Create(4)]);
        let new = rs("v2", 4, 0);
        assert_eq!(rolling(b, Some(&new), &old), [to("v1", 4, 3)]);
        let huge = rolling_budget(i32::MAX, i32::MAX, 0);
        let many = [rs("v1", i32::MAX, i32::MAX), rs("v0", i32::MAX, i32::MAX)];
        assert_eq!(rolling(huge, None, &many), [Step::Create(0)]);
        // Sums past i32::MAX saturate: no panic, and no scale below zero.
        let new = rs("v2", i32::MAX, i32::MAX);
        let steps = rolling(huge, Some(&new), &many);
        assert!(
            steps
                .iter()
                .all(|s| matches!(s, Step::Scale { to, .. } if *to >= 0)),
            "{steps:?}"
        );
        let pct = IntOrString {
            value: Some(Value::StrVal(format!("{}%", i64::MAX))),
        };
        assert_eq!(resolve(Some(&pct), i32::MAX, true), i32::MAX);
    }

    #[test]
    fn budgets_round_like_kubernetes() {
        let pct = |s: &str| IntOrString {
            value: Some(Value::StrVal(s.into())),
        };
        assert_eq!(resolve(Some(&pct("25%")), 10, true), 3);
        assert_eq!(resolve(Some(&pct("25%")), 10, false), 2);
        assert_eq!(resolve(None, 4, true), 1);
        let recreate = Deployment {
            spec: Some(moor_api::apps::v1::DeploymentSpec {
                replicas: Some(3),
                strategy: Some(moor_api::apps::v1::DeploymentStrategy {
                    r#type: "Recreate".into(),
                    rolling_update: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(Budget::of(&recreate).min_available(), 3);
    }

    #[test]
    fn rolling_creates_within_the_surge_then_scales_old_down() {
        let b = rolling_budget(4, 1, 1);
        let old = [rs("v1", 4, 4)];
        assert_eq!(rolling(b, None, &old), [Step::Create(1)]);
        let new = rs("v2", 1, 0);
        // At the surge: old down by what may be unavailable.
        assert_eq!(rolling(b, Some(&new), &old), [to("v1", 4, 3)]);
        let old = [rs("v1", 3, 3)];
        assert_eq!(rolling(b, Some(&new), &old), [to("v2", 1, 2)]);
        let new = rs("v2", 2, 0);
        assert_eq!(rolling(b, Some(&new), &old), Vec::<Step>::new());
    }

    #[test]
    fn a_lagging_available_count_does_not_scale_old_pods_down_twice() {
        let b = rolling_budget(4, 1, 1);
        // Old scaled 4 -> 3 a moment ago but still reports 4 available; the
        // new set surged to 2 with none ready: nothing more may go.
        let mut old = rs("v1", 3, 4);
        old.status.as_mut().unwrap().replicas = 4;
        let new = rs("v2", 2, 0);
        assert_eq!(rolling(b, Some(&new), &[old]), Vec::<Step>::new());
    }

    #[test]
    fn rolling_removes_unavailable_old_pods_first() {
        let b = rolling_budget(4, 1, 1);
        let old = [rs("v1", 2, 0), rs("v2", 2, 2)];
        let new = rs("v3", 1, 1);
        assert_eq!(rolling(b, Some(&new), &old), [to("v1", 2, 0)]);
    }

    #[test]
    fn recreate_waits_for_old_pods_to_go() {
        let b = Budget {
            desired: 3,
            surge: 0,
            unavailable: 0,
            rolling: false,
        };
        assert_eq!(recreate(b, None, &[rs("v1", 3, 3)], true), [to("v1", 3, 0)]);
        let mut leaving = rs("v1", 0, 0);
        leaving.status.as_mut().unwrap().replicas = 2;
        assert_eq!(recreate(b, None, &[leaving], true), Vec::<Step>::new());
        // Deleted, so no longer counted by their set, but still running.
        assert_eq!(
            recreate(b, None, &[rs("v1", 0, 0)], true),
            Vec::<Step>::new()
        );
        assert_eq!(
            recreate(b, None, &[rs("v1", 0, 0)], false),
            [Step::Create(3)]
        );
    }

    #[test]
    fn paused_only_scales_the_newest() {
        let b = rolling_budget(5, 1, 1);
        // One active set: it gets the new count, whatever the template.
        let old = [rs("v1", 0, 0), rs("v2", 3, 3)];
        assert_eq!(paused(b, None, &old), [to("v2", 3, 5)]);
        // Mid-rollout: the newest absorbs the change.
        let new = rs("v3", 2, 2);
        assert_eq!(paused(b, Some(&new), &old), [to("v3", 2, 3)]);
        let b = rolling_budget(1, 1, 0);
        assert_eq!(
            paused(b, Some(&new), &old),
            [to("v3", 2, 0), to("v2", 3, 2)]
        );
    }

    #[test]
    fn history_keeps_the_limit_and_busy_sets() {
        let old = [
            rs("r1", 0, 0),
            rs("r2", 1, 1),
            rs("r3", 0, 0),
            rs("r4", 0, 0),
        ];
        let names = |v: Vec<&ReplicaSet>| -> Vec<String> {
            v.iter().map(|rs| rs.meta().name.clone()).collect()
        };
        assert_eq!(names(history_to_delete(&old, 1)), ["r1", "r3"]);
        assert_eq!(names(history_to_delete(&old, 3)), ["r1"]);
        assert!(history_to_delete(&old, 10).is_empty());
        let mut unseen = rs("r0", 0, 0);
        unseen.meta_mut().generation = 2;
        assert!(history_to_delete(&[unseen], 0).is_empty());
    }
}
