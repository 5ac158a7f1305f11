//! The ProxyConfig stream against a real apiserver: a snapshot, then
//! changes as they happen, a resume that sends only what changed, and the
//! cluster's network settings (the DNS address never handed to a service).

mod common;

use std::time::Duration;

use common::TestServer;
use moor_api::core::v1::endpoints_service_client::EndpointsServiceClient;
use moor_api::core::v1::services_client::ServicesClient;
use moor_api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use moor_api::meta::v1::{DeleteRequest, ObjectMeta};
use moor_api::proxy::v1::proxy_config_client::ProxyConfigClient;
use moor_api::proxy::v1::{GetClusterNetworkRequest, ProxyConfigRequest, ProxyConfigUpdate};
use tokio::sync::mpsc;
use tonic::Streaming;

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    })
}

fn service(name: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            cluster_ip: cluster_ip.into(),
            ports: vec![ServicePort {
                port: 80,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn endpoints(name: &str, ip: &str) -> Endpoints {
    Endpoints {
        metadata: meta(name),
        subsets: vec![EndpointSubset {
            addresses: vec![EndpointAddress {
                ip: ip.into(),
                ..Default::default()
            }],
            ports: vec![EndpointPort {
                port: 8080,
                protocol: "TCP".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A proxy's end of the stream.
struct Proxy {
    acks: mpsc::Sender<ProxyConfigRequest>,
    updates: Streaming<ProxyConfigUpdate>,
}

impl Proxy {
    async fn connect(server: &TestServer, resume: &str) -> anyhow::Result<Self> {
        let (acks, rx) = mpsc::channel(16);
        acks.send(ProxyConfigRequest {
            node: "node-1".into(),
            resume_version: resume.into(),
            ..Default::default()
        })
        .await?;
        let updates = ProxyConfigClient::new(server.channel())
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self { acks, updates })
    }

    /// The next update, acknowledged.
    async fn next(&mut self) -> anyhow::Result<ProxyConfigUpdate> {
        let update = tokio::time::timeout(Duration::from_secs(20), self.updates.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
        self.acks
            .send(ProxyConfigRequest {
                version: update.version.clone(),
                ..Default::default()
            })
            .await?;
        Ok(update)
    }

    /// Updates until `done` holds for the accumulated changed-object names.
    async fn until(
        &mut self,
        mut done: impl FnMut(&[ProxyConfigUpdate]) -> bool,
    ) -> anyhow::Result<Vec<ProxyConfigUpdate>> {
        let mut seen = Vec::new();
        while !done(&seen) {
            seen.push(self.next().await?);
        }
        Ok(seen)
    }
}

fn names(updates: &[ProxyConfigUpdate]) -> Vec<String> {
    updates
        .iter()
        .flat_map(|u| {
            u.services
                .iter()
                .map(|s| format!("svc/{}", s.metadata.as_ref().map_or("", |m| &m.name)))
                .chain(
                    u.endpoints
                        .iter()
                        .map(|e| format!("ep/{}", e.metadata.as_ref().map_or("", |m| &m.name))),
                )
                .chain(u.deleted_services.iter().map(|k| format!("-svc/{k}")))
                .chain(u.deleted_endpoints.iter().map(|k| format!("-ep/{k}")))
        })
        .collect()
}

#[tokio::test]
async fn snapshot_then_changes_then_resume_without_a_resend() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut services = ServicesClient::new(server.channel());
    let mut eps = EndpointsServiceClient::new(server.channel());
    services.create(service("a", "")).await?;
    eps.create(endpoints("a", "10.0.0.1")).await?;

    let mut proxy = Proxy::connect(&server, "").await?;
    let snapshot = proxy.next().await?;
    assert!(snapshot.snapshot);
    assert_eq!(
        names(std::slice::from_ref(&snapshot)),
        vec!["svc/a", "ep/a"]
    );
    let network = snapshot.network.clone().unwrap_or_default();
    assert_eq!(network.cluster_domain, "cluster.local");
    assert_eq!(network.service_cidr, "10.96.0.0/12");
    assert_eq!(network.dns_ip, "10.96.0.10");

    services.create(service("b", "")).await?;
    let changes = proxy
        .until(|seen| names(seen).contains(&"svc/b".to_string()))
        .await?;
    assert!(changes.iter().all(|u| !u.snapshot));
    let applied = changes
        .last()
        .map(|u| u.version.clone())
        .unwrap_or_default();
    drop(proxy);

    // Changes while the proxy is away arrive, and only they, on resume.
    eps.create(endpoints("b", "10.0.0.2")).await?;
    services
        .delete(DeleteRequest {
            namespace: "default".into(),
            name: "a".into(),
            ..Default::default()
        })
        .await?;
    let mut proxy = Proxy::connect(&server, &applied).await?;
    let resumed = proxy
        .until(|seen| names(seen).contains(&"-svc/default/a".to_string()))
        .await?;
    assert!(
        resumed.iter().all(|u| !u.snapshot),
        "resumed without a resend"
    );
    let got = names(&resumed);
    assert!(got.contains(&"ep/b".to_string()), "{got:?}");
    assert!(
        !got.contains(&"svc/b".to_string()),
        "no resend of what was applied: {got:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_version_it_never_sent_is_refused_and_an_unknown_one_gets_a_snapshot()
-> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let err = match Proxy::connect(&server, "garbage").await {
        Ok(mut proxy) => proxy.next().await.err(),
        Err(err) => Some(err),
    };
    let err = err.ok_or_else(|| anyhow::anyhow!("a garbage version was accepted"))?;
    assert!(err.to_string().contains("resume_version"), "{err}");

    // A version from before the cache's history (e.g. another apiserver's)
    // cannot be resumed: a snapshot replaces everything instead.
    ServicesClient::new(server.channel())
        .create(service("a", ""))
        .await?;
    let mut proxy = Proxy::connect(&server, "0-0").await?;
    let first = proxy.next().await?;
    assert!(first.snapshot);
    assert_eq!(names(std::slice::from_ref(&first)), vec!["svc/a"]);
    Ok(())
}

#[tokio::test]
async fn the_dns_address_is_never_allocated_and_is_refused_when_asked_for() -> anyhow::Result<()> {
    let server = TestServer::sqlite_with(|config| {
        config.service_cidr = "10.100.7.0/28".parse().unwrap_or_else(|_| unreachable!());
        config.node_ports = 31000..=31001;
    })
    .await?;
    let network = ProxyConfigClient::new(server.channel())
        .get_cluster_network(GetClusterNetworkRequest {})
        .await?
        .into_inner();
    assert_eq!(network.dns_ip, "10.100.7.10");
    assert_eq!(
        (network.node_port_min, network.node_port_max),
        (31000, 31001)
    );
    let mut services = ServicesClient::new(server.channel());
    let err = services
        .create(service("dns", "10.100.7.10"))
        .await
        .expect_err("the DNS address is reserved");
    assert!(
        err.message().contains("spec.clusterIP"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("reserved for the cluster DNS"),
        "{}",
        err.message()
    );
    // Node ports outside the configured range are refused with the field.
    let mut node_port = service("np", "");
    if let Some(spec) = node_port.spec.as_mut() {
        spec.r#type = "NodePort".into();
        spec.ports[0].node_port = 30000;
    }
    let err = services.create(node_port).await.expect_err("out of range");
    assert!(
        err.message().contains("spec.ports[0].nodePort") && err.message().contains("31000-31001"),
        "{}",
        err.message()
    );
    // A /28 has 12 addresses for services once .0, .1, .10 and .15 are out.
    let mut given = Vec::new();
    for i in 0..12 {
        let created = services
            .create(service(&format!("s{i}"), ""))
            .await?
            .into_inner();
        given.push(created.spec.unwrap_or_default().cluster_ip);
    }
    assert!(!given.contains(&"10.100.7.10".to_string()), "{given:?}");
    let full = services.create(service("one-too-many", "")).await;
    assert!(full.is_err(), "the range is exhausted");
    Ok(())
}
