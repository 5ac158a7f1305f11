//! `moor migrate --to-etcd`: a stopped single-machine server moves from the
//! embedded store onto an etcd member of its own, the one `moor up
//! --cluster-init` runs, so that more servers can join it. Every key is
//! copied, in the order of its revision (see [`copy`] for what becomes of
//! resourceVersions).
//!
//! Nothing is left half done. The embedded store stays open, and so locked
//! against a server, from the first read to the end. The member is built in
//! `etcd.migrating/`, which becomes `etcd/` only once every key is checked
//! and the member has stopped; the embedded store is moved aside last.
//! Before that, a failure removes what the migration made and leaves the
//! embedded store as it was.

mod copy;

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use moor_storage::Store;
use moor_storage_sqlite::SqliteStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::etcd::{Bootstrap, Member};

/// Flags of `moor migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// Move onto an etcd member of this server's own, the one `moor up --cluster-init` runs (the
    /// only target there is).
    #[arg(long, required = true)]
    to_etcd: bool,
    /// The stopped server's data directory (default ~/.moor).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This server's name, its etcd member's: `moor up`'s --node-name (default: the host name).
    #[arg(long, visible_alias = "node-name")]
    name: Option<String>,
    /// The address `moor up --cluster-init` will advertise, where other servers reach the etcd
    /// member: its --advertise-address, or the address of its --listen (default: the address of
    /// the host's default route).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Port of the etcd member for clients, as `moor up --etcd-client-port` (default 2379).
    #[arg(long)]
    etcd_client_port: Option<u16>,
    /// Port of the etcd member for the other members, as `moor up --etcd-peer-port` (default
    /// 2380).
    #[arg(long)]
    etcd_peer_port: Option<u16>,
    /// Directory of the cluster CA, as `moor up --pki-dir` (default: pki/ in the data directory);
    /// etcd's CA is made in its etcd/.
    #[arg(long)]
    pki_dir: Option<PathBuf>,
}

/// Where the server's files are.
struct Paths {
    /// The embedded store's directory.
    data: PathBuf,
    /// The member's directory, as `moor up --cluster-init` finds it.
    etcd: PathBuf,
    /// The member's directory while the migration builds it.
    staging: PathBuf,
    /// Where etcd's log is kept when the migration fails.
    failed_log: PathBuf,
    /// The cluster's PKI.
    pki: PathBuf,
}

/// What existed before the migration: a failure removes only what it made.
struct Before {
    pki: bool,
    etcd_pki: bool,
}

// === impl Paths ===

impl Paths {
    fn new(home: PathBuf, pki: Option<PathBuf>) -> Self {
        let data = home.join("data");
        Self {
            etcd: home.join("etcd"),
            staging: home.join("etcd.migrating"),
            failed_log: home.join("etcd.migrate-failed.log"),
            pki: pki.unwrap_or_else(|| data.join("pki")),
            data,
        }
    }
}

/// Moves the stopped server at `--data-dir` onto its own etcd member.
pub async fn run(args: MigrateArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let home = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => crate::home()?.join(".moor"),
    };
    let paths = Paths::new(home, args.pki_dir.clone());
    let source = open_embedded(&paths)?;
    let (items, revision) = source
        .list("")
        .await
        .context("reading the embedded store")?;
    let items = copy::by_revision(items);
    if paths.staging.exists() {
        // The store's lock is ours: no other migration is running.
        tracing::warn!(
            dir = %paths.staging.display(),
            "removing what a migration that did not finish left"
        );
        std::fs::remove_dir_all(&paths.staging)
            .with_context(|| format!("{}: cannot remove", paths.staging.display()))?;
    }
    let before = Before {
        pki: paths.pki.exists(),
        etcd_pki: paths.pki.join("etcd").exists(),
    };
    let member = Member {
        name: args.name.clone().unwrap_or_else(crate::hostname),
        dir: paths.staging.clone(),
        ip: args.advertise_address.unwrap_or_else(moor_rpc::host_ip),
        client_port: args.etcd_client_port.unwrap_or(2379),
        peer_port: args.etcd_peer_port.unwrap_or(2380),
    };
    let done = match into_member(&member, &paths.pki, &items, revision, &shutdown).await {
        Ok(copied) => commit(source, &paths).map(|aside| (copied, aside)),
        Err(err) => Err(err),
    };
    let (copied, aside) = match done {
        Ok(done) => done,
        Err(err) => return Err(undo(&paths, &before, err)),
    };
    println!(
        "migrated {} keys into etcd member {} ({}) in resourceVersion order, each checked",
        copied.keys,
        member.name,
        member.client_url()
    );
    println!(
        "resourceVersions changed: each is now above {revision}, the embedded store's last, so \
         clients that kept an old one list again"
    );
    println!("the embedded store is kept as {}", aside.display());
    println!("start this server on etcd with:");
    println!("  {}", next_command(&args));
    Ok(())
}

/// Opens the embedded store of a stopped server, or says why not.
fn open_embedded(paths: &Paths) -> anyhow::Result<SqliteStore> {
    if paths.etcd.exists() {
        bail!(
            "{} already holds an etcd member: this server runs on etcd (migrated already, or \
             started with --cluster-init). Start it with `moor up --cluster-init`",
            paths.etcd.display()
        );
    }
    let db = paths.data.join(moor_storage_sqlite::FILE_NAME);
    if !db.exists() {
        bail!(
            "{} holds no embedded store ({} is missing): there is nothing to migrate. Is \
             --data-dir the server's?",
            paths.data.display(),
            db.display()
        );
    }
    match SqliteStore::open(&paths.data) {
        Ok(store) => Ok(store),
        Err(moor_storage_sqlite::Error::Locked { .. }) => bail!(
            "{} is in use: a server (`moor up` or `moor apiserver`) is running on it. Stop it, \
             then migrate",
            paths.data.display()
        ),
        Err(err) => Err(err)
            .with_context(|| format!("opening the embedded store in {}", paths.data.display())),
    }
}

