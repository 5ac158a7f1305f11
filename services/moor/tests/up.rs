//! `moor up` as a new user runs it: the cluster comes up, moorctl's context
//! points at it, a pod runs; stopped and started again, the pod's
//! containers are the same ones and its service answers again; a busy port
//! is a clear error; the cluster's registry asks for a login when given
//! users.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use moor_api::apps::v1::{Deployment, DeploymentSpec};
use moor_api::core::v1::{
    Container, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use moor_api::meta::v1::IntOrString;
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{LabelSelector, ObjectMeta};
use moor_client::{Client, DeleteParams, ListParams};
use tokio::process::{Child, Command};

fn up(home: &Path, port: u16, node: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "up",
            "--no-registry",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            node,
            "--log",
            "warn",
        ])
        .env("HOME", home)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("moor up starts")
}

fn containers_of(pod: &str) -> BTreeSet<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=moor.pod.name={pod}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels: std::collections::HashMap<String, String> =
        [("app".to_string(), name.to_string())].into();
    Deployment {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        image: "moor/echo:0.1".into(),
                        image_pull_policy: "Never".into(),
                        ..Default::default()
                    }],
                    termination_grace_period_seconds: Some(1),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn stop(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops")
        .expect("exit");
    assert!(
        status.success(),
        "moor up should exit cleanly on SIGTERM: {status}"
    );
}

