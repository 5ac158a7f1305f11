//! One watcher: filters shared changes for one client and turns them into
//! its stream. A watcher that falls behind the shared buffer is ended with
//! RESOURCE_EXHAUSTED instead of slowing the others.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use moor_api::meta::v1::{EventType, ListRequest, WatchRequest};
use moor_api::{Resource, WatchEvent};
use moor_labels::{FieldSelector, Selector};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::cache::{Change, Feed, Stop};
use crate::error::Error;

/// What a client asked to see.
#[derive(Clone, Debug)]
pub struct Filter {
    namespace: String,
    labels: Selector,
    fields: FieldSelector,
}

// === impl Filter ===

impl Filter {
    /// Parses the filters of a list request.
    pub fn from_list<K: Resource>(req: &ListRequest) -> Result<Self, Error> {
        Self::parse::<K>(&req.namespace, &req.label_selector, &req.field_selector)
    }

    /// Parses the filters of a watch request.
    pub fn from_watch<K: Resource>(req: &WatchRequest) -> Result<Self, Error> {
        Self::parse::<K>(&req.namespace, &req.label_selector, &req.field_selector)
    }

    fn parse<K: Resource>(namespace: &str, labels: &str, fields: &str) -> Result<Self, Error> {
        let labels = Selector::parse(labels).map_err(|e| Error::BadRequest(e.to_string()))?;
        let fields = FieldSelector::parse(fields).map_err(|e| Error::BadRequest(e.to_string()))?;
        fields
            .validate_keys(K::field_keys())
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let namespace = if K::NAMESPACED {
            namespace.to_string()
        } else {
            String::new()
        };
        Ok(Self {
            namespace,
            labels,
            fields,
        })
    }

    /// The namespace the filter is limited to, if any.
    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }

    /// The value `field` must equal, if the field selector says so.
    pub fn exact_field(&self, field: &str) -> Option<&str> {
        self.fields.exact(field)
    }

    /// Whether every object of the namespace passes (no selectors).
    pub fn selects_all(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether the object passes every filter.
    pub fn matches<K: Resource>(&self, object: &K) -> bool {
        let meta = object.meta();
        (self.namespace.is_empty() || meta.namespace == self.namespace)
            && self.labels.matches(&meta.labels)
            && (self.fields.is_empty() || self.fields.matches(|path| object.field(path)))
    }

    /// The event this watcher gets for a change, if any: an object that
    /// starts matching is ADDED for it, one that stops matching DELETED.
    pub fn deliver<K: Resource>(&self, change: &Change<K>) -> Option<WatchEvent<K>> {
        let now = self.matches(&*change.object);
        let before = change.prev.as_ref().is_some_and(|p| self.matches(&**p));
        let as_type = match (change.kind, before, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, _, true) => EventType::Deleted,
            (EventType::Deleted, true, false) => EventType::Deleted,
            _ => return None,
        };
        Some(change.encoded(as_type))
    }
}

/// The revision the watcher's source has sent every change up to (the
/// cache's): what a bookmark may report once the feed is drained, though
/// none of those changes were this watcher's.
pub type Progress = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How long the store's history may go without a change before a watcher
/// replaying it is sent to list again (see `Watcher::replay`). The store
/// sends the history it holds at once; this is for a kind nobody writes.
const HISTORY_QUIET: Duration = Duration::from_secs(1);

/// The store's changes a watcher needs before the cache's feed: those after
/// its resourceVersion up to `until`, the cache's revision when it started.
pub struct History {
    /// The store's watch from the watcher's resourceVersion.
    pub stream: moor_storage::WatchStream,
    /// Where the cache's feed takes over.
    pub until: i64,
}