/// Starts `member` as a new cluster, copies `items` (read at `revision`)
/// into it, and stops it, whether the copy worked or not: its data is
/// complete on disk before it is kept or removed.
async fn into_member(
    member: &Member,
    pki_dir: &Path,
    items: &[moor_storage::KeyValue],
    revision: i64,
    shutdown: &CancellationToken,
) -> anyhow::Result<copy::Copied> {
    // As `moor up --cluster-init` makes them, which then finds them here.
    let etcd_pki = crate::etcd::pki(pki_dir, moor_pki::DEFAULT_LEAF_VALIDITY)?;
    let tls = crate::etcd::client_tls(&etcd_pki)?;
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let copied = tokio::select! {
        copied = async {
            let endpoints =
                crate::etcd::start(member.clone(), etcd_pki, Bootstrap::NewCluster, &tls, &mut tasks, &stop)
                    .await?;
            let etcd = moor_storage_etcd::EtcdStore::connect_with(
                &endpoints,
                Some(&tls),
                moor_storage_etcd::Start::First,
            )
            .await
            .context("connecting to the new etcd member")?;
            copy::copy(&etcd, items, revision).await
        } => copied,
        () = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    stop.cancel();
    let stopped = crate::up::wait_all(tasks, &stop)
        .await
        .context("stopping the etcd member");
    copied.and_then(|copied| stopped.map(|()| copied))
}

/// Makes the migration stick: the member's directory becomes the server's,
/// then the embedded store moves aside. Returns where it went.
fn commit(source: SqliteStore, paths: &Paths) -> anyhow::Result<PathBuf> {
    // Closed, but still locked until its files have moved.
    let _lock = source.close();
    std::fs::rename(&paths.staging, &paths.etcd).with_context(|| {
        format!(
            "moving {} to {}",
            paths.staging.display(),
            paths.etcd.display()
        )
    })?;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let db = paths.data.join(moor_storage_sqlite::FILE_NAME);
    let aside = with_suffix(&db, &format!(".migrated-{since}"));
    if let Err(err) = move_aside(&db, &aside) {
        // Back to the embedded store alone: etcd/ is the migration's.
        if let Err(why) = std::fs::remove_dir_all(&paths.etcd) {
            tracing::error!(dir = %paths.etcd.display(), %why, "cannot remove; remove it by hand");
        }
        return Err(err);
    }
    Ok(aside)
}

/// Renames the database `db` to `aside`, with its write-ahead log and
/// shared memory if closing left them (under the names SQLite pairs with
/// `aside`), the database last: until it moves, the store is whole where
/// it was. A failure moves back what had moved.
fn move_aside(db: &Path, aside: &Path) -> anyhow::Result<()> {
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    for suffix in ["-wal", "-shm", ""] {
        let (from, to) = (with_suffix(db, suffix), with_suffix(aside, suffix));
        if !suffix.is_empty() && !from.exists() {
            continue;
        }
        if let Err(err) = std::fs::rename(&from, &to) {
            for (from, to) in moved.iter().rev() {
                if let Err(why) = std::fs::rename(to, from) {
                    tracing::error!(
                        from = %to.display(),
                        to = %from.display(),
                        %why,
                        "cannot move back; move it by hand"
                    );
                }
            }
            return Err(err)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()));
        }
        moved.push((from, to));
    }
    Ok(())
}

/// Removes what the failed migration made (keeping etcd's log), and says
/// so with its error.
fn undo(paths: &Paths, before: &Before, err: anyhow::Error) -> anyhow::Error {
    let log = paths.staging.join("etcd.log");
    let kept = log.exists() && std::fs::rename(&log, &paths.failed_log).is_ok();
    let mut made = vec![paths.staging.clone()];
    if !before.pki {
        made.push(paths.pki.clone());
    } else if !before.etcd_pki {
        made.push(paths.pki.join("etcd"));
    }
    for dir in made.iter().filter(|dir| dir.exists()) {
        if let Err(why) = std::fs::remove_dir_all(dir) {
            tracing::error!(dir = %dir.display(), %why, "cannot remove; remove it by hand");
        }
    }
    let log = if kept {
        format!("; etcd's log is kept in {}", paths.failed_log.display())
    } else {
        String::new()
    };
    err.context(format!(
        "nothing was migrated: the embedded store in {} is as it was{log}",
        paths.data.display()
    ))
}

/// The `moor up` that starts the server on its member, with the flags
/// given here that it takes too.
fn next_command(args: &MigrateArgs) -> String {
    let mut command = vec!["moor up --cluster-init".to_string()];
    if let Some(dir) = &args.data_dir {
        command.push(format!("--data-dir {}", dir.display()));
    }
    if let Some(name) = &args.name {
        command.push(format!("--node-name {name}"));
    }
    if let Some(ip) = args.advertise_address {
        command.push(format!("--advertise-address {ip}"));
    }
    if let Some(port) = args.etcd_client_port {
        command.push(format!("--etcd-client-port {port}"));
    }
    if let Some(port) = args.etcd_peer_port {
        command.push(format!("--etcd-peer-port {port}"));
    }
    if let Some(dir) = &args.pki_dir {
        command.push(format!("--pki-dir {}", dir.display()));
    }
    command.join(" ")
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path);
    name.push(suffix);
    PathBuf::from(name)
}
