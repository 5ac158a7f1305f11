//! The pod network between hosts, as flannel builds it: the node's pod
//! range comes from the cluster (`spec.podCIDR`, handed out by the
//! controller-manager), its pods' bridge is made on it, and every other
//! node's range is routed to that node.
//!
//! Backends, as flannel's:
//! - `vxlan`: one VXLAN device per host ([`VXLAN_DEVICE`], VNI 1, UDP
//!   8472, no learning), addressed with the first address of the node's
//!   range. Each node publishes its device's MAC and its own address on its
//!   Node; for every other node the agent routes its range through the
//!   device, with a permanent neighbour entry for its VTEP and a forwarding
//!   entry sending that MAC to its host. Works across any IP network.
//! - `host-gw`: a plain route to each other node's range via that node's
//!   address: no encapsulation, but every host must be on one L2 segment.
//!
//! Pod-to-pod traffic keeps its source address; traffic from pods to
//! outside the cluster CIDR is masqueraded, and forwarding to and from the
//! cluster CIDR is accepted ahead of Docker's own rules. Routes carry
//! [`moor_hostnet::ROUTE_PROTOCOL`], so entries of nodes that went
//! away are found and removed.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use moor_api::core::v1::Node;
use moor_client::watcher::Event;
use moor_client::{Client, ListParams};
use moor_hostnet::Ipv4Net;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The overlay's device, named as flannel names its own (`flannel.1`).
pub const VXLAN_DEVICE: &str = "moor.1";
/// The VXLAN network identifier.
pub const VNI: u32 = 1;
/// VXLAN's headers (outer IPv4, UDP, VXLAN, inner Ethernet).
const VXLAN_OVERHEAD: u32 = 50;

/// Annotation: the node's network backend (`vxlan` or `host-gw`).
pub const BACKEND_ANNOTATION: &str = "network.moor.dev/backend";
/// Annotation: the node's own address, where its overlay traffic goes.
pub const PUBLIC_IP_ANNOTATION: &str = "network.moor.dev/public-ip";
/// Annotation: the MAC of the node's VXLAN device.
pub const VTEP_MAC_ANNOTATION: &str = "network.moor.dev/vtep-mac";

/// How often the routes are checked against the nodes without a change
/// (someone may have deleted one by hand).
const RESYNC: Duration = Duration::from_secs(30);

/// How pods reach other nodes' pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Docker picks the bridge's subnet; pods reach only this host's pods
    /// (a single-host cluster, or tests running many agents on one host).
    Local,
    /// VXLAN between hosts, flannel's default.
    Vxlan,
    /// Routes via the other hosts' addresses; hosts share one L2 segment.
    HostGw,
}

// === impl Backend ===

