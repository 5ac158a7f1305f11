//! Pod-only bind, workload scale and status writes through `Api`.

mod support;

use std::collections::HashMap;

use moor_api::core::v1::{
    Binding, Container, Pod, PodSpec, PodStatus, PodTemplateSpec, ReplicationController,
    ReplicationControllerSpec,
};
use moor_api::meta::v1::{ObjectMeta, ObjectReference};
use moor_client::{Client, Error};
use support::Server;

fn meta(name: &str, labels: &[(&str, &str)]) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
}

fn pod_spec() -> Option<PodSpec> {
    Some(PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: "moor/echo:0.1".into(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[tokio::test]
async fn bind_status_and_scale() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let client = Client::new(&server.url())?;

    let pods = client.api::<Pod>();
    pods.create(&Pod {
        metadata: meta("web", &[]),
        spec: pod_spec(),
        ..Default::default()
    })
    .await?;
    let binding = |node: &str| Binding {
        metadata: meta("web", &[]),
        target: Some(ObjectReference {
            kind: "Node".into(),
            name: node.into(),
            ..Default::default()
        }),
    };
    let bound = pods.bind(&binding("node-1")).await?;
    assert_eq!(
        bound.spec.as_ref().map(|s| s.node_name.as_str()),
        Some("node-1")
    );
    let again = pods.bind(&binding("node-2")).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");

    let mut running = bound.clone();
    running.status = Some(PodStatus {
        phase: "Running".into(),
        ..Default::default()
    });
    let written = pods.update_status(&running).await?;
    assert_eq!(written.status.map(|s| s.phase), Some("Running".to_string()));

    let rcs = client.api::<ReplicationController>();
    let labels = [("app", "web")];
    let rc = ReplicationController {
        metadata: meta("web", &labels),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(2),
            selector: HashMap::from([("app".to_string(), "web".to_string())]),
            template: Some(PodTemplateSpec {
                metadata: meta("", &labels),
                spec: pod_spec(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    rcs.create(&rc).await?;
    let mut scale = rcs.get_scale("default", "web").await?;
    assert_eq!(scale.spec.as_ref().map(|s| s.replicas), Some(2));
    scale.spec.get_or_insert_with(Default::default).replicas = 5;
    rcs.update_scale(&scale).await?;
    let rc = rcs.get("default", "web").await?;
    assert_eq!(rc.spec.and_then(|s| s.replicas), Some(5));
    assert!(
        !rc.metadata
            .map(|m| m.resource_version)
            .unwrap_or_default()
            .is_empty()
    );
    let missing = rcs.get_scale("default", "nope").await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");

    server.stop().await
}
