//! Deletion propagation policies on the apiserver side: Orphan and
//! Foreground leave the object with the garbage collector's finalizer and a
//! deletionTimestamp until the finalizer goes (the collector itself is the
//! controller-manager's, tested there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{TestServer, pod};
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::core::v1::nodes_client::NodesClient;
use moor_api::core::v1::{Binding, ConfigMap, Node};
use moor_api::meta::v1::{DeleteRequest, GetRequest, ObjectMeta, ObjectReference};
use moor_rpc::Channel;
use tonic::Code;

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn delete(name: &str, policy: &str) -> DeleteRequest {
    DeleteRequest {
        namespace: "default".into(),
        name: name.into(),
        propagation_policy: policy.into(),
        ..Default::default()
    }
}

fn get(name: &str) -> GetRequest {
    GetRequest {
        namespace: "default".into(),
        name: name.into(),
    }
}

/// Removes `finalizer` from the config map, as the garbage collector would.
async fn remove_finalizer(cms: &mut ConfigMapsClient<Channel>, name: &str, finalizer: &str) {
    let mut current = cms.get(get(name)).await.unwrap().into_inner();
    let meta = current.metadata.as_mut().unwrap();
    meta.finalizers.retain(|f| f != finalizer);
    cms.update(current).await.unwrap();
}

#[tokio::test]
async fn orphan_and_foreground_hold_the_object_until_their_finalizer_goes() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut cms = ConfigMapsClient::new(server.channel());
    for (policy, finalizer) in [("Orphan", "orphan"), ("Foreground", "foregroundDeletion")] {
        let name = policy.to_lowercase();
        cms.create(config_map(&name)).await?;
        let marked = cms.delete(delete(&name, policy)).await?.into_inner();
        let m = marked.metadata.unwrap();
        assert!(m.deletion_timestamp.is_some(), "{policy}: {m:?}");
        assert_eq!(m.finalizers, [finalizer], "{policy}");

        let stored = cms.get(get(&name)).await?.into_inner().metadata.unwrap();
        assert!(stored.deletion_timestamp.is_some(), "{policy}: still there");
        assert_eq!(stored.finalizers, [finalizer], "{policy}");

        // A second delete with the same policy changes nothing.
        let again = cms.delete(delete(&name, policy)).await?.into_inner();
        assert_eq!(
            again.metadata.unwrap().resource_version,
            stored.resource_version
        );

        remove_finalizer(&mut cms, &name, finalizer).await;
        let err = cms.get(get(&name)).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::NotFound,
            "{policy}: gone with its finalizer"
        );
    }
    Ok(())
}

#[tokio::test]
async fn other_finalizers_still_hold_the_object_after_the_collectors_goes() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut cms = ConfigMapsClient::new(server.channel());
    let mut held = config_map("held");
    held.metadata
        .as_mut()
        .unwrap()
        .finalizers
        .push("example.com/hold".into());
    cms.create(held).await?;
    let marked = cms.delete(delete("held", "Orphan")).await?.into_inner();
    assert_eq!(
        marked.metadata.unwrap().finalizers,
        ["example.com/hold", "orphan"]
    );
    remove_finalizer(&mut cms, "held", "orphan").await;
    let stored = cms.get(get("held")).await?.into_inner().metadata.unwrap();
    assert!(stored.deletion_timestamp.is_some());
    assert_eq!(stored.finalizers, ["example.com/hold"]);
    remove_finalizer(&mut cms, "held", "example.com/hold").await;
    assert_eq!(
        cms.get(get("held")).await.unwrap_err().code(),
        Code::NotFound
    );
    Ok(())
}

