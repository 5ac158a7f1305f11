//! `moor join` as a new user runs it on a second machine (here a second
//! process with its own home and data directory): `moor up`, then `moor
//! token create`, then `moor join` with the token; the node registers, a pod
//! placed on it runs, and its logs and exec work through the apiserver.
//! Rejoining with the same data directory needs no token. Every misuse of
//! a token is refused and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use moor_api::core::v1::{Container, Node, Pod, PodSpec, Secret};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, ListParams};
use moor_testkit::assert_eventually;
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(120);

fn moor(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moor"));
    command
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_CONFIG")
        .env_remove("MOOR_TOKEN")
        .kill_on_drop(true);
    command
}

/// Runs a `moor` command to its end: exit code, stdout, stderr.
async fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = moor(home, args).output().await.expect("moor runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn moorctl_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_moor")).with_file_name("moorctl")
}

/// Runs moorctl as the administrator `moor up` made in `home`.
async fn moorctl(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(moorctl_path())
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_CONFIG")
        .env_remove("MOOR_SERVER")
        .output()
        .await
        .expect("moorctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn admin_client(home: &Path) -> Client {
    let target = moorctl::config::target(None, None, &home.join(".moor/config")).unwrap();
    Client::connect(&target.server, &target.credentials).unwrap()
}

/// `moor join` in the background on its own home and data directory.
fn join(home: &Path, server: &str, token: Option<&str>, name: &str, data: &Path) -> Child {
    let data = data.to_str().unwrap();
    let mut args = vec![
        "join",
        server,
        "--name",
        name,
        "--data-dir",
        data,
        "--agent-listen",
        "0.0.0.0:0",
        // `moor up` runs this host's proxy already.
        "--no-proxy",
        "--log",
        "warn",
    ];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    let mut command = moor(home, &args);
    command.stdout(Stdio::null());
    command.spawn().expect("moor join starts")
}

async fn node_ready(client: &Client, name: &str) -> bool {
    client.api::<Node>().get("", name).await.is_ok_and(|node| {
        node.status
            .unwrap_or_default()
            .conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// The id of a token: the six characters between its last `-` and the `.`.
fn token_id(token: &str) -> String {
    let tail = token
        .rsplit_once('-')
        .expect("MOOR1-<digest>-<id>.<secret>")
        .1;
    tail.split('.').next().unwrap_or_default().to_string()
}

async fn create_token(home: &Path, ttl: &str) -> String {
    let (code, out, err) = run(
        home,
        &[
            "token",
            "create",
            "--ttl",
            ttl,
            "--description",
            "join test",
        ],
    )
    .await;
    assert_eq!(code, 0, "moor token create: {err}");
    out.trim().to_string()
}

/// Removes the containers of these nodes, on failure too.
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for node in &self.0 {
            moor_integration_tests::remove_docker_leftovers(node, "moor-join-unused-network");
        }
        moor_integration_tests::remove_pod_network_leftovers();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_joins_with_a_token_and_every_misuse_of_one_is_refused() {
    let id = std::process::id();
    let first = format!("join-up-{id}");
    let joined = format!("join-second-{id}");
    let _leftovers = Leftovers(vec![first.clone(), joined.clone()]);
    let home = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    let server = format!("https://127.0.0.1:{port}");
    let _up = moor(
        home.path(),
        &[
            "up",
            "--no-registry",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            &first,
            "--log",
            "warn",
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .expect("moor up starts");
    assert_eventually!(
        home.path().join(".moor/config").exists(),
        PATIENCE,
        "moor up writes its context"
    );
    let admin = admin_client(home.path());
    assert_eventually!(
        node_ready(&admin, &first).await,
        PATIENCE,
        "the first node is Ready"
    );

    // The joining machine: its own home (no admin context) and data.
    let machine = tempfile::tempdir().unwrap();
    let data = machine.path().join("node");
    let token = create_token(home.path(), "1h").await;
    let first_id = token_id(&token);
    let (code, listed, err) = run(home.path(), &["token", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        listed.contains(&first_id) && listed.contains("join test"),
        "{listed}"
    );
    assert!(
        !listed.contains(token.rsplit_once('.').unwrap().1),
        "list shows no secret"
    );

    let started = tokio::time::Instant::now();
    let mut second = join(machine.path(), &server, Some(&token), &joined, &data);
    assert_eventually!(
        node_ready(&admin, &joined).await,
        PATIENCE,
        "the joined node is Ready"
    );
    println!("moor join to a Ready node: {:?}", started.elapsed());
    assert!(data.join("pki/node.key").exists(), "the node keeps its key");

    // A pod placed on the joined node runs; logs and exec go through the apiserver.
    let pod_name = format!("join-pod-{id}");
    let pod = Pod {
        metadata: Some(ObjectMeta {
            name: pod_name.clone(),
            ..Default::default()
        }),
        // The scheduler places it by the node's hostname label.
        spec: Some(PodSpec {
            node_selector: [("kubernetes.io/hostname".to_string(), joined.clone())].into(),
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
    admin.api::<Pod>().create(&pod).await.unwrap();
    assert_eventually!(
        admin
            .api::<Pod>()
            .get("default", &pod_name)
            .await
            .is_ok_and(|p| p.status.unwrap_or_default().phase == "Running"),
        PATIENCE,
        "the pod on the joined node runs"
    );
    let (code, logs, err) = moorctl(home.path(), &["logs", &pod_name]).await;
    assert_eq!(code, 0, "{err}");
    assert!(logs.contains("serving on :8080"), "{logs}");
    let (code, out, err) = moorctl(
        home.path(),
        &["exec", &pod_name, "--", "/echo", "write", "/joined", "yes"],
    )
    .await;
    assert_eq!(code, 0, "exec: {err}{out}");
    assert!(out.contains("wrote /joined"), "{out}");

    // The attempts.
    let mut attempts = 0;
    let mut refused = 0;
    let mut tally = |what: &str, outcome: Result<String, String>| {
        attempts += 1;
        match outcome {
            Err(why) => {
                refused += 1;
                println!("{what}: refused ({})", why.trim());
            }
            Ok(how) => println!("{what}: LET IN ({how})"),
        }
    };
    let spare = tempfile::tempdir().unwrap();
    let attempt_join = |token: String, name: String| {
        let spare = spare.path().to_path_buf();
        let server = server.clone();
        async move {
            let data = spare.join(&name);
            let data = data.to_str().unwrap();
            let out = moor(
                &spare,
                &[
                    "join",
                    &server,
                    "--token",
                    &token,
                    "--name",
                    &name,
                    "--data-dir",
                    data,
                    "--agent-listen",
                    "0.0.0.0:0",
                    "--no-proxy",
                    "--log",
                    "warn",
                ],
            )
            .output();
            // A join that is let in runs until stopped: give it a bound.
            match tokio::time::timeout(Duration::from_secs(20), out).await {
                Ok(Ok(out)) if !out.status.success() => {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
                Ok(Ok(_)) => Ok("exited 0".to_string()),
                Ok(Err(err)) => Err(format!("did not run: {err}")),
                Err(_) => Ok("still running after 20 s".to_string()),
            }
        }
    };

    // A token for another cluster's CA: the joiner stops before sending it.
    let other_ca = moor_pki::Ca::generate("moor-ca", moor_pki::DEFAULT_CA_VALIDITY).unwrap();
    let foreign = moor_pki::Token::generate(other_ca.digest())
        .unwrap()
        .reveal();
    let outcome = attempt_join(foreign, format!("join-foreign-{id}")).await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.contains("does not present the CA the token pins")
                && e.contains("nothing was sent")),
        "{outcome:?}"
    );
    tally("a token pinning another CA", outcome);

    // A revoked token.
    let revoked = create_token(home.path(), "1h").await;
    let revoked_id = token_id(&revoked);
    let (code, _, err) = run(home.path(), &["token", "delete", &revoked_id]).await;
    assert_eq!(code, 0, "{err}");
    tally(
        "a revoked token",
        attempt_join(revoked, format!("join-revoked-{id}")).await,
    );

    // An expired token.
    let expired = create_token(home.path(), "1s").await;
    let expired_id = token_id(&expired);
    assert_eventually!(
        run(home.path(), &["token", "list"])
            .await
            .1
            .lines()
            .any(|l| l.starts_with(&expired_id) && l.contains("expired")),
        Duration::from_secs(30),
        "the short token expires"
    );
    tally(
        "an expired token",
        attempt_join(expired, format!("join-expired-{id}")).await,
    );

    // A good token claiming a name another machine has.
    let outcome = attempt_join(create_token(home.path(), "1h").await, first.clone()).await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.contains("already registered")),
        "{outcome:?}"
    );
    tally("a join under an existing node's name", outcome);

    // A token used for anything but joining.
    let target = moorctl::config::target(None, None, &home.path().join(".moor/config")).unwrap();
    let mut as_token = target.credentials.clone();
    as_token.tls = Some(moor_rpc::ClientTls::new(
        &std::fs::read_to_string(data.join("pki/ca.crt")).unwrap(),
    ));
    as_token.token = Some(create_token(home.path(), "1h").await);
    let outcome = match Client::connect(&server, &as_token)
        .unwrap()
        .api::<Secret>()
        .list(&ListParams::default())
        .await
    {
        Ok(_) => Ok("listed the secrets".to_string()),
        Err(err) => Err(err.to_string()),
    };
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.contains("may only ask for a node certificate")),
        "{outcome:?}"
    );
    tally("a join token reading secrets", outcome);

    // The joined node's own certificate, used beyond what a node may do.
    let node_identity = moor_pki::Identity::load(&data.join("pki"), "node").unwrap();
    let as_node = Client::connect(
        &server,
        &moor_rpc::Credentials {
            tls: Some(
                moor_rpc::ClientTls::new(
                    &std::fs::read_to_string(data.join("pki/ca.crt")).unwrap(),
                )
                .identity(&node_identity),
            ),
            token: None,
        },
    )
    .unwrap();
    let mut other_node = admin.api::<Node>().get("", &first).await.unwrap();
    other_node
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("owned".into(), "yes".into());
    let outcome = as_node.api::<Node>().update_status(&other_node).await;
    let outcome = outcome
        .map(|_| "wrote".to_string())
        .map_err(|e| e.to_string());
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.contains(&format!("node {joined} may not"))),
        "{outcome:?}"
    );
    tally("a node writing another node's status", outcome);
    // A pod of the first node.
    let mut theirs = pod.clone();
    theirs.metadata.as_mut().unwrap().name = format!("join-theirs-{id}");
    theirs.spec.as_mut().unwrap().node_selector.clear();
    theirs.spec.as_mut().unwrap().node_name = first.clone();
    let theirs = admin.api::<Pod>().create(&theirs).await.unwrap();
    let mut forged = theirs.clone();
    forged.status = Some(moor_api::core::v1::PodStatus {
        phase: "Failed".into(),
        ..Default::default()
    });
    let outcome = as_node
        .api::<Pod>()
        .update_status(&forged)
        .await
        .map(|_| "wrote".to_string())
        .map_err(|e| e.to_string());
    tally(
        "a node writing the status of a pod it does not run",
        outcome,
    );
    let outcome = as_node
        .api::<Secret>()
        .list(&ListParams::default())
        .await
        .map(|_| "listed".to_string())
        .map_err(|e| e.to_string());
    tally("a node listing every secret", outcome);
    let outcome = as_node
        .api::<Pod>()
        .delete(
            "default",
            &theirs.metadata.as_ref().unwrap().name,
            &Default::default(),
        )
        .await
        .map(|_| "deleted".to_string())
        .map_err(|e| e.to_string());
    tally("a node deleting a pod it does not run", outcome);
    admin
        .api::<Pod>()
        .delete(
            "default",
            &theirs.metadata.as_ref().unwrap().name,
            &Default::default(),
        )
        .await
        .unwrap();

    // Two machines claiming one new name at the same moment: one wins.
    let race_name = format!("join-race-{id}");
    let claim = |token: String| {
        let server = server.clone();
        let ca_pem = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
        let name = race_name.clone();
        async move {
            let csr = moor_pki::Csr::new(&format!("system:node:{name}"), &[]).unwrap();
            let credentials = moor_rpc::Credentials {
                tls: Some(moor_rpc::ClientTls::new(&ca_pem)),
                token: Some(token),
            };
            let channel = moor_rpc::connect(&server, &credentials).unwrap();
            moor_api::authentication::v1::certificates_client::CertificatesClient::new(channel)
                .sign_node(moor_api::authentication::v1::SignNodeRequest {
                    node_name: name,
                    csr_pem: csr.pem().to_string(),
                })
                .await
                .map(|_| "signed".to_string())
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        }
    };
    let (one, two) = tokio::join!(
        claim(create_token(home.path(), "1h").await),
        claim(create_token(home.path(), "1h").await)
    );
    let (won, lost) = match (one, two) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("exactly one claim wins: {other:?}"),
    };
    assert_eq!(won, "signed");
    assert!(lost.contains("already registered"), "{lost}");
    tally(
        "a second machine claiming a new name at the same moment",
        Err(lost),
    );
    let joined_node = admin.api::<Node>().get("", &joined).await.unwrap();
    let labels = joined_node.metadata.unwrap_or_default().labels;
    for key in [
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "kubernetes.io/hostname",
    ] {
        assert!(
            labels.contains_key(key),
            "the joined node lacks {key}: {labels:?}"
        );
    }

    // The joined node's agent, called directly: only the apiserver may.
    let status = admin
        .api::<Node>()
        .get("", &joined)
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    let ip = status
        .addresses
        .iter()
        .find(|a| a.r#type == "InternalIP")
        .map(|a| a.address.clone())
        .unwrap();
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .unwrap();
    let agent_url = format!("https://{ip}:{port}");
    let ca_pem = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
    let admin_identity = moor_pki::Ca::load(&home.path().join(".moor/data/pki"))
        .unwrap()
        .issue_client(
            "intruder",
            &["system:masters"],
            moor_pki::DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();
    let agent_logs = |identity: Option<moor_pki::Identity>| {
        let mut tls = moor_rpc::ClientTls::new(&ca_pem).domain(joined.clone());
        if let Some(identity) = &identity {
            tls = tls.identity(identity);
        }
        let url = agent_url.clone();
        let pod_name = pod_name.clone();
        async move {
            let credentials = moor_rpc::Credentials {
                tls: Some(tls),
                token: None,
            };
            let channel = moor_rpc::connect(&url, &credentials).map_err(|e| e.to_string())?;
            let mut agent = moor_api::node::v1::node_agent_client::NodeAgentClient::new(channel);
            let call = agent.logs(moor_api::core::v1::PodLogsRequest {
                namespace: "default".into(),
                name: pod_name,
                ..Default::default()
            });
            match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(Ok(_)) => Ok("streamed logs".to_string()),
                Ok(Err(status)) => Err(format!(
                    "{:?} {} {}",
                    status.code(),
                    status.message(),
                    moor_rpc::transport_failure(&status).unwrap_or_default()
                )),
                Err(_) => Err("no answer within 10 s".to_string()),
            }
        }
    };
    tally(
        "a node's agent, called with a node's certificate",
        agent_logs(Some(node_identity.clone())).await,
    );
    tally(
        "a node's agent, called with an administrator's certificate",
        agent_logs(Some(admin_identity)).await,
    );
    tally(
        "a node's agent, called with no certificate",
        agent_logs(None).await,
    );
    assert!(
        admin
            .api::<Secret>()
            .get(
                moor_api::well_known::NODE_AGENT_TOKEN.0,
                moor_api::well_known::NODE_AGENT_TOKEN.1
            )
            .await
            .is_err(),
        "a TLS cluster keeps no agent token"
    );

    println!("attempts refused / attempts: {refused} / {attempts}");
    assert_eq!(refused, attempts, "every misuse is refused");
    for name in ["foreign", "revoked", "expired"] {
        let name = format!("join-{name}-{id}");
        assert!(
            admin.api::<Node>().get("", &name).await.is_err(),
            "{name} registered"
        );
    }

    // Stopped and started again on the same data, the node needs no token.
    second.kill().await.unwrap();
    let _second = join(machine.path(), &server, None, &joined, &data);
    let (code, out, err) = moorctl(
        home.path(),
        &["delete", "pod", &pod_name, "--grace-period", "0"],
    )
    .await;
    assert_eq!(code, 0, "{err}{out}");
    assert_eventually!(
        admin.api::<Pod>().get("default", &pod_name).await.is_err(),
        PATIENCE,
        "the rejoined agent removes the pod: it is back, without a token"
    );
    assert!(node_ready(&admin, &joined).await);
}
