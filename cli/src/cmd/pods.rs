//! Which pods a `logs` or `exec` target names: `NAME` and `pod/NAME` a pod,
//! a workload (`deployment/NAME`, `rs/NAME`, `rc/NAME`) its first pod, as
//! kubectl picks it; and the pods of a label selector.

use moor_api::core::v1::Pod;
use moor_api::meta::v1::{GetRequest, ListRequest};

use crate::cmd::kind;
use crate::columns::selector_text;
use crate::error::{Error, Result};
use crate::objects;
use crate::rpc::Client;

/// The pod `target` names; a workload's first pod, reported on stderr
/// when it has several (as kubectl does).
pub async fn pod_of(client: &Client, namespace: &str, target: &str) -> Result<String> {
    let Some((kind_name, name)) = target.split_once('/') else {
        return Ok(target.to_string());
    };
    let info = kind(kind_name)?;
    match info.kind.as_str() {
        "Pod" => Ok(name.to_string()),
        "Deployment" | "ReplicaSet" | "ReplicationController" => {
            let object = objects::get(client, info, namespace, name).await?;
            let json = moor_codec::encode_json(&object)?;
            let what = crate::output::ref_of(info, name);
            let selector = selector_text(json.pointer("/spec/selector"))
                .ok_or_else(|| Error::Usage(format!("{what} has no selector")))?;
            let mut pods = list(client, namespace, &selector).await?;
            pods.sort_by_key(rank);
            let first = pods
                .first()
                .ok_or_else(|| Error::Usage(format!("{what} has no pods (selector {selector})")))?;
            let pod = name_of(first);
            if pods.len() > 1 {
                eprintln!("Found {} pods, using pod/{pod}", pods.len());
            }
            Ok(pod)
        }
        other => Err(Error::Usage(format!(
            "cannot use a {other}: give a pod (NAME or pod/NAME), or a deployment, replicaset \
             or replicationcontroller"
        ))),
    }
}

/// kubectl's order for picking "the" pod of a workload: running and ready
/// first, then the oldest; and never one on its way out while another
/// stays (right after a rollout the old pods still run, terminating).
fn rank(pod: &Pod) -> (bool, bool, bool, Option<(i64, i32)>, String) {
    let status = pod.status.as_ref();
    let running = status.is_some_and(|s| s.phase == "Running");
    let ready = status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    });
    let meta = pod.metadata.as_ref();
    let leaving = meta.is_some_and(|m| m.deletion_timestamp.is_some());
    let created = meta
        .and_then(|m| m.creation_timestamp.as_ref())
        .map(|t| (t.seconds, t.nanos));
    (leaving, !running, !ready, created, name_of(pod))
}

/// The pods a label selector matches, by name.
pub async fn list(client: &Client, namespace: &str, selector: &str) -> Result<Vec<Pod>> {
    let request = ListRequest {
        namespace: namespace.to_string(),
        label_selector: selector.to_string(),
        ..Default::default()
    };
    let mut pods = client
        .pods()
        .list(request)
        .await
        .map_err(|s| client.status(s))?
        .into_inner()
        .items;
    pods.sort_by_key(name_of);
    Ok(pods)
}

/// Reads one pod.
pub async fn get(client: &Client, namespace: &str, name: &str) -> Result<Pod> {
    let request = GetRequest {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    Ok(client
        .pods()
        .get(request)
        .await
        .map_err(|s| client.status(s))?
        .into_inner())
}

/// A pod's name.
pub fn name_of(pod: &Pod) -> String {
    pod.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// The names of a pod's containers: the app containers, or with `init`
/// the init containers first, then the app containers.
pub fn containers(pod: &Pod, init: bool) -> Vec<String> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().filter(|_| init);
    init.chain(&spec.containers)
        .map(|c| c.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::PodStatus;
    use moor_api::meta::v1::{Condition, ObjectMeta};
    use prost_types::Timestamp;

    use super::*;

    fn pod(name: &str, created: i64, ready: bool, leaving: bool) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.to_string(),
                creation_timestamp: Some(Timestamp {
                    seconds: created,
                    nanos: 0,
                }),
                deletion_timestamp: leaving.then(|| Timestamp {
                    seconds: created + 10,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".to_string(),
                conditions: vec![Condition {
                    r#type: "Ready".to_string(),
                    status: if ready { "True" } else { "False" }.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn first(mut pods: Vec<Pod>) -> String {
        pods.sort_by_key(rank);
        name_of(&pods[0])
    }

    #[test]
    fn the_first_pod_is_staying_running_ready_and_old() {
        // After a rollout: the old pod still runs, but is terminating.
        assert_eq!(
            first(vec![pod("old", 1, true, true), pod("new", 5, true, false)]),
            "new"
        );
        assert_eq!(
            first(vec![
                pod("young", 5, true, false),
                pod("unready", 1, false, false)
            ]),
            "young"
        );
        assert_eq!(
            first(vec![pod("b", 5, true, false), pod("a", 1, true, false)]),
            "a"
        );
    }
}
