//! moorctl's command line, kubectl's verbs and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// moorctl drives a moor cluster the way kubectl drives Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "moorctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Server URL (https://HOST:PORT), or several of one cluster separated by commas (the first
    /// that answers is used); overrides $MOOR_SERVER and the config's current context.
    #[arg(long, global = true, value_name = "URL[,URL...]")]
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
    /// Print the logs of a pod's container, or of every pod a selector matches.
    Logs(LogsArgs),
    /// Run a command in a container: moorctl exec [-i] [-t] POD -- COMMAND [ARGS...].
    Exec(ExecArgs),
    /// Manage the rollout of a deployment: status, history, undo, restart, pause, resume.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Replace a replication controller's pods one by one with a new image.
    RollingUpdate(RollingUpdateArgs),
    /// Ask the scheduler where a pod would go, without binding it (--dry-run).
    Schedule(ScheduleArgs),
    /// Cordon a node and delete its pods so their controllers recreate them elsewhere.
    Drain(DrainArgs),
    /// Edit a resource in $EDITOR (default vi) and apply it on save.
    Edit(EditArgs),
    /// Ask the server about your credentials: whoami.
    #[command(subcommand)]
    Auth(AuthCommand),
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the user and groups the server takes you to be.
    Whoami,
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
    /// Read long lists in pages of this many objects, all at one version,
    /// as kubectl does (0: in one answer).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(i64).range(0..))]
    pub chunk_size: i64,
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
    /// With nodes: first take each server of that name out of etcd (a server lost for good, or
    /// one whose disk was wiped before it joins again).
    #[arg(long)]
    pub remove_etcd_member: bool,
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
    /// Scale only if the workload asks for this many replicas now.
    #[arg(long, value_name = "N")]
    pub current_replicas: Option<i32>,
    /// Scale only if the workload is still at this resourceVersion.
    #[arg(long, value_name = "VERSION")]
    pub resource_version: Option<String>,
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

/// Arguments of `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// POD, pod/NAME, or deployment/NAME, rs/NAME, rc/NAME (its first pod); omit with -l.
    #[arg(required_unless_present = "selector", conflicts_with = "selector")]
    pub target: Option<String>,
    /// Container, as with -c (kubectl's older form: logs POD CONTAINER).
    #[arg(conflicts_with = "container", value_name = "CONTAINER")]
    pub container_arg: Option<String>,
    /// Container; default: the pod's only container (with -l: every container).
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// Every container of the pods, init containers first.
    #[arg(long, conflicts_with_all = ["container", "container_arg"])]
    pub all_containers: bool,
    /// Label selector: the logs of every matching pod, each line prefixed [pod/NAME/CONTAINER].
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Keep streaming new lines until the containers stop or Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines; -1: all (the default, or 10 with -l).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Prefix every line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// The previous instance of the container (before its last restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only lines newer than this, e.g. 5s, 2m, 1h, 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<i64>,
    /// Prefix every line with [pod/NAME/CONTAINER] (always on with -l).
    #[arg(long)]
    pub prefix: bool,
    /// Most log streams followed at once with -f; more is an error.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_log_requests: usize,
}

/// Arguments of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The pod: NAME, pod/NAME, or deployment/NAME, rs/NAME, rc/NAME (its first pod).
    pub pod: Option<String>,
    /// Words before `--`: refused, as kubectl refuses them (the command goes after `--`).
    #[arg(hide = true)]
    pub before_dash: Vec<String>,
    /// The command and its arguments, after `--`; run without a shell.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Container; default: the pod's only container.
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// Pass stdin to the command (until EOF).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal (with -i and a terminal on stdin: raw mode, size and resizes).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Do not warn when -t cannot be honoured (no terminal on stdin).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Arguments of `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Parses `--since`: Go-style durations (5s, 2m, 1h, 1h30m, 500ms) as whole
/// seconds, rounded up as kubectl does.
pub fn parse_since(arg: &str) -> Result<i64, String> {
    let millis = go_millis(arg)?;
    if millis == 0 {
        return Err("--since must be greater than 0".to_string());
    }
    i64::try_from(millis.div_ceil(1_000)).map_err(|_| bad_duration(arg))
}

/// Parses a Go-style duration (0, 5s, 1m0s, 1h30m, 500ms), as kubectl's
/// `--timeout` and `--update-period` take them.
pub fn parse_duration(arg: &str) -> Result<std::time::Duration, String> {
    if arg == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    go_millis(arg).map(std::time::Duration::from_millis)
}

fn bad_duration(arg: &str) -> String {
    format!("{arg:?} is not a duration: use e.g. 5s, 2m, 1h, 1h30m")
}

