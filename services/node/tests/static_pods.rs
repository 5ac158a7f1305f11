//! Static pods from `--manifest-dir`, on the fake runtime: mirror pods in
//! the API, what runs comes from the file, deleted mirrors come back,
//! removed files stop their pods, bad files are skipped.

mod support;

use std::sync::Arc;
use std::time::Duration;

use moor_api::core::v1::{Node, Pod};
use moor_client::{Client, DeleteParams};
use moor_integration_tests::Apiserver;
use moor_node::{Config, RuntimeKind};
use moor_runtime::{ContainerRuntime, ContainerState, Fake, labels};
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

const WEB: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {tier: control-plane}
spec:
  containers:
  - name: main
    image: moor/echo:0.1
    args: [serve]
";

const BAD: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  containers:
  - name: main
    imagee: moor/echo:0.1
";

struct Node1 {
    _apiserver: Apiserver,
    client: Client,
    fake: Arc<Fake>,
    name: String,
    manifests: tempfile::TempDir,
    _data: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Node1 {
    async fn start() -> Self {
        let apiserver = Apiserver::start().await.expect("apiserver starts");
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url).expect("client");
        let data = tempfile::tempdir().expect("temp dir");
        let manifests = tempfile::tempdir().expect("temp dir");
        let name = "static-node".to_owned();
        let mut config = Config::new(url, name.clone(), data.path().to_path_buf());
        config.runtime = RuntimeKind::Fake;
        config.heartbeat = Duration::from_secs(1);
        config.pod_resync = Duration::from_millis(200);
        config.gc_interval = Duration::from_millis(300);
        config.manifest_dir = Some(manifests.path().to_path_buf());
        config.manifest_interval = Duration::from_millis(200);
        let fake = Arc::new(Fake::new(4, 1 << 30));
        let shutdown = CancellationToken::new();
        let runtime: Arc<dyn ContainerRuntime> = fake.clone();
        tokio::spawn(moor_node::run_with_runtime(
            config,
            runtime,
            shutdown.clone(),
        ));
        Self {
            _apiserver: apiserver,
            client,
            fake,
            name,
            manifests,
            _data: data,
            shutdown,
        }
    }

    async fn mirror(&self) -> Option<Pod> {
        let name = format!("web-{}", self.name);
        match self.client.api::<Pod>().get("default", &name).await {
            Ok(pod) => Some(pod),
            Err(moor_client::Error::NotFound(_)) => None,
            Err(err) => panic!("get mirror pod: {err}"),
        }
    }

    /// Ids of the running app containers of the static pod `web`.
    async fn running(&self) -> Vec<String> {
        let name = format!("web-{}", self.name);
        let mut ids: Vec<String> = self
            .fake
            .list_containers(&[(labels::POD_NAME, &name)])
            .await
            .expect("fake lists containers")
            .into_iter()
            .filter(|c| !c.is_sandbox() && c.state == ContainerState::Running)
            .map(|c| c.id)
            .collect();
        ids.sort();
        ids
    }
}

