//! The reference application as the README's tour deploys it: `moor up`
//! runs the cluster's registry; scripts/results-ui.sh builds results-api
//! and results-ui, pushes them there and applies their manifests. Results
//! posted through the UI's form are listed; the API scaled to 3 serves the
//! same data; a new tag pushed to the registry rolls out; a deleted API pod
//! loses nothing; a missing tag shows "not found" without holding up the
//! rest; and a real browser (headless Chromium) submits the form and sees
//! the new row and its pass-rate bar.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use moor_api::apps::v1::Deployment;
use moor_api::core::v1::Pod;
use moor_client::Client;
use moor_integration_tests::results_ui::{
    deploy, http, lists, page, pods, pushed_tags, rolled_out, submit_in_browser, ui_node_port,
};
use moor_testkit::assert_eventually;
use tokio::process::{Child, Command};

/// Pulls, image builds and rollouts on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(180);

fn moorctl_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_moor")).with_file_name("moorctl");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite (./scripts/test.sh) or `cargo build -p moorctl` first",
        path.display()
    );
    path
}

/// moorctl as the user runs it (the context `moor up` wrote in `home`);
/// must succeed; its stdout.
async fn moorctl(home: &Path, args: &[&str]) -> String {
    let out = Command::new(moorctl_path())
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_SERVER")
        .env_remove("MOOR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("moorctl runs");
    assert!(
        out.status.success(),
        "moorctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn up(home: &Path, port: u16, registry_port: u16, node: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["up", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--registry-port", &registry_port.to_string()])
        .args(["--node-name", node, "--log", "warn"])
        .env("HOME", home)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moor up starts")
}

/// The administrator's client, from the context `moor up` wrote.
fn admin(home: &Path) -> Client {
    let target = moorctl::config::target(None, None, &home.join(".moor/config"))
        .expect("moorctl's config reads");
    Client::connect(&target.server, &target.credentials).expect("a client")
}

async fn ready_replicas(client: &Client, name: &str) -> i32 {
    client
        .api::<Deployment>()
        .get("default", name)
        .await
        .ok()
        .and_then(|d| d.status)
        .map_or(0, |s| s.ready_replicas)
}

