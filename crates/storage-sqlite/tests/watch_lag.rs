//! A watch of a quiet prefix beside a busy one: it moves past the busy
//! prefix's writes (live, and when it reads the log after falling behind)
//! and still gets each change of its own once, in order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moor_storage::{EventKind, Store};
use moor_storage_sqlite::{Options, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_behind_a_busy_prefix_gets_each_of_its_changes_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Two events of room: the watch lags at every burst.
    let options = Options { event_buffer: 2 };
    let store = SqliteStore::open_with(dir.path(), &options).expect("open store");
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/quiet/", start).await.expect("watch");

    let mut want = Vec::new();
    for round in 0..5u32 {
        // A burst on the busy prefix, unread: the watch falls behind.
        for i in 0..40 {
            store
                .create(&format!("/busy/{round}-{i}"), Bytes::from_static(b"x"))
                .await
                .expect("busy write");
        }
        let key = format!("/quiet/{round}");
        let rev = store
            .create(&key, Bytes::from(round.to_string()))
            .await
            .expect("quiet write");
        want.push((key.clone(), rev));
        // Read up to this round's change, then more busy writes seen live.
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .expect("no error");
        assert_eq!(event.kind, EventKind::Create);
        assert_eq!(
            (event.kv.key.clone(), event.kv.mod_revision),
            (key, rev),
            "round {round}: the quiet prefix's change, once"
        );
    }
    // Live now: one busy write and one quiet update, read as they come.
    store
        .create("/busy/last", Bytes::from_static(b"x"))
        .await
        .expect("busy write");
    let (key, rev) = want.last().cloned().expect("a quiet key");
    let updated = store
        .update(&key, Bytes::from_static(b"new"), rev)
        .await
        .expect("update");
    let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("an event within 30 s")
        .expect("the stream goes on")
        .expect("no error");
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.kv.mod_revision),
        (EventKind::Update, key.as_str(), updated),
        "the update, and nothing of the busy prefix"
    );
}
