//! What survives closing and reopening the database file.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moor_storage::{Error, EventKind, Store};
use moor_storage_sqlite::SqliteStore;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn data_and_revisions_survive_a_reopen() {
    moor_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (a, b) = ("/reopen/a", "/reopen/b");

    let store = SqliteStore::open(dir.path()).expect("open");
    let ra = store
        .create(a, Bytes::from_static(b"1"))
        .await
        .expect("create a");
    let ra = store
        .update(a, Bytes::from_static(b"2"), ra)
        .await
        .expect("update a");
    let rb = store
        .create(b, Bytes::from_static(b"1"))
        .await
        .expect("create b");
    // The newest row is a tombstone, which compaction removes: the next
    // revision must still be above it.
    let (_, deleted) = store.delete(b, None).await.expect("delete b");
    store.compact(deleted).await.expect("compact");
    assert!(deleted > rb);
    drop(store);

    let store = SqliteStore::open(dir.path()).expect("reopen");
    let got = store.get(a).await.expect("get a").expect("a survived");
    assert_eq!(
        (got.value, got.mod_revision),
        (Bytes::from_static(b"2"), ra)
    );
    assert_eq!(store.get(b).await.expect("get b"), None);
    assert_eq!(store.current_revision().await.expect("revision"), deleted);

    match store.watch("/reopen/", deleted - 1).await {
        Err(Error::Compacted { compacted, .. }) => assert_eq!(compacted, deleted),
        Err(e) => panic!("watch below the compaction point: {e}"),
        Ok(_) => panic!("watch below the compaction point succeeded after reopen"),
    }
    let mut watch = store.watch("/reopen/", deleted).await.expect("watch");
    let rc = store
        .create("/reopen/c", Bytes::new())
        .await
        .expect("create c");
    assert!(
        rc > deleted,
        "revision {rc} reused after reopen (last was {deleted})"
    );
    let event = tokio::time::timeout(WAIT, watch.next()).await;
    let event = event
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!((event.kind, event.kv.mod_revision), (EventKind::Create, rc));
}

#[tokio::test]
async fn watches_end_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open");
    let mut watch = store.watch("/", 0).await.expect("watch");
    drop(store);
    let item = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("item in time");
    assert!(matches!(item, Some(Err(Error::Unavailable(_)))), "{item:?}");
    let end = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("end in time");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn opening_makes_the_directory_and_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let nested = dir.path().join("state/moor");
    let store = SqliteStore::open(&nested).expect("open");
    assert_eq!(store.path(), nested.join(moor_storage_sqlite::FILE_NAME));
    assert!(store.path().is_file());
}

#[tokio::test]
async fn a_store_of_another_schema_version_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open");
    drop(store);
    // As a newer moor would leave it.
    let conn = rusqlite::Connection::open(dir.path().join("moor.db")).expect("sqlite opens");
    conn.execute(
        "UPDATE meta SET value = 99 WHERE name = 'schema_version'",
        [],
    )
    .expect("version rewritten");
    drop(conn);
    let Err(err) = SqliteStore::open(dir.path()) else {
        panic!("a store of another schema version was opened");
    };
    let text = err.to_string();
    assert!(
        text.contains("schema version 99") && text.contains("another --data-dir"),
        "{text}"
    );
}

#[tokio::test]
async fn an_open_store_keeps_others_out_until_closed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open");
    store
        .create("/lock/a", Bytes::from_static(b"1"))
        .await
        .expect("create");
    match SqliteStore::open(dir.path()) {
        Err(moor_storage_sqlite::Error::Locked { path }) => assert_eq!(path, dir.path()),
        Err(e) => panic!("a second open failed otherwise: {e}"),
        Ok(_) => panic!("a second open of an open store succeeded"),
    }
    // A read, so that a reader's connection is open too.
    assert_eq!(store.list("/lock/").await.expect("list").0.len(), 1);
    // Closed, its lock still held: the file is complete, and still no one
    // else may open it.
    let lock = store.close();
    let wal = dir.path().join("moor.db-wal");
    assert!(!wal.exists(), "{} is left", wal.display());
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(moor_storage_sqlite::Error::Locked { .. })
    ));
    drop(lock);
    let store = SqliteStore::open(dir.path()).expect("open once the lock is gone");
    let got = store.get("/lock/a").await.expect("get").expect("kept");
    assert_eq!(got.value, Bytes::from_static(b"1"));
}
