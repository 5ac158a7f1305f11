//! `logs` and `exec` end to end: a whole cluster on the real Docker daemon
//! (`moor_integration_tests::Cluster`: apiserver, scheduler, controllers,
//! a Docker node agent), with the real moorctl binary run against it.
//! Needs dockerd and the images of images/build.sh.

mod on_cluster;

use std::process::Stdio;
use std::time::Duration;

use moor_integration_tests::Cluster;
use moor_testkit::assert_eventually;
use on_cluster::{Moorctl, Out};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound for anything involving Docker and the whole control loop.
const PATIENCE: Duration = Duration::from_secs(90);

/// One echo pod: container `app` serving on 8080, and with `side` a second
/// container serving on 8081 (they share the pod's network).
fn echo_pod(name: &str, side: bool) -> String {
    let mut text = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: echo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: moor/echo:0.1
    imagePullPolicy: Never
    args: [serve, --port, \"8080\"]
"
    );
    if side {
        text.push_str(
            "  - name: side
    image: moor/echo:0.1
    imagePullPolicy: Never
    args: [serve, --port, \"8081\"]
",
        );
    }
    text
}

/// One echo pod behind a deployment, serving on 9090.
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: moor/echo:0.1
        imagePullPolicy: Never
        args: [serve, --port, \"9090\"]
";

impl Moorctl {
    /// Runs `moorctl ARGS` on a pseudo-terminal, through script(1), then
    /// `stty -a` to show the terminal's modes after it.
    async fn in_terminal(&self, args: &str) -> Out {
        let line = format!(
            "{} {args}; code=$?; stty -a; exit $code",
            env!("CARGO_BIN_EXE_moorctl")
        );
        let mut cmd = tokio::process::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("MOOR_SERVER", &self.server)
            .env("MOOR_CONFIG", self.dir.path().join("config"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(PATIENCE, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("moorctl {args} did not end within {PATIENCE:?}"))
            .expect("script(1) runs: install util-linux");
        Out::of(out)
    }

    async fn running(&self, pod: &str) -> bool {
        let phase = self
            .run(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
            .await;
        phase.stdout.trim() == "Running"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_against_docker() {
    require_docker_images();
    let cluster = Cluster::start("moorctl-io", None)
        .await
        .expect("cluster starts");
    let m = Moorctl::new(&cluster);
    m.apply("one.yaml", &echo_pod("one", false)).await;
    m.apply("two.yaml", &echo_pod("two", true)).await;
    assert_eventually!(
        m.running("one").await && m.running("two").await,
        PATIENCE,
        "pods one and two never ran"
    );

    // logs of one container, whole and tailed.
    let served = "serving on :8080 (HTTP and UDP)\n";
    assert_eventually!(
        m.run(&["logs", "one"]).await.stdout.contains(served),
        PATIENCE,
        "the log of pod one never showed {served:?}"
    );
    assert_eq!(m.ok(&["logs", "pod/one", "--tail", "1"]).await, served);
    assert_eq!(
        m.ok(&["logs", "two", "-c", "side"]).await,
        "serving on :8081 (HTTP and UDP)\n"
    );
    assert_eq!(
        m.ok(&["logs", "two", "side", "--since", "1h"]).await,
        "serving on :8081 (HTTP and UDP)\n"
    );

    // Several containers and no -c: the server's error names them.
    let err = m.run(&["logs", "two"]).await;
    assert_eq!(err.code, 1, "{err:?}");
    assert_eq!(err.stderr.lines().count(), 1, "{err:?}");
    assert!(
        err.stderr.contains("app") && err.stderr.contains("side"),
        "{err:?}"
    );

    // A selector: every pod's every container, prefixed.
    let all = m.ok(&["logs", "-l", "app=echo"]).await;
    assert_eq!(
        all,
        "[pod/one/app] serving on :8080 (HTTP and UDP)\n\
         [pod/two/app] serving on :8080 (HTTP and UDP)\n\
         [pod/two/side] serving on :8081 (HTTP and UDP)\n"
    );
    let prefixed = m.ok(&["logs", "two", "--all-containers", "--prefix"]).await;
    assert_eq!(
        prefixed,
        "[pod/two/app] serving on :8080 (HTTP and UDP)\n\
         [pod/two/side] serving on :8081 (HTTP and UDP)\n"
    );
    let err = m
        .run(&["logs", "-l", "app=echo", "-f", "--max-log-requests", "2"])
        .await;
    assert_eq!(err.code, 1, "{err:?}");
    assert!(err.stderr.contains("follow 3 log streams"), "{err:?}");

    // -f keeps the stream open: the first line comes, the command goes on.
    let mut follow = m
        .command(&["logs", "-f", "-l", "app=echo", "--tail", "-1"])
        .spawn()
        .expect("moorctl starts");
    let stdout = follow.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a followed line in time")
            .expect("stdout readable")
            .expect("the follower is still running");
        seen.push(line);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "[pod/one/app] serving on :8080 (HTTP and UDP)",
            "[pod/two/app] serving on :8080 (HTTP and UDP)",
            "[pod/two/side] serving on :8081 (HTTP and UDP)",
        ]
    );
    assert!(
        follow.try_wait().expect("status").is_none(),
        "-f ended early"
    );
    follow.kill().await.expect("stop the follower");

    // exec: output, exit codes, files left behind in the container.
    let out = m.run(&["exec", "one", "--", "/echo", "exit", "3"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stderr, "command terminated with exit code 3\n");
    assert_eq!(
        m.ok(&["exec", "one", "--", "/echo", "write", "/x", "hi"])
            .await,
        "wrote /x\n"
    );
    assert_eq!(
        m.ok(&[
            "exec",
            "pod/one",
            "--",
            "/echo",
            "wait-file",
            "/x",
            "hi",
            "--seconds",
            "1"
        ])
        .await,
        "/x holds \"hi\"\n"
    );
    let out = m
        .run(&[
            "exec",
            "one",
            "--",
            "/echo",
            "wait-file",
            "/y",
            "hi",
            "--seconds",
            "0",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("/y did not hold"), "{out:?}");
    assert!(
        out.stderr
            .ends_with("command terminated with exit code 1\n"),
        "{out:?}"
    );
    assert_eq!(
        m.ok(&["exec", "two", "-c", "side", "--", "/echo", "exit", "0"])
            .await,
        ""
    );
    let err = m.run(&["exec", "two", "--", "/echo", "exit", "0"]).await;
    assert_eq!(err.code, 1, "{err:?}");
    assert!(err.stderr.contains("side"), "{err:?}");

    // -i sends stdin and closes it at EOF (the command does not wait on it);
    // -t without a terminal is dropped with kubectl's warning.
    let out = m
        .run_with(
            &["exec", "-i", "one", "--", "/echo", "exit", "4"],
            Some("input\n"),
        )
        .await;
    assert_eq!(out.code, 4, "{out:?}");
    let out = m
        .run_with(
            &["exec", "-it", "one", "--", "/echo", "exit", "0"],
            Some(""),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stderr,
        "Unable to use a TTY - input is not a terminal or the right kind of file\n"
    );
    let out = m
        .run_with(
            &["exec", "-itq", "one", "--", "/echo", "exit", "0"],
            Some(""),
        )
        .await;
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");

    // -it on a real terminal: script(1) gives moorctl a pty, so it goes raw,
    // the command gets a remote terminal, and the code still comes back.
    let out = m
        .in_terminal("exec -it one -- /echo write /dev/stdout hi")
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("hiwrote /dev/stdout"), "{out:?}");
    assert!(
        out.stdout.contains(" icanon") && out.stdout.contains(" echo "),
        "the terminal is back in cooked mode: {out:?}"
    );
    let out = m.in_terminal("exec -ti one -- /echo exit 6").await;
    assert_eq!(out.code, 6, "{out:?}");

    // A workload names its first pod, for logs and exec alike.
    m.apply("deploy.yaml", DEPLOYMENT).await;
    assert_eventually!(
        m.run(&["logs", "deployment/web"])
            .await
            .stdout
            .contains("serving on :9090"),
        PATIENCE,
        "deployment/web's pod never logged"
    );
    let out = m
        .run(&["exec", "deploy/web", "--", "/echo", "exit", "7"])
        .await;
    assert_eq!(out.code, 7, "{out:?}");

    let err = m.run(&["exec", "nope", "--", "/echo", "exit", "0"]).await;
    assert_eq!(err.code, 1, "{err:?}");
    assert!(
        err.stderr.starts_with("Error from server (NotFound)"),
        "{err:?}"
    );
    cluster.stop().await;
}
