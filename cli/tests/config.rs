//! Server selection and `moorctl config`.

mod common;

use common::{Cluster, output};

#[tokio::test(flavor = "multi_thread")]
async fn contexts_choose_the_server_and_namespace() {
    let c = Cluster::start().await;
    let run = |args: &'static [&'static str]| output(c.bare(args));
    // No server anywhere: the error says how to set one.
    let out = run(&["get", "pods"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--server"), "{out:?}");

    let set = output(c.bare(&[
        "config",
        "set-context",
        "local",
        "--server",
        &c.server,
        "--namespace",
        "moor-system",
    ]))
    .await;
    assert_eq!(set.code, 0, "{set:?}");
    assert_eq!(set.stdout, "Context \"local\" created.\n");
    let set = output(c.bare(&[
        "config",
        "set-context",
        "other",
        "--server",
        "http://127.0.0.1:1",
    ]))
    .await;
    assert_eq!(set.code, 0, "{set:?}");

    let out = run(&["config", "get-contexts"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("CURRENT   NAME    SERVER"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("*") && lines[1].contains("local"),
        "{lines:?}"
    );
    assert!(
        !lines[2].starts_with("*") && lines[2].contains("other"),
        "{lines:?}"
    );

    // The context's server and namespace are used: moor-system exists and
    // is where an unqualified apply lands.
    let path = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n",
    );
    let out = output(c.bare(&["apply", "-f", path.to_str().unwrap()])).await;
    assert_eq!(out.stdout, "configmap/cfg created\n", "{out:?}");
    let out = output(c.bare(&["get", "configmaps", "-o", "name"])).await;
    assert_eq!(out.stdout, "configmap/cfg\n", "{out:?}");
    let out = output(c.bare(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.namespace}"])).await;
    assert_eq!(out.stdout, "moor-system", "{out:?}");

    let out = run(&["config", "use-context", "other"]).await;
    assert_eq!(out.stdout, "Switched to context \"other\".\n");
    let out = run(&["config", "view"]).await;
    assert!(out.stdout.contains("current-context: other"), "{out:?}");
    assert!(out.stdout.contains("namespace: moor-system"), "{out:?}");
    let out = run(&["config", "use-context", "nope"]).await;
    assert_eq!(out.code, 1);

    // Refused connections name the server and how it was chosen.
    let out = run(&["get", "pods"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("http://127.0.0.1:1"), "{out:?}");
    assert!(out.stderr.contains("context \"other\""), "{out:?}");
    assert!(out.stderr.contains("connection refused"), "{out:?}");
    let out = output(c.bare(&["--server", "127.0.0.1:1", "get", "pods"])).await;
    assert!(out.stderr.contains("the --server flag"), "{out:?}");
    let mut cmd = c.bare(&["get", "pods"]);
    cmd.env("MOOR_SERVER", "http://127.0.0.1:1");
    let out = output(cmd).await;
    assert!(out.stderr.contains("$MOOR_SERVER"), "{out:?}");
    // The flag beats the broken context.
    let out = output(c.bare(&["--server", &c.server, "get", "ns", "-o", "name"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("namespace/default\n"), "{out:?}");
    // Several servers of one cluster: a dead one is passed over, whichever
    // the client starts at (at random), from the flag and from the
    // environment.
    let servers = format!("http://127.0.0.1:1,{}", c.server);
    for _ in 0..5 {
        let out = output(c.bare(&["--server", &servers, "get", "ns", "-o", "name"])).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("namespace/default\n"), "{out:?}");
        let mut cmd = c.bare(&["get", "ns", "-o", "name"]);
        cmd.env("MOOR_SERVER", &servers);
        let out = output(cmd).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
}
