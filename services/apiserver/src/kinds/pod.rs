//! The pod strategy: defaults, validation, and what may change on update.

use std::collections::HashSet;

use moor_api::core::v1::{Container, Pod, PodSpec, PodStatus, Probe};
use moor_api::meta::v1::int_or_string::Value;

use super::{Kind, require};
use crate::validate::Errors;

/// Grace period of a pod that does not set one, as in Kubernetes.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

impl Kind for Pod {
    fn prepare_create(&mut self) {
        self.status = Some(PodStatus {
            phase: "Pending".to_string(),
            ..Default::default()
        });
    }

    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(PodSpec::default);
        defaults(spec);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut Errors) {
        let Some(spec) = &self.spec else {
            errors.required("spec");
            return;
        };
        validate_spec(spec, "spec", errors);
        if let (Some(old), Some(old_spec)) = (old, old.and_then(|o| o.spec.as_ref())) {
            if let Some(hash) = mirror_hash(old) {
                // A static pod runs from its node's manifest; its mirror only shows it.
                if old_spec != spec {
                    errors.add(
                        "spec",
                        "Forbidden: a mirror pod cannot be edited; change the static pod's manifest on its node",
                    );
                }
                if mirror_hash(self) != Some(hash) {
                    errors.add(
                        format!("metadata.annotations[{MIRROR_ANNOTATION}]"),
                        "Forbidden: may not be changed on a mirror pod",
                    );
                }
            }
            if !only_mutable_fields_changed(old_spec, spec) {
                errors.add(
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, \
                     `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions)",
                );
            }
        }
    }

    fn graceful_deletion(&self) -> Option<i64> {
        let spec = self.spec.as_ref()?;
        // An unbound pod has no node agent to confirm its end: remove it at once.
        if spec.node_name.is_empty() {
            return None;
        }
        Some(
            spec.termination_grace_period_seconds
                .unwrap_or(DEFAULT_GRACE_SECONDS),
        )
    }
}

/// Kubernetes' pod defaults.
pub fn defaults(spec: &mut PodSpec) {
    if spec.restart_policy.is_empty() {
        spec.restart_policy = "Always".to_string();
    }
    if spec.dns_policy.is_empty() {
        spec.dns_policy = "ClusterFirst".to_string();
    }
    if spec.scheduler_name.is_empty() {
        spec.scheduler_name = "default-scheduler".to_string();
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_GRACE_SECONDS);
    }
    for container in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        container_defaults(container);
    }
}

fn container_defaults(c: &mut Container) {
    if c.image_pull_policy.is_empty() {
        c.image_pull_policy = if image_tag(&c.image).is_none_or(|t| t == "latest") {
            "Always".to_string()
        } else {
            "IfNotPresent".to_string()
        };
    }
    for port in &mut c.ports {
        if port.protocol.is_empty() {
            port.protocol = "TCP".to_string();
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe_defaults(probe);
    }
}

fn probe_defaults(p: &mut Probe) {
    if p.timeout_seconds == 0 {
        p.timeout_seconds = 1;
    }
    if p.period_seconds == 0 {
        p.period_seconds = 10;
    }
    if p.success_threshold == 0 {
        p.success_threshold = 1;
    }
    if p.failure_threshold == 0 {
        p.failure_threshold = 3;
    }
    if let Some(http) = &mut p.http_get {
        if http.path.is_empty() {
            http.path = "/".to_string();
        }
        if http.scheme.is_empty() {
            http.scheme = "HTTP".to_string();
        }
    }
}

/// The tag of an image reference, if it has one (a digest counts as pinned).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("digest");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag)
}

/// Validates a pod spec; `path` is where it sits ("spec", "spec.template.spec").
use moor_api::well_known::MIRROR_ANNOTATION;

/// The manifest hash of a mirror pod; `None` for other pods.
fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .as_ref()?
        .annotations
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

pub fn validate_spec(spec: &PodSpec, path: &str, errors: &mut Errors) {
    let mut volumes = HashSet::new();
    for (i, volume) in spec.volumes.iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        errors.dns_label(&format!("{vpath}.name"), &volume.name);
        if !volumes.insert(volume.name.as_str()) {
            errors.add(
                format!("{vpath}.name"),
                format!("Duplicate value: \"{}\"", volume.name),
            );
        }
        let sources = [
            volume.empty_dir.is_some(),
            volume.host_path.is_some(),
            volume.config_map.is_some(),
            volume.secret.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => errors.add(vpath.clone(), "Required value: must specify a volume type"),
            1 => {}
            _ => errors.add(
                vpath.clone(),
                "Forbidden: may not specify more than 1 volume type",
            ),
        }
        if let Some(host) = &volume.host_path
            && !host.path.starts_with('/')
        {
            errors.invalid(
                format!("{vpath}.hostPath.path"),
                &host.path,
                "must be an absolute path",
            );
        }
        if let Some(cm) = &volume.config_map {
            require(errors, &format!("{vpath}.configMap.name"), &cm.name);
        }
        if let Some(secret) = &volume.secret {
            require(
                errors,
                &format!("{vpath}.secret.secretName"),
                &secret.secret_name,
            );
        }
    }
    if spec.containers.is_empty() {
        errors.required(format!("{path}.containers"));
    }
    let mut names = HashSet::new();
    let all = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{path}.initContainers[{i}]"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{path}.containers[{i}]"), c)),
        );
    for (cpath, container) in all {
        errors.dns_label(&format!("{cpath}.name"), &container.name);
        if !container.name.is_empty() && !names.insert(container.name.as_str()) {
            errors.add(
                format!("{cpath}.name"),
                format!("Duplicate value: \"{}\"", container.name),
            );
        }
        validate_container(container, &cpath, &volumes, errors);
    }
    if !matches!(
        spec.restart_policy.as_str(),
        "Always" | "OnFailure" | "Never"
    ) {
        errors.unsupported(
            format!("{path}.restartPolicy"),
            &spec.restart_policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    if !matches!(
        spec.dns_policy.as_str(),
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
    ) {
        errors.unsupported(
            format!("{path}.dnsPolicy"),
            &spec.dns_policy,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        );
    }
    if spec.termination_grace_period_seconds.is_some_and(|g| g < 0) {
        errors.invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            spec.termination_grace_period_seconds.unwrap_or(0),
            "must be >= 0",
        );
    }
    errors.labels(&format!("{path}.nodeSelector"), &spec.node_selector);
    for (i, t) in spec.tolerations.iter().enumerate() {
        let tpath = format!("{path}.tolerations[{i}]");
        if !matches!(t.operator.as_str(), "" | "Equal" | "Exists") {
            errors.unsupported(
                format!("{tpath}.operator"),
                &t.operator,
                &["Equal", "Exists"],
            );
        }
        if t.operator == "Exists" && !t.value.is_empty() {
            errors.invalid(
                format!("{tpath}.value"),
                &t.value,
                "value must be empty when `operator` is 'Exists'",
            );
        }
        if !matches!(
            t.effect.as_str(),
            "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            errors.unsupported(
                format!("{tpath}.effect"),
                &t.effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            );
        }
    }
}

fn validate_container(c: &Container, path: &str, volumes: &HashSet<&str>, errors: &mut Errors) {
    if c.image.trim().is_empty() {
        errors.required(format!("{path}.image"));
    }
    let mut port_names = HashSet::new();
    for (j, port) in c.ports.iter().enumerate() {
        let ppath = format!("{path}.ports[{j}]");
        errors.port(&format!("{ppath}.containerPort"), port.container_port);
        if port.host_port != 0 {
            errors.port(&format!("{ppath}.hostPort"), port.host_port);
        }
        errors.protocol(&format!("{ppath}.protocol"), &port.protocol);
        if !port.name.is_empty() {
            if port.name.len() > 15 || !port.name.chars().any(|ch| ch.is_ascii_lowercase()) {
                errors.invalid(
                    format!("{ppath}.name"),
                    &port.name,
                    "must be no more than 15 characters and contain at least one letter",
                );
            } else if let Err(why) = moor_labels::validation::dns1123_label(&port.name) {
                errors.invalid(format!("{ppath}.name"), &port.name, why);
            }
            if !port_names.insert(port.name.as_str()) {
                errors.add(
                    format!("{ppath}.name"),
                    format!("Duplicate value: \"{}\"", port.name),
                );
            }
        }
    }
    for (j, env) in c.env.iter().enumerate() {
        let epath = format!("{path}.env[{j}]");
        let ok = !env.name.is_empty()
            && !env.name.starts_with(|ch: char| ch.is_ascii_digit())
            && env
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
        if !ok {
            errors.invalid(format!("{epath}.name"), &env.name, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit");
        }
        if let Some(from) = &env.value_from {
            if !env.value.is_empty() {
                errors.add(
                    format!("{epath}.valueFrom"),
                    "Invalid value: may not be specified when `value` is not empty",
                );
            }
            let set = [
                from.field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                errors.add(
                    format!("{epath}.valueFrom"),
                    "Invalid value: may not have more than one field specified at a time",
                );
            }
            if let Some(field) = &from.field_ref {
                const FIELDS: &[&str] = &[
                    "metadata.name",
                    "metadata.namespace",
                    "metadata.uid",
                    "spec.nodeName",
                    "spec.serviceAccountName",
                    "status.hostIP",
                    "status.podIP",
                    "status.podIPs",
                ];
                let label_or_annotation = field.field_path.starts_with("metadata.labels[")
                    || field.field_path.starts_with("metadata.annotations[");
                if !FIELDS.contains(&field.field_path.as_str()) && !label_or_annotation {
                    errors.unsupported(
                        format!("{epath}.valueFrom.fieldRef.fieldPath"),
                        &field.field_path,
                        FIELDS,
                    );
                }
            }
        }
    }
    for (j, mount) in c.volume_mounts.iter().enumerate() {
        let mpath = format!("{path}.volumeMounts[{j}]");
        if !volumes.contains(mount.name.as_str()) {
            errors.add(
                format!("{mpath}.name"),
                format!("Not found: \"{}\"", mount.name),
            );
        }
        if mount.mount_path.is_empty() {
            errors.required(format!("{mpath}.mountPath"));
        }
    }
    if !matches!(
        c.image_pull_policy.as_str(),
        "Always" | "IfNotPresent" | "Never"
    ) {
        errors.unsupported(
            format!("{path}.imagePullPolicy"),
            &c.image_pull_policy,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    for (name, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(probe) = probe {
            validate_probe(probe, &format!("{path}.{name}"), errors);
        }
    }
    if let Some(resources) = &c.resources {
        for (kind, map) in [
            ("limits", &resources.limits),
            ("requests", &resources.requests),
        ] {
            for (key, value) in crate::validate::sorted(map) {
                let field = format!("{path}.resources.{kind}[{key}]");
                match moor_quantity::parse(value) {
                    None => errors.invalid(
                        field,
                        value,
                        "must be a quantity such as 500m, 1, 128Mi or 1Gi",
                    ),
                    Some(milli) if milli < 0 => {
                        errors.invalid(field, value, "must be greater than or equal to 0");
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

fn validate_probe(p: &Probe, path: &str, errors: &mut Errors) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => errors.add(path, "Required value: must specify a handler type"),
        1 => {}
        _ => errors.add(path, "Forbidden: may not specify more than 1 handler type"),
    }
    let port = p
        .http_get
        .as_ref()
        .and_then(|h| h.port.as_ref())
        .or(p.tcp_socket.as_ref().and_then(|t| t.port.as_ref()));
    if (p.http_get.is_some() || p.tcp_socket.is_some())
        && port.and_then(|v| v.value.as_ref()).is_none()
    {
        errors.required(format!("{path}.port"));
    }
    if let Some(Some(Value::IntVal(n))) = port.map(|v| v.value.as_ref()) {
        errors.port(&format!("{path}.port"), *n);
    }
    if p.exec.as_ref().is_some_and(|e| e.command.is_empty()) {
        errors.required(format!("{path}.exec.command"));
    }
}

/// Kubernetes lets an update change only images, the active deadline and add
/// tolerations: everything else about a pod is fixed once it exists.
fn only_mutable_fields_changed(old: &PodSpec, new: &PodSpec) -> bool {
    let mut a = old.clone();
    let mut b = new.clone();
    for (x, y) in a.containers.iter_mut().zip(b.containers.iter_mut()) {
        x.image = y.image.clone();
    }
    for (x, y) in a
        .init_containers
        .iter_mut()
        .zip(b.init_containers.iter_mut())
    {
        x.image = y.image.clone();
    }
    a.active_deadline_seconds = b.active_deadline_seconds;
    let additions_only = old.tolerations.iter().all(|t| new.tolerations.contains(t));
    a.tolerations = b.tolerations.clone();
    // nodeName is set by bind only.
    b.node_name = a.node_name.clone();
    additions_only && a == b && old.node_name == new.node_name
}
