//! `rollout`, `rolling-update` and `schedule --dry-run` end to end: a whole
//! cluster on the real Docker daemon (`moor_integration_tests::Cluster`),
//! with the real moorctl binary run against it. Needs dockerd and the
//! images of images/build.sh; a second tag of moor/echo:0.1 stands in for a
//! new image (pulls are impossible here).

mod on_cluster;

use std::process::Stdio;
use std::time::Duration;

use moor_integration_tests::Cluster;
use moor_testkit::assert_eventually;
use on_cluster::Moorctl;
use serde_json::Value;

/// Bound for anything involving Docker and the whole control loop.
const PATIENCE: Duration = Duration::from_secs(120);

/// A second tag of moor/echo:0.1, removed on drop (also after a panic).
struct Tag(String);

impl Moorctl {
    async fn jsonpath(&self, args: &[&str], expr: &str) -> String {
        let output = format!("jsonpath={expr}");
        let mut all = args.to_vec();
        all.extend(["-o", &output]);
        self.ok(&all).await
    }

    /// The pods labelled app=web that are Ready, with their images.
    async fn ready_web_pods(&self) -> Vec<String> {
        let text = self
            .ok(&["get", "pods", "-l", "app=web", "-o", "json"])
            .await;
        let list: Value = serde_json::from_str(&text).expect("a JSON list");
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

impl Tag {
    /// `moor/echo:test-<pid>-<name>`: each test its own, so one test's
    /// cleanup does not take another's image away.
    fn new(name: &str) -> Self {
        let tag = format!("moor/echo:test-{}-{name}", std::process::id());
        let made = std::process::Command::new("docker")
            .args(["tag", "moor/echo:0.1", &tag])
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "docker tag moor/echo:0.1 {tag} failed");
        Self(tag)
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Fails with how to get what is missing, rather than passing silently.
fn require_docker_images() {
    let found = std::process::Command::new("docker")
        .args(["image", "inspect", "moor/echo:0.1"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "needs dockerd and the image moor/echo:0.1: start Docker and run images/build.sh"
    );
}

/// Two echo pods behind a deployment, running `image`.
fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {image}
        imagePullPolicy: Never
        args: [serve, --port, \"9090\"]
"
    )
}

/// Two echo pods behind a replication controller.
const CONTROLLER: &str = "apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 2
  selector: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: moor/echo:0.1
        imagePullPolicy: Never
        args: [serve, --port, \"9090\"]
";

const IMAGE: &str = "{.spec.template.spec.containers[0].image}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_history_undo_pause() {
    require_docker_images();
    let tag = Tag::new("rollout");
    let cluster = Cluster::start("moorctl-rollout", None)
        .await
        .expect("cluster starts");
    let m = Moorctl::new(&cluster);
    m.apply("web.yaml", &deployment("moor/echo:0.1")).await;
    let status = ["rollout", "status", "deployment/web", "--timeout", "120s"];
    let out = m.ok(&status).await;
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );

    // restart: a new revision whose pods all come up.
    assert_eq!(
        m.ok(&["rollout", "restart", "deploy/web"]).await,
        "deployment.apps/web restarted\n"
    );
    let text = m.ok(&["get", "deploy", "web", "-o", "json"]).await;
    let object: Value = serde_json::from_str(&text).expect("JSON");
    let stamp =
        object["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    assert!(stamp.ends_with('Z'), "restartedAt {stamp:?}");
    let out = m.ok(&status).await;
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );
    assert_eq!(
        m.ok(&["rollout", "history", "deploy/web"]).await,
        "deployment.apps/web \nREVISION   CHANGE-CAUSE\n1          <none>\n2          <none>\n\n"
    );

    // A new image is revision 3; undo brings revision 2's template back.
    m.apply("web.yaml", &deployment(&tag.0)).await;
    m.ok(&status).await;
    let shown = m
        .ok(&["rollout", "history", "deploy/web", "--revision", "3"])
        .await;
    assert!(
        shown.starts_with("deployment.apps/web with revision #3\nPod Template:\n"),
        "{shown}"
    );
    assert!(shown.contains(&format!("image: {}", tag.0)), "{shown}");
    assert_eq!(
        m.fails(&["rollout", "undo", "deploy/web", "--to-revision", "7"])
            .await,
        "error: unable to find specified revision 7 in history"
    );
    assert_eq!(
        m.ok(&["rollout", "undo", "deploy/web"]).await,
        "deployment.apps/web rolled back\n"
    );
    assert_eq!(
        m.jsonpath(&["get", "deploy", "web"], IMAGE).await,
        "moor/echo:0.1"
    );
    m.ok(&status).await;
    assert_eventually!(
        m.ready_web_pods().await == ["moor/echo:0.1", "moor/echo:0.1"],
        PATIENCE,
        "the old image's pods never came back"
    );
    let history = m.ok(&["rollout", "history", "deploy/web"]).await;
    assert!(
        history.contains("\n3   ") && history.contains("\n4   "),
        "{history}"
    );
    assert!(
        !history.contains("\n2   "),
        "revision 2 became 4: {history}"
    );

    // pause: a template change waits; resume rolls it out.
    assert_eq!(
        m.ok(&["rollout", "pause", "deploy/web"]).await,
        "deployment.apps/web paused\n"
    );
    assert_eq!(
        m.fails(&["rollout", "pause", "deploy/web"]).await,
        "error: deployments.apps \"web\" is already paused"
    );
    let err = m.fails(&["rollout", "undo", "deploy/web"]).await;
    assert!(err.contains("cannot rollback a paused deployment"), "{err}");
    // The manifest keeps `paused`, or applying it would resume the rollout.
    let paused = deployment(&tag.0).replace("replicas: 2", "replicas: 2\n  paused: true");
    m.apply("web.yaml", &paused).await;
    let waiting = m
        .ok(&["rollout", "status", "deploy/web", "--watch=false"])
        .await;
    assert!(
        waiting.starts_with("Waiting for deployment"),
        "paused, the new template does not roll out: {waiting}"
    );
    assert_eq!(
        m.ok(&["rollout", "resume", "deploy/web"]).await,
        "deployment.apps/web resumed\n"
    );
    m.ok(&status).await;
    assert_eventually!(
        m.ready_web_pods().await == [tag.0.as_str(), tag.0.as_str()],
        PATIENCE,
        "the resumed rollout never ran the new image"
    );
    // The image of revision 3 again: that replica set is brought back as 5.
    let history = m.ok(&["rollout", "history", "deploy/web"]).await;
    assert!(
        history.contains("\n4   ") && history.contains("\n5   "),
        "{history}"
    );
    assert!(
        !history.contains("\n3   "),
        "revision 3 became 5: {history}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_a_pod_ready_and_the_name() {
    require_docker_images();
    let tag = Tag::new("rolling");
    let cluster = Cluster::start("moorctl-rolling", None)
        .await
        .expect("cluster starts");
    let m = Moorctl::new(&cluster);
    m.apply("rc.yaml", CONTROLLER).await;
    assert_eventually!(
        m.ready_web_pods().await.len() == 2,
        PATIENCE,
        "the controller's pods never became ready"
    );
    let old_uid = m.jsonpath(&["get", "rc", "web"], "{.metadata.uid}").await;

    let update = m
        .command(&[
            "rolling-update",
            "web",
            "--image",
            &tag.0,
            "--update-period",
            "1s",
            "--poll-interval",
            "200ms",
            "--timeout",
            "90s",
        ])
        .output();
    tokio::pin!(update);
    // While it runs, at least one app=web pod is ready at every look.
    let output = loop {
        tokio::select! {
            output = &mut update => break output.expect("moorctl runs"),
            ready = m.ready_web_pods() => {
                assert!(!ready.is_empty(), "no ready pod during the update");
            }
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let pods = m.run(&["get", "pods", "-o", "yaml"]).await;
        let rcs = m.run(&["get", "rc", "-o", "yaml"]).await;
        panic!(
            "rolling-update failed: {output:?}\n{}\n{}",
            pods.stdout, rcs.stdout
        );
    }
    let lines: Vec<&str> = stdout.lines().collect();
    let next = lines[0]
        .strip_prefix("Created ")
        .expect("Created NAME first");
    assert!(next.starts_with("web-"), "{stdout}");
    assert_eq!(
        lines[1],
        format!(
            "Scaling up {next} from 0 to 2, scaling down web from 2 to 0 (keep 2 pods available, don't exceed 3 pods)"
        )
    );
    assert!(
        lines.contains(&format!("Scaling {next} up to 1").as_str()),
        "{stdout}"
    );
    assert!(lines.contains(&"Scaling web down to 0"), "{stdout}");
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "Update succeeded. Deleting old controller: web".to_string(),
            format!("Renaming {next} to web"),
            "replicationcontroller/web rolling updated".to_string(),
        ]
    );

    // The name is back, with the new image, and it owns the new pods.
    assert_eq!(
        m.ok(&["get", "rc", "-o", "name"]).await,
        "replicationcontroller/web\n"
    );
    assert_eq!(m.jsonpath(&["get", "rc", "web"], IMAGE).await, tag.0);
    let uid = m.jsonpath(&["get", "rc", "web"], "{.metadata.uid}").await;
    assert_ne!(uid, old_uid);
    assert_eventually!(
        m.ready_web_pods().await == [tag.0.as_str(), tag.0.as_str()],
        PATIENCE,
        "the new image's pods are not the only ready ones"
    );
    // The orphaned pods of the deleted temporary controller lose its
    // reference (garbage collector) and are adopted (replication
    // controller) in the background: wait for exactly the two adopted.
    let adopted = format!("{uid} {uid}");
    assert_eventually!(
        m.jsonpath(
            &["get", "pods", "-l", "app=web"],
            "{.items[*].metadata.ownerReferences[0].uid}",
        )
        .await
            == adopted,
        PATIENCE,
        "the renamed controller adopted the pods"
    );
    assert_eventually!(
        m.jsonpath(&["get", "rc", "web"], "{.status.readyReplicas}")
            .await
            == "2",
        PATIENCE,
        "the renamed controller counts its two ready pods"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_dry_run_names_the_node_or_why_none() {
    require_docker_images();
    let cluster = Cluster::start("moorctl-plan", None)
        .await
        .expect("cluster starts");
    let m = Moorctl::new(&cluster);
    let pod = |cpu: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: plan
spec:
  containers:
  - name: app
    image: moor/echo:0.1
    resources:
      requests: {{cpu: \"{cpu}\"}}
"
        )
    };
    let small = m.write("small.yaml", &pod("100m"));
    let big = m.write("big.yaml", &pod("1000"));
    let node = cluster.node.clone();
    // The scheduler may serve plans before the node has registered, or
    // before it is Ready.
    assert_eventually!(
        {
            let out = m.run(&["schedule", "--dry-run", "-f", &small]).await;
            out.code == 0
                && out
                    .stdout
                    .contains(&format!("pod/plan would be bound to node {node}"))
        },
        PATIENCE,
        "the scheduler never planned to bind to node {node}"
    );
    let out = m.ok(&["schedule", "--dry-run", "-f", &small]).await;
    assert!(out.starts_with("NODE"), "{out}");
    assert!(out.contains(&format!("\n{node} ")), "{out}");
    assert!(
        out.ends_with(&format!("pod/plan would be bound to node {node}\n")),
        "{out}"
    );
    let out = m.ok(&["schedule", "--dry-run", "-f", &big]).await;
    assert!(
        out.ends_with("\n0/1 nodes are available: 1 Insufficient cpu.\n"),
        "{out}"
    );
    assert!(out.contains("Insufficient cpu"), "{out}");
    assert_eq!(
        m.ok(&["get", "pods", "-o", "name"]).await,
        "",
        "a dry run creates nothing"
    );
    cluster.stop().await;
}
