//! From a pod's spec to the runtime's container specs: names, labels, env,
//! volumes.

use std::path::{Path, PathBuf};

use moor_api::core::v1::{Container, Pod, Volume};
use moor_runtime::{ContainerSpec, Labels, Mount, NetworkMode, PortMapping, labels};

use crate::agent::Agent;
use crate::pod::etc;
use crate::pod::sources::{self, Sources};

/// A container the agent cannot create from the spec as given
/// (CreateContainerConfigError).
#[derive(Debug)]
pub struct ConfigError(pub String);

/// The labels every container of `pod` carries.
pub fn pod_labels(agent: &Agent, pod: &Pod) -> Labels {
    let meta = pod.metadata.clone().unwrap_or_default();
    Labels::from([
        (labels::POD_UID.to_owned(), meta.uid),
        (labels::POD_NAMESPACE.to_owned(), meta.namespace),
        (labels::POD_NAME.to_owned(), meta.name),
        (labels::NODE.to_owned(), agent.name.clone()),
    ])
}

/// The engine name of a pod's container: unique per pod incarnation and attempt.
fn engine_name(pod: &Pod, container: &str, attempt: u32) -> String {
    let meta = pod.metadata.clone().unwrap_or_default();
    let uid: String = meta.uid.chars().take(8).collect();
    format!(
        "moor_{}_{}_{container}_{uid}_{attempt}",
        meta.namespace, meta.name
    )
}

/// The pod's hostname: its name, cut to a DNS label's 63 characters.
pub fn hostname(pod: &Pod) -> String {
    let name = pod.metadata.as_ref().map_or("", |m| m.name.as_str());
    name.chars().take(63).collect()
}

/// The sandbox container: the pause image on the cluster network.
pub fn sandbox(agent: &Agent, pod: &Pod, attempt: u32) -> ContainerSpec {
    let mut labels = pod_labels(agent, pod);
    labels.insert(labels::SANDBOX.into(), "true".into());
    labels.insert(labels::CONTAINER_ATTEMPT.into(), attempt.to_string());
    ContainerSpec {
        name: engine_name(pod, "POD", attempt),
        image: agent.config.sandbox_image.clone(),
        command: vec![],
        args: vec![],
        working_dir: String::new(),
        env: vec![],
        labels,
        mounts: vec![],
        network: NetworkMode::Network(agent.config.network.clone()),
        ipc_container: None,
        hostname: Some(hostname(pod)),
        ports: host_ports(pod),
        nano_cpus: None,
        memory_bytes: None,
        // The agent writes the pod's resolv.conf itself (pod/etc.rs).
    }
}

/// Every hostPort of the pod's containers: published on the sandbox, which
/// holds the network namespace they all share.
fn host_ports(pod: &Pod) -> Vec<PortMapping> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            Some(PortMapping {
                container_port: u16::try_from(p.container_port).ok()?,
                host_port: u16::try_from(p.host_port).ok().filter(|h| *h != 0)?,
                protocol: match p.protocol.as_str() {
                    "" => "tcp".into(),
                    other => other.to_ascii_lowercase(),
                },
                host_ip: p.host_ip.clone(),
            })
        })
        .collect()
}

/// CPU (nano CPUs) and memory (bytes) limits for Docker.
fn limits(container: &Container) -> Result<(Option<i64>, Option<i64>), ConfigError> {
    let Some(resources) = &container.resources else {
        return Ok((None, None));
    };
    let quantity = |key: &str| -> Result<Option<i128>, ConfigError> {
        resources
            .limits
            .get(key)
            .map(|text| {
                moor_quantity::parse(text).ok_or_else(|| {
                    ConfigError(format!("resources.limits.{key}: invalid quantity {text:?}"))
                })
            })
            .transpose()
    };
    // Quantities are in thousandths: millicores to nano CPUs, milli-bytes to bytes.
    let cpu =
        quantity("cpu")?.and_then(|milli| i64::try_from(milli.saturating_mul(1_000_000)).ok());
    let memory = quantity("memory")?.and_then(|milli| i64::try_from(milli / 1000).ok());
    Ok((cpu, memory))
}

/// An app container joined to the sandbox's network and IPC namespaces.
pub fn app(
    agent: &Agent,
    pod: &Pod,
    container: &Container,
    attempt: u32,
    sandbox_id: &str,
    pod_ip: &str,
    sources: &Sources,
) -> Result<ContainerSpec, ConfigError> {
    let mut labels = pod_labels(agent, pod);
    labels.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    labels.insert(labels::CONTAINER_ATTEMPT.into(), attempt.to_string());
    let (nano_cpus, memory_bytes) = limits(container)?;
    Ok(ContainerSpec {
        name: engine_name(pod, &container.name, attempt),
        image: container.image.clone(),
        command: container.command.clone(),
        args: container.args.clone(),
        working_dir: container.working_dir.clone(),
        env: env(agent, pod, container, pod_ip, sources)?,
        labels,
        mounts: mounts(agent, pod, container)?,
        network: NetworkMode::Container(sandbox_id.to_owned()),
        ipc_container: Some(sandbox_id.to_owned()),
        hostname: None,
        ports: vec![],
        nano_cpus,
        memory_bytes,
        // The pod's resolv.conf is bind-mounted instead (see `mounts`).
    })
}

