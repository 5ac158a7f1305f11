//! The README's tour, as a new user runs it: `moor up`, then moorctl with
//! examples/web.yaml (a deployment of 2 and a NodePort service): list it,
//! scale it, reach it from the host by cluster IP and node port, roll a new
//! version (a restart, then a new image and back), read its logs, exec into a pod (and reach the service by DNS
//! name from there), delete it. Every step's outcome is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use moor_api::core::v1::{Endpoints, Pod};
use moor_client::{Client, ListParams};
use moor_testkit::{assert_eventually, http_get};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(120);

/// The moorctl binary beside this package's `moor` (both are built by a
/// workspace test run).
fn moorctl_path() -> PathBuf {
    let moor = PathBuf::from(env!("CARGO_BIN_EXE_moor"));
    let path = moor.with_file_name("moorctl");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite (./scripts/test.sh) or `cargo build -p moorctl` first",
        path.display()
    );
    path
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs moorctl as the user would (the context `moor up` wrote in $HOME);
/// returns (exit code, stdout, stderr).
async fn moorctl(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(moorctl_path())
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_SERVER")
        .env_remove("MOOR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("moorctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// moorctl that must succeed; its stdout.
async fn ok(home: &Path, args: &[&str]) -> String {
    let (code, out, err) = moorctl(home, args).await;
    assert_eq!(code, 0, "moorctl {args:?} failed: {err}{out}");
    out
}

fn up(home: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
        ])
        .args(["--node-name", &format!("tour-{}", std::process::id())])
        // The registry's own test is results_ui.rs; a free port here keeps
        // this one off whatever holds 5000.
        .args(["--registry-port", &moor_testkit::free_port().to_string()])
        .env("HOME", home)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moor up starts")
}

async fn running_web_pods(client: &Client) -> Vec<Pod> {
    let (pods, _) = client
        .api::<Pod>()
        .list(&ListParams::default().namespace("default").labels("app=web"))
        .await
        .unwrap_or_default();
    pods.into_iter()
        .filter(|p| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.deletion_timestamp.is_none())
                && p.status.as_ref().is_some_and(|s| s.phase == "Running")
        })
        .collect()
}

/// The images of the running web pods, sorted.
async fn images(client: &Client) -> Vec<String> {
    let mut images: Vec<String> = running_web_pods(client)
        .await
        .iter()
        .filter_map(|p| p.spec.as_ref()?.containers.first().map(|c| c.image.clone()))
        .collect();
    images.sort();
    images
}

async fn ready_endpoints(client: &Client) -> usize {
    client
        .api::<Endpoints>()
        .get("default", "web")
        .await
        .map(|e| e.subsets.iter().map(|s| s.addresses.len()).sum())
        .unwrap_or(0)
}

