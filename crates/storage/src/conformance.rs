//! The conformance suite: the promises of [`Store`], as checks
//! every backend runs against itself.
//!
//! Each check is a `pub async fn` that takes a fresh, empty store (an
//! `Arc<dyn Store>`, since some checks write from several tasks) and panics
//! with a message naming the broken promise. A backend's test file runs all
//! of them, one `#[tokio::test]` each, with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```text
//! moor_storage::conformance_tests!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(dir.path()).unwrap();
//!     (store, dir) // the second value is kept alive until the check ends
//! });
//! ```
//!
//! The checks assume that nothing else writes to the store while they run,
//! but never that revisions start at a given number: etcd's are global and a
//! fresh etcd is already at revision 1. They only assume revisions increase.
//!
//! Prefixes, in `list` and `watch`, are plain byte prefixes: `/a/x` is under
//! the prefix `/a/x` but not under `/a/x/`; callers add the trailing `/`.

mod compaction;
mod crud;
mod pages;
mod watch;

use std::time::Duration;

use futures::StreamExt;

use crate::{Error, Event, EventKind, KeyValue, Store, WatchStream};

pub use compaction::compaction;
pub use crud::{
    concurrent_compare_and_swap, create_if_absent, delete_compare_and_swap, get_missing,
    list_prefix, revisions_increase, update_compare_and_swap, update_missing,
};
pub use pages::list_pages;
pub use watch::{watch_history_live_boundary, watch_prefix_filter, watch_replays_history};

/// How long a check waits for an event it expects before it fails. Generous:
/// it bounds a hang, it does not measure speed.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Expands to one `#[tokio::test]` per conformance check.
///
/// The argument is a future (usually an `async { .. }` block), evaluated
/// afresh for every test, that yields `(store, guard)`: `store` is a fresh,
/// empty value of a type implementing [`Store`](crate::Store), and `guard` is
/// anything that must live until the check ends (a temporary directory, a
/// test server), or `()`. The calling crate needs `tokio` (with the `macros`
/// and `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@each $fixture;
            get_missing,
            create_if_absent,
            update_compare_and_swap,
            update_missing,
            delete_compare_and_swap,
            revisions_increase,
            list_prefix,
            list_pages,
            concurrent_compare_and_swap,
            watch_replays_history,
            watch_history_live_boundary,
            watch_prefix_filter,
            compaction,
        );
    };
    (@each $fixture:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, guard) = $fixture.await;
                $crate::conformance::$check(::std::sync::Arc::new(store)).await;
                drop(guard);
            }
        )+
    };
}

/// The next item of `stream`, which must be an event; panics if the stream
/// fails, ends, or stays silent for [`EVENT_TIMEOUT`].
async fn next_event(stream: &mut WatchStream, waiting_for: &str) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed while waiting for {waiting_for}: {e}"),
        Ok(None) => panic!("watch stream ended while waiting for {waiting_for}"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?} while waiting for {waiting_for}"),
    }
}

/// Asserts that `event` is the expected change, revisions included.
fn assert_event(event: &Event, kind: EventKind, kv: &KeyValue, prev: Option<&KeyValue>) {
    assert_eq!(
        (event.kind, &event.kv, event.prev.as_ref()),
        (kind, kv, prev),
        "unexpected watch event (left: got, right: expected)"
    );
}

/// A `KeyValue` literal, for comparisons.
fn kv(key: &str, value: &str, create_revision: i64, mod_revision: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: bytes::Bytes::copy_from_slice(value.as_bytes()),
        create_revision,
        mod_revision,
    }
}

/// The store's current revision; panics if it cannot be read.
async fn current(store: &dyn Store) -> i64 {
    match store.current_revision().await {
        Ok(revision) => revision,
        Err(e) => panic!("current_revision failed: {e}"),
    }
}

/// Asserts that watching `prefix` after `after` reports the history as
/// compacted at `compacted`, either from `watch` itself or as the stream's
/// first item, and that the stream then ends.
async fn assert_compacted(store: &dyn Store, prefix: &str, after: i64, compacted: i64) {
    let error = match store.watch(prefix, after).await {
        Err(e) => e,
        Ok(mut stream) => {
            let error = match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
                Ok(Some(Err(e))) => e,
                other => panic!("watch after compacted revision {after}: got {other:?}"),
            };
            let rest = tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await;
            assert!(
                matches!(rest, Ok(None)),
                "a watch stream must end after its error, got {rest:?}"
            );
            error
        }
    };
    match error {
        Error::Compacted {
            requested,
            compacted: at,
        } => {
            assert_eq!(requested, after, "Compacted.requested");
            assert_eq!(at, compacted, "Compacted.compacted");
        }
        other => {
            panic!("watch after compacted revision {after}: expected Compacted, got {other:?}")
        }
    }
}
