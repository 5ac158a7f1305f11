//! Checks of `watch`: history replay, the history/live boundary, and prefix
//! filtering.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::{assert_event, current, kv, next_event};
use crate::{EventKind, Store, WatchStream};

/// A watch replays every change after `after` (creates, updates, deletes
/// with their previous values) in order, exactly once, then goes on with
/// live changes; a watch from the current revision sees only live ones.
pub async fn watch_replays_history(store: Arc<dyn Store>) {
    let p = "/conformance/watch/";
    let (a, b, c) = (&format!("{p}a"), &format!("{p}b"), &format!("{p}c"));
    let start = current(&*store).await;
    let r1 = store
        .create(a, Bytes::from_static(b"1"))
        .await
        .expect("create a");
    let r2 = store.update(a, Bytes::from_static(b"2"), r1).await;
    let r2 = r2.expect("update a");
    let r3 = store
        .create(b, Bytes::from_static(b"1"))
        .await
        .expect("create b");
    let (_, r4) = store.delete(a, None).await.expect("delete a");
    let other = store
        .create("/conformance/other/a", Bytes::from_static(b"x"))
        .await;
    other.expect("create outside the prefix");

    let mut from_start = store.watch(p, start).await.expect("watch from start");
    let e = next_event(&mut from_start, "create of a").await;
    assert_event(&e, EventKind::Create, &kv(a, "1", r1, r1), None);
    let e = next_event(&mut from_start, "update of a").await;
    assert_event(
        &e,
        EventKind::Update,
        &kv(a, "2", r1, r2),
        Some(&kv(a, "1", r1, r1)),
    );
    let e = next_event(&mut from_start, "create of b").await;
    assert_event(&e, EventKind::Create, &kv(b, "1", r3, r3), None);
    let e = next_event(&mut from_start, "delete of a").await;
    assert_event(
        &e,
        EventKind::Delete,
        &kv(a, "2", r1, r4),
        Some(&kv(a, "2", r1, r2)),
    );

    let mut from_middle = store.watch(p, r2).await.expect("watch from the middle");
    let now = current(&*store).await;
    let mut from_now = store.watch(p, now).await.expect("watch from now");
    let r5 = store.update(b, Bytes::from_static(b"2"), r3).await;
    let r5 = r5.expect("update b");
    let r6 = store
        .create(c, Bytes::from_static(b"1"))
        .await
        .expect("create c");

    let e = next_event(&mut from_middle, "create of b (replayed)").await;
    assert_event(&e, EventKind::Create, &kv(b, "1", r3, r3), None);
    let e = next_event(&mut from_middle, "delete of a (replayed)").await;
    assert_eq!(
        (e.kind, e.kv.mod_revision),
        (EventKind::Delete, r4),
        "{e:?}"
    );
    for stream in [&mut from_start, &mut from_middle, &mut from_now] {
        let e = next_event(stream, "live update of b").await;
        assert_event(
            &e,
            EventKind::Update,
            &kv(b, "2", r3, r5),
            Some(&kv(b, "1", r3, r3)),
        );
        let e = next_event(stream, "live create of c").await;
        assert_event(&e, EventKind::Create, &kv(c, "1", r6, r6), None);
    }
}

