//! Service links: the Kubernetes-style variables (`REDIS_SERVICE_HOST`,
//! `REDIS_PORT_6379_TCP`...) that tell a container where the services of its
//! namespace were when it was created. Services made later are not seen until
//! the container is created again, as in Kubernetes.

use moor_api::core::v1::{Pod, Service};
use moor_client::ListParams;
use tokio::sync::OnceCell;

use crate::agent::Agent;
use crate::error::Error;

/// The pod's service variables, listed from the apiserver at most once per
/// sync and only when a container is created.
#[derive(Debug, Default)]
pub struct ServiceLinks {
    vars: OnceCell<Vec<(String, String)>>,
}

// === impl ServiceLinks ===

impl ServiceLinks {
    /// Puts the service variables in front of `env` (`NAME=value` pairs),
    /// leaving out those the container sets itself. A pod with
    /// `enableServiceLinks: false` gets none. Fails when the services cannot
    /// be listed, so the start is retried rather than made without them.
    pub async fn add_to(
        &self,
        agent: &Agent,
        pod: &Pod,
        env: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let enabled = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        if !enabled {
            return Ok(env);
        }
        let vars = self.vars.get_or_try_init(|| list(agent, pod)).await?;
        let own: std::collections::HashSet<&str> = env
            .iter()
            .map(|pair| pair.split_once('=').map_or(pair.as_str(), |(name, _)| name))
            .collect();
        let mut merged: Vec<String> = vars
            .iter()
            .filter(|(name, _)| !own.contains(name.as_str()))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        merged.extend(env);
        Ok(merged)
    }
}

/// The variables of every service in the pod's namespace.
async fn list(agent: &Agent, pod: &Pod) -> Result<Vec<(String, String)>, Error> {
    let namespace = pod.metadata.as_ref().map_or("", |m| m.namespace.as_str());
    let params = ListParams::default().namespace(namespace).any_version();
    let (mut services, _) =
        agent
            .client
            .api::<Service>()
            .list(&params)
            .await
            .map_err(|source| Error::Services {
                namespace: namespace.to_owned(),
                source,
            })?;
    services.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    Ok(services.iter().flat_map(vars).collect())
}

fn name_of(service: &Service) -> &str {
    service.metadata.as_ref().map_or("", |m| m.name.as_str())
}

/// One service's variables; none for a headless service, one without a
/// cluster IP yet, or one without ports.
fn vars(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = &service.spec else {
        return vec![];
    };
    let ip = spec.cluster_ip.as_str();
    let Some(first) = spec.ports.first() else {
        return vec![];
    };
    if ip.is_empty() || ip == "None" {
        return vec![];
    }
    let prefix = env_name(name_of(service));
    let protocol = |p: &moor_api::core::v1::ServicePort| match p.protocol.as_str() {
        "" => "tcp".to_owned(),
        other => other.to_ascii_lowercase(),
    };
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_owned()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    out.extend(spec.ports.iter().filter(|p| !p.name.is_empty()).map(|p| {
        (
            format!("{prefix}_SERVICE_PORT_{}", env_name(&p.name)),
            p.port.to_string(),
        )
    }));
    out.push((
        format!("{prefix}_PORT"),
        format!("{}://{ip}:{}", protocol(first), first.port),
    ));
    for port in &spec.ports {
        let proto = protocol(port);
        let base = format!("{prefix}_PORT_{}_{}", port.port, proto.to_ascii_uppercase());
        out.push((base.clone(), format!("{proto}://{ip}:{}", port.port)));
        out.push((format!("{base}_PROTO"), proto));
        out.push((format!("{base}_PORT"), port.port.to_string()));
        out.push((format!("{base}_ADDR"), ip.to_owned()));
    }
    out
}

/// `redis-primary` as a variable name: `REDIS_PRIMARY`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::{ServicePort, ServiceSpec};
    use moor_api::meta::v1::ObjectMeta;

    fn service(name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: ip.into(),
                ports: ports
                    .iter()
                    .map(|(name, port, protocol)| ServicePort {
                        name: (*name).into(),
                        port: *port,
                        protocol: (*protocol).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn variables_of_a_service_as_kubernetes_names_them() {
        let vars = vars(&service(
            "redis-primary",
            "10.0.0.11",
            &[("redis", 6379, "TCP"), ("", 9121, "UDP")],
        ));
        let expected = [
            ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
            ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.0.0.11:9121"),
            ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
            ("REDIS_PRIMARY_PORT_9121_UDP_PORT", "9121"),
            ("REDIS_PRIMARY_PORT_9121_UDP_ADDR", "10.0.0.11"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn headless_and_unallocated_services_have_none() {
        assert!(vars(&service("db", "None", &[("", 5432, "")])).is_empty());
        assert!(vars(&service("db", "", &[("", 5432, "")])).is_empty());
    }
}
