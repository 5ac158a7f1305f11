//! What the proxy should serve, computed from the services and endpoints it
//! was sent: one route per (protocol, listen address), the cluster IPs to put
//! on the host, and the DNS records.
//!
//! A service that cannot be applied (an address that does not parse, a node
//! port another service already serves, ...) keeps the routes of its last
//! good version and is reported, so one bad object never takes the others
//! down and the proxy never stops on a configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use moor_api::core::v1::{EndpointPort, Endpoints, Service, ServicePort};
use moor_api::proxy::v1::{ClusterNetwork, ProxyConfigUpdate};
use moor_dns::{EndpointEntry, PortEntry, ServiceEntry};

/// A transport protocol the proxy forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// Where the proxy listens: one frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// A cluster IP and port, or 0.0.0.0 and a node port.
    pub listen: SocketAddrV4,
}

impl std::fmt::Display for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.listen, self.protocol)
    }
}

/// Where a frontend sends its traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The service, as "namespace/name:port-name".
    pub service: String,
    /// Ready endpoints.
    pub backends: Vec<SocketAddr>,
    /// ClientIP session affinity and how long it lasts.
    pub affinity: Option<Duration>,
}

/// What one service contributes.
#[derive(Clone, Debug, Default, PartialEq)]
struct ServiceRoutes {
    routes: Vec<(Frontend, Route)>,
    cluster_ip: Option<Ipv4Addr>,
    dns: Option<ServiceEntry>,
}

/// Everything the proxy serves.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Every frontend and its route (routes without backends are refused).
    pub routes: BTreeMap<Frontend, Route>,
    /// Cluster IPs to put on the host.
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    /// DNS records of every service.
    pub dns: Vec<ServiceEntry>,
}

/// The services and endpoints received so far.
#[derive(Default)]
pub struct Model {
    services: BTreeMap<String, Service>,
    endpoints: BTreeMap<String, Endpoints>,
    /// The cluster's network settings, from the last snapshot.
    pub network: Option<ClusterNetwork>,
    /// The last routes of each service that could be applied.
    good: HashMap<String, ServiceRoutes>,
}

// === impl Model ===

impl Model {
    /// Applies one update from the stream.
    pub fn apply(&mut self, update: ProxyConfigUpdate) {
        if update.snapshot {
            self.services.clear();
            self.endpoints.clear();
        }
        if let Some(network) = update.network {
            self.network = Some(network);
        }
        for key in update.deleted_services {
            self.services.remove(&key);
        }
        for key in update.deleted_endpoints {
            self.endpoints.remove(&key);
        }
        for service in update.services {
            self.services
                .insert(key_of(service.metadata.as_ref()), service);
        }
        for endpoints in update.endpoints {
            self.endpoints
                .insert(key_of(endpoints.metadata.as_ref()), endpoints);
        }
    }

    /// The table to serve, and what could not be applied (each problem
    /// names the service and field).
    pub fn table(&mut self) -> (Table, Vec<String>) {
        let mut table = Table::default();
        let mut problems = Vec::new();
        let mut owners: HashMap<Frontend, String> = HashMap::new();
        self.good.retain(|key, _| self.services.contains_key(key));
        for (key, service) in &self.services {
            let built = build(key, service, self.endpoints.get(key)).and_then(|routes| {
                // Node ports are unique per cluster, but guard anyway: two
                // services on one frontend would steal each other's traffic.
                for (frontend, _) in &routes.routes {
                    if let Some(owner) = owners.get(frontend) {
                        return Err(format!("{frontend} is already served for {owner}"));
                    }
                }
                Ok(routes)
            });
            let routes = match built {
                Ok(routes) => {
                    self.good.insert(key.clone(), routes.clone());
                    routes
                }
                Err(problem) => {
                    problems.push(format!("service {key}: {problem}"));
                    match self.good.get(key) {
                        Some(last) => last.clone(),
                        None => continue,
                    }
                }
            };
            for (frontend, route) in routes.routes {
                if owners.contains_key(&frontend) {
                    continue;
                }
                owners.insert(frontend, key.clone());
                table.routes.insert(frontend, route);
            }
            table.cluster_ips.extend(routes.cluster_ip);
            table.dns.extend(routes.dns);
        }
        (table, problems)
    }
}

