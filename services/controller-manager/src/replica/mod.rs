//! The replica controller: keeps `spec.replicas` active pods from each
//! owner's template, for ReplicationControllers and ReplicaSets alike (one
//! implementation over [`ReplicaOwner`]).
//!
//! Promises: pods are counted only when they match the owner's selector, are
//! controlled by it and are not being deleted; matching orphans are adopted
//! and pods that stop matching are released; while creates or deletes it
//! issued are not yet seen on the watch, it does not act again (so it never
//! overshoots); the status counts follow the pods.

mod expectations;
#[cfg(test)]
pub(crate) mod overshoot_tests;
mod owner;

pub use expectations::Expectations;
pub use owner::{Counts, ReplicaOwner};

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use moor_api::Resource;
use moor_api::core::v1::Pod;
use moor_api::meta::v1::{ObjectMeta, OwnerReference};
use moor_client::{Action, Api, Client, DeleteParams, ObjectKey, Reader};
use moor_labels::Selector;
use tokio_util::sync::CancellationToken;

use crate::fresh::{self, Part};
use crate::informer::{Change, Informer};
use crate::pods::{self, Availability};
use crate::queue::{self, Queue, Worker};
use crate::{Config, Error};
use moor_client::events::Recorder;

/// The replica controller for owners of kind `O`.
pub struct Controller<O> {
    owners: Api<O>,
    pods: Api<Pod>,
    owner_cache: Reader<O>,
    pod_cache: Reader<Pod>,
    expectations: Arc<Expectations>,
    events: Recorder,
    queue: Queue<ObjectKey>,
    worker: Worker<ObjectKey>,
    burst: usize,
}

// === impl Controller ===

