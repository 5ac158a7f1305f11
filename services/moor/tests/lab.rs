//! Pods across hosts, on the lab (`scripts/lab.sh`): three hosts, each a
//! network namespace with its own dockerd, joined by one bridge. The first
//! runs `moor up`, the others `moor join`, all through the binaries; then
//! pods on different hosts talk by pod IP (TCP and UDP, both ways, with
//! their own source address), through a service's cluster IP and DNS name,
//! through a node port on a host without the pod, and out of the cluster
//! through masquerade; images pushed to the first server's registry are
//! pulled by the other hosts, and results-ui runs across them, used in a
//! browser. Needs root; the lab goes away with the test, on failure too.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, Node, ObjectFieldSelector, Pod, PodSpec,
    Service, ServicePort, ServiceSpec,
};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, ListParams};
use moor_testkit::Lab;
use moor_testkit::assert_eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(120);

fn moor_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_moor"))
}

fn moorctl_path() -> PathBuf {
    moor_path().with_file_name("moorctl")
}

/// `moor ARGS` in the namespace of lab host `host`, with its own HOME.
fn moor_on(lab: &Lab, host: usize, home: &Path, args: &[&str]) -> Child {
    let mut command = Command::from(lab.command(host, moor_path()));
    command
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_CONFIG")
        .env_remove("MOOR_TOKEN")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command.spawn().expect("moor starts")
}

/// A `moor` command run from the root namespace as the administrator.
async fn moor(home: &Path, args: &[&str]) -> (i32, String, String) {
    output(Command::new(moor_path()).args(args).env("HOME", home)).await
}

/// moorctl run from the root namespace as the administrator.
async fn moorctl(home: &Path, args: &[&str]) -> (i32, String, String) {
    output(
        Command::new(moorctl_path())
            .args(args)
            .env("HOME", home)
            .env_remove("MOOR_CONFIG")
            .env_remove("MOOR_SERVER"),
    )
    .await
}

