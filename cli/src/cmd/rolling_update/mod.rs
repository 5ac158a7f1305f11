//! `rolling-update RC --image IMAGE`: kubectl 1.0's client-driven update of
//! a replication controller. The old controller's pods get a
//! `deployment=<hash>` label (and its selector too); a next controller
//! selecting `deployment=<new hash>` runs the new image. Each update period
//! the next one grows by one and the old one shrinks once the new pod is
//! available, so no pod the old controller promised goes missing. At the
//! end the old controller is deleted and the next one takes its name.
//!
//! The rename is kubectl's (delete with orphaned pods, create under the old
//! name, which adopts them), but moor's apiserver does not orphan on delete
//! (the garbage collector would remove the pods), so the pods are released
//! first: the temporary controller is scaled to 0 with a selector that no
//! longer matches them, and its own controller removes its ownerReferences.

mod plan;

use std::time::Duration;

use moor_api::core::v1::{Pod, ReplicationController};
use moor_api::meta::v1::{DeleteRequest, GetRequest};
use tokio::time::Instant;
use tonic::Code;

use crate::args::RollingUpdateArgs;
use crate::cmd::{Ctx, kind, out, pods};
use crate::error::{Error, Result};
use crate::rpc::Client;

/// The label the temporary controller's pods are released with.
const RELEASE_LABEL: &str = "moorctl.moor.dev/released-by";

/// Times an update is tried again after a conflicting write.
const CONFLICT_RETRIES: usize = 5;

/// The controllers of one update, in one namespace.
struct Updater<'a> {
    client: &'a Client,
    namespace: String,
    poll: Duration,
    timeout: Duration,
}

/// Runs `rolling-update`.
pub async fn run(ctx: &Ctx, args: RollingUpdateArgs) -> Result<()> {
    let old_name = match args.old.split_once('/') {
        Some((k, name)) if kind(k)?.kind == "ReplicationController" => name.to_string(),
        Some((k, _)) => {
            return Err(Error::Usage(format!(
                "{k}: rolling-update updates replication controllers only (use rollout for deployments)"
            )));
        }
        None => args.old.clone(),
    };
    let client = ctx.client()?;
    let updater = Updater {
        client: &client,
        namespace: ctx.namespace(),
        poll: args.poll_interval.max(Duration::from_millis(100)),
        timeout: args.timeout,
    };
    let update = plan::Update {
        image: args.image.clone(),
        container: args.container.clone(),
        pull_policy: args.image_pull_policy.clone(),
        key: args.deployment_label_key.clone(),
        name: args.new.clone(),
    };
    let mut old = updater
        .get(&old_name)
        .await?
        .ok_or_else(|| not_found(&old_name))?;
    let next = updater.next(&old, &update).await?;
    let next_name = name_of(&next);
    if !old
        .spec
        .as_ref()
        .is_some_and(|s| s.selector.contains_key(&update.key))
    {
        old = updater.label_old(old, &update.key, &next_name).await?;
    }
    let next = match next.metadata.as_ref().is_some_and(|m| !m.uid.is_empty()) {
        true => next,
        false => {
            let created = updater.create(next).await?;
            out(&format!("Created {next_name}\n"))?;
            created
        }
    };
    let next = updater.roll(old, next, args.update_period).await?;
    out(&format!(
        "Update succeeded. Deleting old controller: {old_name}\n"
    ))?;
    updater.delete(&old_name).await?;
    let final_name = match args.new {
        Some(_) => next_name,
        None => {
            out(&format!("Renaming {next_name} to {old_name}\n"))?;
            updater.rename(next, &old_name).await?;
            old_name
        }
    };
    out(&format!(
        "replicationcontroller/{final_name} rolling updated\n"
    ))
}

fn not_found(name: &str) -> Error {
    Error::Server {
        code: Code::NotFound,
        message: format!("replicationcontrollers {name:?} not found"),
    }
}

fn name_of(rc: &ReplicationController) -> String {
    rc.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

fn uid_of(rc: &ReplicationController) -> String {
    rc.metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default()
}

/// `k=v,...` of a map selector, sorted.
fn selector_text(rc: &ReplicationController) -> String {
    let mut pairs: Vec<String> = rc
        .spec
        .as_ref()
        .map(|s| s.selector.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs.join(",")
}

/// Whether `pod` is controlled by the object with `uid`.
fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata.as_ref().is_some_and(|m| {
        m.owner_references
            .iter()
            .any(|r| r.controller == Some(true) && r.uid == uid)
    })
}

/// Whether `pod` has been ready for `min_ready` (and is not going away).
fn available(pod: &Pod, min_ready: Duration) -> bool {
    if pod
        .metadata
        .as_ref()
        .is_some_and(|m| m.deletion_timestamp.is_some())
    {
        return false;
    }
    let now = prost_types::Timestamp::from(std::time::SystemTime::now()).seconds;
    let min_ready = i64::try_from(min_ready.as_secs()).unwrap_or(i64::MAX);
    pod.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            let since = c.last_transition_time.as_ref().map_or(0, |t| t.seconds);
            c.r#type == "Ready" && c.status == "True" && now.saturating_sub(since) >= min_ready
        })
    })
}

