//! Images on the real Docker Engine: pulls from a local registry (Debian's
//! docker-registry, started here on a free loopback port) with their Pod
//! events and failures, and the image's stop signal on graceful deletion.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use moor_api::core::v1::{Event, Pod};
use moor_client::ListParams;
use moor_runtime::ContainerRuntime;
use moor_testkit::assert_eventually;
use support::{Cluster, PATIENCE, container_status, echo, pod, sigterm_trapping_pod, wait_pod};

/// A registry process and the image tags a test made; killed and removed on
/// drop, also when the test panics.
struct Registry {
    child: Child,
    port: u16,
    tags: Vec<String>,
    _storage: tempfile::TempDir,
}

impl Registry {
    /// Starts `docker-registry serve` on a free loopback port; fails with
    /// instructions when the package is missing.
    async fn start() -> Self {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "{} is missing: these tests need Debian's docker-registry package; run scripts/setup.sh",
            binary.display()
        );
        let storage = tempfile::tempdir().expect("temp dir");
        let port = moor_testkit::free_port();
        let config = storage.path().join("config.yml");
        let data = storage.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                data.display()
            ),
        )
        .expect("registry config written");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let registry = Self {
            child,
            port,
            tags: Vec::new(),
            _storage: storage,
        };
        assert_eventually!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok(),
            PATIENCE,
            "the registry listens on 127.0.0.1:{port}"
        );
        registry
    }

    /// Pushes `source` as `127.0.0.1:PORT/<repository>` and removes the
    /// local tag again, so only a pull brings it back.
    fn push(&mut self, source: &str, repository: &str) -> String {
        let target = format!("127.0.0.1:{}/{repository}", self.port);
        self.tags.push(target.clone());
        docker(&["tag", source, &target]);
        docker(&["push", &target]);
        docker(&["rmi", &target]);
        target
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for tag in &self.tags {
            let _ = Command::new("docker")
                .args(["rmi", "--force", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An image tag removed on drop.
struct BuiltImage(String);

impl Drop for BuiltImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs the docker CLI; panics with its output when it fails.
fn docker(args: &[&str]) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run docker {args:?}: {err}"));
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// (reason, message) of the events about pod `name`.
async fn events(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    cluster
        .client
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("events listed")
        .0
        .into_iter()
        .filter(|e| e.involved_object.as_ref().is_some_and(|o| o.name == name))
        .map(|e| (e.reason, e.message))
        .collect()
}

fn waiting(p: &Pod) -> Option<(String, String)> {
    container_status(p, "main")
        .and_then(|s| s.state?.waiting)
        .map(|w| (w.reason, w.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_from_a_registry_with_events_and_errors() {
    let cluster = Cluster::start("registry").await;
    let mut registry = Registry::start().await;
    let pid = std::process::id();
    let image = registry.push("moor/echo:0.1", &format!("echo:pulled-{pid}"));
    assert_eq!(cluster.docker.image_id(&image).await.unwrap(), None);

    let mut pulled = echo("main", &["serve"]);
    pulled.image = image.clone();
    pulled.image_pull_policy = "Always".into();
    cluster.run_pod(pod("pulled", "Always", vec![pulled])).await;
    let mut missing = echo("main", &["serve"]);
    missing.image = format!("127.0.0.1:{}/echo:absent-{pid}", registry.port);
    missing.image_pull_policy = "Always".into();
    cluster
        .run_pod(pod("missing", "Always", vec![missing]))
        .await;

    wait_pod(&cluster, "pulled", "Running", |p| {
        container_status(p, "main").is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
    })
    .await;
    let seen = events(&cluster, "pulled").await;
    let quoted = format!("{image:?}");
    assert!(
        seen.iter()
            .any(|(r, m)| r == "Pulling" && *m == format!("Pulling image {quoted}")),
        "a Pulling event: {seen:?}"
    );
    assert!(
        seen.iter().any(|(r, m)| r == "Pulled"
            && m.starts_with(&format!("Successfully pulled image {quoted} in "))),
        "a Pulled event: {seen:?}"
    );

    let failed = wait_pod(&cluster, "missing", "ErrImagePull", |p| {
        waiting(p).is_some_and(|w| w.0 == "ErrImagePull")
    })
    .await;
    let (_, message) = waiting(&failed).unwrap();
    assert!(
        message.contains("manifest unknown") || message.contains("not found"),
        "the registry's message is shown: {message}"
    );
    wait_pod(&cluster, "missing", "ImagePullBackOff", |p| {
        waiting(p).is_some_and(|w| w.0 == "ImagePullBackOff")
    })
    .await;
    let seen = events(&cluster, "missing").await;
    assert!(
        seen.iter()
            .any(|(r, m)| r == "Failed" && m.starts_with("Failed to pull image")),
        "a Failed event: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_sends_the_images_stop_signal() {
    let cluster = Cluster::start("stopsig").await;
    let image = BuiltImage(format!("moor/echo:stopsig-{}", std::process::id()));
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM moor/echo:0.1\nSTOPSIGNAL SIGINT\n",
    )
    .unwrap();
    docker(&[
        "build",
        "--quiet",
        "-t",
        &image.0,
        &context.path().display().to_string(),
    ]);

    // The server ignores SIGTERM (noting it in a file) and exits on SIGINT.
    let host_dir = tempfile::tempdir().unwrap();
    cluster
        .run_pod(sigterm_trapping_pod("sigint", host_dir.path(), |main| {
            main.image = image.0.clone();
            main.image_pull_policy = "Never".into();
        }))
        .await;
    wait_pod(&cluster, "sigint", "Running", |p| {
        container_status(p, "main").is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
    })
    .await;

    // A grace period far beyond the wait below: the pod can only be gone in
    // time if the container stopped at the first signal, SIGINT.
    cluster.delete_pod("sigint", 600).await;
    assert_eventually!(
        cluster.pod("sigint").await.is_none(),
        PATIENCE,
        "the pod stops at the image's STOPSIGNAL (SIGINT), not at the end of the grace period"
    );
    assert!(
        !host_dir.path().join("term").exists(),
        "the container got SIGTERM instead of the image's stop signal"
    );
}
