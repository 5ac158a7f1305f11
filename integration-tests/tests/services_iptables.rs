//! The key checks of services.rs with the proxy in iptables mode (NAT rules
//! in the kernel, moor's chains only): cluster IP from the host, from
//! another pod and from an endpoint of the service itself (hairpin, set by
//! the node agent), node
//! port from the host and from a pod, UDP, DNS names, session affinity, a
//! pod deleted under load, a proxy restart, refusal without endpoints; and
//! no rule left behind once the proxy stops. Needs dockerd, the images of
//! images/build.sh, root and the iptables programs.

mod common;

use common::{
    container, docker_gateway, echo_rc, echo_spec, exec, meta, pod_of, pod_running, ready_ips,
    service,
};

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{Pod, ReplicationController, Service};
use moor_integration_tests::Cluster;
use moor_proxy::Mode;
use moor_testkit::{assert_eventually, http_get};

/// Bound for anything involving Docker and the whole control loop.
const PATIENCE: Duration = Duration::from_secs(90);

async fn create_service(cluster: &Cluster, service: Service) -> SocketAddr {
    let created = cluster
        .client
        .api::<Service>()
        .create(&service)
        .await
        .expect("service created");
    let spec = created.spec.unwrap_or_default();
    let ip: IpAddr = spec.cluster_ip.parse().expect("a cluster IP");
    SocketAddr::new(ip, 80)
}

async fn pods_of(cluster: &Cluster, app: &str) -> Vec<Pod> {
    cluster
        .client
        .api::<Pod>()
        .list(
            &moor_client::ListParams::default()
                .namespace("default")
                .labels(format!("app={app}")),
        )
        .await
        .expect("pods listed")
        .0
}

