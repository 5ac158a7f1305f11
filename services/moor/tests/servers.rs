//! Servers that bring their own etcd member, as a new user builds them:
//! `moor up --cluster-init` on a first machine, `moor token create
//! --control-plane`, `moor join --control-plane` on two more (each machine
//! here a process with its own home, data directory and loopback address).
//! Then the machine of etcd's leader is lost (SIGKILL: moor and, by its
//! parent-death signal, its etcd member): the API keeps answering through
//! the other two servers and no acknowledged create is lost. Last, `moor
//! leave` takes the lost server out of etcd, and the two that remain still
//! take writes.
//!
//! The same three servers on the lab (`scripts/lab.sh`: each in a network
//! namespace of its own, on one bridge) lose the leader's machine a harder
//! way: its cable is pulled. Nothing closes a socket; clients and servers
//! must notice by themselves. The API answers again within 5 s, no
//! acknowledged create is lost, and the machine, plugged back in, catches
//! up and serves every write. Then the same with a follower's machine.
//! Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::PathBuf;
use std::process::Stdio;

use tokio::time::Instant;

use moor_api::Resource;
use moor_api::core::v1::ConfigMap;
use moor_client::{Client, ListParams};
use moor_integration_tests::servers::{
    Machine, PATIENCE, Servers, Target, cut_off, leader, lone_client, members, probe,
    three_servers, voters,
};
use moor_testkit::{Lab, assert_eventually};
use tokio::process::Command;

mod common;

/// The machines' addresses: loopback, but one each.
const ADDRESSES: [&str; 5] = [
    "127.0.3.1",
    "127.0.3.2",
    "127.0.3.3",
    "127.0.3.4",
    "127.0.3.5",
];

fn moor() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_moor"))
}

