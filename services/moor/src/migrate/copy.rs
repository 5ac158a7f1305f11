//! Copying every key of one store into another, empty one, keeping the
//! order of their revisions, and checking the copy. Knows only the `Store`
//! trait: the files and the etcd member are `migrate`'s.
//!
//! resourceVersions are revisions, stamped on objects as they are read, so
//! a key's new revision is its new resourceVersion. The destination cannot
//! be given the source's revisions (etcd's own writes start at 2 and count
//! up by one), so the keys get new ones, in the same order. First, though,
//! the destination's revision is brought past the source's: every new
//! resourceVersion is then above every old one, and a client that comes
//! back with an old one finds it too old (its watch is refused, its
//! conditional write conflicts) and lists again, rather than wait for a
//! revision that now means another write.

use anyhow::{Context, ensure};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use moor_storage::{KeyValue, Store};

/// Where the throwaway keys that raise the destination's revision live:
/// outside `/registry/`, and gone before the copy is checked.
const PAD_PREFIX: &str = "/moor-migrate/padding/";
/// Revisions raised between two compactions, so that the destination's
/// history of throwaway keys (etcd keeps it on disk) stays small.
const PAD_CHUNK: i64 = 100_000;
/// Throwaway writes in flight at once: etcd takes them several to a disk
/// sync, about ten times as fast as one at a time.
const PAD_IN_FLIGHT: usize = 256;
/// Keys copied between two progress lines.
const PROGRESS_EVERY: usize = 1000;

/// What a copy did.
#[derive(Debug, PartialEq, Eq)]
pub struct Copied {
    /// Keys copied.
    pub keys: usize,
    /// The destination's revision after the copy; its history before is
    /// compacted away.
    pub revision: i64,
}

/// The keys of a listing in the order of their last writes.
pub fn by_revision(mut items: Vec<KeyValue>) -> Vec<KeyValue> {
    items.sort_by_key(|kv| kv.mod_revision);
    items
}

/// Copies `items` (in revision order, as [`by_revision`] gives them, read
/// at the source's revision `floor`) into the empty store `dest`, each at a
/// revision above `floor` and in their order, checks every key, and
/// compacts `dest`'s history away, so that no read can be made at a
/// revision from before.
pub async fn copy(dest: &dyn Store, items: &[KeyValue], floor: i64) -> anyhow::Result<Copied> {
    let (present, _) = dest.list("").await.context("listing etcd")?;
    ensure!(
        present.is_empty(),
        "the new etcd member already holds {} keys (the first: {}): it is not this server's \
         new member",
        present.len(),
        present.first().map_or("", |kv| kv.key.as_str())
    );
    pad(dest, floor).await?;
    for (done, kv) in items.iter().enumerate() {
        dest.create(&kv.key, kv.value.clone())
            .await
            .with_context(|| format!("copying {}", kv.key))?;
        if (done + 1) % PROGRESS_EVERY == 0 {
            tracing::info!(copied = done + 1, of = items.len(), "copying into etcd");
        }
    }
    check(dest, items, floor).await?;
    let revision = dest
        .current_revision()
        .await
        .context("reading etcd's revision")?;
    dest.compact(revision)
        .await
        .context("compacting etcd's history")?;
    Ok(Copied {
        keys: items.len(),
        revision,
    })
}

/// Writes and deletes throwaway keys until `dest`'s revision is at least
/// `floor`.
async fn pad(dest: &dyn Store, floor: i64) -> anyhow::Result<()> {
    loop {
        let at = dest
            .current_revision()
            .await
            .context("reading etcd's revision")?;
        let left = floor.saturating_sub(at);
        if left <= 0 {
            return Ok(());
        }
        // Each key takes two revisions: its create and its delete.
        let keys = u64::try_from(left.min(PAD_CHUNK))?.div_ceil(2);
        let names: Vec<String> = (0..keys).map(|i| format!("{PAD_PREFIX}{i}")).collect();
        futures::stream::iter(&names)
            .map(|key| dest.create(key, Bytes::new()))
            .buffer_unordered(PAD_IN_FLIGHT)
            .try_for_each(|_| async { Ok(()) })
            .await
            .context("raising etcd's revision")?;
        futures::stream::iter(&names)
            .map(|key| dest.delete(key, None))
            .buffer_unordered(PAD_IN_FLIGHT)
            .try_for_each(|_| async { Ok(()) })
            .await
            .context("raising etcd's revision")?;
        let at = dest
            .current_revision()
            .await
            .context("reading etcd's revision")?;
        dest.compact(at)
            .await
            .context("compacting etcd's history")?;
        tracing::info!(
            revision = at,
            target = floor,
            "raising etcd's revision to the embedded store's"
        );
    }
}

