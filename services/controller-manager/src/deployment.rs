//! The deployment controller: one ReplicaSet per pod template, the newest
//! scaled up and the older ones down as the strategy allows: RollingUpdate
//! keeps at most `replicas + maxSurge` pods and at least
//! `replicas - maxUnavailable` available ones; Recreate removes every old
//! pod before the new ones start.
//!
//! Not yet: rollback, pause, progress deadlines, revision history cleanup,
//! proportional scaling of several live replica sets, adoption of orphan
//! replica sets.

use std::collections::HashMap;

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{Condition, IntOrString, ObjectMeta, OwnerReference};
use moor_client::{Action, Api, Client, ObjectKey, Reader};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{Change, Informer};
use crate::pods;
use crate::queue::{self, Queue, Worker};

/// The label that tells one template's pods from another's.
const HASH_LABEL: &str = "pod-template-hash";
/// The annotation holding a replica set's revision.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// Component name in logs and events.
const COMPONENT: &str = "deployment-controller";

/// The deployment controller.
pub struct Controller {
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    deployment_cache: Reader<Deployment>,
    rs_cache: Reader<ReplicaSet>,
    events: crate::events::Recorder,
    queue: Queue<ObjectKey>,
    worker: Worker<ObjectKey>,
}

// === impl Controller ===