fn env(
    agent: &Agent,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    sources: &Sources,
) -> Result<Vec<String>, ConfigError> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = Vec::with_capacity(container.env.len());
    for var in &container.env {
        let value = match &var.value_from {
            None => var.value.clone(),
            Some(source) => match &source.field_ref {
                Some(field) => match field.field_path.as_str() {
                    "metadata.name" => meta.name.clone(),
                    "metadata.namespace" => meta.namespace.clone(),
                    "metadata.uid" => meta.uid.clone(),
                    "spec.nodeName" => spec.node_name.clone(),
                    "spec.serviceAccountName" => spec.service_account_name.clone(),
                    "status.podIP" => pod_ip.to_owned(),
                    "status.hostIP" => agent.host_ip.clone(),
                    other => {
                        return Err(ConfigError(format!(
                            "env {:?}: fieldRef {other:?} is not supported",
                            var.name
                        )));
                    }
                },
                None => {
                    let (found, optional) =
                        match (&source.config_map_key_ref, &source.secret_key_ref) {
                            (Some(r), _) => (sources.config_map_key(&r.name, &r.key), r.optional),
                            (None, Some(r)) => (sources.secret_key(&r.name, &r.key), r.optional),
                            (None, None) => {
                                return Err(ConfigError(format!(
                                    "env {:?}: valueFrom names no source",
                                    var.name
                                )));
                            }
                        };
                    match found {
                        Ok(value) => value,
                        // An optional reference that is missing leaves the variable out.
                        Err(_) if optional == Some(true) => continue,
                        Err(why) => return Err(ConfigError(why)),
                    }
                }
            },
        };
        out.push(format!("{}={value}", var.name));
    }
    Ok(out)
}

/// The container's volume mounts, then the pod's hosts file and resolv.conf.
fn mounts(agent: &Agent, pod: &Pod, container: &Container) -> Result<Vec<Mount>, ConfigError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    let mut mounts: Vec<Mount> = container
        .volume_mounts
        .iter()
        .map(|m| {
            let volume = spec
                .volumes
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| {
                    ConfigError(format!("volume {:?} is not in the pod's volumes", m.name))
                })?;
            let mut host = volume_path(agent, uid, volume)?;
            if !m.sub_path.is_empty() {
                host = host.join(&m.sub_path);
            }
            Ok(Mount {
                host_path: host.display().to_string(),
                container_path: m.mount_path.clone(),
                read_only: m.read_only,
            })
        })
        .collect::<Result<_, _>>()?;
    mounts.extend(etc::mounts(&agent.pod_dir(uid), container));
    Ok(mounts)
}

/// The host directory behind a volume.
pub fn volume_path(agent: &Agent, uid: &str, volume: &Volume) -> Result<PathBuf, ConfigError> {
    if volume.empty_dir.is_some() {
        return Ok(empty_dir(&agent.pod_dir(uid), &volume.name));
    }
    if let Some(host) = &volume.host_path {
        return Ok(PathBuf::from(&host.path));
    }
    if volume.config_map.is_some() || volume.secret.is_some() {
        return Ok(empty_dir(&agent.pod_dir(uid), &volume.name));
    }
    Err(ConfigError(format!(
        "volume {:?}: no supported volume source (emptyDir, hostPath, configMap, secret)",
        volume.name
    )))
}

/// Where an emptyDir lives.
pub fn empty_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// Creates emptyDirs and hostPaths of type DirectoryOrCreate, and writes the
/// files of configMap and secret volumes (again on every sync, so they follow
/// changes to the objects). A missing non-optional source is a config error.
pub async fn prepare_volumes(
    agent: &Agent,
    pod: &Pod,
    sources: &Sources,
) -> Result<Option<ConfigError>, crate::Error> {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    for volume in &spec.volumes {
        let dir = empty_dir(&agent.pod_dir(uid), &volume.name);
        let projected = match (&volume.config_map, &volume.secret) {
            (Some(cm), _) => Some((
                sources.config_map_files(&cm.name, &cm.items, cm.default_mode),
                cm.optional,
                "configmap",
                cm.name.as_str(),
            )),
            (None, Some(s)) => Some((
                sources.secret_files(&s.secret_name, &s.items, s.default_mode),
                s.optional,
                "secret",
                s.secret_name.as_str(),
            )),
            (None, None) => None,
        };
        match projected {
            Some((Some(files), _, _, _)) => sources::write_files(&dir, &files).await?,
            Some((None, Some(true), _, _)) => sources::write_files(&dir, &[]).await?,
            Some((None, _, kind, name)) => {
                return Ok(Some(ConfigError(format!(
                    "volume {:?}: {kind} {name:?} not found",
                    volume.name
                ))));
            }
            None => {
                let dir = match (&volume.empty_dir, &volume.host_path) {
                    (Some(_), _) => dir,
                    (None, Some(h)) if h.r#type == "DirectoryOrCreate" => PathBuf::from(&h.path),
                    _ => continue,
                };
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| crate::Error::io(&dir, e))?;
            }
        }
    }
    Ok(None)
}
