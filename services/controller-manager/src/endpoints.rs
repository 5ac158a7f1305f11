//! The endpoints controller: for each service with a selector, an Endpoints
//! object of the same name listing the selected pods' addresses, ready ones
//! in `addresses` and the rest in `notReadyAddresses`, with each service
//! port resolved per pod (a named targetPort looked up in the pod's
//! containers). Services without a selector keep hand-written endpoints.

use std::collections::BTreeMap;

use moor_api::Resource;
use moor_api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service, ServicePort,
};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{ObjectMeta, ObjectReference};
use moor_api::well_known::apiservers;
use moor_client::{Action, Api, Client, DeleteParams, ObjectKey, Reader};
use moor_labels::Selector;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{Change, Informer};
use crate::pods;
use crate::queue::{self, Queue, Worker};
use moor_client::events::Recorder;

/// Component name in logs.
const COMPONENT: &str = "endpoints-controller";

/// The service condition that reports target port names no selected pod has.
pub const PORTS_RESOLVED: &str = "TargetPortsResolved";

/// The endpoints controller.
pub struct Controller {
    api: Api<Endpoints>,
    service_api: Api<Service>,
    events: Recorder,
    services: Reader<Service>,
    pods: Reader<Pod>,
    endpoints: Reader<Endpoints>,
    queue: Queue<ObjectKey>,
    worker: Worker<ObjectKey>,
}

/// The ports of one subset, comparable so subsets group by them.
type PortsKey = Vec<(String, i32, String)>;

// === impl Controller ===

impl Controller {
    /// A controller reading from the given caches.
    pub fn new(
        client: &Client,
        services: Reader<Service>,
        pods: Reader<Pod>,
        endpoints: Reader<Endpoints>,
    ) -> Self {
        let (queue, worker) = queue::queue();
        Self {
            api: client.api(),
            service_api: client.api(),
            events: Recorder::new(client, COMPONENT),
            services,
            pods,
            endpoints,
            queue,
            worker,
        }
    }

