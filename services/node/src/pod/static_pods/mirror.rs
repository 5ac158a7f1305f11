//! Mirror pods: how a static pod shows in the API. The agent creates one
//! per static pod, writes the static pod's status to it, recreates it when
//! it is deleted (or outdated), and removes mirrors whose static pod is gone.
//! Nothing of the mirror flows back: edits to it change nothing that runs.

use std::collections::HashSet;

use moor_api::Resource;
use moor_api::core::v1::{Node, Pod, PodStatus};
use moor_api::meta::v1::{ObjectMeta, OwnerReference};
use moor_client::{DeleteParams, ListParams};

use super::{CONFIG_HASH, CONFIG_MIRROR};
use crate::Error;
use crate::agent::Agent;

/// Whether an API pod is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// Makes the mirror of `pod` (a static pod with its latest status) exist
/// and show that status.
pub async fn sync(agent: &Agent, pod: &Pod) -> Result<(), Error> {
    let hash = annotation(pod, CONFIG_HASH).unwrap_or_default();
    let (namespace, name) = names(pod);
    let api = agent.client.api::<Pod>();
    match api.get(namespace, name).await {
        Ok(mut mirror) if mirrors(&mirror, hash) && !deleting(&mirror) => {
            if mirror.status != pod.status {
                mirror.status.clone_from(&pod.status);
                match api.update_status(&mirror).await {
                    // Changed meanwhile (a user's edit): the next sync writes it.
                    Ok(_) | Err(moor_client::Error::Conflict(_)) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            return Ok(());
        }
        Ok(mirror) if is_mirror(&mirror) => {
            tracing::info!(pod = %format!("{namespace}/{name}"), "mirror pod deleted or outdated; recreating it");
            delete(agent, &mirror).await?;
        }
        Ok(_) => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), "a pod that is not a mirror pod has the static pod's name; the static pod runs without a mirror");
            return Ok(());
        }
        Err(moor_client::Error::NotFound(_)) => {}
        Err(err) => return Err(err.into()),
    }
    create(agent, pod).await
}

/// The status the mirror of `pod` shows, when it is this pod's (a restarted
/// agent goes on from it: start time, restart counts).
pub async fn last_status(agent: &Agent, pod: &Pod) -> Option<PodStatus> {
    let hash = annotation(pod, CONFIG_HASH).unwrap_or_default();
    let (namespace, name) = names(pod);
    let mirror = agent.client.api::<Pod>().get(namespace, name).await.ok()?;
    mirrors(&mirror, hash).then_some(mirror.status).flatten()
}

/// Removes the mirror of `pod`, if the one in the API is its own (not that
/// of an edited manifest's new pod).
pub async fn remove(agent: &Agent, pod: &Pod) -> Result<(), Error> {
    let hash = annotation(pod, CONFIG_HASH).unwrap_or_default();
    let (namespace, name) = names(pod);
    match agent.client.api::<Pod>().get(namespace, name).await {
        Ok(mirror) if mirrors(&mirror, hash) => delete(agent, &mirror).await,
        Ok(_) | Err(moor_client::Error::NotFound(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Deletes the mirror pods on this node that no static pod (`keep`, by
/// namespace and name) has.
pub async fn remove_orphans(agent: &Agent, keep: &HashSet<(String, String)>) -> Result<(), Error> {
    let params = ListParams::default()
        .fields(format!("spec.nodeName={}", agent.name))
        .any_version();
    let (pods, _) = agent.client.api::<Pod>().list(&params).await?;
    for pod in pods.iter().filter(|p| is_mirror(p)) {
        let (namespace, name) = names(pod);
        if !keep.contains(&(namespace.to_owned(), name.to_owned())) {
            tracing::info!(pod = %format!("{namespace}/{name}"), "removing a mirror pod whose static pod is gone");
            delete(agent, pod).await?;
        }
    }
    Ok(())
}

/// Creates the mirror, owned by the Node as Kubernetes does it, then writes
/// the status. Waits (does nothing) until the Node is registered.
async fn create(agent: &Agent, pod: &Pod) -> Result<(), Error> {
    let node = match agent.client.api::<Node>().get("", &agent.name).await {
        Ok(node) => node,
        Err(moor_client::Error::NotFound(_)) => {
            tracing::debug!("the node is not registered yet; the mirror pod waits");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    let node_meta = node.metadata.unwrap_or_default();
    if node_meta.deletion_timestamp.is_some() {
        return Ok(());
    }
    let api = agent.client.api::<Pod>();
    let mut created = match api.create(&mirror_of(pod, &node_meta)).await {
        Ok(created) => created,
        // Another sync got there first.
        Err(moor_client::Error::AlreadyExists(_)) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    let (namespace, name) = names(pod);
    tracing::info!(pod = %format!("{namespace}/{name}"), "created mirror pod");
    if pod.status.is_some() {
        created.status.clone_from(&pod.status);
        api.update_status(&created).await?;
    }
    Ok(())
}

/// The mirror pod object of a static pod.
fn mirror_of(pod: &Pod, node: &ObjectMeta) -> Pod {
    let meta = pod.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations;
    let hash = annotations.get(CONFIG_HASH).cloned().unwrap_or_default();
    annotations.insert(CONFIG_MIRROR.into(), hash);
    let mut mirror = Pod {
        metadata: Some(ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            labels: meta.labels,
            annotations,
            owner_references: vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.name.clone(),
                uid: node.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            ..Default::default()
        }),
        spec: pod.spec.clone(),
        status: None,
        ..Default::default()
    };
    mirror.set_type_meta();
    mirror
}

/// Deletes a mirror at once (this incarnation only).
async fn delete(agent: &Agent, mirror: &Pod) -> Result<(), Error> {
    let (namespace, name) = names(mirror);
    let params = DeleteParams {
        uid: mirror.metadata.as_ref().map(|m| m.uid.clone()),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match agent
        .client
        .api::<Pod>()
        .delete(namespace, name, &params)
        .await
    {
        Ok(_) | Err(moor_client::Error::NotFound(_) | moor_client::Error::Conflict(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Whether `mirror` is the mirror of the static pod with this hash.
fn mirrors(mirror: &Pod, hash: &str) -> bool {
    annotation(mirror, CONFIG_MIRROR) == Some(hash)
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata
        .as_ref()
        .is_some_and(|m| m.deletion_timestamp.is_some())
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .as_ref()?
        .annotations
        .get(key)
        .map(String::as_str)
}

fn names(pod: &Pod) -> (&str, &str) {
    pod.metadata
        .as_ref()
        .map_or(("", ""), |m| (m.namespace.as_str(), m.name.as_str()))
}