/// "namespace/name" of an object.
pub fn key_of(meta: Option<&moor_api::meta::v1::ObjectMeta>) -> String {
    meta.map(|m| format!("{}/{}", m.namespace, m.name))
        .unwrap_or_default()
}

/// The routes and records of one service.
fn build(
    key: &str,
    service: &Service,
    endpoints: Option<&Endpoints>,
) -> Result<ServiceRoutes, String> {
    let spec = service.spec.clone().unwrap_or_default();
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let headless = spec.cluster_ip == "None";
    let cluster_ip = match spec.cluster_ip.as_str() {
        "" | "None" => None,
        text => Some(
            text.parse::<Ipv4Addr>()
                .map_err(|_| format!("spec.clusterIP {text:?} is not an IPv4 address"))?,
        ),
    };
    let affinity = (spec.session_affinity == "ClientIP").then(|| {
        let seconds = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    });
    let subsets = endpoints.map(|e| e.subsets.as_slice()).unwrap_or_default();
    let mut routes = Vec::new();
    let mut dns_ports = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let protocol = match port.protocol.as_str() {
            "" | "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            // SCTP is accepted by the API but not forwarded.
            _ => continue,
        };
        let number = u16::try_from(port.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("spec.ports[{i}].port {} is out of range", port.port))?;
        dns_ports.push(PortEntry {
            name: port.name.clone(),
            protocol: protocol.to_string(),
            port: number,
        });
        let route = Route {
            service: format!("{key}:{}", port.name),
            backends: backends(subsets, port)
                .map_err(|problem| format!("endpoints for spec.ports[{i}]: {problem}"))?,
            affinity,
        };
        if let Some(ip) = cluster_ip {
            routes.push((
                Frontend {
                    protocol,
                    listen: SocketAddrV4::new(ip, number),
                },
                route.clone(),
            ));
        }
        if port.node_port != 0 {
            let node_port = u16::try_from(port.node_port).map_err(|_| {
                format!(
                    "spec.ports[{i}].nodePort {} is out of range",
                    port.node_port
                )
            })?;
            routes.push((
                Frontend {
                    protocol,
                    listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, node_port),
                },
                route,
            ));
        }
    }
    let dns = ServiceEntry {
        namespace: namespace.to_string(),
        name: name.to_string(),
        cluster_ip,
        ports: dns_ports,
        endpoints: if headless {
            dns_endpoints(subsets)
        } else {
            Vec::new()
        },
    };
    Ok(ServiceRoutes {
        routes,
        cluster_ip,
        dns: Some(dns),
    })
}

