//! `moor certs check`: the certificates in a PKI directory (a server's
//! `<data>/pki`, or a joined node's), with whom they name, when they
//! expire, and whether they are due for renewal; `moor certs rotate`:
//! every certificate of a server's PKI directory reissued now.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Subcommand};

/// `moor certs` subcommands.
#[derive(Subcommand)]
pub enum CertsCommand {
    /// List the certificates of a PKI directory with their expiry.
    Check(CheckArgs),
    /// Reissue every certificate of a server's PKI directory now (not the CA), naming the same.
    Rotate(RotateArgs),
}

/// Flags of `moor certs rotate`.
#[derive(Args)]
pub struct RotateArgs {
    /// The PKI directory holding the CA's key (default ~/.moor/data/pki).
    #[arg(long)]
    pki_dir: Option<PathBuf>,
    /// Seconds the new certificates stay valid.
    #[arg(long, default_value_t = 365 * 24 * 60 * 60, value_parser = clap::value_parser!(u64).range(5..))]
    certificate_lifetime_seconds: u64,
}

/// Flags of `moor certs check`.
#[derive(Args)]
pub struct CheckArgs {
    /// The PKI directory (default ~/.moor/data/pki, where `moor up` keeps it; a joined
    /// node's is DATA_DIR/pki).
    #[arg(long)]
    pki_dir: Option<PathBuf>,
}

/// Runs a `certs` subcommand.
pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Check(args) => check(args),
        CertsCommand::Rotate(args) => rotate(args),
    }
}

fn default_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::home()?.join(".moor").join("data").join("pki"))
}

fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let dir = match args.pki_dir {
        Some(dir) => dir,
        None => default_dir()?,
    };
    anyhow::ensure!(
        dir.join(moor_pki::CA_KEY_FILE).exists(),
        "{} holds no CA key: rotate on the server that keeps the cluster's CA",
        dir.display()
    );
    let pki = moor_pki::PkiDir::open_or_create(
        &dir,
        std::time::Duration::from_secs(args.certificate_lifetime_seconds),
    )?;
    for name in pki.rotate()? {
        println!("reissued {name}");
    }
    println!(
        "a running apiserver serves its new certificate from its next check (within an hour); \
         components and nodes take theirs when they start"
    );
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let dir = match args.pki_dir {
        Some(dir) => dir,
        None => default_dir()?,
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".crt").map(str::to_string)
        })
        .collect();
    names.sort();
    anyhow::ensure!(!names.is_empty(), "{} holds no certificates", dir.display());
    let ca_der = std::fs::read_to_string(dir.join(moor_pki::CA_CERT_FILE))
        .ok()
        .and_then(|pem| moor_pki::certs_from_pem(&pem).ok())
        .and_then(|certs| certs.into_iter().next());
    let now = SystemTime::now();
    println!(
        "{:<20} {:<38} {:<22} {:<10} STATUS",
        "NAME", "SUBJECT", "EXPIRES (UTC)", "LEFT"
    );
    let mut bad = 0;
    for name in names {
        let path = dir.join(format!("{name}.crt"));
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let info = moor_pki::CertInfo::parse(&pem).with_context(|| path.display().to_string())?;
        let subject = match (&info.common_name, info.organizations.is_empty()) {
            (Some(cn), true) => cn.clone(),
            (Some(cn), false) => format!("{cn} ({})", info.organizations.join(",")),
            (None, _) => "-".to_string(),
        };
        let from_this_ca = info.is_ca
            || ca_der
                .as_ref()
                .is_some_and(|ca| moor_pki::issued_by(&pem, ca.as_ref()));
        let status = if !info.is_valid_at(now) {
            bad += 1;
            "EXPIRED"
        } else if !from_this_ca {
            bad += 1;
            "not from this CA"
        } else if info.needs_renewal(now) {
            "renewal due"
        } else {
            "ok"
        };
        println!(
            "{name:<20} {subject:<38} {:<22} {:<10} {status}",
            rfc3339(info.not_after),
            crate::token::short(info.remaining(now))
        );
    }
    anyhow::ensure!(bad == 0, "{bad} certificate(s) expired or not from this CA");
    Ok(())
}

/// `2027-12-07T11:04:10Z`.
fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 as (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_utc() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_641_450);
        assert_eq!(rfc3339(at), "2026-12-07T11:04:10Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
