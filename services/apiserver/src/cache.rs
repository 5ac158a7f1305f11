//! The watch cache of one resource: current objects plus a ring buffer of
//! recent events, fed by a single store watch, fanned out to every watcher.
//!
//! A lock guards the state; `apply` pushes to the ring and broadcasts while
//! holding it, and `subscribe` copies the ring and subscribes while holding
//! it, so a new watcher sees each event exactly once: in its replay or live.
//! The lock is never held across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};

use futures::StreamExt;
use moor_api::meta::v1::EventType;
use moor_api::{Resource, WatchEvent};
use moor_storage::{Event, EventKind, KeyValue, Store};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// One change of one object, shared by every watcher.
pub struct Change<K> {
    /// Store revision of the change.
    pub revision: i64,
    /// Added, Modified or Deleted.
    pub kind: EventType,
    /// The object after the change (for a delete: its last state).
    pub object: Arc<K>,
    /// The object before the change.
    pub prev: Option<Arc<K>>,
    /// Made up by a re-list (several share its revision), not read from
    /// the store's log.
    pub synthetic: bool,
    /// The encoded events, built at most once per event type.
    encoded: [OnceLock<WatchEvent<K>>; 3],
}

// === impl Change ===

impl<K: Resource> Change<K> {
    /// A change.
    pub fn new(revision: i64, kind: EventType, object: Arc<K>, prev: Option<Arc<K>>) -> Self {
        Self {
            revision,
            kind,
            object,
            prev,
            synthetic: false,
            encoded: Default::default(),
        }
    }

    /// The change as a watch event of type `as_type`, encoded on first use.
    pub fn encoded(&self, as_type: EventType) -> WatchEvent<K> {
        let slot = match as_type {
            EventType::Added => 0,
            EventType::Deleted => 2,
            _ => 1,
        };
        self.encoded[slot]
            .get_or_init(|| WatchEvent::encode_once(as_type, &self.object))
            .clone()
    }

    /// Builds a change from a store event.
    pub fn from_store(event: &Event) -> Result<Self, Error> {
        let object = Arc::new(decode::<K>(&event.kv)?);
        let prev = match &event.prev {
            Some(kv) => Some(Arc::new(decode::<K>(kv)?)),
            None => None,
        };
        let kind = match event.kind {
            EventKind::Create => EventType::Added,
            EventKind::Update => EventType::Modified,
            EventKind::Delete => EventType::Deleted,
        };
        Ok(Self::new(event.kv.mod_revision, kind, object, prev))
    }
}

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode<K: Resource>(kv: &KeyValue) -> Result<K, Error> {
    let mut object = K::decode(kv.value.as_ref()).map_err(|err| {
        Error::Internal(format!(
            "stored {} at {} does not decode: {err}",
            K::KIND,
            kv.key
        ))
    })?;
    object.meta_mut().resource_version = kv.mod_revision.to_string();
    Ok(object)
}

/// A live feed of changes.
pub type Live<K> = broadcast::Receiver<Arc<Change<K>>>;

/// Changes a watcher of one indexed value may fall behind by before it is
/// ended (and lists again): such a feed carries one node's pods, not the
/// cluster's, so it needs far less room than the shared one.
const TRIGGER_CAPACITY: usize = 256;
/// How long a request waits for a cache's first listing before it is
/// refused as UNAVAILABLE (clients retry): a store unreachable at start
/// must not hang every Watch and List. Kubernetes' cacher answers 429
/// "storage is (re)initializing" the same way.
pub const PRIMED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A watcher's live feed: the shared one (every change of the kind), or
/// its own of the changes touching one value of the indexed field. Its own
/// is a queue that lets go of each change once taken: a ring per value
/// would keep the last changes of every node's pods alive, gigabytes at
/// thousands of nodes.
pub enum Feed<K> {
    /// Every change, shared with every other such watcher.
    Shared(Live<K>),
    /// This watcher's own changes.
    Own {
        /// The changes.
        rx: tokio::sync::mpsc::Receiver<Arc<Change<K>>>,
        /// Set when the cache dropped the feed for being full.
        lagged: Arc<std::sync::atomic::AtomicBool>,
    },
}

/// Why a feed gave no change.
pub enum Stop {
    /// The watcher fell this many changes (or more) behind.
    Lagged(u64),
    /// The cache is gone.
    Closed,
}

// === impl Feed ===

