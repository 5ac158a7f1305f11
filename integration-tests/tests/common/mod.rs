//! What the service tests share: echo pods, services in front of them, and
//! ways to look into a pod (its endpoints, `docker exec`, its network).

#![allow(dead_code)]

use std::collections::BTreeSet;

use moor_api::Resource;
use moor_api::core::v1::{
    Container, ContainerPort, EndpointSubset, Endpoints, EnvVar, EnvVarSource, HttpGetAction,
    ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe, ReplicationController,
    ReplicationControllerSpec, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{IntOrString, ObjectMeta};
use moor_integration_tests::Cluster;

pub fn meta(name: &str, labels: &[(&str, &str)]) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ..Default::default()
    })
}

pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The echo server: HTTP and UDP on 8080, answering with its pod's name.
pub fn echo_spec() -> PodSpec {
    let port = |name: &str, protocol: &str| ContainerPort {
        name: name.into(),
        container_port: 8080,
        protocol: protocol.into(),
        ..Default::default()
    };
    PodSpec {
        containers: vec![Container {
            name: "echo".into(),
            image: "moor/echo:0.1".into(),
            image_pull_policy: "Never".into(),
            args: vec!["serve".into(), "--port".into(), "8080".into()],
            env: vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_IP", "status.podIP"),
            ],
            ports: vec![port("http", ""), port("echo-udp", "UDP")],
            // Ready once it answers, as a user would declare it: without a
            // probe a pod is ready as soon as its container starts, a few
            // ms before the server listens, and services may send it
            // connections it refuses.
            readiness_probe: Some(Probe {
                http_get: Some(HttpGetAction {
                    path: "/".into(),
                    port: Some(IntOrString {
                        value: Some(Value::StrVal("http".into())),
                    }),
                    ..Default::default()
                }),
                period_seconds: 1,
                ..Default::default()
            }),
            ..Default::default()
        }],
        termination_grace_period_seconds: Some(2),
        ..Default::default()
    }
}

pub fn echo_rc(name: &str, replicas: i32) -> ReplicationController {
    let mut rc = ReplicationController {
        metadata: meta(name, &[]),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(replicas),
            selector: [("app".to_string(), name.to_string())].into(),
            template: Some(PodTemplateSpec {
                metadata: meta("", &[("app", name)]),
                spec: Some(echo_spec()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    rc.set_type_meta();
    rc
}

pub fn service(name: &str, app: &str, node_port: bool, affinity: bool) -> Service {
    let port = |name: &str, protocol: &str, target: Value| ServicePort {
        name: name.into(),
        protocol: protocol.into(),
        port: 80,
        target_port: Some(IntOrString {
            value: Some(target),
        }),
        ..Default::default()
    };
    let mut service = Service {
        metadata: meta(name, &[]),
        spec: Some(ServiceSpec {
            selector: [("app".to_string(), app.to_string())].into(),
            r#type: if node_port { "NodePort" } else { "ClusterIP" }.into(),
            ports: vec![
                port("http", "", Value::StrVal("http".into())),
                port("echo-udp", "UDP", Value::IntVal(8080)),
            ],
            session_affinity: if affinity { "ClientIP" } else { "" }.into(),
            session_affinity_config: affinity.then_some(SessionAffinityConfig {
                client_ip: Some(moor_api::core::v1::ClientIpConfig {
                    timeout_seconds: Some(600),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    service.set_type_meta();
    service
}

/// The pod name in an echo answer.
pub fn pod_of(body: &str) -> String {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("pod="))
        .unwrap_or_default()
        .to_string()
}

/// The ready endpoint addresses of a service.
pub async fn ready_ips(cluster: &Cluster, name: &str) -> BTreeSet<String> {
    match cluster.client.api::<Endpoints>().get("default", name).await {
        Ok(endpoints) => endpoints
            .subsets
            .iter()
            .flat_map(|s: &EndpointSubset| s.addresses.iter().map(|a| a.ip.clone()))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The host's address on the cluster's Docker network.
pub fn docker_gateway(cluster: &Cluster) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            &cluster.network(),
        ])
        .output()
        .expect("docker network inspect runs");
    let gateway = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!gateway.is_empty(), "the network has a gateway");
    gateway
}

pub async fn pod_running(cluster: &Cluster, name: &str) -> bool {
    cluster
        .client
        .api::<Pod>()
        .get("default", name)
        .await
        .ok()
        .and_then(|p| p.status)
        .is_some_and(|s| s.phase == "Running" && !s.pod_ip.is_empty())
}

/// The container id of pod `pod`'s `echo` container.
pub fn container(cluster: &Cluster, pod: &str) -> String {
    let filters = [
        format!("label=moor.node={}", cluster.node),
        format!("label=moor.pod.name={pod}"),
        "label=moor.container.name=echo".to_string(),
    ];
    let mut ps = std::process::Command::new("docker");
    ps.args(["ps", "-q"]);
    for filter in &filters {
        ps.args(["--filter", filter]);
    }
    let out = ps.output().expect("docker ps runs");
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!id.is_empty(), "pod {pod} has a running echo container");
    id
}

/// `docker exec` in the `echo` container of pod `pod`: (success, output).
pub fn exec(cluster: &Cluster, pod: &str, args: &[&str]) -> (bool, String) {
    let id = container(cluster, pod);
    let out = std::process::Command::new("docker")
        .args(["exec", &id, "/echo"])
        .args(args)
        .output()
        .expect("docker exec runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