/// Whether pod `pod`'s bridge port sends a frame back where it came from, as
/// kubelet's `--hairpin-mode=hairpin-veth` sets it (the node agent does, for
/// every sandbox): with br_netfilter, a pod's packet DNATed to that same pod
/// is bridged back out of its own port.
fn hairpin_mode(cluster: &Cluster, pod: &str) -> String {
    let id = container(cluster, pod);
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("{program} runs: {err}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let pid = run("docker", &["inspect", "-f", "{{.State.Pid}}", &id]);
    // "1108: eth0@if1109: ...": the host end is interface 1109.
    let link = run(
        "nsenter",
        &["-t", &pid, "-n", "ip", "-o", "link", "show", "eth0"],
    );
    let peer = link
        .split_once("@if")
        .and_then(|(_, rest)| rest.split(':').next())
        .unwrap_or_else(|| panic!("the pod's eth0 is a veth: {link}"));
    let host = run("ip", &["-o", "link"]);
    let name = host
        .lines()
        .find_map(|l| {
            let (index, rest) = l.split_once(": ")?;
            (index == peer).then(|| rest.split(['@', ':']).next().unwrap_or_default())
        })
        .unwrap_or_else(|| panic!("host interface {peer} exists"));
    std::fs::read_to_string(format!("/sys/class/net/{name}/brport/hairpin_mode"))
        .unwrap_or_else(|err| panic!("hairpin mode of {name}: {err}"))
        .trim()
        .to_string()
}

/// iptables-save of both tables moor writes to.
fn iptables_save() -> String {
    let mut text = String::new();
    for table in ["nat", "filter"] {
        let out = std::process::Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .expect("iptables-save runs: install the iptables package (Debian: apt-get install iptables) and run as root");
        assert!(
            out.status.success(),
            "iptables-save -t {table} works (root?)"
        );
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    text
}

/// The lines of iptables-save naming this cluster proxy's chains.
///
/// Read until two listings in a row agree: with the nf_tables backend a
/// listing taken while anything commits (this proxy, another test's, Docker)
/// can miss rules, though the packet path never sees the change half done.
/// One such listing once let the deletion test count from a moment when the
/// leaving pod's rules were still in place.
fn our_rules(cluster: &Cluster) -> Vec<String> {
    let prefix = format!("{}-", cluster.proxy_config().chains);
    let ours = || -> Vec<String> {
        iptables_save()
            .lines()
            .filter(|l| l.contains(&prefix))
            .map(str::to_string)
            .collect()
    };
    let mut last = ours();
    loop {
        let now = ours();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Stops the cluster and checks that the proxy took every rule with it.
async fn stop_and_check_clean(cluster: Cluster) {
    let prefix = cluster.proxy_config().chains;
    let leftovers_of = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(&format!("{prefix}-")))
            .map(str::to_string)
            .collect()
    };
    cluster.stop().await;
    let leftovers = leftovers_of(iptables_save());
    assert!(leftovers.is_empty(), "rules left behind: {leftovers:?}");
}

/// The kernel's connection tracking entries naming `ip`, for failure
/// messages.
fn conntrack_of(ip: IpAddr) -> String {
    match std::process::Command::new("conntrack")
        .args(["-L", "--orig-dst", &ip.to_string()])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(err) => format!("conntrack -L: {err}"),
    }
}

/// The unanswered TCP entries (SYN_SENT) through `service` NATed to `ip`,
/// as conntrack lists them.
fn unanswered_entries(service: SocketAddr, ip: &str) -> String {
    let out = std::process::Command::new("conntrack")
        .args(["-L", "-p", "tcp", "--state", "SYN_SENT", "--orig-dst"])
        .arg(service.ip().to_string())
        .args([
            "--orig-port-dst",
            &service.port().to_string(),
            "--dst-nat",
            ip,
        ])
        .output()
        .expect(
            "conntrack runs: install the conntrack package (Debian: apt-get install conntrack)",
        );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn udp_echo_from_host(addr: SocketAddr) -> String {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .expect("udp socket");
    socket.connect(addr).await.expect("udp connect");
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        socket.send(b"ping").await.expect("udp send");
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await
        {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    String::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_reaches_every_pod_by_cluster_ip_node_port_and_dns() {
    let cluster = Cluster::start_with_proxy("ipt-reach", Mode::Iptables)
        .await
        .expect("cluster starts");
    let api = cluster.client.api::<ReplicationController>();
    api.create(&echo_rc("web", 3)).await.expect("rc created");
    let created = cluster
        .client
        .api::<Service>()
        .create(&service("web", "web", true, false))
        .await
        .expect("service created");
    let spec = created.spec.clone().unwrap_or_default();
    let http = SocketAddr::new(spec.cluster_ip.parse().expect("a cluster IP"), 80);
    let node_port = u16::try_from(spec.ports[0].node_port).expect("a node port");
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

    // From the host: the kernel spreads new connections over all three,
    // once its rules have them (the proxy writes them a moment after the
    // endpoints change).
    assert_eventually!(http_get(http).await.is_ok(), PATIENCE, "{http} answers");
    let ready = ready_ips(&cluster, "web").await;
    assert_eventually!(
        {
            let rules = our_rules(&cluster).join("\n");
            ready
                .iter()
                .all(|ip| rules.contains(&format!("--to-destination {ip}:")))
        },
        PATIENCE,
        "the rules send to every ready pod {ready:?}"
    );
    let rules = our_rules(&cluster).join("\n");
    assert!(
        rules.contains(&format!("-d {}/32", http.ip())) && rules.contains("-j DNAT"),
        "the cluster IP is served by NAT rules: {rules}"
    );
    let mut pods = BTreeSet::new();
    for _ in 0..30 {
        pods.insert(pod_of(
            &http_get(http).await.expect("through the cluster IP"),
        ));
        if pods.len() == 3 {
            break;
        }
    }
    assert_eq!(pods.len(), 3, "every pod answered: {pods:?}");

    // The node port on 127.0.0.1 (route_localnet and masquerade).
    let via_node_port = SocketAddr::from(([127, 0, 0, 1], node_port));
    assert_eventually!(
        http_get(via_node_port)
            .await
            .is_ok_and(|b| b.contains("pod=web-")),
        PATIENCE,
        "the node port {via_node_port} answers"
    );

    // UDP through the cluster IP from the host.
    let reply = udp_echo_from_host(http).await;
    assert!(
        reply.contains("pod=web-") && reply.ends_with("ping"),
        "udp echo through the service: {reply:?}"
    );

    // From another pod: by cluster IP, by DNS name, the node port on the
    // host's address on the pods' network, and UDP.
    let ip = http.ip().to_string();
    let url = format!("http://{ip}/");
    let mut from_pod = BTreeSet::new();
    for _ in 0..30 {
        let (ok, out) = exec(&cluster, "client", &["get", &url, "--retry-seconds", "10"]);
        assert!(ok, "get {url} from a pod: {out}");
        from_pod.insert(pod_of(&out));
        if from_pod.len() == 3 {
            break;
        }
    }
    assert_eq!(from_pod.len(), 3, "every pod answered a pod: {from_pod:?}");
    let (ok, out) = exec(
        &cluster,
        "client",
        &["get", "http://web/", "--retry-seconds", "20"],
    );
    assert!(ok && out.contains("pod=web-"), "the short name: {out}");
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

    // Hairpin: an endpoint reaching its own service, itself included
    // (masqueraded, or its own reply would not match).
    let web_pod = pods_of(&cluster, "web").await[0].meta().name.clone();
    assert_eq!(
        hairpin_mode(&cluster, &web_pod),
        "1",
        "the node agent set hairpin mode on {web_pod}'s bridge port"
    );
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let (ok, out) = exec(&cluster, &web_pod, &["get", &url, "--retry-seconds", "10"]);
        assert!(ok, "get {url} from endpoint {web_pod}: {out}");
        seen.insert(pod_of(&out));
        if seen.contains(&web_pod) {
            break;
        }
    }
    assert!(
        seen.contains(&web_pod),
        "{web_pod} reached itself: {seen:?}"
    );

    stop_and_check_clean(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_affinity_deletion_under_load_restart_and_no_endpoints() {
    let mut cluster = Cluster::start_with_proxy("ipt-life", Mode::Iptables)
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
    assert_eventually!(
        http_get(plain).await.is_ok() && http_get(sticky).await.is_ok(),
        PATIENCE,
        "both services answer"
    );
    // Both services' rules send to all three first: affinity is only
    // tested with a choice to make, and "the rules no longer list the
    // deleted pod" below only means something once they did.
    let ready = ready_ips(&cluster, "life").await;
    assert_eventually!(
        {
            let rules = our_rules(&cluster);
            ready.iter().all(|ip| {
                let to = format!("--to-destination {ip}:");
                rules.iter().filter(|l| l.contains(&to)).count() == 4
            })
        },
        PATIENCE,
        "the rules of both services' two ports send to each of {ready:?}"
    );

    // Session affinity (`recent` lists): one client, one pod.
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        seen.insert(pod_of(&http_get(sticky).await.expect("sticky request")));
    }
    assert_eq!(seen.len(), 1, "ClientIP affinity keeps one pod: {seen:?}");

    // A pod deleted under load: once the rules no longer list it, not one
    // request fails.
    let victim = pods_of(&cluster, "life").await.remove(0);
    let victim_name = victim.meta().name.clone();
    let victim_ip = victim.status.clone().unwrap_or_default().pod_ip;
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
    // Unlike the userspace proxy, the kernel cannot try the next endpoint
    // when the leaving pod already refuses: until its rules are rewritten
    // (the apiserver's update, then one iptables-restore) new connections
    // may still reach it. So the promise is counted from the rules.
    let observed = tokio::time::Instant::now();
    let victim_dnat = format!("--to-destination {victim_ip}:");
    assert_eventually!(
        !our_rules(&cluster).iter().any(|l| l.contains(&victim_dnat)),
        PATIENCE,
        "the rules drop {victim_ip}"
    );
    eprintln!(
        "rules rewritten {:?} after the endpoints were seen to change",
        observed.elapsed()
    );
    let updated = tokio::time::Instant::now();
    let mut after = Vec::new();
    while after.len() < 300 {
        let (started, result) = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("the load goes on")
            .expect("the load task runs");
        if started >= updated {
            after.push((started - updated, result));
        }
    }
    stop.cancel();
    load.await.expect("load task");
    let failed: Vec<String> = after
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
        .collect();
    if !failed.is_empty() {
        let timeline: Vec<String> = after
            .iter()
            .map(|(at, r)| match r {
                Ok(pod) => format!("{at:?} {pod}"),
                Err(err) => format!("{at:?} ERR {err}"),
            })
            .collect();
        let pods: Vec<String> = pods_of(&cluster, "life")
            .await
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                format!(
                    "{} ip={} phase={} deleting={}",
                    p.meta().name,
                    status.pod_ip,
                    status.phase,
                    p.meta().deletion_timestamp.is_some()
                )
            })
            .collect();
        panic!(
            "{} of {} requests after the endpoint update failed\n\
             timeline (since the update):\n{}\n\
             pods now: {pods:#?}\nrules now:\n{}\nconntrack of {}:\n{}",
            failed.len(),
            after.len(),
            timeline.join("\n"),
            our_rules(&cluster).join("\n"),
            plain.ip(),
            conntrack_of(plain.ip()),
        );
    }
    assert!(
        after
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .all(|pod| *pod != victim_name),
        "no request reached the deleted pod after the update"
    );

    // The proxy stopped: its rules are gone; restarted: traffic flows again.
    cluster.stop_proxy().await;
    assert!(our_rules(&cluster).is_empty(), "no rules without the proxy");
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

    // No endpoints: a REJECT rule refuses connections at once.
    // Without a resourceVersion, as `moorctl scale`: the controller writes
    // the status meanwhile.
    let mut scale = rcs.get_scale("default", "life").await.expect("scale");
    if let Some(meta) = scale.metadata.as_mut() {
        meta.resource_version.clear();
    }
    scale.spec.get_or_insert_with(Default::default).replicas = 0;
    rcs.update_scale(&scale).await.expect("scaled to 0");
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
    // Refused by a REJECT rule (the kernel also refuses before the rules
    // are written, since nothing listens on the cluster IP: wait for them).
    let target = format!("-d {}/32", plain.ip());
    assert_eventually!(
        our_rules(&cluster)
            .iter()
            .any(|r| r.contains(&target) && r.contains("-j REJECT")),
        PATIENCE,
        "a REJECT rule for {plain}: {:?}",
        our_rules(&cluster)
    );
    stop_and_check_clean(cluster).await;
}

/// A UDP client that keeps sending from one socket: the kernel NATed its
/// flow once, so when its pod leaves the service (relabelled, still
/// running and answering), the flow moves to a pod of the service only
/// because the proxy deletes the stale conntrack entry; without that, each
/// datagram refreshes the entry and the flow stays with the pod for good.
/// (A deleted pod needs no such help: the node agent's runtime drops the
/// conntrack entries of a sandbox's address when it removes the sandbox.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_moves_a_udp_flow_off_a_pod_that_left_the_service() {
    let cluster = Cluster::start_with_proxy("ipt-udp", Mode::Iptables)
        .await
        .expect("cluster starts");
    let rcs = cluster.client.api::<ReplicationController>();
    rcs.create(&echo_rc("flow", 2)).await.expect("rc created");
    let addr = create_service(&cluster, service("flow", "flow", false, false)).await;
    assert_eventually!(
        ready_ips(&cluster, "flow").await.len() == 2,
        PATIENCE,
        "2 ready endpoints"
    );

    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .expect("udp socket");
    socket.connect(addr).await.expect("udp connect");
    // One exchange on the flow: the pod that answers it.
    let exchange = || async {
        let mut buf = [0u8; 2048];
        // Until the rules have the endpoints, the service's REJECT rule
        // refuses the datagram at once (EPERM): no answer yet.
        if socket.send(b"ping").await.is_err() {
            return String::new();
        }
        match tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => pod_of(&String::from_utf8_lossy(&buf[..n])),
            _ => String::new(),
        }
    };
    let answered = std::sync::Mutex::new(String::new());
    assert_eventually!(
        {
            let pod = exchange().await;
            let found = !pod.is_empty();
            *answered.lock().expect("not poisoned") = pod;
            found
        },
        PATIENCE,
        "the service answers UDP"
    );
    let first = answered.into_inner().expect("not poisoned");
    for _ in 0..5 {
        let again = exchange().await;
        assert!(
            again.is_empty() || again == first,
            "one flow, one pod: {first} then {again}"
        );
    }

    let pods = cluster.client.api::<Pod>();
    let mut leaving = pods.get("default", &first).await.expect("the pod");
    leaving
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .insert("app".into(), "gone".into());
    pods.update(&leaving).await.expect("pod relabelled");
    assert_eventually!(
        {
            let now = exchange().await;
            !now.is_empty() && now != first
        },
        PATIENCE,
        "the flow never left {first}, which left the service"
    );
    pods.delete("default", &first, &moor_client::DeleteParams::default())
        .await
        .expect("relabelled pod deleted");
    stop_and_check_clean(cluster).await;
}

