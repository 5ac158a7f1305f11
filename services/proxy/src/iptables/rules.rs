//! The iptables-restore input for a [`Table`], kube-proxy's iptables layout
//! in moor's own chains: pure text, no I/O, so it is tested as golden text.
//!
//! nat: `<P>-SERVICES` (jumped from PREROUTING and OUTPUT) sends each cluster
//! IP frontend to a `<P>-SVC-<hash>` chain and ends with a jump to
//! `<P>-NODEPORTS` for local destinations; a service chain spreads new flows
//! over `<P>-SEP-<hash>` chains (`statistic --mode random`, ClientIP affinity
//! with `recent`), each of which DNATs to one endpoint. Node-port traffic and
//! hairpin traffic (an endpoint reaching its own service) are marked and
//! masqueraded by `<P>-POSTROUTING`. filter: `<P>-SERVICES` rejects the
//! frontends without ready endpoints, `<P>-FORWARD` lets marked and
//! established service flows through a DROP policy, and `<P>-FIREWALL` drops
//! martians to 127/8, which `route_localnet` (needed for node ports on
//! 127.0.0.1) would otherwise let in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::SocketAddr;

use crate::table::{Frontend, Protocol, Route, Table};

/// The packet mark bit of flows to masquerade.
pub const MASQ_MARK: &str = "0x4000";

/// An iptables table moor writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The filter table.
    Filter,
    /// The nat table.
    Nat,
}

impl Kind {
    /// The table's name for `-t`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Nat => "nat",
        }
    }
}

/// A chain of moor's, in its table.
pub type Chain = (Kind, String);

/// The names of one proxy's chains: all start with its prefix.
#[derive(Clone, Debug)]
pub struct Chains {
    prefix: String,
}

/// The input for iptables-restore and the chains it leaves in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// iptables-restore input, for `--noflush`.
    pub text: String,
    /// moor's chains once it is applied.
    pub chains: BTreeSet<Chain>,
}

// === impl Chains ===

impl Chains {
    /// The longest prefix: `<P>-SVC-` and a 16-digit hash fill the 28
    /// characters iptables allows in a chain name.
    pub const MAX_PREFIX: usize = 7;

