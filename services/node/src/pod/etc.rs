//! A pod's /etc/hosts and /etc/resolv.conf. The engine writes neither (the
//! sandbox has no engine networking), so the agent writes them under the
//! pod's directory, as Kubernetes' kubelet does for /etc/hosts, and every app
//! and init container bind-mounts them ([`super::spec::app`]). They are
//! written after the sandbox runs (the hosts file names its address) and
//! before any container is created; the pod directory's removal takes them.

use std::path::{Path, PathBuf};

use moor_api::core::v1::{Container, Pod};
use moor_runtime::Mount;

use super::{dns, spec};
use crate::Error;
use crate::agent::Agent;

/// Where containers see the hosts file.
pub const HOSTS: &str = "/etc/hosts";

/// Where containers see the resolver settings.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Readable by every user of the container, as the engine's files were.
const MODE: u32 = 0o644;

/// The host directory of a pod's files, in its pod directory.
pub fn dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc")
}

/// The host file behind `container_path` (one of [`HOSTS`], [`RESOLV_CONF`]).
pub fn host_path(pod_dir: &Path, container_path: &str) -> PathBuf {
    let name = container_path.rsplit('/').next().unwrap_or(container_path);
    dir(pod_dir).join(name)
}

/// The bind mounts of the pod's files into `container`, but for a path where
/// it mounts a volume itself (as in kubelet, the user's wins). Read-write like
/// kubelet's hosts mount.
pub fn mounts(pod_dir: &Path, container: &Container) -> Vec<Mount> {
    let taken = |path: &str| {
        container
            .volume_mounts
            .iter()
            .any(|m| m.mount_path.trim_end_matches('/') == path)
    };
    [HOSTS, RESOLV_CONF]
        .into_iter()
        .filter(|path| !taken(path))
        .map(|path| Mount {
            host_path: host_path(pod_dir, path).display().to_string(),
            container_path: path.to_owned(),
            read_only: false,
        })
        .collect()
}

/// Writes `pod`'s hosts file and resolv.conf where they differ from the disk;
/// `pod_ip` is the running sandbox's address ("" when unknown: the hosts
/// file then lacks the pod's own line).
pub async fn write(agent: &Agent, pod: &Pod, pod_ip: &str) -> Result<(), Error> {
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    let pod_dir = agent.pod_dir(uid);
    let dir = dir(&pod_dir);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Error::io(&dir, e))?;
    let host = agent
        .host_resolv_conf
        .get_or_init(dns::read_host_resolv_conf)
        .await;
    let files = [
        (HOSTS, hosts(pod_ip, &spec::hostname(pod))),
        (RESOLV_CONF, dns::resolv_conf(&agent.config, pod, host)),
    ];
    for (container_path, content) in files {
        let path = host_path(&pod_dir, container_path);
        if write_if_changed(&path, &content).await? {
            tracing::debug!(file = container_path, "pod file written");
        }
    }
    Ok(())
}

/// The hosts file of a pod, as kubelet writes it.
pub fn hosts(pod_ip: &str, hostname: &str) -> String {
    let mut text = String::from(
        "# moor-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if !pod_ip.is_empty() {
        text.push_str(&format!("{pod_ip}\t{hostname}\n"));
    }
    text
}

/// Replaces `path` by `content` unless it already holds it (a sync that
/// changes nothing costs one read); true when it wrote. The new file is
/// renamed into place, so a container never reads half of it; one already
/// running keeps the file it mounted (a bind mount holds the old inode),
/// which is what it had from the engine before.
async fn write_if_changed(path: &Path, content: &str) -> Result<bool, Error> {
    use std::os::unix::fs::PermissionsExt;
    match tokio::fs::read(path).await {
        Ok(old) if old == content.as_bytes() => return Ok(false),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io(path, err)),
    }
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    // The pod's lock keeps its syncs one at a time: one temp name is enough.
    let temp = path.with_file_name(format!(".{name}.tmp"));
    tokio::fs::write(&temp, content)
        .await
        .map_err(|e| Error::io(&temp, e))?;
    // Not left to the agent's umask: containers running as another user read them.
    tokio::fs::set_permissions(&temp, std::fs::Permissions::from_mode(MODE))
        .await
        .map_err(|e| Error::io(&temp, e))?;
    tokio::fs::rename(&temp, path)
        .await
        .map_err(|e| Error::io(path, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::VolumeMount;

    #[test]
    fn hosts_name_the_pod_after_the_loopback_entries() {
        assert_eq!(
            hosts("10.88.0.7", "web-0"),
            "# moor-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.88.0.7\tweb-0\n"
        );
    }

    #[test]
    fn hosts_without_an_address_lack_the_pod_line() {
        let text = hosts("", "web-0");
        assert!(text.ends_with("fe00::2\tip6-allrouters\n"), "{text}");
        assert!(!text.contains("web-0"));
    }

    #[test]
    fn containers_mount_the_files_of_the_pod_directory() {
        let pod_dir = Path::new("/data/pods/u1");
        let container = Container::default();
        assert_eq!(
            mounts(pod_dir, &container),
            [
                Mount {
                    host_path: "/data/pods/u1/etc/hosts".into(),
                    container_path: "/etc/hosts".into(),
                    read_only: false,
                },
                Mount {
                    host_path: "/data/pods/u1/etc/resolv.conf".into(),
                    container_path: "/etc/resolv.conf".into(),
                    read_only: false,
                },
            ]
        );
    }

    #[test]
    fn a_volume_at_the_same_path_wins() {
        let container = Container {
            volume_mounts: vec![VolumeMount {
                name: "dns".into(),
                mount_path: "/etc/resolv.conf".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let paths: Vec<String> = mounts(Path::new("/p"), &container)
            .into_iter()
            .map(|m| m.container_path)
            .collect();
        assert_eq!(paths, ["/etc/hosts"]);
    }

    #[tokio::test]
    async fn writes_only_what_changed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hosts");
        assert!(write_if_changed(&path, "a\n").await.expect("first write"));
        assert!(!write_if_changed(&path, "a\n").await.expect("same content"));
        assert!(write_if_changed(&path, "b\n").await.expect("new content"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "b\n");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, MODE);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["hosts"], "no temp file left");
    }
}
