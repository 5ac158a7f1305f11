//! A real apiserver in-process with the controller-manager running against
//! it, and builders for the objects the tests use. With no node agent, the
//! tests write pod status themselves, as an agent would.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{
    Container, ContainerPort, Event, Pod, PodSpec, PodStatus, PodTemplateSpec,
    ReplicationController, ReplicationControllerSpec,
};
use moor_api::meta::v1::{Condition, ObjectMeta};
use moor_client::{Client, ListParams};
use moor_integration_tests::Apiserver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A generous bound for anything to converge.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// An apiserver plus a controller-manager; both stop on drop.
pub struct Cluster {
    pub client: Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), moor_controller_manager::Error>>,
    _apiserver: Apiserver,
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Self> {
        let apiserver = Apiserver::start().await?;
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url)?;
        let shutdown = CancellationToken::new();
        let config = moor_controller_manager::Config::new(url);
        let task = tokio::spawn(moor_controller_manager::run(config, shutdown.clone()));
        Ok(Self {
            client,
            shutdown,
            task,
            _apiserver: apiserver,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        ..Default::default()
    }
}

/// One container with a port named `web` on 8080.
pub fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: "moor/test:latest".into(),
            ports: vec![ContainerPort {
                name: "web".into(),
                container_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn template(pod_labels: &[(&str, &str)]) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: labels(pod_labels),
            ..Default::default()
        }),
        spec: Some(pod_spec()),
    }
}

pub fn rc(namespace: &str, name: &str, replicas: i32, app: &str) -> ReplicationController {
    ReplicationController {
        metadata: Some(meta(namespace, name)),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(replicas),
            selector: labels(&[("app", app)]),
            template: Some(template(&[("app", app)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod(namespace: &str, name: &str, pod_labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            labels: labels(pod_labels),
            ..meta(namespace, name)
        }),
        spec: Some(pod_spec()),
        ..Default::default()
    }
}

/// Pods in `namespace` matching `selector` that are not being deleted.
pub async fn live_pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let params = ListParams::default().namespace(namespace).labels(selector);
    let (pods, _) = client.api::<Pod>().list(&params).await.unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.meta().deletion_timestamp.is_none())
        .collect()
}

/// The events of namespace `default` with `reason`. Controllers write
/// them in the background: tests wait for the ones they expect.
pub async fn events(client: &Client, reason: &str) -> Vec<Event> {
    let params = ListParams::default().namespace("default");
    let (events, _) = client.api::<Event>().list(&params).await.unwrap();
    events.into_iter().filter(|e| e.reason == reason).collect()
}

/// Sets the pod Running with `ip` and Ready=`ready`, as a node agent would;
/// retries conflicts with the controllers' own writes.
pub async fn set_ready(client: &Client, namespace: &str, name: &str, ip: &str, ready: bool) {
    let api = client.api::<Pod>();
    for _ in 0..20 {
        let mut pod = api.get(namespace, name).await.expect("pod exists");
        let now = prost_types::Timestamp::from(std::time::SystemTime::now());
        pod.status = Some(PodStatus {
            phase: "Running".into(),
            pod_ip: ip.into(),
            conditions: vec![Condition {
                r#type: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(now),
                ..Default::default()
            }],
            ..Default::default()
        });
        match api.update_status(&pod).await {
            Ok(_) => return,
            Err(moor_client::Error::Conflict(_)) => continue,
            Err(e) => panic!("update status of {name}: {e}"),
        }
    }
    panic!("update status of {name}: too many conflicts");
}
