//! A pod's resolv.conf from its dnsPolicy, as Kubernetes' kubelet chooses
//! it. The engine writes none for pods (the sandbox has no engine
//! networking): the agent writes this text under the pod's directory and
//! bind-mounts it into every app and init container ([`super::etc`]).

use std::net::{IpAddr, Ipv4Addr};

use moor_api::core::v1::Pod;

use crate::Config;

/// Names with fewer dots than this try the search list first (Kubernetes' value).
const NDOTS: &str = "ndots:5";

/// Where the host's resolver settings are.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// What systemd-resolved's stub listener leaves in /etc/resolv.conf ...
const SYSTEMD_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));

/// ... and where it keeps the servers it forwards to.
const SYSTEMD_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// Docker's name servers for a container when the host has none it can reach.
const FALLBACK_SERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The text of `pod`'s resolv.conf; `host_resolv_conf` is the host's (see
/// [`read_host_resolv_conf`]).
///
/// `ClusterFirst` (also when empty) resolves through the cluster DNS and
/// searches the pod's namespace, except on the host network (as in
/// Kubernetes, `ClusterFirstWithHostNet` is needed there). `Default` takes
/// the host's settings as Docker gave them to a container ([`from_host`]).
/// `None` would take `spec.dnsConfig`, which moor's PodSpec does not have: it
/// is treated as `Default`. Without a cluster DNS configured, every policy is
/// `Default`.
pub fn resolv_conf(config: &Config, pod: &Pod, host_resolv_conf: &str) -> String {
    let Some(server) = cluster_dns(config, pod) else {
        return from_host(host_resolv_conf);
    };
    let namespace = pod
        .metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let domain = &config.cluster_domain;
    format!(
        "nameserver {server}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions {NDOTS}\n"
    )
}

/// The cluster DNS server when `pod`'s policy resolves through it.
fn cluster_dns(config: &Config, pod: &Pod) -> Option<Ipv4Addr> {
    let server = config.cluster_dns?;
    let spec = pod.spec.as_ref();
    let host_network = spec.is_some_and(|s| s.host_network);
    let cluster_first = match spec.map_or("", |s| s.dns_policy.as_str()) {
        "" | "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        // "Default", "None" and anything the apiserver would not accept.
        _ => false,
    };
    cluster_first.then_some(server)
}

/// The host's resolv.conf as Docker gave it to a container: name servers on
/// a loopback address go (in the pod's network namespace loopback is the pod
/// itself), and so do IPv6 ones (pods have IPv4 only, as on a Docker network
/// without IPv6); the rest (search, options, comments) stays; with no name
/// server left, Google's public ones.
pub fn from_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len() + 64);
    let mut servers = 0;
    for line in host.lines() {
        match nameserver(line) {
            Some(Some(ip)) if ip.to_canonical().is_loopback() || ip.to_canonical().is_ipv6() => {
                continue;
            }
            Some(Some(_)) => servers += 1,
            // A line glibc skips too: kept, as Docker keeps it.
            Some(None) | None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for server in FALLBACK_SERVERS {
            out.push_str("nameserver ");
            out.push_str(server);
            out.push('\n');
        }
    }
    out
}

/// `Some` for a `nameserver` line, with its address when it parses (a zone
/// such as `%eth0` is ignored).
fn nameserver(line: &str) -> Option<Option<IpAddr>> {
    let mut words = line.split_whitespace();
    if words.next() != Some("nameserver") {
        return None;
    }
    Some(
        words
            .next()
            .and_then(|w| w.split('%').next())
            .and_then(|w| w.parse().ok()),
    )
}

/// The host's resolver settings, read as Docker reads them: /etc/resolv.conf,
/// unless it only points at systemd-resolved's stub listener, whose upstream
/// servers are then taken instead. A file that cannot be read counts as
/// empty (the pods get the fallback servers) and is logged.
pub async fn read_host_resolv_conf() -> String {
    let text = read_or_empty(HOST_RESOLV_CONF).await;
    let servers: Vec<IpAddr> = text.lines().filter_map(nameserver).flatten().collect();
    if servers == [SYSTEMD_STUB] {
        let upstreams = read_or_empty(SYSTEMD_UPSTREAMS).await;
        if !upstreams.is_empty() {
            return upstreams;
        }
    }
    text
}

async fn read_or_empty(path: &str) -> String {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!(path, %err, "cannot read the host's resolver settings; pods with dnsPolicy Default get public name servers");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::PodSpec;
    use moor_api::meta::v1::ObjectMeta;

    const HOST: &str =
        "# from DHCP\nnameserver 192.168.1.1\nsearch lan example.com\noptions edns0 timeout:2\n";

    fn pod(namespace: &str, policy: &str, host_network: bool) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: namespace.into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                dns_policy: policy.into(),
                host_network,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn config(dns: Option<[u8; 4]>) -> Config {
        let mut config = Config::new("http://x", "n", "/tmp".into());
        config.cluster_dns = dns.map(Into::into);
        config
    }

    #[test]
    fn cluster_first_searches_the_namespace_first() {
        let text = resolv_conf(
            &config(Some([10, 96, 0, 10])),
            &pod("team-a", "", false),
            HOST,
        );
        assert_eq!(
            text,
            "nameserver 10.96.0.10\n\
             search team-a.svc.cluster.local svc.cluster.local cluster.local\n\
             options ndots:5\n"
        );
        let text = resolv_conf(&config(Some([10, 96, 0, 10])), &pod("", "", false), HOST);
        assert!(text.contains("search default.svc.cluster.local "), "{text}");
    }

    #[test]
    fn other_policies_take_the_host_settings() {
        let with_dns = config(Some([10, 96, 0, 10]));
        assert_eq!(
            resolv_conf(&with_dns, &pod("a", "Default", false), HOST),
            HOST
        );
        assert_eq!(resolv_conf(&with_dns, &pod("a", "None", false), HOST), HOST);
        assert_eq!(
            resolv_conf(&with_dns, &pod("a", "ClusterFirst", true), HOST),
            HOST,
            "host network"
        );
        assert!(
            resolv_conf(&with_dns, &pod("a", "ClusterFirstWithHostNet", true), HOST)
                .starts_with("nameserver 10.96.0.10\n")
        );
        assert_eq!(
            resolv_conf(&config(None), &pod("a", "ClusterFirst", false), HOST),
            HOST,
            "no cluster DNS configured"
        );
    }

    #[test]
    fn loopback_and_ipv6_name_servers_are_dropped() {
        let host = "nameserver 127.0.0.11\nnameserver 10.0.0.2\nnameserver ::1\n\
                    nameserver ::ffff:127.0.0.1\nnameserver fd00::53\nsearch corp\n\
                    options ndots:2";
        assert_eq!(
            from_host(host),
            "nameserver 10.0.0.2\nsearch corp\noptions ndots:2\n"
        );
    }

    #[test]
    fn without_a_name_server_left_the_public_ones_are_added() {
        assert_eq!(
            from_host("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch ."),
            "options edns0 trust-ad\nsearch .\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            from_host(""),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n",
            "no host file"
        );
        assert_eq!(
            from_host("nameserver bogus\n"),
            "nameserver bogus\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n",
            "a server that does not parse does not count"
        );
    }

    #[test]
    fn scoped_name_servers_are_ipv6_too() {
        assert_eq!(
            from_host("nameserver fe80::1%eth0\nnameserver 10.0.0.2\n"),
            "nameserver 10.0.0.2\n"
        );
    }
}
