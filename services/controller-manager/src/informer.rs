//! A cache of one kind fed by a resuming watch, which tells its handlers
//! about every change with the object's previous state (a pod whose labels
//! changed concerns the owners it matched before as well as after).

use std::collections::HashMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use moor_api::Resource;
use moor_client::watcher::Event;
use moor_client::{Api, ListParams, ObjectKey, Reader, Writer};
use tokio_util::sync::CancellationToken;

/// One change, after it was applied to the cache.
pub enum Change<'a, K> {
    /// Created (`old` is `None`) or changed.
    Applied {
        /// The object before, if the cache had it.
        old: Option<&'a K>,
        /// The object now.
        new: &'a K,
    },
    /// Deleted; its last state.
    Deleted(&'a K),
    /// The whole state was re-listed (after the objects that differ from
    /// the cache were reported as `Applied` and `Deleted`).
    Restarted(&'a [K]),
}

/// A handler of changes; runs on the informer's task, so it must be quick
/// (add to a queue, adjust counters).
pub type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send + Sync>;

/// The cache of one kind and the handlers told about its changes.
pub struct Informer<K> {
    writer: Writer<K>,
    reader: Reader<K>,
    handlers: Vec<Handler<K>>,
}

// === impl Informer ===

impl<K: Resource> Informer<K> {
    /// An empty informer; nothing is watched until [`Informer::run`].
    pub fn new() -> Self {
        let (writer, reader) = moor_client::store();
        Self {
            writer,
            reader,
            handlers: Vec::new(),
        }
    }

    /// A read handle on the cache.
    pub fn reader(&self) -> Reader<K> {
        self.reader.clone()
    }

    /// Adds a handler.
    pub fn on_change(&mut self, handler: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(handler));
    }

    /// Watches every object of `K` until `shutdown` is cancelled.
    pub async fn run(self, api: Api<K>, shutdown: CancellationToken) {
        let events = moor_client::watcher(api, ListParams::default());
        self.run_stream(events, shutdown).await;
    }

    /// Applies `events` (a watcher's stream, or in tests a delayed one)
    /// until `shutdown` is cancelled or the stream ends.
    pub async fn run_stream<S>(mut self, events: S, shutdown: CancellationToken)
    where
        S: Stream<Item = Result<Event<K>, moor_client::Error>>,
    {
        let mut events = std::pin::pin!(events);
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => self.apply(&event),
                Some(Err(error)) => {
                    tracing::debug!(kind = K::KIND, %error, "watch error; the watcher retries");
                }
                None => return,
            }
        }
    }

    fn apply(&mut self, event: &Event<K>) {
        match event {
            Event::Applied(new) => {
                let old: Option<Arc<K>> = self.reader.get_key(&ObjectKey::of(new));
                self.writer.apply(event);
                let change = || Change::Applied {
                    old: old.as_deref(),
                    new,
                };
                self.handlers.iter().for_each(|h| h(change()));
            }
            Event::Deleted(object) => {
                self.writer.apply(event);
                self.handlers
                    .iter()
                    .for_each(|h| h(Change::Deleted(object)));
            }
            Event::Restarted(objects) => {
                // What changed while the watch was down reaches the handlers
                // as the changes it was (creates and deletes are counted by
                // some), then the restart itself.
                let mut before: HashMap<ObjectKey, Arc<K>> = self
                    .reader
                    .list()
                    .into_iter()
                    .map(|o| (ObjectKey::of(o.as_ref()), o))
                    .collect();
                self.writer.apply(event);
                for new in objects {
                    let old = before.remove(&ObjectKey::of(new));
                    let unchanged = old
                        .as_ref()
                        .is_some_and(|o| o.meta().resource_version == new.meta().resource_version);
                    if !unchanged {
                        let old = old.as_deref();
                        self.handlers
                            .iter()
                            .for_each(|h| h(Change::Applied { old, new }));
                    }
                }
                for gone in before.values() {
                    self.handlers.iter().for_each(|h| h(Change::Deleted(gone)));
                }
                self.handlers
                    .iter()
                    .for_each(|h| h(Change::Restarted(objects)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use moor_api::core::v1::ConfigMap;
    use moor_api::meta::v1::ObjectMeta;

    use super::*;

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

    #[test]
    fn a_restart_reports_what_changed_meanwhile() {
        let mut informer = Informer::<ConfigMap>::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        informer.on_change(move |change| {
            let entry = match change {
                Change::Applied { old, new } => {
                    format!("applied {} old={}", new.meta().name, old.is_some())
                }
                Change::Deleted(o) => format!("deleted {}", o.meta().name),
                Change::Restarted(all) => format!("restarted {}", all.len()),
            };
            log.lock().unwrap().push(entry);
        });
        informer.apply(&Event::Restarted(vec![cm("a", "1"), cm("b", "2")]));
        informer.apply(&Event::Applied(cm("a", "3")));
        seen.lock().unwrap().clear();
        informer.apply(&Event::Restarted(vec![cm("a", "3"), cm("c", "5")]));
        assert_eq!(
            *seen.lock().unwrap(),
            ["applied c old=false", "deleted b", "restarted 2"]
        );
        assert!(informer.reader().get("default", "b").is_none());
    }
}
