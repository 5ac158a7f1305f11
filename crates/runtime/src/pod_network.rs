//! moor's own attachment of pod sandboxes to the cluster's Docker network.
//!
//! Docker's networking costs a new container more than the rest of its
//! start: the engine runs itself again as the container's prestart hook
//! (`libnetwork-setkey`), then again to set up its embedded DNS resolver in
//! the namespace, with a dozen `iptables` runs. A sandbox needs none of it:
//! pods resolve through the cluster DNS from files the node agent writes. So
//! a sandbox is created with networking disabled (a network namespace with
//! only `lo`), and moor gives it an address from its half of the network's
//! subnet and a veth pair into the network's bridge, as a CNI bridge plugin
//! with host-local addressing would. On the wire it is the same: one bridge,
//! one subnet, the gateway and the NAT rules Docker made for the network.
//!
//! Addresses are reserved as files named by address under
//! [`IPAM_DIR`]`/<network id>`, created exclusively and holding the
//! sandbox's container name: every node agent on the host shares them
//! without a lock, and they outlive agent restarts (not host reboots, like
//! the containers that hold them).

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{self, ErrorKind};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bollard::models::NetworkInspect;
use ipnet::Ipv4Net;

/// Where reservations live: tmpfs, shared by every agent on the host.
pub const IPAM_DIR: &str = "/run/moor/ipam";

/// The network label that names moor's half of its subnet (the other half is
/// Docker's `IPRange`, for containers Docker attaches itself).
pub const POD_RANGE_LABEL: &str = "moor.pod-range";

/// The network label that names the node's pod range, on a network made on
/// it (the cluster assigned the range; see `Docker::connect_with`).
pub const NODE_RANGE_LABEL: &str = "moor.node-range";

/// The sandbox label that carries the address moor gave it.
pub const POD_IP_LABEL: &str = "moor.sandbox.ip";

/// A reservation older than this whose container is gone is garbage: a
/// younger one may belong to a sandbox being created right now (a create
/// may take up to the Docker client's two-minute timeout on a saturated
/// engine).
pub const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// The cluster network as moor addresses pods on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    /// The network's Linux bridge.
    pub bridge: String,
    /// The network's subnet: the prefix length pods get.
    pub subnet: Ipv4Net,
    /// The bridge's address, the pods' default route.
    pub gateway: Ipv4Addr,
    /// The addresses moor hands out.
    pub range: Ipv4Net,
    /// The reservations of this network.
    pub dir: PathBuf,
}

// === impl PodNetwork ===

impl PodNetwork {
    /// The network's addressing, or `None` when it has no moor range (a
    /// network made by an older moor, or by hand): then Docker attaches the
    /// sandboxes itself.
    pub fn from_inspect(network: &NetworkInspect) -> Option<Self> {
        let range: Ipv4Net = network
            .labels
            .as_ref()?
            .get(POD_RANGE_LABEL)?
            .parse()
            .ok()?;
        let config = network.ipam.as_ref()?.config.as_ref()?.first()?;
        let subnet: Ipv4Net = config.subnet.as_deref()?.parse().ok()?;
        let gateway: Ipv4Addr = config.gateway.as_deref()?.parse().ok()?;
        let id = network.id.as_deref().filter(|id| id.len() >= 12)?;
        let bridge = network
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.bridge.name"))
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        Some(Self {
            bridge,
            subnet,
            gateway,
            range,
            dir: PathBuf::from(IPAM_DIR).join(id),
        })
    }

    /// How to split `subnet` (a new network's, as Docker picked it): Docker
    /// keeps the lower half for what it attaches (the gateway is there),
    /// moor the upper half for pods. `None` when the subnet is too small.
    pub fn split(subnet: Ipv4Net) -> Option<(Ipv4Net, Ipv4Net)> {
        let mut halves = subnet.subnets(subnet.prefix_len().checked_add(1)?).ok()?;
        let (docker, pods) = (halves.next()?, halves.next()?);
        (pods.prefix_len() <= 30).then_some((docker, pods))
    }

    /// Reserves an address for the sandbox named `owner`: the first free one
    /// from a place that depends on the name (each attempt of a pod has its
    /// own), so agents starting pods at once rarely try the same address and
    /// a released address is seldom handed out again soon. When it is, the
    /// pod's MAC address, made from the IP address, is the same too, so
    /// neighbours' ARP caches stay right.
    pub fn reserve(&self, owner: &str) -> io::Result<Ipv4Addr> {
        std::fs::create_dir_all(&self.dir)?;
        let first = u32::from(self.range.network());
        let size = 1u32 << (32 - self.range.prefix_len());
        let start = BuildHasherDefault::<DefaultHasher>::default().hash_one(owner);
        let start = u32::try_from(start % u64::from(size)).unwrap_or(0);
        for step in 0..size {
            let ip = Ipv4Addr::from(first + (start + step) % size);
            if ip == self.subnet.broadcast() || ip == self.gateway {
                continue;
            }
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.dir.join(ip.to_string()))
            {
                Ok(mut file) => {
                    io::Write::write_all(&mut file, owner.as_bytes())?;
                    return Ok(ip);
                }
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::other(format!(
            "every address of {} is reserved (see {})",
            self.range,
            self.dir.display()
        )))
    }

