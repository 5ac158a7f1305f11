//! The generic store of one kind: create, get, list, update, update-status,
//! delete and watch, with preconditions, defaulting and validation from the
//! kind's strategy. One implementation serves every kind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use moor_api::WatchEvent;
use moor_api::core::v1::Namespace;
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListMeta, ListRequest, WatchRequest};
use moor_storage::Store;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::alloc::Allocator;
use crate::cache::{Cache, Start, decode};
use crate::error::Error;
use crate::kinds::Kind;
use crate::pages::ContinueToken;
use crate::propagation::Policy;
use crate::validate::{self, Errors};
use crate::watch::{self, Filter};

/// Keys read from the store at a time for a paged list.
const MAX_STORE_PAGE: usize = 1000;
/// Keys read at a time for a paged list with selectors.
const MIN_FILTERED_PAGE: usize = 100;

/// Largest object the apiserver stores, encoded.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// What every registry shares.
pub struct Shared {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Cluster IPs and node ports.
    pub alloc: Allocator,
    /// Ends watch streams on shutdown.
    pub shutdown: CancellationToken,
    /// How often watchers that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// The namespaces' watch cache, for the existence check on create.
    pub namespaces: Arc<Cache<Namespace>>,
    /// Each watch cache's "first listing loaded", awaited before serving.
    pub primed: std::sync::Mutex<Vec<tokio::sync::watch::Receiver<bool>>>,
    /// How requests rank for the in-flight limits; each kind's count of
    /// objects weighs its lists.
    pub ranking: Arc<crate::priority::Ranking>,
}

/// Which part of an object an update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Metadata and spec; the status is kept.
    Main,
    /// The status only.
    Status,
}

/// The store of one kind.
pub struct Registry<K> {
    shared: Arc<Shared>,
    cache: Arc<Cache<K>>,
}

// === impl Registry ===

impl<K: Kind> Registry<K> {
    /// A registry over a running cache.
    pub fn new(shared: Arc<Shared>, cache: Arc<Cache<K>>) -> Self {
        Self { shared, cache }
    }

    /// The kind's watch cache.
    pub fn cache(&self) -> &Arc<Cache<K>> {
        &self.cache
    }

    /// The store prefix of every object of the kind.
    pub fn prefix() -> String {
        format!("/registry/{}/", K::PLURAL)
    }

    fn key(namespace: &str, name: &str) -> String {
        if K::NAMESPACED {
            format!("/registry/{}/{}/{}", K::PLURAL, namespace, name)
        } else {
            format!("/registry/{}/{}", K::PLURAL, name)
        }
    }

    fn namespace_of(namespace: &str) -> String {
        match (K::NAMESPACED, namespace) {
            (false, _) => String::new(),
            (true, "") => "default".to_string(),
            (true, ns) => ns.to_string(),
        }
    }

    fn not_found(name: &str) -> Error {
        Error::NotFound {
            kind: K::KIND,
            name: name.to_string(),
        }
    }

    /// Creates an object.
    #[tracing::instrument(skip_all, fields(kind = K::KIND))]
    pub async fn create(&self, mut object: K) -> Result<K, Error> {
        object.set_type_meta();
        let meta = object.meta_mut();
        meta.namespace = Self::namespace_of(&meta.namespace);
        if meta.name.is_empty() && !meta.generate_name.is_empty() {
            meta.name = format!("{}{}", meta.generate_name, random_suffix());
        }
        meta.uid = uuid::Uuid::new_v4().to_string();
        meta.creation_timestamp = Some(now());
        meta.generation = 1;
        meta.resource_version.clear();
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        object.prepare_create();
        object.set_defaults();
        self.validate(&object, None)?;
        let meta = object.meta().clone();
        if K::NAMESPACED {
            self.ensure_namespace(&meta.namespace).await?;
        }
        let reserved = object.allocate(None, &self.shared.alloc).await?;
        let result = match encode(&object) {
            Ok(bytes) => self
                .shared
                .store
                .create(&Self::key(&meta.namespace, &meta.name), bytes)
                .await
                .map_err(|err| match err {
                    moor_storage::Error::AlreadyExists(_) => Error::AlreadyExists {
                        kind: K::KIND,
                        name: meta.name.clone(),
                    },
                    other => other.into(),
                }),
            Err(err) => Err(err),
        };
        match result {
            Ok(revision) => {
                object.meta_mut().resource_version = revision.to_string();
                tracing::debug!(namespace = %meta.namespace, name = %meta.name, revision, "created");
                Ok(object)
            }
            Err(err) => {
                self.shared.alloc.release(&reserved).await;
                Err(err)
            }
        }
    }

