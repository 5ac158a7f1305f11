//! `moor leave`: a stopped server leaves the control plane. Its etcd
//! member is removed through the others (so the cluster's quorum counts
//! the servers that remain) and its etcd data is moved aside, so that the
//! machine can join again later with a new token.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

/// Flags of `moor leave`.
#[derive(Args)]
pub struct LeaveArgs {
    /// This server's name, its etcd member's (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// The server's data directory (default ~/.moor).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Removes this server's member and moves its data aside.
pub async fn run(args: LeaveArgs) -> anyhow::Result<()> {
    let home = match args.data_dir {
        Some(dir) => dir,
        None => crate::home()?.join(".moor"),
    };
    let name = args.name.unwrap_or_else(crate::hostname);
    let dir = home.join("etcd");
    if !dir.join("data").join("member").exists() {
        bail!(
            "{} holds no etcd member: this is not a server of a cluster with its own etcd \
             (moor up --cluster-init, moor join --control-plane), or it has left already",
            dir.display()
        );
    }
    let pki_dir = home.join("data").join("pki");
    let etcd_pki = crate::etcd::pki(&pki_dir, moor_pki::DEFAULT_LEAF_VALIDITY)?;
    let tls = crate::etcd::client_tls(&etcd_pki)?;
    let known = crate::etcd::known(&dir.join(crate::etcd::KNOWN_FILE));
    anyhow::ensure!(
        !known.is_empty(),
        "{} lists no etcd members to leave through",
        dir.join(crate::etcd::KNOWN_FILE).display()
    );
    let members = moor_storage_etcd::Members::connect(&known, Some(&tls)).await?;
    let list = members
        .list()
        .await
        .with_context(|| format!("listing etcd's members through {}", known.join(",")))?;
    let Some(me) = list.iter().find(|m| m.name == name) else {
        bail!(
            "etcd has no member named {name:?} (it has {}): pass this server's --name",
            list.iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if list.len() == 1 {
        bail!("{name} is the cluster's only etcd member: there is no cluster to leave");
    }
    members
        .remove(me.id)
        .await
        .with_context(|| format!("removing etcd member {name}"))?;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let aside = home.join(format!("etcd.left-{since}"));
    std::fs::rename(&dir, &aside).with_context(|| {
        format!(
            "{name} left etcd, but its data could not be moved from {} to {}",
            dir.display(),
            aside.display()
        )
    })?;
    println!(
        "{name} left the control plane: {} etcd members remain; its old etcd data is in {}",
        list.len() - 1,
        aside.display()
    );
    Ok(())
}