/// Checks that `dest` holds exactly `items`, values byte for byte, in the
/// same revision order, each above `floor`.
async fn check(dest: &dyn Store, items: &[KeyValue], floor: i64) -> anyhow::Result<()> {
    let (copied, _) = dest
        .list("")
        .await
        .context("listing etcd to check the copy")?;
    ensure!(
        copied.len() == items.len(),
        "etcd holds {} keys after the copy, the embedded store {}",
        copied.len(),
        items.len()
    );
    for (old, new) in items.iter().zip(by_revision(copied)) {
        ensure!(
            new.key == old.key,
            "etcd's keys are out of order: {} comes where {} should",
            new.key,
            old.key
        );
        ensure!(
            new.value == old.value,
            "{}: etcd's value differs from the embedded store's",
            old.key
        );
        ensure!(
            new.mod_revision > floor,
            "{}: etcd gave it revision {}, not above the embedded store's {floor}",
            old.key,
            new.mod_revision
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use moor_storage_sqlite::SqliteStore;

    use super::*;

    /// A store whose keys' last writes are in another order than their
    /// names and their creates, with a deleted key and compacted history.
    async fn source(dir: &std::path::Path) -> (SqliteStore, Vec<KeyValue>, i64) {
        let store = SqliteStore::open(dir).expect("open");
        let mut revisions = std::collections::BTreeMap::new();
        for name in ["c", "a", "d", "b", "gone"] {
            let key = format!("/registry/things/{name}");
            let revision = store
                .create(&key, Bytes::from(format!("{name}-1")))
                .await
                .expect("create");
            revisions.insert(key, revision);
        }
        for name in ["a", "c", "a"] {
            let key = format!("/registry/things/{name}");
            let revision = store
                .update(&key, Bytes::from(format!("{name}-2")), revisions[&key])
                .await
                .expect("update");
            revisions.insert(key, revision);
        }
        store
            .delete("/registry/things/gone", None)
            .await
            .expect("delete");
        let revision = store.current_revision().await.expect("revision");
        store.compact(revision).await.expect("compact");
        let (items, revision) = store.list("").await.expect("list");
        (store, by_revision(items), revision)
    }

    #[tokio::test]
    async fn keys_keep_their_order_above_the_old_revisions() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (_source, items, floor) = source(dirs[0].path()).await;
        let names: Vec<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            names,
            [
                "/registry/things/d",
                "/registry/things/b",
                "/registry/things/c",
                "/registry/things/a"
            ]
        );
        let dest = SqliteStore::open(dirs[1].path()).expect("open");

        let copied = copy(&dest, &items, floor).await.expect("copy");

        assert_eq!(copied.keys, 4);
        let (got, revision) = dest.list("").await.expect("list");
        assert_eq!(revision, copied.revision);
        let got = by_revision(got);
        for (old, new) in items.iter().zip(&got) {
            assert_eq!((&new.key, &new.value), (&old.key, &old.value));
            assert!(new.mod_revision > floor, "{new:?} not above {floor}");
        }
        // The throwaway keys and the history before are gone.
        assert_eq!(got.len(), items.len());
        assert!(matches!(
            dest.list_page("", None, 10, Some(floor)).await,
            Err(moor_storage::Error::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn a_destination_with_keys_is_refused() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (_source, items, floor) = source(dirs[0].path()).await;
        let dest = SqliteStore::open(dirs[1].path()).expect("open");
        dest.create("/registry/things/other", Bytes::new())
            .await
            .expect("create");

        let err = copy(&dest, &items, floor).await.expect_err("refused");

        assert!(err.to_string().contains("already holds 1 keys"), "{err:#}");
        assert_eq!(dest.list("").await.expect("list").0.len(), 1);
    }
}
