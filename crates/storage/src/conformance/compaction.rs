//! The compaction check.

use std::sync::Arc;

use bytes::Bytes;

use super::{assert_compacted, assert_event, current, kv, next_event};
use crate::{EventKind, Store};

/// After `compact(r)`: current values are intact; a watch after a revision
/// below `r` fails with `Compacted`; a watch after `r` or later works and
/// sees the changes after it. Compacting again at or below `r` is a no-op;
/// compacting past the store's revision is an error.
pub async fn compaction(store: Arc<dyn Store>) {
    let p = "/conformance/compact/";
    let (a, b, d) = (&format!("{p}a"), &format!("{p}b"), &format!("{p}d"));
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
    let (_, r4) = store.delete(b, None).await.expect("delete b");
    let r5 = store.update(a, Bytes::from_static(b"3"), r2).await;
    let r5 = r5.expect("update a");
    let r6 = store
        .create(d, Bytes::from_static(b"1"))
        .await
        .expect("create d");

    store.compact(r5).await.expect("compact");
    let got = store.get(a).await.expect("get a");
    assert_eq!(
        got,
        Some(kv(a, "3", r1, r5)),
        "value written at the compaction point"
    );
    let got = store.get(b).await.expect("get b");
    assert_eq!(got, None, "key deleted before the compaction point");
    let got = store.get(d).await.expect("get d");
    assert_eq!(
        got,
        Some(kv(d, "1", r6, r6)),
        "value written after the compaction point"
    );
    let (items, _) = store.list(p).await.expect("list");
    let want = vec![kv(a, "3", r1, r5), kv(d, "1", r6, r6)];
    assert_eq!(items, want, "list after compaction");

    for after in [start, r1, r3, r4] {
        assert_compacted(&*store, p, after, r5).await;
    }

    let mut at_point = store
        .watch(p, r5)
        .await
        .expect("watch at the compaction point");
    let mut after_point = store.watch(p, r6).await.expect("watch after it");
    let r7 = store.update(d, Bytes::from_static(b"2"), r6).await;
    let r7 = r7.expect("update d");
    let e = next_event(&mut at_point, "create of d").await;
    assert_event(&e, EventKind::Create, &kv(d, "1", r6, r6), None);
    for stream in [&mut at_point, &mut after_point] {
        let e = next_event(stream, "update of d").await;
        assert_event(
            &e,
            EventKind::Update,
            &kv(d, "2", r6, r7),
            Some(&kv(d, "1", r6, r6)),
        );
    }

    store
        .compact(r3)
        .await
        .expect("compacting below the compaction point");
    store
        .compact(r5)
        .await
        .expect("compacting at the compaction point again");
    let mut again = store
        .watch(p, r5)
        .await
        .expect("watch after a no-op compaction");
    let e = next_event(&mut again, "create of d after a no-op compaction").await;
    assert_eq!(
        e.kv.mod_revision, r6,
        "first event after the compaction point"
    );
    assert_compacted(&*store, p, r5 - 1, r5).await;

    let future = current(&*store).await + 1000;
    let result = store.compact(future).await;
    assert!(
        result.is_err(),
        "compacting to future revision {future}: {result:?}"
    );
}
