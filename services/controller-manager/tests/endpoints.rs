//! The endpoints controller against a real apiserver.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use moor_api::Resource;
use moor_api::core::v1::{Endpoints, ReplicationController, Service, ServicePort, ServiceSpec};
use moor_api::meta::v1::IntOrString;
use moor_api::meta::v1::int_or_string::Value;
use moor_client::DeleteParams;
use moor_testkit::assert_eventually;

use support::{CONVERGE, Cluster, live_pods, rc, set_ready};

fn ips(list: &[moor_api::core::v1::EndpointAddress]) -> Vec<String> {
    list.iter().map(|a| a.ip.clone()).collect()
}

async fn endpoints(cluster: &Cluster) -> Option<Endpoints> {
    cluster
        .client
        .api::<Endpoints>()
        .get("default", "web")
        .await
        .ok()
}

#[tokio::test]
async fn lists_ready_and_not_ready_pods_with_named_target_ports() {
    let cluster = Cluster::start().await.unwrap();
    let service = Service {
        metadata: Some(support::meta("default", "web")),
        spec: Some(ServiceSpec {
            selector: support::labels(&[("app", "web")]),
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target_port: Some(IntOrString {
                    value: Some(Value::StrVal("web".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let services = cluster.client.api::<Service>();
    services.create(&service).await.unwrap();
    cluster
        .client
        .api::<ReplicationController>()
        .create(&rc("default", "web", 3, "web"))
        .await
        .unwrap();
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web").await.len() == 3,
        CONVERGE
    );
    let mut names: Vec<String> = live_pods(&cluster.client, "default", "app=web")
        .await
        .iter()
        .map(|p| p.meta().name.clone())
        .collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        set_ready(
            &cluster.client,
            "default",
            name,
            &format!("10.9.0.{}", i + 1),
            true,
        )
        .await;
    }
    assert_eventually!(
        endpoints(&cluster)
            .await
            .is_some_and(|ep| ep.subsets.len() == 1
                && ips(&ep.subsets[0].addresses) == ["10.9.0.1", "10.9.0.2", "10.9.0.3"]),
        CONVERGE,
        "every ready pod is listed: {:?}",
        endpoints(&cluster).await
    );
    let ep = endpoints(&cluster).await.unwrap();
    let subset = &ep.subsets[0];
    assert_eq!(subset.ports.len(), 1);
    assert_eq!(
        (
            subset.ports[0].name.as_str(),
            subset.ports[0].port,
            subset.ports[0].protocol.as_str()
        ),
        ("http", 8080, "TCP"),
        "the named targetPort resolves to the container port"
    );
    let target = subset.addresses[0].target_ref.clone().unwrap();
    assert_eq!(
        (target.kind.as_str(), target.name.as_str()),
        ("Pod", names[0].as_str())
    );

    // Readiness goes False: the address moves to notReadyAddresses.
    set_ready(&cluster.client, "default", &names[1], "10.9.0.2", false).await;
    assert_eventually!(
        endpoints(&cluster)
            .await
            .is_some_and(|ep| ep.subsets.len() == 1
                && ips(&ep.subsets[0].addresses) == ["10.9.0.1", "10.9.0.3"]
                && ips(&ep.subsets[0].not_ready_addresses) == ["10.9.0.2"]),
        CONVERGE,
        "the unready pod moved: {:?}",
        endpoints(&cluster).await
    );

    // The endpoints go with the service.
    services
        .delete("default", "web", &DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(endpoints(&cluster).await.is_none(), CONVERGE);
}
