//! The prober's logic on the fake runtime and a paused clock: commands
//! "run" through a handler the test controls.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use moor_api::core::v1::{ExecAction, PodSpec};
use moor_api::meta::v1::ObjectMeta;
use moor_runtime::{ContainerSpec, ExecOutput, Fake, NetworkMode};
use tokio::time::Instant;

use super::*;

/// A fake runtime whose exec answers `exit` for command `check-<name>`,
/// counting calls per command.
struct Setup {
    fake: Arc<Fake>,
    exits: Arc<Mutex<HashMap<String, i64>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    probers: Probers,
    wakes: mpsc::UnboundedReceiver<Wake>,
}

fn exec_probe(command: &str, period: i32, failures: i32) -> Option<Probe> {
    Some(Probe {
        exec: Some(ExecAction {
            command: vec![command.into()],
        }),
        period_seconds: period,
        failure_threshold: failures,
        ..Default::default()
    })
}

fn pod(container: &Container) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container.clone()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Setup {
    fn new() -> Self {
        let fake = Arc::new(Fake::new(1, 1 << 30));
        let exits: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let (e, c) = (exits.clone(), calls.clone());
        fake.set_exec(move |_, command| {
            let command = command.join(" ");
            *c.lock().unwrap().entry(command.clone()).or_default() += 1;
            let exit_code = e.lock().unwrap().get(&command).copied().unwrap_or(0);
            Ok(ExecOutput {
                exit_code,
                output: format!("{command} says {exit_code}"),
            })
        });
        let (probers, wakes) = Probers::new(fake.clone(), CancellationToken::new());
        Self {
            fake,
            exits,
            calls,
            probers,
            wakes,
        }
    }

    fn set_exit(&self, command: &str, code: i64) {
        self.exits.lock().unwrap().insert(command.into(), code);
    }

    fn calls(&self, command: &str) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .get(command)
            .copied()
            .unwrap_or(0)
    }

    /// Creates and starts a container, and its prober.
    async fn start(&self, container: &Container) -> (ContainerInfo, HashMap<String, Health>) {
        let spec = ContainerSpec {
            name: container.name.clone(),
            image: "img".into(),
            command: vec![],
            args: vec![],
            working_dir: String::new(),
            env: vec![],
            labels: Default::default(),
            mounts: vec![],
            network: NetworkMode::Container("sandbox".into()),
            ipc_container: None,
            hostname: None,
            ports: vec![],
            nano_cpus: None,
            memory_bytes: None,
        };
        let id = self.fake.create_container(&spec).await.unwrap();
        self.fake.start_container(&id).await.unwrap();
        let info = self.fake.inspect_container(&id).await.unwrap().unwrap();
        let health = self
            .probers
            .update(&pod(container), "10.0.0.2", &[(container, &info)]);
        (info, health)
    }

    fn health(&self, container: &Container, info: &ContainerInfo) -> Health {
        self.probers
            .update(&pod(container), "10.0.0.2", &[(container, info)])
            .remove(&container.name)
            .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_probe_and_wakes_the_sync() {
    let mut s = Setup::new();
    let container = Container {
        name: "web".into(),
        readiness_probe: exec_probe("ready", 1, 2),
        ..Default::default()
    };
    s.set_exit("ready", 1);
    let (info, health) = s.start(&container).await;
    assert_eq!(
        health["web"],
        Health {
            started: true,
            ready: false,
            failed: None
        },
        "not ready before the first success"
    );
    let begun = Instant::now();
    s.set_exit("ready", 0);
    // Failed attempts at a not-ready container change nothing: the first
    // wake is the flip to ready.
    let wake = s.wakes.recv().await.unwrap();
    assert_eq!((wake.uid.as_str(), wake.event), ("u1", None));
    assert!(s.health(&container, &info).ready);
    assert!(begun.elapsed() <= Duration::from_secs(1));

    s.set_exit("ready", 1);
    let begun = Instant::now();
    let wake = s.wakes.recv().await.unwrap();
    let (reason, message) = wake.event.unwrap();
    assert_eq!(reason, "Unhealthy");
    assert!(
        message.starts_with("Readiness probe failed:") && message.contains("ready says 1"),
        "{message}"
    );
    assert!(!s.health(&container, &info).ready);
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took <= Duration::from_secs(2),
        "two failures a second apart: {took:?}"
    );
    assert!(
        s.health(&container, &info).failed.is_none(),
        "readiness never kills"
    );
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_after_the_threshold_with_defaults() {
    let mut s = Setup::new();
    let container = Container {
        name: "web".into(),
        liveness_probe: exec_probe("alive", 0, 0),
        ..Default::default()
    };
    s.set_exit("alive", 3);
    let (info, health) = s.start(&container).await;
    assert!(
        health["web"].ready,
        "a live container without readiness probe is ready"
    );
    let begun = Instant::now();
    let wake = s.wakes.recv().await.unwrap();
    let took = begun.elapsed();
    // Three failures, ten seconds apart (the defaults).
    assert_eq!(took, Duration::from_secs(20), "{took:?}");
    assert_eq!(s.calls("alive"), 3);
    let (reason, message) = wake.event.unwrap();
    assert_eq!(reason, "Unhealthy");
    assert!(message.starts_with("Liveness probe failed:"), "{message}");
    let failure = s.probers.failure("u1", &info.id).unwrap();
    assert_eq!(failure.probe, Kind::Liveness);
    assert!(!s.health(&container, &info).ready);

    s.probers.mark_killed("u1", &info.id);
    assert!(s.probers.killed("u1").contains(&info.id));
    assert!(
        s.probers.failure("u1", &info.id).is_none(),
        "the prober is gone"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.calls("alive"), 3, "no probes after the kill");
}

#[tokio::test(start_paused = true)]
async fn startup_probe_holds_back_liveness_and_readiness() {
    let mut s = Setup::new();
    let container = Container {
        name: "slow".into(),
        startup_probe: exec_probe("started", 1, 30),
        liveness_probe: exec_probe("alive", 1, 1),
        readiness_probe: exec_probe("ready", 1, 1),
        ..Default::default()
    };
    s.set_exit("started", 1);
    s.set_exit("ready", 1);
    let (info, health) = s.start(&container).await;
    assert!(!health["slow"].started && !health["slow"].ready);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(s.calls("started") >= 5);
    assert_eq!((s.calls("alive"), s.calls("ready")), (0, 0), "held back");
    s.set_exit("started", 0);
    let wake = s.wakes.recv().await.unwrap();
    assert_eq!(wake.event, None);
    let health = s.health(&container, &info);
    assert!(
        health.started && !health.ready,
        "started, readiness failing"
    );
    s.set_exit("ready", 0);
    s.wakes.recv().await.unwrap();
    assert!(s.health(&container, &info).ready);
    assert!(s.calls("alive") >= 1);
}

#[tokio::test(start_paused = true)]
async fn startup_failure_is_a_failure_and_probers_end_with_their_container() {
    let mut s = Setup::new();
    let never = Container {
        name: "never".into(),
        startup_probe: exec_probe("started", 1, 2),
        ..Default::default()
    };
    s.set_exit("started", 1);
    let (info, _) = s.start(&never).await;
    let wake = s.wakes.recv().await.unwrap();
    assert!(wake.event.unwrap().1.starts_with("Startup probe failed:"));
    assert_eq!(
        s.probers.failure("u1", &info.id).map(|f| f.probe),
        Some(Kind::Startup)
    );

    let counted = Arc::new(AtomicU32::new(0));
    let code = Arc::new(AtomicI64::new(0));
    let (n, c) = (counted.clone(), code.clone());
    s.fake.set_exec(move |_, _| {
        n.fetch_add(1, Ordering::Relaxed);
        Ok(ExecOutput {
            exit_code: c.load(Ordering::Relaxed),
            output: String::new(),
        })
    });
    let other = Container {
        name: "other".into(),
        readiness_probe: exec_probe("ready", 1, 1),
        ..Default::default()
    };
    let (info, _) = s.start(&other).await;
    s.wakes.recv().await.unwrap();
    s.fake
        .stop_container(&info.id, Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = counted.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        counted.load(Ordering::Relaxed),
        seen,
        "no probes of a stopped container"
    );
}

#[test]
fn settings_default_like_kubernetes() {
    let s = Settings::of(&Probe::default());
    assert_eq!(
        s,
        Settings {
            initial_delay: Duration::ZERO,
            timeout: Duration::from_secs(1),
            period: Duration::from_secs(10),
            success_threshold: 1,
            failure_threshold: 3,
        }
    );
}
