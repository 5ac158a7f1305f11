//! The kernel's connection tracking entries, deleted with the `conntrack`
//! program (Debian's package of that name), as kube-proxy and Docker do: an
//! entry keeps a flow's NAT choice while its packets keep coming, so flows
//! to an address that went away must be forgotten for the next packets to
//! be translated afresh.
//!
//! Each `conntrack -D` is a process that dumps the whole table, so a
//! [`Filter`] is first matched against one read of the kernel's listing
//! (`/proc/net/nf_conntrack`): the program runs only for filters that match
//! an entry there (or when the listing cannot be read).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::Error;

/// The kernel's table as text, one flow per line (for the host's network
/// namespace, which is the caller's).
const PROC_TABLE: &str = "/proc/net/nf_conntrack";

/// Which entries to delete: every field set must hold (`conntrack -D`'s
/// filters of the same names).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Filter {
    /// `tcp` or `udp`.
    pub protocol: Option<&'static str>,
    /// A TCP state as conntrack names it (`SYN_SENT`, `CLOSE`, ...).
    pub state: Option<&'static str>,
    /// The original source address.
    pub orig_src: Option<Ipv4Addr>,
    /// The original destination address.
    pub orig_dst: Option<Ipv4Addr>,
    /// The original destination port.
    pub orig_port_dst: Option<u16>,
    /// Translated to this destination address (DNAT).
    pub dst_nat: Option<Ipv4Addr>,
    /// The reply's source address (for an entry without DNAT: the original
    /// destination).
    pub reply_src: Option<Ipv4Addr>,
    /// The reply's source port.
    pub reply_port_src: Option<u16>,
}

/// One entry of the kernel's listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Flow {
    protocol: String,
    /// TCP only.
    state: Option<String>,
    orig_src: Option<Ipv4Addr>,
    orig_dst: Option<Ipv4Addr>,
    orig_port_dst: Option<u16>,
    reply_src: Option<Ipv4Addr>,
    reply_port_src: Option<u16>,
}

// === impl Filter ===

impl Filter {
    /// The arguments after `conntrack -D`.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                args.extend([flag.to_owned(), value]);
            }
        };
        push("-p", self.protocol.map(str::to_owned));
        push("--state", self.state.map(str::to_owned));
        push("--orig-src", self.orig_src.map(|ip| ip.to_string()));
        push("--orig-dst", self.orig_dst.map(|ip| ip.to_string()));
        push("--orig-port-dst", self.orig_port_dst.map(|p| p.to_string()));
        push("--dst-nat", self.dst_nat.map(|ip| ip.to_string()));
        push("--reply-src", self.reply_src.map(|ip| ip.to_string()));
        push(
            "--reply-port-src",
            self.reply_port_src.map(|p| p.to_string()),
        );
        args
    }

    fn matches(&self, flow: &Flow) -> bool {
        let is =
            |want: Option<Ipv4Addr>, have: Option<Ipv4Addr>| want.is_none_or(|w| have == Some(w));
        let port = |want: Option<u16>, have: Option<u16>| want.is_none_or(|w| have == Some(w));
        // DNAT: the reply comes from elsewhere than where the flow was sent.
        let translated = flow.reply_src.is_some() && flow.reply_src != flow.orig_dst;
        self.protocol.is_none_or(|p| flow.protocol == p)
            && self.state.is_none_or(|s| flow.state.as_deref() == Some(s))
            && is(self.orig_src, flow.orig_src)
            && is(self.orig_dst, flow.orig_dst)
            && port(self.orig_port_dst, flow.orig_port_dst)
            && (self.dst_nat.is_none() || translated && is(self.dst_nat, flow.reply_src))
            && is(self.reply_src, flow.reply_src)
            && port(self.reply_port_src, flow.reply_port_src)
    }
}

// === impl Flow ===

impl Flow {
    /// A line of the listing: `ipv4 2 tcp 6 117 TIME_WAIT src=.. dst=..
    /// sport=.. dport=.. src=.. dst=.. sport=.. dport=.. [ASSURED] ...`;
    /// the first `src=`..`dport=` group is the original direction, the
    /// second the reply.
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let protocol = words.nth(2)?.to_owned();
        // Protocol number, then seconds left.
        let rest: Vec<&str> = words.skip(2).collect();
        let state = rest
            .first()
            .filter(|w| !w.contains('='))
            .map(|w| (*w).to_owned());
        let mut flow = Flow {
            protocol,
            state,
            ..Default::default()
        };
        let (mut srcs, mut dsts, mut sports, mut dports) = (0, 0, 0, 0);
        for word in rest {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "src" => {
                    srcs += 1;
                    match srcs {
                        1 => flow.orig_src = value.parse().ok(),
                        2 => flow.reply_src = value.parse().ok(),
                        _ => {}
                    }
                }
                "dst" => {
                    dsts += 1;
                    if dsts == 1 {
                        flow.orig_dst = value.parse().ok();
                    }
                }
                "sport" => {
                    sports += 1;
                    if sports == 2 {
                        flow.reply_port_src = value.parse().ok();
                    }
                }
                "dport" => {
                    dports += 1;
                    if dports == 1 {
                        flow.orig_port_dst = value.parse().ok();
                    }
                }
                _ => {}
            }
        }
        Some(flow)
    }
}

