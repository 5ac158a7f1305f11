//! The garbage collector: an object whose owners (by uid) are all gone is
//! deleted, in the background; deleting it in turn lets its own dependents
//! go. An owner of a kind moor does not know is assumed to exist.
//!
//! Deletes with another propagation policy leave the owner in place with a
//! finalizer the collector then honours (`propagate`): `orphan` (the
//! dependents lose their ownerReferences and stay) and `foregroundDeletion`
//! (the dependents are deleted first, the owner once no blocking one is
//! left). Removing the finalizer lets the apiserver remove the owner.
//!
//! An owner missing from the cache is looked up on the apiserver before
//! anything is deleted, so a cache that lags (an owner created a moment
//! ago) never costs a dependent.

mod propagate;

use std::fmt;

use moor_api::Resource;
use moor_api::meta::v1::{ObjectMeta, OwnerReference};
use moor_client::{Action, DeleteParams, ObjectKey};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{Change, Informer};
use crate::kinds::{Handles, KindHandle};
use crate::queue::{self, Queue, Worker};

/// Component name in logs.
const COMPONENT: &str = "garbage-collector";

/// One object to check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Item {
    kind: &'static str,
    key: ObjectKey,
}

/// The garbage collector.
pub struct Collector {
    handles: Handles,
    queue: Queue<Item>,
    worker: Worker<Item>,
}

// === impl Item ===

impl Item {
    fn of(kind: &'static str, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            key: ObjectKey {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
            },
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

// === impl Collector ===

impl Collector {
    /// A collector over the kinds in `handles`.
    pub fn new(handles: Handles) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            handles,
            queue,
            worker,
        }
    }

    /// Subscribes to every followed kind.
    #[allow(clippy::too_many_arguments)]
    pub fn register_all(
        &self,
        pods: &mut Informer<moor_api::core::v1::Pod>,
        rcs: &mut Informer<moor_api::core::v1::ReplicationController>,
        rss: &mut Informer<moor_api::apps::v1::ReplicaSet>,
        deployments: &mut Informer<moor_api::apps::v1::Deployment>,
        services: &mut Informer<moor_api::core::v1::Service>,
        endpoints: &mut Informer<moor_api::core::v1::Endpoints>,
        config_maps: &mut Informer<moor_api::core::v1::ConfigMap>,
        secrets: &mut Informer<moor_api::core::v1::Secret>,
    ) {
        self.register(pods);
        self.register(rcs);
        self.register(rss);
        self.register(deployments);
        self.register(services);
        self.register(endpoints);
        self.register(config_maps);
        self.register(secrets);
    }

    /// Checks objects of `K` with owners or a propagation finalizer when
    /// they change, every dependent of a deleted `K`, and the owners being
    /// deleted in the foreground whose dependents change or go.
    fn register<K: Resource>(&self, informer: &mut Informer<K>) {
        let queue = self.queue.clone();
        let handles = self.handles.clone();
        informer.on_change(move |change| match change {
            Change::Applied { old, new } => {
                let meta = new.meta();
                if !meta.owner_references.is_empty() || propagate::pending(meta).is_some() {
                    queue.add(Item::of(K::KIND, meta));
                }
                let refs = old.into_iter().flat_map(|o| &o.meta().owner_references);
                for owner in refs.chain(&meta.owner_references) {
                    add_if_deleting(&queue, &handles, &meta.namespace, owner);
                }
            }
            Change::Deleted(object) => {
                let meta = object.meta();
                for handle in handles.iter().filter(|h| h.is_cached()) {
                    handle
                        .cached_all()
                        .iter()
                        .filter(|m| m.owner_references.iter().any(|r| r.uid == meta.uid))
                        .for_each(|m| queue.add(Item::of(handle.kind(), m)));
                }
                for owner in &meta.owner_references {
                    add_if_deleting(&queue, &handles, &meta.namespace, owner);
                }
            }
            Change::Restarted(all) => all
                .iter()
                .map(Resource::meta)
                .filter(|m| !m.owner_references.is_empty() || propagate::pending(m).is_some())
                .for_each(|m| queue.add(Item::of(K::KIND, m))),
        });
    }

    /// Collects until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(item) = self.worker.next(&shutdown).await {
            let result = self.check(&item).await;
            self.worker.done(item, result, COMPONENT);
        }
    }

    /// Honours the propagation finalizer of `item` being deleted; otherwise
    /// deletes `item` when none of its owners exists any more.
    #[tracing::instrument(skip_all, fields(object = %item))]
    async fn check(&self, item: &Item) -> Result<Action, Error> {
        let Some(handle) = self.handles.by_kind(item.kind) else {
            return Ok(Action::AwaitChange);
        };
        let Some(meta) = handle.cached(&item.key.namespace, &item.key.name) else {
            return Ok(Action::AwaitChange);
        };
        match propagate::pending(&meta) {
            Some(propagate::Pending::Orphan) => return self.orphan(handle, &meta).await,
            Some(propagate::Pending::Foreground) => return self.foreground(handle, &meta).await,
            None => {}
        }
        if meta.deletion_timestamp.is_some() || meta.owner_references.is_empty() {
            return Ok(Action::AwaitChange);
        }
        for owner in &meta.owner_references {
            if self.owner_exists(&meta.namespace, owner).await? {
                return Ok(Action::AwaitChange);
            }
        }
        let params = DeleteParams {
            uid: Some(meta.uid.clone()),
            propagation_policy: Some("Background".to_string()),
            ..Default::default()
        };
        match handle.delete(&meta.namespace, &meta.name, params).await {
            Ok(()) => tracing::info!("deleted: every owner is gone"),
            // The uid precondition failed: a new object took the name.
            Err(moor_client::Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::AwaitChange)
    }

    /// Whether the object `owner` names (in `namespace`) exists with its uid.
    async fn owner_exists(&self, namespace: &str, owner: &OwnerReference) -> Result<bool, Error> {
        let Some(handle) = self.handles.by_kind(&owner.kind) else {
            // Cluster-scoped or unknown kinds are not collected against.
            return Ok(true);
        };
        if cached_owner(handle, namespace, owner) {
            return Ok(true);
        }
        let live = handle.get(namespace, &owner.name).await?;
        Ok(live.is_some_and(|m| m.uid == owner.uid))
    }
}

/// Queues the owner `owner` names when the cache has it being deleted: a
/// change to one of its dependents may be what it waits for.
fn add_if_deleting(
    queue: &Queue<Item>,
    handles: &Handles,
    namespace: &str,
    owner: &OwnerReference,
) {
    let Some(handle) = handles.by_kind(&owner.kind) else {
        return;
    };
    if let Some(meta) = handle.cached(namespace, &owner.name)
        && meta.uid == owner.uid
        && propagate::pending(&meta).is_some()
    {
        queue.add(Item::of(handle.kind(), &meta));
    }
}

fn cached_owner(handle: &dyn KindHandle, namespace: &str, owner: &OwnerReference) -> bool {
    handle
        .cached(namespace, &owner.name)
        .is_some_and(|m| m.uid == owner.uid)
}
