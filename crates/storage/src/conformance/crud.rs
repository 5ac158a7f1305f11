//! Checks of single-key reads and writes, listing, and compare-and-swap.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::{current, kv};
use crate::{Error, Store};

/// `get` of a key that was never written returns `None`.
pub async fn get_missing(store: Arc<dyn Store>) {
    let got = store.get("/conformance/get/missing").await;
    assert!(matches!(got, Ok(None)), "get of a missing key: {got:?}");
}

/// `create` succeeds once, then fails with `AlreadyExists` and changes
/// nothing, not even the store's revision.
pub async fn create_if_absent(store: Arc<dyn Store>) {
    let key = "/conformance/create/a";
    let before = current(&*store).await;
    let rev = store.create(key, Bytes::from_static(b"one")).await;
    let rev = rev.expect("first create of a key");
    assert!(
        rev > before,
        "create returned revision {rev}, store was at {before}"
    );
    let got = store.get(key).await.expect("get after create");
    assert_eq!(got, Some(kv(key, "one", rev, rev)), "get after create");

    match store.create(key, Bytes::from_static(b"two")).await {
        Err(Error::AlreadyExists(k)) => assert_eq!(k, key, "AlreadyExists names the key"),
        other => panic!("second create of {key}: expected AlreadyExists, got {other:?}"),
    }
    let got = store.get(key).await.expect("get after failed create");
    assert_eq!(
        got,
        Some(kv(key, "one", rev, rev)),
        "a failed create changed the key"
    );
    assert_eq!(
        current(&*store).await,
        rev,
        "a failed create used a revision"
    );
}

/// `update` succeeds with the key's current revision and fails with
/// `Conflict` (naming the current revision) with a stale one.
pub async fn update_compare_and_swap(store: Arc<dyn Store>) {
    let key = "/conformance/update/a";
    let r1 = store.create(key, Bytes::from_static(b"1")).await;
    let r1 = r1.expect("create");
    let r2 = store.update(key, Bytes::from_static(b"2"), r1).await;
    let r2 = r2.expect("update with the current revision");
    assert!(r2 > r1, "update returned revision {r2}, not above {r1}");
    let got = store.get(key).await.expect("get after update");
    assert_eq!(got, Some(kv(key, "2", r1, r2)), "get after update");

    match store.update(key, Bytes::from_static(b"3"), r1).await {
        Err(Error::Conflict {
            key: k,
            expected,
            current,
        }) => assert_eq!(
            (k.as_str(), expected, current),
            (key, r1, r2),
            "Conflict fields"
        ),
        other => panic!("update with stale revision {r1}: expected Conflict, got {other:?}"),
    }
    let got = store.get(key).await.expect("get after failed update");
    assert_eq!(
        got,
        Some(kv(key, "2", r1, r2)),
        "a failed update changed the key"
    );
    assert_eq!(
        current(&*store).await,
        r2,
        "a failed update used a revision"
    );
}

/// `update` of a key that does not exist, or no longer does, is `NotFound`.
pub async fn update_missing(store: Arc<dyn Store>) {
    let key = "/conformance/update-missing/a";
    match store.update(key, Bytes::from_static(b"x"), 1).await {
        Err(Error::NotFound(k)) => assert_eq!(k, key, "NotFound names the key"),
        other => panic!("update of a missing key: expected NotFound, got {other:?}"),
    }
    let created = store.create(key, Bytes::from_static(b"1")).await;
    let created = created.expect("create");
    store.delete(key, None).await.expect("delete");
    match store.update(key, Bytes::from_static(b"2"), created).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("update of a deleted key: expected NotFound, got {other:?}"),
    }
    assert_eq!(
        store.get(key).await.expect("get"),
        None,
        "update revived a key"
    );
}

/// `delete` without an expected revision always removes the key, with one
/// only when it is current; it returns the key's last value; a missing key
/// is `NotFound`; a deleted key can be created again.
pub async fn delete_compare_and_swap(store: Arc<dyn Store>) {
    let a = "/conformance/delete/a";
    let ra = store
        .create(a, Bytes::from_static(b"a"))
        .await
        .expect("create a");
    let (last, rd) = store.delete(a, None).await.expect("unconditional delete");
    assert_eq!(
        last,
        kv(a, "a", ra, ra),
        "delete returns the key's last value"
    );
    assert!(rd > ra, "delete returned revision {rd}, not above {ra}");
    assert_eq!(
        store.get(a).await.expect("get"),
        None,
        "deleted key still readable"
    );
    for expected in [None, Some(ra)] {
        match store.delete(a, expected).await {
            Err(Error::NotFound(k)) => assert_eq!(k, a, "NotFound names the key"),
            other => panic!("delete of a deleted key: expected NotFound, got {other:?}"),
        }
    }

    let b = "/conformance/delete/b";
    let rb1 = store
        .create(b, Bytes::from_static(b"1"))
        .await
        .expect("create b");
    let rb2 = store.update(b, Bytes::from_static(b"2"), rb1).await;
    let rb2 = rb2.expect("update b");
    match store.delete(b, Some(rb1)).await {
        Err(Error::Conflict {
            key,
            expected,
            current,
        }) => assert_eq!(
            (key.as_str(), expected, current),
            (b, rb1, rb2),
            "Conflict fields"
        ),
        other => panic!("delete with stale revision: expected Conflict, got {other:?}"),
    }
    let got = store.get(b).await.expect("get b");
    assert_eq!(
        got,
        Some(kv(b, "2", rb1, rb2)),
        "a failed delete changed the key"
    );
    let (last, rbd) = store.delete(b, Some(rb2)).await.expect("delete b");
    assert_eq!(
        last,
        kv(b, "2", rb1, rb2),
        "delete returns the key's last value"
    );
    assert!(rbd > rb2, "delete returned revision {rbd}, not above {rb2}");

    let again = store.create(a, Bytes::from_static(b"again")).await;
    let again = again.expect("create of a deleted key");
    assert!(
        again > rbd,
        "re-create returned revision {again}, not above {rbd}"
    );
    let got = store.get(a).await.expect("get");
    assert_eq!(got, Some(kv(a, "again", again, again)), "re-created key");
}