/// Removes the tour's containers when the test ends, also on a panic.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        moor_integration_tests::remove_docker_leftovers(&self.0, "moor-tour-unused-network");
        moor_integration_tests::remove_pod_network_leftovers();
        let _ = std::process::Command::new("docker")
            .args(["rmi", &format!("moor/echo:tour-{}", std::process::id())])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_works_end_to_end() {
    let _leftovers = Leftovers(format!("tour-{}", std::process::id()));
    let home = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    let mut cluster = up(home.path(), port);
    assert_eventually!(
        home.path().join(".moor/config").exists()
            && moorctl(home.path(), &["get", "nodes"])
                .await
                .1
                .contains("Ready"),
        PATIENCE,
        "moor up writes the context and the node is Ready"
    );
    let client = admin_client(home.path());
    // The context holds the administrator's certificate.
    let whoami = ok(home.path(), &["auth", "whoami"]).await;
    assert!(
        whoami.contains("admin") && whoami.contains("system:masters"),
        "{whoami}"
    );
    let view = ok(home.path(), &["config", "view"]).await;
    assert!(
        view.contains("client-key-data: REDACTED") && !view.contains("PRIVATE KEY"),
        "config view shows no key: {view}"
    );

    // Deploy: a deployment and a service.
    let web = examples().join("web.yaml");
    let web = web.to_str().unwrap();
    let applied = ok(home.path(), &["apply", "-f", web]).await;
    assert!(
        applied.contains("deployment.apps/web created") && applied.contains("service/web created"),
        "{applied}"
    );
    let again = ok(home.path(), &["apply", "-f", web]).await;
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    assert_eventually!(
        running_web_pods(&client).await.len() == 2,
        PATIENCE,
        "the deployment's 2 pods run"
    );
    let listed = ok(home.path(), &["get", "deploy,rs,pods"]).await;
    assert!(
        listed.contains("deployment.apps/web") || listed.contains("web"),
        "{listed}"
    );

    // Scale.
    ok(
        home.path(),
        &["scale", "deployment", "web", "--replicas", "3"],
    )
    .await;
    assert_eventually!(
        running_web_pods(&client).await.len() == 3 && ready_endpoints(&client).await == 3,
        PATIENCE,
        "3 pods, 3 ready endpoints"
    );

    // Reach it from the host: cluster IP (every pod in turn) and node port.
    let ip = ok(
        home.path(),
        &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
    )
    .await;
    let http: std::net::SocketAddr = format!("{}:80", ip.trim()).parse().unwrap();
    assert_eventually!(http_get(http).await.is_ok(), PATIENCE, "{http} answers");
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let body = http_get(http).await.expect("cluster IP answers");
        answered.insert(
            body.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(answered.len(), 3, "every pod answered: {answered:?}");
    let node_port: std::net::SocketAddr = "127.0.0.1:30080".parse().unwrap();
    assert_eventually!(
        http_get(node_port)
            .await
            .is_ok_and(|b| b.contains("pod=web-")),
        PATIENCE,
        "the node port answers"
    );

    // Roll a new version (a restart rolls every pod) and wait for it.
    let before: Vec<String> = running_web_pods(&client)
        .await
        .iter()
        .filter_map(|p| p.metadata.as_ref().map(|m| m.name.clone()))
        .collect();
    let restarted = ok(home.path(), &["rollout", "restart", "deployment/web"]).await;
    assert!(
        restarted.contains("deployment.apps/web restarted"),
        "{restarted}"
    );
    let status = ok(
        home.path(),
        &["rollout", "status", "deployment/web", "--timeout", "2m"],
    )
    .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let after = running_web_pods(&client).await;
    assert_eq!(after.len(), 3);
    assert!(
        after
            .iter()
            .filter_map(|p| p.metadata.as_ref())
            .all(|m| !before.contains(&m.name)),
        "every pod was replaced"
    );
    let history = ok(home.path(), &["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // A new image (no registry here: a second tag of the same image), then
    // back: apply the edited manifest, wait, undo.
    let tag = format!("moor/echo:tour-{}", std::process::id());
    let tagged = std::process::Command::new("docker")
        .args(["tag", "moor/echo:0.1", &tag])
        .status()
        .unwrap();
    assert!(tagged.success(), "docker tag {tag}");
    let manifest = std::fs::read_to_string(web)
        .unwrap()
        .replace("moor/echo:0.1", &tag);
    let v2 = home.path().join("web-v2.yaml");
    std::fs::write(&v2, manifest).unwrap();
    let configured = ok(home.path(), &["apply", "-f", v2.to_str().unwrap()]).await;
    assert!(
        configured.contains("deployment.apps/web configured"),
        "{configured}"
    );
    ok(
        home.path(),
        &["rollout", "status", "deployment/web", "--timeout", "2m"],
    )
    .await;
    assert_eventually!(
        images(&client).await == vec![tag.clone(); 2],
        PATIENCE,
        "both pods run {tag}"
    );
    let undone = ok(home.path(), &["rollout", "undo", "deployment/web"]).await;
    assert!(undone.contains("rolled back"), "{undone}");
    ok(
        home.path(),
        &["rollout", "status", "deployment/web", "--timeout", "2m"],
    )
    .await;
    assert_eventually!(
        images(&client).await == vec!["moor/echo:0.1".to_string(); 2],
        PATIENCE,
        "both pods run moor/echo:0.1 again"
    );

    // Logs and exec; the service by DNS name from inside a pod.
    let logs = ok(home.path(), &["logs", "deploy/web"]).await;
    assert!(logs.contains("serving on :8080"), "{logs}");
    let (code, out, err) = moorctl(
        home.path(),
        &[
            "exec",
            "deploy/web",
            "--",
            "/echo",
            "get",
            "http://web/",
            "--retry-seconds",
            "30",
        ],
    )
    .await;
    assert!(code == 0 && out.contains("pod=web-"), "exec: {err}{out}");
    let (code, _, _) = moorctl(
        home.path(),
        &["exec", "deploy/web", "--", "/echo", "exit", "3"],
    )
    .await;
    assert_eq!(code, 3, "exec returns the command's exit code");

    // Delete: everything goes.
    let deleted = ok(home.path(), &["delete", "-f", web]).await;
    assert!(
        deleted.contains("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    assert_eventually!(
        client
            .api::<Pod>()
            .list(&ListParams::default().namespace("default").labels("app=web"))
            .await
            .is_ok_and(|(pods, _)| pods.is_empty()),
        PATIENCE,
        "the pods are gone"
    );
    assert_eventually!(
        http_get(node_port).await.is_err(),
        PATIENCE,
        "the node port no longer answers"
    );

    // Stop cleanly.
    let pid = cluster.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), cluster.wait())
        .await
        .expect("moor up stops")
        .unwrap();
    assert!(status.success(), "moor up exits cleanly: {status}");
}

/// A client of the cluster as its administrator, with the server and
/// credentials `moor up` wrote into moorctl's context under `home`.
fn admin_client(home: &std::path::Path) -> Client {
    let target = moorctl::config::target(None, None, &home.join(".moor/config"))
        .expect("moorctl's config reads");
    Client::connect(&target.server, &target.credentials).expect("a client")
}