    /// Subscribes to service, pod and endpoints changes.
    pub fn register(
        &self,
        services: &mut Informer<Service>,
        pods: &mut Informer<Pod>,
        endpoints: &mut Informer<Endpoints>,
    ) {
        let queue = self.queue.clone();
        services.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(ObjectKey::of(new)),
            Change::Deleted(service) => queue.add(ObjectKey::of(service)),
            Change::Restarted(all) => all.iter().for_each(|s| queue.add(ObjectKey::of(s))),
        });
        let queue = self.queue.clone();
        let cache = self.services.clone();
        pods.on_change(move |change| match change {
            Change::Applied { old, new } => {
                for pod in std::iter::once(new).chain(old) {
                    selecting_services(&cache, pod)
                        .into_iter()
                        .for_each(|k| queue.add(k));
                }
            }
            Change::Deleted(pod) => {
                selecting_services(&cache, pod)
                    .into_iter()
                    .for_each(|k| queue.add(k));
            }
            Change::Restarted(_) => {
                cache
                    .list()
                    .iter()
                    .for_each(|s| queue.add(ObjectKey::of(s.as_ref())));
            }
        });
        // Endpoints deleted by hand are written again; after a re-list,
        // leftovers of services deleted meanwhile are removed.
        let queue = self.queue.clone();
        endpoints.on_change(move |change| match change {
            Change::Applied { .. } => {}
            Change::Deleted(ep) => queue.add(ObjectKey::of(ep)),
            Change::Restarted(all) => all.iter().for_each(|e| queue.add(ObjectKey::of(e))),
        });
    }

    /// Reconciles services until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = async {
                self.services.wait_until_ready().await;
                self.pods.wait_until_ready().await;
                self.endpoints.wait_until_ready().await;
            } => {}
        }
        while let Some(key) = self.worker.next(&shutdown).await {
            let result = self.reconcile(&key).await;
            self.worker.done(key, result, COMPONENT);
        }
    }

    /// Writes one service's endpoints, or deletes them with the service.
    #[tracing::instrument(skip_all, fields(service = %key))]
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        let existing = self.endpoints.get_key(key);
        let Some(service) = self.services.get_key(key) else {
            // The apiservers' own (`default/kubernetes`) have no Service.
            let theirs = existing.as_ref().is_some_and(|e| {
                e.meta()
                    .labels
                    .get(apiservers::MANAGED_BY_LABEL)
                    .map(String::as_str)
                    == Some(apiservers::MANAGED_BY)
            });
            if existing.is_some() && !theirs {
                match self
                    .api
                    .delete(&key.namespace, &key.name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => tracing::info!("deleted endpoints of deleted service"),
                    Err(moor_client::Error::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Action::AwaitChange);
        };
        let Some(spec) = service.spec.as_ref().filter(|s| !s.selector.is_empty()) else {
            return Ok(Action::AwaitChange);
        };
        let selector = match Selector::from_match_labels(spec.selector.clone()) {
            Ok(selector) => selector,
            Err(error) => {
                tracing::warn!(%error, "service selector unusable; waiting for a change");
                return Ok(Action::AwaitChange);
            }
        };
        let pods: Vec<_> = self
            .pods
            .list()
            .into_iter()
            .filter(|p| p.meta().namespace == key.namespace && selector.matches(&p.meta().labels))
            .collect();
        self.report_ports(&service, &pods).await?;
        let subsets = subsets(&service, pods.iter().map(|p| p.as_ref()));
        let labels = service.meta().labels.clone();
        match existing {
            Some(current) if current.subsets == subsets && current.meta().labels == labels => {}
            Some(current) => {
                let mut updated = current.as_ref().clone();
                updated.subsets = subsets;
                updated.meta_mut().labels = labels;
                self.api.update(&updated).await?;
            }
            None => {
                let endpoints = Endpoints {
                    metadata: Some(ObjectMeta {
                        name: key.name.clone(),
                        namespace: key.namespace.clone(),
                        labels,
                        ..Default::default()
                    }),
                    subsets,
                    ..Default::default()
                };
                self.api.create(&endpoints).await?;
            }
        }
        Ok(Action::AwaitChange)
    }
}

// === impl Controller (port report) ===