/// Server `index + 1` on this machine, at `ADDRESSES[index]`.
fn machine(index: usize) -> Machine {
    Machine::new(&moor(), index, ADDRESSES[index]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_lose_the_leaders_machine_and_keep_every_write() {
    let mut machines = [machine(0), machine(1), machine(2)];
    let Servers {
        credentials,
        urls,
        etcd,
    } = three_servers(&mut machines).await.unwrap();
    let administrator = Admin::from(&machines[0]);
    let [first, second, third] = &urls;

    // Creates through all three servers, as a client given all three.
    let servers = format!("{first},{second},{third}");
    let client = Client::connect(&servers, &credentials).unwrap();
    let api = client.api::<ConfigMap>();
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let name = format!("before-{i}");
        api.create(&common::config_map(&name, "x")).await.unwrap();
        acknowledged.push(name);
    }

    // The machine of etcd's leader is lost.
    let (lost, _) = leader(&etcd, &machines).await.unwrap();
    let leader_name = machines[lost].name.clone();
    // A client told of that server only learns the others from the
    // cluster, so it outlives it.
    let (lone, following) = lone_client(&machines[lost].url(), &urls, &credentials)
        .await
        .unwrap();
    let mut process = machines[lost].process.take().unwrap();
    let killed = Instant::now();
    process.kill().await.unwrap();
    // Fresh creates every 200 ms from now on: how soon the API answers
    // again, whatever a request caught in flight by the loss goes through.
    let probes = probe(api.clone(), "probe");
    // Its etcd member went with it (the parent-death signal): the port
    // refuses connections.
    let etcd_port = format!("{}:2379", machines[lost].address);
    assert_eventually!(
        tokio::net::TcpStream::connect(&etcd_port).await.is_err(),
        PATIENCE
    );

    // Creates go on through the other two; every failure is counted and the
    // create is tried again under the same name, as a user would.
    let mut first_after = None;
    let mut failures = 0;
    for i in 0..100 {
        let name = format!("after-{i}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            match api.create(&common::config_map(&name, "y")).await {
                Ok(_) => break,
                // An earlier attempt that failed on the way back went through.
                Err(moor_client::Error::AlreadyExists(_)) => break,
                Err(err) => {
                    failures += 1;
                    assert!(
                        Instant::now() < deadline,
                        "create {name} failed for {PATIENCE:?}: {err}"
                    );
                }
            }
        }
        first_after.get_or_insert_with(|| killed.elapsed());
        acknowledged.push(name);
    }
    // However fast the creates above went, the probes tell when the API
    // answered again.
    assert_eventually!(probes.answered(), PATIENCE, "a probe succeeds");
    let probed = probes.stop().await.unwrap();
    let lone_create = common::config_map("lone-after", "l");
    assert_eventually!(
        matches!(
            lone.api::<ConfigMap>().create(&lone_create).await,
            Ok(_) | Err(moor_client::Error::AlreadyExists(_))
        ),
        PATIENCE,
        "a client given only the lost server creates through another"
    );
    acknowledged.push("lone-after".to_string());
    following.cancel();
    let answered_again = probed
        .iter()
        .filter_map(|(_, at)| *at)
        .min()
        .expect("a probe succeeded");
    acknowledged.extend(
        probed
            .iter()
            .filter(|(_, at)| at.is_some())
            .map(|(name, _)| name.clone()),
    );
    let (listed, _) = api
        .list(&ListParams::default().namespace("default"))
        .await
        .unwrap();
    let mut names: Vec<String> = listed.iter().map(|cm| cm.meta().name.clone()).collect();
    let mut uids: Vec<String> = listed.iter().map(|cm| cm.meta().uid.clone()).collect();
    names.sort();
    uids.sort();
    uids.dedup();
    for name in &acknowledged {
        assert!(names.contains(name), "acknowledged create {name} is lost");
    }
    assert_eq!(uids.len(), listed.len(), "no uid twice");
    println!(
        "loss of {leader_name} (etcd's leader): a fresh create answered {:?} after the kill; \
         the writer's first create after it took {:?} ({failures} failed attempts); {} of {} \
         probes succeeded; {} creates acknowledged, none lost",
        answered_again.duration_since(killed),
        first_after.unwrap(),
        probed.iter().filter(|(_, at)| at.is_some()).count(),
        probed.len(),
        acknowledged.len()
    );

    // The lost machine's disk is wiped: it cannot leave by itself. Through
    // a server left, the administrator takes it out of etcd...
    let survivor = (lost + 1) % 3;
    let survivor_url = machines[survivor].url();
    let out = administrator
        .succeed(
            "moorctl",
            &[
                "--server",
                &survivor_url,
                "delete",
                "node",
                &leader_name,
                "--remove-etcd-member",
            ],
        )
        .await;
    assert!(out.contains("removed from etcd"), "{out}");
    let remaining: Vec<&Machine> = machines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lost)
        .map(|(_, m)| m)
        .collect();
    let mut expected: Vec<String> = remaining.iter().map(|m| m.name.clone()).collect();
    expected.sort();
    let etcd = members(&machines[survivor].pki(), &remaining)
        .await
        .unwrap();
    assert_eq!(voters(&etcd).await, Some(expected.clone()));
    // ...and it joins again as the new machine it now is, with a new token.
    machines[lost] = machine(lost);
    let token = administrator
        .succeed(
            "moor",
            &[
                "token",
                "create",
                "--control-plane",
                "--ttl",
                "1h",
                "--server",
                &survivor_url,
            ],
        )
        .await;
    machines[lost]
        .start(&[&survivor_url, "--token", &token])
        .unwrap();
    let mut all_three: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    all_three.sort();
    assert_eventually!(
        machines[lost].running().unwrap() && voters(&etcd).await.as_ref() == Some(&all_three),
        PATIENCE,
        "the wiped server is a voting member again"
    );
    let rejoined = Client::connect(&machines[lost].url(), &credentials).unwrap();
    assert_eventually!(
        rejoined
            .api::<ConfigMap>()
            .list(&ListParams::default().namespace("default"))
            .await
            .is_ok_and(|(listed, _)| {
                let names: Vec<&str> = listed.iter().map(|cm| cm.meta().name.as_str()).collect();
                acknowledged
                    .iter()
                    .all(|name| names.contains(&name.as_str()))
            }),
        PATIENCE,
        "the rejoined server serves every acknowledged create"
    );

    // Last, it leaves for good, stopped: etcd counts two members, and they
    // take writes.
    let mut process = machines[lost].process.take().unwrap();
    process.kill().await.unwrap();
    process.wait().await.unwrap();
    machines[lost]
        .succeed(&["leave", "--name", &leader_name])
        .await
        .unwrap();
    assert_eq!(voters(&etcd).await, Some(expected));
    api.create(&common::config_map("after-leave", "z"))
        .await
        .unwrap();
    assert!(
        !machines[lost].home.path().join(".moor/etcd").exists(),
        "the left server's etcd data is moved aside"
    );
}

/// The administrator's own machine: a home holding the context `moor up`
/// wrote, for `moor` and `moorctl` commands that outlive any one server.
struct Admin {
    home: tempfile::TempDir,
}

