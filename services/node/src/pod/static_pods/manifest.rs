//! Reading the manifest directory: every `*.yaml`, `*.yml` and `*.json`
//! file (dotfiles skipped) holds one or more Pods, each made ready to run
//! on this node as a static pod.

use std::path::{Path, PathBuf};

use moor_api::Resource;
use moor_api::core::v1::Pod;
use moor_api::meta::v1::ObjectMeta;

use super::{CONFIG_HASH, CONFIG_SOURCE};
use crate::Error;

/// One static pod and where it came from.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file.
    pub path: PathBuf,
    /// The pod to run: named `<name>-<node>`, bound to the node, its uid
    /// the hash of its manifest (so a restarted agent adopts its containers
    /// and an edited manifest is a new pod).
    pub pod: Pod,
}

/// What one read of the directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The pods, in file order.
    pub pods: Vec<Manifest>,
    /// Files that could not be used: (file, why).
    pub bad: Vec<(PathBuf, String)>,
}

/// Reads every manifest in `dir` for node `node`. An unreadable (or
/// missing) directory is an error: the pods keep running meanwhile.
pub async fn scan(dir: &Path, node: &str) -> Result<Scan, Error> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(|e| Error::io(dir, e))? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
        if wanted && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut scan = Scan::default();
    for path in files {
        let read = tokio::fs::read(&path).await;
        let pods = match read {
            Ok(bytes) => pods_of(&bytes, node),
            Err(err) => Err(err.to_string()),
        };
        match pods {
            Ok(pods) => scan.pods.extend(pods.into_iter().map(|pod| Manifest {
                path: path.clone(),
                pod,
            })),
            Err(why) => scan.bad.push((path, why)),
        }
    }
    Ok(scan)
}

/// The static pods of one file, or why it cannot be used (the codec's
/// message names the document and the field path).
pub fn pods_of(bytes: &[u8], node: &str) -> Result<Vec<Pod>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let documents = moor_codec::decode_documents(text).map_err(|e| e.to_string())?;
    let mut pods = Vec::with_capacity(documents.len());
    for document in &documents {
        let pod: Pod = moor_codec::decode_as(document).map_err(|e| e.to_string())?;
        let at = format!("document {}", document.index);
        let hash = hash(node, document.index, bytes);
        pods.push(static_pod(pod, node, &hash).map_err(|e| format!("{at}: {e}"))?);
    }
    Ok(pods)
}

/// The manifest's pod made a static pod of `node`.
fn static_pod(manifest: Pod, node: &str, hash: &str) -> Result<Pod, String> {
    let meta = manifest.metadata.unwrap_or_default();
    if meta.name.is_empty() {
        return Err("metadata.name: required".into());
    }
    let mut spec = manifest.spec.unwrap_or_default();
    if spec.containers.is_empty() {
        return Err("spec.containers: at least one container is required".into());
    }
    spec.node_name = node.to_owned();
    let mut annotations = meta.annotations;
    annotations.insert(CONFIG_HASH.into(), hash.to_owned());
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    let namespace = if meta.namespace.is_empty() {
        "default".to_owned()
    } else {
        meta.namespace
    };
    let mut pod = Pod {
        metadata: Some(ObjectMeta {
            name: format!("{}-{node}", meta.name),
            namespace,
            uid: hash.to_owned(),
            labels: meta.labels,
            annotations,
            ..Default::default()
        }),
        spec: Some(spec),
        status: None,
        ..Default::default()
    };
    pod.set_type_meta();
    Ok(pod)
}

/// FNV-1a (64 bits) of the node, the document's number and the file: stable
/// across agent builds and restarts, unlike std's hasher.
fn hash(node: &str, document: usize, bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let index = document.to_string();
    for part in [node.as_bytes(), b"\0", index.as_bytes(), b"\0", bytes] {
        for byte in part {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec:\n  containers: [{name: main, image: moor/echo:0.1}]\n";

    #[test]
    fn a_manifest_becomes_a_static_pod_of_the_node() {
        let pods = pods_of(WEB.as_bytes(), "n1").unwrap();
        let [pod] = pods.as_slice() else {
            panic!("one pod: {pods:?}")
        };
        let meta = pod.metadata.as_ref().unwrap();
        assert_eq!(meta.name, "web-n1");
        assert_eq!(meta.namespace, "default");
        assert_eq!(meta.labels["app"], "web");
        assert_eq!(meta.annotations[CONFIG_SOURCE], "file");
        assert_eq!(meta.annotations[CONFIG_HASH], meta.uid);
        assert_eq!(pod.spec.as_ref().unwrap().node_name, "n1");
        // The same file on another node, or edited, is another pod.
        let other = pods_of(WEB.as_bytes(), "n2").unwrap();
        assert_ne!(other[0].metadata.as_ref().unwrap().uid, meta.uid);
        let edited = pods_of(WEB.replace("0.1", "0.2").as_bytes(), "n1").unwrap();
        assert_ne!(edited[0].metadata.as_ref().unwrap().uid, meta.uid);
        assert_eq!(pods_of(WEB.as_bytes(), "n1").unwrap()[0], *pod);
    }

    #[test]
    fn errors_name_the_field() {
        let typo = WEB.replace("image:", "imagee:");
        let err = pods_of(typo.as_bytes(), "n1").unwrap_err();
        assert!(err.contains("spec.containers[0].imagee"), "{err}");
        let nameless = "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: b}]}\n";
        let err = pods_of(nameless.as_bytes(), "n1").unwrap_err();
        assert_eq!(err, "document 1: metadata.name: required");
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
        assert!(
            pods_of(service.as_bytes(), "n1")
                .unwrap_err()
                .contains("Pod")
        );
    }
}
