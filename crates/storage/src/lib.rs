//! The `Store` trait: a revisioned key-value log, the only thing the apiserver
//! needs from a storage engine.
//!
//! Every write gets a new, strictly increasing revision shared by the whole
//! store (etcd's model). Keys are `/registry/<resource>/<namespace>/<name>` and
//! values are opaque bytes (protobuf, in moor). Backends promise:
//! - `create` succeeds only when the key is absent;
//! - `update` and `delete` with an expected revision succeed only when the
//!   key's `mod_revision` still equals it (compare-and-swap);
//! - `watch(prefix, after)` yields every change with a revision greater than
//!   `after`, in revision order, exactly once, or `Error::Compacted` when that
//!   history is gone;
//! - a write that fails (`AlreadyExists`, `NotFound`, `Conflict`) changes
//!   nothing and uses no revision;
//! - prefixes (`list`, `watch`) are plain byte prefixes: `/a/x` is under
//!   `/a/x` but not under `/a/x/`, so callers end a directory prefix in `/`.
//!
//! This crate knows nothing of any backend; `conformance` (feature
//! `conformance`) is the one suite every backend must pass.

#[cfg(feature = "conformance")]
pub mod conformance;

use bytes::Bytes;
use futures::stream::BoxStream;

/// One stored key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The value bytes.
    pub value: Bytes,
    /// Revision of the write that created the key (unchanged by updates).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created.
    Create,
    /// An existing key got a new value.
    Update,
    /// The key was deleted.
    Delete,
}

/// One change, as seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key after the change. For a delete: the key's last value, with
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The key's value before the change, where there was one.
    pub prev: Option<KeyValue>,
}

/// One page of a listing ([`Store::list_page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The keys of the page, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at.
    pub revision: i64,
    /// Keys remain after the page's last.
    pub more: bool,
}

/// The first key after `key` in byte order (itself plus a NUL): where a
/// listing that ended at `key` goes on.
pub fn key_after(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0"].concat()
}

/// A stream of changes, in revision order. An `Err` item is the last one:
/// the stream ends after it, and the caller watches again (or relists).
pub type WatchStream = BoxStream<'static, Result<Event, Error>>;

/// What a storage call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` of a key that exists.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// The key's revision is not the expected one.
    #[error("key {key} was modified: expected revision {expected}, current {current}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: i64,
        /// The key's current revision.
        current: i64,
    },
    /// A read at a revision the store has not reached.
    #[error("revision {0} is in the future: the store has not reached it")]
    FutureRevision(i64),
    /// History at or before the requested revision has been compacted away.
    #[error("revision {requested} is compacted (oldest kept after {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compaction point.
        compacted: i64,
    },
    /// The backend is not reachable or failed; the operation may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend failed in a way a retry will not fix.
    #[error("storage failure: {0}")]
    Internal(String),
}

/// A revisioned key-value log.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current key at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error>;

    /// Every key under `prefix`, in key order, and the store revision the
    /// listing is consistent at.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), Error>;

    /// At most `limit` (at least 1) keys under `prefix` that sort after
    /// `start_after` (`None`: from the first), in key order, as they were at
    /// `revision` (`None`: now). A revision before the compaction point
    /// fails with `Compacted`, one past the store's with `FutureRevision`.
    /// Reading every page of a listing at the first page's revision gives
    /// each key once, whatever is written meanwhile.
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<Page, Error>;

    /// Creates `key` if absent; returns its new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<i64, Error>;

    /// Replaces `key` if its `mod_revision` equals `expected`; returns the new
    /// revision.
    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64, Error>;

    /// Deletes `key`, if `expected` is given only when its `mod_revision`
    /// equals it; returns the deleted key (with its last revision) and the
    /// revision of the delete.
    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64), Error>;

    /// The latest revision of the whole store.
    async fn current_revision(&self) -> Result<i64, Error>;

    /// Changes under `prefix` with a revision greater than `after`, then live
    /// changes, until the stream is dropped. If `after` is below the
    /// compaction point, fails with `Compacted`, either here or as the
    /// stream's first item.
    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream, Error>;

    /// Forgets history at and before `revision` (current values stay).
    /// Compacting at or below the current compaction point does nothing;
    /// compacting past the store's revision is an error.
    async fn compact(&self, revision: i64) -> Result<(), Error>;
}
