//! Stale flows. The kernel NATs a flow once, at its first packet, and
//! conntrack keeps that choice while the flow's entry lives, so after the
//! rules change some entries must go for the next packets to be translated
//! afresh. Deleted once the new rules are in place:
//!
//! - UDP flows NATed to an endpoint a frontend no longer sends to, as
//!   kube-proxy does: a client that keeps sending from one socket would stay
//!   pinned to it forever.
//! - TCP entries NATed to such an endpoint that never got an answer
//!   (SYN_SENT): a client that retries from the same source port matches
//!   the entry again, NAT included, and stays black-holed at an endpoint the
//!   rules no longer name for as long as it keeps trying (kubernetes#101607).
//!   Other TCP entries stay: established connections let a terminating pod
//!   finish what it serves, and an entry closed by FIN or reset is reopened
//!   by the kernel for a new connection.
//! - For a frontend that had no endpoints and now has some: its entries
//!   that were never translated (packets that reached the host itself, which
//!   refused them), and only those: a flow the new rules already NATed keeps
//!   its endpoint.
//!
//! A removed pod's flows, all of them, are also deleted by the node agent's
//! runtime with its address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddrV4};

use moor_hostnet::Filter;

use crate::table::{Frontend, Protocol, Table};

/// The TCP state of an entry whose endpoint never answered.
const UNANSWERED: &str = "SYN_SENT";

/// conntrack entries to delete: the flows of one frontend, those never
/// translated (`to: None`) or those NATed to one endpoint address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stale {
    /// The frontend: a cluster IP and port, or 0.0.0.0 and a node port.
    pub frontend: Frontend,
    /// The endpoint address the flows were NATed to.
    pub to: Option<IpAddr>,
}

/// Each frontend and the endpoint addresses it sends to.
pub fn routes(table: &Table) -> BTreeMap<Frontend, BTreeSet<IpAddr>> {
    table
        .routes
        .iter()
        .map(|(frontend, route)| {
            let ips = route.backends.iter().map(|b| b.ip()).collect();
            (*frontend, ips)
        })
        .collect()
}

/// The flows that the change from `before` to `after` leaves stale: those
/// NATed to an endpoint a frontend no longer sends to (or a frontend that
/// is gone), and the untranslated flows of a frontend that had no
/// endpoints and now has some (they were refused, not NATed).
pub fn stale(
    before: &BTreeMap<Frontend, BTreeSet<IpAddr>>,
    after: &BTreeMap<Frontend, BTreeSet<IpAddr>>,
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

/// The `conntrack -D` filter deleting `stale`, if any entry can be stale.
pub fn filter(stale: &Stale) -> Option<Filter> {
    let listen: SocketAddrV4 = stale.frontend.listen;
    let cluster_ip = (!listen.ip().is_unspecified()).then_some(*listen.ip());
    let mut filter = Filter {
        orig_dst: cluster_ip,
        orig_port_dst: Some(listen.port()),
        ..Default::default()
    };
    match (stale.frontend.protocol, stale.to) {
        // The proxy's endpoints are IPv4: nothing was NATed to another.
        (_, Some(IpAddr::V6(_))) => return None,
        (Protocol::Udp, Some(IpAddr::V4(ip))) => filter.dst_nat = Some(ip),
        (Protocol::Tcp, Some(IpAddr::V4(ip))) => {
            filter.dst_nat = Some(ip);
            filter.state = Some(UNANSWERED);
        }
        // Untranslated: the reply comes from where the flow was sent (a
        // node port's from the port itself, whatever the address).
        (Protocol::Udp, None) => match cluster_ip {
            Some(ip) => filter.reply_src = Some(ip),
            None => filter.reply_port_src = Some(listen.port()),
        },
        // The host refused those at once; the kernel reopens such entries.
        (Protocol::Tcp, None) => return None,
    }
    filter.protocol = Some(match stale.frontend.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    });
    Some(filter)
}

