//! `moor migrate --to-etcd` as a user runs it: a single-machine cluster on
//! the embedded store (`moor up`) is stopped, migrated, and started on its
//! own etcd member (`moor up --cluster-init`, as the migration prints it).
//! Every object is there with its uid and creationTimestamp, listed in the
//! same resourceVersion order; a client that kept an old resourceVersion
//! is told to list again. A migration that cannot run (the server is up,
//! there is no embedded store, it was migrated already) or fails half way
//! leaves the data directory as it was.
//!
//! Each test is a machine of its own: a home and a loopback address. No
//! node agent (`--no-agent`), so no Docker; etcd must be installed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::core::v1::{ConfigMap, Namespace, Secret};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, DeleteParams, ListParams, WatchParams};
use moor_storage::Store;
use moor_storage_sqlite::SqliteStore;
use moor_testkit::assert_eventually;
use tokio::process::{Child, Command};

mod common;

/// The bound on waiting for a server, and on one `moor migrate`.
const PATIENCE: Duration = Duration::from_secs(120);

/// One object as the migration must keep it, and where it stood.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    /// kind/namespace/name.
    id: String,
    uid: String,
    created: String,
    version: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_machine_cluster_moves_onto_etcd_with_every_object_in_order() {
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path().join(".moor");
    let dir = data_dir.to_str().unwrap();
    let (address, name) = ("127.0.3.20", "migrate-1");
    let listen = format!("{address}:6443");
    let server = start(
        home.path(),
        &[
            "up",
            "--listen",
            &listen,
            "--node-name",
            name,
            "--no-agent",
            "--no-registry",
        ],
    );
    let client = admin(home.path()).await;

    // Objects whose resourceVersion order is not their creation order,
    // and one deleted, which must not come back.
    let shop = Namespace {
        metadata: Some(meta("", "shop")),
        ..Default::default()
    };
    client.api::<Namespace>().create(&shop).await.unwrap();
    let maps = client.api::<ConfigMap>();
    for (namespace, name) in [
        ("shop", "c"),
        ("default", "a"),
        ("shop", "b"),
        ("shop", "gone"),
    ] {
        let mut map = common::config_map(name, "1");
        map.meta_mut().namespace = namespace.to_string();
        maps.create(&map).await.unwrap();
    }
    let mut c = maps.get("shop", "c").await.unwrap();
    c.data.insert("v".into(), "2".into());
    maps.update(&c).await.unwrap();
    let secret = Secret {
        metadata: Some(meta("shop", "token")),
        string_data: [("key".to_string(), "s3cret".to_string())].into(),
        ..Default::default()
    };
    client.api::<Secret>().create(&secret).await.unwrap();
    maps.delete("shop", "gone", &DeleteParams::default())
        .await
        .unwrap();
    let (before, old_version) = kept(&client).await;
    assert!(before.iter().any(|k| k.id == "ConfigMap/shop/c"));
    let a_before = maps.get("default", "a").await.unwrap();

    // Refused while the server runs: nothing written.
    let migrate = [
        "migrate",
        "--to-etcd",
        "--data-dir",
        dir,
        "--name",
        name,
        "--advertise-address",
        address,
    ];
    let files = tree(&data_dir);
    let refused = moor(home.path(), &migrate).await;
    assert_refused(&refused, "is in use: a server");
    assert_eq!(tree(&data_dir), files, "a refused migration wrote");

    stop(server).await;
    let migrated = moor(home.path(), &migrate).await;
    let out = String::from_utf8_lossy(&migrated.stdout);
    assert!(
        migrated.status.success(),
        "moor migrate: {out}{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(
        out.contains("in resourceVersion order, each checked"),
        "{out}"
    );
    assert!(data_dir.join("etcd/data/member").is_dir());
    assert!(!data_dir.join("etcd.migrating").exists());
    assert!(!data_dir.join("data/moor.db").exists());
    assert!(
        files_in(&data_dir.join("data")).any(|f| f.starts_with("moor.db.migrated-")),
        "{out}"
    );

    // Refused once migrated: nothing written.
    let files = tree(&data_dir);
    let twice = moor(home.path(), &migrate).await;
    assert_refused(&twice, "already holds an etcd member");
    assert_eq!(tree(&data_dir), files, "a refused migration wrote");

    // The command the migration printed starts the server on etcd.
    let next = out
        .lines()
        .skip_while(|line| !line.starts_with("start this server on etcd with:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no next command in {out}"));
    let mut args: Vec<&str> = next.split_whitespace().collect();
    assert_eq!(
        args.drain(..3).collect::<Vec<_>>(),
        ["moor", "up", "--cluster-init"],
        "{next}"
    );
    let mut up = vec!["up", "--cluster-init"];
    up.extend(args);
    up.extend(["--no-agent", "--no-registry"]);
    let server = start(home.path(), &up);
    let client = admin(home.path()).await;

    let (after, _) = kept(&client).await;
    let after: Vec<&Kept> = after
        .iter()
        .filter(|k| before.iter().any(|b| b.id == k.id))
        .collect();
    assert_eq!(
        after.len(),
        before.len(),
        "objects lost: {before:?} {after:?}"
    );
    for (old, new) in before.iter().zip(&after) {
        // In the same order, with the same identity, each above every old
        // resourceVersion.
        assert_eq!(
            (&old.id, &old.uid, &old.created),
            (&new.id, &new.uid, &new.created)
        );
        assert!(new.version > old_version, "{new:?} not above {old_version}");
    }
    let maps = client.api::<ConfigMap>();
    assert!(
        matches!(
            maps.get("shop", "gone").await,
            Err(moor_client::Error::NotFound(_))
        ),
        "a deleted object came back"
    );
    assert_eq!(common::value(&maps.get("shop", "c").await.unwrap()), "2");
    let token = client.api::<Secret>().get("shop", "token").await.unwrap();
    assert_eq!(
        token.data.get("key").map(Vec::as_slice),
        Some(&b"s3cret"[..])
    );

    // A client that kept an old resourceVersion lists again: its watch is
    // too old, its conditional write conflicts.
    let params = WatchParams {
        resource_version: old_version.to_string(),
        ..Default::default()
    };
    let gone = match maps.watch(&params).await {
        Err(err) => err,
        Ok(mut events) => match events.next().await {
            Some(Err(err)) => err,
            other => panic!("a watch from before the migration: {other:?}"),
        },
    };
    assert!(matches!(gone, moor_client::Error::Gone(_)), "{gone:?}");
    let stale = maps.update(&a_before).await;
    assert!(
        matches!(stale, Err(moor_client::Error::Conflict(_))),
        "{stale:?}"
    );

    // New objects come after every migrated one.
    let fresh = maps
        .create(&common::config_map("fresh", "1"))
        .await
        .unwrap();
    let fresh: i64 = fresh.meta().resource_version.parse().unwrap();
    assert!(after.iter().all(|k| k.version < fresh));
    stop(server).await;
}

