//! [`Fake`]: an in-memory runtime for simulated nodes. Containers start
//! instantly and run until stopped; every image is present; nothing runs.
//! The spec each container was created from is kept for tests to inspect,
//! and so is every pull (pulls succeed unless a test says otherwise).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::types::{
    ContainerInfo, ContainerSpec, ContainerState, ExecOutput, NetworkMode, RegistryAuth,
    RuntimeInfo,
};
use crate::{ContainerRuntime, Error};

/// An in-memory runtime; clones share their containers.
#[derive(Clone, Debug)]
pub struct Fake {
    info: RuntimeInfo,
    // A std Mutex: held only in short synchronous sections, never across an await.
    containers: Arc<Mutex<HashMap<String, Entry>>>,
    next: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    exec: ExecHook,
    pulls: PullHook,
}

/// What [`Fake::exec`](ContainerRuntime::exec) answers for a running
/// container, given its spec and the command.
type ExecHandler =
    Arc<dyn Fn(&ContainerSpec, &[String]) -> Result<ExecOutput, Error> + Send + Sync>;

/// The handler set by [`Fake::set_exec`], shared by clones.
#[derive(Clone, Default)]
struct ExecHook(Arc<Mutex<Option<ExecHandler>>>);

/// What [`Fake::pull_image`](ContainerRuntime::pull_image) answers for an
/// image and the credentials it was given.
type PullHandler = Arc<dyn Fn(&str, Option<&RegistryAuth>) -> Result<(), Error> + Send + Sync>;

/// One pull asked of the fake: the image and the credentials.
type AskedPull = (String, Option<RegistryAuth>);

/// The pulls asked so far and the handler set by [`Fake::set_pull`],
/// shared by clones.
#[derive(Clone, Default)]
struct PullHook {
    // A std Mutex: held only in short synchronous sections, never across an await.
    asked: Arc<Mutex<Vec<AskedPull>>>,
    handler: Arc<Mutex<Option<PullHandler>>>,
}

/// One fake container: what it reports and what it was created from.
#[derive(Clone, Debug)]
struct Entry {
    info: ContainerInfo,
    spec: ContainerSpec,
}

// === impl ExecHook ===

impl std::fmt::Debug for ExecHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecHook")
    }
}

// === impl PullHook ===

impl std::fmt::Debug for PullHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PullHook")
    }
}

// === impl Fake ===

impl Fake {
    /// A fake machine with `cpus` CPUs and `memory_bytes` of memory.
    pub fn new(cpus: i64, memory_bytes: i64) -> Self {
        Self {
            info: RuntimeInfo {
                cpus,
                memory_bytes,
                operating_system: "linux".into(),
                architecture: "amd64".into(),
                kernel_version: "fake".into(),
                os_image: "moor fake node".into(),
                runtime_version: "fake://0.1".into(),
            },
            containers: Arc::default(),
            next: Arc::new(AtomicU64::new(1)),
            down: Arc::default(),
            exec: ExecHook::default(),
            pulls: PullHook::default(),
        }
    }

    /// Decides what commands run in containers return (by default: exit 0
    /// with no output), e.g. to fail a probe.
    pub fn set_exec<F>(&self, handler: F)
    where
        F: Fn(&ContainerSpec, &[String]) -> Result<ExecOutput, Error> + Send + Sync + 'static,
    {
        let mut guard = match self.exec.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(Arc::new(handler));
    }

    /// Decides how pulls end (by default: they succeed), e.g. to refuse
    /// credentials as a registry would.
    pub fn set_pull<F>(&self, handler: F)
    where
        F: Fn(&str, Option<&RegistryAuth>) -> Result<(), Error> + Send + Sync + 'static,
    {
        *lock(&self.pulls.handler) = Some(Arc::new(handler));
    }

    /// Every pull asked so far, in order: the image and the credentials.
    pub fn pulls(&self) -> Vec<(String, Option<RegistryAuth>)> {
        lock(&self.pulls.asked).clone()
    }

