//! Garbage collection and namespace deletion against a real apiserver.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use moor_api::core::v1::{Binding, ConfigMap, Namespace, Pod, ReplicationController};
use moor_api::meta::v1::{LabelSelector, ObjectReference, OwnerReference};
use moor_client::{Client, DeleteParams, ListParams};
use moor_testkit::assert_eventually;

use support::{CONVERGE, Cluster, live_pods, rc};

fn policy(policy: &str) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy.into()),
        ..Default::default()
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    Deployment {
        metadata: Some(support::meta("default", name)),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: support::labels(&[("app", name)]),
                ..Default::default()
            }),
            template: Some(support::template(&[("app", name)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every pod in `default` matching `selector`, terminating or not.
async fn all_pods(client: &Client, selector: &str) -> Vec<Pod> {
    let params = ListParams::default().namespace("default").labels(selector);
    client.api::<Pod>().list(&params).await.unwrap().0
}

async fn all_replica_sets(client: &Client) -> Vec<ReplicaSet> {
    let params = ListParams::default().namespace("default");
    client.api::<ReplicaSet>().list(&params).await.unwrap().0
}

/// Binds the pod to a node no agent runs, so that its deletion is graceful
/// and waits for the test to confirm it, as that node's agent would.
async fn bind(client: &Client, pod: &Pod) {
    let binding = Binding {
        metadata: Some(support::meta("default", &pod.meta().name)),
        target: Some(ObjectReference {
            kind: "Node".into(),
            name: "node-1".into(),
            ..Default::default()
        }),
    };
    client.api::<Pod>().bind(&binding).await.unwrap();
}

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

#[tokio::test]
async fn orphaning_a_replication_controller_keeps_its_pods_unowned() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let api = client.api::<ReplicationController>();
    api.create(&rc("default", "web", 3, "web")).await.unwrap();
    api.create(&rc("default", "other", 1, "other"))
        .await
        .unwrap();
    assert_eventually!(
        live_pods(client, "default", "app=web").await.len() == 3
            && live_pods(client, "default", "app=other").await.len() == 1,
        CONVERGE
    );
    let mut before: Vec<String> = live_pods(client, "default", "app=web")
        .await
        .iter()
        .map(|p| p.meta().name.clone())
        .collect();
    before.sort();

    let marked = api
        .delete("default", "web", &policy("Orphan"))
        .await
        .unwrap();
    assert!(marked.meta().deletion_timestamp.is_some());
    assert_eq!(marked.meta().finalizers, ["orphan"]);
    assert_eventually!(
        matches!(
            api.get("default", "web").await,
            Err(moor_client::Error::NotFound(_))
        ),
        CONVERGE,
        "the controller goes once its pods are orphaned"
    );

    // A background delete collected after the orphaning shows the collector
    // has looked at everything before it: the orphans are for good.
    api.delete("default", "other", &DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(all_pods(client, "app=other").await.is_empty(), CONVERGE);
    let pods = live_pods(client, "default", "app=web").await;
    let mut after: Vec<String> = pods.iter().map(|p| p.meta().name.clone()).collect();
    after.sort();
    assert_eq!(after, before, "the same pods, still running");
    assert!(
        pods.iter().all(|p| p.meta().owner_references.is_empty()),
        "{pods:?}"
    );
}

#[tokio::test]
async fn foreground_deletion_of_a_deployment_takes_its_replica_sets_and_pods_first() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let deployments = client.api::<Deployment>();
    deployments.create(&deployment("web", 2)).await.unwrap();
    assert_eventually!(
        live_pods(client, "default", "app=web").await.len() == 2,
        CONVERGE
    );
    for pod in live_pods(client, "default", "app=web").await {
        bind(client, &pod).await;
    }

    deployments
        .delete("default", "web", &policy("Foreground"))
        .await
        .unwrap();
    assert_eventually!(
        {
            let pods = all_pods(client, "app=web").await;
            pods.len() == 2 && pods.iter().all(|p| p.meta().deletion_timestamp.is_some())
        },
        CONVERGE,
        "the pods are deleted, gracefully: {:?}",
        all_pods(client, "app=web").await
    );
    // The pods wait for their node; everything above them waits for the pods.
    let held = deployments.get("default", "web").await.unwrap();
    assert!(held.meta().deletion_timestamp.is_some());
    assert_eq!(held.meta().finalizers, ["foregroundDeletion"]);
    let sets = all_replica_sets(client).await;
    assert_eq!(sets.len(), 1);
    assert!(sets[0].meta().deletion_timestamp.is_some());
    assert_eq!(sets[0].meta().finalizers, ["foregroundDeletion"]);

    // The node confirms the pods' end.
    let confirm = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    for pod in all_pods(client, "app=web").await {
        client
            .api::<Pod>()
            .delete("default", &pod.meta().name, &confirm)
            .await
            .unwrap();
    }
    assert_eventually!(
        matches!(
            deployments.get("default", "web").await,
            Err(moor_client::Error::NotFound(_))
        ),
        CONVERGE,
        "the deployment goes last"
    );
    assert!(all_replica_sets(client).await.is_empty());
    assert!(all_pods(client, "app=web").await.is_empty());
}

#[tokio::test]
async fn background_deletion_of_a_deployment_removes_it_at_once_and_collects_the_rest() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let deployments = client.api::<Deployment>();
    deployments.create(&deployment("web", 2)).await.unwrap();
    assert_eventually!(
        live_pods(client, "default", "app=web").await.len() == 2,
        CONVERGE
    );
    let gone = deployments
        .delete("default", "web", &policy("Background"))
        .await
        .unwrap();
    assert!(gone.meta().finalizers.is_empty());
    assert!(matches!(
        deployments.get("default", "web").await,
        Err(moor_client::Error::NotFound(_))
    ));
    assert_eventually!(
        all_replica_sets(client).await.is_empty() && all_pods(client, "app=web").await.is_empty(),
        CONVERGE,
        "its replica sets and their pods follow"
    );
}

#[tokio::test]
async fn foreground_deletion_spares_dependents_another_owner_keeps() {
    let cluster = Cluster::start().await.unwrap();
    let rcs = cluster.client.api::<ReplicationController>();
    let a = rcs.create(&rc("default", "a", 0, "a")).await.unwrap();
    let b = rcs.create(&rc("default", "b", 0, "b")).await.unwrap();
    let config_maps = cluster.client.api::<ConfigMap>();
    config_maps
        .create(&owned_config_map("only-a", "a", &a.meta().uid))
        .await
        .unwrap();
    let mut shared = owned_config_map("shared", "a", &a.meta().uid);
    let meta = shared.metadata.as_mut().unwrap();
    meta.owner_references[0].block_owner_deletion = Some(true);
    meta.owner_references.push(OwnerReference {
        api_version: "v1".into(),
        kind: "ReplicationController".into(),
        name: "b".into(),
        uid: b.meta().uid.clone(),
        ..Default::default()
    });
    config_maps.create(&shared).await.unwrap();

    rcs.delete("default", "a", &policy("Foreground"))
        .await
        .unwrap();
    assert_eventually!(
        matches!(
            rcs.get("default", "a").await,
            Err(moor_client::Error::NotFound(_))
        ) && matches!(
            config_maps.get("default", "only-a").await,
            Err(moor_client::Error::NotFound(_))
        ),
        CONVERGE,
        "the owner and its only dependent go"
    );
    let kept = config_maps.get("default", "shared").await.unwrap();
    let owners: Vec<&str> = kept
        .meta()
        .owner_references
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        owners,
        ["b"],
        "kept by its other owner, unlinked from the first"
    );
}