impl Backend {
    /// The name on the command line and in the Node annotation.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "none",
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "none" => Ok(Backend::Local),
            other => Err(format!(
                "unknown network backend {other:?}: use vxlan, host-gw or none"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// This node's place in the pod network, once set up.
#[derive(Clone, Debug)]
pub struct NodeNetwork {
    /// The node's pod range.
    pub range: Ipv4Net,
    /// The MTU pods get.
    pub mtu: u32,
}

/// What the overlay needs to know of this node.
#[derive(Clone, Debug)]
struct Local {
    name: String,
    backend: Backend,
    range: Ipv4Net,
    /// The node's own address.
    ip: Ipv4Addr,
    /// The VXLAN device's index (vxlan only).
    device: Option<u32>,
}

/// Waits for the node's pod range, builds the overlay's device and host
/// rules, and publishes how other nodes reach this one. `None` on shutdown.
pub async fn set_up(
    config: &crate::Config,
    client: &Client,
    shutdown: &CancellationToken,
) -> Result<Option<(NodeNetwork, Overlay)>, Error> {
    let Some(range) = wait_for_range(config, client, shutdown).await? else {
        return Ok(None);
    };
    let node_ip = config.node_ip;
    let backend = config.network_backend;
    let cluster = config.cluster_cidr;
    tracing::info!(node = %config.name, %range, %backend, %node_ip, "pod range assigned");
    let (mtu, device, mac) = blocking(move || -> Result<_, moor_hostnet::Error> {
        let underlay = moor_hostnet::link_with_address(node_ip)?;
        let underlay_mtu = underlay.as_ref().map_or(1500, |l| l.mtu);
        let (mtu, device, mac) = match backend {
            Backend::Vxlan => {
                let mac = moor_hostnet::ensure_vxlan(&moor_hostnet::VxlanConfig {
                    name: VXLAN_DEVICE.to_owned(),
                    vni: VNI,
                    local: node_ip,
                    port: moor_hostnet::VXLAN_PORT,
                    underlay: underlay.as_ref().map(|l| l.index),
                    mtu: Some(underlay_mtu - VXLAN_OVERHEAD),
                })?;
                // The VTEP's address: the range's network address, as
                // flannel gives its device (the bridge has the first host
                // address).
                let vtep = Ipv4Net::new(range.network(), 32).unwrap_or(range);
                // A node given a new range (deleted and registered again)
                // drops the old VTEP address.
                for old in moor_hostnet::list_addresses(VXLAN_DEVICE)? {
                    if old != vtep {
                        moor_hostnet::remove_address(VXLAN_DEVICE, old)?;
                    }
                }
                moor_hostnet::add_address(VXLAN_DEVICE, vtep)?;
                let index = moor_hostnet::interface_index(VXLAN_DEVICE)?;
                (underlay_mtu - VXLAN_OVERHEAD, Some(index), Some(mac))
            }
            Backend::HostGw | Backend::Local => (underlay_mtu, None, None),
        };
        Ok((mtu, device, mac))
    })
    .await?
    .map_err(|e| Error::Network(format!("setting up the {backend} backend: {e}")))?;
    host_rules(range, cluster).await?;
    publish(config, client, mac, shutdown).await?;
    let overlay = Overlay {
        local: Local {
            name: config.name.clone(),
            backend,
            range,
            ip: node_ip,
            device,
        },
    };
    Ok(Some((NodeNetwork { range, mtu }, overlay)))
}

/// Watches the node's own Node until it has a pod range.
async fn wait_for_range(
    config: &crate::Config,
    client: &Client,
    shutdown: &CancellationToken,
) -> Result<Option<Ipv4Net>, Error> {
    crate::node::register(config, client).await?;
    let params = ListParams::default().fields(format!("metadata.name={}", config.name));
    let mut events = std::pin::pin!(moor_client::watcher(client.api::<Node>(), params));
    let mut told = false;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            event = events.next() => event,
        };
        let nodes = match event {
            Some(Ok(Event::Applied(node))) => vec![node],
            Some(Ok(Event::Restarted(nodes))) => nodes,
            Some(Ok(Event::Deleted(_))) => {
                crate::node::register(config, client).await?;
                continue;
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "watching the node for its pod range; the watcher retries");
                continue;
            }
            None => return Ok(None),
        };
        for node in nodes {
            if let Some(range) = pod_range(&node) {
                return Ok(Some(range));
            }
        }
        if !told {
            tracing::info!(node = %config.name, "waiting for the controller-manager to assign this node a pod range");
            told = true;
        }
    }
}

