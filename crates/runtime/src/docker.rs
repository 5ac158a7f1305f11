//! [`Docker`]: the runtime on a Docker Engine, through bollard.

mod network;
mod pull;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, ExecConfig, HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptions, RemoveContainerOptionsBuilder, ResizeExecOptions,
    WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use ipnet::Ipv4Net;
use tokio::time::Instant;

use crate::change_log::{Change, ChangeLog};
use crate::pod_network::{POD_IP_LABEL, POD_RANGE_LABEL, PodNetwork};
use crate::types::{
    ContainerInfo, ContainerSpec, ContainerState, ExecOutput, ExecSession, ExecSpec, LogOptions,
    NetworkMode, OutputChunk, OutputStream, OutputStreamBox, PortMapping, RegistryAuth,
    RuntimeInfo,
};
use crate::{ContainerRuntime, Error};

/// The runtime on the local Docker Engine; cheap to clone.
#[derive(Clone, Debug)]
pub struct Docker {
    docker: bollard::Docker,
    network: String,
    /// Serialises network creation in this process (Docker allows two
    /// networks of one name, which then makes the name ambiguous).
    network_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The last inspection of each container, with the state the engine's
    /// list reported then. A container's inspection changes only when its
    /// state does (moor sets no Docker restart policy, so it goes created,
    /// running, exited once each), so a list whose state matches reuses it:
    /// a node agent lists every pod's containers on every resync, and one
    /// inspect per container each time was most of its Docker calls.
    inspected: std::sync::Arc<std::sync::Mutex<HashMap<String, Inspected>>>,
    /// The last listing of every moor pod container on the engine, which
    /// listings by pod or node filter instead of asking the engine each
    /// time: the engine builds a summary of every container it has for any
    /// list, whatever the filter, so a node agent resyncing N pods each made
    /// it summarise all of them N times over. The lock also makes callers
    /// that arrive while a listing is in flight share the next one.
    listing: Arc<tokio::sync::Mutex<Option<Listing>>>,
    /// Whose containers changed when: a listing by pod stands while that
    /// pod's containers did not change, whatever happened to other pods'.
    change_log: Arc<ChangeLog>,
    /// How moor addresses sandboxes on the network, once
    /// [`ContainerRuntime::ensure_network`] found a moor range on it.
    pod_network: Arc<std::sync::RwLock<Option<Arc<PodNetwork>>>>,
    /// Created containers with a network namespace of their own, until they
    /// start: what the start still has to set up.
    unattached: Arc<std::sync::Mutex<HashMap<String, Attachment>>>,
    /// The subnet the network must have (the node's pod range); `None`:
    /// Docker picks one.
    subnet: Option<NodeSubnet>,
}

/// The cluster network of a node whose pod range the cluster assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSubnet {
    /// The node: its networks of earlier ranges are removed once empty.
    pub node: String,
    /// The node's pod range (`spec.podCIDR`): the bridge's subnet.
    pub range: Ipv4Net,
    /// The bridge's MTU (the overlay's, below the host's by its header).
    pub mtu: Option<u32>,
}

/// How a new sandbox joins the network once it runs.
#[derive(Clone, Debug)]
enum Attachment {
    /// moor's veth pair and this reserved address.
    Moor(Arc<PodNetwork>, Ipv4Addr),
    /// Docker attached it (it publishes host ports): only the hairpin mode
    /// of its bridge port is left.
    Docker,
}

/// One listing of every moor pod container.
#[derive(Debug)]
struct Listing {
    /// When it was asked of the engine.
    asked: Instant,
    summaries: Arc<Vec<ContainerSummary>>,
}

/// How long after its start a sandbox without moor's attachment counts as
/// left so (see [`Docker::remove_unattached`]).
pub const UNATTACHED_AGE: Duration = Duration::from_secs(30);

/// How long a listing serves callers when the containers they ask about
/// did not change through this runtime since it was taken: containers that
/// exit on their own are seen at most this late.
const LISTING_MAX_AGE: Duration = Duration::from_millis(500);

/// A cached inspection and the listed state it goes with.
#[derive(Debug)]
struct Inspected {
    state: Option<ContainerSummaryStateEnum>,
    info: ContainerInfo,
}