    /// Reads one object.
    pub async fn get(&self, req: &GetRequest) -> Result<K, Error> {
        let key = Self::key(&Self::namespace_of(&req.namespace), &req.name);
        let kv = self
            .shared
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Self::not_found(&req.name))?;
        decode(&kv)
    }

    /// Lists the objects passing the request's filters, consistent with the
    /// store at the returned list's resourceVersion.
    pub async fn list(&self, req: &ListRequest) -> Result<K::List, Error> {
        let filter = Filter::from_list::<K>(req)?;
        let prefix = match filter.namespace() {
            Some(ns) => format!("{}{}/", Self::prefix(), ns),
            None => Self::prefix(),
        };
        let limit = usize::try_from(req.limit)
            .map_err(|_| Error::BadRequest(format!("limit {}: must not be negative", req.limit)))?;
        if !req.r#continue.is_empty() {
            if !req.resource_version.is_empty() {
                return Err(Error::BadRequest(
                    "a continued list takes no resourceVersion: every page is read at the \
                     first page's"
                        .into(),
                ));
            }
            let token = ContinueToken::decode(&req.r#continue, &Self::prefix(), &prefix)?;
            return self.list_store(&prefix, &filter, limit, Some(token)).await;
        }
        match req.resource_version.as_str() {
            "" => self.list_store(&prefix, &filter, limit, None).await,
            "0" => {
                self.cache.wait_primed().await?;
                let (mut items, revision) = self.cache.list(&prefix, &filter);
                // The rest of a cut list comes from the store, at the
                // cache's revision: the store has that version.
                let mut next = None;
                if limit > 0 && items.len() > limit {
                    items.truncate(limit);
                    next = items.last().map(|last| ContinueToken {
                        revision,
                        key: Self::key(&last.meta().namespace, &last.meta().name),
                    });
                }
                let items = items.iter().map(|object| K::clone(object)).collect();
                Ok(Self::page(items, revision, next))
            }
            other => Err(Error::BadRequest(format!(
                "resourceVersion {other:?}: a list takes \"0\" (any cached version) or \
                 nothing (the latest)"
            ))),
        }
    }

    /// A list read from the store: everything now (`limit` 0, no token), or
    /// the page of at most `limit` matching objects after `from` at its
    /// revision, in pages from the store so that no more is decoded than
    /// the answer needs (beyond the store's last page).
    async fn list_store(
        &self,
        prefix: &str,
        filter: &Filter,
        limit: usize,
        from: Option<ContinueToken>,
    ) -> Result<K::List, Error> {
        if limit == 0 && from.is_none() {
            let (kvs, revision) = self.shared.store.list(prefix).await?;
            let mut items = Vec::with_capacity(kvs.len());
            for kv in &kvs {
                let object = decode::<K>(kv)?;
                if filter.matches(&object) {
                    items.push(object);
                }
            }
            return Ok(Self::page(items, revision, None));
        }
        let limit = if limit == 0 { usize::MAX } else { limit };
        let (mut revision, mut after) = match from {
            Some(token) => (Some(token.revision), Some(token.key)),
            None => (None, None),
        };
        let mut items = Vec::new();
        let mut last_key = None;
        loop {
            // Unfiltered, every key read is given out; filtered, a page
            // of some size saves round trips through sparse matches.
            let left = limit - items.len();
            let wanted = if filter.selects_all() {
                left.min(MAX_STORE_PAGE)
            } else {
                left.clamp(MIN_FILTERED_PAGE, MAX_STORE_PAGE)
            };
            let page = self
                .shared
                .store
                .list_page(prefix, after.as_deref(), wanted, revision)
                .await?;
            revision = Some(page.revision);
            let read = page.items.len();
            for (i, kv) in page.items.into_iter().enumerate() {
                let object = decode::<K>(&kv)?;
                if !filter.matches(&object) {
                    after = Some(kv.key);
                    continue;
                }
                items.push(object);
                if items.len() == limit {
                    // Cut here: what follows, in this page or the store's
                    // next, is the next page's.
                    if i + 1 < read || page.more {
                        last_key = Some(kv.key);
                    }
                    break;
                }
                after = Some(kv.key);
            }
            if items.len() == limit || !page.more {
                break;
            }
        }
        let revision = revision.unwrap_or_default();
        let next = last_key.map(|key| ContinueToken { revision, key });
        Ok(Self::page(items, revision, next))
    }

    /// A list message: `items` read at `revision`, leading on to `next`.
    fn page(items: Vec<K>, revision: i64, next: Option<ContinueToken>) -> K::List {
        K::into_list(
            items,
            ListMeta {
                resource_version: revision.to_string(),
                r#continue: next.map(|t| t.encode(&Self::prefix())).unwrap_or_default(),
            },
        )
    }

    /// Writes the metadata and spec (`Part::Main`) or the status of an
    /// object. A resourceVersion in the object makes the write conditional;
    /// without one, the latest version is updated.
    #[tracing::instrument(skip_all, fields(kind = K::KIND, ?part))]
    pub async fn update(&self, object: K, part: Part) -> Result<K, Error> {
        let meta = object.meta().clone();
        let namespace = Self::namespace_of(&meta.namespace);
        let key = Self::key(&namespace, &meta.name);
        let expected = parse_revision(&meta.resource_version)?;
        loop {
            let (kv, old) = self
                .read_checked(&key, &meta.name, expected, &meta.uid)
                .await?;
            let mut new = match part {
                Part::Main => {
                    let mut new = object.clone();
                    if K::STATUS == moor_api::StatusKind::Subresource {
                        new.copy_status_from(&old);
                    }
                    let kept = old.meta();
                    let m = new.meta_mut();
                    m.namespace = namespace.clone();
                    m.uid = kept.uid.clone();
                    m.creation_timestamp = kept.creation_timestamp;
                    m.deletion_timestamp = kept.deletion_timestamp;
                    m.deletion_grace_period_seconds = kept.deletion_grace_period_seconds;
                    m.generation = kept.generation;
                    m.generate_name = kept.generate_name.clone();
                    new
                }
                Part::Status => {
                    let mut new = old.clone();
                    new.copy_status_from(&object);
                    new
                }
            };
            new.set_type_meta();
            new.set_defaults();
            self.validate(&new, Some(&old))?;
            // The last finalizer gone from an object being deleted: remove it,
            // unless a grace period still waits for a confirmation (a zero
            // one was confirmed while finalizers held the object).
            let held = new.meta();
            if held.deletion_timestamp.is_some()
                && !new.has_finalizers()
                && (new.graceful_deletion().is_none()
                    || held.deletion_grace_period_seconds == Some(0))
            {
                match self
                    .remove(&key, new, kv.mod_revision, expected.is_some())
                    .await?
                {
                    Some(removed) => return Ok(removed),
                    None => continue,
                }
            }
            let reserved = new.allocate(Some(&old), &self.shared.alloc).await?;
            // After allocation, which fills in what the client left out
            // (cluster IP, node ports), so a no-op update stays a no-op.
            if new.desired_state() != old.desired_state() {
                new.meta_mut().generation = old.meta().generation + 1;
            }
            let bytes = encode(&new)?;
            if bytes == kv.value {
                return Ok(old);
            }
            match self.shared.store.update(&key, bytes, kv.mod_revision).await {
                Ok(revision) => {
                    let held = new.allocations();
                    let freed: Vec<String> = old
                        .allocations()
                        .into_iter()
                        .filter(|a| !held.contains(a))
                        .collect();
                    self.shared.alloc.release(&freed).await;
                    new.meta_mut().resource_version = revision.to_string();
                    return Ok(new);
                }
                Err(moor_storage::Error::Conflict { .. }) => {
                    self.shared.alloc.release(&reserved).await;
                    if expected.is_some() {
                        return Err(stale(K::KIND, &meta.name));
                    }
                }
                Err(moor_storage::Error::NotFound(_)) => return Err(Self::not_found(&meta.name)),
                Err(err) => {
                    self.shared.alloc.release(&reserved).await;
                    return Err(err.into());
                }
            }
        }
    }

    /// Reads the object at `key`, checking the caller's resourceVersion and
    /// uid preconditions.
    async fn read_checked(
        &self,
        key: &str,
        name: &str,
        expected: Option<i64>,
        uid: &str,
    ) -> Result<(moor_storage::KeyValue, K), Error> {
        let kv = self
            .shared
            .store
            .get(key)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        if expected.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(stale(K::KIND, name));
        }
        let object: K = decode(&kv)?;
        if !uid.is_empty() && uid != object.meta().uid {
            return Err(Error::Conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object.meta().uid
            )));
        }
        Ok((kv, object))
    }

    /// Removes an object from the store at `revision`; `Ok(None)` when it
    /// changed meanwhile and the caller should retry.
    async fn remove(
        &self,
        key: &str,
        mut object: K,
        revision: i64,
        strict: bool,
    ) -> Result<Option<K>, Error> {
        match self.shared.store.delete(key, Some(revision)).await {
            Ok((_, deleted_at)) => {
                self.shared.alloc.release(&object.allocations()).await;
                object.meta_mut().resource_version = deleted_at.to_string();
                tracing::debug!(%key, "removed");
                Ok(Some(object))
            }
            Err(moor_storage::Error::Conflict { .. }) if !strict => Ok(None),
            Err(moor_storage::Error::Conflict { .. }) => Err(stale(K::KIND, &object.meta().name)),
            Err(moor_storage::Error::NotFound(_)) => Err(Self::not_found(&object.meta().name)),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes an object: at once, or by marking it with a deletionTimestamp
    /// while finalizers or a grace period hold it. An Orphan or Foreground
    /// propagation policy adds the garbage collector's finalizer, so the
    /// object stays until the collector has dealt with its dependents.
    #[tracing::instrument(skip_all, fields(kind = K::KIND, name = %req.name, policy = %req.propagation_policy))]
    pub async fn delete(&self, req: &DeleteRequest) -> Result<K, Error> {
        let namespace = Self::namespace_of(&req.namespace);
        if K::KIND == "Namespace" && matches!(req.name.as_str(), "default" | "moor-system") {
            return Err(Error::FailedPrecondition(format!(
                "namespace {:?} may not be deleted",
                req.name
            )));
        }
        let policy = Policy::parse(&req.propagation_policy)?;
        let key = Self::key(&namespace, &req.name);
        let expected = parse_revision(&req.resource_version)?;
        loop {
            let (kv, mut object) = self
                .read_checked(&key, &req.name, expected, &req.uid)
                .await?;
            let grace = object
                .graceful_deletion()
                .map(|default| req.grace_period_seconds.unwrap_or(default).max(0));
            let grace = grace.unwrap_or(0);
            let finalizers_changed =
                Policy::apply(policy, K::KIND, &mut object.meta_mut().finalizers);
            if !object.has_finalizers() && grace == 0 {
                match self
                    .remove(&key, object, kv.mod_revision, expected.is_some())
                    .await?
                {
                    Some(removed) => return Ok(removed),
                    None => continue,
                }
            }
            let meta = object.meta_mut();
            // Not yet deleting, or deleting with a longer grace period: the
            // clock (re)starts.
            let start = meta.deletion_timestamp.is_none()
                || meta
                    .deletion_grace_period_seconds
                    .is_none_or(|current| grace < current);
            if !start && !finalizers_changed {
                return Ok(object);
            }
            if start {
                let deadline = seconds_from_now(grace).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "gracePeriodSeconds: {grace} puts the deletion past the year 9999"
                    ))
                })?;
                meta.deletion_timestamp = Some(deadline);
                meta.deletion_grace_period_seconds = Some(grace);
            }
            object.mark_deleting();
            match self
                .shared
                .store
                .update(&key, encode(&object)?, kv.mod_revision)
                .await
            {
                Ok(revision) => {
                    object.meta_mut().resource_version = revision.to_string();
                    return Ok(object);
                }
                Err(moor_storage::Error::Conflict { .. }) if expected.is_none() => continue,
                Err(moor_storage::Error::Conflict { .. }) => return Err(stale(K::KIND, &req.name)),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// A stream of changes passing the request's filters.
    pub async fn watch(
        &self,
        req: &WatchRequest,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, Status>>, Error> {
        let filter = Filter::from_watch::<K>(req)?;
        let after = parse_revision(&req.resource_version)?;
        self.cache.wait_primed().await?;
        let bookmarks = req.allow_bookmarks.then_some(self.shared.bookmark_interval);
        let shutdown = self.shared.shutdown.clone();
        let cache = self.cache.clone();
        let progress: watch::Progress = Arc::new(move || cache.revision());
        let mut history = None;
        let (first, seen, live) = match self.cache.subscribe_filtered(after, &filter) {
            (Start::Snapshot(objects, revision), live) => {
                let first = objects
                    .iter()
                    .filter(|o| filter.matches(&***o))
                    .map(|o| WatchEvent::new(moor_api::meta::v1::EventType::Added, (**o).clone()))
                    .collect();
                (first, revision, live)
            }
            (Start::Replay(changes), live) => {
                let seen = changes.last().map(|c| c.revision).or(after).unwrap_or(0);
                let first = changes.iter().filter_map(|c| filter.deliver(c)).collect();
                (first, seen, live)
            }
            // Older than the cache's changes (a watcher moving from another
            // apiserver to one started since): the store replays what the
            // cache lacks, up to where the cache's feed takes over, so the
            // watcher resumes rather than lists again. Where the store has
            // compacted it too, or the kind is written no more for a second
            // (nothing proves the replay complete), OUT_OF_RANGE: the client
            // lists again.
            (Start::History(until), live) => {
                let rv = after.unwrap_or(0);
                let stream = self
                    .shared
                    .store
                    .watch(&Self::prefix(), rv)
                    .await
                    .map_err(Error::from)?;
                history = Some(watch::History { stream, until });
                (Vec::new(), rv, live)
            }
        };
        Ok(watch::stream(
            filter, first, history, seen, live, progress, bookmarks, shutdown,
        ))
    }

    /// Writes an object as read (used by bind and scale), conditioned on
    /// `revision`; `Ok(None)` when it changed meanwhile.
    pub async fn write_at(&self, mut object: K, revision: i64) -> Result<Option<K>, Error> {
        let meta = object.meta().clone();
        let key = Self::key(&meta.namespace, &meta.name);
        match self
            .shared
            .store
            .update(&key, encode(&object)?, revision)
            .await
        {
            Ok(rv) => {
                object.meta_mut().resource_version = rv.to_string();
                Ok(Some(object))
            }
            Err(moor_storage::Error::Conflict { .. }) => Ok(None),
            Err(moor_storage::Error::NotFound(_)) => Err(Self::not_found(&meta.name)),
            Err(err) => Err(err.into()),
        }
    }

    fn validate(&self, object: &K, old: Option<&K>) -> Result<(), Error> {
        let mut errors = Errors::default();
        let meta = object.meta();
        validate::metadata(&mut errors, meta, K::NAMESPACED, K::NAME_IS_LABEL);
        if let Some(old) = old
            && old.meta().name != meta.name
        {
            errors.add("metadata.name", "Invalid value: field is immutable");
        }
        object.validate(old, &mut errors);
        errors.into_result(K::KIND, &meta.name)
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<(), Error> {
        let key = format!("/registry/namespaces/{namespace}");
        // The cache answers almost always without a store round trip; a
        // namespace created a moment ago may not be in it yet, so a miss
        // asks the store.
        let ns = match self.shared.namespaces.get(&key) {
            Some(ns) => ns,
            None => {
                let kv = self.shared.store.get(&key).await?;
                let kv = kv.ok_or(Error::NotFound {
                    kind: "Namespace",
                    name: namespace.to_string(),
                })?;
                Arc::new(decode::<Namespace>(&kv)?)
            }
        };
        if ns
            .metadata
            .as_ref()
            .is_some_and(|m| m.deletion_timestamp.is_some())
        {
            return Err(Error::FailedPrecondition(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }
}

/// Encodes an object for the store (without its resourceVersion, which is the
/// store's revision), refusing oversized objects.
pub fn encode<K: Kind>(object: &K) -> Result<Bytes, Error> {
    let mut copy = object.clone();
    copy.meta_mut().resource_version.clear();
    let bytes = prost::Message::encode_to_vec(&copy);
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(Error::ResourceExhausted(format!(
            "{} {:?} is too large: {} bytes, the limit is {} bytes (1.5 MiB)",
            K::KIND,
            object.meta().name,
            bytes.len(),
            MAX_OBJECT_BYTES
        )));
    }
    Ok(bytes.into())
}

/// Parses a resourceVersion; empty means none.
pub fn parse_revision(text: &str) -> Result<Option<i64>, Error> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| {
        Error::BadRequest(format!(
            "invalid resourceVersion {text:?}: must be a number from a previous response"
        ))
    })
}

fn stale(kind: &str, name: &str) -> Error {
    Error::Conflict(format!(
        "Operation cannot be fulfilled on {kind} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
    ))
}

/// The current time as a protobuf timestamp, whole seconds as Kubernetes keeps them.
pub fn now() -> prost_types::Timestamp {
    // Before the year 10000, whatever the clock says: zero otherwise.
    seconds_from_now(0).unwrap_or_default()
}

/// The time `seconds` from now; `None` past the last second a timestamp can
/// hold (9999-12-31T23:59:59Z, as RFC 3339 and Kubernetes' JSON allow).
fn seconds_from_now(seconds: i64) -> Option<prost_types::Timestamp> {
    const LAST: i64 = 253_402_300_799;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = i64::try_from(since.as_secs()).ok()?;
    let seconds = now.checked_add(seconds).filter(|s| *s <= LAST)?;
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = uuid::Uuid::new_v4().as_u128();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u128) as usize] as char;
            n /= ALPHABET.len() as u128;
            c
        })
        .collect()
}
