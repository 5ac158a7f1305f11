//! The multi-host lab end to end: hosts reach each other and the root
//! namespace over the lab's bridge, each has a dockerd of its own holding the
//! images, and nothing of the lab is left once it is dropped.
//!
//! Needs root, dockerd, python3 and `moor/pause:0.1` (built here with
//! images/build.sh when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use moor_testkit::{Lab, LabHost, assert_eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LAB: &str = "labtest";
const IMAGE: &str = "moor/pause:0.1";
/// Where the server on host 2 listens, inside its own namespace.
const PORT: u16 = 7000;
/// A guard against hangs, not a performance bound.
const BOUND: Duration = Duration::from_secs(30);

/// Serves argv[3] and a newline to every connection to argv[1]:argv[2].
const SERVE: &str = "
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    conn.sendall(sys.argv[3].encode() + b'\\n')
    conn.close()
";
/// Prints the first line read from argv[1]:argv[2].
const FETCH: &str = "
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as conn:
    print(conn.makefile().readline().strip())
";

#[tokio::test]
async fn hosts_talk_run_their_own_dockerd_and_leave_nothing_behind() {
    build_images_if_missing();
    let lab = Lab::up(LAB, 2, &[IMAGE]).unwrap_or_else(|e| panic!("lab up: {e}"));
    let [h1, h2] = lab.hosts() else {
        panic!("two hosts wanted, got {:?}", lab.hosts());
    };

    // Host to host, across the bridge.
    let mut server = tokio::process::Command::from(h2.command("python3"))
        .args(["-c", SERVE, &h2.address.to_string(), &PORT.to_string()])
        .arg("hello from h2")
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (install python3)");
    assert_eventually!(
        fetch(h1, &h2.address.to_string(), PORT).await.as_deref() == Some("hello from h2"),
        BOUND,
        "{} never reached {}:{PORT}",
        h1.name,
        h2.address
    );

    // The root namespace and the hosts reach each other: a server "outside
    // the cluster" is one bound to the lab's root address.
    let mut from_root = TcpStream::connect((h2.address, PORT))
        .await
        .expect("root namespace reaches host 2");
    let mut greeting = String::new();
    from_root.read_to_string(&mut greeting).await.expect("read");
    assert_eq!(greeting.trim(), "hello from h2");
    let outside = TcpListener::bind((lab.root_address(), 0))
        .await
        .expect("bind the root address");
    let outside_port = outside.local_addr().expect("addr").port();
    let serving = tokio::spawn(async move {
        while let Ok((mut conn, _)) = outside.accept().await {
            let _ = conn.write_all(b"hello from outside\n").await;
        }
    });
    let root = lab.root_address().to_string();
    assert_eq!(
        fetch(h1, &root, outside_port).await.as_deref(),
        Some("hello from outside")
    );
    serving.abort();

    // A cut host is unreachable, from the other host and from the root
    // namespace, and reachable again once reconnected.
    lab.cut(1).unwrap_or_else(|e| panic!("cut: {e}"));
    assert_eq!(fetch(h1, &h2.address.to_string(), PORT).await, None);
    let from_root = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect((h2.address, PORT)),
    )
    .await;
    assert!(
        !matches!(from_root, Ok(Ok(_))),
        "the root namespace reached a cut host"
    );
    lab.reconnect(1)
        .unwrap_or_else(|e| panic!("reconnect: {e}"));
    assert_eventually!(
        fetch(h1, &h2.address.to_string(), PORT).await.as_deref() == Some("hello from h2"),
        BOUND,
        "{} never reached {} again after it was reconnected",
        h1.name,
        h2.address
    );
    server.kill().await.expect("stop the server on host 2");

    // Each host's own dockerd, holding the image.
    let mut roots = Vec::new();
    for host in lab.hosts() {
        let images = output(host.command("docker").args([
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ]));
        assert!(
            images.lines().any(|image| image == IMAGE),
            "{} lacks {IMAGE}: {images}",
            host.name
        );
        roots.push(output(host.command("docker").args([
            "info",
            "--format",
            "{{.DockerRootDir}}",
        ])));
    }
    assert_ne!(roots[0], roots[1], "the hosts share a dockerd");
    assert!(
        roots.iter().all(|root| root.contains("/moor-lab/labtest/")),
        "not the lab's dockerds: {roots:?}"
    );

    let netns: Vec<PathBuf> = lab.hosts().iter().map(|h| h.netns.clone()).collect();
    drop(lab);
    for path in &netns {
        assert!(!path.exists(), "{} left behind", path.display());
    }
    let links = output(Command::new("ip").args(["-o", "link", "show"]));
    assert!(!links.contains("labtest-"), "links left behind:\n{links}");
    let processes = processes_mentioning("/moor-lab/labtest/");
    assert!(processes.is_empty(), "processes left: {processes:?}");
    for dir in ["/run/moor-lab/labtest", "/var/tmp/moor-lab/labtest"] {
        assert!(!Path::new(dir).exists(), "{dir} left behind");
    }
    let rules = output(Command::new("iptables").args(["-w", "-S"]));
    assert!(
        !rules.contains("moor-lab:labtest"),
        "iptables rules left:\n{rules}"
    );
}

/// The first line `host` reads from `address:port`, or `None` while nothing
/// answers there. Async, so a server task of this test runs meanwhile.
async fn fetch(host: &LabHost, address: &str, port: u16) -> Option<String> {
    let fetched = tokio::process::Command::from(host.command("python3"))
        .args(["-c", FETCH, address, &port.to_string()])
        .output()
        .await
        .ok()?;
    fetched
        .status
        .success()
        .then(|| String::from_utf8_lossy(&fetched.stdout).trim().to_owned())
}

/// The stdout of `command`, which must succeed.
fn output(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The command lines of running processes that contain `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        // A process may exit between listing and reading: skip it.
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

/// Runs images/build.sh when the root dockerd lacks the lab's image.
fn build_images_if_missing() {
    let inspect = Command::new("docker")
        .args(["image", "inspect", "--format", ".", IMAGE])
        .output()
        .expect("docker runs (install docker.io and start dockerd)");
    if inspect.status.success() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/build.sh");
    let status = Command::new(&script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "{} failed; run it by hand to see why",
        script.display()
    );
}
