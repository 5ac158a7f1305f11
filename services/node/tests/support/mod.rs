//! Shared setup of the node agent tests: an in-process apiserver, an agent
//! on its own node name and Docker network, pod builders, and cleanup of
//! everything a test created (by label), also when it panics.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{
    Binding, Container, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, Pod,
    PodSpec, Volume, VolumeMount,
};
use moor_api::meta::v1::{ObjectMeta, ObjectReference};
use moor_client::Client;
use moor_integration_tests::Apiserver;
use moor_node::{Config, RuntimeKind};
use moor_runtime::{ContainerRuntime, Docker};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything that involves Docker.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// An apiserver plus one node agent; cleans up its containers, network and
/// data dir on drop.
pub struct Cluster {
    pub apiserver: Apiserver,
    pub client: Client,
    pub config: Config,
    pub data_dir: tempfile::TempDir,
    pub docker: Arc<Docker>,
    agent: Option<(CancellationToken, JoinHandle<()>)>,
}

static IMAGES: OnceCell<()> = OnceCell::const_new();

/// Connects to Docker and makes sure moor's images exist (building them
/// with images/build.sh once when missing). Fails with instructions otherwise.
pub async fn docker() -> Docker {
    let docker = Docker::connect("moor").await.unwrap_or_else(|err| {
        panic!(
            "these tests need a running Docker Engine (install docker.io and start dockerd): {err}"
        )
    });
    IMAGES
        .get_or_init(|| async {
            let missing = [
                docker.image_id("moor/pause:0.1").await,
                docker.image_id("moor/echo:0.1").await,
            ]
            .iter()
            .any(|id| !matches!(id, Ok(Some(_))));
            if missing {
                let script =
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../images/build.sh");
                let status = tokio::process::Command::new(&script)
                    .status()
                    .await
                    .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
                assert!(
                    status.success(),
                    "{} failed; run it by hand to see why",
                    script.display()
                );
            }
        })
        .await;
    docker
}

impl Cluster {
    /// An apiserver and a docker node agent with short back-offs.
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, |_| {}).await
    }

    /// Like [`Cluster::start`], with settings changed by `tweak`.
    pub async fn start_with(test: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let docker = Arc::new(docker().await);
        let apiserver = Apiserver::start().await.expect("apiserver starts");
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url).expect("client");
        let data_dir = tempfile::tempdir().expect("temp dir");
        let name = format!("{test}-{}", std::process::id());
        let mut config = Config::new(url, name.clone(), data_dir.path().to_path_buf());
        config.runtime = RuntimeKind::Docker;
        config.heartbeat = Duration::from_secs(1);
        config.pod_resync = Duration::from_millis(300);
        config.gc_interval = Duration::from_secs(1);
        config.backoff_base = Duration::from_secs(1);
        config.backoff_max = Duration::from_secs(4);
        // A network per test, so tests running side by side can remove theirs.
        config.network = format!("moor-test-{name}");
        tweak(&mut config);
        let mut cluster = Self {
            apiserver,
            client,
            config,
            data_dir,
            docker,
            agent: None,
        };
        cluster.start_agent();
        cluster
    }

    /// Starts the agent (again).
    pub fn start_agent(&mut self) {
        let token = CancellationToken::new();
        let config = self.config.clone();
        let shutdown = token.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = moor_node::run(config, shutdown).await {
                eprintln!("node agent failed: {err}");
            }
        });
        self.agent = Some((token, task));
    }

    /// Stops the agent and waits for it; containers keep running.
    pub async fn stop_agent(&mut self) {
        if let Some((token, task)) = self.agent.take() {
            token.cancel();
            task.await.expect("agent task");
        }
    }

    /// Ends the agent at once, as a SIGKILL would: whatever it was doing
    /// is dropped where it stood; containers keep running.
    pub async fn kill_agent(&mut self) {
        if let Some((_, task)) = self.agent.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn node(&self) -> &str {
        &self.config.name
    }

    /// Deletes pod `name` of `default` with a grace period of `grace`
    /// seconds; returns it as the apiserver answered (marked for deletion,
    /// or as it was when removed at once).
    pub async fn delete_pod(&self, name: &str, grace: i64) -> Pod {
        let params = moor_client::DeleteParams {
            grace_period_seconds: Some(grace),
            ..Default::default()
        };
        self.client
            .api::<Pod>()
            .delete("default", name, &params)
            .await
            .expect("pod deleted")
    }

    /// Creates `pod` and binds it to this node; returns it as stored.
    pub async fn run_pod(&self, pod: Pod) -> Pod {
        create_and_bind(&self.client, pod, self.node()).await
    }

    /// The pod now, or `None` once it is gone.
    pub async fn pod(&self, name: &str) -> Option<Pod> {
        match self.client.api::<Pod>().get("default", name).await {
            Ok(pod) => Some(pod),
            Err(moor_client::Error::NotFound(_)) => None,
            Err(err) => panic!("get pod {name}: {err}"),
        }
    }

    /// The containers of a pod uid, as Docker reports them.
    pub async fn containers(&self, uid: &str) -> Vec<moor_runtime::ContainerInfo> {
        self.docker
            .list_containers(&[(moor_runtime::labels::POD_UID, uid)])
            .await
            .expect("docker lists containers")
    }
}

