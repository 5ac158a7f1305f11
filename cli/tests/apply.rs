//! `apply`, `create`, `replace` and manifest errors, with manifests from
//! Kubernetes' documentation.

mod common;

use common::{Cluster, path_str, pod};
use serde_json::Value;

/// From Kubernetes' docs (concepts/workloads/controllers/deployment).
const NGINX_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
";

/// From Kubernetes' docs (concepts/services-networking/service).
const MY_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
";

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("json output")
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_docs_manifests_keep_their_spec() {
    let c = Cluster::start().await;
    let file = c.write(
        "nginx.yaml",
        &format!("{NGINX_DEPLOYMENT}---\n{MY_SERVICE}"),
    );
    let out = c.ok(&["apply", "-f", path_str(&file)]).await;
    assert_eq!(
        out,
        "deployment.apps/nginx-deployment created\nservice/my-service created\n"
    );

    let yaml = c
        .ok(&["get", "deployment", "nginx-deployment", "-o", "yaml"])
        .await;
    for line in [
        "replicas: 3",
        "app: nginx",
        "image: nginx:1.14.2",
        "containerPort: 80",
    ] {
        assert!(yaml.contains(line), "{line} missing from\n{yaml}");
    }
    let d = json(
        &c.ok(&["get", "deploy", "nginx-deployment", "-o", "json"])
            .await,
    );
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "nginx");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx:1.14.2");
    assert_eq!(container["ports"][0]["containerPort"], 80);
    let s = json(&c.ok(&["get", "svc", "my-service", "-o", "json"]).await);
    assert_eq!(s["spec"]["selector"]["app.kubernetes.io/name"], "MyApp");
    assert_eq!(s["spec"]["ports"][0]["port"], 80);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 9376);
    assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");

    // Twice: unchanged, after the server's defaulting.
    let out = c.ok(&["apply", "-f", path_str(&file)]).await;
    assert_eq!(
        out,
        "deployment.apps/nginx-deployment unchanged\nservice/my-service unchanged\n"
    );

    // A change: configured, and the stored object follows.
    let changed = NGINX_DEPLOYMENT.replace("replicas: 3", "replicas: 5");
    let out = c.apply("nginx-5.yaml", &changed).await;
    assert_eq!(out, "deployment.apps/nginx-deployment configured\n");
    let replicas = c
        .ok(&[
            "get",
            "deploy",
            "nginx-deployment",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "5");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_replace_directories_and_stdin() {
    let c = Cluster::start().await;
    let a = c.write("dir/a.yaml", &pod("a", "app: x"));
    c.write("dir/b.yml", &pod("b", "app: x"));
    c.write("dir/ignored.txt", "not a manifest");
    let dir = a.parent().unwrap().to_path_buf();
    let out = c.ok(&["create", "-f", path_str(&dir)]).await;
    assert_eq!(out, "pod/a created\npod/b created\n");

    let err = c.fails(&["create", "-f", path_str(&a)]).await;
    assert!(
        err.starts_with("Error from server (AlreadyExists): error when creating"),
        "{err}"
    );
    assert!(err.contains("a.yaml"), "{err}");

    let changed = c.write("a2.yaml", &pod("a", "app: y"));
    let out = c.ok(&["replace", "-f", path_str(&changed)]).await;
    assert_eq!(out, "pod/a replaced\n");
    assert_eq!(
        c.ok(&["get", "pod", "a", "-o", "jsonpath={.metadata.labels.app}"])
            .await,
        "y"
    );

    let out = c
        .run_stdin(&["apply", "-f", "-"], &pod("c", "app: z"))
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "pod/c created\n"),
        "{out:?}"
    );

    let out = c
        .ok(&["apply", "-f", path_str(&changed), "-o", "name"])
        .await;
    assert_eq!(out, "pod/a\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_errors_name_file_document_and_path() {
    let c = Cluster::start().await;
    let bad = NGINX_DEPLOYMENT.replace(
        "image: nginx",
        "imagePullPolicyy: Always\n        image: nginx",
    );
    let file = c.write("bad.yaml", &format!("{}---\n{bad}", pod("ok", "app: x")));
    let err = c.fails(&["apply", "-f", path_str(&file)]).await;
    assert_eq!(
        err,
        format!(
            "error: {}: document 2: spec.template.spec.containers[0].imagePullPolicyy: unknown field",
            file.display()
        )
    );
    // Nothing was written: the whole set is checked first.
    let out = c.run(&["get", "pods"]).await;
    assert_eq!(out.stdout, "");

    let file = c.write(
        "kind.yaml",
        "apiVersion: apps/v1\nkind: Deploymnet\nmetadata:\n  name: x\n",
    );
    let err = c.fails(&["apply", "-f", path_str(&file)]).await;
    assert!(err.ends_with(r#"did you mean "Deployment"?"#), "{err}");
    assert!(err.contains("kind.yaml: document 1"), "{err}");

    let err = c.fails(&["apply", "-f", "/nonexistent.yaml"]).await;
    assert!(
        err.starts_with("error: cannot read /nonexistent.yaml"),
        "{err}"
    );

    let invalid = c.write("invalid.yaml", &pod("Bad_Name", "app: x"));
    let err = c.fails(&["apply", "-f", path_str(&invalid)]).await;
    assert!(err.starts_with("Error from server (Invalid)"), "{err}");
    assert!(err.contains("metadata.name"), "{err}");
}

/// A deployment as its author keeps it: no replica count (an autoscaler or
/// `moorctl scale` owns that), a label and minReadySeconds to drop later.
const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    tier: front
spec:
  minReadySeconds: 5
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: moor/echo:0.1
";

#[tokio::test(flavor = "multi_thread")]
async fn apply_merges_three_ways() {
    let c = Cluster::start().await;
    assert_eq!(
        c.apply("web.yaml", WEB).await,
        "deployment.apps/web created\n"
    );
    c.ok(&["scale", "deployment", "web", "--replicas", "4"])
        .await;
    c.ok(&["label", "deployment", "web", "owner=ops"]).await;

    // The next version drops a label and a field and changes the image.
    let next = WEB
        .replace("    tier: front\n", "")
        .replace("  minReadySeconds: 5\n", "")
        .replace("moor/echo:0.1", "moor/echo:0.2");
    assert_eq!(
        c.apply("web-2.yaml", &next).await,
        "deployment.apps/web configured\n"
    );
    let d = json(&c.ok(&["get", "deploy", "web", "-o", "json"]).await);
    // What others wrote and the manifest never set stays.
    assert_eq!(d["spec"]["replicas"], 4, "{d}");
    assert_eq!(d["metadata"]["labels"]["owner"], "ops", "{d}");
    // What the manifest set stays set, what it dropped is gone.
    assert_eq!(d["metadata"]["labels"]["app"], "web", "{d}");
    assert!(d["metadata"]["labels"].get("tier").is_none(), "{d}");
    assert_eq!(d["spec"]["minReadySeconds"].as_i64().unwrap_or(0), 0, "{d}");
    let image = &d["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "moor/echo:0.2", "{d}");
    // The remembered manifest is the one just applied, as written.
    let last = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last applied annotation");
    let last: Value = serde_json::from_str(last).expect("last applied is JSON");
    assert!(last["spec"].get("minReadySeconds").is_none(), "{last}");
    assert!(last["spec"].get("replicas").is_none(), "{last}");

    assert_eq!(
        c.apply("web-2.yaml", &next).await,
        "deployment.apps/web unchanged\n"
    );
    // A manifest that does set replicas takes them back, as kubectl's does.
    let pinned = next.replace("spec:\n  selector", "spec:\n  replicas: 2\n  selector");
    assert_eq!(
        c.apply("web-3.yaml", &pinned).await,
        "deployment.apps/web configured\n"
    );
    let replicas = c
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(replicas, "2");
}