impl Drop for Node1 {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn running_phase(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase == "Running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_run_as_static_pods_with_mirror_pods() {
    let node = Node1::start().await;
    std::fs::write(node.manifests.path().join("bad.yaml"), BAD).unwrap();
    std::fs::write(node.manifests.path().join("web.yaml"), WEB).unwrap();

    let mut mirror: Option<Pod>;
    assert_eventually!(
        {
            mirror = node.mirror().await;
            mirror.as_ref().is_some_and(running_phase)
        },
        PATIENCE,
        "the mirror pod of web.yaml, Running; last seen {mirror:#?}"
    );
    let mirror = mirror.unwrap();
    let meta = mirror.metadata.clone().unwrap();
    assert_eq!(meta.labels["tier"], "control-plane");
    assert_eq!(meta.annotations["kubernetes.io/config.source"], "file");
    let hash = meta.annotations["kubernetes.io/config.mirror"].clone();
    assert_eq!(meta.annotations["kubernetes.io/config.hash"], hash);
    assert_eq!(mirror.spec.as_ref().unwrap().node_name, node.name);
    let owner = &meta.owner_references[..];
    let [owner] = owner else {
        panic!("one owner: {owner:?}")
    };
    let node_object = node.client.api::<Node>().get("", &node.name).await.unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Node", node.name.as_str(), Some(true))
    );
    assert_eq!(owner.uid, node_object.metadata.unwrap().uid);
    // The containers carry the static pod's uid (the manifest's hash), not
    // the mirror's.
    let running = node.running().await;
    assert_eq!(running.len(), 1, "one app container runs");
    let by_hash = node
        .fake
        .list_containers(&[(labels::POD_UID, &hash)])
        .await
        .unwrap();
    assert!(by_hash.iter().any(|c| c.id == running[0]));
    // The bad manifest was skipped: no mirror for it.
    let bad = node
        .client
        .api::<Pod>()
        .get("default", "bad-static-node")
        .await;
    assert!(
        matches!(bad, Err(moor_client::Error::NotFound(_))),
        "{bad:?}"
    );

    // An edit through the API changes nothing that runs.
    let mut edited = mirror.clone();
    edited
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "edited".into());
    node.client.api::<Pod>().update(&edited).await.unwrap();

    // A deleted mirror pod is recreated; the containers stay.
    let params = DeleteParams::default();
    node.client
        .api::<Pod>()
        .delete("default", &meta.name, &params)
        .await
        .unwrap();
    let mut again: Option<Pod>;
    assert_eventually!(
        {
            again = node.mirror().await;
            again.as_ref().is_some_and(|p| {
                p.metadata.as_ref().unwrap().uid != meta.uid
                    && p.metadata.as_ref().unwrap().deletion_timestamp.is_none()
                    && running_phase(p)
            })
        },
        PATIENCE,
        "a new mirror pod after the delete; last seen {again:#?}"
    );
    assert_eq!(node.running().await, running, "the same container runs");
    assert_eq!(
        again.unwrap().metadata.unwrap().labels["tier"],
        "control-plane",
        "the new mirror comes from the manifest"
    );

    // Removing the file stops the pod and removes its mirror.
    std::fs::remove_file(node.manifests.path().join("web.yaml")).unwrap();
    assert_eventually!(
        node.mirror().await.is_none() && node.running().await.is_empty(),
        PATIENCE,
        "the mirror pod and its containers are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_manifest_replaces_the_pod() {
    let node = Node1::start().await;
    let path = node.manifests.path().join("web.yaml");
    std::fs::write(&path, WEB).unwrap();
    let hash =
        |p: &Pod| p.metadata.as_ref().unwrap().annotations["kubernetes.io/config.mirror"].clone();
    let mut first: Option<Pod>;
    assert_eventually!(
        {
            first = node.mirror().await;
            first.as_ref().is_some_and(running_phase)
        },
        PATIENCE
    );
    let first = hash(&first.unwrap());
    std::fs::write(&path, WEB.replace("[serve]", "[serve, --port, \"9090\"]")).unwrap();
    let mut second: Option<Pod>;
    assert_eventually!(
        {
            second = node.mirror().await;
            second
                .as_ref()
                .is_some_and(|p| hash(p) != first && running_phase(p))
        },
        PATIENCE,
        "the mirror of the edited manifest; last seen {second:#?}"
    );
    let args = &second.unwrap().spec.unwrap().containers[0].args;
    assert_eq!(args, &["serve", "--port", "9090"]);
    let old = node
        .fake
        .list_containers(&[(labels::POD_UID, &first)])
        .await
        .unwrap();
    assert_eventually!(
        node.fake
            .list_containers(&[(labels::POD_UID, &first)])
            .await
            .unwrap()
            .is_empty(),
        PATIENCE,
        "the old pod's containers are removed (were {old:?})"
    );
}
