//! `rollout history` and `rollout undo`: a deployment's revisions are the
//! replica sets it controls, numbered by their revision annotation. Undo
//! copies a revision's pod template back into the deployment, as kubectl
//! does since 1.18 (the controller-manager then brings that replica set
//! back as the newest revision).

use std::collections::BTreeMap;

use moor_api::apps::v1::{Deployment, ReplicaSet};
use moor_api::core::v1::PodTemplateSpec;
use moor_api::meta::v1::ListRequest;
use prost_reflect::DynamicMessage;

use super::status::REVISION;
use super::{Change, Target, get, update};
use crate::cmd::out;
use crate::error::{Error, Result};
use crate::rpc::Client;
use crate::table::Table;

/// The annotation a revision's cause is recorded in.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

use moor_api::well_known::POD_TEMPLATE_HASH as HASH_LABEL;

/// Replica set annotations that describe the set, not the revision: undo
/// does not copy them to the deployment (kubectl's list).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Runs `rollout history`: the list, or one revision's pod template.
pub async fn history(client: &Client, target: &Target, revision: i64) -> Result<()> {
    let deployment = get(client, target).await?;
    let sets = replica_sets(client, target).await?;
    let revisions = revisions(&deployment, &sets);
    if revision <= 0 {
        return out(&format!(
            "{} \n{}\n",
            target.display(),
            history_table(&revisions)
        ));
    }
    let rs = revisions
        .get(&revision)
        .ok_or_else(|| Error::Usage("unable to find the specified revision".to_string()))?;
    let template = template_yaml(
        &rs.spec
            .clone()
            .unwrap_or_default()
            .template
            .unwrap_or_default(),
    )?;
    let indented: String = template.lines().map(|l| format!("  {l}\n")).collect();
    out(&format!(
        "{} with revision #{revision}\nPod Template:\n{indented}",
        target.display()
    ))
}

/// Runs `rollout undo`.
pub async fn undo(client: &Client, target: &Target, to_revision: i64) -> Result<()> {
    let deployment = get(client, target).await?;
    let sets = replica_sets(client, target).await?;
    let revisions = revisions(&deployment, &sets);
    let (revision, rs) = rollback_target(&revisions, to_revision, &target.name)?;
    let spec = rs.spec.clone().unwrap_or_default();
    let template = without_hash(spec.template.as_ref());
    let annotations: Vec<(String, String)> = rs
        .metadata
        .as_ref()
        .map(|m| {
            m.annotations
                .iter()
                .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let skipped = update(client, target, |deployment| {
        let spec = deployment.spec.get_or_insert_default();
        if spec.paused {
            return Err(Error::Usage(
                "you cannot rollback a paused deployment; resume it first with 'moorctl rollout \
                 resume' and try again"
                    .to_string(),
            ));
        }
        if without_hash(spec.template.as_ref()) == template {
            return Ok(Change::Skip(format!(
                "{} skipped rollback (current template already matches revision {revision})",
                target.display()
            )));
        }
        spec.template = Some(template.clone());
        deployment
            .metadata
            .get_or_insert_default()
            .annotations
            .extend(annotations.iter().cloned());
        Ok(Change::Write)
    })
    .await?;
    match skipped {
        Some(line) => out(&format!("{line}\n")),
        None => out(&format!("{} rolled back\n", target.display())),
    }
}

/// The replica sets of the deployment's namespace.
async fn replica_sets(client: &Client, target: &Target) -> Result<Vec<ReplicaSet>> {
    let request = ListRequest {
        namespace: target.namespace.clone(),
        ..Default::default()
    };
    Ok(client
        .replica_sets()
        .list(request)
        .await
        .map_err(|s| client.status(s))?
        .into_inner()
        .items)
}

/// The revisions of `deployment`: the replica sets it controls, by their
/// revision annotation (sets without a readable one are not revisions).
pub fn revisions<'a>(
    deployment: &Deployment,
    sets: &'a [ReplicaSet],
) -> BTreeMap<i64, &'a ReplicaSet> {
    let uid = deployment
        .metadata
        .as_ref()
        .map(|m| m.uid.as_str())
        .unwrap_or_default();
    sets.iter()
        .filter_map(|rs| {
            let meta = rs.metadata.as_ref()?;
            let controlled = meta
                .owner_references
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid);
            let revision = meta.annotations.get(REVISION)?.parse::<i64>().ok()?;
            controlled.then_some((revision, rs))
        })
        .collect()
}

/// kubectl's history table: REVISION and CHANGE-CAUSE, oldest first.
pub fn history_table(revisions: &BTreeMap<i64, &ReplicaSet>) -> String {
    let rows = revisions
        .iter()
        .map(|(revision, rs)| {
            let cause = rs
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.get(CHANGE_CAUSE))
                .filter(|c| !c.is_empty())
                .map_or("<none>", String::as_str);
            vec![revision.to_string(), cause.to_string()]
        })
        .collect();
    let table = Table {
        headers: vec!["REVISION".into(), "CHANGE-CAUSE".into()],
        rows,
    };
    table.render(true)
}

