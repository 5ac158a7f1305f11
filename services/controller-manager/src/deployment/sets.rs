//! What the deployment controller reads from and writes into its replica
//! sets: revisions, the pod-template-hash, annotations copied from the
//! deployment. No I/O here.

use std::collections::HashMap;

use moor_api::Resource;
use moor_api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use moor_api::core::v1::PodTemplateSpec;
use moor_api::meta::v1::{ObjectMeta, OwnerReference};

pub use moor_api::well_known::{DEPLOYMENT_REVISION as REVISION, POD_TEMPLATE_HASH as HASH_LABEL};
/// Earlier revisions of a replica set brought back by a rollback.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";

/// Deployment annotations that are not copied onto its replica sets, as in
/// Kubernetes (they describe the deployment, not a revision).
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The revision annotation of `rs` (0 when missing or unreadable).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.meta()
        .annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `spec.replicas`.
pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// `status.replicas`: the pods it has now.
pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// `status.availableReplicas`.
pub fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.available_replicas)
}

/// Whether `rs` runs `template`, ignoring the hash label on either side (a
/// rollback copies a replica set's template back, label and all or not).
pub fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(theirs) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
        return false;
    };
    without_hash(theirs) == without_hash(template)
}

fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .remove(HASH_LABEL);
    template
}

/// A short, stable suffix for the replica set of one revision.
///
/// Kubernetes hashes the template itself; moor's templates hold maps whose
/// protobuf encoding has no fixed order, so the hash is of the deployment's
/// uid and the revision instead, and templates are matched by equality
/// ([`same_template`]). `collisions` changes the name after a clash with a
/// replica set the deployment does not own.
pub fn template_hash(uid: &str, revision: i64, collisions: i32) -> String {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let salt = (collisions > 0).then(|| format!("/{collisions}"));
    let bytes = uid
        .bytes()
        .chain(revision.to_string().into_bytes())
        .chain(salt.unwrap_or_default().into_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// The replica set running `deployment`'s template at `revision`, with
/// `replicas` pods.
pub fn new_replica_set(deployment: &Deployment, revision: i64, replicas: i32) -> ReplicaSet {
    let meta = deployment.meta();
    let spec = deployment.spec.clone().unwrap_or_default();
    let collisions = deployment
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(&meta.uid, revision, collisions);
    let mut template = spec.template.clone().unwrap_or_default();
    let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    template_meta.labels.insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations = HashMap::from([(REVISION.to_string(), revision.to_string())]);
    copy_annotations(deployment, &mut annotations);
    ReplicaSet {
        metadata: Some(ObjectMeta {
            name: format!("{}-{hash}", meta.name),
            namespace: meta.namespace.clone(),
            labels: template_meta.labels.clone(),
            annotations,
            owner_references: vec![OwnerReference {
                api_version: Deployment::API_VERSION.into(),
                kind: Deployment::KIND.into(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..Default::default()
        }),
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector: Some(selector),
            template: Some(template),
        }),
        ..Default::default()
    }
}

/// `new` as it must be now that it runs the current template: the newest
/// revision (bumped past `max_old` when an old set is brought back, the
/// revision it had kept in the history annotation), the deployment's
/// annotations and minReadySeconds. `None` when nothing changes.
pub fn refreshed(deployment: &Deployment, new: &ReplicaSet, max_old: i64) -> Option<ReplicaSet> {
    let mut rs = new.clone();
    let current = revision(new);
    let annotations = &mut rs.meta_mut().annotations;
    if current <= max_old {
        if current > 0 {
            let history = match annotations.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{current}"),
                _ => current.to_string(),
            };
            annotations.insert(REVISION_HISTORY.into(), history);
        }
        annotations.insert(REVISION.into(), (max_old + 1).to_string());
    }
    copy_annotations(deployment, annotations);
    let min_ready = deployment.spec.as_ref().map_or(0, |s| s.min_ready_seconds);
    let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
    spec.min_ready_seconds = min_ready;
    (&rs != new).then_some(rs)
}

/// Copies the deployment's annotations (e.g. `kubernetes.io/change-cause`,
/// which `rollout history` shows) onto a replica set's.
fn copy_annotations(deployment: &Deployment, into: &mut HashMap<String, String>) {
    for (key, value) in &deployment.meta().annotations {
        if !NOT_COPIED.contains(&key.as_str()) {
            into.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use moor_api::apps::v1::DeploymentSpec;

    use super::*;

    fn deployment() -> Deployment {
        let mut template = PodTemplateSpec::default();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .insert("app".into(), "web".into());
        Deployment {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                uid: "u1".into(),
                annotations: HashMap::from([
                    ("kubernetes.io/change-cause".into(), "v2".into()),
                    (REVISION.into(), "1".into()),
                ]),
                ..Default::default()
            }),
            spec: Some(DeploymentSpec {
                template: Some(template),
                min_ready_seconds: 5,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hash_is_stable_and_differs_per_revision_and_collision() {
        assert_eq!(template_hash("u", 1, 0), template_hash("u", 1, 0));
        assert_ne!(template_hash("u", 1, 0), template_hash("u", 2, 0));
        assert_ne!(template_hash("u", 1, 0), template_hash("u", 1, 1));
        assert_eq!(template_hash("u", 1, 0).len(), 10);
    }

    #[test]
    fn new_set_is_labelled_annotated_and_matches_the_template() {
        let d = deployment();
        let rs = new_replica_set(&d, 3, 2);
        let hash = rs.meta().labels[HASH_LABEL].clone();
        assert_eq!(rs.meta().name, format!("web-{hash}"));
        assert_eq!(revision(&rs), 3);
        assert_eq!(rs.meta().annotations["kubernetes.io/change-cause"], "v2");
        assert_eq!(spec_replicas(&rs), 2);
        let selector = rs.spec.as_ref().unwrap().selector.as_ref().unwrap();
        assert_eq!(selector.match_labels[HASH_LABEL], hash);
        let template = d.spec.as_ref().unwrap().template.as_ref().unwrap();
        assert!(same_template(&rs, template));
        // A rollback copies the template back with its hash label.
        let copied = rs.spec.as_ref().unwrap().template.clone().unwrap();
        assert!(same_template(&rs, &copied));
    }

    #[test]
    fn a_set_brought_back_becomes_the_newest_revision() {
        let d = deployment();
        let rs = new_replica_set(&d, 1, 0);
        let back = refreshed(&d, &rs, 3).unwrap();
        assert_eq!(revision(&back), 4);
        assert_eq!(back.meta().annotations[REVISION_HISTORY], "1");
        assert_eq!(refreshed(&d, &back, 3), None, "nothing left to change");
        let again = refreshed(&d, &back, 6).unwrap();
        assert_eq!(again.meta().annotations[REVISION_HISTORY], "1,4");
    }
}