#[tokio::test]
async fn a_later_delete_may_change_the_policy() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut cms = ConfigMapsClient::new(server.channel());
    cms.create(config_map("settings")).await?;
    cms.delete(delete("settings", "Orphan")).await?;
    let switched = cms
        .delete(delete("settings", "Foreground"))
        .await?
        .into_inner();
    assert_eq!(
        switched.metadata.unwrap().finalizers,
        ["foregroundDeletion"]
    );
    // No policy keeps what the object has.
    let kept = cms.delete(delete("settings", "")).await?.into_inner();
    assert_eq!(kept.metadata.unwrap().finalizers, ["foregroundDeletion"]);
    // Background drops the collector's finalizer: nothing holds it any more.
    cms.delete(delete("settings", "Background")).await?;
    assert_eq!(
        cms.get(get("settings")).await.unwrap_err().code(),
        Code::NotFound
    );
    Ok(())
}

#[tokio::test]
async fn background_and_no_policy_delete_at_once_and_unknown_policies_are_refused()
-> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut cms = ConfigMapsClient::new(server.channel());
    for (name, policy) in [("plain", ""), ("background", "Background")] {
        cms.create(config_map(name)).await?;
        cms.delete(delete(name, policy)).await?;
        assert_eq!(
            cms.get(get(name)).await.unwrap_err().code(),
            Code::NotFound,
            "{policy:?}"
        );
    }
    cms.create(config_map("kept")).await?;
    let err = cms.delete(delete("kept", "orphan")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("propagationPolicy"), "{err:?}");
    assert!(
        cms.get(get("kept")).await.is_ok(),
        "a refused delete deletes nothing"
    );
    Ok(())
}

#[tokio::test]
async fn kinds_the_collector_does_not_follow_are_deleted_at_once() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut nodes = NodesClient::new(server.channel());
    let node = Node {
        metadata: Some(ObjectMeta {
            name: "node-1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    nodes.create(node).await?;
    nodes
        .delete(DeleteRequest {
            name: "node-1".into(),
            propagation_policy: "Orphan".into(),
            ..Default::default()
        })
        .await?;
    let err = nodes
        .get(GetRequest {
            name: "node-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn a_bound_pod_waits_for_both_its_node_and_the_collector() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut pods = server.pods();
    pods.create(pod("web")).await?;
    pods.bind(Binding {
        metadata: Some(ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        target: Some(ObjectReference {
            kind: "Node".into(),
            name: "node-1".into(),
            ..Default::default()
        }),
    })
    .await?;
    let marked = pods.delete(delete("web", "Orphan")).await?.into_inner();
    let m = marked.metadata.unwrap();
    assert_eq!(m.finalizers, ["orphan"]);
    assert_eq!(m.deletion_grace_period_seconds, Some(30));

    // The node agent confirms before the collector is done.
    pods.delete(DeleteRequest {
        grace_period_seconds: Some(0),
        ..delete("web", "")
    })
    .await?;
    let stored = pods.get(get("web")).await?.into_inner();
    assert_eq!(stored.metadata.as_ref().unwrap().finalizers, ["orphan"]);

    // The collector finds no dependents and removes its finalizer.
    let mut done = stored;
    done.metadata.as_mut().unwrap().finalizers.clear();
    pods.update(done).await?;
    assert_eq!(
        pods.get(get("web")).await.unwrap_err().code(),
        Code::NotFound
    );
    Ok(())
}

#[tokio::test]
async fn a_bound_pod_whose_finalizer_goes_first_still_waits_for_its_node() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut pods = server.pods();
    pods.create(pod("web")).await?;
    pods.bind(Binding {
        metadata: Some(ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        target: Some(ObjectReference {
            kind: "Node".into(),
            name: "node-1".into(),
            ..Default::default()
        }),
    })
    .await?;
    pods.delete(delete("web", "Foreground")).await?;
    let mut current = pods.get(get("web")).await?.into_inner();
    current.metadata.as_mut().unwrap().finalizers.clear();
    pods.update(current).await?;
    let stored = pods.get(get("web")).await?.into_inner();
    assert!(
        stored.metadata.unwrap().deletion_timestamp.is_some(),
        "still there until the node confirms"
    );
    pods.delete(DeleteRequest {
        grace_period_seconds: Some(0),
        ..delete("web", "")
    })
    .await?;
    assert_eq!(
        pods.get(get("web")).await.unwrap_err().code(),
        Code::NotFound
    );
    Ok(())
}