/// Runs `conntrack -D` with `filter` (e.g. `["-p", "udp", "--dst-nat",
/// "10.0.0.2"]`); true when entries went, false when none matched.
fn delete_flows(filter: &[String]) -> Result<bool, Error> {
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

/// Deletes the entries of each of `filters`, running `conntrack` only for
/// those that match an entry of one read of the kernel's listing; the
/// first error ends the run (a missing program fails every filter alike).
pub fn delete_matching(filters: &[Filter]) -> Result<(), Error> {
    let listed = listed_flows(PROC_TABLE);
    for filter in filters {
        let present = listed
            .as_ref()
            .is_none_or(|flows| flows.iter().any(|flow| filter.matches(flow)));
        if present {
            delete_flows(&filter.args())?;
        }
    }
    Ok(())
}

/// Deletes every flow from, to or translated to `ip`: what a pod address
/// leaves behind, so that an address used again, or a service's flows that
/// went to it, start afresh (Docker does this when an endpoint leaves its
/// network). A pod that never talked (most of those a rollout removes) has
/// nothing to delete, and the listing tells without running conntrack.
pub fn delete_flows_of(ip: Ipv4Addr) -> Result<(), Error> {
    delete_matching(&[
        Filter {
            orig_src: Some(ip),
            ..Filter::default()
        },
        Filter {
            orig_dst: Some(ip),
            ..Filter::default()
        },
        Filter {
            dst_nat: Some(ip),
            ..Filter::default()
        },
    ])
}

/// The flows listed in file `table`; `None` when it cannot be read (a
/// kernel without the listing, or no permission): then only `conntrack`
/// can tell.
fn listed_flows(table: &str) -> Option<Vec<Flow>> {
    let text = std::fs::read_to_string(table).ok()?;
    Some(text.lines().filter_map(Flow::parse).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ipv4     2 tcp      6 117 TIME_WAIT src=10.0.0.1 dst=10.0.0.23 sport=4000 dport=80 src=10.0.0.23 dst=10.0.0.1 sport=80 dport=4000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 20 src=10.0.0.5 dst=10.96.0.10 sport=5353 dport=53 src=10.0.0.7 dst=10.0.0.5 sport=53 dport=5353 mark=0 zone=0 use=2
ipv4     2 tcp      6 55 SYN_SENT src=10.96.0.4 dst=10.96.0.4 sport=36404 dport=80 [UNREPLIED] src=10.0.0.8 dst=10.96.0.4 sport=8080 dport=36404 mark=0 zone=0 use=2
";

    /// Whether a flow of `TABLE` is one [`delete_flows_of`] deletes.
    fn listed(ip: &str) -> Option<bool> {
        // One file per address: the tests run in parallel.
        let table =
            std::env::temp_dir().join(format!("moor-conntrack-{}-{ip}", std::process::id()));
        std::fs::write(&table, TABLE).unwrap();
        let flows = listed_flows(table.to_str().unwrap());
        std::fs::remove_file(&table).unwrap();
        let ip = ip.parse().unwrap();
        let filters = [
            Filter {
                orig_src: Some(ip),
                ..Filter::default()
            },
            Filter {
                orig_dst: Some(ip),
                ..Filter::default()
            },
            Filter {
                dst_nat: Some(ip),
                ..Filter::default()
            },
        ];
        flows.map(|flows| {
            flows
                .iter()
                .any(|flow| filters.iter().any(|f| f.matches(flow)))
        })
    }

    fn flows() -> Vec<Flow> {
        TABLE.lines().filter_map(Flow::parse).collect()
    }

    fn ip(text: &str) -> Option<Ipv4Addr> {
        Some(text.parse().unwrap())
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
        assert_eq!(listed_flows("/nonexistent/nf_conntrack"), None);
    }

    #[test]
    fn parses_both_directions_and_the_tcp_state() {
        let flows = flows();
        assert_eq!(
            flows[2],
            Flow {
                protocol: "tcp".into(),
                state: Some("SYN_SENT".into()),
                orig_src: ip("10.96.0.4"),
                orig_dst: ip("10.96.0.4"),
                orig_port_dst: Some(80),
                reply_src: ip("10.0.0.8"),
                reply_port_src: Some(8080),
            }
        );
        assert_eq!(flows[1].state, None, "UDP has no state");
        assert_eq!(flows[1].reply_src, ip("10.0.0.7"));
    }

    #[test]
    fn a_filter_matches_what_conntrack_would_delete() {
        let flows = flows();
        let stale_syn = Filter {
            protocol: Some("tcp"),
            state: Some("SYN_SENT"),
            orig_dst: ip("10.96.0.4"),
            orig_port_dst: Some(80),
            dst_nat: ip("10.0.0.8"),
            ..Default::default()
        };
        assert!(stale_syn.matches(&flows[2]));
        assert_eq!(
            stale_syn.args().join(" "),
            "-p tcp --state SYN_SENT --orig-dst 10.96.0.4 --orig-port-dst 80 --dst-nat 10.0.0.8"
        );
        let closed = Filter {
            state: Some("CLOSE"),
            ..stale_syn.clone()
        };
        assert!(!flows.iter().any(|f| closed.matches(f)), "other state");
        // The TIME_WAIT flow was not translated: its reply comes from where
        // it was sent, so it matches a reply source but never a DNAT.
        let untranslated = Filter {
            reply_src: ip("10.0.0.23"),
            ..Default::default()
        };
        assert!(untranslated.matches(&flows[0]));
        let nat = Filter {
            dst_nat: ip("10.0.0.23"),
            ..Default::default()
        };
        assert!(!nat.matches(&flows[0]));
        let udp = Filter {
            protocol: Some("udp"),
            reply_port_src: Some(53),
            ..Default::default()
        };
        assert!(udp.matches(&flows[1]) && !udp.matches(&flows[0]));
    }
}
