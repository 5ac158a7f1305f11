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
