//! The cluster zone: a snapshot of services and endpoints and the answers it gives, following
//! the Kubernetes DNS specification for services (and CoreDNS's `pods insecure` pod records).
//!
//! Everything here is pure: a question goes in, an answer (or "not ours") comes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::wire::{CLASS_IN, Name, QType, Question, RData, Rcode, Record, Soa, Srv};

/// TTL of every cluster answer: short, because services and endpoints change.
pub const TTL: u32 = 5;

/// A snapshot of the cluster zone (`<domain>`, e.g. `cluster.local`), swapped as a whole when
/// services or endpoints change.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Lowercased labels of the cluster domain.
    domain: Vec<String>,
    /// Services by lowercased (namespace, name).
    services: HashMap<(String, String), ServiceEntry>,
    /// Namespaces that have at least one service (their `<ns>.svc` name exists).
    namespaces: BTreeSet<String>,
}

/// One service as DNS sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service's namespace.
    pub namespace: String,
    /// The service's name.
    pub name: String,
    /// The cluster IP; `None` for a headless service, whose name resolves to its endpoints.
    pub cluster_ip: Option<Ipv4Addr>,
    /// The service's ports; only named ones get SRV records.
    pub ports: Vec<PortEntry>,
    /// The ready endpoints (only used for headless services).
    pub endpoints: Vec<EndpointEntry>,
}

/// One port of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortEntry {
    /// The port's name (`http`); empty for an unnamed port.
    pub name: String,
    /// `TCP` or `UDP` (any case).
    pub protocol: String,
    /// The service port.
    pub port: u16,
}

/// One ready endpoint of a headless service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The pod's hostname, when it has one; it names the endpoint as
    /// `<hostname>.<svc>.<ns>.svc.<domain>` (otherwise the dashed IP does).
    pub hostname: Option<String>,
    /// The endpoint's port for each service port name (the target port). A service port
    /// missing here falls back to the service port number.
    pub ports: BTreeMap<String, u16>,
}

/// What the zone says about one question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) rcode: Rcode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

/// A name inside the zone, resolved.
enum Node<'a> {
    /// No such name.
    Missing,
    /// The name exists but holds no records (the apex, `svc`, a namespace, ...).
    Empty,
    /// `<svc>.<ns>.svc`.
    Service(&'a ServiceEntry),
    /// `<hostname or dashed-ip>.<svc>.<ns>.svc` of a headless service.
    Endpoints(Vec<Ipv4Addr>),
    /// `_<port>._<proto>.<svc>.<ns>.svc`.
    Port(&'a ServiceEntry, &'a PortEntry),
    /// `<dashed-ip>.<ns>.pod`.
    Pod(Ipv4Addr),
}

// === impl Records ===

impl Records {
    /// A snapshot for `domain` (with or without a trailing dot) holding `services`.
    pub fn new(domain: &str, services: impl IntoIterator<Item = ServiceEntry>) -> Self {
        let domain = domain
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let services: HashMap<_, _> = services
            .into_iter()
            .map(|s| {
                let key = (
                    s.namespace.to_ascii_lowercase(),
                    s.name.to_ascii_lowercase(),
                );
                (key, s)
            })
            .collect();
        let namespaces = services.keys().map(|(ns, _)| ns.clone()).collect();
        Records {
            domain,
            services,
            namespaces,
        }
    }

    /// The cluster domain, without a trailing dot.
    pub fn domain(&self) -> String {
        self.domain.join(".")
    }

    /// Whether `name` lies inside the cluster domain (this server answers it).
    pub fn is_authoritative_for(&self, name: &Name) -> bool {
        self.relative(name).is_some()
    }

    /// The zone's answer to `question`, or `None` when the name is outside the cluster domain.
    pub(crate) fn answer(&self, question: &Question) -> Option<Answer> {
        let relative = self.relative(&question.name)?;
        let owner = &question.name;
        let mut answer = Answer::default();
        let soa = || self.soa();
        match (self.node(&relative), question.qtype) {
            (Node::Missing, _) => {
                answer.rcode = Rcode::NxDomain;
                answer.authorities.extend(soa());
            }
            (Node::Empty, QType::Soa) if relative.is_empty() => answer.answers.extend(soa()),
            (Node::Service(service), QType::A | QType::Any) => {
                answer.answers = service_ips(service)
                    .into_iter()
                    .map(|ip| a_record(owner.clone(), ip))
                    .collect();
            }
            (Node::Service(service), QType::Srv) => {
                for port in service.ports.iter().filter(|p| !p.name.is_empty()) {
                    self.srv(owner, service, port, &mut answer);
                }
            }
            (Node::Port(service, port), QType::Srv) => self.srv(owner, service, port, &mut answer),
            (Node::Endpoints(ips), QType::A | QType::Any) => {
                answer.answers = ips
                    .into_iter()
                    .map(|ip| a_record(owner.clone(), ip))
                    .collect();
            }
            (Node::Pod(ip), QType::A | QType::Any) => {
                answer.answers.push(a_record(owner.clone(), ip));
            }
            _ => {}
        }
        if answer.rcode == Rcode::NoError && answer.answers.is_empty() {
            // NODATA: the name exists but has no records of this type.
            answer.authorities.extend(soa());
        }
        Some(answer)
    }