impl<K> Feed<K> {
    /// The next change.
    pub async fn recv(&mut self) -> Result<Arc<Change<K>>, Stop> {
        match self {
            Feed::Shared(rx) => rx.recv().await.map_err(|err| match err {
                broadcast::error::RecvError::Lagged(n) => Stop::Lagged(n),
                broadcast::error::RecvError::Closed => Stop::Closed,
            }),
            Feed::Own { rx, lagged } => match rx.recv().await {
                Some(change) => Ok(change),
                None => Err(Self::ended(lagged)),
            },
        }
    }

    /// The next change if one is waiting (`None`: none is).
    pub fn try_recv(&mut self) -> Option<Result<Arc<Change<K>>, Stop>> {
        match self {
            Feed::Shared(rx) => match rx.try_recv() {
                Ok(change) => Some(Ok(change)),
                Err(broadcast::error::TryRecvError::Empty) => None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(Stop::Lagged(n))),
                Err(broadcast::error::TryRecvError::Closed) => Some(Err(Stop::Closed)),
            },
            Feed::Own { rx, lagged } => match rx.try_recv() {
                Ok(change) => Some(Ok(change)),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    Some(Err(Self::ended(lagged)))
                }
            },
        }
    }

    fn ended(lagged: &std::sync::atomic::AtomicBool) -> Stop {
        if lagged.load(std::sync::atomic::Ordering::Acquire) {
            Stop::Lagged(TRIGGER_CAPACITY as u64)
        } else {
            Stop::Closed
        }
    }
}

/// The cache's end of a watcher's own feed.
struct Trigger<K> {
    tx: tokio::sync::mpsc::Sender<Arc<Change<K>>>,
    lagged: Arc<std::sync::atomic::AtomicBool>,
}

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a new watcher starts.
pub enum Start<K> {
    /// Every current object as ADDED, at the cache's revision.
    Snapshot(Vec<Arc<K>>, i64),
    /// The buffered changes after the requested revision.
    Replay(Vec<Arc<Change<K>>>),
    /// The requested revision is older than the buffered changes (a cache
    /// started, or re-listed, after it): the changes up to this revision,
    /// the cache's, are the store's to replay, if it still has them.
    History(i64),
}

struct State<K> {
    objects: BTreeMap<String, Arc<K>>,
    /// Keys by the value of the indexed field (`Cache::indexed`).
    by_field: HashMap<String, BTreeSet<String>>,
    events: VecDeque<Arc<Change<K>>>,
    /// Latest revision applied.
    revision: i64,
    /// Every change after this revision is in `events`.
    floor: i64,
}

/// The watch cache of one resource.
pub struct Cache<K> {
    state: RwLock<State<K>>,
    /// Live feeds of the changes touching one value of the indexed field
    /// (its old or new value), for watchers that select that value: a
    /// node agent's watch wakes for its own pods only, not for every pod
    /// of the cluster (Kubernetes' watch cache triggers).
    triggers: std::sync::Mutex<HashMap<String, Vec<Trigger<K>>>>,
    /// The field whose values key an index (pods: `spec.nodeName`, so a
    /// node's pod list costs its own pods, not the cluster's).
    index: Option<&'static str>,
    live: broadcast::Sender<Arc<Change<K>>>,
    capacity: usize,
    primed: tokio::sync::watch::Sender<bool>,
}

// === impl Cache ===

