//! Behaviour at the edges of the connection: a lost etcd, a dropped watch.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moor_storage::{Error, Store};
use moor_storage_etcd::EtcdStore;
use moor_testkit::{EtcdServer, assert_eventually};

const WAIT: Duration = Duration::from_secs(30);

/// The number of watchers etcd is serving, from its metrics.
async fn watchers(etcd: &EtcdServer) -> Option<u64> {
    let metrics = etcd.http_get("/metrics").await.ok()?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

#[tokio::test]
async fn dropping_a_watch_cancels_it_in_etcd() {
    moor_testkit::init_tracing();
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let store = EtcdStore::connect(&[etcd.endpoint()])
        .await
        .expect("connect");
    let mut watch = store.watch("/w/", 0).await.expect("watch");
    store.create("/w/a", Bytes::new()).await.expect("create");
    let first = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("event in time");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    assert_eq!(watchers(&etcd).await, Some(1), "etcd serves the watch");

    drop(watch);
    assert_eventually!(
        watchers(&etcd).await == Some(0),
        WAIT,
        "etcd still serves a dropped watch"
    );
}

#[tokio::test]
async fn a_lost_etcd_is_unavailable() {
    moor_testkit::init_tracing();
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let store = EtcdStore::connect(&[etcd.endpoint()])
        .await
        .expect("connect")
        .with_request_timeout(Duration::from_secs(3));
    store.create("/lost/a", Bytes::new()).await.expect("create");
    let mut watch = store.watch("/lost/", 0).await.expect("watch");
    let first = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("event in time");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");

    drop(etcd);
    let item = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("watch notices");
    assert!(
        matches!(item, Some(Err(Error::Unavailable(_)))),
        "watch: {item:?}"
    );
    let got = store.get("/lost/a").await;
    assert!(matches!(got, Err(Error::Unavailable(_))), "get: {got:?}");
    let created = store.create("/lost/b", Bytes::new()).await;
    assert!(
        matches!(created, Err(Error::Unavailable(_))),
        "create: {created:?}"
    );
}

#[tokio::test]
async fn connecting_to_nothing_fails() {
    let port = moor_testkit::free_port();
    let result = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")]).await;
    let error = result.err().expect("connect to a closed port fails");
    assert!(
        matches!(Error::from(error), Error::Unavailable(_)),
        "a closed port is unavailable"
    );
}