impl Admin {
    /// Copies the context of `machine`, where `moor up` ran.
    fn from(machine: &Machine) -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".moor")).unwrap();
        std::fs::copy(
            machine.home.path().join(".moor/config"),
            home.path().join(".moor/config"),
        )
        .unwrap();
        Self { home }
    }

    /// Runs `program` (`moor` or `moorctl`) with `args` to its end.
    async fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = PathBuf::from(env!("CARGO_BIN_EXE_moor")).with_file_name(program);
        Command::new(path)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("MOOR_CONFIG")
            .env_remove("MOOR_SERVER")
            .env_remove("MOOR_TOKEN")
            .output()
            .await
            .unwrap()
    }

    /// [`Admin::run`], which must succeed: its output, trimmed.
    async fn succeed(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args).await;
        assert!(
            out.status.success(),
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// `moor join --control-plane` is refused, with nothing written, when the
/// token only joins nodes, and when the server has no etcd member to join
/// (the embedded store); `moorctl delete node --remove-etcd-member` is
/// refused by such a server, and for anything but nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_the_control_plane_takes_its_token_and_a_server_with_etcd() {
    let mut server = machine(3);
    server.process = Some(
        server
            .command(&[
                "up",
                "--no-agent",
                "--no-registry",
                "--listen",
                "127.0.3.4:6443",
                "--log",
                "warn",
            ])
            .spawn()
            .expect("moor up starts"),
    );
    assert_eventually!(
        server.running().unwrap() && server.home.path().join(".moor/config").exists(),
        PATIENCE
    );
    let node_token = server.succeed(&["token", "create"]).await.unwrap();
    let server_token = server
        .succeed(&["token", "create", "--control-plane"])
        .await
        .unwrap();

    let joiner = machine(4);
    for (token, refusal) in [
        (&node_token, "moor token create --control-plane"),
        (&server_token, "runs no etcd member"),
    ] {
        let out = joiner
            .command(&[
                "join",
                &server.url(),
                "--token",
                token,
                "--control-plane",
                "--name",
                "joiner",
                "--advertise-address",
                &joiner.address,
                "--no-agent",
            ])
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "refused: {stderr}");
        assert!(stderr.contains(refusal), "{refusal:?} in {stderr}");
        assert!(
            !joiner.home.path().join(".moor/etcd").exists()
                && !joiner.pki().join("ca.key").exists(),
            "nothing written on a refusal"
        );
    }

    // Such a server has no member to remove either, and only nodes can be
    // servers with one.
    let administrator = Admin::from(&server);
    for (args, refusal) in [
        (
            &["delete", "node", "joiner", "--remove-etcd-member"][..],
            "runs no etcd member",
        ),
        (
            &["delete", "pod", "joiner", "--remove-etcd-member"][..],
            "only nodes are servers",
        ),
    ] {
        let out = administrator.run("moorctl", args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(refusal),
            "{refusal:?} in {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_the_lab_lose_any_machine_cut_off_and_keep_every_write() {
    let lab =
        Lab::up(&format!("srv{}", std::process::id() % 100_000), 3, &[]).expect("the lab comes up");
    let mut machines = [0, 1, 2].map(|i| Machine::on(&moor(), i, &lab.hosts()[i]).unwrap());
    let servers = three_servers(&mut machines).await.unwrap();
    // Any one machine: the leader's, then, back, a follower's.
    for target in [Target::Leader, Target::Follower] {
        let figures = cut_off(&lab, &mut machines, &servers, target, 2000)
            .await
            .unwrap();
        println!(
            "machine of {} (etcd's {}) cut off: etcd had a leader {:.2} s after the cut; \
             a fresh create through a client that was on the cut-off server answered {:.2} s \
             after it; {} of {} probes succeeded; a writer of all three servers waited {:.2} s \
             at most; its creates per second: {:.0} before, {:.0} after the cut, {:.0} once it \
             was back; {} creates acknowledged, none lost",
            figures.lost,
            format!("{target:?}").to_lowercase(),
            figures.elected.as_secs_f64(),
            figures.answered_again.as_secs_f64(),
            figures.probes_acknowledged.0,
            figures.probes_acknowledged.1,
            figures.writer_gap.as_secs_f64(),
            figures.rates.0,
            figures.rates.1,
            figures.rates.2,
            figures.acknowledged
        );
    }
    // The servers stop before the lab they run in goes.
    drop(machines);
}
