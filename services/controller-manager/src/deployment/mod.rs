//! The deployment controller, as Kubernetes' apps/v1 one behaves: one
//! ReplicaSet per pod template, rolled with RollingUpdate (maxSurge,
//! maxUnavailable) or Recreate.
//!
//! Promises: every replica set carries its revision
//! (`deployment.kubernetes.io/revision`) and the deployment that of its
//! current template; a template set back to an old one's (`rollout undo`)
//! brings that replica set back as the newest revision instead of making a
//! new one; old sets scaled to zero beyond `revisionHistoryLimit` are
//! deleted, oldest first; a paused deployment only scales; the Progressing
//! condition turns False (ProgressDeadlineExceeded) once a rollout made no
//! progress for `progressDeadlineSeconds`; every scale is a
//! ScalingReplicaSet event; the status is written only when it changes.
//!
//! Not yet: proportional scaling of several live replica sets (the newest
//! absorbs a change), adoption of orphan replica sets, ReplicaFailure
//! conditions.

mod plan;
mod sets;
mod status;

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use moor_api::core::v1::{Pod, PodTemplateSpec};
use moor_client::{Action, Api, Client, DeleteParams, ObjectKey, Reader};
use tokio_util::sync::CancellationToken;

use self::plan::{Budget, Step};
use crate::Error;
use crate::fresh::{self, Part};
use crate::informer::{Change, Informer};
use crate::pods;
use crate::queue::{self, Queue, Worker};

/// Component name in logs and events.
const COMPONENT: &str = "deployment-controller";

