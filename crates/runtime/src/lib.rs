//! The container runtime behind the node agent: a [`ContainerRuntime`] trait
//! over containers, images and the cluster network, with two implementations:
//! [`Docker`] (through bollard, the only crate of moor that talks to Docker)
//! and [`Fake`] (in memory, for simulated nodes at scale).
//!
//! A pod is a sandbox container plus app containers; the runtime knows nothing
//! of pods beyond the labels the agent puts on each container.

mod change_log;
mod docker;
mod error;
mod fake;
pub mod pod_network;
mod types;

pub use docker::{Docker, NodeSubnet};
pub use error::Error;
pub use fake::Fake;
pub use types::{
    ContainerInfo, ContainerSpec, ContainerState, ExecOutput, ExecSession, ExecSpec, Labels,
    LogOptions, Mount, NetworkMode, OutputChunk, OutputStream, OutputStreamBox, PortMapping,
    RegistryAuth, RuntimeInfo, labels,
};

use std::time::{Duration, SystemTime};

/// What the node agent needs from a container engine.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The prefix of container ids in pod status: `docker` gives `docker://<id>`.
    fn id_scheme(&self) -> &'static str;

    /// The machine and engine: CPUs, memory, OS, versions. Fails when the
    /// engine does not answer (the node goes NotReady).
    async fn info(&self) -> Result<RuntimeInfo, Error>;

    /// Creates the bridge network `name` unless it exists (shared by every
    /// agent on the host, so a concurrent create by another agent is fine).
    async fn ensure_network(&self, name: &str) -> Result<(), Error>;

    /// The image's id when it is present locally.
    async fn image_id(&self, image: &str) -> Result<Option<String>, Error>;

    /// Pulls an image from its registry, with `auth` when given (else
    /// anonymously); the error carries the engine's (so the registry's) message.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), Error>;

    /// Creates a container (not started); returns its id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, Error>;

    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<(), Error>;

    /// The first half of a stop: sends the container its stop signal (its
    /// image's STOPSIGNAL, else SIGTERM). A stopped or missing container is
    /// left as it is.
    async fn signal_stop(&self, id: &str) -> Result<(), Error>;

    /// The second half: waits for the container to exit until `deadline`,
    /// then kills what still runs (SIGKILL). Split from the first so that
    /// an agent restarted in between finishes a stop without signalling
    /// twice or starting the grace period over.
    async fn kill_at(&self, id: &str, deadline: SystemTime) -> Result<(), Error>;

    /// Both halves: the stop signal, then SIGKILL once `grace` has passed.
    /// Stopping a stopped or missing container succeeds.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), Error> {
        let deadline = deadline_after(grace);
        self.signal_stop(id).await?;
        self.kill_at(id, deadline).await
    }

    /// Removes a container (killing it if still running). Removing a missing
    /// container succeeds.
    async fn remove_container(&self, id: &str) -> Result<(), Error>;

    /// One container's state, or `None` when it does not exist.
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, Error>;

    /// Every container (running or not) carrying all of `labels`.
    async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>, Error>;

    /// Runs `command` (no shell) in running container `id` and waits for
    /// it, at most `timeout`; a command still running then is an error (it
    /// may keep running in the container: engines cannot kill an exec).
    async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, Error>;

    /// The log of container `id` (running or stopped).
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStreamBox, Error>;

    /// Starts an interactive command in running container `id`.
    async fn exec_attached(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession, Error>;

    /// Resizes the terminal of a running interactive command.
    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), Error>;

    /// The exit code of an interactive command, once it has exited.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, Error>;
}

/// When a grace period of `grace` from now ends. A grace period too long
/// for the clock (a client may ask for any number of seconds) ends in a
/// century: never, for a container.
pub fn deadline_after(grace: Duration) -> SystemTime {
    let now = SystemTime::now();
    now.checked_add(grace)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
