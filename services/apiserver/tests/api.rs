//! The API's semantics through gRPC, on a real apiserver over the embedded store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::HashSet;

use common::{TestServer, pod};
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::core::v1::namespaces_client::NamespacesClient;
use moor_api::core::v1::services_client::ServicesClient;
use moor_api::core::v1::{Binding, ConfigMap, Service, ServicePort, ServiceSpec};
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListRequest, ObjectMeta, ObjectReference};
use tonic::Code;

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.to_string(),
        ..Default::default()
    })
}

#[tokio::test]
async fn create_sets_server_fields_and_defaults() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let created = server.pods().create(pod("web")).await?.into_inner();
    let m = created.metadata.clone().unwrap();
    assert_eq!(m.namespace, "default");
    assert!(!m.uid.is_empty());
    assert!(m.creation_timestamp.is_some());
    assert_eq!(m.generation, 1);
    assert!(m.resource_version.parse::<i64>()? > 0);
    assert_eq!(created.kind, "Pod");
    assert_eq!(created.api_version, "v1");
    let spec = created.spec.unwrap();
    assert_eq!(spec.restart_policy, "Always");
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.containers[0].image_pull_policy, "IfNotPresent");
    assert_eq!(created.status.unwrap().phase, "Pending");

    let again = server.pods().create(pod("web")).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    Ok(())
}

