//! Objects and readings that end-to-end tests and benchmarks share.

use std::collections::HashMap;

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentSpec};
use moor_api::core::v1::{Container, Node, PodSpec, PodTemplateSpec, ResourceRequirements};
use moor_api::meta::v1::{LabelSelector, ObjectMeta};
use moor_client::{Client, ListParams};

/// A Deployment `name` (label `app=name`, namespace default) of `replicas`
/// echo pods asking for 10m CPU and 16Mi each: light enough that thousands
/// fit on simulated nodes.
pub fn light_deployment(name: &str, replicas: usize) -> Deployment {
    let labels: HashMap<String, String> = [("app".to_owned(), name.to_owned())].into();
    let mut deployment = Deployment {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: "moor/echo:0.1".into(),
                        resources: Some(ResourceRequirements {
                            requests: [
                                ("cpu".to_owned(), "10m".to_owned()),
                                ("memory".to_owned(), "16Mi".to_owned()),
                            ]
                            .into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    deployment.set_type_meta();
    deployment
}

/// Whether the node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// The names of the Ready nodes, sorted (none when the list fails).
pub async fn ready_nodes(client: &Client) -> Vec<String> {
    let Ok((nodes, _)) = client.api::<Node>().list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut ready: Vec<String> = nodes
        .iter()
        .filter(|n| is_ready(n))
        .map(|n| n.meta().name.clone())
        .collect();
    ready.sort();
    ready
}
