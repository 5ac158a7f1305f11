//! A pod's resolver settings from its dnsPolicy, as Kubernetes' kubelet
//! chooses them. They go on the sandbox only: app containers join its network
//! namespace and Docker gives them the sandbox's resolv.conf.

use moor_api::core::v1::Pod;
use moor_runtime::DnsConfig;

use crate::Config;

/// Names with fewer dots than this try the search list first (Kubernetes' value).
const NDOTS: &str = "ndots:5";

/// The resolver settings of `pod`'s sandbox; `None` leaves Docker's default.
///
/// `ClusterFirst` (also when empty) resolves through the cluster DNS and
/// searches the pod's namespace, except on the host network (as in
/// Kubernetes, `ClusterFirstWithHostNet` is needed there). `Default` keeps
/// Docker's resolver. `None` would take `spec.dnsConfig`, which moor's
/// PodSpec does not have: it is treated as `Default`. Without a cluster DNS
/// configured, every policy is `Default`.
pub fn sandbox_dns(config: &Config, pod: &Pod) -> Option<DnsConfig> {
    let server = config.cluster_dns?;
    let spec = pod.spec.as_ref();
    let host_network = spec.is_some_and(|s| s.host_network);
    let cluster_first = match spec.map_or("", |s| s.dns_policy.as_str()) {
        "" | "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        // "Default", "None" and anything the apiserver would not accept.
        _ => false,
    };
    if !cluster_first {
        return None;
    }
    let namespace = pod
        .metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let domain = &config.cluster_domain;
    Some(DnsConfig {
        servers: vec![server.to_string()],
        searches: vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ],
        options: vec![NDOTS.into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::PodSpec;
    use moor_api::meta::v1::ObjectMeta;

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
        let dns = sandbox_dns(&config(Some([10, 96, 0, 10])), &pod("team-a", "", false));
        assert_eq!(
            dns,
            Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec![
                    "team-a.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into()
                ],
                options: vec!["ndots:5".into()],
            })
        );
    }

    #[test]
    fn other_policies_keep_the_default_resolver() {
        let with_dns = config(Some([10, 96, 0, 10]));
        assert_eq!(sandbox_dns(&with_dns, &pod("a", "Default", false)), None);
        assert_eq!(sandbox_dns(&with_dns, &pod("a", "None", false)), None);
        assert_eq!(
            sandbox_dns(&with_dns, &pod("a", "ClusterFirst", true)),
            None,
            "host network"
        );
        assert!(sandbox_dns(&with_dns, &pod("a", "ClusterFirstWithHostNet", true)).is_some());
        assert_eq!(
            sandbox_dns(&config(None), &pod("a", "ClusterFirst", false)),
            None,
            "no cluster DNS configured"
        );
    }
}
