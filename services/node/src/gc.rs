//! Removal of containers and volume directories whose pod is gone (deleted
//! at once, or while the agent was down).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use moor_api::core::v1::Pod;
use moor_client::ListParams;
use moor_runtime::labels;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::agent::Agent;

/// Grace period for containers of pods that no longer exist.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Collects garbage every `gc_interval` until shutdown.
pub async fn gc_loop(agent: Arc<Agent>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(agent.config.gc_interval) => {}
        }
        if let Err(err) = collect(&agent).await {
            tracing::warn!(node = %agent.name, %err, "garbage collection failed; retrying later");
        }
    }
}

/// One pass. Containers and directories are listed before the pods, so that
/// anything found belongs to a pod that existed before the pod list was taken:
/// a uid missing from that list is really gone.
async fn collect(agent: &Agent) -> Result<(), Error> {
    let containers = agent
        .runtime
        .list_containers(&[(labels::NODE, &agent.name)])
        .await?;
    let dirs = pod_dirs(agent).await?;
    let params = ListParams::default()
        .fields(format!("spec.nodeName={}", agent.name))
        .any_version();
    let (pods, _) = agent.client.api::<Pod>().list(&params).await?;
    // Static pods register before their containers exist and go after
    // they are removed, so reading them after the containers is safe too.
    let statics = agent.static_uids();
    let live: HashSet<&str> = pods
        .iter()
        .map(|p| p.metadata.as_ref().map_or("", |m| m.uid.as_str()))
        .chain(statics.iter().map(String::as_str))
        .collect();
    let orphans = containers
        .iter()
        .filter(|c| !live.contains(c.label(labels::POD_UID)));
    for container in crate::pod::sandboxes_last(orphans) {
        tracing::info!(
            node = %agent.name,
            pod = %format!("{}/{}", container.label(labels::POD_NAMESPACE), container.label(labels::POD_NAME)),
            container = %container.name,
            "removing container of a pod that no longer exists"
        );
        agent
            .runtime
            .stop_container(&container.id, ORPHAN_GRACE)
            .await?;
        agent.runtime.remove_container(&container.id).await?;
    }
    for uid in dirs.iter().filter(|d| !live.contains(d.as_str())) {
        let dir = agent.pod_dir(uid);
        tracing::info!(node = %agent.name, dir = %dir.display(), "removing volumes of a pod that no longer exists");
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        agent.clear_pull_failures(uid, None);
    }
    Ok(())
}

async fn pod_dirs(agent: &Agent) -> Result<Vec<String>, Error> {
    let root = agent.data_dir.join("pods");
    let mut entries = tokio::fs::read_dir(&root)
        .await
        .map_err(|e| Error::io(&root, e))?;
    let mut dirs = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| Error::io(&root, e))?
    {
        dirs.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(dirs)
}