/// Creates `pod` and binds it to `node`; returns it as stored.
pub async fn create_and_bind(client: &Client, mut pod: Pod, node: &str) -> Pod {
    pod.set_type_meta();
    let pods = client.api::<Pod>();
    let created = pods.create(&pod).await.expect("pod created");
    let meta = created.metadata.clone().unwrap_or_default();
    let binding = Binding {
        metadata: Some(ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            ..Default::default()
        }),
        target: Some(ObjectReference {
            kind: "Node".into(),
            name: node.into(),
            ..Default::default()
        }),
    };
    pods.bind(&binding).await.expect("pod bound")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((token, task)) = self.agent.take() {
            token.cancel();
            // Wait for the agent to stop, or a sync in flight (a probe's
            // restart, say) creates a container after the cleanup below.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let _ = tokio::task::block_in_place(|| runtime.block_on(task));
            }
        }
        moor_integration_tests::remove_docker_leftovers(&self.config.name, &self.config.network);
    }
}

/// A pod named `name` with these containers and restart policy.
pub fn pod(name: &str, restart_policy: &str, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers,
            restart_policy: restart_policy.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container of the echo image running `args`, with POD_NAME and POD_IP set.
pub fn echo(name: &str, args: &[&str]) -> Container {
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Container {
        name: name.into(),
        image: "moor/echo:0.1".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(field("metadata.name")),
                ..Default::default()
            },
            EnvVar {
                name: "POD_IP".into(),
                value_from: Some(field("status.podIP")),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// Adds volumes to a pod.
pub fn with_volumes(mut pod: Pod, volumes: Vec<Volume>) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = volumes;
    }
    pod
}

/// A pod `name` whose container `main` serves and ignores SIGTERM,
/// appending a line to `host_dir/term` for each one it gets (it exits on
/// SIGINT); `adjust` changes the container (another image, say).
pub fn sigterm_trapping_pod(
    name: &str,
    host_dir: &std::path::Path,
    adjust: impl FnOnce(&mut Container),
) -> Pod {
    let mut main = echo("main", &["serve", "--trap-sigterm", "/host/term"]);
    main.volume_mounts = vec![VolumeMount {
        name: "host".into(),
        mount_path: "/host".into(),
        ..Default::default()
    }];
    adjust(&mut main);
    let volume = Volume {
        name: "host".into(),
        host_path: Some(HostPathVolumeSource {
            path: host_dir.display().to_string(),
            r#type: String::new(),
        }),
        ..Default::default()
    };
    with_volumes(pod(name, "Always", vec![main]), vec![volume])
}

/// The status of container `name` in `pod`.
pub fn container_status(pod: &Pod, name: &str) -> Option<moor_api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .find(|s| s.name == name)
        .cloned()
}

/// The phase of `pod`.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// `http://ADDR/` fetched from the test process: (status line, body).
pub async fn http_get(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// Waits until pod `name` satisfies `check`; panics with `what` and the last
/// pod seen after [`PATIENCE`].
pub async fn wait_pod(
    cluster: &Cluster,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let mut last: Option<Pod>;
    moor_testkit::assert_eventually!(
        {
            last = cluster.pod(name).await;
            last.as_ref().is_some_and(&check)
        },
        PATIENCE,
        "pod {name}: {what} not reached; last seen: {:#?}",
        last.as_ref().and_then(|p| p.status.as_ref())
    );
    last.expect("checked above")
}