impl Controller {
    /// A controller reading from the given caches.
    pub fn new(
        client: &Client,
        deployment_cache: Reader<Deployment>,
        rs_cache: Reader<ReplicaSet>,
    ) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            deployments: client.api(),
            replica_sets: client.api(),
            deployment_cache,
            rs_cache,
            events: crate::events::Recorder::new(client, COMPONENT),
            queue,
            worker,
        }
    }

    /// Subscribes to deployment and replica set changes.
    pub fn register(
        &self,
        deployments: &mut Informer<Deployment>,
        replica_sets: &mut Informer<ReplicaSet>,
    ) {
        let queue = self.queue.clone();
        deployments.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(ObjectKey::of(new)),
            Change::Deleted(_) => {}
            Change::Restarted(all) => all.iter().for_each(|d| queue.add(ObjectKey::of(d))),
        });
        let queue = self.queue.clone();
        let cache = self.deployment_cache.clone();
        replica_sets.on_change(move |change| match change {
            Change::Applied { new: rs, .. } | Change::Deleted(rs) => {
                if let Some(key) = owning_deployment(rs) {
                    queue.add(key);
                }
            }
            Change::Restarted(_) => {
                cache
                    .list()
                    .iter()
                    .for_each(|d| queue.add(ObjectKey::of(d.as_ref())));
            }
        });
    }

    /// Reconciles deployments until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = async {
                self.deployment_cache.wait_until_ready().await;
                self.rs_cache.wait_until_ready().await;
            } => {}
        }
        while let Some(key) = self.worker.next(&shutdown).await {
            let result = self.reconcile(&key).await;
            self.worker.done(key, result, COMPONENT);
        }
    }

    #[tracing::instrument(skip_all, fields(deployment = %key))]
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(deployment) = self.deployment_cache.get_key(key) else {
            return Ok(Action::AwaitChange);
        };
        if deployment.meta().deletion_timestamp.is_some() {
            return Ok(Action::AwaitChange);
        }
        let uid = &deployment.meta().uid;
        let mut owned: Vec<ReplicaSet> = self
            .rs_cache
            .list()
            .iter()
            .filter(|rs| {
                rs.meta().namespace == key.namespace
                    && pods::controller_of(rs.meta()).is_some_and(|r| &r.uid == uid)
            })
            .map(|rs| rs.as_ref().clone())
            .collect();
        owned.sort_by_key(revision);
        let Some(template) = deployment.spec.as_ref().and_then(|s| s.template.as_ref()) else {
            return Ok(Action::AwaitChange);
        };
        let position = owned.iter().position(|rs| same_template(rs, template));
        let new = match position {
            Some(i) => owned.remove(i),
            None => {
                let next = owned.iter().map(revision).max().unwrap_or(0) + 1;
                // Scaled on the next pass, once the cache has it.
                self.create_replica_set(&deployment, next).await?;
                return Ok(Action::AwaitChange);
            }
        };
        let old = owned;
        let strategy = deployment
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .map_or("RollingUpdate", |s| s.r#type.as_str());
        let desired = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        if strategy == "Recreate" {
            self.recreate(&deployment, &new, &old, desired).await?;
        } else {
            self.roll(&deployment, &new, &old, desired).await?;
        }
        self.update_status(&deployment, &new, &old, desired).await?;
        Ok(Action::AwaitChange)
    }

    /// One rolling step: scale the new set up within the surge, or the old
    /// ones down within the unavailability budget.
    async fn roll(
        &self,
        deployment: &Deployment,
        new: &ReplicaSet,
        old: &[ReplicaSet],
        desired: i32,
    ) -> Result<(), Error> {
        let (surge, unavailable) = budgets(deployment, desired);
        let all = std::iter::once(new).chain(old);
        let total: i32 = all.clone().map(spec_replicas).sum();
        let new_replicas = spec_replicas(new);
        if new_replicas > desired {
            return self.scale(deployment, new, desired).await;
        }
        if new_replicas < desired {
            let room = (desired + surge - total).min(desired - new_replicas);
            if room > 0 {
                return self.scale(deployment, new, new_replicas + room).await;
            }
        }
        // Scale old sets down, oldest first, keeping enough pods available.
        let min_available = desired - unavailable;
        let available: i32 = all.map(available_replicas).sum();
        let mut budget = available - min_available;
        // Old pods that are not available cost nothing to remove.
        let new_unavailable = new_replicas - available_replicas(new);
        let mut cleanup = total - min_available - new_unavailable;
        for rs in old {
            let replicas = spec_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let unhealthy = (replicas - available_replicas(rs)).max(0);
            let drop_unhealthy = unhealthy.min(cleanup.max(0));
            cleanup -= drop_unhealthy;
            let drop_healthy = (replicas - drop_unhealthy).min(budget.max(0));
            budget -= drop_healthy;
            let target = replicas - drop_unhealthy - drop_healthy;
            if target != replicas {
                self.scale(deployment, rs, target).await?;
            }
        }
        Ok(())
    }

    /// Recreate: every old pod gone before the new set scales up.
    async fn recreate(
        &self,
        deployment: &Deployment,
        new: &ReplicaSet,
        old: &[ReplicaSet],
        desired: i32,
    ) -> Result<(), Error> {
        let mut old_pods = 0;
        for rs in old {
            if spec_replicas(rs) > 0 {
                self.scale(deployment, rs, 0).await?;
            }
            old_pods += rs.status.as_ref().map_or(0, |s| s.replicas);
        }
        if old_pods == 0 && spec_replicas(new) != desired {
            self.scale(deployment, new, desired).await?;
        }
        Ok(())
    }

    async fn scale(&self, deployment: &Deployment, rs: &ReplicaSet, to: i32) -> Result<(), Error> {
        let mut scaled = rs.clone();
        let from = spec_replicas(rs);
        scaled
            .spec
            .get_or_insert_with(ReplicaSetSpec::default)
            .replicas = Some(to);
        self.replica_sets.update(&scaled).await?;
        let verb = if to > from { "up" } else { "down" };
        let message = format!(
            "Scaled {verb} replica set {} from {from} to {to}",
            rs.meta().name
        );
        tracing::info!(replica_set = %rs.meta().name, from, to, "scaled replica set");
        self.events
            .normal(deployment, "ScalingReplicaSet", message)
            .await;
        Ok(())
    }

    async fn create_replica_set(
        &self,
        deployment: &Deployment,
        revision: i64,
    ) -> Result<(), Error> {
        let meta = deployment.meta();
        let spec = deployment.spec.clone().unwrap_or_default();
        let hash = template_hash(&meta.uid, revision);
        let mut template = spec.template.clone().unwrap_or_default();
        let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        template_meta.labels.insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone().unwrap_or_default();
        selector
            .match_labels
            .insert(HASH_LABEL.into(), hash.clone());
        let rs = ReplicaSet {
            metadata: Some(ObjectMeta {
                name: format!("{}-{hash}", meta.name),
                namespace: meta.namespace.clone(),
                labels: template_meta.labels.clone(),
                annotations: HashMap::from([(REVISION.to_string(), revision.to_string())]),
                owner_references: vec![OwnerReference {
                    api_version: Deployment::API_VERSION.into(),
                    kind: Deployment::KIND.into(),
                    name: meta.name.clone(),
                    uid: meta.uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }],
                ..Default::default()
            }),
            // Created empty; both strategies scale it from there.
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector: Some(selector),
                template: Some(template),
            }),
            ..Default::default()
        };
        let created = self.replica_sets.create(&rs).await?;
        let message = format!(
            "Created replica set {} at revision {revision}",
            created.meta().name
        );
        self.events
            .normal(deployment, "ScalingReplicaSet", message)
            .await;
        Ok(())
    }

    async fn update_status(
        &self,
        deployment: &Deployment,
        new: &ReplicaSet,
        old: &[ReplicaSet],
        desired: i32,
    ) -> Result<(), Error> {
        let (_, unavailable) = budgets(deployment, desired);
        let all: Vec<&ReplicaSet> = std::iter::once(new).chain(old).collect();
        let sum = |f: fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
        let available = sum(available_replicas);
        let current = deployment.status.clone().unwrap_or_default();
        let is_available = available >= desired - unavailable;
        let mut conditions = current.conditions.clone();
        set_condition(
            &mut conditions,
            "Available",
            is_available,
            if is_available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
        );
        let status = DeploymentStatus {
            observed_generation: deployment.meta().generation,
            replicas: sum(|rs| rs.status.as_ref().map_or(0, |s| s.replicas)),
            updated_replicas: new.status.as_ref().map_or(0, |s| s.replicas),
            ready_replicas: sum(|rs| rs.status.as_ref().map_or(0, |s| s.ready_replicas)),
            available_replicas: available,
            unavailable_replicas: (desired - available).max(0),
            conditions,
            collision_count: current.collision_count,
        };
        if status != current {
            let mut updated = deployment.clone();
            updated.status = Some(status);
            self.deployments.update_status(&updated).await?;
        }
        Ok(())
    }
}