impl Controller {
    /// Keeps the service's TargetPortsResolved condition (present and False
    /// only while a named target port matches none of the selected pods)
    /// and records a Warning event when the problem appears or changes.
    async fn report_ports(
        &self,
        service: &Service,
        pods: &[std::sync::Arc<Pod>],
    ) -> Result<(), Error> {
        let problems = unresolved_ports(service, pods.iter().map(|p| p.as_ref()));
        let conditions = service
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let current = conditions.iter().find(|c| c.r#type == PORTS_RESOLVED);
        let message = problems.join("; ");
        let unchanged = match current {
            None => problems.is_empty(),
            Some(c) => !problems.is_empty() && c.message == message,
        };
        if unchanged {
            return Ok(());
        }
        let mut updated = service.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.conditions.retain(|c| c.r#type != PORTS_RESOLVED);
        if !problems.is_empty() {
            status.conditions.push(moor_api::meta::v1::Condition {
                r#type: PORTS_RESOLVED.to_string(),
                status: "False".to_string(),
                reason: "PortNameNotFound".to_string(),
                message: message.clone(),
                last_transition_time: Some(pods::now()),
                ..Default::default()
            });
        }
        match self.service_api.update_status(&updated).await {
            Ok(_) => {}
            // The service changed meanwhile: its next reconcile reports.
            Err(moor_client::Error::Conflict(_) | moor_client::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if !problems.is_empty() {
            tracing::warn!(%message, "service target ports do not resolve");
            self.events.warning(service, "PortNameNotFound", message);
        }
        Ok(())
    }
}

/// The named target ports of `service` that none of its selected, running
/// pods declares, each as a message naming the field.
pub fn unresolved_ports<'a>(
    service: &Service,
    pods: impl Iterator<Item = &'a Pod> + Clone,
) -> Vec<String> {
    let spec = service.spec.clone().unwrap_or_default();
    let live: Vec<&Pod> = pods.filter(|p| pods::is_active(p)).collect();
    if live.is_empty() {
        return Vec::new();
    }
    spec.ports
        .iter()
        .enumerate()
        .filter_map(|(i, port)| {
            let Some(Value::StrVal(name)) = port.target_port.as_ref().and_then(|t| t.value.as_ref())
            else {
                return None;
            };
            if live.iter().any(|pod| resolve_port(port, pod).is_some()) {
                return None;
            }
            let mut names: Vec<&str> = live.iter().map(|p| p.meta().name.as_str()).collect();
            names.sort_unstable();
            let more = names.len().saturating_sub(3);
            names.truncate(3);
            let suffix = if more > 0 { format!(" and {more} more") } else { String::new() };
            Some(format!(
                "spec.ports[{i}].targetPort {name:?} is not a {} container port of any selected pod ({}{suffix})",
                protocol(port),
                names.join(", ")
            ))
        })
        .collect()
}

/// Services in `pod`'s namespace whose selector matches it.
fn selecting_services(services: &Reader<Service>, pod: &Pod) -> Vec<ObjectKey> {
    let meta = pod.meta();
    services
        .list()
        .iter()
        .filter(|s| s.meta().namespace == meta.namespace)
        .filter(|s| {
            s.spec.as_ref().is_some_and(|spec| {
                !spec.selector.is_empty()
                    && spec
                        .selector
                        .iter()
                        .all(|(k, v)| meta.labels.get(k) == Some(v))
            })
        })
        .map(|s| ObjectKey::of(s.as_ref()))
        .collect()
}

/// The subsets for `service` over its selected `pods`: pods grouped by
/// their resolved ports, addresses sorted by IP.
pub fn subsets<'a>(service: &Service, pods: impl Iterator<Item = &'a Pod>) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let mut groups: BTreeMap<PortsKey, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        let ip = pod.status.as_ref().map_or("", |s| s.pod_ip.as_str());
        let terminating = pod.meta().deletion_timestamp.is_some();
        if ip.is_empty() || (terminating && !spec.publish_not_ready_addresses) {
            continue;
        }
        if pods::is_finished(pod) {
            continue;
        }
        let ports: PortsKey = spec
            .ports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, pod).map(|port| (sp.name.clone(), port, protocol(sp)))
            })
            .collect();
        if !spec.ports.is_empty() && ports.is_empty() {
            tracing::debug!(pod = %pod.meta().name, "no service port resolves on this pod; skipped");
            continue;
        }
        let address = address(pod, ip, &service.meta().name);
        let (ready, not_ready) = groups.entry(ports).or_default();
        if spec.publish_not_ready_addresses || pods::is_ready(pod) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut addresses, mut not_ready_addresses))| {
            addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready_addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses,
                not_ready_addresses,
                ports: ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name,
                        port,
                        protocol,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The pod port a service port sends to: a number as is, a name looked up
/// in the pod's containers, unset meaning the service port itself.
fn resolve_port(service_port: &ServicePort, pod: &Pod) -> Option<i32> {
    match service_port
        .target_port
        .as_ref()
        .and_then(|t| t.value.as_ref())
    {
        Some(Value::IntVal(port)) if *port > 0 => Some(*port),
        Some(Value::StrVal(name)) if !name.is_empty() => {
            let protocol = protocol(service_port);
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| &p.name == name && port_protocol(&p.protocol) == protocol)
                .map(|p| p.container_port)
        }
        _ => Some(service_port.port),
    }
}

fn protocol(port: &ServicePort) -> String {
    port_protocol(&port.protocol)
}

fn port_protocol(protocol: &str) -> String {
    if protocol.is_empty() {
        "TCP".to_string()
    } else {
        protocol.to_string()
    }
}