/// The state of one watch stream.
struct Watcher<K> {
    filter: Filter,
    pending: std::vec::IntoIter<WatchEvent<K>>,
    /// The store's changes to deliver before the feed's; dropped once past
    /// `until`.
    history: Option<History>,
    live: Feed<K>,
    progress: Progress,
    /// Revision of the last change taken from the feed, delivered or not,
    /// or of the last bookmark: what a bookmark may safely report.
    seen: i64,
    bookmarked: i64,
    bookmarks: Option<tokio::time::Interval>,
    /// A bookmark is due at this revision once the feed holds nothing more.
    draining: Option<i64>,
    shutdown: CancellationToken,
    done: bool,
}

/// Builds a watch stream from its first events and its live feed.
#[allow(clippy::too_many_arguments)] // one watch's whole state, built once
pub fn stream<K: Resource>(
    filter: Filter,
    first: Vec<WatchEvent<K>>,
    history: Option<History>,
    seen: i64,
    live: Feed<K>,
    progress: Progress,
    bookmark_every: Option<Duration>,
    shutdown: CancellationToken,
) -> BoxStream<'static, Result<WatchEvent<K>, Status>> {
    let bookmarks = bookmark_every.map(|every| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let watcher = Watcher {
        filter,
        pending: first.into_iter(),
        history,
        live,
        progress,
        seen,
        bookmarked: seen,
        bookmarks,
        draining: None,
        shutdown,
        done: false,
    };
    futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    })
    .boxed()
}

// === impl Watcher ===

impl<K: Resource> Watcher<K> {
    async fn next(&mut self) -> Option<Result<WatchEvent<K>, Status>> {
        if self.done {
            return None;
        }
        if let Some(event) = self.pending.next() {
            return Some(Ok(event));
        }
        if let Some(item) = self.replay().await {
            return item;
        }
        loop {
            // A bookmark is due: deliver what the feed holds first, then
            // report the progress read before, which covers all of it. A
            // watcher of one node's pods so stays near the cache's revision
            // and can resume after a break without listing again.
            if let Some(at) = self.draining {
                let change = match self.live.try_recv() {
                    Some(change) => change.map_err(stopped),
                    None => {
                        self.draining = None;
                        self.seen = self.seen.max(at);
                        if self.seen > self.bookmarked {
                            self.bookmarked = self.seen;
                            return Some(Ok(bookmark::<K>(self.seen)));
                        }
                        continue;
                    }
                };
                match self.take(change) {
                    Some(item) => return item,
                    None => continue,
                }
            }
            let change = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.done = true;
                    return Some(Err(Status::unavailable(format!(
                        "apiserver is shutting down; watch again from resourceVersion {}", self.seen))));
                }
                change = self.live.recv() => change.map_err(stopped),
                _ = tick(&mut self.bookmarks) => {
                    self.draining = Some((self.progress)());
                    continue;
                }
            };
            if let Some(item) = self.take(change) {
                return item;
            }
        }
    }

    /// The next event of the store's history, while there is history to
    /// replay: `None` once it has reached where the feed takes over (the
    /// store watch is dropped: the feed holds the rest).
    async fn replay(&mut self) -> Option<Option<Result<WatchEvent<K>, Status>>> {
        loop {
            let history = self.history.as_mut()?;
            let next = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.done = true;
                    return Some(Some(Err(Status::unavailable(format!(
                        "apiserver is shutting down; watch again from resourceVersion {}", self.seen)))));
                }
                next = tokio::time::timeout(HISTORY_QUIET, history.stream.next()) => next,
            };
            let failed = |status: Status| Some(Some(Err(status)));
            let Ok(next) = next else {
                // Only a change past `until` proves that the store has
                // sent all before it; a kind written no more since may not
                // give one for long, and a store watch held meanwhile for
                // each such watcher would cost more than its list.
                self.done = true;
                return failed(Status::out_of_range(format!(
                    "the store's history went quiet before resourceVersion {}: list again",
                    history.until
                )));
            };
            match next {
                Some(Ok(event)) if event.kv.mod_revision > history.until => {
                    self.history = None;
                    return None;
                }
                Some(Ok(event)) => match Change::<K>::from_store(&event) {
                    Ok(change) => {
                        if let Some(item) = self.take(Ok(Arc::new(change))) {
                            return Some(item);
                        }
                    }
                    Err(err) => {
                        tracing::error!(%err, "skipping an undecodable stored object");
                    }
                },
                Some(Err(err)) => {
                    self.done = true;
                    return failed(crate::error::Error::from(err).into());
                }
                None => {
                    self.done = true;
                    return failed(Status::unavailable(format!(
                        "the store's watch ended; watch again from resourceVersion {}",
                        self.seen
                    )));
                }
            }
        }
    }

    /// What a change from the feed gives the client, if anything:
    /// `Err(None)` ends the stream quietly, `Err(Some(status))` with that
    /// status.
    fn take(
        &mut self,
        change: Result<Arc<Change<K>>, Option<Status>>,
    ) -> Option<Option<Result<WatchEvent<K>, Status>>> {
        match change {
            Ok(change) => {
                // Skip what this watcher has seen: a watch resumed from a
                // version the cache has not applied yet gets that change
                // live. Changes made up by a re-list share one revision, so
                // an equal revision passes for them.
                if change.revision < self.seen
                    || (change.revision == self.seen && !change.synthetic)
                {
                    return None;
                }
                self.seen = change.revision;
                self.filter.deliver(&change).map(|event| Some(Ok(event)))
            }
            Err(status) => {
                self.done = true;
                Some(status.map(Err))
            }
        }
    }
}