/// Past this many cached inspections the cache starts again (containers
/// removed behind our back are never pruned otherwise).
const MAX_INSPECTED: usize = 10_000;

// === impl Docker ===

/// How long a SIGKILLed container is waited for to exit.
const KILLED_EXIT: Duration = Duration::from_secs(10);

impl Docker {
    /// Sends `signal` to container `id`; one that is not running (409) or
    /// gone (404) is left as it is.
    async fn kill(&self, id: &str, signal: &str) -> Result<(), Error> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        match self
            .changing(
                self.change_log.pod_of(id),
                Some(id),
                self.docker.kill_container(id, Some(options)),
                |_| None,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(err) if matches!(status_of(&err), Some(404 | 409)) => Ok(()),
            Err(err) => Err(engine(err)),
        }
    }

    /// Records a change to container `id` (a new one: `None`, named by
    /// `made` from the outcome) of pod `pod`, from when it is asked until it
    /// is answered, so a listing taken while it was in flight never stands
    /// for the state after it (a failed change may still have changed
    /// something, and so may one whose caller stopped waiting).
    async fn changing<T>(
        &self,
        pod: Option<String>,
        id: Option<&str>,
        change: impl Future<Output = T>,
        made: impl FnOnce(&T) -> Option<String>,
    ) -> T {
        /// Ends the change when dropped: answered, failed or abandoned.
        struct Answered<'a> {
            log: &'a ChangeLog,
            change: Option<Change>,
        }
        impl Drop for Answered<'_> {
            fn drop(&mut self) {
                if let Some(change) = self.change.take() {
                    self.log.end(change);
                }
            }
        }
        let mut answered = Answered {
            log: &self.change_log,
            change: Some(self.change_log.begin(pod, id.map(str::to_owned))),
        };
        let outcome = change.await;
        if let Some(change) = answered.change.as_mut()
            && change.id.is_none()
        {
            change.id = made(&outcome);
        }
        outcome
    }

    /// Summaries of every moor pod container, and the ids of those among
    /// the containers asked about (those of pod `pod`, or any when `None`)
    /// that must be inspected afresh instead: from a listing that began
    /// after this call did (none), or from one that is young and followed
    /// only by changes through this runtime that named their containers
    /// (the containers they named, removed ones included).
    async fn moor_containers(
        &self,
        pod: Option<&str>,
    ) -> Result<(Arc<Vec<ContainerSummary>>, HashSet<String>), Error> {
        let called = Instant::now();
        let mut listing = self.listing.lock().await;
        if let Some(last) = listing.as_ref() {
            if last.asked > called {
                return Ok((last.summaries.clone(), HashSet::new()));
            }
            if called - last.asked < LISTING_MAX_AGE
                && let Some(changed) = self.change_log.changed_since(pod, last.asked)
            {
                return Ok((last.summaries.clone(), changed));
            }
        }
        let asked = Instant::now();
        let summaries = Arc::new(
            self.list_summaries(&[(crate::labels::POD_UID, None)])
                .await?,
        );
        for summary in summaries.iter() {
            let uid = summary
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::labels::POD_UID));
            if let (Some(id), Some(uid)) = (&summary.id, uid) {
                self.change_log.learn(id, uid);
            }
        }
        self.change_log.prune(asked);
        *listing = Some(Listing {
            asked,
            summaries: summaries.clone(),
        });
        Ok((summaries, HashSet::new()))
    }

    /// The engine's summaries of the containers carrying every label (any
    /// value where none is given).
    async fn list_summaries(
        &self,
        labels: &[(&str, Option<&str>)],
    ) -> Result<Vec<ContainerSummary>, Error> {
        let filters = HashMap::from([(
            "label".to_owned(),
            labels
                .iter()
                .map(|(k, v)| v.map_or_else(|| (*k).to_owned(), |v| format!("{k}={v}")))
                .collect(),
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(engine)
    }

    /// The inspection cache (never held across an await).
    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Inspected>> {
        // A panic elsewhere cannot leave the map half-updated: use it anyway.
        self.inspected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects to the local engine (`$DOCKER_HOST` or the default socket) and
    /// negotiates the API version. `network` is the cluster bridge network
    /// whose address [`ContainerInfo::ip`] reports.
    pub async fn connect(network: &str) -> Result<Self, Error> {
        Self::connect_with(network, None).await
    }

    /// [`Docker::connect`], with the network made on `subnet` when it is
    /// given: the bridge takes the range's first address, Docker its lower
    /// half, pods the upper half, and Docker masquerades nothing (pods keep
    /// their address towards other nodes; the node agent masquerades what
    /// leaves the cluster).
    pub async fn connect_with(network: &str, subnet: Option<NodeSubnet>) -> Result<Self, Error> {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(unavailable)?
            .negotiate_version()
            .await
            .map_err(unavailable)?
            // bollard writes registry credentials in an alphabet Docker
            // does not decode; this rewrites them (see the function).
            .with_request_modifier(pull::url_safe_registry_headers);
        // Known before any sandbox is made, so that removals from the
        // start (a restarted agent's collection of orphans) release
        // addresses; `ensure_network` makes it when missing.
        let pod_network = match docker.inspect_network(network, None).await {
            Ok(inspect) => PodNetwork::from_inspect(&inspect).map(Arc::new),
            Err(_) => None,
        };
        let runtime = Self {
            docker,
            network: network.to_owned(),
            network_lock: std::sync::Arc::default(),
            inspected: std::sync::Arc::default(),
            listing: Arc::default(),
            change_log: Arc::default(),
            pod_network: Arc::new(std::sync::RwLock::new(pod_network)),
            unattached: Arc::default(),
            subnet,
        };
        let checking = runtime.clone();
        tokio::spawn(async move { checking.remove_unattached(UNATTACHED_AGE).await });
        Ok(runtime)
    }

    /// Removes the running sandboxes of the network that never got (or
    /// lost) moor's attachment: their agent stopped between the start and
    /// the attachment, or someone restarted them behind moor's back (a new,
    /// empty namespace). They would pass for running pods with an address
    /// that goes nowhere; removed, they are replaced by their agent. Only
    /// sandboxes started at least `min_age` ago: a younger one may be in the
    /// middle of its attachment by another agent on the host. [`connect`]
    /// runs it in the background with [`UNATTACHED_AGE`]; returns how many
    /// went.
    ///
    /// [`connect`]: Docker::connect
    pub async fn remove_unattached(&self, min_age: Duration) -> usize {
        let mut removed = 0;
        let Some(network) = self.pod_network() else {
            return removed;
        };
        let Ok(sandboxes) = self.list_summaries(&[(POD_IP_LABEL, None)]).await else {
            return removed;
        };
        let running = sandboxes
            .into_iter()
            .filter(|s| s.state == Some(ContainerSummaryStateEnum::RUNNING));
        for sandbox in running {
            let (Some(id), Some(ip)) = (
                sandbox.id,
                sandbox
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_IP_LABEL))
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
            ) else {
                continue;
            };
            if !network.range.contains(&ip) {
                continue;
            }
            let Ok(inspect) = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            else {
                continue;
            };
            let state = inspect.state.unwrap_or_default();
            let old = state
                .started_at
                .as_deref()
                .and_then(parse_time)
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age >= min_age);
            let Some(pid) = state.pid.filter(|pid| *pid > 0) else {
                continue;
            };
            // The last step of an attachment is the default route.
            let routes = tokio::fs::read_to_string(format!("/proc/{pid}/net/route"))
                .await
                .unwrap_or_default();
            let routed = routes
                .lines()
                .skip(1)
                .any(|line| line.split_whitespace().nth(1) == Some("00000000"));
            if old && !routed {
                tracing::warn!(container = %id, %ip, "removing a pod sandbox without its network (its agent will replace it)");
                match self.remove_container(&id).await {
                    Ok(()) => removed += 1,
                    Err(err) => {
                        tracing::warn!(container = %id, %err, "cannot remove a sandbox without its network");
                    }
                }
            }
        }
        removed
    }

    fn info_from(&self, c: ContainerInspectResponse) -> ContainerInfo {
        let state = c.state.unwrap_or_default();
        let failed_start = state.error.as_deref().is_some_and(|e| !e.is_empty());
        let status = match state.status {
            // A start that failed (bad command, missing mount) leaves the
            // container created with an error: treat it as exited so the
            // agent backs off instead of retrying the start at once.
            Some(ContainerStateStatusEnum::CREATED) if failed_start => ContainerState::Exited,
            Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
            Some(
                ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::PAUSED
                | ContainerStateStatusEnum::RESTARTING,
            ) => ContainerState::Running,
            _ => ContainerState::Exited,
        };
        let config = c.config.unwrap_or_default();
        let ip = c
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&self.network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .or_else(|| {
                config
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_IP_LABEL).cloned())
            });
        ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            labels: config.labels.unwrap_or_default(),
            state: status,
            exit_code: state.exit_code.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.unwrap_or_default(),
            started_at: state.started_at.as_deref().and_then(parse_time),
            finished_at: state.finished_at.as_deref().and_then(parse_time),
            image: config.image.unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
            ip,
        }
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for Docker {
    fn id_scheme(&self) -> &'static str {
        "docker"
    }

    async fn info(&self) -> Result<RuntimeInfo, Error> {
        let info = self.docker.info().await.map_err(unavailable)?;
        let architecture = match info.architecture.as_deref().unwrap_or_default() {
            "x86_64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            other => other.to_owned(),
        };
        Ok(RuntimeInfo {
            cpus: info.ncpu.unwrap_or(0),
            memory_bytes: info.mem_total.unwrap_or(0),
            operating_system: info.os_type.unwrap_or_else(|| "linux".into()),
            architecture,
            kernel_version: info.kernel_version.unwrap_or_default(),
            os_image: info.operating_system.unwrap_or_default(),
            runtime_version: format!("docker://{}", info.server_version.unwrap_or_default()),
        })
    }

    async fn ensure_network(&self, name: &str) -> Result<(), Error> {
        let _creating = self.network_lock.lock().await;
        let network = match self.docker.inspect_network(name, None).await {
            Ok(network) => network,
            Err(err) if status_of(&err) == Some(404) => {
                self.create_network(name).await?;
                self.docker
                    .inspect_network(name, None)
                    .await
                    .map_err(engine)?
            }
            Err(err) => return Err(engine(err)),
        };
        let pod_network = PodNetwork::from_inspect(&network).map(Arc::new);
        match &pod_network {
            Some(pod_network) => {
                // Leftovers cost addresses, not correctness: never a reason
                // to stop starting pods.
                if let Err(err) = self.release_orphans(pod_network.clone()).await {
                    tracing::warn!(%err, "cannot release the addresses of removed sandboxes");
                }
            }
            None => tracing::warn!(
                network = name,
                "the network has no {POD_RANGE_LABEL} label (made by an older moor?): Docker \
                 attaches pod sandboxes itself, which is slower; remove the network once no \
                 pod uses it and moor makes it anew"
            ),
        }
        *self
            .pod_network
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pod_network;
        Ok(())
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, Error> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(Some(inspect.id.unwrap_or_default())),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(engine(err)),
        }
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), Error> {
        pull::pull(&self.docker, image, auth).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, Error> {
        let network_mode = match &spec.network {
            NetworkMode::Network(name) => name.clone(),
            NetworkMode::Container(id) => format!("container:{id}"),
        };
        // A sandbox that publishes no host port gets moor's attachment
        // (see `pod_network`); Docker publishes ports only for containers
        // it attaches itself.
        let mut labels = spec.labels.clone();
        let attachment = match (&spec.network, self.pod_network()) {
            (NetworkMode::Network(_), Some(network)) if spec.ports.is_empty() => {
                let ip = match self.reserve(&network, &spec.name).await {
                    Ok(ip) => ip,
                    // Sandboxes removed behind moor's back (`docker rm`)
                    // keep their addresses until released as orphans.
                    Err(_) => {
                        self.release_orphans(network.clone()).await?;
                        self.reserve(&network, &spec.name).await?
                    }
                };
                labels.insert(POD_IP_LABEL.into(), ip.to_string());
                Some(Attachment::Moor(network, ip))
            }
            (NetworkMode::Network(_), _) => Some(Attachment::Docker),
            (NetworkMode::Container(_), _) => None,
        };
        let moor_attached = matches!(attachment, Some(Attachment::Moor(..)));
        let binds = spec
            .mounts
            .iter()
            .map(|m| {
                let mode = if m.read_only { ":ro" } else { "" };
                format!("{}:{}{mode}", m.host_path, m.container_path)
            })
            .collect();
        let host_config = HostConfig {
            network_mode: (!moor_attached).then_some(network_mode),
            ipc_mode: Some(match &spec.ipc_container {
                Some(id) => format!("container:{id}"),
                None => "shareable".into(),
            }),
            binds: Some(binds),
            port_bindings: (!spec.ports.is_empty()).then(|| {
                spec.ports
                    .iter()
                    .map(|p| {
                        let binding = PortBinding {
                            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
                            host_port: Some(p.host_port.to_string()),
                        };
                        (port_key(p), Some(vec![binding]))
                    })
                    .collect()
            }),
            nano_cpus: spec.nano_cpus,
            memory: spec.memory_bytes,
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            working_dir: (!spec.working_dir.is_empty()).then(|| spec.working_dir.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            // A network namespace with only `lo`, and none of Docker's
            // network setup: moor attaches it once it runs.
            network_disabled: moor_attached.then_some(true),
            hostname: spec.hostname.clone(),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| spec.ports.iter().map(port_key).collect()),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let pod = spec.labels.get(crate::labels::POD_UID).cloned();
        let created = self
            .changing(
                pod.clone(),
                None,
                self.docker.create_container(Some(options), body),
                |made| made.as_ref().ok().map(|c| c.id.clone()),
            )
            .await;
        let created = match created {
            Ok(created) => created,
            Err(err) => {
                if let Some(Attachment::Moor(network, ip)) = attachment {
                    let _ = network.release(ip, &spec.name);
                }
                return Err(engine(err));
            }
        };
        if let Some(uid) = &pod {
            self.change_log.learn(&created.id, uid);
        }
        if let Some(attachment) = attachment {
            self.unattached().insert(created.id.clone(), attachment);
        }
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), Error> {
        // A failed start leaves the container listed as created, but its
        // inspection now carries the error: inspect it afresh.
        self.cached().remove(id);
        self.changing(
            self.change_log.pod_of(id),
            Some(id),
            self.docker.start_container(id, None),
            |_| None,
        )
        .await
        .map_err(engine)?;
        let Some(attachment) = self.unattached().remove(id) else {
            return Ok(());
        };
        if let Err(err) = self.attach(id, attachment).await {
            // A sandbox without its network must not pass for a running
            // one: removed (killed first), it is replaced by the agent's
            // next sync, and its address goes back.
            if let Err(removing) = self.remove_container(id).await {
                tracing::warn!(%removing, "cannot remove a sandbox left without its network");
            }
            return Err(err);
        }
        Ok(())
    }

    async fn signal_stop(&self, id: &str) -> Result<(), Error> {
        // The signal `docker stop` would send: the container's own.
        let signal = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(container) => container
                .config
                .and_then(|config| config.stop_signal)
                .filter(|signal| !signal.is_empty())
                .unwrap_or_else(|| "SIGTERM".to_owned()),
            Err(err) if matches!(status_of(&err), Some(404)) => return Ok(()),
            Err(err) => return Err(engine(err)),
        };
        self.kill(id, &signal).await
    }

    async fn kill_at(&self, id: &str, deadline: SystemTime) -> Result<(), Error> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut exit = self.docker.wait_container(id, Some(options));
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        match tokio::time::timeout(left, exit.next()).await {
            // Exited (with a code other than 0, bollard's error), or gone.
            Ok(None | Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. }))) => {
                Ok(())
            }
            Ok(Some(Err(err))) if matches!(status_of(&err), Some(404)) => Ok(()),
            Ok(Some(Err(err))) => Err(engine(err)),
            Err(_) => {
                self.kill(id, "SIGKILL").await?;
                // As `docker stop` does: return once it has exited, so that
                // the caller sees it stopped. The kernel ends a killed
                // process at once; the bound guards against a hung engine.
                let options = WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build();
                let mut exit = self.docker.wait_container(id, Some(options));
                let _ = tokio::time::timeout(KILLED_EXIT, exit.next()).await;
                Ok(())
            }
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), Error> {
        let reservation = match self.pod_network() {
            Some(network) => self.reservation_of(id).await.map(|r| (network, r)),
            None => None,
        };
        self.unattached().remove(id);
        self.cached().remove(id);
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let removed = self
            .changing(
                self.change_log.pod_of(id),
                Some(id),
                self.docker.remove_container(id, Some(options)),
                |_| None,
            )
            .await;
        self.change_log.forget(id);
        match removed {
            Ok(()) => {}
            // 404: gone; 409: removal already in progress.
            Err(err) if matches!(status_of(&err), Some(404 | 409)) => {}
            Err(err) => return Err(engine(err)),
        }
        if let Some((network, (ip, owner))) = reservation {
            blocking(move || {
                // The flows of the address go before the address does, as
                // Docker's go with its endpoints: a connection that reuses a
                // source port would otherwise follow a dead pod's NAT entry.
                if let Err(err) = moor_hostnet::delete_flows_of(ip) {
                    tracing::warn!(%err, %ip, "cannot delete the flows of a removed pod");
                }
                network.release(ip, &owner)
            })
            .await?
            .map_err(|e| Error::Engine(format!("releasing pod address {ip}: {e}")))?;
        }
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, Error> {
        match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(self.info_from(c))),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(engine(err)),
        }
    }

    async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>, Error> {
        // The agent's own listings (by pod, by node) filter the shared one.
        let pod = labels
            .iter()
            .find(|(k, _)| *k == crate::labels::POD_UID)
            .map(|(_, uid)| *uid);
        let wanted = |have: Option<&HashMap<String, String>>| {
            labels
                .iter()
                .all(|(k, v)| have.and_then(|l| l.get(*k)).is_some_and(|h| h == v))
        };
        let (summaries, changed): (Vec<ContainerSummary>, _) =
            if pod.is_some() || labels.iter().any(|(k, _)| *k == crate::labels::NODE) {
                let (all, changed) = self.moor_containers(pod).await?;
                let listed = all
                    .iter()
                    .filter(|c| {
                        wanted(c.labels.as_ref())
                            && c.id.as_ref().is_none_or(|id| !changed.contains(id))
                    })
                    .cloned()
                    .collect();
                (listed, changed)
            } else {
                let labels: Vec<_> = labels.iter().map(|(k, v)| (*k, Some(*v))).collect();
                (self.list_summaries(&labels).await?, HashSet::new())
            };
        let mut infos = Vec::with_capacity(summaries.len() + changed.len());
        // Containers changed through this runtime since the listing: as
        // they are now (a removed one is gone).
        for id in &changed {
            if let Some(info) = self.inspect_container(id).await?
                && wanted(Some(&info.labels))
            {
                infos.push(info);
            }
        }
        for summary in summaries {
            let (Some(id), state) = (summary.id, summary.state) else {
                continue;
            };
            let known = self
                .cached()
                .get(&id)
                .filter(|seen| seen.state == state)
                .map(|seen| seen.info.clone());
            if let Some(info) = known {
                infos.push(info);
                continue;
            }
            // A container removed between list and inspect is simply skipped.
            if let Some(info) = self.inspect_container(&id).await? {
                let mut cache = self.cached();
                if cache.len() >= MAX_INSPECTED {
                    cache.clear();
                }
                let seen = Inspected {
                    state,
                    info: info.clone(),
                };
                cache.insert(id, seen);
                infos.push(info);
            }
        }
        Ok(infos)
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, Error> {
        let run = async {
            let config = ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            };
            let created = self.docker.create_exec(id, config).await.map_err(engine)?;
            let started = self
                .docker
                .start_exec(&created.id, None::<StartExecOptions>)
                .await
                .map_err(engine)?;
            let mut output = Vec::new();
            if let StartExecResults::Attached {
                output: mut stream, ..
            } = started
            {
                // Read to the end (the command's exit), keeping only the start.
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(engine)?;
                    let room = ExecOutput::MAX_OUTPUT.saturating_sub(output.len());
                    let bytes: &[u8] = chunk.as_ref();
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            let inspect = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(engine)?;
            Ok(ExecOutput {
                exit_code: inspect.exit_code.unwrap_or(-1),
                output: String::from_utf8_lossy(&output).into_owned(),
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(Error::Engine(format!(
                "command {command:?} timed out after {timeout:?}"
            ))),
        }
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStreamBox, Error> {
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            timestamps: options.timestamps,
            since: options
                .since
                .map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
            tail: options
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        // Fail now, not mid-stream, for a container that does not exist.
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(engine)?;
        let stream = self
            .docker
            .logs(id, Some(query))
            .filter_map(|item| async move {
                match item {
                    Ok(output) => chunk(output).map(Ok),
                    Err(err) => Some(Err(engine(err))),
                }
            });
        Ok(Box::pin(stream))
    }

    async fn exec_attached(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession, Error> {
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            cmd: Some(spec.command.clone()),
            ..Default::default()
        };
        let created = self.docker.create_exec(id, config).await.map_err(engine)?;
        let options = StartExecOptions {
            detach: false,
            tty: spec.tty,
            ..Default::default()
        };
        let started = self
            .docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(engine)?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Engine("the exec started detached".into()));
        };
        if let Some((width, height)) = spec.size {
            // Best effort: the command runs whatever the size.
            let _ = self.exec_resize(&created.id, width, height).await;
        }
        let output = output.filter_map(|item| async move {
            match item {
                Ok(output) => chunk(output).map(Ok),
                Err(err) => Some(Err(engine(err))),
            }
        });
        Ok(ExecSession {
            exec_id: created.id,
            output: Box::pin(output),
            input,
        })
    }

    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), Error> {
        let options = ResizeExecOptions {
            h: i32::from(height),
            w: i32::from(width),
        };
        self.docker
            .resize_exec(exec_id, options)
            .await
            .map_err(engine)
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, Error> {
        let inspect = self.docker.inspect_exec(exec_id).await.map_err(engine)?;
        Ok(match inspect.running {
            Some(true) => None,
            _ => inspect.exit_code,
        })
    }
}

/// Runs `work` (file or netlink I/O) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Engine(format!("a blocking task failed: {e}")))
}