/// The revision undo goes back to: `to_revision`, or with 0 the previous
/// one (the second highest, as kubectl picks it).
pub fn rollback_target<'a>(
    revisions: &BTreeMap<i64, &'a ReplicaSet>,
    to_revision: i64,
    name: &str,
) -> Result<(i64, &'a ReplicaSet)> {
    if to_revision > 0 {
        return revisions
            .get(&to_revision)
            .map(|rs| (to_revision, *rs))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unable to find specified revision {to_revision} in history"
                ))
            });
    }
    revisions
        .iter()
        .rev()
        .nth(1)
        .map(|(revision, rs)| (*revision, *rs))
        .ok_or_else(|| Error::Usage(format!("no rollout history found for deployment {name:?}")))
}

/// A template without the label the controller-manager adds per revision.
pub fn without_hash(template: Option<&PodTemplateSpec>) -> PodTemplateSpec {
    let mut template = template.cloned().unwrap_or_default();
    if let Some(meta) = template.metadata.as_mut() {
        meta.labels.remove(HASH_LABEL);
    }
    template
}

/// A pod template in YAML, as `get -o yaml` writes objects.
fn template_yaml(template: &PodTemplateSpec) -> Result<String> {
    let name = "moor.core.v1.PodTemplateSpec";
    let desc = moor_api::descriptor_pool()
        .get_message_by_name(name)
        .ok_or_else(|| Error::Usage(format!("the API has no message {name}")))?;
    let mut message = DynamicMessage::new(desc);
    message
        .transcode_from(template)
        .map_err(|e| Error::Usage(format!("cannot encode the template: {e}")))?;
    Ok(moor_codec::to_yaml(&message)?)
}

#[cfg(test)]
mod tests {
    use moor_api::apps::v1::ReplicaSetSpec;
    use moor_api::core::v1::{Container, PodSpec};
    use moor_api::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                uid: "d1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rs(name: &str, owner: &str, revision: Option<&str>, cause: Option<&str>) -> ReplicaSet {
        let mut annotations = std::collections::HashMap::new();
        if let Some(r) = revision {
            annotations.insert(REVISION.to_string(), r.to_string());
        }
        if let Some(c) = cause {
            annotations.insert(CHANGE_CAUSE.to_string(), c.to_string());
        }
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [
                    ("app".to_string(), "web".to_string()),
                    (HASH_LABEL.to_string(), name.to_string()),
                ]
                .into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: format!("echo:{name}"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        ReplicaSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                annotations,
                owner_references: vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                template: Some(template),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sets() -> Vec<ReplicaSet> {
        vec![
            rs("c", "d1", Some("3"), Some("kubectl set image")),
            rs("a", "d1", Some("1"), None),
            rs("other", "d2", Some("2"), None),
            rs("b", "d1", Some("2"), Some("")),
            rs("x", "d1", None, None),
        ]
    }

    #[test]
    fn history_lists_the_deployments_own_revisions() {
        let sets = sets();
        let revisions = revisions(&deployment(), &sets);
        assert_eq!(revisions.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            history_table(&revisions),
            "REVISION   CHANGE-CAUSE\n1          <none>\n2          <none>\n3          kubectl set image\n"
        );
    }

    #[test]
    fn undo_picks_the_previous_or_the_named_revision() {
        let sets = sets();
        let revisions = revisions(&deployment(), &sets);
        let name = |r: Result<(i64, &ReplicaSet)>| {
            r.map(|(n, rs)| (n, rs.metadata.clone().unwrap_or_default().name))
        };
        assert_eq!(
            name(rollback_target(&revisions, 0, "web")).unwrap(),
            (2, "b".into())
        );
        assert_eq!(
            name(rollback_target(&revisions, 1, "web")).unwrap(),
            (1, "a".into())
        );
        let err = rollback_target(&revisions, 7, "web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find specified revision 7 in history"
        );
        let one: BTreeMap<i64, &ReplicaSet> = revisions.into_iter().take(1).collect();
        let err = rollback_target(&one, 0, "web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no rollout history found for deployment \"web\""
        );
    }

    #[test]
    fn the_copied_template_loses_its_hash_label() {
        let rs = rs("b", "d1", Some("2"), None);
        let template = without_hash(rs.spec.and_then(|s| s.template).as_ref());
        let labels = template.metadata.unwrap_or_default().labels;
        assert_eq!(labels, [("app".to_string(), "web".to_string())].into());
    }

    #[test]
    fn a_template_prints_as_yaml() {
        let rs = rs("b", "d1", Some("2"), None);
        let yaml = template_yaml(&rs.spec.and_then(|s| s.template).unwrap_or_default()).unwrap();
        assert!(yaml.contains("image: echo:b"), "{yaml}");
        assert!(yaml.contains("pod-template-hash: b"), "{yaml}");
    }
}
