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
//! up and serves every write. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use moor_api::Resource;
use moor_api::core::v1::ConfigMap;
use moor_client::{Client, ListParams};
use moor_storage_etcd::Members;
use moor_testkit::{Lab, LabHost, assert_eventually};
use tokio::process::{Child, Command};

mod common;

const PATIENCE: Duration = Duration::from_secs(120);
/// The three machines' addresses: loopback, but one each.
const ADDRESSES: [&str; 5] = [
    "127.0.3.1",
    "127.0.3.2",
    "127.0.3.3",
    "127.0.3.4",
    "127.0.3.5",
];

/// One server: its home (the data directory is `home/.moor`) and process.
struct Machine {
    name: String,
    address: String,
    /// The lab host it runs in; `None`: this machine, on its own loopback
    /// address.
    host: Option<LabHost>,
    /// Dropped (killed) before its home is removed.
    process: Option<Child>,
    home: tempfile::TempDir,
}

impl Machine {
    /// Server `index + 1`, on loopback address `ADDRESSES[index]`.
    fn new(index: usize) -> Self {
        Self {
            name: format!("server-{}", index + 1),
            address: ADDRESSES[index].to_string(),
            host: None,
            home: tempfile::tempdir().expect("a home directory"),
            process: None,
        }
    }

    /// Server `index + 1`, in lab host `host`.
    fn on(index: usize, host: &LabHost) -> Self {
        Self {
            address: host.address.to_string(),
            host: Some(host.clone()),
            ..Self::new(index)
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let moor = env!("CARGO_BIN_EXE_moor");
        let mut command = match &self.host {
            Some(host) => Command::from(host.command(moor)),
            None => Command::new(moor),
        };
        command
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("MOOR_CONFIG")
            .env_remove("MOOR_TOKEN")
            .env_remove("MOOR_SERVER")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `moor up --cluster-init` (`join` empty) or `moor join URL --token T
    /// --control-plane`, without an agent: a dedicated server.
    fn start(&mut self, join: &[&str]) {
        let mut args: Vec<&str> = if join.is_empty() {
            vec!["up", "--cluster-init", "--node-name", &self.name]
        } else {
            let mut args = vec!["join"];
            args.extend_from_slice(join);
            args.extend(["--control-plane", "--name", &self.name]);
            args
        };
        args.extend([
            "--advertise-address",
            &self.address,
            "--no-agent",
            "--log",
            "warn",
        ]);
        self.process = Some(self.command(&args).spawn().expect("moor starts"));
    }

    /// Runs `moor ARGS` here to its end, which must be a success: its
    /// output, trimmed.
    async fn succeed(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "moor {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Whether its process still runs; a server that exited fails the test.
    fn running(&mut self) -> bool {
        let process = self.process.as_mut().expect("started");
        match process.try_wait().expect("polling moor") {
            None => true,
            Some(status) => panic!("{} exited with {status}", self.name),
        }
    }

    fn url(&self) -> String {
        format!("https://{}:6443", self.address)
    }

    fn pki(&self) -> PathBuf {
        self.home.path().join(".moor/data/pki")
    }
}

/// The administrator's credentials `moor up` made on the first machine.
fn admin(pki: &Path) -> moor_rpc::Credentials {
    let read = |name: &str| std::fs::read_to_string(pki.join(name)).expect(name);
    let identity = moor_pki::Identity::from_pem(read("admin.crt"), read("admin.key")).unwrap();
    moor_rpc::Credentials {
        tls: Some(moor_rpc::ClientTls::new(&read("ca.crt")).identity(&identity)),
        token: None,
    }
}

/// The membership API of the cluster's etcd, as the first server's
/// apiserver reaches it.
async fn members(pki: &Path, machines: &[&Machine]) -> Members {
    let read = |name: &str| std::fs::read_to_string(pki.join("etcd").join(name)).expect(name);
    let tls = moor_storage_etcd::EtcdTls {
        ca_pem: read("ca.crt"),
        client: Some((
            read("apiserver-etcd-client.crt"),
            read("apiserver-etcd-client.key"),
        )),
    };
    let endpoints: Vec<String> = machines
        .iter()
        .map(|m| format!("https://{}:2379", m.address))
        .collect();
    Members::connect(&endpoints, Some(&tls)).await.unwrap()
}

/// The started voting members' names, sorted.
async fn voters(members: &Members) -> Option<Vec<String>> {
    let mut names: Vec<String> = members
        .list()
        .await
        .ok()?
        .into_iter()
        .filter(|m| !m.is_learner && !m.name.is_empty())
        .map(|m| m.name)
        .collect();
    names.sort();
    Some(names)
}

/// Each probe's name and when it succeeded, if it did.
type Probed = Vec<(String, Option<Instant>)>;

/// Starts a create every 200 ms, each in its own task, until the token is
/// cancelled.
fn probe(
    api: moor_client::Api<ConfigMap>,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Probed>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut started = tokio::task::JoinSet::new();
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        for i in 0.. {
            tokio::select! {
                _ = stopped.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let api = api.clone();
            started.spawn(async move {
                let name = format!("probe-{i}");
                let done = api.create(&common::config_map(&name, "p")).await;
                (name, done.ok().map(|_| Instant::now()))
            });
        }
        started.join_all().await
    });
    (stop, task)
}

async fn answers(url: &str, credentials: &moor_rpc::Credentials) -> bool {
    match Client::connect(url, credentials) {
        Ok(client) => client
            .api::<ConfigMap>()
            .list(&ListParams::default())
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// What [`three_servers`] leaves running.
struct Servers {
    /// The administrator's credentials, which `moor up` made.
    credentials: moor_rpc::Credentials,
    /// The three apiservers' URLs, the first server's first.
    urls: [String; 3],
    /// The membership API of their etcd.
    etcd: Members,
}

/// Starts three servers as their user would: `moor up --cluster-init` on
/// the first, a control-plane token made there, `moor join
/// --control-plane` on the second through the first and on the third
/// through the second; returns once etcd counts three voters, every server
/// knows every member and each serves from the cluster's CA.
async fn three_servers(machines: &mut [Machine; 3]) -> Servers {
    machines[0].start(&[]);
    let pki = machines[0].pki();
    assert_eventually!(
        // Its context, for moor and moorctl here, is written last.
        machines[0].running() && machines[0].home.path().join(".moor/config").exists(),
        PATIENCE
    );
    let credentials = admin(&pki);
    let first = machines[0].url();
    assert_eventually!(
        machines[0].running() && answers(&first, &credentials).await,
        PATIENCE
    );

    // A control-plane token, as its user would make it on the first server.
    let token = machines[0]
        .succeed(&["token", "create", "--control-plane", "--ttl", "1h"])
        .await;

    // The second joins through the first, the third through the second.
    machines[1].start(&[&first, "--token", &token]);
    let second = machines[1].url();
    assert_eventually!(
        machines[1].running() && answers(&second, &credentials).await,
        PATIENCE
    );
    machines[2].start(&[&second, "--token", &token]);
    let third = machines[2].url();
    assert_eventually!(
        machines[2].running() && answers(&third, &credentials).await,
        PATIENCE
    );

    let all: Vec<&Machine> = machines.iter().collect();
    let etcd = members(&pki, &all).await;
    assert_eventually!(
        voters(&etcd).await
            == Some(vec![
                "server-1".into(),
                "server-2".into(),
                "server-3".into()
            ]),
        PATIENCE
    );
    // Every server learns of the members that joined after it (within 10 s):
    // a stopped server leaves through the members it knew.
    let urls: Vec<String> = machines
        .iter()
        .map(|m| format!("https://{}:2379", m.address))
        .collect();
    for machine in machines.iter() {
        let known = machine.home.path().join(".moor/etcd/client-urls");
        assert_eventually!(
            std::fs::read_to_string(&known).is_ok_and(|text| urls.iter().all(|u| text.contains(u))),
            PATIENCE,
            "{} knows every member's client URL: {:?}",
            machine.name,
            std::fs::read_to_string(&known)
        );
    }
    // Each joined server holds the cluster's CA, not one of its own.
    for machine in &machines[1..] {
        assert_eq!(
            std::fs::read_to_string(machine.pki().join("ca.crt")).unwrap(),
            std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
            "{} serves from the cluster CA",
            machine.name
        );
    }

    Servers {
        credentials,
        urls: [first, second, third],
        etcd,
    }
}

/// The index of the machine whose etcd member leads, and its member id.
async fn leader(etcd: &Members, machines: &[Machine]) -> (usize, u64) {
    let leader_id = etcd.leader().await.unwrap();
    let leader_name = etcd
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == leader_id)
        .expect("the leader is a member")
        .name;
    let index = machines.iter().position(|m| m.name == leader_name).unwrap();
    (index, leader_id)
}

/// A client given only `url`, which learns the other apiservers from the
/// cluster (as a node joined through one server does) until the token is
/// cancelled; returns once it knows all of `urls`.
async fn lone_client(
    url: &str,
    urls: &[String],
    credentials: &moor_rpc::Credentials,
) -> (Client, tokio_util::sync::CancellationToken) {
    let lone = Client::connect(url, credentials).unwrap();
    let following = tokio_util::sync::CancellationToken::new();
    moor_client::follow_servers(&lone, following.clone());
    let mut published = urls.to_vec();
    published.sort();
    assert_eventually!(
        {
            let mut learned = lone.channel().servers();
            learned.sort();
            learned == published
        },
        PATIENCE,
        "the lone client learns all three apiservers: {:?}",
        lone.channel().servers()
    );
    (lone, following)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_lose_the_leaders_machine_and_keep_every_write() {
    let mut machines = [Machine::new(0), Machine::new(1), Machine::new(2)];
    let Servers {
        credentials,
        urls,
        etcd,
    } = three_servers(&mut machines).await;
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
    let (lost, _) = leader(&etcd, &machines).await;
    let leader_name = machines[lost].name.clone();
    // A client told of that server only learns the others from the
    // cluster, so it outlives it.
    let (lone, following) = lone_client(&machines[lost].url(), &urls, &credentials).await;
    let mut process = machines[lost].process.take().unwrap();
    let killed = Instant::now();
    process.kill().await.unwrap();
    // Fresh creates every 200 ms from now on: how soon the API answers
    // again, whatever a request caught in flight by the loss goes through.
    let (stop_probes, probes) = probe(api.clone());
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
    stop_probes.cancel();
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
    let probed = probes.await.unwrap();
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
    let etcd = members(&machines[survivor].pki(), &remaining).await;
    assert_eq!(voters(&etcd).await, Some(expected.clone()));
    // ...and it joins again as the new machine it now is, with a new token.
    machines[lost] = Machine::new(lost);
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
    machines[lost].start(&[&survivor_url, "--token", &token]);
    let mut all_three: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    all_three.sort();
    assert_eventually!(
        machines[lost].running() && voters(&etcd).await.as_ref() == Some(&all_three),
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
        .await;
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
    let mut server = Machine::new(3);
    server.process = Some(
        server
            .command(&[
                "up",
                "--no-agent",
                "--listen",
                "127.0.3.4:6443",
                "--log",
                "warn",
            ])
            .spawn()
            .expect("moor up starts"),
    );
    assert_eventually!(
        server.running() && server.home.path().join(".moor/config").exists(),
        PATIENCE
    );
    let node_token = server.succeed(&["token", "create"]).await;
    let server_token = server
        .succeed(&["token", "create", "--control-plane"])
        .await;

    let joiner = Machine::new(4);
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

/// Creates acknowledged, each with when it was.
type Acked = Mutex<Vec<(String, Instant)>>;

/// Creates one ConfigMap after another (`NAME-0`, `NAME-1`, ...) until the
/// token is cancelled, each tried again under the same name until it is
/// acknowledged, as a user would; the names and when each was
/// acknowledged, shared as they come.
fn writer(
    api: moor_client::Api<ConfigMap>,
    name: &'static str,
) -> (
    tokio_util::sync::CancellationToken,
    Arc<Acked>,
    tokio::task::JoinHandle<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("{name}-{i}");
                loop {
                    if stop.is_cancelled() {
                        return;
                    }
                    match api.create(&common::config_map(&name, "w")).await {
                        // An earlier attempt that failed on the way back
                        // went through.
                        Ok(_) | Err(moor_client::Error::AlreadyExists(_)) => break,
                        Err(_) => {}
                    }
                }
                acked.lock().unwrap().push((name, Instant::now()));
            }
        })
    };
    (stop, acked, task)
}

/// How many of `acked` were acknowledged after `since`.
fn acked_since(acked: &Acked, since: Instant) -> usize {
    acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > since)
        .count()
}

/// Creates per second over `acked` (in order), from the first to the last.
fn rate(acked: &[(String, Instant)]) -> f64 {
    match (acked.first(), acked.last()) {
        (Some((_, first)), Some((_, last))) if last > first => {
            (acked.len() - 1) as f64 / last.duration_since(*first).as_secs_f64()
        }
        _ => 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_the_lab_lose_a_machine_cut_off_and_keep_every_write() {
    let lab =
        Lab::up(&format!("srv{}", std::process::id() % 100_000), 3, &[]).expect("the lab comes up");
    let mut machines = [
        Machine::on(0, &lab.hosts()[0]),
        Machine::on(1, &lab.hosts()[1]),
        Machine::on(2, &lab.hosts()[2]),
    ];
    let Servers {
        credentials,
        urls,
        etcd,
    } = three_servers(&mut machines).await;

    // A client of all three, from outside the servers' machines, writing
    // without pause.
    let client = Client::connect(&urls.join(","), &credentials).unwrap();
    let api = client.api::<ConfigMap>();
    let (stop_writer, acked, writing) = writer(api.clone(), "w");
    let started = Instant::now();
    assert_eventually!(acked_since(&acked, started) >= 100, PATIENCE);

    // The cable of etcd's leader's machine is pulled: its processes run on.
    let (lost, lost_id) = leader(&etcd, &machines).await;
    let (lone, following) = lone_client(&machines[lost].url(), &urls, &credentials).await;
    // etcd's own failover, the anchor: when the two left elect a leader.
    let survivors: Vec<&Machine> = machines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lost)
        .map(|(_, m)| m)
        .collect();
    let survivors = members(&machines[0].pki(), &survivors).await;
    lab.cut(lost).expect("the leader's machine is cut off");
    let cut = Instant::now();
    let elected = tokio::spawn(async move {
        moor_testkit::eventually(PATIENCE, || async {
            let id = survivors.leader().await.ok()?;
            (id != 0 && id != lost_id).then(Instant::now)
        })
        .await
    });
    // Fresh creates every 200 ms through the client that was on the cut-off
    // server: the worst case, as the writer may have been on another.
    let (stop_probes, probes) = probe(lone.api::<ConfigMap>());
    assert_eventually!(
        acked_since(&acked, cut) >= 2000,
        PATIENCE,
        "creates go on through the other two servers"
    );
    stop_probes.cancel();
    let probed = probes.await.unwrap();
    following.cancel();
    assert!(machines[lost].running(), "the cut-off server runs on");

    // Plugged back in, it catches up: it serves every acknowledged write.
    lab.reconnect(lost).expect("the machine is plugged back in");
    let reconnected = Instant::now();
    assert_eventually!(
        acked_since(&acked, reconnected) >= 50,
        PATIENCE,
        "creates go on once it is back"
    );
    stop_writer.cancel();
    writing.await.unwrap();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut acknowledged: Vec<String> = acked.iter().map(|(name, _)| name.clone()).collect();
    acknowledged.extend(
        probed
            .iter()
            .filter(|(_, at)| at.is_some())
            .map(|(name, _)| name.clone()),
    );
    let returned = Client::connect(&machines[lost].url(), &credentials).unwrap();
    let listed = || async {
        let (listed, _) = returned
            .api::<ConfigMap>()
            .list(&ListParams::default().namespace("default"))
            .await
            .ok()?;
        let names: std::collections::HashSet<String> =
            listed.iter().map(|cm| cm.meta().name.clone()).collect();
        acknowledged
            .iter()
            .all(|name| names.contains(name))
            .then_some(listed)
    };
    assert_eventually!(
        listed().await.is_some(),
        PATIENCE,
        "the returned server serves every acknowledged create"
    );
    let listed = listed().await.unwrap();
    let mut uids: Vec<String> = listed.iter().map(|cm| cm.meta().uid.clone()).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), listed.len(), "no uid twice");
    assert!(machines[lost].running(), "the returned server runs");

