//! Cluster DNS and service variables as a real Docker container sees them.
//! Needs dockerd running; the images come from images/build.sh.

mod support;

use moor_api::Resource;
use moor_api::core::v1::{Service, ServicePort, ServiceSpec};
use moor_api::meta::v1::ObjectMeta;
use support::{Cluster, container_status, echo, pod, wait_pod};

/// Runs `docker ARGS` and returns its standard output.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_containers_resolve_through_cluster_dns_and_see_services() {
    let cluster = Cluster::start_with("linksdns", |config| {
        config.cluster_dns = Some([10, 96, 0, 10].into());
    })
    .await;
    let mut service = Service {
        metadata: Some(ObjectMeta {
            name: "redis-primary".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            ports: vec![ServicePort {
                name: "redis".into(),
                port: 6379,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    service.set_type_meta();
    let created = cluster
        .client
        .api::<Service>()
        .create(&service)
        .await
        .expect("service created");
    let ip = created.spec.unwrap_or_default().cluster_ip;

    let created = cluster
        .run_pod(pod("resolver", "Always", vec![echo("main", &["serve"])]))
        .await;
    let uid = created.metadata.unwrap_or_default().uid;
    wait_pod(&cluster, "resolver", "Running", |p| {
        container_status(p, "main").is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
    })
    .await;
    let containers = cluster.containers(&uid).await;
    let app = containers
        .iter()
        .find(|c| !c.is_sandbox())
        .expect("the app container exists");

    // The file the app container reads (a tar stream of one file: its text
    // is in it verbatim). The image has no shell, hence no `docker exec cat`.
    let resolv = docker(&["cp", &format!("{}:/etc/resolv.conf", app.id), "-"]);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local\n"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    assert!(resolv.contains("nameserver 10.96.0.10\n"), "{resolv}");
    let hosts = docker(&["cp", &format!("{}:/etc/hosts", app.id), "-"]);
    assert!(hosts.contains("# moor-managed hosts file.\n"), "{hosts}");
    assert!(
        hosts.contains("\tresolver\n"),
        "the pod's own line: {hosts}"
    );

    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &app.id]);
    for expected in [
        format!("REDIS_PRIMARY_SERVICE_HOST={ip}"),
        "REDIS_PRIMARY_SERVICE_PORT=6379".to_owned(),
        "REDIS_PRIMARY_SERVICE_PORT_REDIS=6379".to_owned(),
        format!("REDIS_PRIMARY_PORT_6379_TCP=tcp://{ip}:6379"),
    ] {
        assert!(
            env.contains(&format!("\"{expected}\"")),
            "{expected} in {env}"
        );
    }
}