/// Sets the node's backend annotations (retrying while the Node changes).
async fn publish(
    config: &crate::Config,
    client: &Client,
    mac: Option<[u8; 6]>,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let nodes = client.api::<Node>();
    let mut wanted = BTreeMap::from([
        (
            BACKEND_ANNOTATION.to_owned(),
            config.network_backend.name().to_owned(),
        ),
        (PUBLIC_IP_ANNOTATION.to_owned(), config.node_ip.to_string()),
    ]);
    if let Some(mac) = mac {
        wanted.insert(VTEP_MAC_ANNOTATION.to_owned(), format_mac(mac));
    }
    loop {
        let mut node = nodes.get("", &config.name).await?;
        let meta = node.metadata.get_or_insert_with(Default::default);
        if wanted
            .iter()
            .all(|(k, v)| meta.annotations.get(k) == Some(v))
        {
            return Ok(());
        }
        meta.annotations.extend(wanted.clone());
        match nodes.update(&node).await {
            Ok(_) => return Ok(()),
            Err(moor_client::Error::Conflict(_)) if !shutdown.is_cancelled() => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Masquerades what pods send out of the cluster, and lets traffic to and
/// from the cluster's pods through the host's forwarding chain ahead of
/// Docker's isolation rules.
async fn host_rules(range: Ipv4Net, cluster: Ipv4Net) -> Result<(), Error> {
    let (range, cluster) = (range.to_string(), cluster.to_string());
    let comment = format!("moor: pods of {range} leaving the cluster");
    ensure_rule(
        "nat",
        "POSTROUTING",
        &[
            "-s",
            &range,
            "!",
            "-d",
            &cluster,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "MASQUERADE",
        ],
    )
    .await?;
    // Docker's DOCKER-USER is evaluated before its isolation rules; without
    // Docker's chains, the forwarding chain itself.
    let chain = if iptables(&["-t", "filter", "-S", "DOCKER-USER"])
        .await
        .is_ok()
    {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    let comment = "moor: pod traffic of the cluster";
    for direction in ["-s", "-d"] {
        ensure_rule(
            "filter",
            chain,
            &[
                direction,
                &cluster,
                "-m",
                "comment",
                "--comment",
                comment,
                "-j",
                "ACCEPT",
            ],
        )
        .await?;
    }
    Ok(())
}

/// Inserts a rule unless it is there.
async fn ensure_rule(table: &str, chain: &str, rule: &[&str]) -> Result<(), Error> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if iptables(&check).await.is_ok() {
        return Ok(());
    }
    let mut insert = vec!["-t", table, "-I", chain, "1"];
    insert.extend_from_slice(rule);
    iptables(&insert)
        .await
        .map_err(|e| Error::Network(format!("adding a rule to {table} {chain}: {e}")))
}

/// Runs `iptables -w ARGS`; its error output on failure.
async fn iptables(args: &[&str]) -> Result<(), String> {
    let output = tokio::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Keeps the routes to other nodes' pods in step with the nodes.
pub struct Overlay {
    local: Local,
}

// === impl Overlay ===

impl Overlay {
    /// Follows every Node until `shutdown`, programming the routes (and
    /// for vxlan the neighbour and forwarding entries) of each other node
    /// and removing those of nodes that went away. Fails when this node's
    /// own range changes (it was deleted and registered again): its bridge
    /// and pods hold the old one, so the agent must start over.
    pub async fn run(self, client: Client, shutdown: CancellationToken) -> Result<(), Error> {
        let local = Arc::new(self.local);
        let mut events = std::pin::pin!(moor_client::watcher(
            client.api::<Node>(),
            ListParams::default().any_version()
        ));
        let mut nodes: HashMap<String, Node> = HashMap::new();
        let mut synced = false;
        let mut resync = tokio::time::interval(RESYNC);
        // What was programmed last: a Node's heartbeat changes its status
        // every few seconds, and reprogramming every peer for each would
        // cost O(nodes²) a heartbeat period.
        let mut programmed: Option<Vec<Peer>> = None;
        loop {
            let mut forced = false;
            let changed = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = resync.tick() => {
                    // Someone may have deleted an entry by hand.
                    forced = true;
                    synced
                }
                event = events.next() => match event {
                    Some(Ok(Event::Applied(node))) => {
                        nodes.insert(name_of(&node), node);
                        synced
                    }
                    Some(Ok(Event::Deleted(node))) => {
                        nodes.remove(&name_of(&node));
                        synced
                    }
                    Some(Ok(Event::Restarted(all))) => {
                        nodes = all.into_iter().map(|n| (name_of(&n), n)).collect();
                        synced = true;
                        true
                    }
                    Some(Err(err)) => {
                        tracing::debug!(%err, "node watch failed; the watcher retries");
                        false
                    }
                    None => return Ok(()),
                },
            };
            if !changed {
                continue;
            }
            if let Some(own) = nodes.get(&local.name).and_then(pod_range)
                && own != local.range
            {
                return Err(Error::Network(format!(
                    "this node's pod range is now {own}, not {} (the Node was deleted and \
                     registered again): start the agent again to move its pods to the new range",
                    local.range
                )));
            }
            let peers = peers(&local, nodes.values());
            if !forced && programmed.as_ref() == Some(&peers) {
                continue;
            }
            let programming = local.clone();
            let wanted = peers.clone();
            match blocking(move || program(&programming, &wanted)).await {
                Ok(Ok(())) => programmed = Some(peers),
                Ok(Err(err)) | Err(err) => {
                    programmed = None;
                    tracing::warn!(%err, "cannot program the routes to other nodes' pods; retrying at the next change or resync");
                }
            }
        }
    }
}

/// How to reach one other node's pods.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Peer {
    range: Ipv4Net,
    public_ip: Ipv4Addr,
    /// The MAC of its VXLAN device (vxlan only).
    mac: Option<[u8; 6]>,
}

/// The other nodes this node can reach, by their published backend data.
fn peers<'a>(local: &Local, nodes: impl Iterator<Item = &'a Node>) -> Vec<Peer> {
    let mut peers = Vec::new();
    for node in nodes {
        let name = name_of(node);
        if name == local.name {
            continue;
        }
        let Some(range) = pod_range(node) else {
            continue;
        };
        if range == local.range {
            continue;
        }
        let Some(annotations) = node.metadata.as_ref().map(|m| &m.annotations) else {
            continue;
        };
        let Some(public_ip) = annotations
            .get(PUBLIC_IP_ANNOTATION)
            .and_then(|ip| ip.parse().ok())
        else {
            continue;
        };
        // Another node on this very host (tests run several): its bridge is
        // here, and the kernel's own route to it must stay.
        if public_ip == local.ip {
            continue;
        }
        if annotations.get(BACKEND_ANNOTATION).map(String::as_str) != Some(local.backend.name()) {
            tracing::debug!(node = %name, "another network backend (or none yet): not routed");
            continue;
        }
        let mac = annotations
            .get(VTEP_MAC_ANNOTATION)
            .and_then(|m| parse_mac(m));
        if local.backend == Backend::Vxlan && mac.is_none() {
            continue;
        }
        peers.push(Peer {
            range,
            public_ip,
            mac,
        });
    }
    peers.sort_by_key(|p| p.range);
    peers
}

/// Makes the kernel's routes (and neighbour and forwarding entries) those
/// of `peers`: missing ones added, changed ones replaced, others removed.
fn program(local: &Local, peers: &[Peer]) -> Result<(), Error> {
    let fail = |what: &str, e: moor_hostnet::Error| Error::Network(format!("{what}: {e}"));
    let wanted: HashMap<Ipv4Net, moor_hostnet::Route> = peers
        .iter()
        .map(|peer| (peer.range, route_to(local, peer)))
        .collect();
    let present = moor_hostnet::list_routes(moor_hostnet::ROUTE_PROTOCOL)
        .map_err(|e| fail("listing routes", e))?;
    for route in &present {
        if !wanted.contains_key(&route.destination) {
            moor_hostnet::remove_route(route.destination)
                .map_err(|e| fail("removing a route", e))?;
            tracing::info!(range = %route.destination, "route to a node that went away removed");
        }
    }
    for (range, route) in &wanted {
        if !present.contains(route) {
            moor_hostnet::replace_route(route).map_err(|e| fail("adding a route", e))?;
            tracing::info!(%range, via = ?route.gateway, "route to a node's pods added");
        }
    }
    let Some(device) = local.device else {
        return Ok(());
    };
    // vxlan: the VTEP of each peer answers for its MAC, and its MAC lives
    // behind its host's address.
    let neighbours: HashMap<Ipv4Addr, [u8; 6]> = peers
        .iter()
        .filter_map(|p| Some((p.range.network(), p.mac?)))
        .collect();
    for moor_hostnet::Neighbour { ip, mac } in
        moor_hostnet::list_neighbours(device).map_err(|e| fail("listing neighbours", e))?
    {
        if neighbours.get(&ip) != Some(&mac) {
            moor_hostnet::remove_neighbour(device, ip)
                .map_err(|e| fail("removing a neighbour", e))?;
        }
    }
    for (ip, mac) in &neighbours {
        moor_hostnet::replace_neighbour(device, *ip, *mac)
            .map_err(|e| fail("adding a neighbour", e))?;
    }
    let forwarding: HashMap<[u8; 6], Ipv4Addr> = peers
        .iter()
        .filter_map(|p| Some((p.mac?, p.public_ip)))
        .collect();
    for moor_hostnet::FdbEntry { mac, destination } in
        moor_hostnet::list_fdb(device).map_err(|e| fail("listing fdb", e))?
    {
        if forwarding.get(&mac) != Some(&destination) {
            moor_hostnet::remove_fdb(device, mac, destination)
                .map_err(|e| fail("removing a forwarding entry", e))?;
        }
    }
    for (mac, dst) in &forwarding {
        moor_hostnet::replace_fdb(device, *mac, *dst)
            .map_err(|e| fail("adding a forwarding entry", e))?;
    }
    Ok(())
}

/// The route to `peer`'s pods for this node's backend.
fn route_to(local: &Local, peer: &Peer) -> moor_hostnet::Route {
    match local.device {
        Some(device) => moor_hostnet::Route {
            destination: peer.range,
            gateway: Some(peer.range.network()),
            device: Some(device),
            onlink: true,
        },
        None => moor_hostnet::Route {
            destination: peer.range,
            gateway: Some(peer.public_ip),
            device: None,
            onlink: false,
        },
    }
}

fn name_of(node: &Node) -> String {
    node.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// The node's pod range, when it has a valid one.
pub fn pod_range(node: &Node) -> Option<Ipv4Net> {
    node.spec
        .as_ref()
        .map(|s| s.pod_cidr.as_str())
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Runs blocking netlink work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Network(format!("the network task stopped: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::NodeSpec;
    use moor_api::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: &str, annotations: &[(&str, &str)]) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: cidr.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn local(backend: Backend) -> Local {
        Local {
            name: "a".into(),
            backend,
            range: "10.244.0.0/24".parse().expect("valid"),
            ip: Ipv4Addr::new(198, 18, 0, 1),
            device: (backend == Backend::Vxlan).then_some(7),
        }
    }

    #[test]
    fn peers_are_the_other_nodes_that_published_the_same_backend() {
        let vxlan = [
            (BACKEND_ANNOTATION, "vxlan"),
            (PUBLIC_IP_ANNOTATION, "198.18.0.2"),
            (VTEP_MAC_ANNOTATION, "0a:00:00:00:00:02"),
        ];
        let nodes = [
            node("a", "10.244.0.0/24", &vxlan),
            node("b", "10.244.1.0/24", &vxlan),
            node("no-range", "", &vxlan),
            node("no-annotations", "10.244.3.0/24", &[]),
            node(
                "same-host",
                "10.244.5.0/24",
                &[
                    (BACKEND_ANNOTATION, "vxlan"),
                    (PUBLIC_IP_ANNOTATION, "198.18.0.1"),
                    (VTEP_MAC_ANNOTATION, "0a:00:00:00:00:05"),
                ],
            ),
            node(
                "host-gw",
                "10.244.4.0/24",
                &[
                    (BACKEND_ANNOTATION, "host-gw"),
                    (PUBLIC_IP_ANNOTATION, "198.18.0.4"),
                ],
            ),
        ];
        let found = peers(&local(Backend::Vxlan), nodes.iter());
        assert_eq!(
            found,
            [Peer {
                range: "10.244.1.0/24".parse().expect("valid"),
                public_ip: Ipv4Addr::new(198, 18, 0, 2),
                mac: Some([10, 0, 0, 0, 0, 2]),
            }]
        );
        let found = peers(&local(Backend::HostGw), nodes.iter());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].public_ip, Ipv4Addr::new(198, 18, 0, 4));
    }

    #[test]
    fn vxlan_routes_go_through_the_device_and_host_gw_via_the_host() {
        let peer = Peer {
            range: "10.244.1.0/24".parse().expect("valid"),
            public_ip: Ipv4Addr::new(198, 18, 0, 2),
            mac: Some([10, 0, 0, 0, 0, 2]),
        };
        let route = route_to(&local(Backend::Vxlan), &peer);
        assert_eq!(route.gateway, Some(Ipv4Addr::new(10, 244, 1, 0)));
        assert_eq!(route.device, Some(7));
        assert!(route.onlink);
        let route = route_to(&local(Backend::HostGw), &peer);
        assert_eq!(route.gateway, Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!route.onlink);
    }

    #[test]
    fn macs_read_back_as_written_and_bad_ones_are_refused() {
        let mac = [0x0a, 0xff, 0, 1, 2, 0x3b];
        assert_eq!(parse_mac(&format_mac(mac)), Some(mac));
        assert_eq!(parse_mac("0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("0a:ff:00:01:02:3b:00"), None);
        assert_eq!(parse_mac("zz:ff:00:01:02:3b"), None);
    }

    #[test]
    fn backends_parse_from_their_names() {
        for backend in [Backend::Vxlan, Backend::HostGw, Backend::Local] {
            assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        }
        let err = "flannel".parse::<Backend>().expect_err("unknown");
        assert!(err.contains("vxlan, host-gw or none"), "{err}");
    }
}