    /// Releases `ip` if `owner` still holds it.
    pub fn release(&self, ip: Ipv4Addr, owner: &str) -> io::Result<()> {
        let path = self.dir.join(ip.to_string());
        match std::fs::read_to_string(&path) {
            Ok(holder) if holder == owner => match std::fs::remove_file(&path) {
                Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            },
            Ok(_) => Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Releases reservations older than `min_age` whose owner is not among
    /// `live` (container names); returns how many went.
    pub fn release_orphans(&self, live: &HashSet<String>, min_age: Duration) -> io::Result<usize> {
        let mut released = 0;
        for entry in entries_older_than(&self.dir, min_age)? {
            let path = entry.path();
            let Ok(owner) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !live.contains(&owner) && std::fs::remove_file(&path).is_ok() {
                released += 1;
            }
        }
        Ok(released)
    }
}

/// Deletes the reservations of networks not among `live` (network ids), if
/// older than [`ORPHAN_AGE`] (a network newer than the list of `live` may
/// have one already).
pub fn forget_removed_networks(live: &HashSet<String>) -> io::Result<()> {
    for entry in entries_older_than(Path::new(IPAM_DIR), ORPHAN_AGE)? {
        if !live.contains(entry.file_name().to_string_lossy().as_ref()) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// The entries of `dir` last modified at least `min_age` ago (none when
/// `dir` does not exist).
fn entries_older_than(dir: &Path, min_age: Duration) -> io::Result<Vec<std::fs::DirEntry>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let now = SystemTime::now();
    let mut old = Vec::new();
    for entry in entries {
        let entry = entry?;
        let modified = entry.metadata().and_then(|m| m.modified());
        if modified.is_ok_and(|at| now.duration_since(at).unwrap_or_default() >= min_age) {
            old.push(entry);
        }
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(dir: &std::path::Path) -> PodNetwork {
        PodNetwork {
            bridge: "br-test".into(),
            subnet: "10.9.0.0/29".parse().expect("valid"),
            gateway: "10.9.0.1".parse().expect("valid"),
            range: "10.9.0.4/30".parse().expect("valid"),
            dir: dir.join("net"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("moor-ipam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn split_gives_the_upper_half_to_pods() {
        let subnet: Ipv4Net = "172.18.0.0/16".parse().expect("valid");
        let (docker, pods) = PodNetwork::split(subnet).expect("splits");
        assert_eq!(docker.to_string(), "172.18.0.0/17");
        assert_eq!(pods.to_string(), "172.18.128.0/17");
        assert_eq!(
            PodNetwork::split("10.0.0.0/31".parse().expect("valid")),
            None
        );
    }

    #[test]
    fn reservations_are_exclusive_skip_broadcast_and_run_out() {
        let dir = temp_dir("exclusive");
        let net = network(&dir);
        // 10.9.0.4/30 holds .4 .5 .6 .7, and .7 is the subnet's broadcast.
        let mut got: Vec<Ipv4Addr> = ["a", "b", "c"]
            .iter()
            .map(|owner| net.reserve(owner).expect("free address"))
            .collect();
        got.sort();
        let want: Vec<Ipv4Addr> = ["10.9.0.4", "10.9.0.5", "10.9.0.6"]
            .iter()
            .map(|ip| ip.parse().expect("valid"))
            .collect();
        assert_eq!(got, want);
        let err = net.reserve("d").expect_err("range exhausted");
        assert!(err.to_string().contains("10.9.0.4/30"), "{err}");

        // Only the holder releases; then the address is free again.
        let ip = got[0];
        let holder = std::fs::read_to_string(net.dir.join(ip.to_string())).expect("reserved");
        net.release(ip, "someone else").expect("no-op");
        assert!(net.reserve("d").is_err());
        net.release(ip, &holder).expect("released");
        assert_eq!(net.reserve("d").expect("free again"), ip);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn orphans_go_only_when_old_and_not_live() {
        let dir = temp_dir("orphans");
        let net = network(&dir);
        net.reserve("live").expect("free");
        net.reserve("dead").expect("free");
        let live = HashSet::from(["live".to_owned()]);
        assert_eq!(
            net.release_orphans(&live, Duration::from_secs(3600))
                .expect("scan"),
            0,
            "too young"
        );
        assert_eq!(net.release_orphans(&live, Duration::ZERO).expect("scan"), 1);
        let left: Vec<String> = std::fs::read_dir(&net.dir)
            .expect("dir")
            .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
            .collect();
        assert_eq!(left, vec!["live".to_owned()]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
