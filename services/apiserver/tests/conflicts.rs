//! Optimistic concurrency: 16 writers x 100 read-modify-write increments of one
//! annotation, retrying on ABORTED, end at exactly 1600 — on both stores.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::TestServer;
use moor_api::core::v1::ConfigMap;
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::meta::v1::{GetRequest, ObjectMeta};
use tonic::Code;

async fn increments(server: &TestServer) -> anyhow::Result<()> {
    let mut client = ConfigMapsClient::new(server.channel());
    let cm = ConfigMap {
        metadata: Some(ObjectMeta {
            name: "counter".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    client.create(cm).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut client = ConfigMapsClient::new(server.channel());
        tasks.spawn(async move {
            let mut retries = 0u32;
            for _ in 0..100 {
                loop {
                    let get = GetRequest {
                        namespace: "default".into(),
                        name: "counter".into(),
                    };
                    let mut cm = client.get(get).await?.into_inner();
                    let meta = cm.metadata.as_mut().expect("metadata");
                    let n: u64 = meta
                        .annotations
                        .get("count")
                        .map(|v| v.parse())
                        .transpose()?
                        .unwrap_or(0);
                    meta.annotations.insert("count".into(), (n + 1).to_string());
                    match client.update(cm).await {
                        Ok(_) => break,
                        Err(status) if status.code() == Code::Aborted => retries += 1,
                        Err(status) => return Err(anyhow::Error::from(status)),
                    }
                }
            }
            anyhow::Ok(retries)
        });
    }
    let mut retries = 0;
    while let Some(result) = tasks.join_next().await {
        retries += result??;
    }
    let get = GetRequest {
        namespace: "default".into(),
        name: "counter".into(),
    };
    let cm = client.get(get).await?.into_inner();
    assert_eq!(cm.metadata.unwrap().annotations["count"], "1600");
    assert!(
        retries > 0,
        "16 concurrent writers should have collided at least once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_on_sqlite_are_exact() -> anyhow::Result<()> {
    increments(&TestServer::sqlite().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_on_etcd_are_exact() -> anyhow::Result<()> {
    increments(&TestServer::etcd().await?).await
}

/// A scale read before a controller wrote the status: with its
/// resourceVersion it is stale (as any update); without one, as `kubectl
/// scale` sends it, it applies to the latest object and keeps the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_without_resource_version_applies_to_the_latest_object() -> anyhow::Result<()> {
    use moor_api::core::v1::replication_controllers_client::ReplicationControllersClient;
    use moor_api::core::v1::{
        PodTemplateSpec, ReplicationController, ReplicationControllerSpec,
        ReplicationControllerStatus,
    };
    let server = TestServer::sqlite().await?;
    let mut client = ReplicationControllersClient::new(server.channel());
    let labels = std::collections::HashMap::from([("app".to_string(), "web".to_string())]);
    let rc = ReplicationController {
        metadata: common::pod("web").metadata,
        spec: Some(ReplicationControllerSpec {
            replicas: Some(1),
            selector: labels.clone(),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: common::pod("web").spec,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = client.create(rc).await?.into_inner();
    let get = GetRequest {
        namespace: "default".into(),
        name: "web".into(),
    };
    let mut scale = client.get_scale(get.clone()).await?.into_inner();
    // A controller writes the status in between.
    let mut status = created;
    status.status = Some(ReplicationControllerStatus {
        replicas: 1,
        ..Default::default()
    });
    client.update_status(status).await?;

    scale.spec.as_mut().expect("spec").replicas = 3;
    let stale = client.update_scale(scale.clone()).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    scale
        .metadata
        .as_mut()
        .expect("metadata")
        .resource_version
        .clear();
    client.update_scale(scale).await?;
    let rc = client.get(get).await?.into_inner();
    assert_eq!(rc.spec.expect("spec").replicas, Some(3));
    assert_eq!(rc.status.expect("status").replicas, 1, "the status stays");
    Ok(())
}
