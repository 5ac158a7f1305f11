//! moorctl's command line, kubectl's verbs and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// moorctl drives a moor cluster the way kubectl drives Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "moorctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Server URL (http://HOST:PORT); overrides $MOOR_SERVER and the config's current context.
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Namespace to use; defaults to the context's namespace, else "default".
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Every verb.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Display one or many resources.
    Get(GetArgs),
    /// Create or update resources from files (idempotent).
    Apply(FileArgs),
    /// Create resources from files.
    Create(FileArgs),
    /// Replace resources from files (they must exist).
    Replace(FileArgs),
    /// Delete resources by kind and name, or from files.
    Delete(DeleteArgs),
    /// Show details of a resource with its recent events.
    Describe(ObjectArgs),
    /// Document a kind or one of its fields, from the API's descriptors.
    Explain(ExplainArgs),
    /// List the kinds the server offers.
    ApiResources,
    /// List events.
    Events(EventsArgs),
    /// Set the replicas of a workload.
    Scale(ScaleArgs),
    /// Add, change (--overwrite) or remove (key-) labels.
    Label(MetaArgs),
    /// Add, change (--overwrite) or remove (key-) annotations.
    Annotate(MetaArgs),
    /// Mark a node unschedulable.
    Cordon(NodeArgs),
    /// Mark a node schedulable again.
    Uncordon(NodeArgs),
    /// Wait for a condition on a resource, or its deletion.
    Wait(WaitArgs),
    /// Call any RPC of the API by name, with a proto3 JSON request.
    Call(CallArgs),
    /// Print the client and server versions.
    Version,
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Read and change the client config (~/.moor/config or $MOOR_CONFIG).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a container's logs (needs the node agent).
    Logs(Passthrough),
    /// Run a command in a container (needs the node agent).
    Exec(Passthrough),
    /// Manage rollouts of workloads (needs the controller-manager).
    Rollout(Passthrough),
    /// Roll a replication controller to a new image (needs the controller-manager).
    RollingUpdate(Passthrough),
    /// Cordon a node and delete its pods so their controllers recreate them elsewhere.
    Drain(DrainArgs),
    /// Edit a resource in $EDITOR (default vi) and apply it on save.
    Edit(EditArgs),
}

/// Arguments of `edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// Kind, or KIND/NAME.
    pub kind: String,
    /// Name of the object (unless given as KIND/NAME).
    pub name: Option<String>,
}

/// Arguments of `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind (pods, po, deployments.apps, ...) or "all"; also KIND/NAME.
    pub kind: String,
    /// Names of the objects; none: every object.
    pub names: Vec<String>,
    /// List across every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=web,tier in (a,b).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Field selector, e.g. status.phase=Running.
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// Output format: wide, yaml, json, name or jsonpath=EXPR.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
    /// After listing, keep printing changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Do not print table headers.
    #[arg(long)]
    pub no_headers: bool,
}

/// Arguments of verbs that read manifests.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A file, a directory of .yaml/.yml/.json files, or - for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format of the written objects: name (default), yaml or json.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
}

/// Arguments of `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kind, or KIND/NAME; omit with -f.
    pub kind: Option<String>,
    /// Names of the objects.
    pub names: Vec<String>,
    /// Delete the objects of these manifests.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Seconds the object gets to stop; 0 removes it now.
    #[arg(long, value_name = "N")]
    pub grace_period: Option<i64>,
    /// What happens to dependents: background, foreground or orphan.
    #[arg(long, value_name = "POLICY")]
    pub cascade: Option<String>,
    /// Wait until the objects are gone.
    #[arg(long)]
    pub wait: bool,
    /// Do not fail on objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// A kind and one name.
#[derive(Debug, Args)]
pub struct ObjectArgs {
    /// Kind, or KIND/NAME.
    pub kind: String,
    /// Name of the object.
    pub name: Option<String>,
}

/// Arguments of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// KIND or KIND.field.path, e.g. pods.spec.containers.
    pub path: String,
}

/// Arguments of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// List across every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, keep printing new events.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// Arguments of `scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Kind, or KIND/NAME.
    pub kind: String,
    /// Name of the workload.
    pub name: Option<String>,
    /// The desired number of replicas.
    #[arg(long, value_name = "N")]
    pub replicas: i32,
}

/// Arguments of `label` and `annotate`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// Kind, or KIND/NAME.
    pub kind: String,
    /// Name, then key=value to set and key- to remove.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Allow changing a key that already has a value.
    #[arg(long)]
    pub overwrite: bool,
}

/// A node's name.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Name of the node.
    pub node: String,
}

/// Arguments of `drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Name of the node.
    pub node: String,
    /// Leave pods managed by a DaemonSet alone (moor has none yet; accepted for kubectl scripts).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also delete pods that no controller would recreate.
    #[arg(long)]
    pub force: bool,
    /// Seconds each pod gets to stop; default: the pod's own grace period.
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// Give up after this long, e.g. 90s, 5m.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub timeout: String,
}

/// Arguments of `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// KIND/NAME, or KIND NAME.
    pub target: Vec<String>,
    /// delete, or condition=TYPE[=STATUS].
    #[arg(long = "for", value_name = "CONDITION")]
    pub condition: String,
    /// Give up after this long, e.g. 30s, 2m.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: String,
}

/// Arguments of `call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// SERVICE/METHOD, e.g. moor.core.v1.Pods/Get (the package may be left out).
    pub method: String,
    /// The request in proto3 JSON; "-" reads stdin.
    #[arg(short = 'd', long, default_value = "{}", value_name = "JSON")]
    pub data: String,
}

/// Arguments of `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Arguments of verbs whose server side does not exist yet.
#[derive(Debug, Args)]
pub struct Passthrough {
    /// Arguments, as kubectl takes them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config.
    View,
    /// List the contexts; the current one is marked with *.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Make a context the current one.
    UseContext {
        /// The context's name.
        name: String,
    },
    /// Add or change a context: takes the global --server and --namespace.
    SetContext {
        /// The context's name.
        name: String,
        /// Also make it the current context.
        #[arg(long)]
        current: bool,
    },
}
