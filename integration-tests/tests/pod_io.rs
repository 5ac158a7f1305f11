//! Logs and exec through the apiserver, relayed to the pod's node agent, on
//! the real Docker daemon: a container's output, tail and the previous
//! instance; a command's output, stdin and exit code; the agent refusing a
//! caller without the cluster's token.

use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::core::v1::pods_client::PodsClient;
use moor_api::core::v1::{
    Container, Node, Pod, PodExecRequest, PodExecStart, PodLogsRequest, PodSpec,
};
use moor_api::meta::v1::ObjectMeta;
use moor_api::node::v1::node_agent_client::NodeAgentClient;
use moor_integration_tests::Cluster;
use moor_testkit::assert_eventually;
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(90);

fn pod(name: &str, containers: Vec<Container>, restart: &str) -> Pod {
    let mut pod = Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers,
            restart_policy: restart.into(),
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.set_type_meta();
    pod
}

fn echo(name: &str, args: &[&str]) -> Container {
    Container {
        name: name.into(),
        image: "moor/echo:0.1".into(),
        image_pull_policy: "Never".into(),
        args: args.iter().map(|a| (*a).to_string()).collect(),
        ..Default::default()
    }
}

/// The whole log of `container` of `pod` as text (stdout and stderr).
async fn logs(cluster: &Cluster, req: PodLogsRequest) -> Result<String, tonic::Status> {
    let mut pods = PodsClient::new(moor_rpc::channel(&cluster.url).expect("channel"));
    let mut stream = pods.logs(req).await?.into_inner();
    let mut text = String::new();
    while let Some(chunk) = stream.message().await? {
        text.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    Ok(text)
}

/// Runs `command` in `pod`, feeding `stdin`: (stdout, stderr, exit code).
async fn exec(
    cluster: &Cluster,
    pod: &str,
    command: &[&str],
    stdin: Option<&str>,
) -> Result<(String, String, Option<i32>), tonic::Status> {
    let mut pods = PodsClient::new(moor_rpc::channel(&cluster.url).expect("channel"));
    let mut requests = vec![PodExecRequest {
        start: Some(PodExecStart {
            name: pod.into(),
            command: command.iter().map(|c| (*c).to_string()).collect(),
            stdin: stdin.is_some(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(input) = stdin {
        requests.push(PodExecRequest {
            stdin: input.as_bytes().to_vec(),
            ..Default::default()
        });
        requests.push(PodExecRequest {
            stdin_closed: true,
            ..Default::default()
        });
    }
    let mut responses = pods
        .exec(futures::stream::iter(requests))
        .await?
        .into_inner();
    let (mut out, mut err, mut code) = (String::new(), String::new(), None);
    while let Some(response) = responses.message().await? {
        out.push_str(&String::from_utf8_lossy(&response.stdout));
        err.push_str(&String::from_utf8_lossy(&response.stderr));
        if response.exit_code.is_some() {
            code = response.exit_code;
        }
    }
    Ok((out, err, code))
}

async fn phase(cluster: &Cluster, name: &str) -> (String, i32) {
    let pod = cluster
        .client
        .api::<Pod>()
        .get("default", name)
        .await
        .ok()
        .and_then(|p| p.status)
        .unwrap_or_default();
    let restarts = pod.container_statuses.iter().map(|c| c.restart_count).sum();
    (pod.phase, restarts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_reach_the_container_through_the_apiserver() {
    let cluster = Cluster::start("pod-io", None)
        .await
        .expect("cluster starts");
    let pods = cluster.client.api::<Pod>();
    pods.create(&pod(
        "server",
        vec![echo("web", &["serve", "--port", "8080"])],
        "Always",
    ))
    .await
    .expect("pod created");
    // Writes two lines and exits 0; restarted each time (Always), so it has
    // a previous instance.
    pods.create(&pod(
        "talker",
        vec![
            echo("main", &["write", "/dev/stderr", "to stderr\n"]),
            echo("idle", &["serve", "--port", "9090"]),
        ],
        "Always",
    ))
    .await
    .expect("pod created");
    assert_eventually!(
        phase(&cluster, "server").await.0 == "Running" && phase(&cluster, "talker").await.1 >= 1,
        PATIENCE,
        "server running and talker restarted at least once"
    );

    // Logs: the current instance, the last line only, the previous one.
    let req = |container: &str| PodLogsRequest {
        name: "server".into(),
        container: container.into(),
        ..Default::default()
    };
    assert_eventually!(
        logs(&cluster, req(""))
            .await
            .is_ok_and(|l| l.contains("serving on :8080")),
        PATIENCE,
        "the server's log"
    );
    let talker = |previous: bool, tail: Option<i64>| PodLogsRequest {
        name: "talker".into(),
        container: "main".into(),
        previous,
        tail_lines: tail,
        ..Default::default()
    };
    // The current instance may be between start and exit: wait for its lines.
    assert_eventually!(
        logs(&cluster, talker(false, Some(1)))
            .await
            .is_ok_and(|l| l == "wrote /dev/stderr\n"),
        PATIENCE,
        "tail 1 of the current instance is its last line"
    );
    let previous = logs(&cluster, talker(true, None)).await.expect("previous");
    assert!(
        previous.contains("to stderr") && previous.contains("wrote /dev/stderr"),
        "previous instance: {previous:?}"
    );
    let err = logs(
        &cluster,
        PodLogsRequest {
            name: "talker".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("two containers need a name");
    assert!(
        err.message().contains("one of [idle, main]"),
        "{}",
        err.message()
    );
    let err = logs(
        &cluster,
        PodLogsRequest {
            name: "nope".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("no such pod");
    assert_eq!(err.code(), Code::NotFound, "{err}");

    // Follow: the stream stays open and delivers what the container writes.
    let mut client = PodsClient::new(moor_rpc::channel(&cluster.url).expect("channel"));
    let mut follow = client
        .logs(PodLogsRequest {
            name: "server".into(),
            follow: true,
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, follow.next())
        .await
        .expect("a first chunk")
        .expect("stream open")
        .expect("chunk");
    assert!(String::from_utf8_lossy(&first.data).contains("serving on"));
    drop(follow);

    // Exec: output, exit code, stdin.
    let (out, err, code) = exec(&cluster, "server", &["/echo", "write", "/x", "hi"], None)
        .await
        .expect("exec");
    assert_eq!((out.trim(), code), ("wrote /x", Some(0)), "stderr: {err}");
    let (_, _, code) = exec(&cluster, "server", &["/echo", "exit", "3"], None)
        .await
        .expect("exec");
    assert_eq!(code, Some(3), "the command's exit code comes back");
    let (out, _, code) = exec(&cluster, "server", &["/echo", "cat"], Some("ping\npong\n"))
        .await
        .expect("exec with stdin");
    assert_eq!((out.as_str(), code), ("ping\npong\n", Some(0)));
    let (_, err, code) = exec(
        &cluster,
        "server",
        &["/echo", "write", "/dev/stderr", "e"],
        None,
    )
    .await
    .expect("exec");
    assert_eq!((err.as_str(), code), ("e", Some(0)), "stderr apart");
    let failed = exec(&cluster, "server", &["/no-such-binary"], None).await;
    assert!(
        failed.is_err() || failed.as_ref().is_ok_and(|(_, _, c)| *c != Some(0)),
        "a missing binary fails: {failed:?}"
    );

    // The agent itself refuses callers without the token.
    let node = cluster
        .client
        .api::<Node>()
        .get("", &cluster.node)
        .await
        .expect("node");
    let port = node
        .status
        .and_then(|s| s.daemon_endpoints)
        .and_then(|d| d.kubelet_endpoint)
        .map_or(0, |e| e.port);
    assert_ne!(port, 0, "the node reports its agent's port");
    let mut agent = NodeAgentClient::new(
        moor_rpc::channel(&format!("http://127.0.0.1:{port}")).expect("channel"),
    );
    let refused = agent
        .logs(PodLogsRequest {
            name: "server".into(),
            ..Default::default()
        })
        .await
        .expect_err("no token, no logs");
    assert_eq!(refused.code(), Code::Unauthenticated);
    cluster.stop().await;
}
