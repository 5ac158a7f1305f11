//! Images on the real Docker Engine: pulls from a local registry (Debian's
//! docker-registry, started here on a free loopback port) with their Pod
//! events and failures, pulls from one that wants a password with the pod's
//! imagePullSecrets, and the image's stop signal on graceful deletion.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine;
use moor_api::core::v1::{Event, LocalObjectReference, Pod, Secret};
use moor_api::meta::v1::ObjectMeta;
use moor_client::ListParams;
use moor_runtime::ContainerRuntime;
use moor_testkit::assert_eventually;
use support::{Cluster, PATIENCE, container_status, echo, pod, sigterm_trapping_pod, wait_pod};

/// The one user of the registry with auth.
const USER: &str = "moor";
/// Its password: JSON-encoded with bollard's fields, it gives both `+` and
/// `/` in standard base64, which Docker cannot decode (see moor-runtime's
/// `docker::pull`), so a pull with it only works when the header is fixed.
const PASSWORD: &str = "p+a/ss??>>~~";
/// bcrypt (cost 4: fast, and the registry checks it on every request) of
/// [`PASSWORD`], the one hash format distribution's htpasswd takes. Made
/// with Python's `crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH,
/// rounds=16))`; `htpasswd -nbB -C 4 moor PASSWORD` makes an equivalent one.
const PASSWORD_BCRYPT: &str = "$2b$04$V8F4MQpP7TNgHNcxL58z/umGLWm3samaozeABSTF3hygPbMECa0Ra";

/// A registry process and the image tags a test made; killed and removed on
/// drop, also when the test panics.
struct Registry {
    child: Child,
    port: u16,
    tags: Vec<String>,
    /// The docker CLI's config directory, logged in to the registry, when
    /// it wants a password (the user's own login stays untouched).
    login: Option<tempfile::TempDir>,
    _storage: tempfile::TempDir,
}

impl Registry {
    /// Starts `docker-registry serve` on a free loopback port (Docker
    /// talks plain HTTP to registries on 127.0.0.0/8 only); fails with
    /// instructions when the package is missing.
    async fn start() -> Self {
        Self::start_with(false).await
    }

