//! Service variables and cluster DNS on the fake runtime, read from the
//! specs the agent created containers with.

mod support;

use std::sync::Arc;
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{
    Container, EnvVar, Namespace, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use moor_api::meta::v1::ObjectMeta;
use moor_client::Client;
use moor_integration_tests::Apiserver;
use moor_node::Config;
use moor_runtime::{ContainerRuntime, ContainerSpec, Fake, labels};
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

/// An apiserver and one agent on a fake runtime whose specs the test reads.
struct Node {
    _apiserver: Apiserver,
    _dir: tempfile::TempDir,
    client: Client,
    fake: Arc<Fake>,
    shutdown: CancellationToken,
}

impl Node {
    async fn start(name: &str) -> Self {
        let apiserver = Apiserver::start().await.expect("apiserver starts");
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url).expect("client");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(url, name, dir.path().to_path_buf());
        config.heartbeat = Duration::from_millis(500);
        config.pod_resync = Duration::from_millis(200);
        config.cluster_dns = Some([10, 96, 0, 10].into());
        let fake = Arc::new(Fake::new(4, 1 << 30));
        let shutdown = CancellationToken::new();
        tokio::spawn(moor_node::run_with_runtime(
            config,
            fake.clone(),
            shutdown.clone(),
        ));
        Self {
            _apiserver: apiserver,
            _dir: dir,
            client,
            fake,
            shutdown,
        }
    }

    async fn namespace(&self, name: &str) {
        let mut ns = Namespace::default();
        ns.meta_mut().name = name.into();
        ns.set_type_meta();
        self.client
            .api::<Namespace>()
            .create(&ns)
            .await
            .expect("namespace created");
    }

    /// Creates a service; returns the cluster IP it got.
    async fn service(
        &self,
        namespace: &str,
        name: &str,
        ip: &str,
        ports: &[(&str, i32)],
    ) -> String {
        let mut service = Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: namespace.into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: ip.into(),
                ports: ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: (*name).into(),
                        port: *port,
                        protocol: "TCP".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        service.set_type_meta();
        let created = self
            .client
            .api::<Service>()
            .create(&service)
            .await
            .expect("service created");
        created.spec.unwrap_or_default().cluster_ip
    }

    /// Creates and binds `pod`; returns the specs of its sandbox and its
    /// container `main` once the agent created them.
    async fn run(&self, pod: Pod) -> (ContainerSpec, ContainerSpec) {
        let meta = support::create_and_bind(&self.client, pod, "links")
            .await
            .metadata
            .unwrap_or_default();
        let mut found: Option<(ContainerSpec, ContainerSpec)>;
        assert_eventually!(
            {
                found = self.specs(&meta.uid).await;
                found.is_some()
            },
            Duration::from_secs(30),
            "pod {} gets its sandbox and container",
            meta.name
        );
        found.expect("checked above")
    }

    async fn specs(&self, uid: &str) -> Option<(ContainerSpec, ContainerSpec)> {
        let containers = self
            .fake
            .list_containers(&[(labels::POD_UID, uid)])
            .await
            .ok()?;
        let sandbox = containers.iter().find(|c| c.is_sandbox())?;
        let main = containers
            .iter()
            .find(|c| c.label(labels::CONTAINER_NAME) == "main")?;
        Some((self.fake.spec(&sandbox.id)?, self.fake.spec(&main.id)?))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn pod(namespace: &str, name: &str, tweak: impl FnOnce(&mut PodSpec)) -> Pod {
    let mut spec = PodSpec {
        containers: vec![Container {
            name: "main".into(),
            image: "moor/echo:0.1".into(),
            env: vec![EnvVar {
                name: "WEB_SERVICE_HOST".into(),
                value: "mine".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    tweak(&mut spec);
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..Default::default()
        }),
        spec: Some(spec),
        ..Default::default()
    }
}

/// The text of the host file `spec` bind-mounts at `container_path`.
fn mounted(spec: &ContainerSpec, container_path: &str) -> String {
    let mount = spec
        .mounts
        .iter()
        .find(|m| m.container_path == container_path)
        .unwrap_or_else(|| panic!("{container_path} is mounted: {:?}", spec.mounts));
    std::fs::read_to_string(&mount.host_path).expect("the pod's file is written")
}

/// The `NAME=value` entries of `env` whose name starts with `prefix`.
fn with_prefix<'a>(env: &'a [String], prefix: &str) -> Vec<&'a str> {
    env.iter()
        .map(String::as_str)
        .filter(|e| e.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_the_variables_of_existing_services_and_cluster_dns() {
    let node = Node::start("links").await;
    let ip = node
        .service("default", "redis-primary", "10.96.0.11", &[("redis", 6379)])
        .await;
    assert_eq!(ip, "10.96.0.11");
    let web = node
        .service("default", "web", "", &[("http", 80), ("https", 443)])
        .await;
    node.service("default", "db", "None", &[("", 5432)]).await;

    let (_, main) = node.run(pod("default", "client", |_| {})).await;

    let mut redis = with_prefix(&main.env, "REDIS_PRIMARY_");
    redis.sort_unstable();
    assert_eq!(
        redis,
        [
            "REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379",
            "REDIS_PRIMARY_PORT_6379_TCP=tcp://10.96.0.11:6379",
            "REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.96.0.11",
            "REDIS_PRIMARY_PORT_6379_TCP_PORT=6379",
            "REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp",
            "REDIS_PRIMARY_SERVICE_HOST=10.96.0.11",
            "REDIS_PRIMARY_SERVICE_PORT=6379",
            "REDIS_PRIMARY_SERVICE_PORT_REDIS=6379",
        ]
    );
    assert_eq!(
        with_prefix(&main.env, "WEB_SERVICE_HOST="),
        ["WEB_SERVICE_HOST=mine"],
        "the container's own variable wins"
    );
    let web_port = format!("WEB_PORT=tcp://{web}:80");
    assert!(main.env.contains(&web_port), "{:?}", main.env);
    assert!(main.env.iter().any(|e| e == "WEB_SERVICE_PORT_HTTPS=443"));
    assert!(
        with_prefix(&main.env, "DB_").is_empty(),
        "a headless service has no variables: {:?}",
        main.env
    );

    assert_eq!(
        mounted(&main, "/etc/resolv.conf"),
        "nameserver 10.96.0.10\n\
         search default.svc.cluster.local svc.cluster.local cluster.local\n\
         options ndots:5\n"
    );
    let hosts = mounted(&main, "/etc/hosts");
    assert!(hosts.starts_with("# moor-managed hosts file.\n"), "{hosts}");
    assert!(hosts.ends_with("\tclient\n"), "the pod's own line: {hosts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_links_off_and_dns_policy_default_get_neither() {
    let node = Node::start("links").await;
    node.service("default", "redis", "", &[("", 6379)]).await;

    let quiet = pod("default", "quiet", |spec| {
        spec.enable_service_links = Some(false);
        spec.dns_policy = "Default".into();
    });
    let (_, main) = node.run(quiet).await;
    assert_eq!(main.env, ["WEB_SERVICE_HOST=mine"]);
    let resolv = mounted(&main, "/etc/resolv.conf");
    assert!(
        !resolv.contains("10.96.0.10"),
        "the host's settings, not the cluster DNS: {resolv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_searches_its_own_namespace_first_and_sees_its_services() {
    let node = Node::start("links").await;
    node.namespace("team-a").await;
    node.service("default", "elsewhere", "", &[("", 80)]).await;
    let ip = node.service("team-a", "api", "", &[("", 8080)]).await;

    let (_, main) = node.run(pod("team-a", "client", |_| {})).await;
    let resolv = mounted(&main, "/etc/resolv.conf");
    assert!(
        resolv.contains("\nsearch team-a.svc.cluster.local "),
        "{resolv}"
    );
    assert!(main.env.contains(&format!("API_SERVICE_HOST={ip}")));
    assert!(
        with_prefix(&main.env, "ELSEWHERE_").is_empty(),
        "services of other namespaces are not linked"
    );
}
