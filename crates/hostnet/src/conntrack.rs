//! The kernel's connection tracking entries, deleted with the `conntrack`
//! program (Debian's package of that name), as kube-proxy and Docker do: an
//! entry keeps a flow's NAT choice while its packets keep coming, so flows
//! to an address that went away must be forgotten for the next packets to
//! be translated afresh.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::Error;

/// Runs `conntrack -D` with `filter` (e.g. `["-p", "udp", "--dst-nat",
/// "10.0.0.2"]`); true when entries went, false when none matched.
pub fn delete_flows(filter: &[String]) -> Result<bool, Error> {
    let action = || format!("conntrack -D {}", filter.join(" "));
    let out = Command::new("conntrack")
        .arg("-D")
        .args(filter)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::MissingProgram {
                program: "conntrack",
                package: "conntrack",
            },
            _ => Error::Io {
                action: format!("running {}", action()),
                source,
            },
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(true)
    } else if stderr.contains(" 0 flow entries") {
        // "0 flow entries have been deleted" exits 1: nothing was there.
        Ok(false)
    } else {
        Err(Error::Io {
            action: action(),
            source: std::io::Error::other(stderr.trim().to_owned()),
        })
    }
}

/// Deletes every flow from, to or translated to or from `ip`: what a pod
/// address leaves behind, so that an address used again, or a service's
/// flows that went to it, start afresh (Docker does this when an endpoint
/// leaves its network).
pub fn delete_flows_of(ip: Ipv4Addr) -> Result<(), Error> {
    // Each `conntrack -D` is a process that dumps the whole table; a pod
    // that never talked (most of those a rollout removes) has nothing to
    // delete, and one read of the table tells.
    if listed_flows_of(ip, PROC_TABLE) == Some(false) {
        return Ok(());
    }
    let ip = ip.to_string();
    for direction in ["--orig-src", "--orig-dst", "--dst-nat"] {
        delete_flows(&[direction.to_owned(), ip.clone()])?;
    }
    Ok(())
}

/// The kernel's table as text, one flow per line (for the host's network
/// namespace, which is the agent's).
const PROC_TABLE: &str = "/proc/net/nf_conntrack";

/// Whether the table listed in file `table` holds a flow with `ip` as a
/// source or destination, in either direction (which covers every flow
/// [`delete_flows_of`] deletes); `None` when the file cannot be read (a
/// kernel without the listing, or no permission): then only `conntrack`
/// can tell.
fn listed_flows_of(ip: Ipv4Addr, table: &str) -> Option<bool> {
    use std::io::BufRead;
    let file = std::fs::File::open(table).ok()?;
    // A flow line reads `... src=10.0.0.2 dst=10.0.0.3 sport=...`: the
    // trailing space keeps 10.0.0.2 from matching 10.0.0.23.
    let (src, dst) = (format!("src={ip} "), format!("dst={ip} "));
    for line in std::io::BufReader::new(file).lines() {
        let line = line.ok()?;
        if line.contains(&src) || line.contains(&dst) {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ipv4     2 tcp      6 117 TIME_WAIT src=10.0.0.1 dst=10.0.0.23 sport=4000 dport=80 src=10.0.0.23 dst=10.0.0.1 sport=80 dport=4000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 20 src=10.0.0.5 dst=10.96.0.10 sport=5353 dport=53 src=10.0.0.7 dst=10.0.0.5 sport=53 dport=5353 mark=0 zone=0 use=2
";

    fn listed(ip: &str) -> Option<bool> {
        // One file per address: the tests run in parallel.
        let table =
            std::env::temp_dir().join(format!("moor-conntrack-{}-{ip}", std::process::id()));
        std::fs::write(&table, TABLE).unwrap();
        let found = listed_flows_of(ip.parse().unwrap(), table.to_str().unwrap());
        std::fs::remove_file(&table).unwrap();
        found
    }

    #[test]
    fn finds_flows_from_to_and_translated_to_an_address() {
        assert_eq!(listed("10.0.0.1"), Some(true), "original source");
        assert_eq!(listed("10.0.0.23"), Some(true), "original destination");
        // Reached through a service address: only the reply names it.
        assert_eq!(listed("10.0.0.7"), Some(true), "translated destination");
    }

    #[test]
    fn an_address_that_only_prefixes_another_has_no_flows() {
        assert_eq!(listed("10.0.0.2"), Some(false));
        assert_eq!(listed("10.0.0.10"), Some(false));
    }

    #[test]
    fn an_unreadable_table_tells_nothing() {
        let found = listed_flows_of("10.0.0.1".parse().unwrap(), "/nonexistent/nf_conntrack");
        assert_eq!(found, None);
    }
}
