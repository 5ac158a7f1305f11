//! The runtime's domain types: what to create and what is running.

use std::collections::HashMap;
use std::time::SystemTime;

/// Container labels.
pub type Labels = HashMap<String, String>;

/// The labels the node agent puts on every container it creates.
pub mod labels {
    /// The uid of the container's pod.
    pub const POD_UID: &str = "moor.pod.uid";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "moor.pod.namespace";
    /// The pod's name.
    pub const POD_NAME: &str = "moor.pod.name";
    /// The container's name in the pod spec (unset on sandboxes).
    pub const CONTAINER_NAME: &str = "moor.container.name";
    /// How many times this container was started before this one.
    pub const CONTAINER_ATTEMPT: &str = "moor.container.attempt";
    /// `true` on the pod's sandbox.
    pub const SANDBOX: &str = "moor.sandbox";
    /// The node agent that owns the container (several may share one host).
    pub const NODE: &str = "moor.node";
}

/// Credentials for one registry, as a pull passes them to the engine.
/// Its `Debug` leaves the password out, so it may be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

/// Whose network namespace a container gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own, on this bridge network (sandboxes).
    Network(String),
    /// That of another container (app containers join their sandbox).
    Container(String),
}

/// A bind mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything needed to create a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The engine's name for it (unique on the host).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty.
    pub args: Vec<String>,
    /// Working directory; empty: the image's.
    pub working_dir: String,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// Labels (see [`labels`]).
    pub labels: Labels,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Network namespace.
    pub network: NetworkMode,
    /// Share this container's IPC namespace.
    pub ipc_container: Option<String>,
    /// Hostname (only for containers with their own network namespace).
    pub hostname: Option<String>,
    /// Ports published on the host (only for containers with their own
    /// network namespace: a pod's sandbox).
    pub ports: Vec<PortMapping>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
}

/// A container port published on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the host.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address to bind; empty: all.
    pub host_ip: String,
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running (or paused, restarting).
    Running,
    /// Exited or dead.
    Exited,
}

/// A container as the engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The engine's id.
    pub id: String,
    /// The engine's name, without a leading slash.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its state.
    pub state: ContainerState,
    /// Exit code once exited.
    pub exit_code: i64,
    /// Killed by the out-of-memory killer.
    pub oom_killed: bool,
    /// The engine's error message, e.g. for a failed start.
    pub error: String,
    /// When it last started.
    pub started_at: Option<SystemTime>,
    /// When it last finished.
    pub finished_at: Option<SystemTime>,
    /// The image reference it was created from.
    pub image: String,
    /// The image's id.
    pub image_id: String,
    /// Its IPv4 address on the given network (sandboxes), when it has one.
    pub ip: Option<String>,
}

/// How a command run in a container ended ([`crate::ContainerRuntime::exec`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code.
    pub exit_code: i64,
    /// Its stdout and stderr, interleaved, cut to the first
    /// [`ExecOutput::MAX_OUTPUT`] bytes.
    pub output: String,
}

/// The machine and the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// Logical CPUs.
    pub cpus: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// `linux`.
    pub operating_system: String,
    /// Kubernetes' architecture name: `amd64`, `arm64`...
    pub architecture: String,
    /// Kernel version.
    pub kernel_version: String,
    /// The OS as the engine describes it, e.g. `Debian GNU/Linux 13`.
    pub os_image: String,
    /// e.g. `docker://20.10.24`.
    pub runtime_version: String,
}

// === impl RegistryAuth ===

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

// === impl ExecOutput ===

impl ExecOutput {
    /// How much output is kept: enough for a probe's message.
    pub const MAX_OUTPUT: usize = 4096;
}

// === impl ContainerInfo ===

impl ContainerInfo {
    /// The value of label `key`, or "".
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    /// Whether this is a pod sandbox.
    pub fn is_sandbox(&self) -> bool {
        self.label(labels::SANDBOX) == "true"
    }

    /// The attempt number from its labels (0 when missing).
    pub fn attempt(&self) -> u32 {
        self.label(labels::CONTAINER_ATTEMPT).parse().unwrap_or(0)
    }
}

/// Which container logs to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming until the container stops.
    pub follow: bool,
    /// Only the last lines.
    pub tail: Option<u64>,
    /// Prefix lines with their timestamps.
    pub timestamps: bool,
    /// Only lines since this Unix time, in seconds.
    pub since: Option<i64>,
}

/// Which of a process's outputs a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output (or a terminal's single stream).
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a container's or command's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes.
    pub data: bytes::Bytes,
}

/// A stream of output.
pub type OutputStreamBox =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<OutputChunk, crate::Error>> + Send>>;

/// An interactive command to run in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The command and its arguments (no shell).
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// The terminal's size (columns, rows).
    pub size: Option<(u16, u16)>,
}

/// A running interactive command.
pub struct ExecSession {
    /// The engine's id of the command, for resize and the exit code.
    pub exec_id: String,
    /// Its output, until it exits.
    pub output: OutputStreamBox,
    /// Its stdin.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}