    /// Makes `info` fail (or answer again), as when the engine is down:
    /// the node goes NotReady.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// The spec container `id` was created from, while it exists.
    pub fn spec(&self, id: &str) -> Option<ContainerSpec> {
        self.with(|c| c.get(id).map(|e| e.spec.clone()))
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut guard = match self.containers.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for Fake {
    fn id_scheme(&self) -> &'static str {
        "fake"
    }

    async fn info(&self) -> Result<RuntimeInfo, Error> {
        if self.down.load(Ordering::Relaxed) {
            return Err(Error::Unavailable("the fake runtime is down".into()));
        }
        Ok(self.info.clone())
    }

    async fn ensure_network(&self, _name: &str) -> Result<(), Error> {
        Ok(())
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, Error> {
        Ok(Some(format!("fake:{image}")))
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), Error> {
        lock(&self.pulls.asked).push((image.to_owned(), auth.cloned()));
        let handler = lock(&self.pulls.handler).clone();
        handler.map_or(Ok(()), |handler| handler(image, auth))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("fake{n:012x}");
        // Sandboxes get an address in 10.0.0.0/8 so pods show a plausible podIP.
        let ip = matches!(spec.network, NetworkMode::Network(_))
            .then(|| format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff));
        let info = ContainerInfo {
            id: id.clone(),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            state: ContainerState::Created,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            started_at: None,
            finished_at: None,
            image: spec.image.clone(),
            image_id: format!("fake:{}", spec.image),
            ip,
        };
        self.with(|c| {
            if c.values().any(|other| other.info.name == spec.name) {
                return Err(Error::Engine(format!("name {:?} is in use", spec.name)));
            }
            let spec = spec.clone();
            c.insert(id.clone(), Entry { info, spec });
            Ok(id)
        })
    }

    async fn start_container(&self, id: &str) -> Result<(), Error> {
        self.with(|c| match c.get_mut(id).map(|e| &mut e.info) {
            Some(info) => {
                info.state = ContainerState::Running;
                info.started_at = Some(SystemTime::now());
                Ok(())
            }
            None => Err(Error::Engine(format!("no such container: {id}"))),
        })
    }

    async fn signal_stop(&self, id: &str) -> Result<(), Error> {
        // Simulated processes end on their stop signal.
        self.kill_at(id, SystemTime::now()).await
    }

    async fn kill_at(&self, id: &str, _deadline: SystemTime) -> Result<(), Error> {
        self.with(|c| {
            if let Some(info) = c
                .get_mut(id)
                .map(|e| &mut e.info)
                .filter(|i| i.state == ContainerState::Running)
            {
                info.state = ContainerState::Exited;
                info.finished_at = Some(SystemTime::now());
            }
        });
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), Error> {
        self.with(|c| c.remove(id));
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, Error> {
        Ok(self.with(|c| c.get(id).map(|e| e.info.clone())))
    }

    async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>, Error> {
        Ok(self.with(|c| {
            c.values()
                .map(|e| &e.info)
                .filter(|info| labels.iter().all(|(k, v)| info.label(k) == *v))
                .cloned()
                .collect()
        }))
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, Error> {
        let spec = self.with(|c| match c.get(id) {
            Some(e) if e.info.state == ContainerState::Running => Ok(e.spec.clone()),
            Some(_) => Err(Error::Engine(format!("container {id} is not running"))),
            None => Err(Error::Engine(format!("no such container: {id}"))),
        })?;
        let handler = match self.exec.0.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        match handler {
            Some(handler) => handler(&spec, command),
            None => Ok(ExecOutput::default()),
        }
    }

    async fn logs(
        &self,
        id: &str,
        _options: &crate::LogOptions,
    ) -> Result<crate::OutputStreamBox, Error> {
        Err(Error::Engine(format!(
            "container {id} runs on a simulated node: it has no log"
        )))
    }

    async fn exec_attached(
        &self,
        id: &str,
        _spec: &crate::ExecSpec,
    ) -> Result<crate::ExecSession, Error> {
        Err(Error::Engine(format!(
            "container {id} runs on a simulated node: nothing can run in it"
        )))
    }

    async fn exec_resize(&self, exec_id: &str, _width: u16, _height: u16) -> Result<(), Error> {
        Err(Error::Engine(format!("no such exec: {exec_id}")))
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, Error> {
        Err(Error::Engine(format!("no such exec: {exec_id}")))
    }
}

/// Locks a std Mutex held only in short synchronous sections; a panic
/// while holding it leaves nothing half-done, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "img".into(),
            command: vec![],
            args: vec![],
            working_dir: String::new(),
            env: vec![],
            labels: [(labels::POD_UID.to_owned(), "u1".to_owned())].into(),
            mounts: vec![],
            network: NetworkMode::Network("moor".into()),
            ipc_container: None,
            hostname: None,
            ports: vec![],
            nano_cpus: None,
            memory_bytes: None,
        }
    }

    #[tokio::test]
    async fn containers_run_until_stopped_and_list_by_label() {
        let fake = Fake::new(4, 1 << 30);
        let id = fake.create_container(&spec("a")).await.unwrap();
        assert!(
            fake.create_container(&spec("a")).await.is_err(),
            "names are unique"
        );
        assert_eq!(fake.spec(&id), Some(spec("a")), "the spec is kept");
        fake.start_container(&id).await.unwrap();
        let info = fake.inspect_container(&id).await.unwrap().unwrap();
        assert_eq!(info.state, ContainerState::Running);
        assert!(info.ip.is_some());
        assert_eq!(
            fake.list_containers(&[(labels::POD_UID, "u1")])
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            fake.list_containers(&[(labels::POD_UID, "u2")])
                .await
                .unwrap()
                .is_empty()
        );
        fake.stop_container(&id, Duration::ZERO).await.unwrap();
        let info = fake.inspect_container(&id).await.unwrap().unwrap();
        assert_eq!(info.state, ContainerState::Exited);
        fake.remove_container(&id).await.unwrap();
        assert!(fake.inspect_container(&id).await.unwrap().is_none());
        assert_eq!(fake.spec(&id), None);
    }
}