impl<O: ReplicaOwner> Controller<O> {
    /// A controller reading owners and pods from the given caches.
    pub fn new(
        client: &Client,
        owner_cache: Reader<O>,
        pod_cache: Reader<Pod>,
        config: &Config,
    ) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            owners: client.api(),
            pods: client.api(),
            owner_cache,
            pod_cache,
            expectations: Arc::new(Expectations::new(config.expectations_timeout)),
            events: Recorder::new(client, O::COMPONENT),
            queue,
            worker,
            burst: config.burst_replicas.max(1),
        }
    }

    /// Subscribes to owner and pod changes.
    pub fn register(&self, owners: &mut Informer<O>, pods: &mut Informer<Pod>) {
        let queue = self.queue.clone();
        let expectations = self.expectations.clone();
        owners.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(ObjectKey::of(new)),
            Change::Deleted(owner) => expectations.forget(&ObjectKey::of(owner)),
            Change::Restarted(all) => all.iter().for_each(|o| queue.add(ObjectKey::of(o))),
        });
        let queue = self.queue.clone();
        let expectations = self.expectations.clone();
        let owner_cache = self.owner_cache.clone();
        pods.on_change(move |change| match change {
            Change::Applied { old, new } => {
                let controller = controlled_by::<O>(new);
                if let Some(key) = &controller {
                    if old.is_none() {
                        expectations.creation_observed(key);
                    }
                    if new.meta().deletion_timestamp.is_some() {
                        expectations.deletion_observed(key, &new.meta().name);
                    }
                    queue.add(key.clone());
                }
                let old_controller = old.and_then(controlled_by::<O>);
                if let Some(key) = old_controller.filter(|k| Some(k) != controller.as_ref()) {
                    queue.add(key);
                }
                let labels_changed = old.is_some_and(|o| o.meta().labels != new.meta().labels);
                if controller.is_none() || labels_changed {
                    // Owners that may adopt it, or that it left.
                    for pod in std::iter::once(new).chain(old) {
                        for key in matching_owners(&owner_cache, pod) {
                            queue.add(key);
                        }
                    }
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = controlled_by::<O>(pod) {
                    expectations.deletion_observed(&key, &pod.meta().name);
                    queue.add(key);
                }
            }
            Change::Restarted(_) => {
                for owner in owner_cache.list() {
                    queue.add(ObjectKey::of(owner.as_ref()));
                }
            }
        });
    }

    /// Reconciles owners until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = async {
                self.owner_cache.wait_until_ready().await;
                self.pod_cache.wait_until_ready().await;
            } => {}
        }
        while let Some(key) = self.worker.next(&shutdown).await {
            let result = self.reconcile(&key).await;
            self.worker.done(key, result, O::COMPONENT);
        }
    }

    /// Brings one owner's pods and status in line with its spec.
    #[tracing::instrument(skip_all, fields(kind = O::KIND, key = %key))]
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(owner) = self.owner_cache.get_key(key) else {
            self.expectations.forget(key);
            return Ok(Action::AwaitChange);
        };
        let selector = match owner.selector() {
            Ok(selector) => selector,
            Err(reason) => {
                tracing::warn!(%reason, "selector unusable; waiting for a change to the owner");
                return Ok(Action::AwaitChange);
            }
        };
        let owned = self.claim(&owner, &selector).await?;
        let mut active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| pods::is_active(p)).collect();
        if self.expectations.satisfied(key) && owner.meta().deletion_timestamp.is_none() {
            self.manage(key, &owner, &active).await?;
        }
        // A pod this controller deleted is no longer active, though the
        // cache has not seen it yet: the status says so at once, rather than
        // once the deletion comes back through the watch (a rolling update
        // waits for it before its next step).
        active.retain(|p| !self.expectations.deleting(key, &p.meta().name));
        self.update_status(&owner, &active).await
    }

    /// The pods `owner` controls after adopting matching orphans and
    /// releasing controlled pods that no longer match.
    async fn claim(&self, owner: &O, selector: &Selector) -> Result<Vec<Arc<Pod>>, Error> {
        let meta = owner.meta();
        let deleting = meta.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut errors = Vec::new();
        for pod in self.pod_cache.list() {
            let pod_meta = pod.meta();
            if pod_meta.namespace != meta.namespace {
                continue;
            }
            let matches = selector.matches(&pod_meta.labels);
            match pods::controller_of(pod_meta) {
                Some(r) if r.uid == meta.uid => {
                    if matches {
                        owned.push(pod);
                    } else if !deleting && let Err(e) = self.release(owner, &pod).await {
                        errors.push(e);
                    }
                }
                Some(_) => {}
                None if matches && !deleting && pods::is_active(&pod) => {
                    match self.adopt(owner, &pod).await {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(e) => errors.push(e),
                    }
                }
                None => {}
            }
        }
        Error::collect(errors)?;
        Ok(owned)
    }

    async fn adopt(&self, owner: &O, pod: &Pod) -> Result<Pod, Error> {
        let mut pod = pod.clone();
        pod.meta_mut().owner_references.push(owner_reference(owner));
        let adopted = self.pods.update(&pod).await?;
        tracing::info!(pod = %pod.meta().name, "adopted orphan pod");
        Ok(adopted)
    }

    async fn release(&self, owner: &O, pod: &Pod) -> Result<(), Error> {
        let mut pod = pod.clone();
        let uid = &owner.meta().uid;
        pod.meta_mut().owner_references.retain(|r| &r.uid != uid);
        match self.pods.update(&pod).await {
            Ok(_) => {
                tracing::info!(pod = %pod.meta().name, "released pod that stopped matching");
                Ok(())
            }
            Err(moor_client::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or deletes pods so that `active` reaches the desired count.
    async fn manage(&self, key: &ObjectKey, owner: &O, active: &[Arc<Pod>]) -> Result<(), Error> {
        let desired = usize::try_from(owner.replicas()).unwrap_or(0);
        if active.len() < desired {
            let count = (desired - active.len()).min(self.burst);
            self.create_pods(key, owner, count).await
        } else if active.len() > desired {
            let count = (active.len() - desired).min(self.burst);
            self.delete_pods(key, owner, active, count).await
        } else {
            Ok(())
        }
    }

    /// Creates `count` pods in batches of 1, 2, 4, ... (slow start, as
    /// Kubernetes does: a failing create does not fail `count` times).
    async fn create_pods(&self, key: &ObjectKey, owner: &O, count: usize) -> Result<(), Error> {
        let Some(pod) = pod_from_template(owner) else {
            tracing::warn!("no pod template; waiting for a change to the owner");
            return Ok(());
        };
        tracing::info!(count, "creating pods");
        self.expectations.expect_creates(key, count);
        let mut left = count;
        let mut batch = 1;
        while left > 0 {
            let n = batch.min(left);
            let results = join_all((0..n).map(|_| self.create_pod(owner, &pod))).await;
            left -= n;
            let failed: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
            if !failed.is_empty() {
                // Neither the failed creates nor the skipped ones will be seen.
                for _ in 0..failed.len() + left {
                    self.expectations.creation_observed(key);
                }
                return Error::collect(failed);
            }
            batch *= 2;
        }
        Ok(())
    }

    async fn create_pod(&self, owner: &O, pod: &Pod) -> Result<(), Error> {
        let created = self.pods.create(pod).await?;
        let name = &created.meta().name;
        tracing::debug!(pod = %name, "created pod");
        let message = format!("Created pod: {name}");
        self.events.normal(owner, "SuccessfulCreate", message);
        Ok(())
    }

    /// Deletes the `count` pods least worth keeping.
    async fn delete_pods(
        &self,
        key: &ObjectKey,
        owner: &O,
        active: &[Arc<Pod>],
        count: usize,
    ) -> Result<(), Error> {
        let mut ranked: Vec<&Arc<Pod>> = active.iter().collect();
        ranked.sort_by_key(|p| deletion_rank(p));
        let victims: Vec<&Arc<Pod>> = ranked.into_iter().take(count).collect();
        tracing::info!(count, "deleting pods");
        self.expectations
            .expect_deletes(key, victims.iter().map(|p| p.meta().name.clone()));
        let results = join_all(victims.iter().map(|p| self.delete_pod(key, owner, p))).await;
        Error::collect(results.into_iter().filter_map(Result::err).collect())
    }

    async fn delete_pod(&self, key: &ObjectKey, owner: &O, pod: &Pod) -> Result<(), Error> {
        let meta = pod.meta();
        let params = DeleteParams {
            uid: Some(meta.uid.clone()),
            ..Default::default()
        };
        match self.pods.delete(&meta.namespace, &meta.name, &params).await {
            Ok(_) => {
                let message = format!("Deleted pod: {}", meta.name);
                self.events.normal(owner, "SuccessfulDelete", message);
                Ok(())
            }
            Err(moor_client::Error::NotFound(_)) => {
                self.expectations.deletion_observed(key, &meta.name);
                Ok(())
            }
            Err(e) => {
                self.expectations.deletion_observed(key, &meta.name);
                Err(e.into())
            }
        }
    }

    /// Writes the status counts when they changed; asks to come back when a
    /// ready pod is about to become available.
    async fn update_status(&self, owner: &O, active: &[Arc<Pod>]) -> Result<Action, Error> {
        let min_ready = Duration::from_secs(u64::try_from(owner.min_ready_seconds()).unwrap_or(0));
        let now = pods::now();
        let template_labels = owner
            .template()
            .and_then(|t| t.metadata.as_ref())
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        let mut counts = Counts {
            replicas: count(active.len()),
            observed_generation: owner.meta().generation,
            ..Counts::default()
        };
        let mut requeue: Option<Duration> = None;
        for pod in active {
            let labels = &pod.meta().labels;
            if template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            {
                counts.fully_labeled_replicas += 1;
            }
            if pods::is_ready(pod) {
                counts.ready_replicas += 1;
            }
            match pods::available(pod, min_ready, now) {
                Availability::Yes => counts.available_replicas += 1,
                Availability::After(d) => requeue = Some(requeue.map_or(d, |r| r.min(d))),
                Availability::No => {}
            }
        }
        // Status is this controller's alone: a conflict only means the
        // cache was behind, so the counts go onto the current object.
        fresh::update(&self.owners, owner, Part::Status, |current| {
            (current.counts() != counts).then(|| {
                let mut updated = current.clone();
                updated.set_counts(counts);
                updated
            })
        })
        .await?;
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }
}

/// The owner of kind `O` controlling `pod`, if any.
fn controlled_by<O: Resource>(pod: &Pod) -> Option<ObjectKey> {
    let meta = pod.meta();
    pods::controller_of(meta)
        .filter(|r| r.kind == O::KIND)
        .map(|r| ObjectKey {
            namespace: meta.namespace.clone(),
            name: r.name.clone(),
        })
}

/// Owners in `pod`'s namespace whose selector matches its labels.
fn matching_owners<O: ReplicaOwner>(owners: &Reader<O>, pod: &Pod) -> Vec<ObjectKey> {
    let meta = pod.meta();
    owners
        .list()
        .iter()
        .filter(|o| o.meta().namespace == meta.namespace)
        .filter(|o| o.selector().is_ok_and(|s| s.matches(&meta.labels)))
        .map(|o| ObjectKey::of(o.as_ref()))
        .collect()
}

/// The reference a pod of `owner` carries.
fn owner_reference<O: Resource>(owner: &O) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: O::API_VERSION.to_string(),
        kind: O::KIND.to_string(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod from `owner`'s template, named `<owner>-<random>` by the apiserver.
fn pod_from_template<O: ReplicaOwner>(owner: &O) -> Option<Pod> {
    let template = owner.template()?;
    let meta = owner.meta();
    let template_meta = template.metadata.clone().unwrap_or_default();
    Some(Pod {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}-", meta.name),
            namespace: meta.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            owner_references: vec![owner_reference(owner)],
            ..Default::default()
        }),
        spec: template.spec.clone(),
        ..Default::default()
    })
}