/// Removes the node's containers and its pod network when the test ends,
/// also on a panic.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        moor_integration_tests::remove_docker_leftovers(&self.0, "moor-up-unused-network");
        moor_integration_tests::remove_pod_network_leftovers();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_pod_and_a_restart_keeps_its_containers() -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let port = moor_testkit::free_port();
    let node = format!("up-test-{}", std::process::id());
    let _leftovers = Leftovers(node.clone());
    let pod_name = format!("up-hello-{}", std::process::id());
    let first = up(home.path(), port, &node);

    // moorctl's context was written and points at the cluster.
    let config_path = home.path().join(".moor/config");
    moor_testkit::assert_eventually!(
        config_path.exists(),
        Duration::from_secs(60),
        "no context written"
    );
    let config = std::fs::read_to_string(&config_path)?;
    assert!(
        config.contains(&format!("https://127.0.0.1:{port}")),
        "{config}"
    );
    // It holds the admin's private key: its owner alone may read it.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config_path)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", config_path.display());

    let client = admin_client(home.path());
    let pods = client.api::<Pod>();
    let pod = Pod {
        metadata: Some(ObjectMeta {
            name: pod_name.clone(),
            labels: [("app".to_string(), pod_name.clone())].into(),
            ..Default::default()
        }),
        // No nodeName: the scheduler places it on the only node.
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: "moor/echo:0.1".into(),
                image_pull_policy: "Never".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pods.create(&pod).await?;
    let running = || async {
        pods.get("default", &pod_name)
            .await
            .ok()
            .and_then(|p| p.status)
            .is_some_and(|s| s.phase == "Running")
    };
    moor_testkit::assert_eventually!(running().await, Duration::from_secs(60), "pod never ran");
    let placed = pods
        .get("default", &pod_name)
        .await?
        .spec
        .unwrap_or_default()
        .node_name;
    assert_eq!(
        placed, node,
        "the scheduler bound the pod to this machine's node"
    );
    let before = containers_of(&pod_name);
    assert_eq!(before.len(), 2, "sandbox and app container: {before:?}");

    // A service in front of it answers from the host, through moor up's proxy.
    let service = Service {
        metadata: Some(ObjectMeta {
            name: pod_name.clone(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            selector: [("app".to_string(), pod_name.clone())].into(),
            ports: vec![ServicePort {
                port: 80,
                target_port: Some(IntOrString {
                    value: Some(Value::IntVal(8080)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = client.api::<Service>().create(&service).await?;
    let cluster_ip: std::net::IpAddr = service.spec.unwrap_or_default().cluster_ip.parse()?;
    let via_service = std::net::SocketAddr::new(cluster_ip, 80);
    moor_testkit::assert_eventually!(
        moor_testkit::http_get(via_service).await.is_ok(),
        Duration::from_secs(60),
        "the service at {via_service} never answered"
    );

    // A second `moor up` on the same port fails and says why.
    let busy = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "up",
            "--no-registry",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            "other",
        ])
        .env("HOME", home.path())
        .output()
        .await?;
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("Is another `moor up` or apiserver running?"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    stop(first).await;
    assert_eq!(
        containers_of(&pod_name),
        before,
        "stopping moor up leaves the pod's containers running"
    );
    let second = up(home.path(), port, &node);
    moor_testkit::assert_eventually!(
        running().await,
        Duration::from_secs(60),
        "pod not running after restart"
    );
    assert_eq!(
        containers_of(&pod_name),
        before,
        "the restarted cluster adopted the same containers"
    );
    moor_testkit::assert_eventually!(
        moor_testkit::http_get(via_service).await.is_ok(),
        Duration::from_secs(60),
        "the service at {via_service} does not answer after the restart"
    );

    pods.delete(
        "default",
        &pod_name,
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..Default::default()
        },
    )
    .await?;
    moor_testkit::assert_eventually!(
        containers_of(&pod_name).is_empty(),
        Duration::from_secs(60),
        "containers not removed"
    );

    // A deployment: the controller-manager makes a replica set and its pods,
    // the scheduler places them, the node agent runs them.
    let deployments = client.api::<Deployment>();
    let app = format!("up-web-{}", std::process::id());
    deployments.create(&deployment(&app, 2)).await?;
    let selector = ListParams::default()
        .namespace("default")
        .labels(format!("app={app}"));
    let running_pods = || async {
        let (items, _) = pods.list(&selector).await.unwrap_or_default();
        items
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
            .count()
    };
    moor_testkit::assert_eventually!(
        running_pods().await == 2,
        Duration::from_secs(120),
        "the deployment's 2 pods never ran"
    );
    deployments
        .delete("default", &app, &DeleteParams::default())
        .await?;
    moor_testkit::assert_eventually!(
        pods.list(&selector).await?.0.is_empty(),
        Duration::from_secs(120),
        "the deployment's pods were not garbage-collected"
    );
    stop(second).await;
    Ok(())
}

/// A client of the cluster as its administrator, with the server and
/// credentials `moor up` wrote into moorctl's context under `home`.
fn admin_client(home: &std::path::Path) -> Client {
    let target = moorctl::config::target(None, None, &home.join(".moor/config"))
        .expect("moorctl's config reads");
    Client::connect(&target.server, &target.credentials).expect("a client")
}

/// A GET of `path` on 127.0.0.1:`port` (with basic auth if given): the
/// response's head, or the error.
async fn registry_get(port: u16, path: &str, login: Option<&str>) -> std::io::Result<String> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let auth = login.map_or(String::new(), |login| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(login);
        format!("Authorization: Basic {encoded}\r\n")
    });
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .map_err(|_| std::io::Error::other("no answer within 10 s"))??;
    Ok(response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn the_registry_asks_for_a_login_given_an_htpasswd_file() -> anyhow::Result<()> {
    // bcrypt (cost 4) of "p+a/ss??>>~~", as services/node/tests/docker_images.rs makes it.
    const HTPASSWD: &str = "moor:$2b$04$V8F4MQpP7TNgHNcxL58z/umGLWm3samaozeABSTF3hygPbMECa0Ra\n";
    let home = tempfile::tempdir()?;
    let users = home.path().join("htpasswd");
    let missing = home.path().join("absent");
    let port = moor_testkit::free_port();
    let registry_port = moor_testkit::free_port();
    let command = |htpasswd: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_moor"));
        command
            .args(["up", "--no-agent", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--registry-port", &registry_port.to_string()])
            .arg("--registry-htpasswd")
            .arg(htpasswd)
            .args(["--log", "warn"])
            .env("HOME", home.path())
            .kill_on_drop(true);
        command
    };

    // A file that is not there: refused at once, naming the flag.
    let out = command(&missing).output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("--registry-htpasswd")
            && stderr.contains("absent"),
        "{stderr}"
    );

    std::fs::write(&users, HTPASSWD)?;
    let mut server = command(&users).stdout(Stdio::null()).spawn()?;
    moor_testkit::assert_eventually!(
        registry_get(registry_port, "/v2/", None).await.is_ok(),
        Duration::from_secs(60),
        "the registry answers on 127.0.0.1:{registry_port}"
    );
    let anonymous = registry_get(registry_port, "/v2/", None).await?;
    assert!(
        anonymous.starts_with("HTTP/1.0 401") && anonymous.contains("Basic realm=\"moor\""),
        "{anonymous}"
    );
    let wrong = registry_get(registry_port, "/v2/", Some("moor:wrong")).await?;
    assert!(wrong.starts_with("HTTP/1.0 401"), "{wrong}");
    let right = registry_get(registry_port, "/v2/", Some("moor:p+a/ss??>>~~")).await?;
    assert!(right.starts_with("HTTP/1.0 200"), "{right}");
    server.kill().await?;
    Ok(())
}
