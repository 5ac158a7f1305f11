//! Lists answered from the watch cache (`resourceVersion: "0"`): the same
//! objects a store scan finds, through the `spec.nodeName` index and
//! without it, across binds, namespace filters and deletes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::{TestServer, pod};
use moor_api::core::v1::Binding;
use moor_api::core::v1::pods_client::PodsClient;
use moor_api::meta::v1::{DeleteRequest, ListRequest, ObjectMeta, ObjectReference};
use moor_rpc::Channel;
use tonic::Code;

/// The names a list returns, sorted.
async fn names(pods: &mut PodsClient<Channel>, request: ListRequest) -> Vec<String> {
    let list = pods.list(request).await.unwrap().into_inner();
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .map(|p| {
            let meta = p.metadata.unwrap();
            format!("{}/{}", meta.namespace, meta.name)
        })
        .collect();
    names.sort();
    names
}

/// Asserts that the cache answers `request` as the store does, once it has
/// caught up (the cache follows the store's watch); returns the answer.
async fn cache_matches_store(pods: &mut PodsClient<Channel>, request: ListRequest) -> Vec<String> {
    let from_store = names(pods, request.clone()).await;
    let cached = ListRequest {
        resource_version: "0".into(),
        ..request.clone()
    };
    moor_testkit::assert_eventually!(
        names(pods, cached.clone()).await == from_store,
        Duration::from_secs(10),
        "the cache answers {request:?} as the store does: {:?} vs {from_store:?}",
        names(pods, cached.clone()).await
    );
    from_store
}

fn on_node(node: &str) -> ListRequest {
    ListRequest {
        field_selector: format!("spec.nodeName={node}"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_the_cache_match_a_store_scan() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut pods = server.pods();
    for namespace in ["default", "moor-system"] {
        for i in 0..24 {
            let mut p = pod(&format!("p{i}"));
            p.metadata.as_mut().unwrap().namespace = namespace.into();
            pods.create(p).await?;
            // Three in four bound, round robin over three nodes.
            if i % 4 != 3 {
                pods.bind(Binding {
                    metadata: Some(ObjectMeta {
                        name: format!("p{i}"),
                        namespace: namespace.into(),
                        ..Default::default()
                    }),
                    target: Some(ObjectReference {
                        kind: "Node".into(),
                        name: format!("node-{}", i % 3),
                        ..Default::default()
                    }),
                })
                .await?;
            }
        }
    }
    for node in ["node-0", "node-1", "node-2"] {
        let found = cache_matches_store(&mut pods, on_node(node)).await;
        assert!(!found.is_empty(), "{node} has pods");
    }
    // Unbound pods: the index's empty value.
    assert_eq!(cache_matches_store(&mut pods, on_node("")).await.len(), 12);
    // The index within one namespace, and the full scan paths.
    let in_system = ListRequest {
        namespace: "moor-system".into(),
        ..on_node("node-1")
    };
    assert!(
        cache_matches_store(&mut pods, in_system)
            .await
            .iter()
            .all(|n| n.starts_with("moor-system/"))
    );
    let not_on_one = ListRequest {
        field_selector: "spec.nodeName!=node-1".into(),
        ..Default::default()
    };
    assert_eq!(cache_matches_store(&mut pods, not_on_one).await.len(), 36);
    assert_eq!(
        cache_matches_store(&mut pods, ListRequest::default())
            .await
            .len(),
        48
    );

    // Deleted pods leave the index too.
    for i in [0, 3, 6] {
        pods.delete(DeleteRequest {
            namespace: "default".into(),
            name: format!("p{i}"),
            grace_period_seconds: Some(0),
            ..Default::default()
        })
        .await?;
    }
    let left = cache_matches_store(&mut pods, on_node("node-0")).await;
    assert!(!left.contains(&"default/p0".to_owned()), "{left:?}");
    assert!(!left.contains(&"default/p6".to_owned()), "{left:?}");

    let err = pods
        .list(ListRequest {
            resource_version: "7".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("resourceVersion"),
        "{}",
        err.message()
    );
    Ok(())
}
