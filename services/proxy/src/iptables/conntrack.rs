//! Stale UDP flows. The kernel NATs a flow once, at its first packet, and
//! conntrack keeps that choice while packets keep coming, so after the rules
//! change a UDP client that keeps sending from one socket would stay pinned
//! to a removed endpoint (or, when its service had none, to the rejection)
//! forever. As kube-proxy does, such entries are deleted with `conntrack -D`
//! once the new rules are in place; the next packet is NATed afresh. TCP
//! needs none of this: a removed pod's flows, TCP included, are deleted by
//! the node agent's runtime with its address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddrV4};

use crate::table::{Protocol, Table};

/// conntrack entries to delete: the flows of one UDP frontend, all of them
/// (`to: None`) or those NATed to one endpoint address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stale {
    /// The frontend: a cluster IP and port, or 0.0.0.0 and a node port.
    pub frontend: SocketAddrV4,
    /// The endpoint address the flows were NATed to.
    pub to: Option<IpAddr>,
}

/// Each UDP frontend and the endpoint addresses it sends to.
pub fn udp_routes(table: &Table) -> BTreeMap<SocketAddrV4, BTreeSet<IpAddr>> {
    table
        .routes
        .iter()
        .filter(|(frontend, _)| frontend.protocol == Protocol::Udp)
        .map(|(frontend, route)| {
            let ips = route.backends.iter().map(|b| b.ip()).collect();
            (frontend.listen, ips)
        })
        .collect()
}

/// The flows that the change from `before` to `after` leaves stale: those
/// NATed to an endpoint a frontend no longer sends to (or a frontend that
/// is gone), and every flow of a frontend that had no endpoints and now has
/// some (its flows were rejected, not NATed).
pub fn stale(
    before: &BTreeMap<SocketAddrV4, BTreeSet<IpAddr>>,
    after: &BTreeMap<SocketAddrV4, BTreeSet<IpAddr>>,
) -> Vec<Stale> {
    let mut stale = Vec::new();
    for (frontend, old) in before {
        let new = after.get(frontend);
        for ip in old {
            if !new.is_some_and(|new| new.contains(ip)) {
                stale.push(Stale {
                    frontend: *frontend,
                    to: Some(*ip),
                });
            }
        }
    }
    for (frontend, new) in after {
        let had_none = before.get(frontend).is_none_or(BTreeSet::is_empty);
        if had_none && !new.is_empty() {
            stale.push(Stale {
                frontend: *frontend,
                to: None,
            });
        }
    }
    stale
}

/// The `conntrack -D` filter deleting `stale`.
pub fn delete_args(stale: &Stale) -> Vec<String> {
    let mut args = vec!["-p".to_string(), "udp".to_string()];
    if !stale.frontend.ip().is_unspecified() {
        args.extend(["--orig-dst".to_string(), stale.frontend.ip().to_string()]);
    }
    args.extend([
        "--orig-port-dst".to_string(),
        stale.frontend.port().to_string(),
    ]);
    if let Some(ip) = stale.to {
        args.extend(["--dst-nat".to_string(), ip.to_string()]);
    }
    args
}

/// Deletes the entries of each of `stale`; the problems.
pub fn delete(stale: &[Stale]) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in stale {
        match moor_hostnet::delete_flows(&delete_args(entry)) {
            Ok(_) => {}
            Err(err @ moor_hostnet::Error::MissingProgram { .. }) => {
                // Not installed: say so once, not per entry.
                problems.push(format!(
                    "{err}; UDP flows to removed endpoints stay until they idle out"
                ));
                break;
            }
            Err(err) => problems.push(err.to_string()),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(entries: &[(&str, &[&str])]) -> BTreeMap<SocketAddrV4, BTreeSet<IpAddr>> {
        entries
            .iter()
            .map(|(frontend, ips)| {
                let ips = ips
                    .iter()
                    .map(|ip| ip.parse().unwrap_or_else(|_| panic!("{ip}")));
                (
                    frontend.parse().unwrap_or_else(|_| panic!("{frontend}")),
                    ips.collect(),
                )
            })
            .collect()
    }

    fn entry(frontend: &str, to: Option<&str>) -> Stale {
        Stale {
            frontend: frontend.parse().unwrap_or_else(|_| panic!("{frontend}")),
            to: to.map(|ip| ip.parse().unwrap_or_else(|_| panic!("{ip}"))),
        }
    }

    #[test]
    fn removed_endpoints_gone_frontends_and_first_endpoints_leave_flows_stale() {
        let before = routes(&[
            ("10.96.0.5:53", &["172.18.0.2", "172.18.0.3"]),
            ("10.96.0.6:9000", &["172.18.0.4"]),
            ("10.96.0.7:9000", &[]),
            ("0.0.0.0:30053", &["172.18.0.2", "172.18.0.3"]),
        ]);
        let after = routes(&[
            ("10.96.0.5:53", &["172.18.0.3", "172.18.0.9"]),
            ("10.96.0.7:9000", &["172.18.0.8"]),
            ("10.96.0.8:9000", &["172.18.0.8"]),
            ("0.0.0.0:30053", &["172.18.0.3", "172.18.0.9"]),
        ]);
        let mut found = stale(&before, &after);
        found.sort();
        let mut expected = vec![
            entry("10.96.0.5:53", Some("172.18.0.2")),
            entry("10.96.0.6:9000", Some("172.18.0.4")),
            entry("0.0.0.0:30053", Some("172.18.0.2")),
            entry("10.96.0.7:9000", None),
            entry("10.96.0.8:9000", None),
        ];
        expected.sort();
        assert_eq!(found, expected);
        assert!(stale(&after, &after).is_empty(), "no change, nothing stale");
    }

    #[test]
    fn node_ports_match_any_destination_address() {
        assert_eq!(
            delete_args(&entry("0.0.0.0:30053", Some("172.18.0.2"))).join(" "),
            "-p udp --orig-port-dst 30053 --dst-nat 172.18.0.2"
        );
        assert_eq!(
            delete_args(&entry("10.96.0.5:53", None)).join(" "),
            "-p udp --orig-dst 10.96.0.5 --orig-port-dst 53"
        );
    }
}
