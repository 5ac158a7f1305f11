//! The pure parts of `rolling-update`: the next controller made from the
//! old one, the label values that keep their pods apart, and how far each
//! step may scale (kubectl's RollingUpdater arithmetic, with its defaults
//! of no unavailable pod and one surge pod).

use moor_api::core::v1::ReplicationController;
use moor_api::meta::v1::ObjectMeta;

use crate::error::{Error, Result};

/// On the old controller: the name of the controller replacing it.
pub const NEXT_CONTROLLER: &str = "kubectl.kubernetes.io/next-controller-id";
/// On the new controller: the replicas it ends with.
pub const DESIRED_REPLICAS: &str = "kubectl.kubernetes.io/desired-replicas";
/// On the new controller: `OLD_NAME:OLD_UID`, the controller it replaces.
pub const SOURCE_ID: &str = "kubectl.kubernetes.io/update-source-id";

/// Pods that may be missing during the update (kubectl's default).
pub const MAX_UNAVAILABLE: i32 = 0;
/// Pods that may exist above the desired count (kubectl's default).
pub const MAX_SURGE: i32 = 1;

/// What to change in the next controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The new image.
    pub image: String,
    /// The container to change; none: the only one.
    pub container: Option<String>,
    /// The new pull policy, if any.
    pub pull_policy: Option<String>,
    /// The label key telling old pods from new ones.
    pub key: String,
    /// The next controller's name; none: `<old>-<hash>`.
    pub name: Option<String>,
}

/// The spec's replicas (1 when unset, the API's default).
pub fn replicas(rc: &ReplicationController) -> i32 {
    rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The index of the container `update` changes.
pub fn container_index(rc: &ReplicationController, container: Option<&str>) -> Result<usize> {
    let containers = rc
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    match (container, containers) {
        (_, []) => Err(Error::Usage(
            "the pod template has no containers".to_string(),
        )),
        (Some(name), containers) => containers
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::Usage(format!("container {name} not found in pod"))),
        (None, [_]) => Ok(0),
        (None, _) => Err(Error::Usage(
            "must specify container to update when updating a multi-container pod".to_string(),
        )),
    }
}

/// The image of container `index`.
pub fn image(rc: &ReplicationController, index: usize) -> String {
    rc.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.get(index))
        .map(|c| c.image.clone())
        .unwrap_or_default()
}

/// A short hash of the old controller's identity and version and `salt`:
/// a label value that differs per update, as kubectl's hash of the object does.
pub fn hash(rc: &ReplicationController, salt: &str) -> String {
    let meta = rc.metadata.clone().unwrap_or_default();
    // FNV-1a: stable across runs, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [meta.uid, meta.resource_version, salt.to_string()]
        .join("/")
        .bytes()
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash & 0xffff_ffff)
}

/// The controller replacing `old`: its copy with the new image, named
/// `<old>-<hash>`, whose selector and template carry `key=<hash>`, with no
/// replicas yet and the annotations a resumed update reads.
pub fn next_controller(
    old: &ReplicationController,
    update: &Update,
) -> Result<ReplicationController> {
    let index = container_index(old, update.container.as_deref())?;
    let old_meta = old.metadata.clone().unwrap_or_default();
    if image(old, index) == update.image && update.pull_policy.is_none() {
        return Err(Error::Usage(
            "--image-pull-policy (Always|Never|IfNotPresent) must be provided when --image is \
             the same as existing container image"
                .to_string(),
        ));
    }
    let hash = hash(old, &format!("{}/{}", update.image, index));
    let mut next = old.clone();
    next.status = None;
    let spec = next.spec.get_or_insert_default();
    let desired = spec.replicas.unwrap_or(1);
    spec.replicas = Some(0);
    spec.selector.insert(update.key.clone(), hash.clone());
    let template = spec.template.get_or_insert_default();
    template
        .metadata
        .get_or_insert_default()
        .labels
        .insert(update.key.clone(), hash.clone());
    if let Some(container) = template
        .spec
        .as_mut()
        .and_then(|s| s.containers.get_mut(index))
    {
        container.image = update.image.clone();
        if let Some(policy) = &update.pull_policy {
            container.image_pull_policy = policy.clone();
        }
    }
    let mut annotations = old_meta.annotations.clone();
    annotations.remove(NEXT_CONTROLLER);
    annotations.insert(DESIRED_REPLICAS.to_string(), desired.to_string());
    annotations.insert(
        SOURCE_ID.to_string(),
        format!("{}:{}", old_meta.name, old_meta.uid),
    );
    next.metadata = Some(ObjectMeta {
        name: update
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{hash}", old_meta.name)),
        namespace: old_meta.namespace,
        labels: old_meta.labels,
        annotations,
        ..Default::default()
    });
    Ok(next)
}

/// The replicas the next controller ends with: its annotation, else the
/// old controller's count.
pub fn desired(next: &ReplicationController, old: &ReplicationController) -> i32 {
    next.metadata
        .as_ref()
        .and_then(|m| m.annotations.get(DESIRED_REPLICAS))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| replicas(old))
}