/// Lets the bridge send a sandbox's own packets back to it (hairpin mode on
/// its bridge port), so a pod reaches itself through a service address the
/// kernel translates back to the pod (the proxy's iptables mode).
async fn hairpin(id: &str, pid: u32) -> Result<(), Error> {
    // The container's eth0 is one end of a veth pair; its iflink is the
    // index of the host end, which is the bridge port.
    let iflink = format!("/proc/{pid}/root/sys/class/net/eth0/iflink");
    let peer = tokio::fs::read_to_string(&iflink)
        .await
        .map_err(|e| Error::Engine(format!("{iflink}: {e}")))?;
    let peer: u32 = peer
        .trim()
        .parse()
        .map_err(|e| Error::Engine(format!("{iflink}: {e}")))?;
    blocking(move || moor_hostnet::set_hairpin(peer))
        .await?
        .map_err(|e| Error::Engine(format!("the bridge port of container {id}: {e}")))
}

/// Output of Docker's multiplexed streams as chunks; stdin echoes dropped.
fn chunk(output: bollard::container::LogOutput) -> Option<OutputChunk> {
    use bollard::container::LogOutput;
    match output {
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some(OutputChunk {
            stream: OutputStream::Stdout,
            data: message,
        }),
        LogOutput::StdErr { message } => Some(OutputChunk {
            stream: OutputStream::Stderr,
            data: message,
        }),
        LogOutput::StdIn { .. } => None,
    }
}

/// Docker's name of a port: `8080/tcp`.
fn port_key(p: &PortMapping) -> String {
    format!("{}/{}", p.container_port, p.protocol)
}

fn status_of(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn unavailable(err: BollardError) -> Error {
    Error::Unavailable(err.to_string())
}

fn engine(err: BollardError) -> Error {
    match err {
        BollardError::DockerResponseServerError { message, .. } => Error::Engine(message),
        BollardError::DockerStreamError { error } => Error::Engine(error),
        other if is_transport(&other) => Error::Unavailable(other.to_string()),
        other => Error::Engine(other.to_string()),
    }
}

fn is_transport(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)
    )
}

/// Parses Docker's RFC 3339 UTC times (`2024-01-02T03:04:05.123456789Z`);
/// Docker's zero time (year 1) and anything unparsable give `None`.
fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    if year < 1970 {
        return None;
    }
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let nanos: u32 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_times() {
        let t = parse_time("2024-01-02T03:04:05.5Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(secs, Duration::new(1_704_164_645, 500_000_000));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("garbage"), None);
    }
}