/// The ready endpoints of one service port: the subsets' addresses with the
/// endpoint port of the same name.
fn backends(
    subsets: &[moor_api::core::v1::EndpointSubset],
    port: &ServicePort,
) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for subset in subsets {
        let Some(target) = matching_port(&subset.ports, port) else {
            continue;
        };
        let number = u16::try_from(target.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {} is out of range", target.port))?;
        for address in &subset.addresses {
            let ip = address
                .ip
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("address {:?} is not an IPv4 address", address.ip))?;
            out.push(SocketAddr::from((ip, number)));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The endpoint port serving `port`: same name (a single unnamed port
/// matches the single endpoint port).
fn matching_port<'a>(ports: &'a [EndpointPort], port: &ServicePort) -> Option<&'a EndpointPort> {
    ports.iter().find(|p| p.name == port.name)
}

/// Headless services' DNS answers: every ready address.
fn dns_endpoints(subsets: &[moor_api::core::v1::EndpointSubset]) -> Vec<EndpointEntry> {
    let mut out: Vec<EndpointEntry> = Vec::new();
    for subset in subsets {
        for address in &subset.addresses {
            let Ok(ip) = address.ip.parse::<Ipv4Addr>() else {
                continue;
            };
            let ports = subset
                .ports
                .iter()
                .filter_map(|p| Some((p.name.clone(), u16::try_from(p.port).ok()?)))
                .collect();
            out.push(EndpointEntry {
                ip,
                hostname: (!address.hostname.is_empty()).then(|| address.hostname.clone()),
                ports,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{EndpointAddress, EndpointSubset, ServiceSpec, SessionAffinityConfig};
    use moor_api::meta::v1::ObjectMeta;

    use super::*;

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        })
    }

    fn service(name: &str, ip: &str, ports: &[(&str, &str, i32, i32)]) -> Service {
        Service {
            metadata: meta(name),
            spec: Some(ServiceSpec {
                cluster_ip: ip.into(),
                ports: ports
                    .iter()
                    .map(|(name, protocol, port, node_port)| ServicePort {
                        name: (*name).into(),
                        protocol: (*protocol).into(),
                        port: *port,
                        node_port: *node_port,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoints(name: &str, ips: &[&str], ports: &[(&str, &str, i32)]) -> Endpoints {
        Endpoints {
            metadata: meta(name),
            subsets: vec![EndpointSubset {
                addresses: ips
                    .iter()
                    .map(|ip| EndpointAddress {
                        ip: (*ip).into(),
                        ..Default::default()
                    })
                    .collect(),
                not_ready_addresses: vec![EndpointAddress {
                    ip: "10.0.0.99".into(),
                    ..Default::default()
                }],
                ports: ports
                    .iter()
                    .map(|(name, protocol, port)| EndpointPort {
                        name: (*name).into(),
                        protocol: (*protocol).into(),
                        port: *port,
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    fn snapshot(services: Vec<Service>, endpoints: Vec<Endpoints>) -> ProxyConfigUpdate {
        ProxyConfigUpdate {
            version: "1-1".into(),
            snapshot: true,
            services,
            endpoints,
            ..Default::default()
        }
    }

    fn frontend(protocol: Protocol, ip: [u8; 4], port: u16) -> Frontend {
        Frontend {
            protocol,
            listen: SocketAddrV4::new(Ipv4Addr::from(ip), port),
        }
    }

    #[test]
    fn routes_each_port_to_ready_endpoints_by_port_name() {
        let mut model = Model::default();
        model.apply(snapshot(
            vec![service(
                "web",
                "10.96.0.5",
                &[("http", "TCP", 80, 30080), ("dns", "UDP", 53, 0)],
            )],
            vec![endpoints(
                "web",
                &["10.0.0.2", "10.0.0.1"],
                &[("http", "TCP", 8080), ("dns", "UDP", 5353)],
            )],
        ));
        let (table, problems) = model.table();
        assert!(problems.is_empty(), "{problems:?}");
        let http = &table.routes[&frontend(Protocol::Tcp, [10, 96, 0, 5], 80)];
        assert_eq!(
            http.backends,
            vec![
                "10.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!()),
                "10.0.0.2:8080".parse().unwrap_or_else(|_| unreachable!())
            ]
        );
        assert_eq!(
            table.routes[&frontend(Protocol::Tcp, [0, 0, 0, 0], 30080)].backends,
            http.backends
        );
        let dns = &table.routes[&frontend(Protocol::Udp, [10, 96, 0, 5], 53)];
        assert_eq!(dns.backends.len(), 2);
        assert!(dns.backends.iter().all(|b| b.port() == 5353));
        assert_eq!(table.routes.len(), 3);
        assert_eq!(
            table.cluster_ips.iter().copied().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 96, 0, 5)]
        );
    }

    #[test]
    fn a_service_without_endpoints_has_a_route_with_no_backends() {
        let mut model = Model::default();
        model.apply(snapshot(
            vec![service("web", "10.96.0.5", &[("", "TCP", 80, 0)])],
            vec![],
        ));
        let (table, _) = model.table();
        assert!(
            table.routes[&frontend(Protocol::Tcp, [10, 96, 0, 5], 80)]
                .backends
                .is_empty()
        );
    }

    #[test]
    fn deltas_change_and_delete() {
        let mut model = Model::default();
        model.apply(snapshot(
            vec![
                service("a", "10.96.0.5", &[("", "TCP", 80, 0)]),
                service("b", "10.96.0.6", &[("", "TCP", 80, 0)]),
            ],
            vec![endpoints("a", &["10.0.0.1"], &[("", "TCP", 80)])],
        ));
        model.apply(ProxyConfigUpdate {
            version: "2-2".into(),
            endpoints: vec![endpoints("a", &["10.0.0.3"], &[("", "TCP", 80)])],
            deleted_services: vec!["default/b".into()],
            ..Default::default()
        });
        let (table, _) = model.table();
        assert_eq!(table.routes.len(), 1);
        assert_eq!(
            table.routes[&frontend(Protocol::Tcp, [10, 96, 0, 5], 80)].backends,
            vec!["10.0.0.3:80".parse().unwrap_or_else(|_| unreachable!())]
        );
        // A snapshot replaces everything.
        model.apply(snapshot(vec![], vec![]));
        assert!(model.table().0.routes.is_empty());
    }

    #[test]
    fn a_bad_service_keeps_its_last_good_routes_and_is_reported() {
        let mut model = Model::default();
        model.apply(snapshot(
            vec![service("a", "10.96.0.5", &[("", "TCP", 80, 0)])],
            vec![endpoints("a", &["10.0.0.1"], &[("", "TCP", 80)])],
        ));
        let (good, _) = model.table();
        model.apply(ProxyConfigUpdate {
            endpoints: vec![endpoints("a", &["not-an-ip"], &[("", "TCP", 80)])],
            ..Default::default()
        });
        let (table, problems) = model.table();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("service default/a")
                && problems[0].contains("\"not-an-ip\" is not an IPv4 address"),
            "{problems:?}"
        );
        assert_eq!(table.routes, good.routes);
    }

    #[test]
    fn a_second_service_on_a_taken_node_port_is_rejected() {
        let mut model = Model::default();
        model.apply(snapshot(
            vec![
                service("a", "10.96.0.5", &[("", "TCP", 80, 30080)]),
                service("b", "10.96.0.6", &[("", "TCP", 80, 30080)]),
            ],
            vec![],
        ));
        let (table, problems) = model.table();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("0.0.0.0:30080/TCP is already served for default/a"));
        assert_eq!(
            table.routes[&frontend(Protocol::Tcp, [0, 0, 0, 0], 30080)].service,
            "default/a:"
        );
        assert!(
            !table
                .routes
                .contains_key(&frontend(Protocol::Tcp, [10, 96, 0, 6], 80))
        );
    }

    #[test]
    fn client_ip_affinity_carries_its_timeout() {
        let mut svc = service("a", "10.96.0.5", &[("", "TCP", 80, 0)]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.session_affinity = "ClientIP".into();
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(moor_api::core::v1::ClientIpConfig {
                    timeout_seconds: Some(60),
                }),
            });
        }
        let mut model = Model::default();
        model.apply(snapshot(vec![svc], vec![]));
        let (table, _) = model.table();
        assert_eq!(
            table.routes[&frontend(Protocol::Tcp, [10, 96, 0, 5], 80)].affinity,
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn headless_services_have_dns_endpoints_and_no_routes() {
        let mut model = Model::default();
        model.apply(snapshot(
            vec![service("db", "None", &[("", "TCP", 5432, 0)])],
            vec![endpoints(
                "db",
                &["10.0.0.1", "10.0.0.2"],
                &[("", "TCP", 5432)],
            )],
        ));
        let (table, _) = model.table();
        assert!(table.routes.is_empty());
        assert!(table.cluster_ips.is_empty());
        assert_eq!(table.dns.len(), 1);
        assert_eq!(table.dns[0].cluster_ip, None);
        assert_eq!(table.dns[0].endpoints.len(), 2);
    }
}