/// One HTTP request to `to` from local port `port` (the same port every
/// time, as a client with few source ports would), given up after a
/// second: the body, or why not.
async fn request_from(port: u16, to: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
    let request = async {
        let mut stream = socket.connect(to).await?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            .await?;
        // Read to the end: the server closes first, so this port keeps no
        // TIME_WAIT and can connect to the same address again at once.
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(response)
    };
    tokio::time::timeout(Duration::from_secs(1), request)
        .await
        .map_err(|_| std::io::Error::other(format!("{to}: no answer within 1 s")))?
}

/// A connection whose endpoint never answers leaves a SYN_SENT entry with
/// its NAT, and a client retrying from the same source port matches it
/// again: it stays black-holed at that endpoint, whatever the rules say,
/// for as long as it keeps trying (kubernetes#101607). Once the endpoint
/// leaves the service the proxy deletes such entries, and the next attempt
/// reaches an endpoint the rules name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_frees_a_client_stuck_on_a_removed_endpoint() {
    use moor_api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
    let cluster = Cluster::start_with_proxy("ipt-hole", Mode::Iptables)
        .await
        .expect("cluster starts");
    let mut good = Pod {
        metadata: meta("good", &[("role", "backend")]),
        spec: Some(echo_spec()),
        ..Default::default()
    };
    good.set_type_meta();
    let pods = cluster.client.api::<Pod>();
    pods.create(&good).await.expect("pod created");
    assert_eventually!(
        pod_running(&cluster, "good").await,
        PATIENCE,
        "the good pod runs"
    );
    let good_ip = pods
        .get("default", "good")
        .await
        .expect("the pod")
        .status
        .unwrap_or_default()
        .pod_ip;
    // An address of the cluster's network that nothing holds: in Docker's
    // half of the subnet, which moor's sandboxes never take.
    let gateway: std::net::Ipv4Addr = docker_gateway(&cluster).parse().expect("an IPv4 gateway");
    let hole = std::net::Ipv4Addr::from(u32::from(gateway) + 200).to_string();

    // A service without a selector, its endpoints written by hand.
    let mut hand = service("hole", "unused", false, false);
    if let Some(spec) = hand.spec.as_mut() {
        spec.selector.clear();
    }
    let addr = create_service(&cluster, hand).await;
    let endpoints = |ips: &[&str]| {
        let mut endpoints = Endpoints {
            metadata: meta("hole", &[]),
            subsets: vec![EndpointSubset {
                addresses: ips
                    .iter()
                    .map(|ip| EndpointAddress {
                        ip: (*ip).to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ports: vec![EndpointPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: "TCP".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        endpoints.set_type_meta();
        endpoints
    };
    let api = cluster.client.api::<Endpoints>();
    api.create(&endpoints(&[&good_ip, &hole]))
        .await
        .expect("endpoints created");
    let hole_dnat = format!("--to-destination {hole}:");
    assert_eventually!(
        our_rules(&cluster).iter().any(|l| l.contains(&hole_dnat)),
        PATIENCE,
        "the rules send to {hole}"
    );

    // Outside the ephemeral range and the test clusters' node ports.
    let port = 25_000 + u16::try_from(std::process::id() % 7_000).expect("under 7000");
    // The kernel picks either endpoint until the hole takes one; from then
    // on the unanswered entry sends every attempt from the port there.
    assert_eventually!(
        request_from(port, addr).await.is_err(),
        PATIENCE,
        "a connection from port {port} goes to {hole}"
    );
    for _ in 0..3 {
        let again = request_from(port, addr).await;
        assert!(again.is_err(), "the entry holds the port: {again:?}");
    }
    assert!(
        !unanswered_entries(addr, &hole).is_empty(),
        "an unanswered entry to {hole}"
    );

    let mut current = api.get("default", "hole").await.expect("endpoints");
    current.subsets = endpoints(&[&good_ip]).subsets;
    api.update(&current).await.expect("endpoints updated");
    // Each attempt renews the entry, so without the proxy deleting it this
    // port would stay stuck.
    assert_eventually!(
        request_from(port, addr)
            .await
            .is_ok_and(|a| a.contains("pod=good")),
        PATIENCE,
        "port {port} reaches the endpoint left: {:?}",
        request_from(port, addr).await
    );
    assert_eq!(
        unanswered_entries(addr, &hole),
        "",
        "no entry to {hole} left"
    );
    pods.delete("default", "good", &moor_client::DeleteParams::default())
        .await
        .expect("pod deleted");
    stop_and_check_clean(cluster).await;
}
