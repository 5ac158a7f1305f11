//! The service strategy: defaults, validation and cluster IP / node port
//! allocation.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use moor_api::Resource;
use moor_api::core::v1::{Service, ServiceSpec};
use moor_api::meta::v1::IntOrString;
use moor_api::meta::v1::int_or_string::Value;

use super::Kind;
use crate::alloc::Allocator;
use crate::error::Error;
use crate::validate::Errors;

/// Seconds a ClientIP affinity lasts by default, as in Kubernetes.
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

impl Kind for Service {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(ServiceSpec::default);
        if spec.r#type.is_empty() {
            spec.r#type = "ClusterIP".to_string();
        }
        if spec.session_affinity.is_empty() {
            spec.session_affinity = "None".to_string();
        }
        if spec.session_affinity == "ClientIP" {
            let config = spec
                .session_affinity_config
                .get_or_insert_with(Default::default);
            let client = config.client_ip.get_or_insert_with(Default::default);
            client
                .timeout_seconds
                .get_or_insert(DEFAULT_AFFINITY_SECONDS);
        }
        for port in &mut spec.ports {
            if port.protocol.is_empty() {
                port.protocol = "TCP".to_string();
            }
            let unset = port.target_port.as_ref().is_none_or(|t| t.value.is_none());
            if unset {
                port.target_port = Some(IntOrString {
                    value: Some(Value::IntVal(port.port)),
                });
            }
        }
    }

    fn validate(&self, old: Option<&Self>, errors: &mut Errors) {
        let Some(spec) = &self.spec else {
            errors.required("spec");
            return;
        };
        let headless = spec.cluster_ip == "None";
        if !matches!(spec.r#type.as_str(), "ClusterIP" | "NodePort") {
            errors.unsupported("spec.type", &spec.r#type, &["ClusterIP", "NodePort"]);
        }
        if headless && spec.r#type == "NodePort" {
            errors.invalid(
                "spec.clusterIP",
                "None",
                "may not be set to 'None' for NodePort services",
            );
        }
        if !spec.cluster_ip.is_empty() && !headless && spec.cluster_ip.parse::<Ipv4Addr>().is_err()
        {
            errors.invalid(
                "spec.clusterIP",
                &spec.cluster_ip,
                "must be empty, 'None', or a valid IPv4 address",
            );
        }
        if spec.ports.is_empty() && !headless {
            errors.required("spec.ports");
        }
        let mut names = HashSet::new();
        let mut seen = HashSet::new();
        for (i, port) in spec.ports.iter().enumerate() {
            let path = format!("spec.ports[{i}]");
            if spec.ports.len() > 1 && port.name.is_empty() {
                errors.required(format!("{path}.name"));
            }
            if !port.name.is_empty() {
                if let Err(why) = moor_labels::validation::dns1123_label(&port.name) {
                    errors.invalid(format!("{path}.name"), &port.name, why);
                }
                if !names.insert(port.name.as_str()) {
                    errors.add(
                        format!("{path}.name"),
                        format!("Duplicate value: \"{}\"", port.name),
                    );
                }
            }
            errors.port(&format!("{path}.port"), port.port);
            errors.protocol(&format!("{path}.protocol"), &port.protocol);
            if !seen.insert((port.port, port.protocol.clone())) {
                errors.add(
                    path.to_string(),
                    format!("Duplicate value: {}/{}", port.port, port.protocol),
                );
            }
            match port.target_port.as_ref().and_then(|t| t.value.as_ref()) {
                Some(Value::IntVal(n)) => errors.port(&format!("{path}.targetPort"), *n),
                Some(Value::StrVal(s)) => {
                    if let Err(why) = moor_labels::validation::dns1123_label(s) {
                        errors.invalid(format!("{path}.targetPort"), s, why);
                    }
                }
                None => errors.required(format!("{path}.targetPort")),
            }
            if port.node_port != 0 {
                if spec.r#type != "NodePort" {
                    errors.add(
                        format!("{path}.nodePort"),
                        "Forbidden: may not be used when `type` is 'ClusterIP'",
                    );
                } else {
                    // The configured range is checked when the port is reserved.
                    errors.port(&format!("{path}.nodePort"), port.node_port);
                }
            }
        }
        errors.labels("spec.selector", &spec.selector);
        if !matches!(spec.session_affinity.as_str(), "None" | "ClientIP") {
            errors.unsupported(
                "spec.sessionAffinity",
                &spec.session_affinity,
                &["ClientIP", "None"],
            );
        }
        if let Some(old_ip) = old
            .and_then(|o| o.spec.as_ref())
            .map(|s| s.cluster_ip.as_str())
            && !old_ip.is_empty()
            && !spec.cluster_ip.is_empty()
            && old_ip != spec.cluster_ip
        {
            errors.invalid("spec.clusterIP", &spec.cluster_ip, "field is immutable");
        }
    }

    async fn allocate(
        &mut self,
        old: Option<&Self>,
        alloc: &Allocator,
    ) -> Result<Vec<String>, Error> {
        let meta = self.meta();
        let owner = format!("{}/{}", meta.namespace, meta.name);
        let old_spec = old.and_then(|o| o.spec.clone()).unwrap_or_default();
        let spec = self.spec.get_or_insert_with(ServiceSpec::default);
        let mut reserved = Vec::new();
        let result = allocate_spec(spec, &old_spec, &owner, alloc, &mut reserved).await;
        if let Err((path, err)) = result {
            alloc.release(&reserved).await;
            let name = self.meta().name.clone();
            return Err(match err {
                Error::BadRequest(msg) => Error::invalid("Service", &name, path, msg),
                other => other,
            });
        }
        Ok(reserved)
    }

    fn allocations(&self) -> Vec<String> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        if !spec.cluster_ip.is_empty() && spec.cluster_ip != "None" {
            keys.push(Allocator::ip_key(&spec.cluster_ip));
        }
        keys.extend(
            spec.ports
                .iter()
                .filter(|p| p.node_port != 0)
                .map(|p| Allocator::port_key(p.node_port)),
        );
        keys
    }
}

