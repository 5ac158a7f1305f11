//! The store on a three-member etcd cluster losing its leader (SIGKILL) in
//! the middle of concurrent creates: nothing acknowledged is lost, and once
//! the survivors have a leader every create succeeds again, whichever
//! member each writer was talking to.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use moor_storage::Store;
use moor_storage_etcd::EtcdStore;
use moor_testkit::EtcdCluster;
use tokio::time::Instant;

const WRITERS: usize = 8;

/// Creates `count` keys named `{phase}-{writer}-{i}` from each of
/// `WRITERS` concurrent writers, each with its own connection; returns the
/// acknowledged keys and the number of failures.
async fn create_all(stores: &[Arc<EtcdStore>], phase: &str, count: usize) -> (Vec<String>, usize) {
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(writer, store)| {
            let store = store.clone();
            let phase = phase.to_owned();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut failed = 0;
                for i in 0..count {
                    let key = format!("/r1/{phase}-{writer}-{i}");
                    match store.create(&key, Bytes::from(key.clone())).await {
                        Ok(_) => acknowledged.push(key),
                        Err(_) => failed += 1,
                    }
                }
                (acknowledged, failed)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (keys, failures) = task.await.expect("writer");
        acknowledged.extend(keys);
        failed += failures;
    }
    (acknowledged, failed)
}

#[tokio::test]
async fn the_leader_dies_during_creates_and_nothing_acknowledged_is_lost() {
    moor_testkit::init_tracing();
    let mut cluster = EtcdCluster::start(3).await.expect("cluster starts");
    let endpoints = cluster.endpoints();
    let mut stores = Vec::new();
    for _ in 0..WRITERS {
        let store = EtcdStore::connect(&endpoints).await.expect("connect");
        stores.push(Arc::new(store));
    }

    let (mut acknowledged, failed) = create_all(&stores, "before", 13).await;
    assert_eq!(failed, 0, "creates failed on a healthy cluster");

    let leader = cluster.wait_leader().await.expect("a leader");
    let killed = Instant::now();
    cluster.kill(leader).expect("kill the leader");
    let (during, failed_during) = create_all(&stores, "during", 38).await;
    acknowledged.extend(during);
    let during_took = killed.elapsed();

    // Once the survivors have elected a leader, no writer may keep failing
    // (before moor-failover, a third of creates kept going to the dead
    // member until the end).
    let new_leader = cluster.wait_leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);
    cluster.wait_healthy().await.expect("survivors healthy");
    let (after, failed_after) = create_all(&stores, "after", 12).await;
    acknowledged.extend(after);
    assert_eq!(
        failed_after, 0,
        "creates kept failing after a new leader was elected"
    );

    // Every acknowledged create is there, and nothing else.
    let (items, _) = stores[0].list("/r1/").await.expect("list");
    let stored: BTreeSet<String> = items.into_iter().map(|kv| kv.key).collect();
    let wanted: BTreeSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(wanted.len(), acknowledged.len(), "a key acknowledged twice");
    let lost: Vec<_> = wanted.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    println!(
        "R1 (store): {} of {} creates acknowledged, {failed_during} failed while the leader was \
         lost; the creates after the kill took {during_took:?}",
        acknowledged.len(),
        WRITERS * (13 + 38 + 12),
    );

    // The lost member comes back on its data and catches up.
    cluster.restart(leader).await.expect("restart");
    let member = EtcdStore::connect(&[cluster.endpoint(leader)])
        .await
        .expect("connect to the restarted member");
    let (items, _) = member.list("/r1/").await.expect("list");
    assert!(items.len() >= acknowledged.len());
}
