//! Garbage collection and namespace deletion against a real apiserver.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use moor_api::Resource;
use moor_api::core::v1::{ConfigMap, Namespace, Pod, ReplicationController};
use moor_api::meta::v1::OwnerReference;
use moor_client::{DeleteParams, ListParams};
use moor_testkit::assert_eventually;

use support::{CONVERGE, Cluster, live_pods, rc};

#[tokio::test]
async fn deleting_a_replication_controller_deletes_its_pods() {
    let cluster = Cluster::start().await.unwrap();
    let api = cluster.client.api::<ReplicationController>();
    api.create(&rc("default", "web", 3, "web")).await.unwrap();
    api.create(&rc("default", "keep", 1, "keep")).await.unwrap();
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web").await.len() == 3
            && live_pods(&cluster.client, "default", "app=keep")
                .await
                .len()
                == 1,
        CONVERGE
    );
    api.delete("default", "web", &DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web")
            .await
            .is_empty(),
        CONVERGE,
        "the pods follow their controller"
    );
    assert_eq!(
        live_pods(&cluster.client, "default", "app=keep")
            .await
            .len(),
        1,
        "other controllers' pods stay"
    );
}

fn owned_config_map(name: &str, owner: &str, uid: &str) -> ConfigMap {
    let mut meta = support::meta("default", name);
    meta.owner_references.push(OwnerReference {
        api_version: "v1".into(),
        kind: "ReplicationController".into(),
        name: owner.into(),
        uid: uid.into(),
        ..Default::default()
    });
    ConfigMap {
        metadata: Some(meta),
        ..Default::default()
    }
}

#[tokio::test]
async fn objects_whose_owner_is_gone_are_collected_and_others_kept() {
    let cluster = Cluster::start().await.unwrap();
    let owner = cluster
        .client
        .api::<ReplicationController>()
        .create(&rc("default", "owner", 0, "owner"))
        .await
        .unwrap();
    let config_maps = cluster.client.api::<ConfigMap>();
    config_maps
        .create(&owned_config_map("kept", "owner", &owner.meta().uid))
        .await
        .unwrap();
    // Same name as a live owner, but another incarnation's uid.
    config_maps
        .create(&owned_config_map("stale", "owner", "00000000-dead"))
        .await
        .unwrap();
    config_maps
        .create(&owned_config_map("orphaned", "never-was", "00000000-beef"))
        .await
        .unwrap();
    assert_eventually!(
        {
            let (all, _) = config_maps.list(&ListParams::default()).await.unwrap();
            let mut names: Vec<_> = all.iter().map(|c| c.meta().name.clone()).collect();
            names.sort();
            names == ["kept"]
        },
        CONVERGE,
        "only the config map with a live owner stays"
    );
}

#[tokio::test]
async fn deleting_a_namespace_empties_it_and_then_removes_it() {
    let cluster = Cluster::start().await.unwrap();
    let namespaces = cluster.client.api::<Namespace>();
    let ns = Namespace {
        metadata: Some(support::meta("", "scratch")),
        ..Default::default()
    };
    namespaces.create(&ns).await.unwrap();
    cluster
        .client
        .api::<ReplicationController>()
        .create(&rc("scratch", "web", 2, "web"))
        .await
        .unwrap();
    let cm = ConfigMap {
        metadata: Some(support::meta("scratch", "settings")),
        ..Default::default()
    };
    cluster.client.api::<ConfigMap>().create(&cm).await.unwrap();
    assert_eventually!(
        live_pods(&cluster.client, "scratch", "app=web").await.len() == 2,
        CONVERGE
    );
    namespaces
        .delete("", "scratch", &DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(
        matches!(
            namespaces.get("", "scratch").await,
            Err(moor_client::Error::NotFound(_))
        ),
        CONVERGE,
        "the namespace goes once empty: {:?}",
        namespaces.get("", "scratch").await.map(|n| n.status)
    );
    let in_scratch = ListParams::default().namespace("scratch");
    let (pods, _) = cluster.client.api::<Pod>().list(&in_scratch).await.unwrap();
    let (rcs, _) = cluster
        .client
        .api::<ReplicationController>()
        .list(&in_scratch)
        .await
        .unwrap();
    assert!(pods.is_empty() && rcs.is_empty(), "{pods:?} {rcs:?}");
    assert!(pods.iter().all(|p| p.meta().namespace == "scratch"));
}