/// How a stopped feed ends the stream: quietly when the cache is gone,
/// with RESOURCE_EXHAUSTED for a watcher that fell behind.
fn stopped(stop: Stop) -> Option<Status> {
    match stop {
        Stop::Lagged(n) => Some(Status::resource_exhausted(format!(
            "watcher too slow: fell {n} events behind; list again and watch from the list's resourceVersion"
        ))),
        Stop::Closed => None,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A BOOKMARK event at `revision`.
pub fn bookmark<K: Resource>(revision: i64) -> WatchEvent<K> {
    let mut object = K::default();
    object.set_type_meta();
    object.meta_mut().resource_version = revision.to_string();
    WatchEvent::new(EventType::Bookmark, object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::ConfigMap;
    use moor_api::meta::v1::ObjectMeta;
    use tokio::sync::broadcast;

    fn change(revision: i64, name: &str, synthetic: bool) -> Arc<Change<ConfigMap>> {
        let object = ConfigMap {
            metadata: Some(ObjectMeta {
                name: name.into(),
                resource_version: revision.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut change = Change::new(revision, EventType::Added, Arc::new(object), None);
        change.synthetic = synthetic;
        Arc::new(change)
    }

    /// A watch resumed from version 3 before the cache applied 3 must not
    /// get 3 again when it arrives live; a re-list's made-up changes at one
    /// revision all arrive.
    #[tokio::test]
    async fn resumed_watchers_skip_what_they_saw_but_not_relist_changes() {
        let (tx, rx) = broadcast::channel(16);
        let filter = Filter::from_watch::<ConfigMap>(&WatchRequest::default()).unwrap();
        let mut stream = stream(
            filter,
            Vec::new(),
            None,
            3,
            Feed::Shared(rx),
            Arc::new(|| 0),
            None,
            CancellationToken::new(),
        );
        for c in [
            change(3, "seen", false),
            change(4, "a", true),
            change(4, "b", true),
            change(5, "c", false),
        ] {
            assert!(tx.send(c).is_ok());
        }
        let mut names = Vec::new();
        for _ in 0..3 {
            let event = stream.next().await.unwrap().unwrap();
            let decoded = <WatchEvent<ConfigMap> as prost::Message>::decode(
                prost::Message::encode_to_vec(&event).as_slice(),
            )
            .unwrap();
            names.push(decoded.object.unwrap().metadata.unwrap().name);
        }
        assert_eq!(names, ["a", "b", "c"]);
    }
}