    /// [`Registry::start`], with htpasswd auth: only [`USER`] with
    /// [`PASSWORD`] may push or pull.
    async fn start_with_auth() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(auth: bool) -> Self {
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
        let mut yaml = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        if auth {
            let htpasswd = storage.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n"))
                .expect("htpasswd written");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: moor-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).expect("registry config written");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let mut registry = Self {
            child,
            port,
            tags: Vec::new(),
            login: None,
            _storage: storage,
        };
        assert_eventually!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok(),
            PATIENCE,
            "the registry listens on 127.0.0.1:{port}"
        );
        if auth {
            let login = tempfile::tempdir().expect("temp dir");
            let dir = login.path().display().to_string();
            let host = registry.host();
            docker_with_input(
                &[
                    "--config",
                    &dir,
                    "login",
                    "--username",
                    USER,
                    "--password-stdin",
                    &host,
                ],
                PASSWORD,
            );
            registry.login = Some(login);
        }
        registry
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `source` as `127.0.0.1:PORT/<repository>` and removes the
    /// local tag again, so only a pull brings it back.
    fn push(&mut self, source: &str, repository: &str) -> String {
        let target = format!("{}/{repository}", self.host());
        self.tags.push(target.clone());
        docker(&["tag", source, &target]);
        match &self.login {
            Some(login) => {
                let dir = login.path().display().to_string();
                docker(&["--config", &dir, "push", &target]);
            }
            None => docker(&["push", &target]),
        }
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

/// Runs the docker CLI with `input` on its stdin; panics with its output
/// when it fails.
fn docker_with_input(args: &[&str], input: &str) {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run docker {args:?}: {err}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("docker reads its stdin");
    let output = child.wait_with_output().expect("docker ran");
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

/// A `kubernetes.io/dockerconfigjson` secret named `name` with `auths`.
async fn create_pull_secret(cluster: &Cluster, name: &str, auths: serde_json::Value) {
    let json = serde_json::json!({ "auths": auths }).to_string();
    let secret = Secret {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        r#type: "kubernetes.io/dockerconfigjson".into(),
        data: [(".dockerconfigjson".to_owned(), json.into_bytes())].into(),
        ..Default::default()
    };
    cluster
        .client
        .api::<Secret>()
        .create(&secret)
        .await
        .expect("secret created");
}

/// A pod whose one container runs `image` (pulled always) with these
/// image pull secrets.
fn private_pod(name: &str, image: &str, secrets: &[&str]) -> Pod {
    let mut main = echo("main", &["serve"]);
    main.image = image.into();
    main.image_pull_policy = "Always".into();
    let mut pod = pod(name, "Always", vec![main]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.image_pull_secrets = secrets
            .iter()
            .map(|name| LocalObjectReference {
                name: (*name).into(),
            })
            .collect();
    }
    pod
}

/// Whether a pull error is the registry refusing the credentials (or their
/// absence), whichever words this Docker uses for it.
fn refused(message: &str) -> bool {
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
    ]
    .iter()
    .any(|words| message.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_secrets_authenticate_pulls_from_a_private_registry() {
    let cluster = Cluster::start("pullsecret").await;
    let mut registry = Registry::start_with_auth().await;
    let pid = std::process::id();
    let mut images = std::collections::HashMap::new();
    for case in ["right", "wrong", "anonymous", "missing"] {
        let image = registry.push("moor/echo:0.1", &format!("private:{case}-{pid}"));
        // Nothing cached may stand in for a pull the registry refuses.
        assert_eq!(cluster.docker.image_id(&image).await.unwrap(), None);
        images.insert(case, image);
    }
    let host = registry.host();
    create_pull_secret(
        &cluster,
        "regcred",
        serde_json::json!({ host.clone(): { "username": USER, "password": PASSWORD } }),
    )
    .await;
    // The legacy `auth` field, under a key written as `docker login` does.
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:not-it"));
    create_pull_secret(
        &cluster,
        "badcred",
        serde_json::json!({ format!("http://{host}/v2/"): { "auth": wrong } }),
    )
    .await;

    // The wrong credentials come first: tried in order, the right ones win.
    let pods = [
        ("right", &["badcred", "regcred"][..]),
        ("wrong", &["badcred"][..]),
        ("anonymous", &[][..]),
        ("missing", &["absent"][..]),
    ];
    for (name, secrets) in pods {
        cluster
            .run_pod(private_pod(name, &images[name], secrets))
            .await;
    }

    wait_pod(&cluster, "right", "Running", |p| {
        container_status(p, "main").is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
    })
    .await;
    let seen = events(&cluster, "right").await;
    assert!(
        seen.iter().any(|(r, _)| r == "Pulled"),
        "a Pulled event: {seen:?}"
    );

    for name in ["wrong", "anonymous", "missing"] {
        let failed = wait_pod(&cluster, name, "ErrImagePull", |p| {
            waiting(p).is_some_and(|w| w.0 == "ErrImagePull")
        })
        .await;
        let (_, message) = waiting(&failed).unwrap();
        assert!(
            refused(&message),
            "pod {name}: the registry's refusal is shown: {message}"
        );
        assert!(
            !message.contains(PASSWORD) && !message.contains("not-it"),
            "{message}"
        );
        wait_pod(&cluster, name, "ImagePullBackOff", |p| {
            waiting(p).is_some_and(|w| w.0 == "ImagePullBackOff")
        })
        .await;
    }
    let seen = events(&cluster, "missing").await;
    assert!(
        seen.iter()
            .any(|(r, m)| r == "FailedToRetrieveImagePullSecret"
                && m.contains(r#"image pull secret "absent": not found"#)),
        "an event names the missing secret: {seen:?}"
    );
}