/// Removes the test's containers, pushed tags and data, also on a panic.
struct Leftovers {
    node: String,
    tags: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        moor_integration_tests::remove_docker_leftovers(&self.node, "moor-results-unused-network");
        moor_integration_tests::remove_pod_network_leftovers();
        for tag in &self.tags {
            let _ = std::process::Command::new("docker")
                .args(["rmi", tag])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_ui_is_deployed_from_the_clusters_registry_and_used_in_a_browser() {
    let node = format!("results-{}", std::process::id());
    let registry_port = moor_testkit::free_port();
    let registry = format!("localhost:{registry_port}");
    let _leftovers = Leftovers {
        node: node.clone(),
        tags: pushed_tags(&registry, &["0.1", "0.2"]),
    };
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    let mut cluster = up(home.path(), port, registry_port, &node);
    assert_eventually!(
        home.path().join(".moor/config").exists()
            && !moor_integration_tests::ready_nodes(&admin(home.path()))
                .await
                .is_empty(),
        PATIENCE,
        "moor up writes the context and the node is Ready"
    );
    let client = admin(home.path());

    println!("cluster up; deploying 0.1");
    // Built, pushed to the cluster's registry, applied.
    deploy(home.path(), &moorctl_path(), &registry, "0.1", data.path())
        .await
        .unwrap();
    let api_image = format!("{registry}/results-api:0.1");
    let ui_image = format!("{registry}/results-ui:0.1");
    assert_eventually!(
        rolled_out(&client, "results-api", &api_image, 1).await
            && rolled_out(&client, "results-ui", &ui_image, 1).await,
        PATIENCE,
        "results-api and results-ui run from {registry}"
    );
    let node_port = ui_node_port(&client).await.unwrap();
    let ui = SocketAddr::from(([127, 0, 0, 1], node_port));

    println!("running; posting through {ui}");
    // Three results through the UI's form, each answered with a redirect
    // to the page, which lists them.
    let suites: Vec<String> = ["unit", "lint", "e2e"]
        .iter()
        .map(|s| format!("{s}-{}", std::process::id()))
        .collect();
    for (i, suite) in suites.iter().enumerate() {
        let form = format!(
            "suite={suite}&passed={}&failed={i}&duration_seconds=1.5",
            10 + i
        );
        assert_eventually!(
            matches!(
                http(ui, "POST", "/results", Some(&form)).await,
                Ok((303, _, _))
            ),
            PATIENCE,
            "the form posts {suite} through the node port {ui}"
        );
    }
    let listed = |page: &str| suites.iter().all(|suite| lists(page, suite));
    assert_eventually!(
        page(ui).await.is_some_and(|p| listed(&p)),
        PATIENCE,
        "the page lists the three results"
    );

    println!("listed; scaling the API");
    // Three API pods share the data.
    moorctl(
        home.path(),
        &["scale", "deployment", "results-api", "--replicas", "3"],
    )
    .await;
    assert_eventually!(
        ready_replicas(&client, "results-api").await == 3,
        PATIENCE,
        "three API pods"
    );
    for _ in 0..6 {
        let body = page(ui).await.expect("the page answers");
        assert!(listed(&body), "every API pod serves the three results");
    }

    println!("three API pods agree; deploying 0.2");
    // A new version, pushed to the registry, rolls out.
    deploy(home.path(), &moorctl_path(), &registry, "0.2", data.path())
        .await
        .unwrap();
    let ui_image = format!("{registry}/results-ui:0.2");
    let api_image = format!("{registry}/results-api:0.2");
    assert_eventually!(
        rolled_out(&client, "results-ui", &ui_image, 1).await
            && rolled_out(&client, "results-api", &api_image, 3).await,
        PATIENCE,
        "the 0.2 images roll out"
    );
    assert_eventually!(
        page(ui).await.is_some_and(|p| listed(&p)),
        PATIENCE,
        "0.2 lists what 0.1 stored"
    );

    println!("0.2 rolled out; deleting an API pod");
    // An API pod deleted: its replacement finds the data.
    let victim = pods(&client, "results-api").await[0]
        .metadata
        .as_ref()
        .unwrap()
        .name
        .clone();
    moorctl(home.path(), &["delete", "pod", &victim]).await;
    assert_eventually!(
        rolled_out(&client, "results-api", &api_image, 3).await
            && pods(&client, "results-api")
                .await
                .iter()
                .all(|p| p.metadata.as_ref().unwrap().name != victim),
        PATIENCE,
        "{victim} replaced"
    );
    assert_eventually!(
        page(ui).await.is_some_and(|p| listed(&p)),
        PATIENCE,
        "the results outlive the pod"
    );

    println!("data kept; a missing tag");
    // A tag the registry lacks: the registry's "not found", and the rest
    // runs on.
    let absent = format!("{registry}/results-ui:absent");
    let mut pod = Pod {
        metadata: Some(moor_api::meta::v1::ObjectMeta {
            name: "absent".to_string(),
            namespace: "default".to_string(),
            ..Default::default()
        }),
        spec: Some(moor_api::core::v1::PodSpec {
            containers: vec![moor_api::core::v1::Container {
                name: "absent".to_string(),
                image: absent.clone(),
                ..Default::default()
            }],
            restart_policy: "Never".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    moor_api::Resource::set_type_meta(&mut pod);
    client.api::<Pod>().create(&pod).await.unwrap();
    assert_eventually!(
        {
            let pod = client.api::<Pod>().get("default", "absent").await.ok();
            let waiting = pod
                .and_then(|p| p.status)
                .and_then(|s| s.container_statuses.into_iter().next())
                .and_then(|c| c.state)
                .and_then(|s| s.waiting);
            waiting.is_some_and(|w| {
                matches!(w.reason.as_str(), "ErrImagePull" | "ImagePullBackOff")
                    && w.message.contains("not found")
            })
        },
        PATIENCE,
        "a missing tag shows the registry's \"not found\""
    );
    assert!(page(ui).await.is_some_and(|p| listed(&p)));

    println!("\"not found\" shown; the browser");
    // A real browser: load the page through the node port, fill in the
    // form and submit it; the new row and its bar appear.
    let suite = format!("browser-{}", std::process::id());
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("results-ui.png");
    submit_in_browser(ui, &suite, &shot, PATIENCE)
        .await
        .unwrap();
    println!("screenshot: {}", shot.display());

    cluster.kill().await.unwrap();
}