/// Deletes the entries of each of `stale`; the problems.
pub fn delete(stale: &[Stale]) -> Vec<String> {
    let filters: Vec<Filter> = stale.iter().filter_map(filter).collect();
    match moor_hostnet::delete_matching(&filters) {
        Ok(()) => Vec::new(),
        Err(err @ moor_hostnet::Error::MissingProgram { .. }) => vec![format!(
            "{err}; flows to removed endpoints stay until they idle out"
        )],
        Err(err) => vec![err.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend(protocol: Protocol, text: &str) -> Frontend {
        Frontend {
            protocol,
            listen: text.parse().unwrap_or_else(|_| panic!("{text}")),
        }
    }

    fn routes(entries: &[(Protocol, &str, &[&str])]) -> BTreeMap<Frontend, BTreeSet<IpAddr>> {
        entries
            .iter()
            .map(|(protocol, listen, ips)| {
                let ips = ips
                    .iter()
                    .map(|ip| ip.parse().unwrap_or_else(|_| panic!("{ip}")));
                (frontend(*protocol, listen), ips.collect())
            })
            .collect()
    }

    fn entry(protocol: Protocol, listen: &str, to: Option<&str>) -> Stale {
        Stale {
            frontend: frontend(protocol, listen),
            to: to.map(|ip| ip.parse().unwrap_or_else(|_| panic!("{ip}"))),
        }
    }

    fn args(stale: &Stale) -> Vec<String> {
        filter(stale).iter().map(|f| f.args().join(" ")).collect()
    }

    use Protocol::{Tcp, Udp};

    #[test]
    fn removed_endpoints_gone_frontends_and_first_endpoints_leave_flows_stale() {
        let before = routes(&[
            (Udp, "10.96.0.5:53", &["172.18.0.2", "172.18.0.3"]),
            (Tcp, "10.96.0.5:53", &["172.18.0.2", "172.18.0.3"]),
            (Udp, "10.96.0.6:9000", &["172.18.0.4"]),
            (Udp, "10.96.0.7:9000", &[]),
            (Udp, "0.0.0.0:30053", &["172.18.0.2", "172.18.0.3"]),
        ]);
        let after = routes(&[
            (Udp, "10.96.0.5:53", &["172.18.0.3", "172.18.0.9"]),
            (Tcp, "10.96.0.5:53", &["172.18.0.3", "172.18.0.9"]),
            (Udp, "10.96.0.7:9000", &["172.18.0.8"]),
            (Udp, "10.96.0.8:9000", &["172.18.0.8"]),
            (Udp, "0.0.0.0:30053", &["172.18.0.3", "172.18.0.9"]),
        ]);
        let mut found = stale(&before, &after);
        found.sort();
        let mut expected = vec![
            entry(Udp, "10.96.0.5:53", Some("172.18.0.2")),
            entry(Tcp, "10.96.0.5:53", Some("172.18.0.2")),
            entry(Udp, "10.96.0.6:9000", Some("172.18.0.4")),
            entry(Udp, "0.0.0.0:30053", Some("172.18.0.2")),
            entry(Udp, "10.96.0.7:9000", None),
            entry(Udp, "10.96.0.8:9000", None),
        ];
        expected.sort();
        assert_eq!(found, expected);
        assert!(stale(&after, &after).is_empty(), "no change, nothing stale");
    }

    #[test]
    fn udp_flows_of_a_removed_endpoint_go_whatever_their_state() {
        assert_eq!(
            args(&entry(Udp, "0.0.0.0:30053", Some("172.18.0.2"))),
            ["-p udp --orig-port-dst 30053 --dst-nat 172.18.0.2"]
        );
    }

    #[test]
    fn only_unanswered_tcp_entries_go() {
        assert_eq!(
            args(&entry(Tcp, "10.96.0.5:80", Some("172.18.0.2"))),
            [
                "-p tcp --state SYN_SENT --orig-dst 10.96.0.5 --orig-port-dst 80 --dst-nat 172.18.0.2"
            ]
        );
    }

    #[test]
    fn first_endpoints_clear_only_untranslated_flows() {
        // A flow the new rules NATed already (the client was quicker than
        // this cleanup) keeps its endpoint.
        assert_eq!(
            args(&entry(Udp, "10.96.0.5:53", None)),
            ["-p udp --orig-dst 10.96.0.5 --orig-port-dst 53 --reply-src 10.96.0.5"]
        );
        assert_eq!(
            args(&entry(Udp, "0.0.0.0:30053", None)),
            ["-p udp --orig-port-dst 30053 --reply-port-src 30053"]
        );
        assert!(args(&entry(Tcp, "10.96.0.5:80", None)).is_empty());
    }
}
