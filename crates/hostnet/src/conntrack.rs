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
    let ip = ip.to_string();
    for direction in ["--orig-src", "--orig-dst", "--dst-nat"] {
        delete_flows(&[direction.to_owned(), ip.clone()])?;
    }
    Ok(())
}