    // The figures: how soon after the cut the API answered a fresh create,
    // and creates per second before, after and once the machine was back.
    let elected = elected.await.unwrap().expect("the two left elect a leader");
    let answered_again = probed
        .iter()
        .filter_map(|(_, at)| *at)
        .min()
        .expect("a client given only the lost server created through another");
    let before: Vec<_> = acked.iter().filter(|(_, at)| *at <= cut).cloned().collect();
    let after: Vec<_> = acked
        .iter()
        .filter(|(_, at)| *at > cut && *at <= reconnected)
        .cloned()
        .collect();
    let back: Vec<_> = acked
        .iter()
        .filter(|(_, at)| *at > reconnected)
        .cloned()
        .collect();
    println!(
        "machine of {} (etcd's leader) cut off: etcd elected another leader {:.2} s after the \
         cut; a fresh create through a client that was on the cut-off server answered {:.2} s \
         after it; {} of {} probes succeeded; one writer's creates per second: {:.0} before, \
         {:.0} after the cut, {:.0} once it was back; {} creates acknowledged, none lost",
        machines[lost].name,
        elected.duration_since(cut).as_secs_f64(),
        answered_again.duration_since(cut).as_secs_f64(),
        probed.iter().filter(|(_, at)| at.is_some()).count(),
        probed.len(),
        rate(&before),
        rate(&after),
        rate(&back),
        acknowledged.len()
    );
    // The servers stop before the lab they run in goes.
    drop(machines);
}