fn address(pod: &Pod, ip: &str, service: &str) -> EndpointAddress {
    let meta = pod.meta();
    let node = pod.spec.as_ref().map_or("", |s| s.node_name.as_str());
    // A pod whose subdomain is this service is named by its hostname in
    // the service's DNS, as in Kubernetes.
    let hostname = pod
        .spec
        .as_ref()
        .filter(|s| s.subdomain == service)
        .map(|s| s.hostname.clone())
        .unwrap_or_default();
    EndpointAddress {
        ip: ip.to_string(),
        hostname,
        node_name: (!node.is_empty()).then(|| node.to_string()),
        target_ref: Some(ObjectReference {
            kind: Pod::KIND.to_string(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{Container, ContainerPort, PodSpec, PodStatus, ServiceSpec};
    use moor_api::meta::v1::{Condition, IntOrString};

    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    ports: vec![ContainerPort {
                        name: port_name.into(),
                        container_port: port,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.into(),
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn groups_by_resolved_port_and_readiness() {
        let service = Service {
            spec: Some(ServiceSpec {
                ports: vec![ServicePort {
                    name: "http".into(),
                    port: 80,
                    target_port: Some(IntOrString {
                        value: Some(Value::StrVal("web".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = [
            pod("a", "10.0.0.2", true, "web", 8080),
            pod("b", "10.0.0.1", false, "web", 8080),
            pod("c", "10.0.0.3", true, "web", 9090),
            pod("d", "10.0.0.4", true, "other", 1),
            pod("e", "", true, "web", 8080),
        ];
        let subsets = subsets(&service, pods.iter());
        assert_eq!(subsets.len(), 2);
        assert_eq!(subsets[0].ports[0].port, 8080);
        assert_eq!(subsets[0].addresses[0].ip, "10.0.0.2");
        assert_eq!(subsets[0].not_ready_addresses[0].ip, "10.0.0.1");
        assert_eq!(subsets[1].ports[0].port, 9090);
        assert_eq!(subsets[1].addresses[0].ip, "10.0.0.3");
    }

    fn named_service(target: &str) -> Service {
        Service {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                ports: vec![ServicePort {
                    name: "http".into(),
                    port: 80,
                    target_port: Some(IntOrString {
                        value: Some(Value::StrVal(target.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_port_name_no_selected_pod_has_is_reported_with_its_field() {
        let pods = [
            pod("b", "10.0.0.2", true, "web", 8080),
            pod("a", "10.0.0.1", true, "web", 8080),
        ];
        let problems = unresolved_ports(&named_service("htttp"), pods.iter());
        assert_eq!(
            problems,
            vec![
                "spec.ports[0].targetPort \"htttp\" is not a TCP container port of any selected pod (a, b)"
                    .to_string()
            ]
        );
        // One pod declaring it is enough; no pods, nothing to report.
        let mixed = [
            pod("a", "10.0.0.1", true, "web", 8080),
            pod("c", "10.0.0.3", true, "htttp", 1),
        ];
        assert!(unresolved_ports(&named_service("htttp"), mixed.iter()).is_empty());
        assert!(unresolved_ports(&named_service("htttp"), [].iter()).is_empty());
    }

    #[test]
    fn a_pod_in_the_services_subdomain_is_named_by_its_hostname() {
        let mut named = pod("a", "10.0.0.1", true, "web", 8080);
        if let Some(spec) = named.spec.as_mut() {
            spec.hostname = "db-0".into();
            spec.subdomain = "web".into();
        }
        let mut elsewhere = pod("b", "10.0.0.2", true, "web", 8080);
        if let Some(spec) = elsewhere.spec.as_mut() {
            spec.hostname = "db-1".into();
            spec.subdomain = "other".into();
        }
        let subsets = subsets(&named_service("web"), [named, elsewhere].iter());
        let hostnames: Vec<&str> = subsets[0]
            .addresses
            .iter()
            .map(|a| a.hostname.as_str())
            .collect();
        assert_eq!(hostnames, vec!["db-0", ""]);
    }
}
