//! R11 of the fault suite: one client floods the apiserver with lists of
//! megabytes and creates, far past what it serves at once, while simulated
//! nodes renew their leases every second and the controller-manager marks a
//! node NotReady after 8 s without one. The flood is refused with
//! RESOURCE_EXHAUSTED, no node is ever marked NotReady, and the apiserver
//! keeps running. Its own test binary, so that no other test competes for
//! the cores while it measures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::moor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::core::v1::{ConfigMap, Node};
use moor_api::meta::v1::ListRequest;
use moor_client::watcher::Event as WatcherEvent;
use moor_client::{Client, ListParams};
use moor_testkit::assert_eventually;
use tokio::time::Instant;

const NODES: usize = 20;
/// Concurrent requests of the flood, ten times what one caller is given.
const FLOOD: usize = 1000;
const FLOOD_FOR: Duration = Duration::from_secs(20);
/// ConfigMaps of 4 KiB each that every list of the flood returns (2 MiB).
const LISTED: usize = 500;

/// A ConfigMap of 4 KiB.
fn config_map(name: &str) -> ConfigMap {
    common::config_map(name, &"x".repeat(4096))
}

fn ready(node: &Node) -> bool {
    node.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_flood_is_refused_and_no_lease_is_missed() {
    let data = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut apiserver = moor(&[
        "apiserver",
        "--insecure",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let client = Client::new(&url).unwrap();
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    let _controllers = moor(&[
        "controller-manager",
        "--server",
        &url,
        "--node-monitor-grace-period-seconds",
        "8",
    ]);
    let _agents = common::fake_nodes(&url, NODES, "steady", &["--heartbeat-seconds", "1"]);
    assert_eventually!(
        moor_integration_tests::ready_nodes(&client).await.len() == NODES,
        Duration::from_secs(60),
        "{NODES} simulated nodes Ready"
    );
    let configs = client.api::<ConfigMap>();
    for i in 0..LISTED {
        configs
            .create(&config_map(&format!("listed-{i}")))
            .await
            .unwrap();
    }

    // Any node seen not Ready from here on is a missed lease.
    let not_ready = Arc::new(AtomicBool::new(false));
    let watch = {
        let not_ready = not_ready.clone();
        let nodes = client.api::<Node>();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(moor_client::watcher(nodes, ListParams::default()));
            while let Some(event) = events.next().await {
                let changed = match event {
                    Ok(WatcherEvent::Applied(node)) => vec![node],
                    Ok(WatcherEvent::Restarted(nodes)) => nodes,
                    _ => continue,
                };
                for node in changed {
                    if !ready(&node) {
                        eprintln!("{} is not Ready", node.meta().name);
                        not_ready.store(true, Ordering::SeqCst);
                    }
                }
            }
        })
    };

    // The flood: one caller (one connection), FLOOD requests at a time,
    // through the raw gRPC client: a hostile client that never waits for
    // the server's hint (moor's client does, and calls again).
    let flood = ConfigMapsClient::new(moor_rpc::channel(&url).unwrap())
        .max_decoding_message_size(moor_rpc::MAX_MESSAGE_BYTES);
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + FLOOD_FOR;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..FLOOD {
        let (flood, served, refused) = (flood.clone(), served.clone(), refused.clone());
        tasks.spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                let mut flood = flood.clone();
                let result = if i % 2 == 0 {
                    let list = ListRequest {
                        namespace: "default".into(),
                        ..Default::default()
                    };
                    flood.list(list).await.map(|_| ())
                } else {
                    let create = config_map(&format!("flood-{t}-{i}"));
                    flood.create(create).await.map(|_| ())
                };
                match result {
                    Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(status) => panic!("the flood got {status}, not RESOURCE_EXHAUSTED"),
                };
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let (served, refused) = (
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );

    assert!(
        apiserver.try_wait().unwrap().is_none(),
        "the apiserver died under the flood"
    );
    assert!(refused > 0, "the flood was never refused ({served} served)");
    assert!(served > 0, "the flood was refused entirely");
    assert_eq!(
        moor_integration_tests::ready_nodes(&client).await.len(),
        NODES,
        "every node Ready after the flood"
    );
    assert!(
        !not_ready.load(Ordering::SeqCst),
        "a node was marked NotReady during the flood"
    );
    watch.abort();
    println!(
        "R11: {FLOOD} requests at a time for {FLOOD_FOR:?}: {served} served, {refused} refused \
         with RESOURCE_EXHAUSTED; {NODES} nodes renewing every 1 s never marked NotReady (grace 8 s)"
    );
}
