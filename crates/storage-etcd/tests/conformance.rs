//! The shared `Store` conformance suite, each test on its own fresh etcd
//! (revisions and compaction are global to an etcd cluster, so tests cannot
//! share one).

use moor_storage_etcd::EtcdStore;
use moor_testkit::EtcdServer;

moor_storage::conformance_tests!(async {
    moor_testkit::init_tracing();
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let store = EtcdStore::connect(&[etcd.endpoint()])
        .await
        .expect("connect");
    (store, etcd)
});
