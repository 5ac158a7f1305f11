//! The paged listing check.

use std::sync::Arc;

use bytes::Bytes;

use super::current;
use crate::{Error, Store};

/// `list_page`: pages of at most the limit, in key order, each key once;
/// later pages read at the first page's revision show the keys as they
/// were then, whatever was written meanwhile; a page at a compacted or
/// future revision fails with `Compacted` or `FutureRevision`.
pub async fn list_pages(store: Arc<dyn Store>) {
    let p = "/conformance/pages/";
    for name in ["a", "b", "c", "d", "e"] {
        store
            .create(&format!("{p}{name}"), Bytes::from(name))
            .await
            .expect("create");
    }
    // Outside the prefix: never listed.
    store
        .create("/conformance/pagesx", Bytes::from_static(b"x"))
        .await
        .expect("create outside");
    let keys = |page: &crate::Page| -> Vec<String> {
        page.items
            .iter()
            .map(|kv| kv.key[p.len()..].to_owned())
            .collect()
    };

    let first = store.list_page(p, None, 2, None).await.expect("first page");
    assert_eq!(keys(&first), ["a", "b"], "first page");
    assert!(first.more, "keys remain after the first page");
    assert_eq!(
        first.revision,
        current(&*store).await,
        "first page's revision"
    );
    let at = first.revision;

    // Writes between pages: a delete, a create inside the listed range, an
    // update, a create after it.
    let c = store
        .get(&format!("{p}c"))
        .await
        .expect("get c")
        .expect("c");
    store.delete(&c.key, None).await.expect("delete c");
    store
        .create(&format!("{p}bb"), Bytes::from_static(b"bb"))
        .await
        .expect("create bb");
    let d = store
        .get(&format!("{p}d"))
        .await
        .expect("get d")
        .expect("d");
    store
        .update(&d.key, Bytes::from_static(b"new"), d.mod_revision)
        .await
        .expect("update d");
    store
        .create(&format!("{p}f"), Bytes::from_static(b"f"))
        .await
        .expect("create f");

    let last_key = first.items.last().map(|kv| kv.key.clone());
    let second = store
        .list_page(p, last_key.as_deref(), 2, Some(at))
        .await
        .expect("second page");
    assert_eq!(
        keys(&second),
        ["c", "d"],
        "second page, as at the first's revision"
    );
    assert_eq!(second.items[0], c, "c as it was");
    assert_eq!(second.items[1], d, "d as it was");
    assert_eq!(
        second.revision, at,
        "a later page reports the revision it read at"
    );
    assert!(second.more, "e remains");
    let last_key = second.items.last().map(|kv| kv.key.clone());
    let third = store
        .list_page(p, last_key.as_deref(), 2, Some(at))
        .await
        .expect("third page");
    assert_eq!(keys(&third), ["e"], "last page");
    assert!(!third.more, "nothing after the last page");

    // The same listing now: the writes show.
    let now = store.list_page(p, None, 10, None).await.expect("now");
    assert_eq!(keys(&now), ["a", "b", "bb", "d", "e", "f"], "listing now");
    assert!(!now.more, "all in one page");

    let future = now.revision + 100;
    match store.list_page(p, None, 2, Some(future)).await {
        Err(Error::FutureRevision(r)) => assert_eq!(r, future),
        other => panic!("page at future revision {future}: got {other:?}"),
    }
    store.compact(now.revision).await.expect("compact");
    match store.list_page(p, None, 2, Some(at)).await {
        Err(Error::Compacted { requested, .. }) => assert_eq!(requested, at),
        other => panic!("page at compacted revision {at}: got {other:?}"),
    }
    let at_point = store
        .list_page(p, None, 10, Some(now.revision))
        .await
        .expect("page at the compaction point");
    assert_eq!(
        at_point.items, now.items,
        "the compaction point keeps its state"
    );
}