/// A Go-style duration in milliseconds.
fn go_millis(arg: &str) -> Result<u64, String> {
    let bad = || bad_duration(arg);
    let mut millis: u64 = 0;
    let mut rest = arg;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        millis = n
            .checked_mul(scale)
            .and_then(|m| millis.checked_add(m))
            .ok_or_else(bad)?;
        rest = next;
    }
    Ok(millis)
}

/// `rollout` subcommands, kubectl's.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Watch a rollout until it completes (or fails its progress deadline).
    Status(RolloutStatusArgs),
    /// List a deployment's revisions, or show one revision's pod template.
    History(RolloutHistoryArgs),
    /// Roll back to the previous revision, or to --to-revision.
    Undo(RolloutUndoArgs),
    /// Replace every pod, by stamping the template with the time.
    Restart(RolloutTarget),
    /// Stop rolling out template changes (scaling goes on).
    Pause(RolloutTarget),
    /// Roll out template changes again after a pause.
    Resume(RolloutTarget),
}

/// The workload of a `rollout` subcommand.
#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// deployment/NAME (or deploy/NAME), or KIND NAME.
    pub kind: String,
    /// Name of the deployment (unless given as KIND/NAME).
    pub name: Option<String>,
}

/// Arguments of `rollout status`.
#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// The deployment.
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Keep watching until the rollout ends; false: print the status once.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub watch: bool,
    /// Give up after this long, e.g. 30s, 5m; 0: wait forever.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Fail unless this is the deployment's current revision; 0: any.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub revision: i64,
}

/// Arguments of `rollout history`.
#[derive(Debug, Args)]
pub struct RolloutHistoryArgs {
    /// The deployment.
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Show the pod template of this revision; 0: list every revision.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub revision: i64,
}

/// Arguments of `rollout undo`.
#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    /// The deployment.
    #[command(flatten)]
    pub target: RolloutTarget,
    /// The revision to roll back to; 0: the previous one.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub to_revision: i64,
}

/// Arguments of `rolling-update`.
#[derive(Debug, Args)]
pub struct RollingUpdateArgs {
    /// The replication controller to update (NAME or rc/NAME).
    pub old: String,
    /// Name the updated controller keeps; default: the old name (renamed back at the end).
    pub new: Option<String>,
    /// The new image of the container.
    #[arg(long, value_name = "IMAGE", required = true)]
    pub image: String,
    /// The container to update; needed when the pods have several.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Image pull policy of the new container (Always, Never, IfNotPresent); needed when the image does not change.
    #[arg(long, value_name = "POLICY")]
    pub image_pull_policy: Option<String>,
    /// Label key that tells the old pods from the new ones.
    #[arg(long, default_value = "deployment", value_name = "KEY")]
    pub deployment_label_key: String,
    /// Time to wait between steps (one pod up, one pod down), e.g. 1m0s, 5s.
    #[arg(long, default_value = "1m0s", value_name = "DURATION", value_parser = parse_duration)]
    pub update_period: std::time::Duration,
    /// Time between checks of the controllers' pods, e.g. 3s.
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_duration)]
    pub poll_interval: std::time::Duration,
    /// Give up when no step could be taken for this long, e.g. 5m0s.
    #[arg(long, default_value = "5m0s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

