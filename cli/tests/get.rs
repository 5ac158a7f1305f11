//! `get` in every output format, `get all`, `-A`, selectors, `-w`.

mod common;

use std::process::Stdio;

use common::{Cluster, assert_aligned, golden, pod};
use tokio::io::{AsyncBufReadExt, BufReader};

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
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

#[tokio::test(flavor = "multi_thread")]
async fn tables_look_like_kubectl() {
    let c = Cluster::start().await;
    c.apply("a.yaml", &pod("web-1", "app: web")).await;
    c.apply("b.yaml", &pod("database", "app: db")).await;
    c.apply("svc.yaml", SERVICE).await;
    c.apply("deploy.yaml", DEPLOYMENT).await;
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n";
    c.apply("ns.yaml", ns).await;
    let other = c.write("other.yaml", &pod("other", "app: web"));
    c.ok(&["apply", "-n", "team", "-f", other.to_str().unwrap()])
        .await;

    let pods = c.ok(&["get", "pods"]).await;
    assert_aligned(&pods);
    golden("get_pods", &pods);
    golden("get_pods_wide", &c.ok(&["get", "po", "-o", "wide"]).await);
    let all_ns = c.ok(&["get", "pods", "-A"]).await;
    assert_aligned(&all_ns);
    golden("get_pods_all_namespaces", &all_ns);
    golden("get_services", &c.ok(&["get", "svc"]).await);
    golden(
        "get_deployments_wide",
        &c.ok(&["get", "deploy", "-o", "wide"]).await,
    );
    golden("get_namespaces", &c.ok(&["get", "ns"]).await);
    golden("get_all", &c.ok(&["get", "all"]).await);

    // Selectors.
    let out = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(out, "pod/web-1\n");
    let out = c
        .ok(&[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=database",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(out, "pod/database\n");
    let out = c.ok(&["get", "pods/web-1", "-o", "name"]).await;
    assert_eq!(out, "pod/web-1\n");

    // Pages of one: the same list as in one answer.
    let one_answer = c
        .ok(&["get", "pods", "-A", "-o", "name", "--chunk-size", "0"])
        .await;
    assert_eq!(one_answer.lines().count(), 3, "{one_answer}");
    let paged = c
        .ok(&["get", "pods", "-A", "-o", "name", "--chunk-size", "1"])
        .await;
    assert_eq!(paged, one_answer);
    let out = c.run(&["get", "pods", "--chunk-size", "-1"]).await;
    assert_eq!(out.code, 2, "{out:?}");

    // Nothing found: a note on stderr, nothing on stdout.
    let out = c.run(&["get", "pods", "-l", "app=none"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert_eq!(out.stderr, "No resources found in default namespace.\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_yaml_and_jsonpath_are_kubernetes_shaped() {
    let c = Cluster::start().await;
    c.apply("a.yaml", &pod("web", "app: web")).await;
    c.apply("b.yaml", &pod("db", "app: db")).await;

    let one: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "pod", "web", "-o", "json"]).await).unwrap();
    assert_eq!(one["apiVersion"], "v1");
    assert_eq!(one["kind"], "Pod");
    assert_eq!(one["metadata"]["name"], "web");
    assert_eq!(one["spec"]["containers"][0]["image"], "nginx:1.14.2");

    let list: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "pods", "-o", "json"]).await).unwrap();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));

    let yaml = c.ok(&["get", "pod", "web", "-o", "yaml"]).await;
    assert!(
        yaml.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
        "{yaml}"
    );
    let yaml = c.ok(&["get", "pods", "-o", "yaml"]).await;
    assert!(
        yaml.starts_with("apiVersion: v1\nkind: List\nitems:\n"),
        "{yaml}"
    );

    let names = c
        .ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"])
        .await;
    assert_eq!(names, "db web");
    let image = c
        .ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "nginx:1.14.2");
    let range = c
        .ok(&[
            "get",
            "pods",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}"#,
        ])
        .await;
    assert_eq!(range, "db\nweb\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_fail_with_one_line() {
    let c = Cluster::start().await;
    let err = c.fails(&["get", "deploymnets"]).await;
    assert_eq!(
        err,
        r#"error: unknown resource type "deploymnets"; did you mean "deployments"?"#
    );
    let err = c.fails(&["get", "pod", "ghost"]).await;
    assert_eq!(
        err,
        r#"Error from server (NotFound): Pod "ghost" not found"#
    );
    let err = c.fails(&["get", "pods", "-o", "table"]).await;
    assert!(err.contains("unknown output format"), "{err}");
    let err = c.fails(&["get", "pods", "-l", "app in (a"]).await;
    assert!(err.starts_with("Error from server (Invalid)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_rows() {
    let c = Cluster::start().await;
    c.apply("a.yaml", &pod("first", "app: web")).await;
    let mut cmd = c.command(&["get", "pods", "-w"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let header = lines.next_line().await.unwrap().unwrap();
    assert!(header.starts_with("NAME    READY   STATUS"), "{header}");
    let row = lines.next_line().await.unwrap().unwrap();
    assert!(row.starts_with("first   0/1     Pending"), "{row}");
    c.apply("b.yaml", &pod("second", "app: web")).await;
    let row = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("a row for the new pod")
        .unwrap()
        .unwrap();
    assert!(row.starts_with("second"), "{row}");
    child.kill().await.unwrap();
}
