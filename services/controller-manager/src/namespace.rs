//! The namespace controller: a namespace being deleted (phase Terminating)
//! has everything in it deleted, then its `kubernetes` finalizer removed,
//! which lets the apiserver remove it. Pods bound to a node are deleted
//! gracefully, so the namespace waits for their node agents.

use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::Namespace;
use moor_client::{Action, Api, Client, DeleteParams, ObjectKey, Reader};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};
use crate::kinds::Handles;
use crate::queue::{self, Queue, Worker};
use crate::{Config, Error};

/// The finalizer the apiserver puts on every namespace.
const FINALIZER: &str = "kubernetes";
/// Component name in logs.
const COMPONENT: &str = "namespace-controller";

/// The namespace controller.
pub struct Controller {
    api: Api<Namespace>,
    cache: Reader<Namespace>,
    handles: Handles,
    queue: Queue<ObjectKey>,
    worker: Worker<ObjectKey>,
    resync: Duration,
}

// === impl Controller ===

impl Controller {
    /// A controller deleting content through `handles`.
    pub fn new(
        client: &Client,
        cache: Reader<Namespace>,
        handles: Handles,
        config: &Config,
    ) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            api: client.api(),
            cache,
            handles,
            queue,
            worker,
            resync: config.namespace_resync,
        }
    }

    /// Subscribes to namespace changes.
    pub fn register(&self, namespaces: &mut Informer<Namespace>) {
        let queue = self.queue.clone();
        namespaces.on_change(move |change| match change {
            Change::Applied { new, .. } if terminating(new) => queue.add(ObjectKey::of(new)),
            Change::Applied { .. } | Change::Deleted(_) => {}
            Change::Restarted(all) => all
                .iter()
                .filter(|n| terminating(n))
                .for_each(|n| queue.add(ObjectKey::of(n))),
        });
    }

    /// Empties terminating namespaces until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(key) = self.worker.next(&shutdown).await {
            let result = self.reconcile(&key).await;
            self.worker.done(key, result, COMPONENT);
        }
    }

    #[tracing::instrument(skip_all, fields(namespace = %key))]
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(namespace) = self.cache.get_key(key) else {
            return Ok(Action::AwaitChange);
        };
        if !terminating(&namespace) {
            return Ok(Action::AwaitChange);
        }
        let name = &key.name;
        let remaining = self.delete_content(name).await?;
        if remaining > 0 {
            tracing::debug!(remaining, "waiting for content to go");
            return Ok(Action::Requeue(self.resync));
        }
        let mut finalized = namespace.as_ref().clone();
        if let Some(spec) = finalized.spec.as_mut() {
            spec.finalizers.retain(|f| f != FINALIZER);
        }
        match self.api.update(&finalized).await {
            Ok(_) | Err(moor_client::Error::NotFound(_)) => {
                tracing::info!("namespace emptied; finalizer removed");
                Ok(Action::AwaitChange)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object in `namespace`; returns how many are still there.
    async fn delete_content(&self, namespace: &str) -> Result<usize, Error> {
        let mut remaining = 0;
        for handle in self.handles.iter() {
            let objects = handle.list(namespace).await?;
            for meta in &objects {
                if meta.deletion_timestamp.is_none() {
                    let params = DeleteParams {
                        uid: Some(meta.uid.clone()),
                        ..Default::default()
                    };
                    match handle.delete(namespace, &meta.name, params).await {
                        Ok(()) | Err(moor_client::Error::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if !objects.is_empty() {
                remaining += handle.list(namespace).await?.len();
            }
        }
        Ok(remaining)
    }
}

/// Whether the namespace is being deleted and still holds our finalizer.
fn terminating(namespace: &Namespace) -> bool {
    namespace.meta().deletion_timestamp.is_some()
        && namespace
            .spec
            .as_ref()
            .is_some_and(|s| s.finalizers.iter().any(|f| f == FINALIZER))
}
