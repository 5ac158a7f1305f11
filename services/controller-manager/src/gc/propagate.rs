//! Orphan and foreground deletion, as Kubernetes' garbage collector does
//! them: the apiserver marks the owner with a finalizer instead of removing
//! it, and the collector removes the finalizer once the dependents are dealt
//! with.
//!
//! - `orphan`: every dependent loses its ownerReferences to the owner (read
//!   from the apiserver, so none the cache has not seen yet is left to be
//!   collected), then the finalizer goes.
//! - `foregroundDeletion`: every dependent is deleted, in the foreground
//!   itself when it has dependents of its own, so chains go leaves first; a
//!   dependent that another live owner keeps only loses the reference. The
//!   finalizer goes once no dependent whose reference has
//!   `blockOwnerDeletion` is left, in the cache and then on the apiserver.

use std::collections::HashSet;

use moor_api::meta::v1::ObjectMeta;
use moor_client::{Action, DeleteParams};

use super::{Collector, cached_owner};
use crate::Error;
use crate::kinds::KindHandle;

pub use moor_api::well_known::{FINALIZER_FOREGROUND as FOREGROUND, FINALIZER_ORPHAN as ORPHAN};

/// Work a propagation finalizer asks of the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Unlink the dependents, then let the owner go.
    Orphan,
    /// Delete the dependents, and let the owner go when the blocking ones are gone.
    Foreground,
}

/// Objects of one namespace, each with its kind's handle, and which of
/// them own others.
struct Graph<'a> {
    objects: Vec<(&'a dyn KindHandle, ObjectMeta)>,
    owners: HashSet<String>,
}

// === impl Graph ===

impl<'a> Graph<'a> {
    fn new(objects: Vec<(&'a dyn KindHandle, ObjectMeta)>) -> Self {
        let owners = objects
            .iter()
            .flat_map(|(_, m)| m.owner_references.iter().map(|r| r.uid.clone()))
            .collect();
        Self { objects, owners }
    }

    /// The objects that reference `uid`.
    fn dependents_of<'g>(
        &'g self,
        uid: &'g str,
    ) -> impl Iterator<Item = &'g (&'a dyn KindHandle, ObjectMeta)> {
        self.objects
            .iter()
            .filter(move |(_, m)| m.owner_references.iter().any(|r| r.uid == uid))
    }

    /// Whether a dependent of `uid` holds its deletion back.
    fn blocks(&self, uid: &str) -> bool {
        self.dependents_of(uid).any(|(_, m)| {
            m.owner_references
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
        })
    }
}

// === impl Collector ===

impl Collector {
    /// Unlinks every dependent of `owner`, then removes its `orphan` finalizer.
    pub(super) async fn orphan(
        &self,
        handle: &dyn KindHandle,
        owner: &ObjectMeta,
    ) -> Result<Action, Error> {
        let graph = self.live_graph(&owner.namespace).await?;
        let unlink = unlink(&owner.uid);
        let mut orphaned = 0;
        for (dependent, meta) in graph.dependents_of(&owner.uid) {
            dependent
                .edit_meta(&meta.namespace, &meta.name, &meta.uid, &unlink)
                .await?;
            orphaned += 1;
        }
        remove_finalizer(handle, owner, ORPHAN).await?;
        tracing::info!(orphaned, "dependents orphaned; the owner is let go");
        Ok(Action::AwaitChange)
    }

    /// Deletes the dependents of `owner`; once no blocking one is left,
    /// removes its `foregroundDeletion` finalizer. Each dependent's removal
    /// queues the owner again.
    pub(super) async fn foreground(
        &self,
        handle: &dyn KindHandle,
        owner: &ObjectMeta,
    ) -> Result<Action, Error> {
        let cached = self.cached_graph(&owner.namespace);
        self.delete_dependents(owner, &cached).await?;
        if cached.blocks(&owner.uid) {
            return Ok(Action::AwaitChange);
        }
        // The cache may not have a dependent created a moment ago; when it
        // catches up, that dependent's change queues the owner again.
        let live = self.live_graph(&owner.namespace).await?;
        self.delete_dependents(owner, &live).await?;
        if live.blocks(&owner.uid) {
            return Ok(Action::AwaitChange);
        }
        remove_finalizer(handle, owner, FOREGROUND).await?;
        tracing::info!("no blocking dependent left; the owner is let go");
        Ok(Action::AwaitChange)
    }

