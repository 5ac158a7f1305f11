//! The other verbs: delete, scale, label, annotate, describe, explain,
//! api-resources, events, call, version, completion, cordon, wait, and what
//! rollout, rolling-update and schedule refuse.

mod common;

use common::{Cluster, golden, path_str, pod};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.14.2
";

const EVENT: &str = "apiVersion: v1
kind: Event
metadata:
  name: web.1
involvedObject:
  kind: Pod
  name: web
  namespace: default
reason: Scheduled
message: Successfully assigned default/web to node-1
type: Normal
source:
  component: moor-scheduler
";

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n";

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_name_and_file() {
    let c = Cluster::start().await;
    c.apply("a.yaml", &pod("a", "app: x")).await;
    c.apply("b.yaml", &pod("b", "app: x")).await;
    let cfile = c.write("c.yaml", &pod("c", "app: x"));
    c.ok(&["apply", "-f", path_str(&cfile)]).await;

    assert_eq!(
        c.ok(&["delete", "pod", "a", "b", "--wait"]).await,
        "pod \"a\" deleted\npod \"b\" deleted\n"
    );
    assert_eq!(
        c.ok(&["delete", "-f", path_str(&cfile), "--grace-period", "0"])
            .await,
        "pod \"c\" deleted\n"
    );
    assert_eq!(c.run(&["get", "pods"]).await.stdout, "");
    let err = c.fails(&["delete", "pod", "a"]).await;
    assert_eq!(err, r#"Error from server (NotFound): Pod "a" not found"#);
    let out = c.run(&["delete", "pod", "a", "--ignore-not-found"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let err = c.fails(&["delete", "pod"]).await;
    assert!(err.contains("a name is needed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_label_annotate() {
    let c = Cluster::start().await;
    c.apply("d.yaml", DEPLOYMENT).await;
    let replicas = || c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(
        c.ok(&["scale", "deployment", "web", "--replicas", "4"])
            .await,
        "deployment.apps/web scaled\n"
    );
    assert_eq!(replicas().await, "4");
    assert_eq!(
        c.ok(&["scale", "deploy/web", "--replicas=2"]).await,
        "deployment.apps/web scaled\n"
    );
    assert_eq!(replicas().await, "2");
    let err = c
        .fails(&["scale", "configmap", "x", "--replicas", "1"])
        .await;
    assert_eq!(err, "error: configmaps cannot be scaled");
    // Preconditions, as kubectl's: nothing changes when one does not hold.
    let err = c
        .fails(&[
            "scale",
            "deploy/web",
            "--replicas=5",
            "--current-replicas=3",
        ])
        .await;
    assert_eq!(err, "error: Expected replicas to be 3, was 2");
    let err = c
        .fails(&[
            "scale",
            "deploy/web",
            "--replicas=5",
            "--resource-version=1",
        ])
        .await;
    assert!(err.contains("Conflict"), "{err}");
    assert_eq!(replicas().await, "2");
    let version = c
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    c.ok(&[
        "scale",
        "deploy/web",
        "--replicas=3",
        "--current-replicas=2",
    ])
    .await;
    let err = c
        .fails(&[
            "scale",
            "deploy/web",
            "--replicas=4",
            &format!("--resource-version={version}"),
        ])
        .await;
    assert!(
        err.contains("Conflict"),
        "a version from before the last scale: {err}"
    );

    c.apply("p.yaml", &pod("web", "app: web")).await;
    assert_eq!(
        c.ok(&["label", "pod", "web", "tier=front", "env=prod"])
            .await,
        "pod/web labeled\n"
    );
    let labels = c
        .ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels}"])
        .await;
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(
        labels,
        serde_json::json!({"app": "web", "tier": "front", "env": "prod"})
    );
    let err = c.fails(&["label", "pod", "web", "tier=back"]).await;
    assert!(err.contains("--overwrite is false"), "{err}");
    c.ok(&["label", "pod/web", "tier=back", "env-", "--overwrite"])
        .await;
    let labels = c
        .ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels}"])
        .await;
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels, serde_json::json!({"app": "web", "tier": "back"}));
    assert_eq!(
        c.ok(&["get", "pods", "-l", "tier=back", "-o", "name"])
            .await,
        "pod/web\n"
    );

    assert_eq!(
        c.ok(&["annotate", "pod", "web", "note=hello world"]).await,
        "pod/web annotated\n"
    );
    let note = c
        .ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ])
        .await;
    assert_eq!(note, "hello world");
    c.ok(&["annotate", "pod", "web", "note-"]).await;
    let note = c
        .ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ])
        .await;
    assert_eq!(note, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_and_events() {
    let c = Cluster::start().await;
    c.apply("p.yaml", &pod("web", "app: web")).await;
    c.apply("e.yaml", EVENT).await;
    c.apply(
        "e2.yaml",
        &EVENT
            .replace("name: web.1", "name: other.1")
            .replace("name: web\n", "name: other\n"),
    )
    .await;
    // About an earlier pod of the same name: another uid, not shown.
    c.apply(
        "e3.yaml",
        &EVENT
            .replace("name: web.1", "name: web.0")
            .replace(
                "namespace: default\n",
                "namespace: default\n  uid: an-earlier-web\n",
            )
            .replace("to node-1", "to node-0"),
    )
    .await;
    let text = c.ok(&["describe", "pod", "web"]).await;
    assert!(text.starts_with("Name:         web\nNamespace:    default\nKind:         Pod (v1)\nLabels:       app=web\n"), "{text}");
    assert!(
        text.contains("Spec:\n  containers:\n  - name: app\n    image: nginx:1.14.2"),
        "{text}"
    );
    assert!(
        text.contains("Events:\n  Type     Reason      Age"),
        "{text}"
    );
    assert!(
        text.contains("Successfully assigned default/web to node-1"),
        "{text}"
    );
    assert!(!text.contains("other"), "{text}");
    assert!(!text.contains("node-0"), "{text}");
    // Oldest first, whatever their names: a later event named to sort
    // before the first one is listed after it.
    c.apply(
        "e4.yaml",
        &format!(
            "{}lastTimestamp: \"2999-01-01T00:00:00Z\"\n",
            EVENT
                .replace("name: web.1", "name: web.00")
                .replace("reason: Scheduled", "reason: Pulled")
        ),
    )
    .await;
    c.apply(
        "e5.yaml",
        &format!(
            "{}lastTimestamp: \"2000-01-01T00:00:00Z\"\n",
            EVENT
                .replace("name: web.1", "name: web.zz")
                .replace("reason: Scheduled", "reason: Created")
        ),
    )
    .await;
    let text = c.ok(&["describe", "pod", "web"]).await;
    let created = text.find("Normal   Created").expect("the old event");
    let pulled = text.find("Normal   Pulled").expect("the new event");
    assert!(created < pulled, "oldest first: {text}");
    let err = c.fails(&["describe", "pod", "ghost"]).await;
    assert!(err.contains("NotFound"), "{err}");

    let events = c.ok(&["events"]).await;
    assert!(
        events.starts_with("LAST SEEN   TYPE     REASON      OBJECT"),
        "{events}"
    );
    assert!(events.contains("pod/web"), "{events}");
    assert!(events.contains("pod/other"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_api_resources() {
    let c = Cluster::start().await;
    let text = c.ok(&["explain", "deployments.spec.replicas"]).await;
    assert!(
        text.starts_with(
            "KIND:       Deployment\nVERSION:    apps/v1\n\nFIELD: replicas <integer>"
        ),
        "{text}"
    );
    let text = c.ok(&["explain", "pods"]).await;
    assert!(
        text.contains("DESCRIPTION:\n    A group of containers"),
        "{text}"
    );
    assert!(
        text.contains("  spec\t<PodSpec>\n    Desired state of the pod."),
        "{text}"
    );
    let err = c.fails(&["explain", "pods.spec.bogus"]).await;
    assert!(err.contains("\"bogus\" does not exist"), "{err}");
    golden("api_resources", &c.ok(&["api-resources"]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn call_version_completion() {
    let c = Cluster::start().await;
    c.apply("p.yaml", &pod("web", "app: web")).await;
    let out = c
        .ok(&[
            "call",
            "moor.core.v1.Pods/Get",
            "-d",
            r#"{"namespace":"default","name":"web"}"#,
        ])
        .await;
    let pod: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pod["metadata"]["name"], "web");
    let out = c.ok(&["call", "Namespaces/List"]).await;
    assert!(out.contains("moor-system"), "{out}");
    let err = c.fails(&["call", "Pods/Frob"]).await;
    assert!(err.contains("has no method \"Frob\""), "{err}");
    let err = c
        .fails(&["call", "Pods/Get", "-d", r#"{"nmae": "x"}"#])
        .await;
    assert!(err.contains("nmae"), "{err}");

    let out = c.ok(&["version"]).await;
    assert_eq!(
        out,
        format!(
            "Client Version: v{}\nServer: reachable at {}\n",
            env!("CARGO_PKG_VERSION"),
            c.server
        )
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = c.ok(&["completion", shell]).await;
        assert!(script.contains("moorctl"), "{shell}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cordon_and_wait() {
    let c = Cluster::start().await;
    c.apply("n.yaml", NODE).await;
    assert_eq!(c.ok(&["cordon", "node-1"]).await, "node/node-1 cordoned\n");
    assert_eq!(
        c.ok(&["cordon", "node-1"]).await,
        "node/node-1 already cordoned\n"
    );
    let table = c.ok(&["get", "nodes"]).await;
    assert!(table.contains("Unknown,SchedulingDisabled"), "{table}");
    assert_eq!(
        c.ok(&["uncordon", "node-1"]).await,
        "node/node-1 uncordoned\n"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "node",
            "node-1",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ])
        .await,
        ""
    );

    c.apply("p.yaml", &pod("web", "app: web")).await;
    let err = c
        .fails(&[
            "wait",
            "--for=condition=Ready",
            "pod/web",
            "--timeout",
            "1s",
        ])
        .await;
    assert_eq!(err, "error: timed out waiting for pod/web");
    // On a terminal, the wait says what it is waiting for while it waits.
    let seen = c
        .on_terminal(&[
            "wait",
            "--for=condition=Ready",
            "pod/web",
            "--timeout",
            "2s",
        ])
        .await;
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(
        seen.stdout
            .contains("waiting for pod/web: condition Ready is not reported, waiting for True"),
        "{seen:?}"
    );
    assert!(
        seen.stdout.contains("error: timed out waiting for pod/web"),
        "{seen:?}"
    );
    let waiter = c
        .command(&["wait", "--for=delete", "pod/web", "--timeout", "60s"])
        .output();
    // Whether the delete lands before or after the waiter reads the pod, the
    // waiter reports it.
    let deleter = c.ok(&["delete", "pod", "web", "--grace-period", "0"]);
    let (waited, _) = tokio::join!(waiter, deleter);
    let waited = waited.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout),
        "pod/web deleted\n",
        "{waited:?}"
    );
    assert_eq!(
        c.ok(&["wait", "--for=delete", "pod/web"]).await,
        "pod/web deleted\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_verb_is_in_help() {
    let c = Cluster::start().await;
    let help = c.ok(&["--help"]).await;
    for verb in [
        "logs",
        "exec",
        "rollout",
        "rolling-update",
        "schedule",
        "drain",
        "edit",
        "wait",
        "cordon",
    ] {
        assert!(help.contains(verb), "{verb} missing from --help");
    }
    let help = c.ok(&["rollout", "--help"]).await;
    for sub in ["status", "history", "undo", "restart", "pause", "resume"] {
        assert!(help.contains(sub), "rollout {sub} missing from --help");
    }
}

/// What `rollout`, `rolling-update` and `schedule` refuse, without a
/// controller-manager or scheduler (the runs with them are in rollout.rs).
#[tokio::test(flavor = "multi_thread")]
async fn rollout_and_schedule_refusals() {
    let c = Cluster::start().await;
    c.apply("d.yaml", DEPLOYMENT).await;
    assert_eq!(
        c.ok(&["rollout", "pause", "deployment/web"]).await,
        "deployment.apps/web paused\n"
    );
    assert_eq!(
        c.fails(&["rollout", "pause", "deploy", "web"]).await,
        r#"error: deployments.apps "web" is already paused"#
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.paused}"])
            .await,
        "true"
    );
    assert_eq!(
        c.fails(&["rollout", "restart", "deploy/web"]).await,
        r#"error: deployments.apps "web" can't restart paused deployment (run rollout resume first)"#
    );
    assert_eq!(
        c.ok(&["rollout", "resume", "deploy/web"]).await,
        "deployment.apps/web resumed\n"
    );
    assert_eq!(
        c.fails(&["rollout", "resume", "deploy/web"]).await,
        r#"error: deployments.apps "web" is not paused"#
    );
    // No controller-manager: no replica set, so no revision.
    assert_eq!(
        c.fails(&["rollout", "undo", "deploy/web", "--to-revision", "7"])
            .await,
        "error: unable to find specified revision 7 in history"
    );
    assert_eq!(
        c.ok(&["rollout", "history", "deploy/web"]).await,
        "deployment.apps/web \nREVISION   CHANGE-CAUSE\n\n"
    );
    assert_eq!(
        c.ok(&["rollout", "status", "deploy/web", "--watch=false"])
            .await,
        "Waiting for deployment spec update to be observed...\n"
    );
    let err = c
        .fails(&["rollout", "status", "deploy/web", "--timeout", "1s"])
        .await;
    assert_eq!(err, "error: timed out waiting for the condition");
    let err = c.fails(&["rollout", "status", "pod/web"]).await;
    assert_eq!(
        err,
        "error: rollout is supported on deployments only, not on pods"
    );
    let err = c.fails(&["rollout", "history", "deploy/none"]).await;
    assert!(err.contains("NotFound"), "{err}");

    let err = c
        .fails(&["rolling-update", "ghost", "--image", "x:2"])
        .await;
    assert!(err.contains("NotFound") && err.contains("ghost"), "{err}");
    let err = c
        .fails(&["rolling-update", "deploy/web", "--image", "x:2"])
        .await;
    assert!(err.contains("replication controllers only"), "{err}");

    let pod_file = c.write("p.yaml", &pod("web", "app: web"));
    assert_eq!(
        c.fails(&["schedule", "-f", path_str(&pod_file)]).await,
        "error: only --dry-run is supported"
    );
    assert_eq!(
        c.fails(&["schedule", "--dry-run", "-f", path_str(&pod_file)])
            .await,
        "error: no scheduler is serving plans (Endpoints moor-system/moor-scheduler not found); pass --scheduler URL"
    );
}

/// `logs` and `exec` without a node agent: every failure is one line and
/// exit 1 (the runs with a node are in podio.rs).
#[tokio::test(flavor = "multi_thread")]
async fn logs_and_exec_report_errors_in_one_line() {
    let c = Cluster::start().await;
    let err = c.fails(&["logs", "nope"]).await;
    assert!(
        err.starts_with("Error from server (NotFound)") && err.contains("nope"),
        "{err}"
    );
    let err = c.fails(&["exec", "nope", "--", "ls"]).await;
    assert!(
        err.starts_with("Error from server (NotFound)") && err.contains("nope"),
        "{err}"
    );

    // No scheduler here: the pod stays unbound.
    c.apply("web.yaml", &pod("web", "app: web")).await;
    let err = c.fails(&["logs", "pod/web"]).await;
    assert!(err.contains("not scheduled"), "{err}");
    let err = c.fails(&["exec", "web", "--", "ls"]).await;
    assert!(err.contains("not scheduled"), "{err}");

    assert_eq!(
        c.fails(&["exec", "web", "ls"]).await,
        "error: exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"
    );
    assert_eq!(
        c.fails(&["exec", "web"]).await,
        "error: you must specify at least one command for the container"
    );
    let err = c.fails(&["logs", "configmap/web"]).await;
    assert!(err.contains("cannot use a ConfigMap"), "{err}");
    let err = c.fails(&["logs", "deployment/none"]).await;
    assert!(err.contains("NotFound"), "{err}");

    let none = c.run(&["logs", "-l", "app=none"]).await;
    assert_eq!(none.code, 0, "{none:?}");
    assert_eq!(none.stdout, "");
    assert_eq!(none.stderr, "No resources found in default namespace.\n");
}

/// A moorctl command whose $EDITOR is a shell script.
fn with_editor(c: &Cluster, args: &[&str], script: &str) -> tokio::process::Command {
    let editor = c.write("editor.sh", script);
    let mut cmd = c.command(args);
    cmd.env("EDITOR", format!("sh {}", path_str(&editor)));
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_applies_the_saved_object() {
    let c = Cluster::start().await;
    c.apply("web.yaml", DEPLOYMENT).await;
    // The "editor" changes the replica count in place.
    let cmd = with_editor(
        &c,
        &["edit", "deployment/web"],
        "sed -i 's/replicas: 1/replicas: 4/' \"$1\"\n",
    );
    let out = common::output(cmd).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "deployment.apps/web edited\n");
    let replicas = c
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(replicas.trim(), "4");

    // Saving without changes cancels.
    let cmd = with_editor(&c, &["edit", "deployment", "web"], "true\n");
    let out = common::output(cmd).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "Edit cancelled, no changes made.\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_edit_reopens_the_editor_with_the_error() {
    let c = Cluster::start().await;
    c.apply("web.yaml", DEPLOYMENT).await;
    let seen = c.write("seen", "");
    // First round: an unknown field. Second round: the editor sees the
    // error on top, records it, and fixes the field.
    let script = format!(
        "if grep -q 'unknown field' \"$1\"; then\n  grep 'replicaz' \"$1\" >> {seen}\n  sed -i 's/replicaz: 1/replicas: 2/' \"$1\"\nelse\n  sed -i 's/replicas: 1/replicaz: 1/' \"$1\"\nfi\n",
        seen = path_str(&seen)
    );
    let out = common::output(with_editor(&c, &["edit", "deployment/web"], &script)).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "deployment.apps/web edited\n");
    let recorded = std::fs::read_to_string(&seen).unwrap();
    assert!(
        recorded.contains("spec.replicaz: unknown field"),
        "{recorded}"
    );
    let replicas = c
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(replicas.trim(), "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_cordons_and_removes_the_nodes_pods() {
    let c = Cluster::start().await;
    c.apply(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    )
    .await;
    let bound = |name: &str, owned: bool| {
        let owner = if owned {
            "  ownerReferences:\n  - {apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: u1, controller: true}\n"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{owner}spec:\n  nodeName: n1\n  containers:\n  - {{name: a, image: moor/echo:0.1}}\n"
        )
    };
    c.apply("a.yaml", &bound("managed", true)).await;
    c.apply("b.yaml", &bound("loose", false)).await;
    let err = c.fails(&["drain", "n1", "--grace-period", "0"]).await;
    assert!(
        err.contains("use --force") && err.contains("default/loose"),
        "{err}"
    );
    let out = c
        .ok(&[
            "drain",
            "n1",
            "--force",
            "--grace-period",
            "0",
            "--timeout",
            "20s",
        ])
        .await;
    assert!(out.contains("evicting pod default/managed"), "{out}");
    assert!(out.contains("evicting pod default/loose"), "{out}");
    assert!(out.ends_with("node/n1 drained\n"), "{out}");
    let unschedulable = c
        .ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"])
        .await;
    assert_eq!(unschedulable.trim(), "true");
    let left = c.run(&["get", "pods", "-o", "name"]).await;
    assert!(left.stdout.is_empty(), "{left:?}");

    // A pod that does not leave (no node agent confirms its graceful
    // deletion): on a terminal, drain shows what it waits for, then fails.
    c.apply("c.yaml", &bound("stuck", true)).await;
    let seen = c.on_terminal(&["drain", "n1", "--timeout", "2s"]).await;
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(
        seen.stdout
            .contains("waiting for 1 pod to leave node/n1: default/stuck"),
        "{seen:?}"
    );
    assert!(seen.stdout.contains("drain timed out after 2s"), "{seen:?}");
}