/// Reserves the spec's cluster IP and node ports; an error names the field.
async fn allocate_spec(
    spec: &mut ServiceSpec,
    old: &ServiceSpec,
    owner: &str,
    alloc: &Allocator,
    reserved: &mut Vec<String>,
) -> Result<(), (String, Error)> {
    let ip_error = |err| ("spec.clusterIP".to_string(), err);
    if spec.cluster_ip.is_empty() && !old.cluster_ip.is_empty() {
        spec.cluster_ip = old.cluster_ip.clone();
    }
    if spec.cluster_ip != "None"
        && (spec.cluster_ip.is_empty() || spec.cluster_ip != old.cluster_ip)
    {
        let wanted = match spec.cluster_ip.as_str() {
            "" => None,
            ip => Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| ip_error(Error::BadRequest(format!("invalid clusterIP {ip}"))))?,
            ),
        };
        let ip = alloc.reserve_ip(owner, wanted).await.map_err(ip_error)?;
        reserved.push(Allocator::ip_key(&ip.to_string()));
        spec.cluster_ip = ip.to_string();
    }
    spec.cluster_ips = if spec.cluster_ip.is_empty() {
        Vec::new()
    } else {
        vec![spec.cluster_ip.clone()]
    };
    if spec.r#type != "NodePort" {
        return Ok(());
    }
    let held: HashSet<i32> = old
        .ports
        .iter()
        .map(|p| p.node_port)
        .filter(|p| *p != 0)
        .collect();
    for (i, port) in spec.ports.iter_mut().enumerate() {
        if port.node_port == 0 {
            // Keep the node port this port already had.
            if let Some(prev) = old
                .ports
                .iter()
                .find(|p| p.port == port.port && p.protocol == port.protocol)
            {
                port.node_port = prev.node_port;
            }
        }
        if port.node_port != 0 && held.contains(&port.node_port) {
            continue;
        }
        let wanted = (port.node_port != 0).then_some(port.node_port);
        let got = alloc
            .reserve_port(owner, wanted)
            .await
            .map_err(|err| (format!("spec.ports[{i}].nodePort"), err))?;
        reserved.push(Allocator::port_key(got));
        port.node_port = got;
    }
    Ok(())
}
