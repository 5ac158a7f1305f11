//! A flannel-style overlay between two network namespaces joined by a veth
//! pair (the "underlay"), against the running kernel: needs root, `unshare`
//! and `nsenter` (util-linux), `ip` (iproute2) and python3 for the traffic.
//!
//! Everything happens inside namespaces the tests make, so nothing touches
//! the host's network and parallel runs cannot collide; the namespaces go
//! with their guards (a sleeping process and an open handle), also on panic.
//! The library is called from a thread moved into a namespace, as moor's
//! node agent calls it from the host's.

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use moor_hostnet::{
    Error, FdbEntry, Ipv4Net, Neighbour, ROUTE_PROTOCOL, Route, VXLAN_PORT, VxlanConfig,
    add_address, ensure_vxlan, link_details, link_with_address, list_fdb, list_neighbours,
    list_routes, remove_fdb, remove_neighbour, remove_route, replace_fdb, replace_neighbour,
    replace_route, set_mtu,
};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// The overlay device in each namespace (flannel's would be `flannel.1`).
const VXLAN: &str = "moor.1";
/// The port the test server listens on.
const PORT: u16 = 7777;

/// A network namespace held by a sleeping process, and open so the
/// namespace outlives it until the guard goes. The sleep ends by itself
/// should the test be killed before its guards run.
struct Netns {
    child: Child,
    handle: File,
}

/// Kills a process when dropped.
struct ChildGuard(Child);

/// One side of the overlay: a namespace and its addresses.
struct Node {
    netns: Netns,
    /// The underlay address, on `underlay`.
    underlay_ip: Ipv4Addr,
    /// The underlay link's name.
    underlay: &'static str,
    /// The node's pod range, 10.X.N.0/24.
    pods: Ipv4Net,
    /// The VXLAN device's address, the first of the pod range, as flannel
    /// gives it.
    vtep: Ipv4Addr,
    /// A pod's address, on `lo` (the kernel here has no dummy links).
    pod: Ipv4Addr,
}

/// What [`Node::make_vxlan`] made.
#[derive(Clone, Copy, Debug)]
struct Vtep {
    index: u32,
    mac: [u8; 6],
}

// === impl Netns ===

impl Netns {
    fn new() -> Self {
        let mut child = Command::new("unshare")
            .args(["--net", "sh", "-c", "echo ready; exec sleep 600"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux)");
        // Only after this line is the process in its new namespace.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read from unshare");
        assert_eq!(line.trim(), "ready");
        let handle = File::open(format!("/proc/{}/ns/net", child.id())).expect("open the netns");
        let netns = Self { child, handle };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.child.id())
    }