/// Every write gets a revision above all earlier ones, across keys, and the
/// store's revision is the last write's.
pub async fn revisions_increase(store: Arc<dyn Store>) {
    let mut last = current(&*store).await;
    let mut expect_above = |rev: i64, what: &str| {
        assert!(rev > last, "{what} got revision {rev}, not above {last}");
        last = rev;
    };
    let keys = [
        "/conformance/rev/a",
        "/conformance/rev/b",
        "/conformance/rev/c",
    ];
    let mut revs = Vec::new();
    for key in keys {
        let rev = store
            .create(key, Bytes::from_static(b"0"))
            .await
            .expect("create");
        expect_above(rev, "create");
        revs.push(rev);
    }
    for (key, rev) in keys.iter().zip(revs.iter_mut()) {
        let new = store.update(key, Bytes::from_static(b"1"), *rev).await;
        *rev = new.expect("update");
        expect_above(*rev, "update");
    }
    let (_, rev) = store.delete(keys[1], None).await.expect("delete");
    expect_above(rev, "delete");
    let rev = store.create(keys[1], Bytes::from_static(b"2")).await;
    expect_above(rev.expect("re-create"), "re-create");
    assert_eq!(
        current(&*store).await,
        last,
        "store revision is the last write's"
    );
}

/// `list` returns exactly the live keys under a byte prefix, in key (byte)
/// order, with a revision at or above every listed `mod_revision`.
pub async fn list_prefix(store: Arc<dyn Store>) {
    let p = "/conformance/list/";
    for name in ["a/2", "b/1", "a/\u{e9}", "a/0", "ab", "a/1", "a/gone"] {
        let key = format!("{p}{name}");
        store.create(&key, Bytes::from(name)).await.expect("create");
    }
    store
        .delete(&format!("{p}a/gone"), None)
        .await
        .expect("delete");
    let a1 = store
        .get(&format!("{p}a/1"))
        .await
        .expect("get")
        .expect("a/1");
    let a1 = store
        .update(&a1.key, Bytes::from_static(b"new"), a1.mod_revision)
        .await;
    a1.expect("update");

    // "é" is 0xC3 0xA9 in UTF-8, so it sorts after every ASCII byte.
    let cases: [(&str, &[&str]); 4] = [
        ("a/", &["a/0", "a/1", "a/2", "a/\u{e9}"]),
        ("a", &["a/0", "a/1", "a/2", "a/\u{e9}", "ab"]),
        ("", &["a/0", "a/1", "a/2", "a/\u{e9}", "ab", "b/1"]),
        ("z/", &[]),
    ];
    let now = current(&*store).await;
    for (suffix, want) in cases {
        let prefix = format!("{p}{suffix}");
        let (items, rev) = store.list(&prefix).await.expect("list");
        let keys: Vec<&str> = items.iter().map(|kv| &kv.key[p.len()..]).collect();
        assert_eq!(keys, want, "keys listed under {prefix:?}");
        assert_eq!(rev, now, "list revision with no concurrent writes");
        for item in &items {
            assert!(
                rev >= item.mod_revision,
                "list revision {rev} below {item:?}"
            );
            let got = store.get(&item.key).await.expect("get");
            assert_eq!(got.as_ref(), Some(item), "list and get disagree");
        }
    }
}

/// Eight tasks each add 1 fifty times to one counter with compare-and-swap,
/// retrying on `Conflict`: no increment is lost and none applied twice.
pub async fn concurrent_compare_and_swap(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 50;
    let key = "/conformance/cas/counter";
    store
        .create(key, Bytes::from_static(b"0"))
        .await
        .expect("create");
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut revisions = Vec::with_capacity(INCREMENTS);
            while revisions.len() < INCREMENTS {
                let got = store.get(key).await.expect("get").expect("counter exists");
                let text = std::str::from_utf8(&got.value).expect("utf-8 counter");
                let n: u64 = text.parse().expect("numeric counter");
                let next = Bytes::from((n + 1).to_string());
                match store.update(key, next, got.mod_revision).await {
                    Ok(rev) => revisions.push(rev),
                    Err(Error::Conflict { .. }) => {}
                    Err(e) => panic!("increment failed: {e}"),
                }
            }
            revisions
        });
    }
    let mut all = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for rev in done.expect("increment task panicked") {
            assert!(all.insert(rev), "two updates got revision {rev}");
        }
    }
    assert_eq!(all.len(), TASKS * INCREMENTS, "successful updates");
    let got = store.get(key).await.expect("get").expect("counter exists");
    let want = (TASKS * INCREMENTS).to_string();
    assert_eq!(got.value, Bytes::from(want), "final counter value");
}
