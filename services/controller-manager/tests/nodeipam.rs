//! Node pod ranges against a real apiserver and controller-manager: unique
//! over many nodes registering at once, freed with their node, reported
//! when the cluster CIDR is full, kept across a controller-manager
//! failover, and never moved once set.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use std::collections::HashSet;

use futures::future::join_all;
use moor_api::Resource;
use moor_api::core::v1::Node;
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, DeleteParams, ListParams};
use moor_integration_tests::Apiserver;
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

use support::CONVERGE;

/// A controller-manager handing out `/mask` ranges of `cluster`; stops
/// when the token is cancelled (or dropped with the guard).
struct ControllerManager(CancellationToken);

impl ControllerManager {
    fn start(url: &str, cluster: &str, mask: u8) -> Self {
        let mut config = moor_controller_manager::Config::new(url.to_owned());
        config.pod_ranges =
            Some(moor_controller_manager::PodRanges::new(cluster.parse().unwrap(), mask).unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(moor_controller_manager::run(config, stop.clone()));
        Self(stop)
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn apiserver() -> (Apiserver, String, Client) {
    let apiserver = Apiserver::start().await.unwrap();
    let url = format!("http://{}", apiserver.addr);
    let client = Client::new(&url).unwrap();
    client.wait_ready(CONVERGE).await.unwrap();
    (apiserver, url, client)
}

async fn register(client: &Client, name: &str) {
    let mut node = Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    node.set_type_meta();
    client.api::<Node>().create(&node).await.unwrap();
}

async fn range_of(client: &Client, name: &str) -> String {
    let node = client.api::<Node>().get("", name).await.unwrap();
    node.spec.map(|s| s.pod_cidr).unwrap_or_default()
}

async fn ranges(client: &Client) -> Vec<(String, String)> {
    let (nodes, _) = client
        .api::<Node>()
        .list(&ListParams::default())
        .await
        .unwrap();
    nodes
        .into_iter()
        .map(|n| {
            (
                n.metadata.unwrap().name,
                n.spec.map(|s| s.pod_cidr).unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_nodes_registering_at_once_get_distinct_ranges() {
    let (_apiserver, url, client) = apiserver().await;
    let _cm = ControllerManager::start(&url, "10.244.0.0/16", 24);
    // 200 simulated node agents in one process, registering together.
    let dir = tempfile::tempdir().unwrap();
    let mut agents = moor_node::Config::new(url.clone(), "sim", dir.path().to_path_buf());
    agents.runtime = moor_node::RuntimeKind::Fake;
    agents.count = Some(200);
    agents.agent_listen = None;
    let stop = CancellationToken::new();
    let _stop_agents = stop.clone().drop_guard();
    tokio::spawn(moor_node::run(agents, stop));
    assert_eventually!(
        ranges(&client).await.len() == 200,
        CONVERGE,
        "the 200 simulated nodes register"
    );
    assert_eventually!(
        ranges(&client).await.iter().all(|(_, r)| !r.is_empty()),
        CONVERGE,
        "every node gets a range"
    );
    let all = ranges(&client).await;
    let distinct: HashSet<&String> = all.iter().map(|(_, r)| r).collect();
    assert_eq!(all.len(), 200);
    assert_eq!(distinct.len(), 200, "a range was handed out twice: {all:?}");
    let cluster: ipnet::Ipv4Net = "10.244.0.0/16".parse().unwrap();
    for (name, range) in &all {
        let range: ipnet::Ipv4Net = range.parse().unwrap();
        assert!(
            cluster.contains(&range) && range.prefix_len() == 24,
            "{name}: {range}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_cidr_is_reported_and_a_freed_range_handed_on() {
    let (_apiserver, url, client) = apiserver().await;
    // Four /29 ranges in a /27.
    let _cm = ControllerManager::start(&url, "10.9.0.0/27", 29);
    for name in ["a", "b", "c", "d"] {
        register(&client, name).await;
    }
    assert_eventually!(
        join_all(["a", "b", "c", "d"].map(|n| range_of(&client, n)))
            .await
            .iter()
            .all(|r| !r.is_empty()),
        CONVERGE,
        "the first four nodes get the four ranges"
    );
    register(&client, "e").await;
    assert_eventually!(
        support::events(&client, moor_controller_manager::CIDR_NOT_AVAILABLE)
            .await
            .iter()
            .any(|e| e.involved_object.as_ref().is_some_and(|o| o.name == "e")),
        CONVERGE,
        "node e is told no range is left"
    );
    assert_eq!(range_of(&client, "e").await, "");

    let freed = range_of(&client, "b").await;
    client
        .api::<Node>()
        .delete("", "b", &DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(
        range_of(&client, "e").await == freed,
        CONVERGE,
        "node e gets the range node b held ({freed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_manager_keeps_every_range_nodes_hold_and_none_moves() {
    let (_apiserver, url, client) = apiserver().await;
    let first = ControllerManager::start(&url, "10.9.0.0/26", 29);
    for name in ["a", "b", "c"] {
        register(&client, name).await;
    }
    assert_eventually!(
        join_all(["a", "b", "c"].map(|n| range_of(&client, n)))
            .await
            .iter()
            .all(|r| !r.is_empty()),
        CONVERGE,
        "the first controller-manager hands out ranges"
    );
    drop(first);
    // One set by hand while no controller-manager runs.
    let nodes = client.api::<Node>();
    let mut manual = Node {
        metadata: Some(ObjectMeta {
            name: "manual".into(),
            ..Default::default()
        }),
        spec: Some(moor_api::core::v1::NodeSpec {
            pod_cidr: "10.9.0.48/29".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    manual.set_type_meta();
    nodes.create(&manual).await.unwrap();

    let _second = ControllerManager::start(&url, "10.9.0.0/26", 29);
    let names: Vec<String> = (0..4).map(|i| format!("later-{i}")).collect();
    for name in &names {
        register(&client, name).await;
    }
    assert_eventually!(
        join_all(names.iter().map(|n| range_of(&client, n)))
            .await
            .iter()
            .all(|r| !r.is_empty()),
        CONVERGE,
        "the second controller-manager hands out ranges too"
    );
    let all = ranges(&client).await;
    let distinct: HashSet<&String> = all.iter().map(|(_, r)| r).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a range was handed out twice: {all:?}"
    );

    // A node's range never moves: pods hold its addresses.
    let mut a = nodes.get("", "a").await.unwrap();
    a.spec.as_mut().unwrap().pod_cidr = "10.9.0.56/29".into();
    let err = nodes.update(&a).await.expect_err("a range cannot move");
    assert!(
        err.to_string().contains("spec.podCIDR") && err.to_string().contains("may not change"),
        "{err}"
    );
    let mut bad = nodes.get("", "manual").await.unwrap();
    bad.metadata.as_mut().unwrap().name = "bad".into();
    bad.metadata.as_mut().unwrap().resource_version.clear();
    bad.metadata.as_mut().unwrap().uid.clear();
    bad.spec.as_mut().unwrap().pod_cidr = "10.9.0.300/29".into();
    let err = nodes.create(&bad).await.expect_err("not a CIDR");
    assert!(err.to_string().contains("spec.podCIDR"), "{err}");
}