    /// Runs `f` on a thread inside the namespace: every netlink socket the
    /// library opens there talks about this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                move_into_link_name_space(self.handle.as_fd(), Some(LinkNameSpaceType::Network))
                    .expect("enter the namespace");
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `ip ARGS` inside the namespace; its output.
    fn ip(&self, args: &[&str]) -> String {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .arg("ip")
            .args(args)
            .output()
            .expect("run nsenter and ip");
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A TCP server on `ip`:[`PORT`] that answers each connection with the
    /// address it came from; returns once it listens.
    fn serve(&self, ip: Ipv4Addr) -> ChildGuard {
        let script = "import socket, sys\n\
            s = socket.socket()\n\
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
            s.bind((sys.argv[1], int(sys.argv[2])))\n\
            s.listen()\n\
            s.settimeout(300)\n\
            print('listening', flush=True)\n\
            while True:\n\
            \x20   c, peer = s.accept()\n\
            \x20   c.sendall(peer[0].encode())\n\
            \x20   c.close()\n";
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(["python3", "-c", script, &ip.to_string(), &PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run nsenter and python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read from the server");
        let guard = ChildGuard(child);
        assert_eq!(line.trim(), "listening");
        guard
    }

    /// Connects from `source` to `destination`:[`PORT`], giving up after a
    /// second; the address the server saw, or why it failed.
    fn connect(&self, source: Ipv4Addr, destination: Ipv4Addr) -> Result<String, String> {
        let script = "import socket, sys\n\
            s = socket.socket()\n\
            s.settimeout(1)\n\
            s.bind((sys.argv[1], 0))\n\
            s.connect((sys.argv[2], int(sys.argv[3])))\n\
            print(s.recv(100).decode())\n";
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(["python3", "-c", script])
            .args([
                source.to_string(),
                destination.to_string(),
                PORT.to_string(),
            ])
            .output()
            .expect("run nsenter and python3");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === impl ChildGuard ===

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// === impl Node ===

impl Node {
    /// Two nodes whose underlay links, `under-a` and `under-b`, are the two
    /// ends of one veth pair, with 198.19.X.1/24 and 198.19.X.2/24.
    fn pair() -> (Self, Self) {
        let x = random_octet();
        let node = |n: u8, underlay| Self {
            netns: Netns::new(),
            underlay_ip: Ipv4Addr::new(198, 19, x, n),
            underlay,
            pods: Ipv4Net::new(Ipv4Addr::new(10, x, n, 0), 24).expect("valid"),
            vtep: Ipv4Addr::new(10, x, n, 0),
            pod: Ipv4Addr::new(10, x, n, 7),
        };
        let (a, b) = (node(1, "under-a"), node(2, "under-b"));
        let b_pid = b.netns.child.id().to_string();
        a.netns.ip(&[
            "link", "add", a.underlay, "type", "veth", "peer", "name", b.underlay, "netns", &b_pid,
        ]);
        for side in [&a, &b] {
            let address = format!("{}/24", side.underlay_ip);
            side.netns
                .ip(&["addr", "add", &address, "dev", side.underlay]);
            side.netns.ip(&["link", "set", side.underlay, "up"]);
            let pod = Ipv4Net::new(side.pod, 32).expect("valid");
            assert!(
                side.netns
                    .run(|| add_address("lo", pod))
                    .expect("pod address")
            );
        }
        (a, b)
    }

    fn vxlan_config(&self, underlay: u32) -> VxlanConfig {
        VxlanConfig {
            name: VXLAN.to_owned(),
            vni: 1,
            local: self.underlay_ip,
            port: VXLAN_PORT,
            underlay: Some(underlay),
            mtu: None,
        }
    }

    /// The VXLAN device on the underlay, with the VTEP address.
    fn make_vxlan(&self) -> Vtep {
        self.netns.run(|| {
            let underlay = link_details(self.underlay).expect("underlay").index;
            let mac = ensure_vxlan(&self.vxlan_config(underlay)).expect("ensure_vxlan");
            let vtep = Ipv4Net::new(self.vtep, 32).expect("valid");
            add_address(VXLAN, vtep).expect("VTEP address");
            Vtep {
                index: link_details(VXLAN).expect("vxlan").index,
                mac,
            }
        })
    }

    /// The route to `peer`'s pods through the overlay, as flannel's vxlan
    /// backend makes it.
    fn overlay_route(&self, own: Vtep, peer: &Node) -> Route {
        Route {
            destination: peer.pods,
            gateway: Some(peer.vtep),
            device: Some(own.index),
            onlink: true,
        }
    }

    /// What flannel programs for a peer: route, neighbour, forwarding entry.
    fn program(&self, own: Vtep, peer: &Node, peer_vtep: Vtep) {
        self.netns.run(|| {
            replace_route(&self.overlay_route(own, peer)).expect("route");
            replace_neighbour(own.index, peer.vtep, peer_vtep.mac).expect("neighbour");
            replace_fdb(own.index, peer_vtep.mac, peer.underlay_ip).expect("fdb");
        });
    }

    /// Polls until a connection to `peer`'s pod succeeds, for at most 50
    /// attempts (each gives up after a second); the source address the peer
    /// saw.
    fn reach(&self, peer: &Node) -> String {
        let mut why = String::new();
        for _ in 0..50 {
            match self.netns.connect(self.pod, peer.pod) {
                Ok(seen) => return seen,
                Err(e) => why = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} never reached {}: {why}", self.pod, peer.pod)
    }

    /// Asserts a connection to `peer`'s pod fails (within its one second).
    fn cannot_reach(&self, peer: &Node, after: &str) {
        if let Ok(seen) = self.netns.connect(self.pod, peer.pod) {
            panic!(
                "{} still reached {} after {after} (seen as {seen})",
                self.pod, peer.pod
            );
        }
    }
}

fn random_octet() -> u8 {
    // 1..=250, so 198.19.X.0/24 and 10.X.0.0/16 are ordinary networks.
    u8::try_from(RandomState::new().hash_one(std::process::id()) % 250).expect("fits") + 1
}

#[test]
fn pods_reach_each_other_over_vxlan_with_their_own_addresses() {
    let (a, b) = Node::pair();
    let (vtep_a, vtep_b) = (a.make_vxlan(), b.make_vxlan());
    // The underlay's MTU less VXLAN's 50 bytes.
    assert_eq!(
        a.netns.run(|| link_details(VXLAN)).expect("vxlan").mtu,
        1450
    );
    a.program(vtep_a, &b, vtep_b);
    b.program(vtep_b, &a, vtep_a);
    let _server = b.netns.serve(b.pod);

    // No NAT anywhere: B sees A's pod address.
    assert_eq!(a.reach(&b), a.pod.to_string());

    // Programming again changes nothing, and the lists show one of each.
    a.program(vtep_a, &b, vtep_b);
    let (routes, neighbours, fdb) = a.netns.run(|| {
        (
            list_routes(ROUTE_PROTOCOL).expect("routes"),
            list_neighbours(vtep_a.index).expect("neighbours"),
            list_fdb(vtep_a.index).expect("fdb"),
        )
    });
    assert_eq!(routes, vec![a.overlay_route(vtep_a, &b)]);
    let neighbour = Neighbour {
        ip: b.vtep,
        mac: vtep_b.mac,
    };
    assert_eq!(neighbours, vec![neighbour]);
    let entry = FdbEntry {
        mac: vtep_b.mac,
        destination: b.underlay_ip,
    };
    assert_eq!(fdb, vec![entry.clone()]);
    // `ip` reads the route as moor's.
    let shown = a
        .netns
        .ip(&["route", "show", "proto", &ROUTE_PROTOCOL.to_string()]);
    assert!(
        shown.contains(&format!("{} via {} dev {VXLAN} onlink", b.pods, b.vtep)),
        "{shown}"
    );

    // Without the forwarding entry the frame has nowhere to go.
    a.netns.run(|| {
        assert!(remove_fdb(vtep_a.index, vtep_b.mac, b.underlay_ip).expect("remove fdb"));
        assert!(!remove_fdb(vtep_a.index, vtep_b.mac, b.underlay_ip).expect("remove fdb again"));
        assert_eq!(list_fdb(vtep_a.index).expect("fdb"), vec![]);
    });
    a.cannot_reach(&b, "removing the fdb entry");
    a.program(vtep_a, &b, vtep_b);
    assert_eq!(a.reach(&b), a.pod.to_string());

    // Without the neighbour the kernel asks ARP, which nobody answers.
    a.netns.run(|| {
        assert!(remove_neighbour(vtep_a.index, b.vtep).expect("remove neighbour"));
        assert!(!remove_neighbour(vtep_a.index, b.vtep).expect("remove neighbour again"));
    });
    a.cannot_reach(&b, "removing the neighbour");
    // The failed lookup leaves an entry, but not a permanent one.
    assert_eq!(
        a.netns
            .run(|| list_neighbours(vtep_a.index))
            .expect("neighbours"),
        vec![]
    );
    a.program(vtep_a, &b, vtep_b);
    assert_eq!(a.reach(&b), a.pod.to_string());

    // Without the route there is no way to B's pods at all.
    a.netns.run(|| {
        assert!(remove_route(b.pods).expect("remove route"));
        assert!(!remove_route(b.pods).expect("remove route again"));
        assert_eq!(list_routes(ROUTE_PROTOCOL).expect("routes"), vec![]);
    });
    a.cannot_reach(&b, "removing the route");
}

#[test]
fn host_gw_routes_reach_the_peer_node() {
    let (a, b) = Node::pair();
    for (own, peer) in [(&a, &b), (&b, &a)] {
        let route = Route {
            destination: peer.pods,
            gateway: Some(peer.underlay_ip),
            device: None,
            onlink: false,
        };
        own.netns.run(|| replace_route(&route)).expect("route");
    }
    let _server = b.netns.serve(b.pod);
    assert_eq!(a.reach(&b), a.pod.to_string());

    // The kernel fills in the device that reaches the gateway.
    let (routes, underlay) = a.netns.run(|| {
        (
            list_routes(ROUTE_PROTOCOL).expect("routes"),
            link_details(a.underlay).expect("underlay").index,
        )
    });
    assert_eq!(
        routes,
        vec![Route {
            destination: b.pods,
            gateway: Some(b.underlay_ip),
            device: Some(underlay),
            onlink: false,
        }]
    );
    // Another protocol's routes are not moor's: the kernel's own are there.
    let kernel = a.netns.run(|| list_routes(2)).expect("kernel routes");
    assert!(
        kernel
            .iter()
            .any(|r| r.destination.addr() == Ipv4Addr::new(198, 19, a.underlay_ip.octets()[2], 0)),
        "{kernel:?}"
    );

    // Replacing re-points the route: through a gateway that is not there,
    // traffic stops.
    let nowhere = Ipv4Addr::new(198, 19, a.underlay_ip.octets()[2], 99);
    let detour = Route {
        destination: b.pods,
        gateway: Some(nowhere),
        device: None,
        onlink: false,
    };
    a.netns.run(|| replace_route(&detour)).expect("re-point");
    let routes = a.netns.run(|| list_routes(ROUTE_PROTOCOL)).expect("routes");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].gateway, Some(nowhere));
    a.cannot_reach(&b, "re-pointing the route");

    assert!(a.netns.run(|| remove_route(b.pods)).expect("remove"));
    let unreachable = a.netns.connect(a.pod, b.pod).expect_err("no route");
    assert!(unreachable.contains("unreachable"), "{unreachable}");
}

#[test]
fn ensure_vxlan_keeps_a_matching_device_and_replaces_a_changed_one() {
    let (a, _b) = Node::pair();
    a.netns.run(|| {
        let underlay = link_details(a.underlay).expect("underlay");
        assert_eq!(underlay.mtu, 1500);
        assert_eq!(
            link_with_address(a.underlay_ip).expect("lookup"),
            Some(underlay.clone())
        );
        assert_eq!(
            link_with_address(Ipv4Addr::new(192, 0, 2, 1)).expect("lookup"),
            None
        );
        let config = a.vxlan_config(underlay.index);

        let mac = ensure_vxlan(&config).expect("create");
        let made = link_details(VXLAN).expect("vxlan");
        assert_eq!(made.mac, Some(mac));
        assert_eq!(made.mtu, 1450);

        // The same device again: kept, with its MAC address.
        assert_eq!(ensure_vxlan(&config).expect("again"), mac);
        assert_eq!(link_details(VXLAN).expect("vxlan").index, made.index);

        // An MTU changed behind our back is put right; one asked for is set.
        set_mtu(VXLAN, 1400).expect("set_mtu");
        assert_eq!(link_details(VXLAN).expect("vxlan").mtu, 1400);
        assert_eq!(ensure_vxlan(&config).expect("again"), mac);
        assert_eq!(link_details(VXLAN).expect("vxlan").mtu, 1450);
        let smaller = VxlanConfig {
            mtu: Some(1300),
            ..config.clone()
        };
        assert_eq!(ensure_vxlan(&smaller).expect("smaller"), mac);
        let kept = link_details(VXLAN).expect("vxlan");
        assert_eq!((kept.index, kept.mtu), (made.index, 1300));
    });

    // A new underlay address: the device is made anew for it.
    let moved = Ipv4Addr::new(198, 19, a.underlay_ip.octets()[2], 11);
    a.netns
        .ip(&["addr", "add", &format!("{moved}/24"), "dev", a.underlay]);
    let (before, after, mac) = a.netns.run(|| {
        let before = link_details(VXLAN).expect("vxlan");
        let config = VxlanConfig {
            local: moved,
            ..a.vxlan_config(link_details(a.underlay).expect("underlay").index)
        };
        let mac = ensure_vxlan(&config).expect("re-create");
        (before, link_details(VXLAN).expect("vxlan"), mac)
    });
    assert_ne!(after.index, before.index, "the device was kept");
    assert_eq!(after.mac, Some(mac));
    let shown = a.netns.ip(&["-d", "link", "show", VXLAN]);
    assert!(shown.contains(&format!("local {moved} ")), "{shown}");
    assert!(shown.contains("dstport 8472 nolearning"), "{shown}");
    assert!(shown.contains(",UP"), "{shown}");

    // Without an underlay index, the MTU comes from the link holding the
    // local address.
    a.netns.ip(&["link", "set", a.underlay, "mtu", "1400"]);
    a.netns.run(|| {
        let config = VxlanConfig {
            name: "moor.2".into(),
            vni: 2,
            underlay: None,
            ..a.vxlan_config(0)
        };
        ensure_vxlan(&config).expect("second device");
        assert_eq!(link_details("moor.2").expect("moor.2").mtu, 1350);
    });
}

#[test]
fn other_links_and_missing_ones_are_errors() {
    let (a, _b) = Node::pair();
    a.netns.run(|| {
        let underlay = link_details(a.underlay).expect("underlay");
        // A veth link of the name is not taken over.
        let config = VxlanConfig {
            name: a.underlay.to_owned(),
            ..a.vxlan_config(underlay.index)
        };
        match ensure_vxlan(&config) {
            Err(Error::WrongKind { name, found, .. }) => {
                assert_eq!(name, a.underlay);
                assert_eq!(found, "a veth link");
            }
            other => panic!("expected WrongKind, got {other:?}"),
        }
        assert_eq!(link_details(a.underlay).expect("still there"), underlay);

        // An index no link has is named as such.
        let missing = u32::MAX - 1;
        let route = Route {
            destination: Ipv4Net::new(Ipv4Addr::new(10, 9, 9, 0), 24).expect("valid"),
            gateway: Some(Ipv4Addr::new(10, 9, 9, 1)),
            device: Some(missing),
            onlink: true,
        };
        for err in [
            replace_route(&route).expect_err("no such device"),
            replace_neighbour(missing, Ipv4Addr::new(10, 9, 9, 1), [2, 0, 0, 0, 0, 1])
                .expect_err("no such device"),
            replace_fdb(missing, [2, 0, 0, 0, 0, 1], a.underlay_ip).expect_err("no such device"),
        ] {
            assert!(
                matches!(err, Error::NoSuchIndex { index, .. } if index == missing),
                "{err:?}"
            );
        }
        // A route needs somewhere to go.
        let nowhere = Route {
            gateway: None,
            device: None,
            ..route
        };
        let err = replace_route(&nowhere).expect_err("no next hop");
        assert!(
            err.to_string().contains("needs a gateway or a device"),
            "{err}"
        );
        assert!(matches!(
            link_details("moor-nope0"),
            Err(Error::NoSuchInterface { .. })
        ));
    });
}
