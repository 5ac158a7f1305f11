//! The shared `Store` conformance suite, on a fresh SQLite file per test.

use moor_storage_sqlite::{Options, SqliteStore};

/// With the default event buffer: watchers normally follow live events.
mod default_buffer {
    use super::*;

    moor_storage::conformance_tests!(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path()).expect("open store");
        (store, dir)
    });
}

/// With a two-event buffer: watchers lag all the time, so every live watch
/// also exercises the fall-back to rereading the log.
mod tiny_buffer {
    use super::*;

    moor_storage::conformance_tests!(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = Options { event_buffer: 2 };
        let store = SqliteStore::open_with(dir.path(), &options).expect("open store");
        (store, dir)
    });
}
