//! Every namespaced kind behind one object-safe handle, for the controllers
//! that treat kinds alike (garbage collection, namespace deletion).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use moor_api::Resource;
use moor_api::apps::v1::{Deployment, ReplicaSet};
use moor_api::coordination::v1::Lease;
use moor_api::core::v1::{
    ConfigMap, Endpoints, Event, Pod, ReplicationController, Secret, Service,
};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Api, Client, DeleteParams, ListParams, Reader};

/// The caches of the kinds the garbage collector follows.
pub struct Readers {
    /// Pods.
    pub pods: Reader<Pod>,
    /// Replication controllers.
    pub rcs: Reader<ReplicationController>,
    /// Replica sets.
    pub rss: Reader<ReplicaSet>,
    /// Deployments.
    pub deployments: Reader<Deployment>,
    /// Services.
    pub services: Reader<Service>,
    /// Endpoints.
    pub endpoints: Reader<Endpoints>,
    /// Config maps.
    pub config_maps: Reader<ConfigMap>,
    /// Secrets.
    pub secrets: Reader<Secret>,
}

/// One kind, seen through metadata only.
pub trait KindHandle: Send + Sync {
    /// The kind's name, as owner references spell it.
    fn kind(&self) -> &'static str;
    /// Whether a cache follows this kind (and so its objects' owners).
    fn is_cached(&self) -> bool;
    /// The cached object's metadata.
    fn cached(&self, namespace: &str, name: &str) -> Option<ObjectMeta>;
    /// Every cached object's metadata.
    fn cached_all(&self) -> Vec<ObjectMeta>;
    /// The object's metadata as the apiserver has it now.
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<ObjectMeta>, moor_client::Error>>;
    /// The metadata of every object in `namespace`, from the apiserver.
    fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Vec<ObjectMeta>, moor_client::Error>>;
    /// Deletes an object; `Ok` also when it is gone already.
    fn delete(
        &self,
        namespace: &str,
        name: &str,
        params: DeleteParams,
    ) -> BoxFuture<'_, Result<(), moor_client::Error>>;
    /// Rewrites the metadata of the object with `uid` through `edit`, which
    /// says whether it changed anything; reads the latest version and
    /// retries conflicts. `Ok` also when the object is gone or another
    /// incarnation holds the name.
    fn edit_meta<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
        edit: &'a (dyn Fn(&mut ObjectMeta) -> bool + Sync),
    ) -> BoxFuture<'a, Result<(), moor_client::Error>>;
}

/// Conflicting writes `edit_meta` retries before giving up (the caller's
/// queue retries later).
const EDIT_ATTEMPTS: usize = 5;

/// Every namespaced kind's handle.
#[derive(Clone)]
pub struct Handles(Arc<Vec<Arc<dyn KindHandle>>>);

/// A handle on kind `K`, with its cache when it has one.
struct Handle<K> {
    api: Api<K>,
    reader: Option<Reader<K>>,
}

// === impl Handles ===

impl Handles {
    /// Handles on every namespaced kind, cached where `readers` has a cache.
    pub fn new(client: &Client, readers: Readers) -> Self {
        let handles: Vec<Arc<dyn KindHandle>> = vec![
            handle(client, Some(readers.pods)),
            handle(client, Some(readers.rcs)),
            handle(client, Some(readers.rss)),
            handle(client, Some(readers.deployments)),
            handle(client, Some(readers.services)),
            handle(client, Some(readers.endpoints)),
            handle(client, Some(readers.config_maps)),
            handle(client, Some(readers.secrets)),
            handle::<Event>(client, None),
            handle::<Lease>(client, None),
        ];
        Self(Arc::new(handles))
    }

    /// The handle of `kind`, if it is a namespaced kind moor knows.
    pub fn by_kind(&self, kind: &str) -> Option<&dyn KindHandle> {
        self.0.iter().find(|h| h.kind() == kind).map(|h| h.as_ref())
    }

    /// Every handle.
    pub fn iter(&self) -> impl Iterator<Item = &dyn KindHandle> {
        self.0.iter().map(|h| h.as_ref())
    }
}

fn handle<K: Resource>(client: &Client, reader: Option<Reader<K>>) -> Arc<dyn KindHandle> {
    Arc::new(Handle {
        api: client.api::<K>(),
        reader,
    })
}

// === impl Handle ===

impl<K: Resource> KindHandle for Handle<K> {
    fn kind(&self) -> &'static str {
        K::KIND
    }

    fn is_cached(&self) -> bool {
        self.reader.is_some()
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        let object = self.reader.as_ref()?.get(namespace, name)?;
        Some(object.meta().clone())
    }

    fn cached_all(&self) -> Vec<ObjectMeta> {
        self.reader.as_ref().map_or_else(Vec::new, |r| {
            r.list().iter().map(|o| o.meta().clone()).collect()
        })
    }

    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<ObjectMeta>, moor_client::Error>> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        async move {
            match self.api.get(&namespace, &name).await {
                Ok(object) => Ok(Some(object.meta().clone())),
                Err(moor_client::Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Vec<ObjectMeta>, moor_client::Error>> {
        let params = ListParams::default().namespace(namespace);
        async move {
            let (objects, _) = self.api.list(&params).await?;
            Ok(objects.iter().map(|o| o.meta().clone()).collect())
        }
        .boxed()
    }

    fn delete(
        &self,
        namespace: &str,
        name: &str,
        params: DeleteParams,
    ) -> BoxFuture<'_, Result<(), moor_client::Error>> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        async move {
            match self.api.delete(&namespace, &name, &params).await {
                Ok(_) | Err(moor_client::Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    fn edit_meta<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
        edit: &'a (dyn Fn(&mut ObjectMeta) -> bool + Sync),
    ) -> BoxFuture<'a, Result<(), moor_client::Error>> {
        async move {
            let mut attempt = 1;
            loop {
                let mut object = match self.api.get(namespace, name).await {
                    Ok(object) => object,
                    Err(moor_client::Error::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                if object.meta().uid != uid || !edit(object.meta_mut()) {
                    return Ok(());
                }
                // Conditional on the resourceVersion just read.
                match self.api.update(&object).await {
                    Ok(_) | Err(moor_client::Error::NotFound(_)) => return Ok(()),
                    Err(moor_client::Error::Conflict(_)) if attempt < EDIT_ATTEMPTS => {
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        .boxed()
    }
}
