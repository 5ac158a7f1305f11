//! A pod's veth pair against the running kernel: needs root, `ip` (iproute2)
//! for the bridge, `unshare` for the namespace and python3 for a listener in
//! it. Each test uses its own names and subnet and cleans up through guards.

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use moor_hostnet::{Error, Ipv4Net, PodInterface, attach_pod, remove_link};

/// Deletes a link when dropped.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = remove_link(&self.0);
    }
}

/// Kills a process when dropped; its network namespace goes with it.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// A bridge `name` holding `gateway`/24, up.
fn bridge(name: &str, gateway: Ipv4Addr) -> LinkGuard {
    ip(&["link", "add", name, "type", "bridge"]);
    let guard = LinkGuard(name.to_owned());
    ip(&["addr", "add", &format!("{gateway}/24"), "dev", name]);
    ip(&["link", "set", name, "up"]);
    guard
}

/// A TCP server on port 7777 in a new network namespace that answers each
/// connection with the peer's address; returns once it listens.
fn server_in_new_namespace() -> ChildGuard {
    let script = "import socket\n\
        s = socket.socket()\n\
        s.bind(('0.0.0.0', 7777))\n\
        s.listen()\n\
        print('listening', flush=True)\n\
        while True:\n\
        \x20   c, peer = s.accept()\n\
        \x20   c.sendall(peer[0].encode())\n\
        \x20   c.close()\n";
    let mut child = Command::new("unshare")
        .args(["--net", "python3", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run unshare");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "listening");
    ChildGuard(child)
}

fn random_octet() -> u8 {
    // 10.253.x.0/24 with x in 1..=250.
    u8::try_from(RandomState::new().hash_one(std::process::id()) % 250).expect("fits") + 1
}

#[test]
fn a_pod_interface_reaches_the_host_over_the_bridge() {
    let x = random_octet();
    let gateway = Ipv4Addr::new(10, 253, x, 1);
    let pod_ip = Ipv4Addr::new(10, 253, x, 7);
    let bridge_name = format!("moortb{x}");
    let _bridge = bridge(&bridge_name, gateway);
    let server = server_in_new_namespace();
    let interface = PodInterface {
        host_name: format!("moortv{x}"),
        bridge: bridge_name.clone(),
        pid: server.0.id(),
        address: Ipv4Net::new(pod_ip, 24).expect("valid"),
        gateway,
    };

    attach_pod(&interface).expect("attach");

    let master = std::fs::read_link(format!("/sys/class/net/{}/master", interface.host_name))
        .expect("host end has a master");
    assert!(master.ends_with(&bridge_name), "{master:?}");
    let hairpin = std::fs::read_to_string(format!(
        "/sys/class/net/{}/brport/hairpin_mode",
        interface.host_name
    ))
    .expect("hairpin mode");
    assert_eq!(hairpin.trim(), "1");
    // The host reaches the pod's address, and the pod answers through its
    // interface: it sees the bridge's address as the peer.
    let mut stream = TcpStream::connect_timeout(&(pod_ip, 7777).into(), Duration::from_secs(5))
        .expect("connect to the pod");
    let mut peer = String::new();
    stream.read_to_string(&mut peer).expect("read");
    assert_eq!(peer, gateway.to_string());
    // The default route goes through the gateway.
    let routes = Command::new("nsenter")
        .args(["-t", &server.0.id().to_string(), "-n", "ip", "-4", "route"])
        .output()
        .expect("nsenter");
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains(&format!("default via {gateway} dev eth0")),
        "{routes}"
    );

    // Its MAC address is made from its IP address, as Docker's are.
    let link = Command::new("nsenter")
        .args([
            "-t",
            &server.0.id().to_string(),
            "-n",
            "ip",
            "link",
            "show",
            "eth0",
        ])
        .output()
        .expect("nsenter");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains(&format!("link/ether 02:42:0a:fd:{x:02x}:07 ")),
        "{link}"
    );

    // The kernel removes both ends with the namespace.
    drop(server);
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !std::path::Path::new(&format!("/sys/class/net/{}", interface.host_name)).exists()
    });
    assert!(gone, "host end still there after the namespace went");
}

#[test]
fn a_missing_bridge_is_named() {
    let server = server_in_new_namespace();
    let interface = PodInterface {
        host_name: "moortv-nobr".into(),
        bridge: "moortb-none".into(),
        pid: server.0.id(),
        address: Ipv4Net::new(Ipv4Addr::new(10, 253, 0, 7), 24).expect("valid"),
        gateway: Ipv4Addr::new(10, 253, 0, 1),
    };
    let err = attach_pod(&interface).expect_err("no such bridge");
    assert!(
        matches!(&err, Error::NoSuchInterface { name, .. } if name == "moortb-none"),
        "{err}"
    );
}