    /// The lowercased labels of `name` left of the cluster domain, or `None` outside it.
    fn relative(&self, name: &Name) -> Option<Vec<String>> {
        let labels: Vec<&[u8]> = name.labels().collect();
        let split = labels.len().checked_sub(self.domain.len())?;
        let (inner, suffix) = labels.split_at(split);
        let inside = suffix
            .iter()
            .zip(&self.domain)
            .all(|(label, domain)| label.eq_ignore_ascii_case(domain.as_bytes()));
        if !inside {
            return None;
        }
        // A label that is not UTF-8 can match no service; keep it as an impossible name.
        let lowercase = |l: &&[u8]| String::from_utf8_lossy(l).to_ascii_lowercase();
        Some(inner.iter().map(lowercase).collect())
    }

    fn node(&self, relative: &[String]) -> Node<'_> {
        let labels: Vec<&str> = relative.iter().map(String::as_str).collect();
        match labels.as_slice() {
            [] | ["svc" | "pod"] => Node::Empty,
            [ns, "svc"] if self.namespaces.contains(*ns) => Node::Empty,
            [ns, "pod"] if self.namespaces.contains(*ns) => Node::Empty,
            [name, ns, "svc"] => self.service(ns, name).map_or(Node::Missing, Node::Service),
            [proto, name, ns, "svc"] if proto.starts_with('_') => {
                let has_proto = self
                    .service(ns, name)
                    .is_some_and(|s| s.ports.iter().any(|p| port_matches(p, None, proto)));
                if has_proto {
                    Node::Empty
                } else {
                    Node::Missing
                }
            }
            [host, name, ns, "svc"] => {
                let ips: Vec<Ipv4Addr> = self
                    .service(ns, name)
                    .filter(|s| s.cluster_ip.is_none())
                    .into_iter()
                    .flat_map(|s| &s.endpoints)
                    .filter(|e| endpoint_label(e) == *host || dashed(e.ip) == *host)
                    .map(|e| e.ip)
                    .collect();
                if ips.is_empty() {
                    Node::Missing
                } else {
                    Node::Endpoints(ips)
                }
            }
            [port, proto, name, ns, "svc"] => self
                .service(ns, name)
                .and_then(|s| {
                    let port = s
                        .ports
                        .iter()
                        .find(|p| port_matches(p, Some(port), proto))?;
                    Some(Node::Port(s, port))
                })
                .unwrap_or(Node::Missing),
            [ip, _ns, "pod"] => undashed(ip).map_or(Node::Missing, Node::Pod),
            _ => Node::Missing,
        }
    }

    fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Adds the SRV records of one named port, with the A records of their targets.
    fn srv(&self, owner: &Name, service: &ServiceEntry, port: &PortEntry, answer: &mut Answer) {
        let Some(service_name) = self.name(&[&service.name, &service.namespace, "svc"]) else {
            return;
        };
        let targets: Vec<(Name, Ipv4Addr, u16)> = match service.cluster_ip {
            Some(ip) => vec![(service_name, ip, port.port)],
            None => service
                .endpoints
                .iter()
                .filter_map(|e| {
                    let target =
                        self.name(&[&endpoint_label(e), &service.name, &service.namespace, "svc"])?;
                    Some((
                        target,
                        e.ip,
                        e.ports.get(&port.name).copied().unwrap_or(port.port),
                    ))
                })
                .collect(),
        };
        let weight = u16::try_from(100 / targets.len().max(1))
            .unwrap_or(1)
            .max(1);
        for (target, ip, port) in targets {
            let additional = a_record(target.clone(), ip);
            if !answer.additionals.contains(&additional) {
                answer.additionals.push(additional);
            }
            answer.answers.push(Record {
                name: owner.clone(),
                class: CLASS_IN,
                ttl: TTL,
                data: RData::Srv(Srv {
                    priority: 0,
                    weight,
                    port,
                    target,
                }),
            });
        }
    }

    /// `<labels>.<domain>`, lowercased; `None` if it is not a valid name.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let all: Vec<&str> = labels
            .iter()
            .copied()
            .chain(self.domain.iter().map(String::as_str))
            .collect();
        Name::parse(&all.join(".").to_ascii_lowercase()).ok()
    }

    /// The zone's SOA record, for the authority section of negative answers.
    fn soa(&self) -> Option<Record> {
        Some(Record {
            name: self.name(&[])?,
            class: CLASS_IN,
            ttl: TTL,
            data: RData::Soa(Soa {
                mname: self.name(&["ns", "dns"])?,
                rname: self.name(&["hostmaster"])?,
                serial: 1,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: TTL,
            }),
        })
    }
}

fn service_ips(service: &ServiceEntry) -> Vec<Ipv4Addr> {
    match service.cluster_ip {
        Some(ip) => vec![ip],
        None => service.endpoints.iter().map(|e| e.ip).collect(),
    }
}

fn a_record(name: Name, ip: Ipv4Addr) -> Record {
    Record {
        name,
        class: CLASS_IN,
        ttl: TTL,
        data: RData::A(ip),
    }
}

/// Whether `port` is `_<name>._<proto>` (or any named port of `_<proto>` when `name` is None).
fn port_matches(port: &PortEntry, name: Option<&str>, proto: &str) -> bool {
    let named = !port.name.is_empty()
        && name.is_none_or(|n| {
            n.strip_prefix('_')
                .is_some_and(|n| port.name.eq_ignore_ascii_case(n))
        });
    named
        && proto
            .strip_prefix('_')
            .is_some_and(|p| port.protocol.eq_ignore_ascii_case(p))
}

/// The label naming an endpoint: its hostname, or its dashed IP.
fn endpoint_label(endpoint: &EndpointEntry) -> String {
    match &endpoint.hostname {
        Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
        _ => dashed(endpoint.ip),
    }
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `10-0-0-1` as an address.
fn undashed(label: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u8> = label
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let octets: [u8; 4] = parts.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests;