// === impl Updater ===

impl Updater<'_> {
    /// The controller `name`, or None.
    async fn get(&self, name: &str) -> Result<Option<ReplicationController>> {
        let request = GetRequest {
            namespace: self.namespace.clone(),
            name: name.to_string(),
        };
        match self.client.replication_controllers().get(request).await {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.client.status(status)),
        }
    }

    /// The next controller: one an interrupted update left (to resume), or a
    /// new one (not created yet: no uid).
    async fn next(
        &self,
        old: &ReplicationController,
        update: &plan::Update,
    ) -> Result<ReplicationController> {
        let recorded = old
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.get(plan::NEXT_CONTROLLER).cloned());
        let name = update.name.clone().or(recorded);
        if let Some(name) = name
            && let Some(existing) = self.get(&name).await?
        {
            let index = plan::container_index(&existing, update.container.as_deref())?;
            let image = plan::image(&existing, index);
            if image != update.image {
                return Err(Error::Usage(format!(
                    "found an in-progress update to image ({image}): continue it with --image={image}"
                )));
            }
            out(&format!(
                "Found existing update in progress ({name}), resuming.\n"
            ))?;
            return Ok(existing);
        }
        plan::next_controller(old, update)
    }

    /// Marks the old controller's pods, template and selector with
    /// `key=<hash>` (kubectl's order: template, pods, selector), and deletes
    /// pods it made meanwhile without the label.
    async fn label_old(
        &self,
        old: ReplicationController,
        key: &str,
        next: &str,
    ) -> Result<ReplicationController> {
        let name = name_of(&old);
        let uid = uid_of(&old);
        let hash = plan::hash(&old, "old");
        let original_selector = selector_text(&old);
        self.change(&name, |rc| {
            let meta = rc.metadata.get_or_insert_default();
            meta.annotations
                .insert(plan::NEXT_CONTROLLER.to_string(), next.to_string());
            let spec = rc.spec.get_or_insert_default();
            let template = spec.template.get_or_insert_default();
            template
                .metadata
                .get_or_insert_default()
                .labels
                .insert(key.to_string(), hash.clone());
        })
        .await?;
        for pod in pods::list(self.client, &self.namespace, &original_selector).await? {
            if controlled_by(&pod, &uid) {
                self.label_pod(pod, key, &hash).await?;
            }
        }
        let old = self
            .change(&name, |rc| {
                rc.spec
                    .get_or_insert_default()
                    .selector
                    .insert(key.to_string(), hash.clone());
            })
            .await?;
        for pod in pods::list(self.client, &self.namespace, &original_selector).await? {
            let labeled = pod
                .metadata
                .as_ref()
                .is_some_and(|m| m.labels.get(key) == Some(&hash));
            if controlled_by(&pod, &uid) && !labeled {
                self.delete_pod(&pods::name_of(&pod)).await?;
            }
        }
        Ok(old)
    }

    /// Adds `key=value` to a pod's labels, reading it again on a conflict.
    async fn label_pod(&self, mut pod: Pod, key: &str, value: &str) -> Result<()> {
        let name = pods::name_of(&pod);
        for attempt in 0.. {
            pod.metadata
                .get_or_insert_default()
                .labels
                .insert(key.to_string(), value.to_string());
            match self.client.pods().update(pod).await {
                Ok(_) => return Ok(()),
                Err(status) if status.code() == Code::NotFound => return Ok(()),
                Err(status) if status.code() == Code::Aborted && attempt < CONFLICT_RETRIES => {
                    pod = pods::get(self.client, &self.namespace, &name).await?;
                }
                Err(status) => return Err(self.client.status(status)),
            }
        }
        Ok(())
    }

    async fn delete_pod(&self, name: &str) -> Result<()> {
        let request = DeleteRequest {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            ..Default::default()
        };
        match self.client.pods().delete(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(self.client.status(status)),
        }
    }

    async fn create(&self, rc: ReplicationController) -> Result<ReplicationController> {
        Ok(self
            .client
            .replication_controllers()
            .create(rc)
            .await
            .map_err(|s| self.client.status(s))?
            .into_inner())
    }

    /// Deletes a controller; gone already is fine.
    async fn delete(&self, name: &str) -> Result<()> {
        let request = DeleteRequest {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            ..Default::default()
        };
        match self.client.replication_controllers().delete(request).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => return Err(self.client.status(status)),
        }
        self.poll_until(
            &format!("replicationcontroller/{name} to be deleted"),
            || async { Ok(self.get(name).await?.is_none()) },
        )
        .await
    }

    /// Reads the controller, applies `edit` and writes it back, again on a
    /// conflict; returns it as stored.
    async fn change(
        &self,
        name: &str,
        mut edit: impl FnMut(&mut ReplicationController),
    ) -> Result<ReplicationController> {
        let mut attempt = 0;
        loop {
            let mut rc = self.get(name).await?.ok_or_else(|| not_found(name))?;
            edit(&mut rc);
            match self.client.replication_controllers().update(rc).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Aborted && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                }
                Err(status) => return Err(self.client.status(status)),
            }
        }
    }

    /// Sets the controller's replicas and waits until its status counts them.
    async fn scale(&self, name: &str, replicas: i32) -> Result<ReplicationController> {
        self.change(name, |rc| {
            rc.spec.get_or_insert_default().replicas = Some(replicas);
        })
        .await?;
        self.settled(name).await
    }

    /// Waits until the controller's status has caught up with its spec.
    async fn settled(&self, name: &str) -> Result<ReplicationController> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let rc = self.get(name).await?.ok_or_else(|| not_found(name))?;
            let generation = rc.metadata.as_ref().map_or(0, |m| m.generation);
            let status = rc.status.clone().unwrap_or_default();
            if status.observed_generation >= generation && status.replicas == plan::replicas(&rc) {
                return Ok(rc);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "replicationcontroller/{name} to have its replicas"
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Checks every poll interval until `done`, within the timeout.
    async fn poll_until<F, Fut>(&self, what: &str, mut done: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + self.timeout;
        loop {
            if done().await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(what.to_string()));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The next controller's pods that are available.
    async fn available(&self, next: &ReplicationController) -> Result<i32> {
        let uid = uid_of(next);
        let min_ready = next.spec.as_ref().map_or(0, |s| s.min_ready_seconds);
        let min_ready = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
        let pods = pods::list(self.client, &self.namespace, &selector_text(next)).await?;
        let count = pods
            .iter()
            .filter(|p| controlled_by(p, &uid) && available(p, min_ready))
            .count();
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// Scales the next controller up and the old one down, step by step,
    /// until the old one has no pods; fails when no step was possible for
    /// the whole timeout.
    async fn roll(
        &self,
        mut old: ReplicationController,
        mut next: ReplicationController,
        period: Duration,
    ) -> Result<ReplicationController> {
        let (old_name, next_name) = (name_of(&old), name_of(&next));
        let desired = plan::desired(&next, &old);
        out(&format!(
            "{}\n",
            plan::summary(
                &next_name,
                plan::replicas(&next),
                &old_name,
                plan::replicas(&old),
                desired
            )
        ))?;
        let mut deadline = Instant::now() + self.timeout;
        while plan::replicas(&next) != desired || plan::replicas(&old) != 0 {
            let before = (plan::replicas(&next), plan::replicas(&old));
            if let Some(up) = plan::scale_up(before.0, before.1, desired) {
                out(&format!("Scaling {next_name} up to {up}\n"))?;
                next = self.scale(&next_name, up).await?;
            }
            tokio::time::sleep(period).await;
            let available = self.available(&next).await?;
            let (now_next, now_old) = (plan::replicas(&next), plan::replicas(&old));
            if let Some(down) = plan::scale_down(now_next, now_old, desired, available) {
                out(&format!("Scaling {old_name} down to {down}\n"))?;
                old = self.scale(&old_name, down).await?;
            }
            if (plan::replicas(&next), plan::replicas(&old)) != before {
                deadline = Instant::now() + self.timeout;
            } else if Instant::now() > deadline {
                return Err(Error::Usage(
                    "timed out waiting for any update progress to be made".to_string(),
                ));
            }
        }
        // Done: the bookkeeping annotations go, as kubectl's cleanup does.
        self.change(&next_name, |rc| {
            if let Some(meta) = rc.metadata.as_mut() {
                meta.annotations.remove(plan::SOURCE_ID);
                meta.annotations.remove(plan::DESIRED_REPLICAS);
            }
        })
        .await?;
        self.settled(&next_name).await
    }

    /// Gives the controller `next` the name `name`: its pods are released,
    /// it is deleted, and a copy under `name` adopts them.
    async fn rename(&self, next: ReplicationController, name: &str) -> Result<()> {
        let next_name = name_of(&next);
        let uid = uid_of(&next);
        let selector = selector_text(&next);
        self.change(&next_name, |rc| {
            let spec = rc.spec.get_or_insert_default();
            spec.replicas = Some(0);
            spec.selector.insert(RELEASE_LABEL.to_string(), uid.clone());
            spec.template
                .get_or_insert_default()
                .metadata
                .get_or_insert_default()
                .labels
                .insert(RELEASE_LABEL.to_string(), uid.clone());
        })
        .await?;
        let what = format!("replicationcontroller/{next_name} to release its pods");
        self.poll_until(&what, || async {
            let pods = pods::list(self.client, &self.namespace, &selector).await?;
            Ok(!pods.iter().any(|p| controlled_by(p, &uid)))
        })
        .await?;
        self.delete(&next_name).await?;
        let mut renamed = next;
        renamed.status = None;
        let meta = renamed.metadata.get_or_insert_default();
        *meta = moor_api::meta::v1::ObjectMeta {
            name: name.to_string(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            annotations: meta.annotations.clone(),
            ..Default::default()
        };
        self.create(renamed).await?;
        Ok(())
    }
}