/// Sorts pods to delete first: unbound before bound, pending before running,
/// not ready before ready, newer before older.
fn deletion_rank(pod: &Pod) -> (bool, u8, bool, Reverse<(i64, i32)>) {
    let bound = pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty());
    let phase = match pod.status.as_ref().map(|s| s.phase.as_str()) {
        Some("Pending") | None | Some("") => 0,
        Some("Running") => 2,
        Some(_) => 1,
    };
    let created = pod
        .meta()
        .creation_timestamp
        .map_or((0, 0), |t| (t.seconds, t.nanos));
    (bound, phase, pods::is_ready(pod), Reverse(created))
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{PodSpec, PodStatus};
    use moor_api::meta::v1::Condition;

    use super::*;

    fn pod(name: &str, node: &str, ready: bool, created: i64) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                creation_timestamp: Some(prost_types::Timestamp {
                    seconds: created,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: if node.is_empty() {
                    "Pending"
                } else {
                    "Running"
                }
                .into(),
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn deletes_unbound_then_unready_then_newest_first() {
        let mut pods = [
            pod("old-ready", "n1", true, 1),
            pod("new-ready", "n1", true, 5),
            pod("unready", "n1", false, 2),
            pod("unbound", "", false, 0),
        ];
        pods.sort_by_key(deletion_rank);
        let names: Vec<_> = pods.iter().map(|p| p.meta().name.as_str()).collect();
        assert_eq!(names, ["unbound", "unready", "new-ready", "old-ready"]);
    }
}
