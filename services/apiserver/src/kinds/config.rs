//! Strategies of config maps, secrets, events, endpoints and leases.

use moor_api::coordination::v1::Lease;
use moor_api::core::v1::{ConfigMap, Endpoints, Event, Secret};

use super::{Kind, require};
use crate::validate::{Errors, sorted};

/// Keys of config maps and secrets: Kubernetes' `[-._a-zA-Z0-9]+`, at most 253.
fn data_key(errors: &mut Errors, path: &str, key: &str) {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        errors.invalid(
            format!("{path}[{key}]"),
            key,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        );
    }
}

fn immutable_changed(old: Option<bool>) -> bool {
    old == Some(true)
}

impl Kind for ConfigMap {
    fn prepare_create(&mut self) {}

    fn validate(&self, old: Option<&Self>, errors: &mut Errors) {
        for (key, _) in sorted(&self.data) {
            data_key(errors, "data", key);
        }
        for (key, _) in sorted(&self.binary_data) {
            data_key(errors, "binaryData", key);
            if self.data.contains_key(key) {
                errors.invalid(
                    format!("binaryData[{key}]"),
                    key,
                    "duplicate of key present in data",
                );
            }
        }
        if let Some(old) = old
            && immutable_changed(old.immutable)
            && (old.data != self.data || old.binary_data != self.binary_data)
        {
            errors.add(
                "data",
                "Forbidden: field is immutable when `immutable` is set",
            );
        }
    }
}

impl Kind for Secret {
    fn prepare_create(&mut self) {}

    fn set_defaults(&mut self) {
        if self.r#type.is_empty() {
            self.r#type = "Opaque".to_string();
        }
        // stringData is write-only: merged into data, never stored.
        for (key, value) in std::mem::take(&mut self.string_data) {
            self.data.insert(key, value.into_bytes());
        }
    }

    fn validate(&self, old: Option<&Self>, errors: &mut Errors) {
        for (key, _) in sorted(&self.data) {
            data_key(errors, "data", key);
        }
        // Registry credentials (image pull secrets) must carry their key, as
        // in Kubernetes; what the JSON says is the node agent's to judge.
        let required = match self.r#type.as_str() {
            "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
            "kubernetes.io/dockercfg" => Some(".dockercfg"),
            _ => None,
        };
        if let Some(key) = required
            && !self.data.contains_key(key)
        {
            errors.required(format!("data[{key}]"));
        }
        if let Some(old) = old {
            if old.r#type != self.r#type {
                errors.add("type", "Invalid value: field is immutable");
            }
            if immutable_changed(old.immutable) && old.data != self.data {
                errors.add(
                    "data",
                    "Forbidden: field is immutable when `immutable` is set",
                );
            }
        }
    }
}

impl Kind for Event {
    fn prepare_create(&mut self) {}

    fn set_defaults(&mut self) {
        if self.r#type.is_empty() {
            self.r#type = "Normal".to_string();
        }
        if self.count == 0 {
            self.count = 1;
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut Errors) {
        let object = self.involved_object.clone().unwrap_or_default();
        require(errors, "involvedObject.kind", &object.kind);
        require(errors, "involvedObject.name", &object.name);
        if !matches!(self.r#type.as_str(), "Normal" | "Warning") {
            errors.unsupported("type", &self.r#type, &["Normal", "Warning"]);
        }
        require(errors, "reason", &self.reason);
    }
}

impl Kind for Endpoints {
    fn prepare_create(&mut self) {}

    fn set_defaults(&mut self) {
        for subset in &mut self.subsets {
            for port in &mut subset.ports {
                if port.protocol.is_empty() {
                    port.protocol = "TCP".to_string();
                }
            }
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut Errors) {
        for (i, subset) in self.subsets.iter().enumerate() {
            let addresses = subset.addresses.iter().chain(&subset.not_ready_addresses);
            for (j, address) in addresses.enumerate() {
                if address.ip.parse::<std::net::IpAddr>().is_err() {
                    errors.invalid(
                        format!("subsets[{i}].addresses[{j}].ip"),
                        &address.ip,
                        "must be a valid IP address",
                    );
                }
            }
            for (j, port) in subset.ports.iter().enumerate() {
                errors.port(&format!("subsets[{i}].ports[{j}].port"), port.port);
                errors.protocol(&format!("subsets[{i}].ports[{j}].protocol"), &port.protocol);
            }
        }
    }
}

impl Kind for Lease {
    fn prepare_create(&mut self) {}

    fn validate(&self, _old: Option<&Self>, errors: &mut Errors) {
        if let Some(spec) = &self.spec
            && spec.lease_duration_seconds.is_some_and(|d| d <= 0)
        {
            errors.invalid(
                "spec.leaseDurationSeconds",
                spec.lease_duration_seconds.unwrap_or(0),
                "must be greater than 0",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_errors(kind: &str, key: &str) -> String {
        let secret = Secret {
            r#type: kind.into(),
            data: [(key.to_owned(), b"{}".to_vec())].into(),
            ..Default::default()
        };
        let mut errors = Errors::default();
        secret.validate(None, &mut errors);
        match errors.into_result("Secret", "s") {
            Ok(()) => String::new(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn registry_credentials_carry_their_key() {
        assert_eq!(
            secret_errors("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
            ""
        );
        assert_eq!(secret_errors("kubernetes.io/dockercfg", ".dockercfg"), "");
        assert_eq!(secret_errors("Opaque", "x"), "");
        let err = secret_errors("kubernetes.io/dockerconfigjson", ".dockercfg");
        assert!(
            err.contains("data[.dockerconfigjson]: Required value"),
            "{err}"
        );
        let err = secret_errors("kubernetes.io/dockercfg", "x");
        assert!(err.contains("data[.dockercfg]: Required value"), "{err}");
    }
}
