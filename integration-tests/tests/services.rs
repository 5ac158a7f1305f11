//! Services end to end on the real Docker daemon: echo pods behind a
//! service, reached by cluster IP, node port and DNS name, from the host and
//! from another pod, over TCP and UDP; session affinity; a pod deleted under
//! load; the proxy restarted; a service without endpoints refusing at once.
//! Needs dockerd and the images of images/build.sh.

mod common;

use common::{
    docker_gateway, echo_rc, echo_spec, exec, meta, pod_of, pod_running, ready_ips, service,
};

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{Pod, ReplicationController, Service};
use moor_integration_tests::Cluster;
use moor_testkit::{assert_eventually, http_get};

/// Bound for anything involving Docker and the whole control loop.
const PATIENCE: Duration = Duration::from_secs(90);

async fn create_service(cluster: &Cluster, service: Service) -> Service {
    cluster
        .client
        .api::<Service>()
        .create(&service)
        .await
        .expect("service created")
}

fn cluster_addr(service: &Service, port: u16) -> SocketAddr {
    let ip: IpAddr = service
        .spec
        .as_ref()
        .map(|s| s.cluster_ip.as_str())
        .unwrap_or_default()
        .parse()
        .expect("a cluster IP");
    SocketAddr::new(ip, port)
}