    /// Deletes the dependents of `owner` (being deleted in the foreground)
    /// not yet being deleted; one that another live owner keeps only loses
    /// its reference to `owner`.
    async fn delete_dependents(&self, owner: &ObjectMeta, graph: &Graph<'_>) -> Result<(), Error> {
        for (dependent, meta) in graph.dependents_of(&owner.uid) {
            if meta.deletion_timestamp.is_some() {
                continue;
            }
            if self.kept_by_another(meta, &owner.uid).await? {
                dependent
                    .edit_meta(&meta.namespace, &meta.name, &meta.uid, &unlink(&owner.uid))
                    .await?;
                continue;
            }
            // Foreground again down a chain, so its own dependents go first;
            // a leaf needs no finalizer.
            let policy = if graph.owners.contains(&meta.uid) {
                "Foreground"
            } else {
                "Background"
            };
            let params = DeleteParams {
                uid: Some(meta.uid.clone()),
                propagation_policy: Some(policy.to_string()),
                ..Default::default()
            };
            match dependent.delete(&meta.namespace, &meta.name, params).await {
                Ok(()) => tracing::info!(
                    kind = dependent.kind(),
                    dependent = %meta.name,
                    policy,
                    "deleted: its owner is being deleted in the foreground"
                ),
                // The uid precondition failed: a new object took the name.
                Err(moor_client::Error::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Whether an owner of `meta` other than `uid` exists and is not itself
    /// waiting for its dependents to go (Kubernetes calls it solid).
    async fn kept_by_another(&self, meta: &ObjectMeta, uid: &str) -> Result<bool, Error> {
        for owner in meta.owner_references.iter().filter(|r| r.uid != uid) {
            let Some(handle) = self.handles.by_kind(&owner.kind) else {
                // Cluster-scoped or unknown kinds are assumed to exist.
                return Ok(true);
            };
            let found = if cached_owner(handle, &meta.namespace, owner) {
                handle.cached(&meta.namespace, &owner.name)
            } else {
                handle.get(&meta.namespace, &owner.name).await?
            };
            if found.is_some_and(|m| m.uid == owner.uid && pending(&m) != Some(Pending::Foreground))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The cached objects of every followed kind in `namespace`.
    fn cached_graph(&self, namespace: &str) -> Graph<'_> {
        let mut objects = Vec::new();
        for handle in self.handles.iter().filter(|h| h.is_cached()) {
            objects.extend(
                handle
                    .cached_all()
                    .into_iter()
                    .filter(|m| m.namespace == namespace)
                    .map(|m| (handle, m)),
            );
        }
        Graph::new(objects)
    }

    /// The objects of every followed kind in `namespace`, from the apiserver.
    async fn live_graph(&self, namespace: &str) -> Result<Graph<'_>, Error> {
        let mut objects = Vec::new();
        for handle in self.handles.iter().filter(|h| h.is_cached()) {
            objects.extend(
                handle
                    .list(namespace)
                    .await?
                    .into_iter()
                    .map(|m| (handle, m)),
            );
        }
        Ok(Graph::new(objects))
    }
}

/// The propagation finalizer `meta` waits on, if it is being deleted.
pub fn pending(meta: &ObjectMeta) -> Option<Pending> {
    meta.deletion_timestamp.as_ref()?;
    let has = |finalizer: &str| meta.finalizers.iter().any(|f| f == finalizer);
    if has(ORPHAN) {
        Some(Pending::Orphan)
    } else if has(FOREGROUND) {
        Some(Pending::Foreground)
    } else {
        None
    }
}

/// An edit dropping the ownerReferences to `uid`.
fn unlink(uid: &str) -> impl Fn(&mut ObjectMeta) -> bool + Sync + '_ {
    move |meta| {
        let before = meta.owner_references.len();
        meta.owner_references.retain(|r| r.uid != uid);
        meta.owner_references.len() != before
    }
}

async fn remove_finalizer(
    handle: &dyn KindHandle,
    owner: &ObjectMeta,
    finalizer: &str,
) -> Result<(), Error> {
    let edit = |meta: &mut ObjectMeta| {
        let before = meta.finalizers.len();
        meta.finalizers.retain(|f| f != finalizer);
        meta.finalizers.len() != before
    };
    handle
        .edit_meta(&owner.namespace, &owner.name, &owner.uid, &edit)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use moor_api::meta::v1::OwnerReference;

    use super::*;

    fn meta(finalizers: &[&str], deleting: bool) -> ObjectMeta {
        ObjectMeta {
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deletion_timestamp: deleting.then(prost_types::Timestamp::default),
            ..Default::default()
        }
    }

    #[test]
    fn only_objects_being_deleted_have_pending_work() {
        assert_eq!(pending(&meta(&[ORPHAN], true)), Some(Pending::Orphan));
        assert_eq!(
            pending(&meta(&["x", FOREGROUND], true)),
            Some(Pending::Foreground)
        );
        assert_eq!(pending(&meta(&[ORPHAN], false)), None);
        assert_eq!(pending(&meta(&["x"], true)), None);
    }

    #[test]
    fn unlink_drops_only_the_owners_references() {
        let reference = |uid: &str| OwnerReference {
            uid: uid.into(),
            ..Default::default()
        };
        let mut m = ObjectMeta {
            owner_references: vec![reference("a"), reference("b")],
            ..Default::default()
        };
        assert!(unlink("a")(&mut m));
        assert_eq!(m.owner_references, vec![reference("b")]);
        assert!(!unlink("a")(&mut m));
    }
}