#[tokio::test]
async fn a_data_dir_without_an_embedded_store_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path().join(".moor");
    let out = moor(
        home.path(),
        &[
            "migrate",
            "--to-etcd",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
    )
    .await;
    assert_refused(&out, "holds no embedded store");
    assert!(!data_dir.exists(), "a refused migration wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_fails_leaves_the_embedded_store_as_it_was() {
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path().join(".moor");
    let address = "127.0.3.21";
    let store = SqliteStore::open(&data_dir.join("data")).unwrap();
    for i in 0..20 {
        let key = format!("/registry/configmaps/default/m-{i}");
        store
            .create(&key, bytes::Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    let (keys, _) = store.list("").await.unwrap();
    drop(store);
    let files = tree(&data_dir);
    // etcd cannot take its client port, so the migration cannot end by
    // itself: it is interrupted while the member keeps failing to start.
    let _taken = std::net::TcpListener::bind((address, 2379)).unwrap();

    let migration = command(
        home.path(),
        &[
            "migrate",
            "--to-etcd",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--advertise-address",
            address,
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let log = data_dir.join("etcd.migrating/etcd.log");
    assert_eventually!(
        std::fs::read_to_string(&log).is_ok_and(|log| log.contains("address already in use")),
        PATIENCE,
        "etcd never tried its port"
    );
    signal(&migration, rustix::process::Signal::TERM);
    let out = tokio::time::timeout(PATIENCE, migration.wait_with_output())
        .await
        .expect("moor migrate stops")
        .unwrap();
    assert_refused(&out, "interrupted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing was migrated"), "{stderr}");

    // etcd's log is kept, beside what was there before, untouched.
    let kept_log = data_dir.join("etcd.migrate-failed.log");
    assert!(
        std::fs::read_to_string(&kept_log)
            .unwrap()
            .contains("address already in use")
    );
    std::fs::remove_file(&kept_log).unwrap();
    assert_eq!(tree(&data_dir), files);
    let store = SqliteStore::open(&data_dir.join("data")).unwrap();
    assert_eq!(store.list("").await.unwrap().0, keys);
}

/// `moor ARGS` with `home` as its home, killed when dropped.
fn command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moor"));
    command
        .args(args)
        .args(["--log", "warn"])
        .env("HOME", home)
        .env_remove("MOOR_CONFIG")
        .env_remove("MOOR_TOKEN")
        .env_remove("MOOR_SERVER")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A server: `moor ARGS`, its output not read.
fn start(home: &Path, args: &[&str]) -> Child {
    command(home, args)
        .stdout(Stdio::null())
        .spawn()
        .expect("moor starts")
}

/// Runs `moor ARGS` to its end.
async fn moor(home: &Path, args: &[&str]) -> Output {
    let run = command(home, args).stderr(Stdio::piped()).output();
    tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap_or_else(|_| panic!("moor {} did not end", args.join(" ")))
        .expect("moor runs")
}

/// A command that failed, saying `why` on stderr.
fn assert_refused(out: &Output, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert!(stderr.contains(why), "{stderr}");
}

/// Sends `signal` to `child`.
fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        .expect("running");
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Stops a server as Ctrl-C does; it must exit cleanly.
async fn stop(mut server: Child) {
    signal(&server, rustix::process::Signal::TERM);
    let status = tokio::time::timeout(PATIENCE, server.wait())
        .await
        .expect("moor stops")
        .unwrap();
    assert!(status.success(), "moor exited with {status}");
}

/// The administrator's client of the cluster `moor up` runs in `home`,
/// once it answers.
async fn admin(home: &Path) -> Client {
    let config = home.join(".moor/config");
    let client = || {
        let target = moorctl::config::target(None, None, &config).ok()?;
        Client::connect(&target.server, &target.credentials).ok()
    };
    assert_eventually!(
        match client() {
            Some(client) => client.wait_ready(Duration::from_secs(1)).await.is_ok(),
            None => false,
        },
        PATIENCE,
        "the server never answered"
    );
    client().expect("a client")
}

/// Every namespace, ConfigMap and Secret in resourceVersion order, and the
/// latest resourceVersion a client has seen.
async fn kept(client: &Client) -> (Vec<Kept>, i64) {
    let lists = [
        listed::<Namespace>(client).await,
        listed::<ConfigMap>(client).await,
        listed::<Secret>(client).await,
    ];
    let latest = lists.iter().map(|(_, version)| *version).max().unwrap_or(0);
    let mut all: Vec<Kept> = lists.into_iter().flat_map(|(items, _)| items).collect();
    all.sort_by_key(|k| k.version);
    (all, latest)
}

/// Every `K`, and the list's resourceVersion.
async fn listed<K: Resource>(client: &Client) -> (Vec<Kept>, i64) {
    let (items, version) = client
        .api::<K>()
        .list(&ListParams::default())
        .await
        .unwrap();
    (items.iter().map(keep).collect(), version.parse().unwrap())
}

fn keep<K: Resource>(object: &K) -> Kept {
    let meta = object.meta();
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| format!("{}.{:09}", t.seconds, t.nanos))
        .expect("a creationTimestamp");
    Kept {
        id: format!("{}/{}/{}", K::KIND, meta.namespace, meta.name),
        uid: meta.uid.clone(),
        created,
        version: meta.resource_version.parse().expect("a resourceVersion"),
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.to_string(),
        name: name.to_string(),
        ..Default::default()
    }
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            found.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    found
}

/// The names of the files in `dir`.
fn files_in(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}