/// Says how much load ran around the endpoint update (visible with --nocapture).
fn tracing_note(before: usize, after: usize) {
    eprintln!("{before} requests before the endpoint update, {after} checked after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_and_dns_reach_every_pod_over_tcp_and_udp() {
    let cluster = Cluster::start("svc-reach", None)
        .await
        .expect("cluster starts");
    let api = cluster.client.api::<ReplicationController>();
    api.create(&echo_rc("web", 3)).await.expect("rc created");
    let web = create_service(&cluster, service("web", "web", true, false)).await;
    let mut client = Pod {
        metadata: meta("client", &[("role", "client")]),
        spec: Some(echo_spec()),
        ..Default::default()
    };
    client.set_type_meta();
    cluster
        .client
        .api::<Pod>()
        .create(&client)
        .await
        .expect("client pod created");
    assert_eventually!(
        ready_ips(&cluster, "web").await.len() == 3 && pod_running(&cluster, "client").await,
        PATIENCE,
        "3 ready endpoints and a running client pod"
    );
    let http = cluster_addr(&web, 80);

    // From the host: round robin over the cluster IP reaches all three,
    // once the proxy has the third endpoint too (its stream may trail the
    // Endpoints object the test read).
    assert_eventually!(
        {
            let mut pods = BTreeSet::new();
            for _ in 0..6 {
                if let Ok(body) = http_get(http).await {
                    pods.insert(pod_of(&body));
                }
            }
            pods.len() == 3
        },
        PATIENCE,
        "six requests through {http} reach all three pods"
    );

    // The node port, on the host's addresses.
    let node_port = web.spec.as_ref().map_or(0, |s| s.ports[0].node_port);
    let node_port = u16::try_from(node_port).expect("a node port");
    assert!(
        (cluster.node_port_base..cluster.node_port_base + 20).contains(&node_port),
        "{node_port} from the cluster's range"
    );
    let via_node_port = SocketAddr::from(([127, 0, 0, 1], node_port));
    assert_eventually!(
        http_get(via_node_port)
            .await
            .is_ok_and(|b| b.contains("pod=web-")),
        PATIENCE,
        "the node port {via_node_port} answers"
    );

    // UDP through the cluster IP from the host.
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .expect("udp socket");
    socket.connect(http).await.expect("udp connect");
    let mut buf = [0u8; 2048];
    let mut reply = String::new();
    for _ in 0..20 {
        socket.send(b"ping").await.expect("udp send");
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await
        {
            reply = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    assert!(
        reply.contains("pod=web-") && reply.ends_with("ping"),
        "udp echo through the service: {reply:?}"
    );

    // From another pod: by cluster IP (every pod in turn), by DNS name, and UDP.
    let ip = http.ip().to_string();
    let url = format!("http://{ip}/");
    let mut from_pod = BTreeSet::new();
    for _ in 0..6 {
        let (ok, out) = exec(&cluster, "client", &["get", &url, "--retry-seconds", "10"]);
        assert!(ok, "get {url} from a pod: {out}");
        from_pod.insert(pod_of(&out));
    }
    assert_eq!(from_pod.len(), 3, "every pod answered a pod: {from_pod:?}");
    let (ok, out) = exec(
        &cluster,
        "client",
        &["get", "http://web/", "--retry-seconds", "20"],
    );
    assert!(
        ok && out.contains("pod=web-"),
        "the short name via the search list: {out}"
    );
    let (ok, out) = exec(
        &cluster,
        "client",
        &["lookup", "web.default.svc.cluster.local", "--expect", &ip],
    );
    assert!(ok, "A record of the service: {out}");
    let (ok, out) = exec(
        &cluster,
        "client",
        &[
            "lookup",
            "_http._tcp.web.default.svc.cluster.local",
            "--type",
            "SRV",
            "--expect",
            "80 web.default.svc.cluster.local",
        ],
    );
    assert!(ok, "SRV record of the named port: {out}");
    // A headless service answers with the ready pods' own addresses.
    let mut headless = service("web-pods", "web", false, false);
    if let Some(spec) = headless.spec.as_mut() {
        spec.cluster_ip = "None".into();
    }
    create_service(&cluster, headless).await;
    let pod_ips = ready_ips(&cluster, "web").await;
    let (ok, out) = exec(
        &cluster,
        "client",
        &[
            "lookup",
            "web-pods",
            "--retry-seconds",
            "20",
            "--expect",
            "A",
        ],
    );
    let answered: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("A "))
        .map(|ip| ip.trim().to_string())
        .collect();
    assert!(ok && answered == pod_ips, "headless: {out} vs {pod_ips:?}");
    // The node port from a pod, through the host's address on the pods' network.
    let gateway = docker_gateway(&cluster);
    let (ok, out) = exec(
        &cluster,
        "client",
        &[
            "get",
            &format!("http://{gateway}:{node_port}/"),
            "--retry-seconds",
            "10",
        ],
    );
    assert!(
        ok && out.contains("pod=web-"),
        "node port from a pod: {out}"
    );
    let (ok, out) = exec(
        &cluster,
        "client",
        &["lookup", "nope.default.svc.cluster.local"],
    );
    assert!(!ok, "an unknown service name does not resolve: {out}");
    let (ok, out) = exec(
        &cluster,
        "client",
        &[
            "udp",
            &format!("{ip}:80"),
            "hello",
            "--expect",
            "hello",
            "--retry-seconds",
            "10",
        ],
    );
    assert!(ok && out.contains("pod=web-"), "udp from a pod: {out}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_deletion_under_load_proxy_restart_and_no_endpoints() {
    let mut cluster = Cluster::start("svc-life", None)
        .await
        .expect("cluster starts");
    let rcs = cluster.client.api::<ReplicationController>();
    rcs.create(&echo_rc("life", 3)).await.expect("rc created");
    let plain = create_service(&cluster, service("life", "life", false, false)).await;
    let sticky = create_service(&cluster, service("sticky", "life", false, true)).await;
    assert_eventually!(
        ready_ips(&cluster, "life").await.len() == 3
            && ready_ips(&cluster, "sticky").await.len() == 3,
        PATIENCE,
        "3 ready endpoints"
    );
    let plain = cluster_addr(&plain, 80);
    let sticky = cluster_addr(&sticky, 80);
    assert_eventually!(
        http_get(plain).await.is_ok() && http_get(sticky).await.is_ok(),
        PATIENCE,
        "both services answer"
    );

    // Session affinity: one client, one pod; without it, all three.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        seen.insert(pod_of(&http_get(sticky).await.expect("sticky request")));
    }
    assert_eq!(seen.len(), 1, "ClientIP affinity keeps one pod: {seen:?}");

    // A pod deleted under load: once the endpoints no longer list it, not
    // one request fails (a bounded loop from the host).
    let victim = cluster
        .client
        .api::<Pod>()
        .list(
            &moor_client::ListParams::default()
                .namespace("default")
                .labels("app=life"),
        )
        .await
        .expect("pods listed")
        .0
        .into_iter()
        .next()
        .expect("a pod");
    let victim_name = victim.meta().name.clone();
    let victim_ip = victim.status.clone().unwrap_or_default().pod_ip;
    // Requests one after another until told to stop (bounded in count).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            for _ in 0..50_000 {
                if stop.is_cancelled() {
                    break;
                }
                let started = tokio::time::Instant::now();
                let result = http_get(plain).await.map(|b| pod_of(&b));
                if tx.send((started, result)).is_err() {
                    break;
                }
            }
        })
    };
    // The load is running before the pod goes.
    let (_, first) = rx.recv().await.expect("the load task runs");
    assert!(
        first.is_ok(),
        "requests work before the deletion: {first:?}"
    );
    cluster
        .client
        .api::<Pod>()
        .delete("default", &victim_name, &Default::default())
        .await
        .expect("pod deleted");
    assert_eventually!(
        !ready_ips(&cluster, "life").await.contains(&victim_ip),
        PATIENCE,
        "the endpoints drop {victim_ip}"
    );
    let updated = tokio::time::Instant::now();
    let mut before = 1;
    let mut after = Vec::new();
    while after.len() < 300 {
        let (started, result) = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("the load goes on")
            .expect("the load task runs");
        if started >= updated {
            after.push(result);
        } else {
            before += 1;
        }
    }
    stop.cancel();
    load.await.expect("load task");
    let failed: Vec<String> = after
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    tracing_note(before, after.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests after the endpoint update failed: {failed:?}",
        failed.len(),
        after.len()
    );

    // The proxy restarted: service traffic works again.
    cluster.stop_proxy().await;
    assert!(
        http_get(plain).await.is_err(),
        "nothing answers without the proxy"
    );
    cluster.start_proxy();
    assert_eventually!(
        http_get(plain).await.is_ok(),
        PATIENCE,
        "the service answers again after the proxy restart"
    );

    // No endpoints: connections are refused at once, not left hanging.
    let mut rc = rcs.get("default", "life").await.expect("rc");
    if let Some(spec) = rc.spec.as_mut() {
        spec.replicas = Some(0);
    }
    rcs.update(&rc).await.expect("scaled to 0");
    assert_eventually!(
        ready_ips(&cluster, "life").await.is_empty(),
        PATIENCE,
        "no endpoints left"
    );
    assert_eventually!(
        matches!(
            tokio::net::TcpStream::connect(plain).await,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused
        ),
        PATIENCE,
        "{plain} refuses connections"
    );
    cluster.stop().await;
}
