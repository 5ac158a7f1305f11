//! The config maps and secrets a pod refers to (env `valueFrom`, volumes,
//! imagePullSecrets), read from the API on each sync so files, new
//! containers and pulls follow changes.

use std::collections::HashMap;
use std::path::Path;

use moor_api::core::v1::{ConfigMap, KeyToPath, Pod, Secret};

use crate::agent::Agent;
use crate::error::Error;

/// The referenced objects that exist, by name; a missing one is absent.
#[derive(Debug, Default)]
pub struct Sources {
    config_maps: HashMap<String, ConfigMap>,
    secrets: HashMap<String, Secret>,
    /// Why image pull secrets that only pulls use could not be read: a
    /// pull goes ahead without them, as kubelet's does, so their errors do
    /// not fail the sync as those of env and volume sources do.
    unreadable: HashMap<String, String>,
}

impl Sources {
    /// Reads every config map and secret `pod` refers to.
    pub async fn fetch(agent: &Agent, pod: &Pod) -> Result<Self, Error> {
        let namespace = pod.metadata.as_ref().map_or("", |m| m.namespace.as_str());
        let spec = pod.spec.clone().unwrap_or_default();
        let mut config_maps = std::collections::BTreeSet::new();
        let mut secrets = std::collections::BTreeSet::new();
        for container in spec.init_containers.iter().chain(&spec.containers) {
            for var in &container.env {
                if let Some(from) = &var.value_from {
                    config_maps.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                    secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
                }
            }
        }
        for volume in &spec.volumes {
            config_maps.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(volume.secret.as_ref().map(|s| s.secret_name.clone()));
        }
        let pull_only: std::collections::BTreeSet<String> = spec
            .image_pull_secrets
            .iter()
            .map(|r| r.name.clone())
            .filter(|name| !name.is_empty() && !secrets.contains(name))
            .collect();
        let mut sources = Sources::default();
        let api = agent.client.api::<ConfigMap>();
        for name in config_maps {
            match api.get(namespace, &name).await {
                Ok(cm) => {
                    sources.config_maps.insert(name, cm);
                }
                Err(moor_client::Error::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let api = agent.client.api::<Secret>();
        for name in secrets {
            match api.get(namespace, &name).await {
                Ok(secret) => {
                    sources.secrets.insert(name, secret);
                }
                Err(moor_client::Error::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        for name in pull_only {
            match api.get(namespace, &name).await {
                Ok(secret) => {
                    sources.secrets.insert(name, secret);
                }
                Err(moor_client::Error::NotFound(_)) => {}
                Err(err) => {
                    sources.unreadable.insert(name, err.to_string());
                }
            }
        }
        Ok(sources)
    }

    /// Secret `name` as an image pull secret: `Err` says why there is none.
    pub fn pull_secret(&self, name: &str) -> Result<&Secret, String> {
        if let Some(err) = self.unreadable.get(name) {
            return Err(format!("cannot read it: {err}"));
        }
        self.secrets.get(name).ok_or_else(|| "not found".to_owned())
    }

    /// The value of `key` in config map `name`: `Err` says what is missing.
    pub fn config_map_key(&self, name: &str, key: &str) -> Result<String, String> {
        let cm = self
            .config_maps
            .get(name)
            .ok_or_else(|| format!("configmap {name:?} not found"))?;
        cm.data
            .get(key)
            .cloned()
            .or_else(|| {
                cm.binary_data
                    .get(key)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .ok_or_else(|| format!("couldn't find key {key} in ConfigMap {name}"))
    }

    /// The value of `key` in secret `name`: `Err` says what is missing.
    pub fn secret_key(&self, name: &str, key: &str) -> Result<String, String> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("secret {name:?} not found"))?;
        secret
            .data
            .get(key)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| format!("couldn't find key {key} in Secret {name}"))
    }

    /// The files of a config map volume: `(relative path, bytes, mode)`.
    pub fn config_map_files(
        &self,
        name: &str,
        items: &[KeyToPath],
        mode: Option<i32>,
    ) -> Option<Vec<(String, Vec<u8>, u32)>> {
        let cm = self.config_maps.get(name)?;
        let mut all: HashMap<String, Vec<u8>> = cm
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        all.extend(cm.binary_data.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(files(all, items, mode))
    }

    /// The files of a secret volume: `(relative path, bytes, mode)`.
    pub fn secret_files(
        &self,
        name: &str,
        items: &[KeyToPath],
        mode: Option<i32>,
    ) -> Option<Vec<(String, Vec<u8>, u32)>> {
        let secret = self.secrets.get(name)?;
        Some(files(secret.data.clone(), items, mode))
    }
}

/// Every key at its own name, or only `items` at their paths.
fn files(
    data: HashMap<String, Vec<u8>>,
    items: &[KeyToPath],
    mode: Option<i32>,
) -> Vec<(String, Vec<u8>, u32)> {
    let default_mode = mode.map_or(0o644, |m| m as u32 & 0o777);
    if items.is_empty() {
        return data
            .into_iter()
            .map(|(k, v)| (k, v, default_mode))
            .collect();
    }
    items
        .iter()
        .filter_map(|item| {
            let bytes = data.get(&item.key)?.clone();
            Some((
                item.path.clone(),
                bytes,
                item.mode.map_or(default_mode, |m| m as u32 & 0o777),
            ))
        })
        .collect()
}

/// Writes `files` under `dir`, each through a temporary file and a rename so
/// a reader never sees half a file; keys no longer present are removed.
pub async fn write_files(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    for (path, bytes, mode) in files {
        // Paths come from the pod spec: keep them inside the volume.
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            continue;
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let temp = dir.join(format!(".{}.tmp", path.replace('/', "_")));
        tokio::fs::write(&temp, bytes)
            .await
            .map_err(|e| Error::io(&temp, e))?;
        tokio::fs::set_permissions(&temp, std::fs::Permissions::from_mode(*mode))
            .await
            .map_err(|e| Error::io(&temp, e))?;
        tokio::fs::rename(&temp, &target)
            .await
            .map_err(|e| Error::io(&target, e))?;
    }
    let keep: std::collections::HashSet<&str> = files
        .iter()
        .map(|(p, _, _)| p.split('/').next().unwrap_or(p))
        .collect();
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    while let Some(entry) = entries.next_entry().await.map_err(|e| Error::io(dir, e))? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(name.as_str()) && !name.starts_with('.') {
            let path = entry.path();
            let removed = if path.is_dir() {
                tokio::fs::remove_dir_all(&path).await
            } else {
                tokio::fs::remove_file(&path).await
            };
            removed.map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}