    /// Chains named `<prefix>-...`; `None` unless the prefix is 1 to 7
    /// upper-case letters and digits.
    pub fn new(prefix: &str) -> Option<Self> {
        let valid = (1..=Self::MAX_PREFIX).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        valid.then(|| Self {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `chain` is one of this prefix's.
    pub fn owns(&self, chain: &str) -> bool {
        chain
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }

    fn named(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    fn services(&self) -> String {
        self.named("SERVICES")
    }

    fn node_ports(&self) -> String {
        self.named("NODEPORTS")
    }

    fn postrouting(&self) -> String {
        self.named("POSTROUTING")
    }

    fn mark_masq(&self) -> String {
        self.named("MARK-MASQ")
    }

    fn forward(&self) -> String {
        self.named("FORWARD")
    }

    fn firewall(&self) -> String {
        self.named("FIREWALL")
    }

    fn service(&self, route: &Route, protocol: Protocol) -> String {
        let key = format!("{}\0{}\0{protocol}", self.prefix, route.service);
        self.named(&format!("SVC-{:016X}", fnv1a(&key)))
    }

    fn endpoint(&self, route: &Route, protocol: Protocol, endpoint: SocketAddr) -> String {
        let key = format!("{}\0{}\0{protocol}\0{endpoint}", self.prefix, route.service);
        self.named(&format!("SEP-{:016X}", fnv1a(&key)))
    }

    /// The jumps from built-in chains into moor's: (table, built-in, target),
    /// each inserted first in its built-in chain.
    pub fn jumps(&self) -> Vec<(Kind, &'static str, String)> {
        vec![
            (Kind::Nat, "PREROUTING", self.services()),
            (Kind::Nat, "OUTPUT", self.services()),
            (Kind::Nat, "POSTROUTING", self.postrouting()),
            (Kind::Filter, "INPUT", self.services()),
            (Kind::Filter, "INPUT", self.firewall()),
            (Kind::Filter, "OUTPUT", self.services()),
            (Kind::Filter, "FORWARD", self.forward()),
        ]
    }

    /// The rules for `table`; chains of `present` no longer wanted are
    /// flushed and deleted in the same transaction.
    pub fn render(&self, table: &Table, present: &BTreeSet<Chain>) -> Ruleset {
        let mut filter = Section::new(Kind::Filter);
        let mut nat = Section::new(Kind::Nat);
        self.fixed(&mut filter, &mut nat);
        let (mut services, mut node_ports) = (Vec::new(), Vec::new());
        // Service chains are shared by a service port's cluster IP and node
        // port (as kube-proxy's), so affinity holds across both.
        let mut service_chains: BTreeMap<String, (&Route, Protocol)> = BTreeMap::new();
        for (frontend, route) in &table.routes {
            let node_port = frontend.listen.ip().is_unspecified();
            if route.backends.is_empty() {
                filter.rule(&self.services(), &reject(frontend, route, node_port));
                continue;
            }
            let chain = self.service(route, frontend.protocol);
            if node_port {
                // <P>-SERVICES only jumps here for local destinations.
                let proto = proto(frontend.protocol);
                let matches = format!("-p {proto} -m {proto} --dport {}", frontend.listen.port());
                let comment = comment(&format!("{} node port", route.service));
                node_ports.push(format!("{matches} {comment} -j {}", self.mark_masq()));
                node_ports.push(format!("{matches} {comment} -j {chain}"));
            } else {
                let matches = frontend_match(frontend, node_port);
                let comment = comment(&format!("{} cluster IP", route.service));
                services.push(format!("{matches} {comment} -j {chain}"));
            }
            service_chains.insert(chain, (route, frontend.protocol));
        }
        for rule in services {
            nat.rule(&self.services(), &rule);
        }
        nat.rule(
            &self.services(),
            &format!(
                "-m addrtype --dst-type LOCAL {} -j {}",
                comment("node ports on local addresses go last"),
                self.node_ports()
            ),
        );
        for rule in node_ports {
            nat.rule(&self.node_ports(), &rule);
        }
        for (chain, (route, protocol)) in service_chains {
            self.spread(&mut nat, &chain, route, protocol);
        }
        let mut chains: BTreeSet<Chain> = BTreeSet::new();
        chains.extend(filter.chains.iter().map(|c| (Kind::Filter, c.clone())));
        chains.extend(nat.chains.iter().map(|c| (Kind::Nat, c.clone())));
        let stale: Vec<&Chain> = present
            .iter()
            .filter(|c| self.owns(&c.1) && !chains.contains(*c))
            .collect();
        let mut text = String::new();
        for section in [filter, nat] {
            section.write(&mut text, &stale);
        }
        Ruleset { text, chains }
    }

    /// The chains every ruleset has, with their fixed rules.
    fn fixed(&self, filter: &mut Section, nat: &mut Section) {
        filter.declare(&self.services());
        filter.rule(
            &self.forward(),
            &format!(
                "-m mark --mark {MASQ_MARK}/{MASQ_MARK} {} -j ACCEPT",
                comment("moor service traffic marked for masquerade")
            ),
        );
        filter.rule(
            &self.forward(),
            &format!(
                "-m conntrack --ctstate RELATED,ESTABLISHED {} -j ACCEPT",
                comment("moor service flows already accepted")
            ),
        );
        filter.rule(
            &self.firewall(),
            &format!(
                "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT {} -j DROP",
                comment("martians to 127/8 that route_localnet would let in")
            ),
        );
        nat.declare(&self.services());
        nat.declare(&self.node_ports());
        nat.rule(&self.mark_masq(), &format!("-j MARK --or-mark {MASQ_MARK}"));
        let postrouting = self.postrouting();
        nat.rule(
            &postrouting,
            &format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        );
        nat.rule(&postrouting, &format!("-j MARK --xor-mark {MASQ_MARK}"));
        nat.rule(
            &postrouting,
            &format!(
                "{} -j MASQUERADE",
                comment("moor service traffic requiring SNAT")
            ),
        );
    }

    /// A service chain and its endpoint chains.
    fn spread(&self, nat: &mut Section, chain: &str, route: &Route, protocol: Protocol) {
        let endpoints: Vec<(SocketAddr, String)> = route
            .backends
            .iter()
            .map(|b| (*b, self.endpoint(route, protocol, *b)))
            .collect();
        let name = comment(&route.service);
        if let Some(timeout) = route.affinity {
            let seconds = timeout.as_secs().max(1);
            for (_, sep) in &endpoints {
                nat.rule(
                    chain,
                    &format!(
                        "{name} -m recent --name {sep} --rcheck --seconds {seconds} --reap -j {sep}"
                    ),
                );
            }
        }
        let n = endpoints.len();
        for (i, (_, sep)) in endpoints.iter().enumerate() {
            if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                nat.rule(
                    chain,
                    &format!(
                        "{name} -m statistic --mode random --probability {probability:.10} -j {sep}"
                    ),
                );
            } else {
                nat.rule(chain, &format!("{name} -j {sep}"));
            }
        }
        let proto = proto(protocol);
        for (endpoint, sep) in &endpoints {
            nat.rule(
                sep,
                &format!("-s {}/32 {name} -j {}", endpoint.ip(), self.mark_masq()),
            );
            let recent = if route.affinity.is_some() {
                format!(" -m recent --name {sep} --set")
            } else {
                String::new()
            };
            nat.rule(
                sep,
                &format!(
                    "-p {proto} {name}{recent} -m {proto} -j DNAT --to-destination {endpoint}"
                ),
            );
        }
    }
}

/// One table's part of the input.
struct Section {
    kind: Kind,
    chains: Vec<String>,
    rules: Vec<String>,
}

// === impl Section ===

impl Section {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            chains: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Declares `chain` (which flushes it) once.
    fn declare(&mut self, chain: &str) {
        if !self.chains.iter().any(|c| c == chain) {
            self.chains.push(chain.to_string());
        }
    }

    fn rule(&mut self, chain: &str, rule: &str) {
        self.declare(chain);
        self.rules.push(format!("-A {chain} {rule}"));
    }

    fn write(&self, out: &mut String, stale: &[&Chain]) {
        let stale: Vec<&str> = stale
            .iter()
            .filter(|c| c.0 == self.kind)
            .map(|c| c.1.as_str())
            .collect();
        let _ = writeln!(out, "*{}", self.kind.name());
        for chain in self.chains.iter().map(String::as_str).chain(stale.clone()) {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for rule in &self.rules {
            let _ = writeln!(out, "{rule}");
        }
        for chain in stale {
            let _ = writeln!(out, "-X {chain}");
        }
        let _ = writeln!(out, "COMMIT");
    }
}

/// The filter rule refusing a frontend without endpoints.
fn reject(frontend: &Frontend, route: &Route, node_port: bool) -> String {
    format!(
        "{} {} -j REJECT",
        frontend_match(frontend, node_port),
        comment(&format!("{} has no endpoints", route.service))
    )
}

/// Matches a frontend's packets: its cluster IP, or any local address for
/// a node port.
fn frontend_match(frontend: &Frontend, node_port: bool) -> String {
    let proto = proto(frontend.protocol);
    let port = frontend.listen.port();
    if node_port {
        format!("-m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {port}")
    } else {
        format!(
            "-d {}/32 -p {proto} -m {proto} --dport {port}",
            frontend.listen.ip()
        )
    }
}

fn proto(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// A comment match; names come from the API and are checked there, but
/// anything that could end the quoted word is replaced anyway.
fn comment(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " /:._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("-m comment --comment \"{safe}\"")
}

/// 64-bit FNV-1a: chain names must not change between builds or runs (the
/// next run replaces the chains by name), which std's hasher does not promise.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