/// Watches started while writes are in flight each see every write after
/// their starting revision exactly once, in order: no gap and no duplicate
/// where replayed history meets live events.
pub async fn watch_history_live_boundary(store: Arc<dyn Store>) {
    const WRITERS: usize = 4;
    const WRITES: usize = 80;
    const WATCHES: usize = 24;
    let p = "/conformance/boundary/";
    let start = current(&*store).await;
    // (writes done, highest revision returned), published as writers go.
    let (progress, mut seen) = tokio::sync::watch::channel((0_usize, start));
    let progress = Arc::new(progress);
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let (store, progress) = (store.clone(), progress.clone());
        writers.spawn(async move {
            let mut written = Vec::with_capacity(WRITES);
            for i in 0..WRITES {
                let key = format!("{p}{writer}/{i:03}");
                let rev = store.create(&key, Bytes::new()).await.expect("create");
                written.push((rev, key));
                progress.send_modify(|(n, last)| (*n, *last) = (*n + 1, rev.max(*last)));
            }
            written
        });
    }

    // Watches started at several moments during the writes, half replaying
    // from the start, half from the newest revision written at that moment
    // (all revisions below one a write returned are committed). Each is
    // read as it goes, so it meets live events while the writes go on.
    let sentinel = format!("{p}zz-sentinel");
    let mut readers = JoinSet::new();
    for index in 0..WATCHES {
        let threshold = index * WRITERS * WRITES / WATCHES;
        let (_, newest) = *seen
            .wait_for(|(n, _)| *n >= threshold)
            .await
            .expect("writers alive");
        let after = if index % 2 == 0 { start } else { newest };
        let mut stream = store.watch(p, after).await.expect("watch");
        let sentinel = sentinel.clone();
        readers.spawn(async move {
            let mut seen = Vec::new();
            while seen.last().is_none_or(|(_, key)| *key != sentinel) {
                let e = next_event(&mut stream, &format!("{sentinel} on watch {index}")).await;
                assert_eq!(e.kind, EventKind::Create, "watch {index}: {e:?}");
                seen.push((e.kv.mod_revision, e.kv.key));
            }
            (index, after, seen)
        });
    }
    let mut all = Vec::new();
    while let Some(written) = writers.join_next().await {
        all.extend(written.expect("writer task panicked"));
    }
    let rev = store
        .create(&sentinel, Bytes::new())
        .await
        .expect("create sentinel");
    all.push((rev, sentinel));
    all.sort();

    while let Some(done) = readers.join_next().await {
        let (index, after, seen) = done.expect("watch reader panicked");
        let want: Vec<_> = all
            .iter()
            .filter(|(rev, _)| *rev > after)
            .cloned()
            .collect();
        if seen != want {
            let first = seen.iter().zip(&want).position(|(got, want)| got != want);
            panic!(
                "watch {index} (after {after}) saw {} events, want {}: gap, duplicate or \
                 reorder, first difference at position {first:?}",
                seen.len(),
                want.len()
            );
        }
    }
}

/// Watch prefixes are plain byte prefixes: `a/xy` matches `a/xy`, `a/xy/1`
/// and `a/xyz` but not `a/x`; `a/xy/` matches only `a/xy/1`. Holds for
/// replayed and live events alike.
pub async fn watch_prefix_filter(store: Arc<dyn Store>) {
    let p = "/conformance/prefix/";
    let start = current(&*store).await;
    for name in ["a/x", "a/xy/1", "a/xy", "b/xy/1", "a/xyz"] {
        let key = format!("{p}{name}");
        store.create(&key, Bytes::new()).await.expect("create");
    }
    let dir = store.watch(&format!("{p}a/xy/"), start).await;
    let mut dir = dir.expect("watch a/xy/");
    let bare = store.watch(&format!("{p}a/xy"), start).await;
    let mut bare = bare.expect("watch a/xy");
    for name in ["a/x/1", "a/xy/2", "a/xyzz", "a/"] {
        let key = format!("{p}{name}");
        store.create(&key, Bytes::new()).await.expect("create");
    }
    let sentinel = format!("{p}a/xy/zz-sentinel");
    store
        .create(&sentinel, Bytes::new())
        .await
        .expect("create sentinel");

    let cases: [(&mut WatchStream, &str, &[&str]); 2] = [
        (&mut dir, "a/xy/", &["a/xy/1", "a/xy/2", "a/xy/zz-sentinel"]),
        (
            &mut bare,
            "a/xy",
            &[
                "a/xy/1",
                "a/xy",
                "a/xyz",
                "a/xy/2",
                "a/xyzz",
                "a/xy/zz-sentinel",
            ],
        ),
    ];
    for (stream, prefix, want) in cases {
        let mut got = Vec::new();
        while got.last().map(String::as_str) != Some(sentinel.as_str()) {
            got.push(
                next_event(stream, &format!("{sentinel} on {prefix}"))
                    .await
                    .kv
                    .key,
            );
        }
        let got: Vec<&str> = got.iter().map(|k| &k[p.len()..]).collect();
        assert_eq!(got, want, "keys seen by a watch on {p}{prefix}");
    }
}