async fn output(command: &mut Command) -> (i32, String, String) {
    let out = command.output().await.expect("runs");
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

/// An echo server pod named `name` on node `node`, labelled `app=app`.
fn echo_pod(name: &str, node: &str, app: &str) -> Pod {
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod = Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            labels: HashMap::from([("app".to_owned(), app.to_owned())]),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            node_selector: HashMap::from([("kubernetes.io/hostname".to_owned(), node.to_owned())]),
            containers: vec![Container {
                name: "echo".into(),
                image: "moor/echo:0.1".into(),
                image_pull_policy: "Never".into(),
                args: vec!["serve".into(), "--port".into(), "8080".into()],
                ports: vec![ContainerPort {
                    container_port: 8080,
                    ..Default::default()
                }],
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
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.set_type_meta();
    pod
}

fn service(name: &str, app: &str, node_port: bool) -> Service {
    let mut service = Service {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            selector: HashMap::from([("app".to_owned(), app.to_owned())]),
            r#type: if node_port { "NodePort" } else { "ClusterIP" }.into(),
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80,
                target_port: Some(moor_api::meta::v1::IntOrString {
                    value: Some(moor_api::meta::v1::int_or_string::Value::IntVal(8080)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    service.set_type_meta();
    service
}

/// Pod name → (its node, its IP) once each of `names` runs with an IP.
async fn running(client: &Client, names: &[&str]) -> Option<BTreeMap<String, (String, String)>> {
    let (pods, _) = client
        .api::<Pod>()
        .list(&ListParams::default().namespace("default"))
        .await
        .ok()?;
    let mut found = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.as_ref()?.name.clone();
        let status = pod.status.unwrap_or_default();
        if names.contains(&name.as_str()) && status.phase == "Running" && !status.pod_ip.is_empty()
        {
            found.insert(name, (pod.spec?.node_name, status.pod_ip));
        }
    }
    (found.len() == names.len()).then_some(found)
}

/// `/echo ARGS` inside pod `pod` through `moorctl exec`: its exit code and
/// output.
async fn in_pod(home: &Path, pod: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["exec", pod, "--", "/echo"];
    all.extend_from_slice(args);
    let (code, out, err) = moorctl(home, &all).await;
    (code, format!("{out}{err}"))
}

/// Answers each HTTP request with the caller's address: a server "outside
/// the cluster", in the root namespace.
async fn outside_server(address: Ipv4Addr) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((address, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let body = format!("caller={}\n", peer.ip());
                let response = format!(
                    "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// A cluster on a three-host lab: `moor up` on the first host, `moor
/// join` on the others, all with `flags` (backend, proxy mode).
struct LabCluster {
    // Fields drop in order: the processes before the lab they run in.
    _up: Child,
    joined: Vec<Option<Child>>,
    client: Client,
    names: Vec<String>,
    hosts: Vec<moor_testkit::LabHost>,
    server: String,
    flags: Vec<String>,
    home: tempfile::TempDir,
    lab: Lab,
}

impl LabCluster {
    async fn start(tag: &str, flags: &[&str]) -> Self {
        Self::start_with(tag, flags, &[]).await
    }

    /// [`LabCluster::start`], with `server_flags` for `moor up` alone (the
    /// controller-manager's).
    async fn start_with(tag: &str, flags: &[&str], server_flags: &[&str]) -> Self {
        let lab = Lab::up(
            &format!("{tag}{}", std::process::id() % 100_000),
            3,
            &["moor/pause:0.1", "moor/echo:0.1"],
        )
        .expect("the lab comes up");
        let hosts: Vec<_> = lab.hosts().to_vec();
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let home = tempfile::tempdir().unwrap();
        let listen = format!("{}:6443", hosts[0].address);
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let mut args = vec![
            "up",
            "--listen",
            &listen,
            "--node-name",
            &names[0],
            "--log",
            "warn",
        ];
        args.extend(flags.iter().map(String::as_str));
        args.extend_from_slice(server_flags);
        let up = moor_on(&lab, 0, home.path(), &args);
        assert_eventually!(
            home.path().join(".moor/config").exists(),
            PATIENCE,
            "moor up writes its context"
        );
        let client = admin_client(home.path());
        assert_eventually!(
            moor_integration_tests::ready_nodes(&client).await == names[..1],
            PATIENCE,
            "the first host's node is Ready"
        );
        let (code, token, err) = moor(home.path(), &["token", "create", "--ttl", "10m"]).await;
        assert_eq!(code, 0, "moor token create: {err}");
        let mut cluster = Self {
            _up: up,
            joined: Vec::new(),
            client,
            names,
            hosts,
            server: format!("https://{listen}"),
            flags,
            home,
            lab,
        };
        for host in 1..3 {
            let child = cluster.join(host, Some(token.trim()));
            cluster.joined.push(Some(child));
        }
        assert_eventually!(
            moor_integration_tests::ready_nodes(&cluster.client).await == cluster.names,
            PATIENCE,
            "every host's node is Ready"
        );
        cluster
    }

    /// `moor join` on lab host `host` (1 or 2), with a token the first time.
    fn join(&self, host: usize, token: Option<&str>) -> Child {
        let data = self.home.path().join(&self.names[host]);
        let mut args = vec![
            "join",
            &self.server,
            "--name",
            &self.names[host],
            "--data-dir",
            data.to_str().unwrap(),
            "--log",
            "warn",
        ];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        args.extend(self.flags.iter().map(String::as_str));
        moor_on(&self.lab, host, self.home.path(), &args)
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs `program ARGS` in lab host `host`'s namespace: its stdout.
    fn on_host(&self, host: usize, program: &str, args: &[&str]) -> String {
        let out = self.lab.command(host, program).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn node_range(&self, host: usize) -> String {
        let node = self.client.api::<Node>().get("", &self.names[host]).await;
        node.ok()
            .and_then(|n| n.spec)
            .map(|s| s.pod_cidr)
            .unwrap_or_default()
    }
}

/// Pod-to-pod requests between the named pods (`(from, to)`), TCP and
/// UDP, each answer naming the caller's own pod IP.
async fn pods_reach_each_other(
    home: &Path,
    placed: &BTreeMap<String, (String, String)>,
    pairs: &[(&str, &str)],
) {
    let ip = |pod: &str| placed[pod].1.clone();
    for (from, to) in pairs {
        let url = format!("http://{}:8080/", ip(to));
        let expect = format!("pod={to} ip={} peer={}", ip(to), ip(from));
        let (code, out) = in_pod(
            home,
            from,
            &["get", &url, "--expect", &expect, "--retry-seconds", "30"],
        )
        .await;
        assert_eq!(code, 0, "TCP {from} -> {to}: {out}");
        let target = format!("{}:8080", ip(to));
        let (code, out) = in_pod(
            home,
            from,
            &[
                "udp",
                &target,
                "ping",
                "--expect",
                &expect,
                "--retry-seconds",
                "30",
            ],
        )
        .await;
        assert_eq!(code, 0, "UDP {from} -> {to}: {out}");
    }
}

/// Pods `a`, `b`, `c` on hosts 1, 2, 3 (`a` labelled app=client, the others
/// app=far), once they run.
async fn three_pods(cluster: &LabCluster) -> BTreeMap<String, (String, String)> {
    let pods = cluster.client.api::<Pod>();
    for (pod, host) in [("a", 0), ("b", 1), ("c", 2)] {
        let app = if pod == "a" { "client" } else { "far" };
        pods.create(&echo_pod(pod, &cluster.names[host], app))
            .await
            .unwrap();
    }
    assert_eventually!(
        running(&cluster.client, &["a", "b", "c"]).await.is_some(),
        PATIENCE,
        "the three pods run"
    );
    running(&cluster.client, &["a", "b", "c"]).await.unwrap()
}

/// From pod `a` on the first host: a service whose endpoints (`b`, `c`)
/// are on the other hosts, by cluster IP and by DNS name; and from outside,
/// a node port on the second host reaching a pod on the third.
async fn services_reach_the_other_hosts(cluster: &LabCluster) {
    let (client, home) = (&cluster.client, cluster.home());
    let services = client.api::<Service>();
    let far = services
        .create(&service("far", "far", false))
        .await
        .unwrap();
    let cluster_ip = far.spec.unwrap().cluster_ip;
    for target in [format!("http://{cluster_ip}/"), "http://far/".to_owned()] {
        for wanted in ["pod=b", "pod=c"] {
            let (code, out) = in_pod(
                home,
                "a",
                &["get", &target, "--expect", wanted, "--retry-seconds", "60"],
            )
            .await;
            assert_eq!(code, 0, "{target} from a reaches {wanted}: {out}");
        }
    }
    client
        .api::<Pod>()
        .create(&echo_pod("only-c", &cluster.names[2], "only-c"))
        .await
        .unwrap();
    let exposed = services
        .create(&service("only-c", "only-c", true))
        .await
        .unwrap();
    let node_port = u16::try_from(exposed.spec.unwrap().ports[0].node_port).unwrap();
    let via_b = std::net::SocketAddr::from((cluster.hosts[1].address, node_port));
    assert_eventually!(
        moor_testkit::http_get(via_b)
            .await
            .is_ok_and(|b| b.contains("pod=only-c")),
        PATIENCE,
        "node port {via_b} on host 2 reaches the pod on host 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_three_hosts_reach_each_other_services_and_the_outside() {
    let cluster = LabCluster::start("vx", &[]).await;
    let (client, names, hosts) = (&cluster.client, &cluster.names, &cluster.hosts);
    let first = hosts[0].address;
    let home = cluster.home();
    // One range per node, each published with its VTEP.
    let (nodes, _) = client
        .api::<Node>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut ranges: Vec<String> = nodes
        .iter()
        .map(|n| n.spec.as_ref().unwrap().pod_cidr.clone())
        .collect();
    ranges.sort();
    ranges.dedup();
    assert_eq!(
        ranges.len(),
        3,
        "each node has its own pod range: {ranges:?}"
    );

    let placed = three_pods(&cluster).await;
    let ip = |pod: &str| placed[pod].1.clone();
    for (pod, host) in [("a", 0), ("b", 1), ("c", 2)] {
        assert_eq!(placed[pod].0, names[host]);
        let range: ipnet::Ipv4Net = nodes
            .iter()
            .find(|n| n.metadata.as_ref().unwrap().name == names[host])
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .pod_cidr
            .parse()
            .unwrap();
        assert!(
            range.contains(&ip(pod).parse::<Ipv4Addr>().unwrap()),
            "pod {pod} has {} from its node's range {range}",
            ip(pod)
        );
    }

    // Pod to pod across hosts, both ways, TCP and UDP, source kept.
    pods_reach_each_other(
        home,
        &placed,
        &[("a", "b"), ("b", "a"), ("c", "a"), ("b", "c")],
    )
    .await;

    services_reach_the_other_hosts(&cluster).await;

    // Out of the cluster: masqueraded to the host's address.
    let outside = outside_server(cluster.lab.root_address()).await;
    let (code, out) = in_pod(
        home,
        "a",
        &[
            "get",
            &format!("http://{outside}/"),
            "--expect",
            &format!("caller={first}"),
            "--retry-seconds",
            "30",
        ],
    )
    .await;
    assert_eq!(code, 0, "a pod reaches the outside as its host: {out}");
    let (code, out) = in_pod(
        home,
        "b",
        &[
            "get",
            &format!("http://{outside}/"),
            "--expect",
            &format!("caller={}", hosts[1].address),
            "--retry-seconds",
            "30",
        ],
    )
    .await;
    assert_eq!(
        code, 0,
        "a joined host's pod reaches the outside as its host: {out}"
    );

    // The cluster's registry, served on the first server's address to
    // holders of a cluster certificate: pushed from this machine (its
    // Docker trusts it through what `moor up` wrote in
    // /etc/docker/certs.d), pulled by the third host's node.
    let image = format!("{first}:5000/echo:lab-{}", std::process::id());
    let _pushed = Pushed(vec![image.clone()]);
    for args in [
        &["tag", "moor/echo:0.1", &image][..],
        &["push", &image],
        &["rmi", &image],
    ] {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut pulled = echo_pod("pulled", &names[2], "pulled");
    let container = &mut pulled.spec.as_mut().unwrap().containers[0];
    container.image = image.clone();
    container.image_pull_policy = "Always".into();
    client.api::<Pod>().create(&pulled).await.unwrap();
    assert_eventually!(
        running(client, &["pulled"])
            .await
            .is_some_and(|p| p["pulled"].0 == names[2]),
        PATIENCE,
        "{} pulls {image} from the cluster's registry",
        names[2]
    );
    // No plain text there: an HTTP request gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect((first, 5000)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/"),
        "the registry answers plain HTTP on {first}:5000"
    );
}

/// Removes tags pushed from this machine, also on a panic.
struct Pushed(Vec<String>);

impl Drop for Pushed {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", tag])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_ui_runs_across_the_hosts_from_the_servers_registry_in_a_browser() {
    use moor_integration_tests::results_ui::{
        deploy, lists, page, pods, pushed_tags, rolled_out, submit_in_browser, ui_node_port,
    };
    let cluster = LabCluster::start("rui", &[]).await;
    let (client, hosts) = (&cluster.client, &cluster.hosts);
    // The address `moor up` printed for the nodes; this machine's Docker
    // pushes there with the certificate `moor up` left in certs.d.
    let registry = format!("{}:5000", hosts[0].address);
    let _pushed = Pushed(pushed_tags(&registry, &["0.1"]));
    let data = tempfile::tempdir().unwrap();
    deploy(
        cluster.home(),
        &moorctl_path(),
        &registry,
        "0.1",
        data.path(),
    )
    .await
    .unwrap();
    let (code, _, err) = moorctl(
        cluster.home(),
        &["scale", "deployment", "results-api", "--replicas", "3"],
    )
    .await;
    assert_eq!(code, 0, "moorctl scale: {err}");
    let api_image = format!("{registry}/results-api:0.1");
    let ui_image = format!("{registry}/results-ui:0.1");
    assert_eventually!(
        rolled_out(client, "results-api", &api_image, 3).await
            && rolled_out(client, "results-ui", &ui_image, 1).await,
        PATIENCE,
        "results-api (3) and results-ui run, pulled from {registry}"
    );
    let mut placed: Vec<(String, String)> = Vec::new();
    for app in ["results-api", "results-ui"] {
        for pod in pods(client, app).await {
            let node = pod.spec.map(|s| s.node_name).unwrap_or_default();
            placed.push((pod.metadata.map(|m| m.name).unwrap_or_default(), node));
        }
    }
    println!("placed: {placed:?}");

    // Through the node port of the last host, whichever hosts the pods
    // run on; the UI finds the API by its DNS name.
    let node_port = ui_node_port(client).await.unwrap();
    let ui = std::net::SocketAddr::from((hosts[2].address, node_port));
    let suite = format!("lab-{}", std::process::id());
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("results-ui-lab.png");
    submit_in_browser(ui, &suite, &shot, PATIENCE)
        .await
        .unwrap();
    println!("screenshot: {}", shot.display());
    let other = std::net::SocketAddr::from((hosts[1].address, ui.port()));
    assert_eventually!(
        page(other).await.is_some_and(|p| lists(&p, &suite)),
        PATIENCE,
        "every host's node port serves the page with the browser's result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iptables_proxy_reaches_endpoints_on_other_hosts() {
    let cluster = LabCluster::start("ipt", &["--proxy-mode", "iptables"]).await;
    let placed = three_pods(&cluster).await;
    pods_reach_each_other(cluster.home(), &placed, &[("a", "b"), ("c", "a")]).await;
    services_reach_the_other_hosts(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_routes_pods_between_hosts_without_encapsulation() {
    let cluster = LabCluster::start("hgw", &["--network-backend", "host-gw"]).await;
    let placed = three_pods(&cluster).await;
    pods_reach_each_other(
        cluster.home(),
        &placed,
        &[("a", "b"), ("b", "c"), ("c", "a")],
    )
    .await;
    let routes = cluster.on_host(0, "ip", &["route", "show", "proto", "109"]);
    for host in [1, 2] {
        let range = cluster.node_range(host).await;
        let via = format!("{range} via {}", cluster.hosts[host].address);
        assert!(routes.contains(&via), "host 1 routes {via}: {routes}");
    }
    let links = cluster.on_host(0, "ip", &["-o", "link", "show"]);
    assert!(
        !links.contains("moor.1"),
        "host-gw makes no VXLAN device: {links}"
    );
}

/// How long a node may go unheard from in the cut tests, and how long its
/// pods stay after that: short, so that a long cut plays out in minutes.
const CUT_GRACE: Duration = Duration::from_secs(20);
const CUT_TOLERATION: Duration = Duration::from_secs(20);
/// R6's cut, well inside the grace period, and R7's, well past grace and
/// toleration: how long the cable stays pulled is the fault itself, not a
/// wait for something.
const SHORT_CUT: Duration = Duration::from_secs(5);
const LONG_CUT: Duration = Duration::from_secs(120);

/// One pod of the `spread` Deployment, as seen through the API.
#[derive(Clone, Debug, PartialEq)]
struct Placed {
    node: String,
    name: String,
    uid: String,
    restarts: i32,
}

/// The live (not deleting) Running pods of the `spread` Deployment, by node.
async fn spread(client: &Client) -> Vec<Placed> {
    let params = ListParams::default()
        .namespace("default")
        .labels("app=spread");
    let Ok((pods, _)) = client.api::<Pod>().list(&params).await else {
        return Vec::new();
    };
    let mut placed: Vec<Placed> = pods
        .into_iter()
        .filter(|p| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.deletion_timestamp.is_none())
                && p.status.as_ref().is_some_and(|s| s.phase == "Running")
        })
        .map(|p| {
            let meta = p.metadata.unwrap_or_default();
            Placed {
                node: p.spec.unwrap_or_default().node_name,
                name: meta.name,
                uid: meta.uid,
                restarts: p
                    .status
                    .unwrap_or_default()
                    .container_statuses
                    .iter()
                    .map(|c| c.restart_count)
                    .sum(),
            }
        })
        .collect();
    placed.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    placed
}

/// Node `name`'s Ready condition: its status and when it last changed.
async fn readiness(client: &Client, name: &str) -> Option<(String, i64)> {
    let node = client.api::<Node>().get("", name).await.ok()?;
    let ready = node
        .status?
        .conditions
        .into_iter()
        .find(|c| c.r#type == "Ready")?;
    Some((ready.status, ready.last_transition_time?.seconds))
}

/// When node `name`'s agent last renewed its Lease, in seconds since the
/// epoch.
async fn renewed(client: &Client, name: &str) -> Option<i64> {
    let lease = client
        .api::<moor_api::coordination::v1::Lease>()
        .get("moor-system", name)
        .await
        .ok()?;
    Some(lease.spec?.renew_time?.seconds)
}

fn unix_seconds() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// The ids of host `host`'s containers of pod `pod`.
fn containers_of(cluster: &LabCluster, host: usize, pod: &str) -> String {
    let filter = format!("label=moor.pod.name={pod}");
    cluster
        .on_host(
            host,
            "docker",
            &["ps", "-aq", "--no-trunc", "--filter", &filter],
        )
        .trim()
        .to_string()
}

/// R6 and R7 of the fault suite: a host's cable pulled for 5 s changes
/// nothing (no pod restarted, none evicted, the node never unready); pulled
/// for 2 minutes, its pods are replaced on the other hosts once grace and
/// toleration have passed, and once it is back it removes the containers of
/// the pods it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_briefly_keeps_its_pods_and_cut_off_long_loses_them_cleanly() {
    let grace = CUT_GRACE.as_secs().to_string();
    let toleration = CUT_TOLERATION.as_secs().to_string();
    let cluster = LabCluster::start_with(
        "cut",
        &[],
        &[
            "--node-monitor-grace-period-seconds",
            &grace,
            "--pod-eviction-timeout-seconds",
            &toleration,
        ],
    )
    .await;
    let (client, names) = (&cluster.client, &cluster.names);
    // A deployment spread over the three hosts, with no toleration of its
    // own: the controller-manager's --pod-eviction-timeout-seconds holds.
    let manifest = cluster.home().join("spread.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: spread}\nspec:\n  replicas: 3\n  \
         selector: {matchLabels: {app: spread}}\n  template:\n    metadata: {labels: {app: spread}}\n    \
         spec:\n      containers:\n      - name: echo\n        image: moor/echo:0.1\n        \
         imagePullPolicy: Never\n        args: [serve]\n",
    )
    .unwrap();
    let (code, _, err) =
        moorctl(cluster.home(), &["apply", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(code, 0, "apply: {err}");
    assert_eventually!(
        spread(client)
            .await
            .iter()
            .map(|p| &p.node)
            .collect::<Vec<_>>()
            == names.iter().collect::<Vec<_>>(),
        PATIENCE,
        "one pod on each host: {:?}",
        spread(client).await
    );
    let placed = spread(client).await;
    let on_third = placed.iter().find(|p| p.node == names[2]).unwrap().clone();
    let containers = containers_of(&cluster, 2, &on_third.name);
    assert!(!containers.is_empty(), "the third host runs its pod");
    let ready = readiness(client, &names[2]).await.unwrap();
    assert_eq!(ready.0, "True");

    // R6: the third host's cable pulled for 5 s.
    cluster.lab.cut(2).unwrap();
    tokio::time::sleep(SHORT_CUT).await;
    cluster.lab.reconnect(2).unwrap();
    let back = unix_seconds();
    // Its agent is heard from again...
    assert_eventually!(
        renewed(client, &names[2]).await.is_some_and(|at| at > back),
        PATIENCE,
        "the third host's agent renews its lease after the short cut"
    );
    // ...and nothing happened meanwhile: the node was never unready (its
    // Ready condition has not changed since), the same pods run where they
    // ran, none restarted, with the same containers.
    assert_eq!(
        readiness(client, &names[2]).await.unwrap(),
        ready,
        "the node stayed Ready through the short cut"
    );
    assert_eq!(spread(client).await, placed, "no pod moved or restarted");
    assert_eq!(
        containers_of(&cluster, 2, &on_third.name),
        containers,
        "the third host's container is the same"
    );
    println!(
        "R6: cut off for {SHORT_CUT:?} (grace {CUT_GRACE:?}): node stayed Ready, {} pods kept, none restarted",
        placed.len()
    );

    // R7: pulled for 2 minutes.
    cluster.lab.cut(2).unwrap();
    let cut = tokio::time::Instant::now();
    assert_eventually!(
        {
            let now = spread(client).await;
            now.len() == 3 && now.iter().all(|p| p.node != names[2])
        },
        LONG_CUT,
        "the cut-off host's pod runs again on the others: {:?}",
        spread(client).await
    );
    let replaced = cut.elapsed();
    assert_eq!(
        readiness(client, &names[2]).await.map(|r| r.0).as_deref(),
        Some("Unknown"),
        "the cut-off node is Ready=Unknown"
    );
    assert!(
        containers_of(&cluster, 2, &on_third.name) == containers,
        "the cut-off host's container runs on: nobody could tell it to stop"
    );
    tokio::time::sleep_until(cut + LONG_CUT).await;
    cluster.lab.reconnect(2).unwrap();
    let reconnected = tokio::time::Instant::now();
    assert_eventually!(
        moor_integration_tests::ready_nodes(client).await == *names,
        PATIENCE,
        "the third host is Ready again"
    );
    let ready_again = reconnected.elapsed();
    assert_eventually!(
        containers_of(&cluster, 2, &on_third.name).is_empty(),
        PATIENCE,
        "the containers of the pod it lost are removed from the third host"
    );
    let cleaned = reconnected.elapsed();
    let pods = client.api::<Pod>();
    assert!(
        matches!(
            pods.get("default", &on_third.name).await,
            Err(moor_client::Error::NotFound(_))
        ),
        "the lost pod {} is gone from the API",
        on_third.name
    );
    assert_eq!(spread(client).await.len(), 3, "three pods run");
    println!(
        "R7: cut off for {LONG_CUT:?}: its pod replaced on the others {replaced:.1?} after the cut \
         (grace {CUT_GRACE:?} + toleration {CUT_TOLERATION:?} + 15 s = {:?}); back: Ready after \
         {ready_again:.1?}, the lost pod's container removed after {cleaned:.1?}",
        CUT_GRACE + CUT_TOLERATION + Duration::from_secs(15)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_joins_again_with_a_new_range_and_the_routes_follow() {
    let mut cluster = LabCluster::start("rej", &[]).await;
    let old = cluster.node_range(2).await;
    assert!(!old.is_empty());
    let routes =
        |cluster: &LabCluster| cluster.on_host(0, "ip", &["route", "show", "proto", "109"]);
    assert!(
        routes(&cluster).contains(&old),
        "host 1 routes {old}: {}",
        routes(&cluster)
    );

    let mut third = cluster.joined[1].take().unwrap();
    third.kill().await.unwrap();
    third.wait().await.unwrap();
    cluster
        .client
        .api::<Node>()
        .delete("", &cluster.names[2], &moor_client::DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(
        !routes(&cluster).contains(&old),
        PATIENCE,
        "host 1 drops the route to the deleted node's range {old}: {}",
        routes(&cluster)
    );

    // Joining again needs no token: the node keeps its certificate.
    cluster.joined[1] = Some(cluster.join(2, None));
    assert_eventually!(
        moor_integration_tests::ready_nodes(&cluster.client).await == cluster.names,
        PATIENCE,
        "the node is back"
    );
    let new = cluster.node_range(2).await;
    assert!(!new.is_empty() && new != old, "a new range: {old} -> {new}");
    assert_eventually!(
        routes(&cluster).contains(&new),
        PATIENCE,
        "host 1 routes the new range {new}: {}",
        routes(&cluster)
    );
    let placed = three_pods(&cluster).await;
    let range: ipnet::Ipv4Net = new.parse().unwrap();
    assert!(
        range.contains(&placed["c"].1.parse::<Ipv4Addr>().unwrap()),
        "the third host's pod {} is in its new range {range}",
        placed["c"].1
    );
    pods_reach_each_other(cluster.home(), &placed, &[("a", "c"), ("c", "b")]).await;
    let networks = cluster.on_host(2, "docker", &["network", "ls", "--format", "{{.Name}}"]);
    let (old_network, new_network) = (
        format!("moor-{}", old.replace('/', "-")),
        format!("moor-{}", new.replace('/', "-")),
    );
    assert!(
        networks.contains(&new_network) && !networks.contains(&old_network),
        "the third host's network moves to the new range: {networks}"
    );
}
