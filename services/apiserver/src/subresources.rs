//! Bind (pods) and scale (workloads): small writes on one field, each
//! conditioned on the object's state so concurrent callers cannot both win.

use moor_api::core::v1::{Binding, Pod};
use moor_api::meta::v1::{Condition, GetRequest, ObjectMeta, Scale, ScaleSpec, ScaleStatus};

use crate::error::Error;
use crate::kinds::Scalable;
use crate::registry::{Part, Registry, now, parse_revision};

impl Registry<Pod> {
    /// Binds an unbound pod to a node. Fails with a conflict when the pod is
    /// already bound, so a deposed scheduler can never bind a pod twice.
    pub async fn bind(&self, binding: &Binding) -> Result<Pod, Error> {
        let meta = binding.metadata.clone().unwrap_or_default();
        let target = binding.target.clone().unwrap_or_default();
        if target.name.is_empty() {
            return Err(Error::invalid(
                "Binding",
                &meta.name,
                "target.name",
                "Required value",
            ));
        }
        if !target.kind.is_empty() && target.kind != "Node" {
            return Err(Error::invalid(
                "Binding",
                &meta.name,
                "target.kind",
                format!(
                    "Unsupported value: {:?}: supported values: \"Node\"",
                    target.kind
                ),
            ));
        }
        let expected = parse_revision(&meta.resource_version)?;
        loop {
            let mut pod = self
                .get(&GetRequest {
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone(),
                })
                .await?;
            let revision = parse_revision(
                &pod.metadata
                    .as_ref()
                    .map(|m| m.resource_version.clone())
                    .unwrap_or_default(),
            )?
            .unwrap_or(0);
            let pod_meta = pod.metadata.clone().unwrap_or_default();
            if expected.is_some_and(|rv| rv != revision)
                || (!meta.uid.is_empty() && meta.uid != pod_meta.uid)
            {
                return Err(Error::Conflict(format!(
                    "pod {:?} changed since it was read; not binding it",
                    meta.name
                )));
            }
            if pod_meta.deletion_timestamp.is_some() {
                return Err(Error::Conflict(format!(
                    "pod {:?} is being deleted, cannot be assigned to a host",
                    meta.name
                )));
            }
            let spec = pod.spec.get_or_insert_with(Default::default);
            if !spec.node_name.is_empty() {
                return Err(Error::Conflict(format!(
                    "pod {:?} is already assigned to node {:?}",
                    meta.name, spec.node_name
                )));
            }
            spec.node_name = target.name.clone();
            let status = pod.status.get_or_insert_with(Default::default);
            status.conditions.retain(|c| c.r#type != "PodScheduled");
            status.conditions.push(Condition {
                r#type: "PodScheduled".to_string(),
                status: "True".to_string(),
                last_transition_time: Some(now()),
                ..Default::default()
            });
            if let Some(bound) = self.write_at(pod, revision).await? {
                return Ok(bound);
            }
        }
    }
}

impl<K: Scalable> Registry<K> {
    /// The scale of a workload.
    pub async fn get_scale(&self, req: &GetRequest) -> Result<Scale, Error> {
        let object = self.get(req).await?;
        Ok(scale_of(&object))
    }

    /// Sets a workload's desired replicas.
    pub async fn update_scale(&self, scale: &Scale) -> Result<Scale, Error> {
        let meta = scale.metadata.clone().unwrap_or_default();
        let replicas = scale.spec.as_ref().map(|s| s.replicas).unwrap_or(0);
        if replicas < 0 {
            return Err(Error::invalid(
                "Scale",
                &meta.name,
                "spec.replicas",
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            ));
        }
        loop {
            let mut object = self
                .get(&GetRequest {
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone(),
                })
                .await?;
            object.set_replicas(replicas);
            // The scale's own resourceVersion is the precondition. Without
            // one (`kubectl scale`'s way) the scale applies to the latest
            // object, read again when a writer (a controller's status)
            // came in between: never to a stale copy of the rest of it.
            let unconditional = meta.resource_version.is_empty();
            if !unconditional {
                object.meta_mut().resource_version = meta.resource_version.clone();
            }
            match self.update(object, Part::Main).await {
                Ok(updated) => return Ok(scale_of(&updated)),
                Err(Error::Conflict(_)) if unconditional => {}
                Err(err) => return Err(err),
            }
        }
    }
}

fn scale_of<K: Scalable>(object: &K) -> Scale {
    let meta = object.meta();
    Scale {
        metadata: Some(ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            creation_timestamp: meta.creation_timestamp,
            ..Default::default()
        }),
        spec: Some(ScaleSpec {
            replicas: object.replicas(),
        }),
        status: Some(ScaleStatus {
            replicas: object.status_replicas(),
            selector: object.selector_string(),
        }),
    }
}
