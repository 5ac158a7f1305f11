//! A cache of one kind's objects, fed by a [`watcher`](crate::watcher())
//! stream: one [`Writer`] applies events, any number of cheap [`Reader`]s
//! look objects up.
//!
//! Readers see whole objects (`Arc<K>`) as of the last applied event; they
//! never see a half-applied restart.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use moor_api::Resource;
use tokio::sync::watch;

use crate::Error;
use crate::watcher::Event;

/// Identifies an object: namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// The name.
    pub name: String,
}

type Objects<K> = Arc<RwLock<HashMap<ObjectKey, Arc<K>>>>;

/// The one writer of a store.
pub struct Writer<K> {
    objects: Objects<K>,
    ready: watch::Sender<bool>,
}

/// A read handle on a store; clone it freely.
pub struct Reader<K> {
    objects: Objects<K>,
    ready: watch::Receiver<bool>,
}

/// A new, empty store: its writer and a first reader.
pub fn store<K: Resource>() -> (Writer<K>, Reader<K>) {
    let objects = Objects::default();
    let (ready, ready_rx) = watch::channel(false);
    (
        Writer {
            objects: objects.clone(),
            ready,
        },
        Reader {
            objects,
            ready: ready_rx,
        },
    )
}

/// Applies each event of `stream` to `writer`, and passes the events on.
pub fn reflector<K, S>(mut writer: Writer<K>, stream: S) -> impl Stream<Item = S::Item>
where
    K: Resource,
    S: Stream<Item = Result<Event<K>, Error>>,
{
    stream.map(move |item| {
        if let Ok(event) = &item {
            writer.apply(event);
        }
        item
    })
}

// === impl ObjectKey ===

impl ObjectKey {
    /// The key of `object`.
    pub fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        Self {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

// === impl Writer ===

impl<K: Resource> Writer<K> {
    /// Applies one watcher event; a restart replaces the whole content and
    /// marks the store ready.
    pub fn apply(&mut self, event: &Event<K>) {
        // A std lock: held only for map operations, never across an await.
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Applied(object) => {
                objects.insert(ObjectKey::of(object), Arc::new(object.clone()));
            }
            Event::Deleted(object) => {
                objects.remove(&ObjectKey::of(object));
            }
            Event::Restarted(list) => {
                *objects = list
                    .iter()
                    .map(|o| (ObjectKey::of(o), Arc::new(o.clone())))
                    .collect();
                drop(objects);
                self.ready.send_replace(true);
            }
        }
    }

    /// Another reader of this store.
    pub fn reader(&self) -> Reader<K> {
        Reader {
            objects: self.objects.clone(),
            ready: self.ready.subscribe(),
        }
    }
}

// === impl Reader ===

impl<K> Clone for Reader<K> {
    fn clone(&self) -> Self {
        Self {
            objects: self.objects.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: Resource> Reader<K> {
    /// The object, if present.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.get_key(&key)
    }

    /// The object under `key`, if present.
    pub fn get_key(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Waits until the first full list has been applied (returns at once if
    /// it has, or if the writer is gone).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the writer was dropped: nothing more will come.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Whether the first full list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::ConfigMap;
    use moor_api::meta::v1::ObjectMeta;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                resource_version: rv.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn applies_events_and_becomes_ready_on_restart() {
        let (mut writer, reader) = store::<ConfigMap>();
        assert!(!reader.is_ready());
        writer.apply(&Event::Restarted(vec![cm("a", "1"), cm("b", "2")]));
        reader.wait_until_ready().await;
        assert_eq!(reader.list().len(), 2);
        writer.apply(&Event::Applied(cm("a", "3")));
        writer.apply(&Event::Deleted(cm("b", "4")));
        let a = reader.get("default", "a").unwrap();
        assert_eq!(a.meta().resource_version, "3");
        assert!(reader.clone().get("default", "b").is_none());
        writer.apply(&Event::Restarted(vec![cm("c", "5")]));
        assert!(reader.get("default", "a").is_none());
        assert_eq!(reader.list().len(), 1);
    }
}
