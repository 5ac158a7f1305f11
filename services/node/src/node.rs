//! The Node object and its Lease: registration, heartbeats, Ready.

use std::collections::HashMap;
use std::sync::Arc;

use moor_api::Resource;
use moor_api::coordination::v1::{Lease, LeaseSpec};
use moor_api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use moor_api::meta::v1::ObjectMeta;
use moor_client::Client;
use moor_runtime::RuntimeInfo;
use prost_types::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::{Config, Error};

/// Namespace of node Leases (Kubernetes uses kube-node-lease).
pub const LEASE_NAMESPACE: &str = "moor-system";
/// Pods a node accepts.
const MAX_PODS: &str = "110";
/// Reported as the kubelet version.
const VERSION: &str = concat!("moor-", env!("CARGO_PKG_VERSION"));

/// The first retry after a failed heartbeat, as the kubelet's lease
/// renewal has it.
const HEARTBEAT_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Renews the Node status and Lease every heartbeat until shutdown. A
/// failed heartbeat is tried again soon, backing off up to the heartbeat:
/// a connection cut for a few seconds must not cost a whole heartbeat
/// more, which would leave the node unheard from for two and, with a short
/// grace period, marked unready.
pub async fn heartbeat_loop(agent: Arc<Agent>, shutdown: CancellationToken) {
    let mut retry = moor_client::Backoff::new(HEARTBEAT_RETRY, agent.config.heartbeat);
    loop {
        let wait = match heartbeat(&agent).await {
            Ok(()) => {
                retry.reset();
                agent.config.heartbeat
            }
            Err(err) => {
                let wait = retry.failed();
                tracing::warn!(node = %agent.name, %err, "heartbeat failed; trying again in {wait:?}");
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One heartbeat: asks the runtime, writes the Node's status when it
/// changed or was last written [`STATUS_REFRESH`] ago, and renews the
/// Lease, which alone tells the cluster the node is alive (as Kubernetes'
/// node leases): a thousand nodes cost a thousand small Lease writes a
/// heartbeat, not a thousand Node rewrites.
async fn heartbeat(agent: &Agent) -> Result<(), Error> {
    let result = beat(agent).await;
    if result.is_err() {
        // Whatever was reported may have been lost or overruled meanwhile
        // (a partition ends with the node marked Unknown): say it again.
        *locked(&agent.reported) = None;
    }
    result
}

async fn beat(agent: &Agent) -> Result<(), Error> {
    let ready = match agent.runtime.info().await {
        Ok(info) => Ok(info),
        Err(err) => {
            tracing::warn!(node = %agent.name, %err, "container runtime does not answer; node NotReady");
            Err(err.to_string())
        }
    };
    let facts = Facts {
        host_ip: &agent.host_ip,
        hostname: &agent.hostname,
        agent_port: agent.agent_port,
    };
    let mut summary = node_status(&NodeStatus::default(), &facts, ready.clone());
    for condition in &mut summary.conditions {
        condition.last_heartbeat_time = None;
        condition.last_transition_time = None;
    }
    let due = match &*locked(&agent.reported) {
        Some((last, at)) => *last != summary || at.elapsed() >= STATUS_REFRESH,
        None => true,
    };
    if due {
        write_node(&agent.config, &agent.client, &facts, ready).await?;
        *locked(&agent.reported) = Some((summary, tokio::time::Instant::now()));
    }
    let cached = locked(&agent.lease).take();
    let lease = renew_lease(&agent.client, &agent.name, &agent.config, cached).await?;
    *locked(&agent.lease) = Some(lease);
    Ok(())
}

/// How long a Node's status may go unwritten while nothing in it changes.
pub const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reports the node NotReady before any runtime answered at all.
pub async fn report_unreachable(
    config: &Config,
    client: &Client,
    message: &str,
) -> Result<(), Error> {
    let facts = Facts {
        host_ip: "",
        hostname: "",
        agent_port: 0,
    };
    write_node(config, client, &facts, Err(message.to_owned())).await?;
    renew_lease(client, &config.name, config, None).await?;
    Ok(())
}

struct Facts<'a> {
    host_ip: &'a str,
    hostname: &'a str,
    /// Port of the agent's NodeAgent service; 0: none.
    agent_port: u16,
}

/// Creates the Node when missing (before its pod range can be assigned),
/// without a status: the first heartbeat writes it.
pub async fn register(config: &Config, client: &Client) -> Result<(), Error> {
    let nodes = client.api::<Node>();
    match nodes.get("", &config.name).await {
        Ok(_) => Ok(()),
        Err(moor_client::Error::NotFound(_)) => {
            match nodes.create(&new_node(&config.name, None)).await {
                Ok(_) => {
                    tracing::info!(node = %config.name, "registered node");
                    Ok(())
                }
                Err(moor_client::Error::AlreadyExists(_)) => Ok(()),
                Err(err) => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// Creates the Node when missing, then writes its status. A write that
/// loses to another writer of the Node (the controller-manager setting its
/// pod range, taints) is made again on the new version at once, rather
/// than a heartbeat later: a new node would stay NotReady meanwhile.
async fn write_node(
    config: &Config,
    client: &Client,
    facts: &Facts<'_>,
    ready: Result<RuntimeInfo, String>,
) -> Result<(), Error> {
    const ATTEMPTS: usize = 5;
    let nodes = client.api::<Node>();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut node = match nodes.get("", &config.name).await {
            // A Node made for us (a join claims its name by creating it): add
            // the labels a registration sets that it lacks.
            Ok(node) => {
                match with_own_labels(&nodes, node, &config.name, ready.as_ref().ok()).await {
                    Ok(node) => node,
                    Err(Error::Api(moor_client::Error::Conflict(_))) if attempt < ATTEMPTS => {
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
            Err(moor_client::Error::NotFound(_)) => {
                let node = nodes
                    .create(&new_node(&config.name, ready.as_ref().ok()))
                    .await?;
                tracing::info!(node = %config.name, "registered node");
                node
            }
            Err(err) => return Err(err.into()),
        };
        let old = node.status.clone().unwrap_or_default();
        node.status = Some(node_status(&old, facts, ready.clone()));
        match nodes.update_status(&node).await {
            Ok(_) => return Ok(()),
            Err(moor_client::Error::Conflict(_)) if attempt < ATTEMPTS => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// `node` with every label [`new_node`] sets that it lacks, written back
/// when any was missing; labels it has are kept as they are.
async fn with_own_labels(
    nodes: &moor_client::Api<Node>,
    node: Node,
    name: &str,
    info: Option<&RuntimeInfo>,
) -> Result<Node, Error> {
    let own = new_node(name, info).metadata.unwrap_or_default().labels;
    let labels = &node
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    if own.keys().all(|k| labels.contains_key(k)) {
        return Ok(node);
    }
    let mut node = node;
    let meta = node.metadata.get_or_insert_with(Default::default);
    for (key, value) in own {
        meta.labels.entry(key).or_insert(value);
    }
    Ok(nodes.update(&node).await?)
}

fn new_node(name: &str, info: Option<&RuntimeInfo>) -> Node {
    let os = info.map_or("linux", |i| i.operating_system.as_str());
    let arch = info.map_or(std::env::consts::ARCH, |i| i.architecture.as_str());
    let labels = HashMap::from([
        ("kubernetes.io/hostname".to_owned(), name.to_owned()),
        ("kubernetes.io/os".to_owned(), os.to_owned()),
        ("kubernetes.io/arch".to_owned(), arch.to_owned()),
    ]);
    let mut node = Node {
        metadata: Some(ObjectMeta {
            name: name.to_owned(),
            labels,
            ..Default::default()
        }),
        ..Default::default()
    };
    node.set_type_meta();
    node
}

/// The new status: capacity and info from the runtime when it answered
/// (else kept), Ready with a fresh heartbeat, transition time kept while
/// the status does not change.
fn node_status(
    old: &NodeStatus,
    facts: &Facts<'_>,
    ready: Result<RuntimeInfo, String>,
) -> NodeStatus {
    let now = Timestamp::from(std::time::SystemTime::now());
    let mut status = old.clone();
    let (value, reason, message) = match &ready {
        Ok(_) => (
            "True",
            "KubeletReady",
            "moor node agent is posting ready status".to_owned(),
        ),
        Err(err) => (
            "False",
            "ContainerRuntimeUnavailable",
            format!("container runtime is down: {err}"),
        ),
    };
    if let Ok(info) = &ready {
        let capacity = HashMap::from([
            ("cpu".to_owned(), info.cpus.to_string()),
            (
                "memory".to_owned(),
                format!("{}Ki", info.memory_bytes / 1024),
            ),
            ("pods".to_owned(), MAX_PODS.to_owned()),
        ]);
        status.allocatable = capacity.clone();
        status.capacity = capacity;
        status.node_info = Some(NodeSystemInfo {
            machine_id: std::fs::read_to_string("/etc/machine-id")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            kernel_version: info.kernel_version.clone(),
            os_image: info.os_image.clone(),
            container_runtime_version: info.runtime_version.clone(),
            kubelet_version: VERSION.to_owned(),
            operating_system: info.operating_system.clone(),
            architecture: info.architecture.clone(),
        });
    }
    if facts.agent_port != 0 {
        status.daemon_endpoints = Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(facts.agent_port),
            }),
        });
    }
    if !facts.host_ip.is_empty() {
        status.addresses = vec![
            NodeAddress {
                r#type: "InternalIP".into(),
                address: facts.host_ip.to_owned(),
            },
            NodeAddress {
                r#type: "Hostname".into(),
                address: facts.hostname.to_owned(),
            },
        ];
    }
    let transition = old
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready" && c.status == value)
        .and_then(|c| c.last_transition_time)
        .unwrap_or(now);
    status.conditions.retain(|c| c.r#type != "Ready");
    status.conditions.push(NodeCondition {
        r#type: "Ready".into(),
        status: value.into(),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(transition),
        reason: reason.into(),
        message,
    });
    status
}

/// Creates or renews the node's Lease.
async fn renew_lease(
    client: &Client,
    name: &str,
    config: &Config,
    cached: Option<Lease>,
) -> Result<Lease, Error> {
    let leases = client.api::<Lease>();
    let now = Timestamp::from(std::time::SystemTime::now());
    // Four heartbeats, in whole seconds, at least one (a lease of zero
    // seconds is invalid; tests beat faster than once a second).
    let seconds = config
        .heartbeat
        .saturating_mul(4)
        .as_millis()
        .div_ceil(1000)
        .max(1);
    let duration = i32::try_from(seconds).unwrap_or(i32::MAX);
    let renew = |mut lease: Lease| {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(name.to_owned());
        spec.lease_duration_seconds = Some(duration);
        spec.renew_time = Some(now);
        lease
    };
    // The Lease as this agent last wrote it: one write, no read, unless
    // someone else changed it meanwhile.
    if let Some(lease) = cached {
        match leases.update(&renew(lease)).await {
            Ok(lease) => return Ok(lease),
            Err(moor_client::Error::Conflict(_) | moor_client::Error::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    match leases.get(LEASE_NAMESPACE, name).await {
        Ok(lease) => Ok(leases.update(&renew(lease)).await?),
        Err(moor_client::Error::NotFound(_)) => {
            let mut lease = Lease {
                metadata: Some(ObjectMeta {
                    name: name.to_owned(),
                    namespace: LEASE_NAMESPACE.to_owned(),
                    ..Default::default()
                }),
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.to_owned()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                }),
                ..Default::default()
            };
            lease.set_type_meta();
            Ok(leases.create(&lease).await?)
        }
        Err(err) => Err(err.into()),
    }
}