/// Arguments of `schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// An existing pod (NAME or pod/NAME); omit with -f.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub pod: Option<String>,
    /// A manifest of one pod that need not exist; - for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only report where the pod would go (the only mode: moorctl does not bind pods).
    #[arg(long)]
    pub dry_run: bool,
    /// The scheduler's URL; default: the Endpoints moor-system/moor-scheduler.
    #[arg(long, value_name = "URL")]
    pub scheduler: Option<String>,
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
        /// The cluster CA certificate (PEM file) to check the server against; its contents are stored.
        #[arg(long, value_name = "FILE")]
        certificate_authority: Option<std::path::PathBuf>,
        /// Your client certificate (PEM file), signed by the cluster CA; its contents are stored.
        #[arg(long, value_name = "FILE", requires = "client_key")]
        client_certificate: Option<std::path::PathBuf>,
        /// The private key (PEM file) of --client-certificate; its contents are stored.
        #[arg(long, value_name = "FILE", requires = "client_certificate")]
        client_key: Option<std::path::PathBuf>,
        /// A bearer token, instead of a client certificate.
        #[arg(long)]
        token: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["moorctl"], args].concat())
    }

    #[test]
    fn since_takes_go_durations_in_whole_seconds() {
        assert_eq!(parse_since("5s"), Ok(5));
        assert_eq!(parse_since("2m"), Ok(120));
        assert_eq!(parse_since("1h"), Ok(3600));
        assert_eq!(parse_since("1h30m"), Ok(5400));
        assert_eq!(parse_since("1500ms"), Ok(2));
        assert_eq!(parse_since("1ms"), Ok(1));
        for bad in ["", "5", "5x", "m", "1h30", "-5s", "99999999999999999999h"] {
            assert!(parse_since(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            parse_since("0s"),
            Err("--since must be greater than 0".to_string())
        );
    }

    #[test]
    fn logs_flags() {
        let cli = parse(&[
            "logs", "pod/web", "-c", "app", "-f", "--tail", "5", "--since", "1m", "-n", "prod",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
        let Command::Logs(args) = cli.command else {
            panic!("not logs")
        };
        assert_eq!(args.target.as_deref(), Some("pod/web"));
        assert_eq!(args.container.as_deref(), Some("app"));
        assert!(args.follow && !args.timestamps && !args.previous);
        assert_eq!((args.tail, args.since), (Some(5), Some(60)));
        assert_eq!(args.max_log_requests, 5);

        let Command::Logs(args) = parse(&["logs", "-l", "app=web", "--max-log-requests", "9"])
            .unwrap()
            .command
        else {
            panic!("not logs")
        };
        assert_eq!(args.selector.as_deref(), Some("app=web"));
        assert_eq!(args.max_log_requests, 9);

        let Command::Logs(args) = parse(&["logs", "web", "side"]).unwrap().command else {
            panic!("not logs")
        };
        assert_eq!(args.container_arg.as_deref(), Some("side"));
    }

    #[test]
    fn logs_refuses_contradictions() {
        assert!(parse(&["logs"]).is_err(), "a pod or -l is needed");
        assert!(parse(&["logs", "web", "-l", "app=web"]).is_err());
        assert!(parse(&["logs", "web", "-c", "a", "--all-containers"]).is_err());
        assert!(parse(&["logs", "web", "--since", "soon"]).is_err());
    }

    #[test]
    fn exec_flags() {
        let cli = parse(&[
            "exec", "-i", "-t", "web", "-n", "prod", "--", "sh", "-c", "ls",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert!(args.stdin && args.tty && !args.quiet);
        assert_eq!(args.pod.as_deref(), Some("web"));
        assert_eq!(args.command, ["sh", "-c", "ls"]);
        assert!(args.before_dash.is_empty());
    }

    #[test]
    fn every_flag_has_help() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let mut verbs: Vec<&clap::Command> = cli.get_subcommands().collect();
        let rollout = cli.find_subcommand("rollout").expect("rollout exists");
        verbs.extend(rollout.get_subcommands());
        for sub in verbs {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                assert!(
                    arg.get_help().is_some(),
                    "{} --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn durations_take_go_syntax() {
        use std::time::Duration;
        assert_eq!(parse_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn rolling_update_flags() {
        let cli = parse(&[
            "rolling-update",
            "web",
            "--image",
            "echo:2",
            "--update-period",
            "1s",
        ])
        .unwrap();
        let Command::RollingUpdate(args) = cli.command else {
            panic!("not rolling-update")
        };
        assert_eq!((args.old.as_str(), args.new.as_deref()), ("web", None));
        assert_eq!(args.image, "echo:2");
        assert_eq!(args.update_period, std::time::Duration::from_secs(1));
        assert_eq!(args.timeout, std::time::Duration::from_secs(300));
        assert_eq!(args.deployment_label_key, "deployment");
        let Command::RollingUpdate(args) = parse(&["rolling-update", "web", "web-v2", "--image=x"])
            .unwrap()
            .command
        else {
            panic!("not rolling-update")
        };
        assert_eq!(args.new.as_deref(), Some("web-v2"));
        assert!(
            parse(&["rolling-update", "web"]).is_err(),
            "--image is required"
        );
    }

    #[test]
    fn schedule_flags() {
        let Command::Schedule(args) = parse(&["schedule", "--dry-run", "-f", "pod.yaml"])
            .unwrap()
            .command
        else {
            panic!("not schedule")
        };
        assert!(args.dry_run && args.pod.is_none());
        assert_eq!(args.file.as_deref(), Some(std::path::Path::new("pod.yaml")));
        let Command::Schedule(args) =
            parse(&["schedule", "web", "--dry-run", "--scheduler", "http://s:1"])
                .unwrap()
                .command
        else {
            panic!("not schedule")
        };
        assert_eq!(args.pod.as_deref(), Some("web"));
        assert_eq!(args.scheduler.as_deref(), Some("http://s:1"));
        assert!(parse(&["schedule", "--dry-run"]).is_err(), "a pod or -f");
        assert!(parse(&["schedule", "web", "-f", "p.yaml"]).is_err());
    }
}
