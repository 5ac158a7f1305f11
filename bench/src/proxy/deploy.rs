//! The workload: one echo pod with a raw TCP echo port, a service in front
//! of it, and the wait until both its addresses answer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use moor_api::Resource;
use moor_api::core::v1::{
    Container, ContainerPort, Endpoints, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{IntOrString, ObjectMeta};
use moor_integration_tests::Cluster;
use tokio::time::Instant;

use super::load::Generator;

/// The echo port, in the pod and on the service.
const PORT: u16 = 9000;
/// Bound for anything involving Docker and the whole control loop.
const PATIENCE: Duration = Duration::from_secs(120);
const NAME: &str = "echo";

/// The echo pod, running and behind its service.
pub struct Echo {
    /// Pod IP and echo port, over the Docker bridge.
    pub direct: SocketAddr,
    /// Cluster IP and service port, through the proxy.
    pub service: SocketAddr,
    /// The pod's process on the host, for its CPU time.
    pub pid: u32,
}

/// Creates the pod and the service and waits until both addresses echo.
pub async fn echo(cluster: &Cluster, generator: &Generator, size: usize) -> anyhow::Result<Echo> {
    cluster.client.api::<Pod>().create(&pod()).await?;
    let created = cluster.client.api::<Service>().create(&service()).await?;
    let cluster_ip: IpAddr = created
        .spec
        .as_ref()
        .map(|s| s.cluster_ip.as_str())
        .unwrap_or_default()
        .parse()
        .context("the service got no cluster IP")?;
    let service = SocketAddr::new(cluster_ip, PORT);

    let mut pod_ip = None;
    until("a ready endpoint", async || {
        pod_ip = ready_ip(cluster).await;
        pod_ip.is_some()
    })
    .await?;
    let direct = SocketAddr::new(pod_ip.context("no endpoint")?, PORT);
    until("the pod IP to echo", async || {
        generator.answers(direct, size).await
    })
    .await?;
    until("the cluster IP to echo", async || {
        generator.answers(service, size).await
    })
    .await?;
    let pid = pid(cluster)?;
    Ok(Echo {
        direct,
        service,
        pid,
    })
}

fn pod() -> Pod {
    let mut pod = Pod {
        metadata: Some(ObjectMeta {
            name: NAME.into(),
            namespace: "default".into(),
            labels: [("app".to_string(), NAME.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: NAME.into(),
                image: "moor/echo:0.1".into(),
                image_pull_policy: "Never".into(),
                args: ["serve", "--port", "8080", "--echo-port", "9000"]
                    .map(String::from)
                    .into(),
                ports: vec![ContainerPort {
                    name: NAME.into(),
                    container_port: PORT.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.set_type_meta();
    pod
}

fn service() -> Service {
    let mut service = Service {
        metadata: Some(ObjectMeta {
            name: NAME.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            selector: [("app".to_string(), NAME.to_string())].into(),
            r#type: "ClusterIP".into(),
            ports: vec![ServicePort {
                name: NAME.into(),
                port: PORT.into(),
                target_port: Some(IntOrString {
                    value: Some(Value::IntVal(PORT.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    service.set_type_meta();
    service
}

/// The service's ready endpoint address, once there is one.
async fn ready_ip(cluster: &Cluster) -> Option<IpAddr> {
    let endpoints = cluster
        .client
        .api::<Endpoints>()
        .get("default", NAME)
        .await
        .ok()?;
    endpoints
        .subsets
        .iter()
        .flat_map(|s| &s.addresses)
        .find_map(|a| a.ip.parse().ok())
}

/// The host pid of the echo container's process.
fn pid(cluster: &Cluster) -> anyhow::Result<u32> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=moor.node={}", cluster.node))
        .args(["--filter", &format!("label=moor.pod.name={NAME}")])
        .args(["--filter", &format!("label=moor.container.name={NAME}")])
        .output()
        .context("running docker ps")?;
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .context("no running echo container")?;
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", &id])
        .output()
        .context("running docker inspect")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("pid of container {id}"))
}

pub(crate) async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
