//! The scheduler against a real in-process apiserver.

use std::collections::HashMap;
use std::time::Duration;

use moor_api::coordination::v1::Lease;
use moor_api::core::v1::{
    Container, Event, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    ResourceRequirements, Taint,
};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Client, ListParams};
use moor_integration_tests::Apiserver;
use moor_scheduler::{Config, LeaseConfig};
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn start(server: &Apiserver, identity: &str, leader_elect: bool) -> Running {
    let mut config = Config::new(format!("http://{}", server.addr));
    config.identity = identity.to_string();
    config.leader_elect = leader_elect;
    config.lease = LeaseConfig {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry: Duration::from_millis(200),
    };
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = moor_scheduler::run(config, token).await {
            panic!("scheduler failed: {error}");
        }
    });
    Running { stop, task }
}

fn node(name: &str, cpu: &str, memory: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: HashMap::from([
                ("cpu".to_string(), cpu.to_string()),
                ("memory".to_string(), memory.to_string()),
                ("pods".to_string(), "110".to_string()),
            ]),
            conditions: vec![NodeCondition {
                r#type: "Ready".to_string(),
                status: "True".to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(name: &str, cpu: &str) -> Pod {
    let mut requests = HashMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_string(), cpu.to_string());
    }
    Pod {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            namespace: "default".to_string(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".to_string(),
                image: "moor/echo:0.1".to_string(),
                resources: Some(ResourceRequirements {
                    requests,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn node_of(client: &Client, name: &str) -> String {
    match client.api::<Pod>().get("default", name).await {
        Ok(p) => p.spec.map(|s| s.node_name).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn pods(client: &Client) -> Vec<Pod> {
    client
        .api::<Pod>()
        .list(&ListParams::default().namespace("default"))
        .await
        .map(|l| l.0)
        .unwrap_or_default()
}

async fn events(client: &Client, reason: &str) -> Vec<Event> {
    let all = client
        .api::<Event>()
        .list(&ListParams::default().namespace("default"))
        .await
        .map(|l| l.0)
        .unwrap_or_default();
    all.into_iter().filter(|e| e.reason == reason).collect()
}

#[tokio::test]
async fn pods_bind_to_suitable_nodes() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;
    let nodes = client.api::<Node>();
    let mut ssd = node("ssd", "4", "8Gi");
    ssd.metadata.get_or_insert_with(Default::default).labels =
        HashMap::from([("disk".into(), "ssd".into())]);
    nodes.create(&ssd).await?;
    let mut cordoned = node("cordoned", "64", "64Gi");
    cordoned.spec = Some(NodeSpec {
        unschedulable: true,
        ..Default::default()
    });
    nodes.create(&cordoned).await?;
    let mut not_ready = node("not-ready", "64", "64Gi");
    not_ready
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .clear();
    nodes.create(&not_ready).await?;
    nodes.create(&node("small", "1", "1Gi")).await?;

    let running = start(&server, "s1", false);
    let api = client.api::<Pod>();
    let mut wants_ssd = pod("wants-ssd", "100m");
    wants_ssd
        .spec
        .get_or_insert_with(Default::default)
        .node_selector = HashMap::from([("disk".into(), "ssd".into())]);
    api.create(&wants_ssd).await?;
    api.create(&pod("big", "2")).await?;
    let mut pinned = pod("pinned", "");
    pinned.spec.get_or_insert_with(Default::default).node_name = "small".into();
    api.create(&pinned).await?;
    let mut other = pod("other-scheduler", "");
    other
        .spec
        .get_or_insert_with(Default::default)
        .scheduler_name = "someone-else".into();
    api.create(&other).await?;

    assert_eventually!(
        node_of(&client, "wants-ssd").await == "ssd",
        WAIT,
        "wants-ssd not on ssd"
    );
    assert_eventually!(
        node_of(&client, "big").await == "ssd",
        WAIT,
        "big not on the only node with room"
    );
    assert_eventually!(
        events(&client, "Scheduled").await.len() == 2,
        WAIT,
        "two Scheduled events"
    );
    let scheduled = events(&client, "Scheduled").await;
    assert!(
        scheduled
            .iter()
            .any(|e| e.message == "Successfully assigned default/big to ssd"),
        "{scheduled:?}"
    );
    assert_eq!(node_of(&client, "pinned").await, "small");

    // A dry run sees the same cluster and binds nothing.
    let cache = moor_scheduler::snapshot(&client).await?;
    let verdicts = moor_scheduler::plan(&cache, &pod("dry", "3"));
    let by_node: HashMap<&str, (Option<&str>, Option<i64>)> = verdicts
        .iter()
        .map(|v| (v.node.as_str(), (v.failed_filter.as_deref(), v.score)))
        .collect();
    assert_eq!(by_node["cordoned"].0, Some("NodeUnschedulable"));
    assert_eq!(by_node["not-ready"].0, Some("NodeReady"));
    // ssd holds 2.1 of its 4 cpu.
    assert_eq!(by_node["ssd"].0, Some("NodeResourcesFit"));
    assert_eq!(by_node["small"].0, Some("NodeResourcesFit"));
    let fits = moor_scheduler::plan(&cache, &pod("dry", "100m"));
    assert!(
        fits.iter().filter(|v| v.score.is_some()).count() == 2,
        "{fits:?}"
    );
    assert_eq!(node_of(&client, "other-scheduler").await, "");
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_pod_that_fits_nowhere_says_why_and_binds_when_a_node_appears() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;
    let nodes = client.api::<Node>();
    for name in ["a", "b", "c"] {
        nodes.create(&node(name, "2", "4Gi")).await?;
    }
    for name in ["gpu-1", "gpu-2"] {
        let mut n = node(name, "16", "64Gi");
        n.spec = Some(NodeSpec {
            taints: vec![Taint {
                key: "dedicated".into(),
                value: "gpu".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        nodes.create(&n).await?;
    }
    let running = start(&server, "s1", false);
    client.api::<Pod>().create(&pod("huge", "8")).await?;

    let expected = "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu.";
    let condition = || async {
        let p = client.api::<Pod>().get("default", "huge").await.ok()?;
        p.status?
            .conditions
            .into_iter()
            .find(|c| c.r#type == "PodScheduled")
    };
    assert_eventually!(
        condition().await.is_some_and(|c| c.status == "False"
            && c.reason == "Unschedulable"
            && c.message == expected),
        WAIT,
        "PodScheduled=False with the why-not message; have {:?}",
        condition().await
    );
    assert_eventually!(
        events(&client, "FailedScheduling")
            .await
            .iter()
            .any(|e| e.message == expected
                && e.r#type == "Warning"
                && e.involved_object
                    .as_ref()
                    .is_some_and(|o| o.name == "huge" && o.kind == "Pod")),
        WAIT,
        "a FailedScheduling event"
    );
    assert_eq!(node_of(&client, "huge").await, "");

    nodes.create(&node("roomy", "16", "32Gi")).await?;
    assert_eventually!(
        node_of(&client, "huge").await == "roomy",
        WAIT,
        "huge never bound to the new node"
    );
    assert_eventually!(
        condition().await.is_some_and(|c| c.status == "True"),
        WAIT,
        "PodScheduled=True after binding"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn five_hundred_pods_spread_evenly_over_fifty_nodes() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;
    let nodes = client.api::<Node>();
    for i in 0..50 {
        nodes
            .create(&node(&format!("node-{i:02}"), "8", "16Gi"))
            .await?;
    }
    let running = start(&server, "s1", false);
    let api = client.api::<Pod>();
    for i in 0..500 {
        api.create(&pod(&format!("p-{i:03}"), "100m")).await?;
    }
    assert_eventually!(
        pods(&client)
            .await
            .iter()
            .all(|p| p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty())),
        WAIT,
        "not every pod bound"
    );
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods(&client).await {
        *per_node
            .entry(p.spec.unwrap_or_default().node_name)
            .or_default() += 1;
    }
    let (min, max) = (
        per_node.values().min().copied(),
        per_node.values().max().copied(),
    );
    assert_eq!(per_node.len(), 50, "{per_node:?}");
    assert!(
        max.zip(min).is_some_and(|(a, b)| a - b <= 1),
        "uneven: min {min:?} max {max:?}"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn failover_binds_every_pod_exactly_once() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;
    let nodes = client.api::<Node>();
    for i in 0..10 {
        nodes
            .create(&node(&format!("node-{i}"), "32", "64Gi"))
            .await?;
    }
    let one = start(&server, "one", true);
    let holder = || async {
        let lease = client
            .api::<Lease>()
            .get("moor-system", "moor-scheduler")
            .await
            .ok()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    };
    assert_eventually!(
        holder().await.as_deref() == Some("one"),
        WAIT,
        "one never led"
    );
    let two = start(&server, "two", true);

    let api = client.api::<Pod>();
    let bound = || async {
        pods(&client)
            .await
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty()))
            .count()
    };
    for i in 0..100 {
        api.create(&pod(&format!("p-{i:03}"), "10m")).await?;
    }
    assert_eventually!(bound().await >= 20, WAIT, "the leader binds");
    // Kill the leader mid-stream, with more pods arriving.
    let stopping = tokio::spawn(one.stop());
    for i in 100..200 {
        api.create(&pod(&format!("p-{i:03}"), "10m")).await?;
    }
    stopping.await?;
    assert_eventually!(
        holder().await.as_deref() == Some("two"),
        WAIT,
        "two never took over"
    );
    assert_eventually!(
        bound().await == 200,
        WAIT,
        "not every pod bound: {}",
        bound().await
    );

    // Every pod has exactly one successful bind (one Scheduled event). The
    // event is written after the bind returns, so the last ones may trail
    // the pods' own update.
    assert_eventually!(
        events(&client, "Scheduled").await.len() >= 200,
        WAIT,
        "a bind without its Scheduled event"
    );
    let mut binds: HashMap<String, usize> = HashMap::new();
    for e in events(&client, "Scheduled").await {
        *binds
            .entry(e.involved_object.unwrap_or_default().name)
            .or_default() += 1;
    }
    assert_eq!(binds.len(), 200, "pods with a bind: {}", binds.len());
    assert!(
        binds.values().all(|n| *n == 1),
        "a pod bound twice: {binds:?}"
    );
    let reporters: std::collections::HashSet<String> = events(&client, "Scheduled")
        .await
        .into_iter()
        .map(|e| e.reporting_instance)
        .collect();
    assert!(
        reporters.contains("two"),
        "two bound nothing: {reporters:?}"
    );
    two.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_deleted_pod_frees_room_for_a_waiting_one() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;
    client
        .api::<Node>()
        .create(&node("only", "1", "1Gi"))
        .await?;
    let running = start(&server, "s1", false);
    let api = client.api::<Pod>();
    api.create(&pod("first", "800m")).await?;
    assert_eventually!(
        node_of(&client, "first").await == "only",
        WAIT,
        "first not bound"
    );
    api.create(&pod("second", "800m")).await?;
    assert_eventually!(
        events(&client, "FailedScheduling")
            .await
            .iter()
            .any(|e| e.message == "0/1 nodes are available: 1 Insufficient cpu."),
        WAIT,
        "second not reported unschedulable"
    );
    let now = moor_client::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    api.delete("default", "first", &now).await?;
    assert_eventually!(
        node_of(&client, "second").await == "only",
        WAIT,
        "second never bound"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_says_per_node_why_and_where_without_binding() {
    let server = Apiserver::start().await.expect("apiserver");
    let client = Client::new(&format!("http://{}", server.addr)).expect("client");
    for n in [node("big", "8", "16Gi"), node("small", "1", "1Gi")] {
        client.api::<Node>().create(&n).await.expect("node");
    }
    let scheduler = start(&server, "planner", false);
    // The active scheduler names its plan service.
    let (namespace, name) = moor_scheduler::PUBLISHED_AS;
    let mut address: Option<String>;
    assert_eventually!(
        {
            address = client
                .api::<moor_api::core::v1::Endpoints>()
                .get(namespace, name)
                .await
                .ok()
                .and_then(|e| {
                    let subset = e.subsets.first()?;
                    Some(format!(
                        "http://{}:{}",
                        subset.addresses.first()?.ip,
                        subset.ports.first()?.port
                    ))
                });
            address.is_some()
        },
        WAIT,
        "the scheduler publishes its plan service"
    );
    let url = address.unwrap_or_default();
    let mut plans = moor_api::scheduler::v1::scheduler_client::SchedulerClient::new(
        moor_rpc::channel(&url).expect("channel"),
    );
    // Inline: fits only on the big node.
    let plan = plans
        .plan(moor_api::scheduler::v1::PlanRequest {
            pod: Some(pod("inline", "2")),
            ..Default::default()
        })
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(plan.node, "big");
    let small = plan
        .nodes
        .iter()
        .find(|n| n.node == "small")
        .expect("small is planned");
    assert_eq!(small.failed_filter, "NodeResourcesFit");
    assert_eq!(small.reasons, vec!["Insufficient cpu".to_string()]);
    assert!(
        plan.nodes
            .iter()
            .any(|n| n.node == "big" && n.score.is_some())
    );
    // A pod that fits nowhere: the why-not message, and nothing is bound.
    let plan = plans
        .plan(moor_api::scheduler::v1::PlanRequest {
            pod: Some(pod("huge", "100")),
            ..Default::default()
        })
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(plan.node, "");
    assert_eq!(plan.message, "0/2 nodes are available: 2 Insufficient cpu.");
    assert!(pods(&client).await.is_empty(), "a dry run creates nothing");
    // An existing pod by name.
    let err = plans
        .plan(moor_api::scheduler::v1::PlanRequest {
            name: "missing".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such pod");
    assert_eq!(err.code(), tonic::Code::NotFound);
    scheduler.stop().await;
}