impl<K: Resource> Cache<K> {
    /// An empty cache keeping `capacity` recent events.
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::build(capacity, None)
    }

    /// [`Cache::new`], with lists that select one value of `field` answered
    /// from an index on it.
    pub fn indexed(capacity: usize, field: &'static str) -> Arc<Self> {
        Self::build(capacity, Some(field))
    }

    fn build(capacity: usize, index: Option<&'static str>) -> Arc<Self> {
        let (live, _) = broadcast::channel(capacity.max(16));
        let (primed, _) = tokio::sync::watch::channel(false);
        Arc::new(Self {
            index,
            triggers: std::sync::Mutex::default(),
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                by_field: HashMap::new(),
                events: VecDeque::new(),
                revision: 0,
                floor: 0,
            }),
            live,
            capacity,
            primed,
        })
    }

    /// Whether the first listing is loaded, as it changes.
    pub fn primed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.primed.subscribe()
    }

    /// Waits until the first listing is loaded, for [`PRIMED_WITHIN`] at
    /// most.
    pub async fn wait_primed(&self) -> Result<(), Error> {
        let mut rx = self.primed.subscribe();
        // An error means the sender is gone, which outlives every caller.
        match tokio::time::timeout(PRIMED_WITHIN, rx.wait_for(|primed| *primed)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Unavailable(format!(
                "the {} cache has not loaded within {PRIMED_WITHIN:?}: the store does not \
                 answer its list; try again",
                K::KIND
            ))),
        }
    }

    /// The cached object at `key`, if the cache has seen it.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// Whether any cached object under `prefix` satisfies `test`.
    pub fn any_under(&self, prefix: &str, test: impl Fn(&K) -> bool) -> bool {
        self.read()
            .objects
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .any(|(_, object)| test(object))
    }

    /// The cached objects under `prefix` that pass `filter`, and the
    /// revision they are current at. A filter on one value of the indexed
    /// field reads only the objects with that value.
    pub fn list(&self, prefix: &str, filter: &crate::watch::Filter) -> (Vec<Arc<K>>, i64) {
        let state = self.read();
        let indexed = self
            .index
            .and_then(|field| Some((field, filter.exact_field(field)?)));
        let items = match indexed {
            Some((_, value)) => state
                .by_field
                .get(value)
                .into_iter()
                .flatten()
                .filter(|key| key.starts_with(prefix))
                .filter_map(|key| state.objects.get(key))
                .filter(|object| filter.matches(&***object))
                .cloned()
                .collect(),
            None => state
                .objects
                .range(prefix.to_string()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(_, object)| object)
                .filter(|object| filter.matches(&***object))
                .cloned()
                .collect(),
        };
        (items, state.revision)
    }

    /// The latest revision applied.
    pub fn revision(&self) -> i64 {
        self.read().revision
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Starts a watcher: its starting events and a live receiver, taken
    /// atomically. `after: None` asks for a snapshot.
    pub fn subscribe(&self, after: Option<i64>) -> (Start<K>, Live<K>) {
        // Subscribed under the state lock, as `apply` sends under it: no
        // change falls between the start and the feed.
        let state = self.read();
        let start = Self::start(&state, after, None);
        (start, self.live.subscribe())
    }

    /// [`Cache::subscribe`] for a watcher that passes `filter`: one that
    /// selects a single value of the indexed field gets only the changes
    /// touching that value live (its start is filtered by the caller).
    pub fn subscribe_filtered(
        &self,
        after: Option<i64>,
        filter: &crate::watch::Filter,
    ) -> (Start<K>, Feed<K>) {
        let trigger = self.index.and_then(|field| filter.exact_field(field));
        // Under the state lock, as in `subscribe`.
        let state = self.read();
        let start = Self::start(&state, after, trigger);
        let live = match trigger {
            None => Feed::Shared(self.live.subscribe()),
            Some(value) => self.own_feed(value),
        };
        (start, live)
    }

    /// Where a watcher of `trigger` (a value of the indexed field; `None`:
    /// every object) starts, after `after` (`None`: a snapshot).
    fn start(state: &State<K>, after: Option<i64>, trigger: Option<&str>) -> Start<K> {
        match (after, trigger) {
            // One value's watcher starts with that value's objects only.
            (None, Some(value)) => Start::Snapshot(
                state
                    .by_field
                    .get(value)
                    .into_iter()
                    .flatten()
                    .filter_map(|key| state.objects.get(key).cloned())
                    .collect(),
                state.revision,
            ),
            (None, None) => {
                Start::Snapshot(state.objects.values().cloned().collect(), state.revision)
            }
            (Some(rv), _) if rv < state.floor => Start::History(state.revision),
            (Some(rv), _) => Start::Replay(
                state
                    .events
                    .iter()
                    .filter(|e| e.revision > rv)
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// A new feed of its own for a watcher of one value of the indexed field.
    fn own_feed(&self, value: &str) -> Feed<K> {
        let (tx, rx) = tokio::sync::mpsc::channel(TRIGGER_CAPACITY);
        let lagged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut triggers = locked(&self.triggers);
        let feeds = triggers.entry(value.to_owned()).or_default();
        // Watchers of this value that went away, without a change since to
        // notice it.
        feeds.retain(|feed| !feed.tx.is_closed());
        feeds.push(Trigger {
            tx,
            lagged: lagged.clone(),
        });
        Feed::Own { rx, lagged }
    }

    /// Applies one store event.
    fn apply(&self, change: Change<K>, key: &str) {
        let change = Arc::new(change);
        let mut state = self.write();
        if change.revision <= state.revision {
            return;
        }
        let object = (change.kind != EventType::Deleted).then(|| change.object.clone());
        let old = self.put(&mut state, key, object);
        state.revision = change.revision;
        self.trigger(old.as_deref(), &change);
        state.events.push_back(change.clone());
        while state.events.len() > self.capacity {
            if let Some(old) = state.events.pop_front() {
                state.floor = old.revision;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(change);
    }

    /// Replaces the content with a fresh listing at `revision`, emitting the
    /// differences as changes (after a lost or compacted store watch).
    fn reset(&self, items: Vec<(String, K)>, revision: i64) {
        let primed = *self.primed.borrow();
        let fresh: BTreeMap<String, Arc<K>> =
            items.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        if !primed {
            let mut state = self.write();
            state.by_field = HashMap::new();
            if let Some(field) = self.index {
                for (key, object) in &fresh {
                    let value = object.field(field).unwrap_or_default();
                    state.by_field.entry(value).or_default().insert(key.clone());
                }
            }
            state.objects = fresh;
            state.revision = revision;
            state.floor = revision;
            drop(state);
            self.primed.send_replace(true);
            return;
        }
        let old = self.read().objects.clone();
        for (key, object) in &fresh {
            match old.get(key) {
                None => self.apply_at(key, EventType::Added, object.clone(), None, revision),
                Some(prev) if prev.meta().resource_version != object.meta().resource_version => {
                    self.apply_at(
                        key,
                        EventType::Modified,
                        object.clone(),
                        Some(prev.clone()),
                        revision,
                    )
                }
                Some(_) => {}
            }
        }
        for (key, prev) in &old {
            if !fresh.contains_key(key) {
                let mut last = (**prev).clone();
                last.meta_mut().resource_version = revision.to_string();
                self.apply_at(
                    key,
                    EventType::Deleted,
                    Arc::new(last),
                    Some(prev.clone()),
                    revision,
                );
            }
        }
        let mut state = self.write();
        state.revision = state.revision.max(revision);
    }

    /// Applies a synthetic change at `revision` (several may share it).
    fn apply_at(
        &self,
        key: &str,
        kind: EventType,
        object: Arc<K>,
        prev: Option<Arc<K>>,
        revision: i64,
    ) {
        let mut change = Change::new(revision, kind, object.clone(), prev);
        change.synthetic = true;
        let change = Arc::new(change);
        let mut state = self.write();
        let object = (kind != EventType::Deleted).then_some(object);
        let old = self.put(&mut state, key, object);
        self.trigger(old.as_deref(), &change);
        state.events.push_back(change.clone());
        while state.events.len() > self.capacity {
            if let Some(old) = state.events.pop_front() {
                state.floor = old.revision;
            }
        }
        let _ = self.live.send(change);
    }

    /// Feeds the cache from the store until `shutdown`: list, then watch;
    /// re-watch after an error, re-list when history is gone.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        prefix: String,
        shutdown: CancellationToken,
    ) {
        let backoff = std::time::Duration::from_millis(500);
        'relist: loop {
            let listed = tokio::select! {
                _ = shutdown.cancelled() => return,
                listed = store.list(&prefix) => listed,
            };
            let (kvs, revision) = match listed {
                Ok(listed) => listed,
                Err(err) => {
                    tracing::warn!(%prefix, %err, "watch cache cannot list; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let items = kvs
                .iter()
                .filter_map(|kv| match decode::<K>(kv) {
                    Ok(object) => Some((kv.key.clone(), object)),
                    Err(err) => {
                        // Left out of the cache, and said so, as the watch
                        // below does for an undecodable change.
                        tracing::error!(%err, "skipping undecodable stored object");
                        None
                    }
                })
                .collect();
            self.reset(items, revision);
            loop {
                let after = self.revision();
                let stream = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    stream = store.watch(&prefix, after) => stream,
                };
                let mut stream = match stream {
                    Ok(stream) => stream,
                    Err(moor_storage::Error::Compacted { .. }) => continue 'relist,
                    Err(err) => {
                        tracing::warn!(%prefix, %err, "watch cache cannot watch; retrying");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                };
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok(event)) => match Change::<K>::from_store(&event) {
                            Ok(change) => self.apply(change, &event.kv.key),
                            Err(err) => tracing::error!(%err, "skipping undecodable stored object"),
                        },
                        Some(Err(moor_storage::Error::Compacted { .. })) => continue 'relist,
                        Some(Err(err)) => {
                            tracing::warn!(%prefix, %err, "store watch failed; resuming");
                            tokio::time::sleep(backoff).await;
                            break;
                        }
                        None => {
                            tokio::time::sleep(backoff).await;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Sends `change` to the watchers of the indexed field's value before
    /// (`old`, the cached object it replaces) and after; drops the feeds
    /// nobody listens to any more.
    fn trigger(&self, old: Option<&K>, change: &Arc<Change<K>>) {
        let Some(field) = self.index else {
            return;
        };
        let mut values = vec![change.object.field(field).unwrap_or_default()];
        for object in old.into_iter().chain(change.prev.as_deref()) {
            let value = object.field(field).unwrap_or_default();
            if !values.contains(&value) {
                values.push(value);
            }
        }
        let mut triggers = locked(&self.triggers);
        for value in values {
            let Some(feeds) = triggers.get_mut(&value) else {
                continue;
            };
            feeds.retain(|feed| match feed.tx.try_send(change.clone()) {
                Ok(()) => true,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender ends the feed once the watcher
                    // has taken what it holds; the flag says why.
                    feed.lagged
                        .store(true, std::sync::atomic::Ordering::Release);
                    false
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
            });
            if feeds.is_empty() {
                triggers.remove(&value);
            }
        }
    }

    /// Stores `object` at `key` (`None`: removes it), keeping the index;
    /// returns what was there.
    fn put(&self, state: &mut State<K>, key: &str, object: Option<Arc<K>>) -> Option<Arc<K>> {
        let old = match &object {
            Some(object) => state.objects.insert(key.to_string(), object.clone()),
            None => state.objects.remove(key),
        };
        let Some(field) = self.index else {
            return old;
        };
        let old_value = old.as_ref().map(|o| o.field(field).unwrap_or_default());
        let new_value = object.map(|o| o.field(field).unwrap_or_default());
        if old_value == new_value {
            return old;
        }
        if let Some(value) = old_value
            && let Some(keys) = state.by_field.get_mut(&value)
        {
            keys.remove(key);
            if keys.is_empty() {
                state.by_field.remove(&value);
            }
        }
        if let Some(value) = new_value {
            state
                .by_field
                .entry(value)
                .or_default()
                .insert(key.to_string());
        }
        old
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<K>> {
        // A poisoned lock means a panic mid-update; the state is still
        // consistent enough to serve (each update is a few assignments).
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<K>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{Pod, PodSpec};
    use moor_api::meta::v1::{ListRequest, ObjectMeta};

    use super::*;
    use crate::watch::Filter;

    fn pod(name: &str, node: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn on(node: &str) -> Filter {
        Filter::from_list::<Pod>(&ListRequest {
            field_selector: format!("spec.nodeName={node}"),
            ..Default::default()
        })
        .expect("valid")
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_that_never_loads_refuses_within_its_deadline() {
        let cache = Cache::<Pod>::new(16);
        let waited = tokio::time::timeout(PRIMED_WITHIN * 10, cache.wait_primed()).await;
        let Ok(Err(Error::Unavailable(message))) = waited else {
            panic!("refused as unavailable within the deadline, not {waited:?}");
        };
        assert!(message.contains("Pod cache has not loaded"), "{message}");
    }

    fn names(cache: &Cache<Pod>, filter: &Filter) -> Vec<String> {
        let (items, _) = cache.list("/p/", filter);
        items.iter().map(|p| p.meta().name.clone()).collect()
    }

    fn change(revision: i64, kind: EventType, pod: Pod) -> Change<Pod> {
        Change::new(revision, kind, Arc::new(pod), None)
    }

    #[test]
    fn the_index_follows_creates_moves_and_deletes() {
        let cache = Cache::<Pod>::indexed(16, "spec.nodeName");
        cache.reset(vec![("/p/default/a".into(), pod("a", "n1"))], 1);
        cache.apply(change(2, EventType::Added, pod("b", "")), "/p/default/b");
        assert_eq!(names(&cache, &on("n1")), ["a"]);
        assert_eq!(names(&cache, &on("")), ["b"]);
        // b is bound to n1, a moves to n2 (as a re-created pod would).
        cache.apply(
            change(3, EventType::Modified, pod("b", "n1")),
            "/p/default/b",
        );
        cache.apply(
            change(4, EventType::Modified, pod("a", "n2")),
            "/p/default/a",
        );
        assert_eq!(names(&cache, &on("n1")), ["b"]);
        assert_eq!(names(&cache, &on("n2")), ["a"]);
        assert!(names(&cache, &on("")).is_empty());
        cache.apply(
            change(5, EventType::Deleted, pod("b", "n1")),
            "/p/default/b",
        );
        assert!(names(&cache, &on("n1")).is_empty());
        assert!(!cache.read().by_field.contains_key("n1"), "empty sets go");
        // A re-list rebuilds it from what is there.
        cache.reset(vec![("/p/default/c".into(), pod("c", "n1"))], 9);
        assert_eq!(names(&cache, &on("n1")), ["c"]);
        assert!(names(&cache, &on("n2")).is_empty());
        assert_eq!(cache.revision(), 9);
    }

    #[test]
    fn a_watcher_of_one_node_is_woken_by_its_pods_only() {
        let cache = Cache::<Pod>::indexed(16, "spec.nodeName");
        cache.reset(vec![("/p/default/a".into(), pod("a", ""))], 1);
        let (_, mut n1) = cache.subscribe_filtered(Some(1), &on("n1"));
        let (_, mut all) = cache.subscribe(Some(1));
        cache.apply(change(2, EventType::Added, pod("b", "n2")), "/p/default/b");
        assert!(n1.try_recv().is_none(), "another node's pod is not sent");
        // a is bound to n1: the change reaches n1's feed by its new value.
        cache.apply(
            change(3, EventType::Modified, pod("a", "n1")),
            "/p/default/a",
        );
        let sent = |feed: &mut Feed<Pod>| match feed.try_recv() {
            Some(Ok(change)) => change.revision,
            _ => panic!("nothing sent"),
        };
        assert_eq!(sent(&mut n1), 3);
        cache.apply(
            change(4, EventType::Deleted, pod("a", "n1")),
            "/p/default/a",
        );
        assert_eq!(sent(&mut n1), 4);
        assert!(n1.try_recv().is_none());
        let revisions: Vec<i64> = std::iter::from_fn(|| all.try_recv().ok())
            .map(|c| c.revision)
            .collect();
        assert_eq!(
            revisions,
            [2, 3, 4],
            "an unfiltered watcher gets everything"
        );
        // A feed nobody listens to goes with its next change.
        drop(n1);
        cache.apply(change(5, EventType::Added, pod("c", "n1")), "/p/default/c");
        assert!(!locked(&cache.triggers).contains_key("n1"));
    }

    /// A node's feed lets go of each change once taken: only the shared
    /// history keeps changes, and only its last `capacity`. A watcher that
    /// does not take its changes is ended as lagging, not buffered for.
    #[test]
    fn a_nodes_feed_keeps_no_change_it_delivered_and_ends_a_laggard() {
        let cache = Cache::<Pod>::indexed(16, "spec.nodeName");
        cache.reset(Vec::new(), 1);
        let (_, mut n1) = cache.subscribe_filtered(Some(1), &on("n1"));
        cache.apply(change(2, EventType::Added, pod("a", "n1")), "/p/default/a");
        let first = match n1.try_recv() {
            Some(Ok(change)) => Arc::downgrade(&change),
            _ => panic!("the change is sent"),
        };
        // More than the history holds, on another node.
        for rev in 3..40 {
            cache.apply(
                change(rev, EventType::Added, pod(&format!("p{rev}"), "n2")),
                &format!("/p/default/p{rev}"),
            );
        }
        assert!(
            first.upgrade().is_none(),
            "a delivered change out of the history is freed"
        );

        let (_, mut slow) = cache.subscribe_filtered(Some(39), &on("n3"));
        let beyond = i64::try_from(TRIGGER_CAPACITY).expect("small") + 41;
        for rev in 40..=beyond {
            cache.apply(
                change(rev, EventType::Added, pod(&format!("s{rev}"), "n3")),
                &format!("/p/default/s{rev}"),
            );
        }
        let mut taken = 0;
        let stop = loop {
            match slow.try_recv() {
                Some(Ok(_)) => taken += 1,
                Some(Err(stop)) => break stop,
                None => panic!("the feed of a laggard ends"),
            }
        };
        assert_eq!(taken, TRIGGER_CAPACITY, "what fit is delivered first");
        assert!(matches!(stop, Stop::Lagged(_)), "ended as lagging");
    }
}