#[tokio::test]
async fn invalid_objects_name_the_field_and_write_nothing() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut bad = pod("Bad_Name");
    bad.spec.as_mut().unwrap().containers[0]
        .ports
        .push(moor_api::core::v1::ContainerPort {
            container_port: 70000,
            ..Default::default()
        });
    let err = server.pods().create(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("metadata.name"), "{}", err.message());
    assert!(
        err.message()
            .contains("spec.containers[0].ports[0].containerPort"),
        "{}",
        err.message()
    );

    let mut no_image = pod("no-image");
    no_image.spec.as_mut().unwrap().containers[0].image.clear();
    let err = server.pods().create(no_image).await.unwrap_err();
    assert!(
        err.message()
            .contains("spec.containers[0].image: Required value"),
        "{}",
        err.message()
    );

    let list = server
        .pods()
        .list(ListRequest::default())
        .await?
        .into_inner();
    assert!(list.items.is_empty(), "nothing written");

    let err = server
        .pods()
        .list(ListRequest {
            label_selector: "app in (web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = server
        .pods()
        .list(ListRequest {
            field_selector: "spec.image=x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("spec.image"), "{}", err.message());
    Ok(())
}

#[tokio::test]
async fn objects_need_an_existing_namespace_and_builtins_exist() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut p = pod("web");
    p.metadata.as_mut().unwrap().namespace = "nowhere".into();
    let err = server.pods().create(p).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("nowhere"));

    let mut namespaces = NamespacesClient::new(server.channel());
    let names: HashSet<String> = namespaces
        .list(ListRequest::default())
        .await?
        .into_inner()
        .items
        .into_iter()
        .map(|n| n.metadata.unwrap().name)
        .collect();
    assert!(
        names.contains("default") && names.contains("moor-system"),
        "{names:?}"
    );
    let err = namespaces
        .delete(DeleteRequest {
            name: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    Ok(())
}

#[tokio::test]
async fn stale_updates_are_aborted_and_spec_and_status_are_separate() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut pods = server.pods();
    let created = pods.create(pod("web")).await?.into_inner();

    let mut with_status = created.clone();
    with_status.status.as_mut().unwrap().phase = "Running".into();
    with_status
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "web".into());
    let updated = pods.update(with_status.clone()).await?.into_inner();
    assert_eq!(
        updated.status.as_ref().unwrap().phase,
        "Pending",
        "update ignores status"
    );

    let err = pods.update_status(with_status).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "stale resourceVersion");

    let mut current = pods
        .get(GetRequest {
            namespace: "default".into(),
            name: "web".into(),
        })
        .await?
        .into_inner();
    current.status.as_mut().unwrap().phase = "Running".into();
    current.spec.as_mut().unwrap().containers[0].image = "moor/echo:0.2".into();
    let status_written = pods.update_status(current).await?.into_inner();
    assert_eq!(status_written.status.unwrap().phase, "Running");
    assert_eq!(
        status_written.spec.unwrap().containers[0].image,
        "moor/echo:0.1",
        "update-status ignores spec"
    );
    Ok(())
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_and_bind_is_once() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut pods = server.pods();
    pods.create(pod("web")).await?;
    let binding = |node: &str| Binding {
        metadata: Some(ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        target: Some(ObjectReference {
            kind: "Node".into(),
            name: node.into(),
            ..Default::default()
        }),
    };
    let bound = pods.bind(binding("node-1")).await?.into_inner();
    assert_eq!(bound.spec.unwrap().node_name, "node-1");
    let err = pods.bind(binding("node-2")).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    let marked = pods
        .delete(DeleteRequest {
            namespace: "default".into(),
            name: "web".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let m = marked.metadata.unwrap();
    assert!(m.deletion_timestamp.is_some());
    assert_eq!(m.deletion_grace_period_seconds, Some(30));
    assert!(
        pods.get(GetRequest {
            namespace: "default".into(),
            name: "web".into()
        })
        .await
        .is_ok(),
        "still there until the node confirms"
    );

    // The node agent confirms with a zero grace period.
    pods.delete(DeleteRequest {
        namespace: "default".into(),
        name: "web".into(),
        grace_period_seconds: Some(0),
        ..Default::default()
    })
    .await?;
    let err = pods
        .get(GetRequest {
            namespace: "default".into(),
            name: "web".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut cms = ConfigMapsClient::new(server.channel());
    let mut cm = ConfigMap {
        metadata: meta("settings"),
        ..Default::default()
    };
    cm.metadata
        .as_mut()
        .unwrap()
        .finalizers
        .push("example.com/hold".into());
    cm.data.insert("a".into(), "1".into());
    cms.create(cm).await?;
    let marked = cms
        .delete(DeleteRequest {
            namespace: "default".into(),
            name: "settings".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        marked
            .metadata
            .as_ref()
            .unwrap()
            .deletion_timestamp
            .is_some()
    );
    let mut current = cms
        .get(GetRequest {
            namespace: "default".into(),
            name: "settings".into(),
        })
        .await?
        .into_inner();
    current.metadata.as_mut().unwrap().finalizers.clear();
    cms.update(current).await?;
    let err = cms
        .get(GetRequest {
            namespace: "default".into(),
            name: "settings".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn oversized_objects_are_refused() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut cms = ConfigMapsClient::new(server.channel());
    let mut cm = ConfigMap {
        metadata: meta("big"),
        ..Default::default()
    };
    cm.data.insert("blob".into(), "x".repeat(2 * 1024 * 1024));
    let err = cms.create(cm).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("too large"), "{}", err.message());
    Ok(())
}

/// Kubernetes refuses negative resource quantities; so does moor, naming
/// the field (it accepted `-2` before).
#[tokio::test]
async fn negative_quantities_are_refused() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut web = pod("web");
    let container = &mut web.spec.as_mut().unwrap().containers[0];
    container.resources = Some(moor_api::core::v1::ResourceRequirements {
        requests: [("cpu".to_string(), "-2".to_string())].into(),
        ..Default::default()
    });
    let err = server.pods().create(web).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("resources.requests[cpu]")
            && err.message().contains("greater than or equal to 0"),
        "{}",
        err.message()
    );
    Ok(())
}

/// A grace period that would put the deletion past what a timestamp holds
/// is refused, naming the field, and changes nothing (it overflowed before:
/// a panic in debug builds, a deletion time in the past in release).
#[tokio::test]
async fn a_grace_period_beyond_any_date_is_refused() -> anyhow::Result<()> {
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
    for grace in [i64::MAX, i64::MAX - 1_000, 300_000_000_000] {
        let err = pods
            .delete(DeleteRequest {
                namespace: "default".into(),
                name: "web".into(),
                grace_period_seconds: Some(grace),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("gracePeriodSeconds"), "{err:?}");
    }
    let web = pods
        .get(GetRequest {
            namespace: "default".into(),
            name: "web".into(),
        })
        .await?
        .into_inner();
    assert!(
        web.metadata.unwrap().deletion_timestamp.is_none(),
        "nothing was written"
    );
    Ok(())
}

/// A request past gRPC's default 4 MiB decode limit is read and refused by
/// the apiserver's own checks for every kind (one limit, set in one place),
/// never tonic's OUT_OF_RANGE, which clients read as "re-list".
#[tokio::test]
async fn requests_over_four_mib_are_too_large_for_every_kind() -> anyhow::Result<()> {
    use moor_api::core::v1::endpoints_service_client::EndpointsServiceClient as EndpointsClient;
    use moor_api::core::v1::nodes_client::NodesClient;
    use moor_api::core::v1::{Endpoints, Namespace, Node};
    let server = TestServer::sqlite().await?;
    let big = |name: &str| {
        let mut meta = meta(name).unwrap();
        meta.annotations
            .insert("blob".into(), "x".repeat(5 * 1024 * 1024));
        Some(meta)
    };
    fn too_large<T: std::fmt::Debug>(
        kind: &str,
        result: Result<tonic::Response<T>, tonic::Status>,
    ) {
        let err = result.expect_err(kind);
        assert!(
            matches!(err.code(), Code::ResourceExhausted | Code::InvalidArgument)
                && err.message().to_lowercase().contains("too "),
            "{kind}: {err:?}"
        );
    }
    let namespace = Namespace {
        metadata: big("huge"),
        ..Default::default()
    };
    too_large(
        "namespace",
        NamespacesClient::new(server.channel())
            .create(namespace)
            .await,
    );
    let node = Node {
        metadata: big("huge"),
        ..Default::default()
    };
    too_large(
        "node",
        NodesClient::new(server.channel()).create(node).await,
    );
    let mut service = service("huge", None);
    service.metadata = big("huge");
    too_large(
        "service",
        ServicesClient::new(server.channel()).create(service).await,
    );
    let endpoints = Endpoints {
        metadata: big("huge"),
        ..Default::default()
    };
    too_large(
        "endpoints",
        EndpointsClient::new(server.channel())
            .create(endpoints)
            .await,
    );
    let config_map = ConfigMap {
        metadata: big("huge"),
        ..Default::default()
    };
    too_large(
        "configmap",
        ConfigMapsClient::new(server.channel())
            .create(config_map)
            .await,
    );
    Ok(())
}

fn service(name: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            r#type: if node_port.is_some() {
                "NodePort".into()
            } else {
                String::new()
            },
            ports: vec![ServicePort {
                port: 80,
                node_port: node_port.unwrap_or(0),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn concurrent_service_creates_get_distinct_cluster_ips() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let mut client = ServicesClient::new(server.channel());
        tasks.spawn(async move {
            client
                .create(service(&format!("svc-{i}"), None))
                .await
                .map(|r| r.into_inner())
        });
    }
    let mut ips = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let svc = result??;
        let ip = svc.spec.unwrap().cluster_ip;
        assert!(ip.starts_with("10."), "{ip}");
        assert!(ips.insert(ip.clone()), "duplicate cluster IP {ip}");
    }
    assert_eq!(ips.len(), 200);
    Ok(())
}

#[tokio::test]
async fn node_ports_are_allocated_once_and_released() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut services = ServicesClient::new(server.channel());
    let a = services
        .create(service("a", Some(30080)))
        .await?
        .into_inner();
    assert_eq!(a.spec.unwrap().ports[0].node_port, 30080);
    let err = services
        .create(service("b", Some(30080)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("already allocated"),
        "{}",
        err.message()
    );
    let err = services.create(service("c", Some(80))).await.unwrap_err();
    assert!(
        err.message().contains("spec.ports[0].nodePort"),
        "{}",
        err.message()
    );
    let auto = services.create(service("d", Some(0))).await?.into_inner();
    assert!((30000..=32767).contains(&auto.spec.unwrap().ports[0].node_port));
    services
        .delete(DeleteRequest {
            namespace: "default".into(),
            name: "a".into(),
            ..Default::default()
        })
        .await?;
    services.create(service("b", Some(30080))).await?;
    Ok(())
}

#[tokio::test]
async fn updating_a_service_without_its_cluster_ip_is_a_no_op() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut services = ServicesClient::new(server.channel());
    let created = services.create(service("web", None)).await?.into_inner();
    let again = services.update(service("web", None)).await?.into_inner();
    let (a, b) = (created.metadata.unwrap(), again.metadata.unwrap());
    assert_eq!(a.resource_version, b.resource_version);
    assert_eq!(a.generation, b.generation);
    assert_eq!(
        created.spec.unwrap().cluster_ip,
        again.spec.unwrap().cluster_ip
    );
    Ok(())
}

#[tokio::test]
async fn reflection_and_health_are_served() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = TestServer::sqlite().await?;
    let mut health = HealthClient::new(server.channel());
    for service in [
        "moor.core.v1.Pods",
        "moor.apps.v1.Deployments",
        "moor.coordination.v1.Leases",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    // Reflection (v1) lists every API service.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await?
        .into_inner();
    let response = futures::StreamExt::next(&mut responses)
        .await
        .expect("a response")?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "moor.core.v1.Pods",
        "moor.core.v1.Services",
        "moor.apps.v1.Deployments",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn mirror_pods_cannot_be_edited_through_the_api() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut pods = server.pods();
    let mut mirror = pod("static-web-node1");
    if let Some(meta) = mirror.metadata.as_mut() {
        meta.annotations
            .insert("kubernetes.io/config.mirror".into(), "abc123".into());
    }
    let created = pods.create(mirror).await?.into_inner();

    // Labels may change; the spec (even an image) and the mirror mark may not.
    let mut labelled = created.clone();
    if let Some(meta) = labelled.metadata.as_mut() {
        meta.labels.insert("team".into(), "web".into());
    }
    let labelled = pods.update(labelled).await?.into_inner();
    let mut edited = labelled.clone();
    if let Some(spec) = edited.spec.as_mut() {
        spec.containers[0].image = "moor/echo:other".into();
    }
    let err = pods.update(edited).await.expect_err("spec edit refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("a mirror pod cannot be edited"),
        "{}",
        err.message()
    );
    let mut unmarked = labelled.clone();
    if let Some(meta) = unmarked.metadata.as_mut() {
        meta.annotations.remove("kubernetes.io/config.mirror");
    }
    let err = pods.update(unmarked).await.expect_err("unmarking refused");
    assert!(
        err.message()
            .contains("metadata.annotations[kubernetes.io/config.mirror]"),
        "{}",
        err.message()
    );
    Ok(())
}