/// kubectl's first line of the update.
pub fn summary(
    next: &str,
    next_replicas: i32,
    old: &str,
    old_replicas: i32,
    desired: i32,
) -> String {
    format!(
        "Scaling up {next} from {next_replicas} to {desired}, scaling down {old} from \
         {old_replicas} to 0 (keep {} pods available, don't exceed {} pods)",
        desired - MAX_UNAVAILABLE,
        desired + MAX_SURGE
    )
}

/// The next controller's replicas after a scale-up step, or None when it
/// cannot grow now (the surge limit) or is done.
pub fn scale_up(next: i32, old: i32, desired: i32) -> Option<i32> {
    if next == desired {
        return None;
    }
    let increment = if old == 0 {
        desired - next
    } else {
        desired + MAX_SURGE - (old + next)
    };
    (increment > 0).then(|| (next + increment).min(desired))
}

/// The old controller's replicas after a scale-down step, or None when it
/// cannot shrink without dropping below the pods that must stay available.
/// `available`: the next controller's available pods.
pub fn scale_down(next: i32, old: i32, desired: i32, available: i32) -> Option<i32> {
    if old == 0 {
        return None;
    }
    let min_available = desired - MAX_UNAVAILABLE;
    let unavailable = next - available;
    let decrement = old + next - min_available - unavailable;
    if decrement <= 0 {
        return None;
    }
    if next == desired && available >= desired {
        return Some(0);
    }
    Some((old - decrement).max(0))
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{Container, PodSpec, PodTemplateSpec, ReplicationControllerSpec};

    use super::*;

    fn rc(containers: &[&str]) -> ReplicationController {
        ReplicationController {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                resource_version: "7".into(),
                ..Default::default()
            }),
            spec: Some(ReplicationControllerSpec {
                replicas: Some(2),
                selector: [("app".to_string(), "web".to_string())].into(),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: [("app".to_string(), "web".to_string())].into(),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: containers
                            .iter()
                            .map(|n| Container {
                                name: n.to_string(),
                                image: "echo:1".into(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn update(image: &str) -> Update {
        Update {
            image: image.into(),
            container: None,
            pull_policy: None,
            key: "deployment".into(),
            name: None,
        }
    }

    #[test]
    fn the_next_controller_selects_only_its_own_pods() {
        let next = next_controller(&rc(&["app"]), &update("echo:2")).unwrap();
        let meta = next.metadata.clone().unwrap();
        let hash = hash(&rc(&["app"]), "echo:2/0");
        assert_eq!(meta.name, format!("web-{hash}"));
        assert!(meta.uid.is_empty() && meta.resource_version.is_empty());
        assert_eq!(meta.annotations[DESIRED_REPLICAS], "2");
        assert_eq!(meta.annotations[SOURCE_ID], "web:u1");
        let spec = next.spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        assert_eq!(spec.selector["deployment"], hash);
        let template = spec.template.unwrap();
        assert_eq!(template.metadata.unwrap().labels["deployment"], hash);
        assert_eq!(template.spec.unwrap().containers[0].image, "echo:2");
        assert_ne!(hash, super::hash(&rc(&["app"]), "old"));
    }

    #[test]
    fn the_container_must_be_clear_and_the_image_new() {
        let err = next_controller(&rc(&["a", "b"]), &update("echo:2")).unwrap_err();
        assert!(err.to_string().contains("multi-container"), "{err}");
        let mut named = update("echo:2");
        named.container = Some("b".into());
        let next = next_controller(&rc(&["a", "b"]), &named).unwrap();
        let containers = next
            .spec
            .unwrap()
            .template
            .unwrap()
            .spec
            .unwrap()
            .containers;
        assert_eq!(
            (containers[0].image.as_str(), containers[1].image.as_str()),
            ("echo:1", "echo:2")
        );
        named.container = Some("c".into());
        let err = next_controller(&rc(&["a", "b"]), &named).unwrap_err();
        assert_eq!(err.to_string(), "container c not found in pod");
        let err = next_controller(&rc(&["app"]), &update("echo:1")).unwrap_err();
        assert!(err.to_string().contains("--image-pull-policy"), "{err}");
    }

    #[test]
    fn steps_keep_every_pod_available_and_surge_by_one() {
        // Three desired: up to 1, down once it is available, and so on.
        assert_eq!(scale_up(0, 3, 3), Some(1));
        assert_eq!(
            scale_down(1, 3, 3, 0),
            None,
            "the new pod is not available yet"
        );
        assert_eq!(scale_down(1, 3, 3, 1), Some(2));
        assert_eq!(scale_up(1, 2, 3), Some(2));
        assert_eq!(scale_up(2, 3, 3), None, "the surge limit");
        assert_eq!(scale_down(2, 2, 3, 2), Some(1));
        assert_eq!(scale_up(2, 1, 3), Some(3));
        assert_eq!(scale_down(3, 1, 3, 3), Some(0));
        assert_eq!(scale_down(3, 0, 3, 3), None);
        assert_eq!(scale_up(3, 0, 3), None);
        // The old one gone: straight to the desired count.
        assert_eq!(scale_up(1, 0, 3), Some(3));
        assert_eq!(
            summary("web-1a", 0, "web", 2, 2),
            "Scaling up web-1a from 0 to 2, scaling down web from 2 to 0 (keep 2 pods available, don't exceed 3 pods)"
        );
    }
}