/// The deployment controlling `rs`, if any.
fn owning_deployment(rs: &ReplicaSet) -> Option<ObjectKey> {
    let meta = rs.meta();
    pods::controller_of(meta)
        .filter(|r| r.kind == Deployment::KIND)
        .map(|r| ObjectKey {
            namespace: meta.namespace.clone(),
            name: r.name.clone(),
        })
}

/// Whether `rs` runs `template` (ignoring the hash label it adds).
fn same_template(rs: &ReplicaSet, template: &moor_api::core::v1::PodTemplateSpec) -> bool {
    let Some(mut theirs) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return false;
    };
    if let Some(m) = theirs.metadata.as_mut() {
        m.labels.remove(HASH_LABEL);
    }
    let mut ours = template.clone();
    ours.metadata.get_or_insert_with(ObjectMeta::default);
    theirs.metadata.get_or_insert_with(ObjectMeta::default);
    theirs == ours
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.meta()
        .annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.available_replicas)
}

/// A short, stable suffix for the replica set of one revision.
fn template_hash(uid: &str, revision: i64) -> String {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes().chain(revision.to_string().bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// maxSurge and maxUnavailable as pod counts (surge rounds up,
/// unavailability down; both zero would deadlock, so unavailability is 1).
fn budgets(deployment: &Deployment, desired: i32) -> (i32, i32) {
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = resolve(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::IntVal(n)) => (*n).max(0),
        Some(Value::StrVal(s)) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            let scaled = i64::from(total) * percent;
            let count = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(count).unwrap_or(i32::MAX)
        }
        None => {
            let quarter = i64::from(total) * 25;
            let count = if round_up {
                (quarter + 99) / 100
            } else {
                quarter / 100
            };
            i32::try_from(count).unwrap_or(i32::MAX)
        }
    }
}

fn set_condition(conditions: &mut Vec<Condition>, kind: &str, ok: bool, reason: &str) {
    let status = if ok { "True" } else { "False" };
    let now = pods::now();
    match conditions.iter_mut().find(|c| c.r#type == kind) {
        Some(c) if c.status == status && c.reason == reason => {}
        Some(c) => {
            c.status = status.into();
            c.reason = reason.into();
            c.last_transition_time = Some(now);
            c.last_update_time = Some(now);
        }
        None => conditions.push(Condition {
            r#type: kind.into(),
            status: status.into(),
            reason: reason.into(),
            last_transition_time: Some(now),
            last_update_time: Some(now),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_round_like_kubernetes() {
        let pct = |s: &str| IntOrString {
            value: Some(Value::StrVal(s.into())),
        };
        assert_eq!(resolve(Some(&pct("25%")), 10, true), 3);
        assert_eq!(resolve(Some(&pct("25%")), 10, false), 2);
        assert_eq!(resolve(None, 4, true), 1);
        assert_eq!(template_hash("u", 1), template_hash("u", 1));
        assert_ne!(template_hash("u", 1), template_hash("u", 2));
        assert_eq!(template_hash("u", 1).len(), 10);
    }
}