/// The deployment controller.
pub struct Controller {
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    deployment_cache: Reader<Deployment>,
    rs_cache: Reader<ReplicaSet>,
    /// Recreate waits on the pods themselves: a deleted pod still runs
    /// until its grace period ends, and its set no longer counts it.
    pod_cache: Reader<Pod>,
    events: moor_client::events::Recorder,
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
        pod_cache: Reader<Pod>,
    ) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            deployments: client.api(),
            replica_sets: client.api(),
            deployment_cache,
            rs_cache,
            pod_cache,
            events: moor_client::events::Recorder::new(client, COMPONENT),
            queue,
            worker,
        }
    }

    /// Subscribes to deployment and replica set changes, and to pods of
    /// replica sets leaving (for Recreate).
    pub fn register(
        &self,
        deployments: &mut Informer<Deployment>,
        replica_sets: &mut Informer<ReplicaSet>,
        pods: &mut Informer<Pod>,
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
        let queue = self.queue.clone();
        let rs_cache = self.rs_cache.clone();
        pods.on_change(move |change| {
            let left = match change {
                Change::Deleted(pod) => Some(pod),
                Change::Applied { old, new }
                    if pods::is_finished(new) && old.is_some_and(|o| !pods::is_finished(o)) =>
                {
                    Some(new)
                }
                Change::Applied { .. } | Change::Restarted(_) => None,
            };
            let deployment = left
                .and_then(|pod| set_of(&rs_cache, pod))
                .and_then(|rs| owning_deployment(&rs));
            if let Some(key) = deployment {
                queue.add(key);
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
                self.pod_cache.wait_until_ready().await;
            } => {}
        }
        while let Some(key) = self.worker.next(&shutdown).await {
            let result = self.reconcile(&key).await;
            self.worker.done(key, result, COMPONENT);
        }
    }

    #[tracing::instrument(skip_all, fields(deployment = %key))]
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(cached) = self.deployment_cache.get_key(key) else {
            return Ok(Action::AwaitChange);
        };
        if cached.meta().deletion_timestamp.is_some() {
            return Ok(Action::AwaitChange);
        }
        let Some(template) = cached.spec.as_ref().and_then(|s| s.template.as_ref()) else {
            return Ok(Action::AwaitChange);
        };
        let (new, old) = self.replica_sets_of(&cached, template);
        let now = pods::now();
        let budget = Budget::of(&cached);
        let paused = cached.spec.as_ref().is_some_and(|s| s.paused);
        let next_revision = old.iter().map(sets::revision).max().unwrap_or(0) + 1;
        let new = match new {
            Some(rs) => Some(self.make_newest(&cached, rs, next_revision - 1).await?),
            None => None,
        };
        let deployment = self.record_revision(&cached, new.as_ref()).await?;
        let steps = if paused {
            plan::paused(budget, new.as_ref(), &old)
        } else if budget.rolling {
            plan::rolling(budget, new.as_ref(), &old)
        } else {
            let old_pods_run = self.pods_run(&old);
            plan::recreate(budget, new.as_ref(), &old, old_pods_run)
        };
        let existing: Vec<&ReplicaSet> = new.iter().chain(&old).collect();
        let created = self
            .apply(&deployment, steps, next_revision, &existing)
            .await?;
        let current = created.as_ref().or(new.as_ref());
        let all: Vec<&ReplicaSet> = current.into_iter().chain(&old).collect();
        let status = progress(&deployment, budget, current, created.is_some(), &all, now);
        if paused || status::is_complete(&deployment, &status) {
            self.clean_history(&deployment, &old).await?;
        }
        let requeue = status::deadline_in(&deployment, &status, now);
        self.write_status(&deployment, status).await?;
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }

    /// Carries out the planned steps; the replica set created, if any.
    async fn apply(
        &self,
        deployment: &Deployment,
        steps: Vec<Step>,
        next_revision: i64,
        sets: &[&ReplicaSet],
    ) -> Result<Option<ReplicaSet>, Error> {
        let mut created = None;
        for step in steps {
            match step {
                Step::Create(replicas) => {
                    created = Some(self.create(deployment, next_revision, replicas).await?);
                }
                Step::Scale { name, from, to } => {
                    if let Some(rs) = sets.iter().find(|rs| rs.meta().name == name) {
                        self.scale(deployment, rs, from, to).await?;
                    }
                }
            }
        }
        Ok(created)
    }

    /// Whether any pod of the replica sets `old` may still run, deleted
    /// or not.
    fn pods_run(&self, old: &[ReplicaSet]) -> bool {
        let uids: std::collections::HashSet<&str> =
            old.iter().map(|rs| rs.meta().uid.as_str()).collect();
        // Terminating pods count, as Kubernetes' Recreate counts them.
        self.pod_cache.list().iter().any(|pod| {
            !pods::is_finished(pod)
                && pods::controller_of(pod.meta()).is_some_and(|r| uids.contains(r.uid.as_str()))
        })
    }

    /// The live replica sets `deployment` controls: the one running
    /// `template`, if any, and the others, oldest revision first.
    fn replica_sets_of(
        &self,
        deployment: &Deployment,
        template: &PodTemplateSpec,
    ) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let meta = deployment.meta();
        let mut owned: Vec<ReplicaSet> = self
            .rs_cache
            .list()
            .iter()
            .filter(|rs| {
                rs.meta().namespace == meta.namespace
                    && rs.meta().deletion_timestamp.is_none()
                    && pods::controller_of(rs.meta()).is_some_and(|r| r.uid == meta.uid)
            })
            .map(|rs| rs.as_ref().clone())
            .collect();
        owned.sort_by_key(|rs| (sets::revision(rs), rs.meta().name.clone()));
        let new = owned
            .iter()
            .position(|rs| sets::same_template(rs, template))
            .map(|i| owned.remove(i));
        (new, owned)
    }

    /// Makes the set of the current template the newest revision (a
    /// rollback brings an old one back) and copies the deployment's
    /// annotations and minReadySeconds onto it.
    async fn make_newest(
        &self,
        deployment: &Deployment,
        rs: ReplicaSet,
        max_old: i64,
    ) -> Result<ReplicaSet, Error> {
        let refresh = |current: &ReplicaSet| sets::refreshed(deployment, current, max_old);
        let Some(updated) = fresh::update(&self.replica_sets, &rs, Part::Main, refresh).await?
        else {
            return Ok(rs);
        };
        let (from, to) = (sets::revision(&rs), sets::revision(&updated));
        if from != to {
            tracing::info!(replica_set = %rs.meta().name, from, to, "replica set runs the current template again; now the newest revision");
        }
        Ok(updated)
    }

    /// Writes the current revision on the deployment, as `kubectl rollout
    /// history` and `undo` read it; the deployment as it is now.
    async fn record_revision(
        &self,
        deployment: &Deployment,
        new: Option<&ReplicaSet>,
    ) -> Result<Deployment, Error> {
        let Some(revision) = new.map(|rs| sets::revision(rs).to_string()) else {
            return Ok(deployment.clone());
        };
        let annotate = |current: &Deployment| {
            (current.meta().annotations.get(sets::REVISION) != Some(&revision)).then(|| {
                let mut updated = current.clone();
                updated
                    .meta_mut()
                    .annotations
                    .insert(sets::REVISION.into(), revision.clone());
                updated
            })
        };
        Ok(
            fresh::update(&self.deployments, deployment, Part::Main, annotate)
                .await?
                .unwrap_or_else(|| deployment.clone()),
        )
    }

    async fn scale(
        &self,
        deployment: &Deployment,
        rs: &ReplicaSet,
        from: i32,
        to: i32,
    ) -> Result<(), Error> {
        let replicas = |set: &ReplicaSet| set.spec.as_ref().and_then(|s| s.replicas);
        // The plan scaled from `from`: a set found at another count when
        // the write is retried on the current object was changed by someone
        // else, and the reconcile plans again from what it now shows.
        let rescale = |current: &ReplicaSet| {
            (replicas(current) == replicas(rs)).then(|| {
                let mut scaled = current.clone();
                scaled
                    .spec
                    .get_or_insert_with(ReplicaSetSpec::default)
                    .replicas = Some(to);
                scaled
            })
        };
        if fresh::update(&self.replica_sets, rs, Part::Main, rescale)
            .await?
            .is_none()
        {
            return Err(Error::Changed(format!(
                "replica set {:?} was scaled by someone else meanwhile",
                rs.meta().name
            )));
        }
        tracing::info!(replica_set = %rs.meta().name, from, to, "scaled replica set");
        self.scaled_event(deployment, &rs.meta().name, from, to)
            .await;
        Ok(())
    }

    async fn scaled_event(&self, deployment: &Deployment, rs: &str, from: i32, to: i32) {
        let verb = if to > from { "up" } else { "down" };
        let message = format!("Scaled {verb} replica set {rs} from {from} to {to}");
        self.events.normal(deployment, "ScalingReplicaSet", message);
    }

    /// Creates the replica set of the current template. A name taken by a
    /// replica set of another template counts a collision in the status
    /// (the next try uses another name) and fails this reconcile.
    async fn create(
        &self,
        deployment: &Deployment,
        revision: i64,
        replicas: i32,
    ) -> Result<ReplicaSet, Error> {
        let rs = sets::new_replica_set(deployment, revision, replicas);
        let name = rs.meta().name.clone();
        match self.replica_sets.create(&rs).await {
            Ok(created) => {
                tracing::info!(replica_set = %name, revision, replicas, "created replica set");
                if replicas > 0 {
                    self.scaled_event(deployment, &name, 0, replicas).await;
                }
                Ok(created)
            }
            Err(moor_client::Error::AlreadyExists(refusal)) => {
                let existing = self.replica_sets.get(&rs.meta().namespace, &name).await?;
                let ours = pods::controller_of(existing.meta())
                    .is_some_and(|r| r.uid == deployment.meta().uid);
                let template = deployment.spec.as_ref().and_then(|s| s.template.as_ref());
                if ours && template.is_some_and(|t| sets::same_template(&existing, t)) {
                    // Created by an earlier pass the cache has not shown yet.
                    return Ok(existing);
                }
                let mut counted = deployment.clone();
                let status = counted.status.get_or_insert_with(Default::default);
                let collisions = status.collision_count.unwrap_or(0).saturating_add(1);
                status.collision_count = Some(collisions);
                self.deployments.update_status(&counted).await?;
                tracing::warn!(replica_set = %name, collisions, "replica set name taken; retrying with another");
                Err(moor_client::Error::AlreadyExists(refusal).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes old replica sets beyond `revisionHistoryLimit`, oldest first.
    async fn clean_history(
        &self,
        deployment: &Deployment,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let Some(limit) = deployment
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
        else {
            return Ok(());
        };
        for rs in plan::history_to_delete(old, limit) {
            let meta = rs.meta();
            let params = DeleteParams {
                uid: Some(meta.uid.clone()),
                ..Default::default()
            };
            match self
                .replica_sets
                .delete(&meta.namespace, &meta.name, &params)
                .await
            {
                Ok(_) | Err(moor_client::Error::NotFound(_)) => {
                    tracing::info!(replica_set = %meta.name, revision = sets::revision(rs), limit, "deleted old replica set beyond the revision history limit");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes `status` when it differs from the recorded one.
    async fn write_status(
        &self,
        deployment: &Deployment,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        // Status is this controller's alone: a conflict only means the
        // cache was behind, so the status goes onto the current object.
        let set = |current: &Deployment| {
            (current.status.as_ref() != Some(&status)).then(|| {
                let mut updated = current.clone();
                updated.status = Some(status.clone());
                updated
            })
        };
        fresh::update(&self.deployments, deployment, Part::Status, set).await?;
        Ok(())
    }
}

/// The status to record: counts over `all` replica sets, Available, and
/// Progressing (paused, a new set just `created` or found, or the rollout's
/// progress against its deadline).
fn progress(
    deployment: &Deployment,
    budget: Budget,
    current: Option<&ReplicaSet>,
    created: bool,
    all: &[&ReplicaSet],
    now: prost_types::Timestamp,
) -> DeploymentStatus {
    let mut status = status::calculate(deployment, budget, current, all, now);
    status::pause_condition(deployment, &mut status, now);
    let name = current.map(|rs| rs.meta().name.as_str());
    match name {
        Some(rs) if created => status::created(deployment, &mut status, rs, now),
        Some(rs) => status::found(deployment, &mut status, rs, now),
        None => {}
    }
    if !deployment.spec.as_ref().is_some_and(|s| s.paused) {
        status::rollout_condition(deployment, &mut status, name, now);
    }
    status
}

/// The replica set controlling `pod`, from the cache.
fn set_of(rs_cache: &Reader<ReplicaSet>, pod: &Pod) -> Option<std::sync::Arc<ReplicaSet>> {
    let owner = pods::controller_of(pod.meta()).filter(|r| r.kind == ReplicaSet::KIND)?;
    rs_cache
        .get(&pod.meta().namespace, &owner.name)
        .filter(|rs| rs.meta().uid == owner.uid)
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
