//! The Docker side of the pod network: the cluster network (one Docker
//! picks, or the node's own range), sandboxes' addresses reserved in moor's
//! part of it and attached before their start, and the networks earlier
//! runs left behind.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{InspectContainerOptions, ListNetworksOptionsBuilder};
use ipnet::Ipv4Net;
use moor_hostnet::PodInterface;

use super::{Attachment, Docker, NodeSubnet, blocking, engine, hairpin, parse_time, status_of};
use crate::Error;
use crate::pod_network::{self, NODE_RANGE_LABEL, POD_IP_LABEL, POD_RANGE_LABEL, PodNetwork};

// === impl Docker ===

impl Docker {
    /// The network's moor addressing, when it has one.
    pub(super) fn pod_network(&self) -> Option<Arc<PodNetwork>> {
        self.pod_network
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The containers created but not yet started that still need a network.
    pub(super) fn unattached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attachment>> {
        self.unattached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the cluster network with a subnet Docker picks, split in two:
    /// Docker's `IPRange` (what it attaches itself, the gateway included)
    /// and moor's range for sandboxes (see [`crate::pod_network`]).
    ///
    /// Docker picks the subnet for a probe network first, away from the
    /// host's routes and other networks; another agent's probe may take the
    /// same subnet meanwhile, so a failed create tries again.
    pub(super) async fn create_network(&self, name: &str) -> Result<(), Error> {
        if let Some(subnet) = &self.subnet {
            return self.create_node_network(name, subnet).await;
        }
        let mut last = None;
        for _ in 0..3 {
            let probe = NetworkCreateRequest {
                name: format!("{name}-probe-{}", std::process::id()),
                driver: Some("bridge".into()),
                ..Default::default()
            };
            let probe = self.docker.create_network(probe).await.map_err(engine)?.id;
            let inspected = self.docker.inspect_network(&probe, None).await;
            if let Err(err) = self.docker.remove_network(&probe).await
                && status_of(&err) != Some(404)
            {
                return Err(engine(err));
            }
            let config = inspected
                .map_err(engine)?
                .ipam
                .and_then(|i| i.config)
                .and_then(|c| c.into_iter().next())
                .unwrap_or_default();
            let subnet: Option<Ipv4Net> = config.subnet.as_deref().and_then(|s| s.parse().ok());
            let Some((docker_range, pod_range)) = subnet.and_then(PodNetwork::split) else {
                return Err(Error::Engine(format!(
                    "Docker gave network {name} the subnet {:?}, which moor cannot split between Docker and pods",
                    config.subnet
                )));
            };
            let request = NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([
                    ("moor.network".into(), "true".into()),
                    (POD_RANGE_LABEL.into(), pod_range.to_string()),
                ])),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: config.subnet,
                        ip_range: Some(docker_range.to_string()),
                        gateway: config.gateway,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(created) => return self.keep_one_network(name, &created.id).await,
                Err(err) if status_of(&err) == Some(409) => return Ok(()),
                Err(err) => last = Some(engine(err)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Engine(format!("cannot create network {name}"))))
    }

    /// Creates the cluster network on the node's pod range (see
    /// [`Docker::connect_with`]).
    pub(super) async fn create_node_network(
        &self,
        name: &str,
        subnet: &NodeSubnet,
    ) -> Result<(), Error> {
        self.remove_earlier_networks(name, &subnet.node).await;
        let range = subnet.range.trunc();
        let (Some(gateway), Some((docker_range, pod_range))) =
            (range.hosts().next(), PodNetwork::split(range))
        else {
            return Err(Error::Engine(format!(
                "the pod range {range} is too small for a node (it needs a /29 or larger)"
            )));
        };
        let mut options = HashMap::from([(
            "com.docker.network.bridge.enable_ip_masquerade".to_owned(),
            "false".to_owned(),
        )]);
        if let Some(mtu) = subnet.mtu {
            options.insert("com.docker.network.driver.mtu".into(), mtu.to_string());
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            options: Some(options),
            labels: Some(HashMap::from([
                ("moor.network".into(), "true".into()),
                (POD_RANGE_LABEL.into(), pod_range.to_string()),
                (NODE_RANGE_LABEL.into(), range.to_string()),
                (crate::labels::NODE.into(), subnet.node.clone()),
            ])),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(range.to_string()),
                    ip_range: Some(docker_range.to_string()),
                    gateway: Some(gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(created) => self.keep_one_network(name, &created.id).await,
            Err(err) if status_of(&err) == Some(409) => Ok(()),
            Err(err) => Err(Error::Engine(format!(
                "creating network {name} on the node's pod range {range}: {}",
                engine(err)
            ))),
        }
    }

    /// Removes the networks node `node` made on earlier pod ranges (it was
    /// deleted and registered again) once no container uses them: their
    /// bridges would keep routes to ranges other nodes may now hold.
    pub(super) async fn remove_earlier_networks(&self, current: &str, node: &str) {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{}={node}", crate::labels::NODE),
                NODE_RANGE_LABEL.to_owned(),
            ],
        )]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let Ok(networks) = self.docker.list_networks(Some(options)).await else {
            return;
        };
        for network in networks {
            let (Some(id), Some(name)) = (network.id, network.name) else {
                continue;
            };
            if name == current {
                continue;
            }
            // Docker refuses to remove a network with containers on it.
            match self.docker.remove_network(&id).await {
                Ok(()) => {
                    tracing::info!(network = %name, "removed this node's network of an earlier pod range")
                }
                Err(err) => {
                    tracing::info!(network = %name, %err, "this node's network of an earlier pod range stays while containers use it")
                }
            }
        }
    }

    /// Releases the addresses of sandboxes that are gone (an agent stopped
    /// between a reservation and its container, or between a removal and
    /// its release), and the reservations of networks that are gone.
    pub(super) async fn release_orphans(&self, network: Arc<PodNetwork>) -> Result<(), Error> {
        let live: HashSet<String> = self
            .list_summaries(&[(crate::labels::SANDBOX, None)])
            .await?
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|name| name.trim_start_matches('/').to_owned())
            .collect();
        let networks: HashSet<String> = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(engine)?
            .into_iter()
            .filter_map(|n| n.id)
            .collect();
        let released = blocking(move || {
            pod_network::forget_removed_networks(&networks)?;
            network.release_orphans(&live, pod_network::ORPHAN_AGE)
        })
        .await?
        .map_err(|e| Error::Engine(format!("releasing addresses of removed sandboxes: {e}")))?;
        if released > 0 {
            tracing::info!(released, "released the addresses of removed sandboxes");
        }
        Ok(())
    }

    /// Reserves an address on `network` for sandbox `owner`.
    pub(super) async fn reserve(
        &self,
        network: &Arc<PodNetwork>,
        owner: &str,
    ) -> Result<Ipv4Addr, Error> {
        let (network, owner) = (network.clone(), owner.to_owned());
        blocking(move || network.reserve(&owner))
            .await?
            .map_err(|e| Error::Engine(format!("reserving a pod address: {e}")))
    }

    /// Joins a just-started container to the network as planned at its
    /// creation.
    pub(super) async fn attach(&self, id: &str, attachment: Attachment) -> Result<(), Error> {
        let pid = self.pid(id).await;
        match attachment {
            Attachment::Moor(network, ip) => {
                let interface = PodInterface {
                    host_name: format!("moor{}", id.get(..11).unwrap_or(id)),
                    bridge: network.bridge.clone(),
                    pid: pid?,
                    address: Ipv4Net::new(ip, network.subnet.prefix_len())
                        .map_err(|e| Error::Engine(e.to_string()))?,
                    gateway: network.gateway,
                };
                blocking(move || moor_hostnet::attach_pod(&interface))
                    .await?
                    .map_err(|e| Error::Engine(format!("attaching the pod network: {e}")))
            }
            // Best effort, as before moor attached sandboxes itself: a pod
            // that cannot reach itself through a service still runs, and a
            // container that already exited has no port left.
            Attachment::Docker => {
                let set = match pid {
                    Ok(pid) => hairpin(id, pid).await,
                    Err(err) => Err(err),
                };
                if let Err(err) = set {
                    tracing::debug!(%err, "cannot set hairpin mode on the container's bridge port");
                }
                Ok(())
            }
        }
    }

    /// The process id of running container `id`.
    pub(super) async fn pid(&self, id: &str) -> Result<u32, Error> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(engine)?
            .state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| Error::Engine(format!("container {id} is not running")))
    }

    /// The address and owner of the reservation `id` holds, from what this
    /// runtime has seen of it, else from the engine.
    pub(super) async fn reservation_of(&self, id: &str) -> Option<(Ipv4Addr, String)> {
        let from = |labels: &HashMap<String, String>, name: &str| {
            let ip = labels.get(POD_IP_LABEL)?.parse().ok()?;
            Some((ip, name.trim_start_matches('/').to_owned()))
        };
        if let Some(seen) = self.cached().get(id) {
            return from(&seen.info.labels, &seen.info.name);
        }
        let listed = self.listing.lock().await.as_ref().and_then(|l| {
            l.summaries
                .iter()
                .find(|c| c.id.as_deref() == Some(id))
                .map(|c| (c.labels.clone().unwrap_or_default(), c.names.clone()))
        });
        if let Some((labels, names)) = listed {
            let name = names.and_then(|n| n.into_iter().next()).unwrap_or_default();
            return from(&labels, &name);
        }
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        from(
            &inspect.config.and_then(|c| c.labels).unwrap_or_default(),
            inspect.name.as_deref().unwrap_or_default(),
        )
    }

    /// Another agent on this host may have created the network at the same
    /// time: the oldest one of the name wins, and ours goes if it lost.
    pub(super) async fn keep_one_network(&self, name: &str, ours: &str) -> Result<(), Error> {
        let filters = HashMap::from([("name".to_owned(), vec![format!("^{name}$")])]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut networks: Vec<(Option<SystemTime>, String)> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(engine)?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .map(|n| {
                (
                    n.created.as_deref().and_then(parse_time),
                    n.id.unwrap_or_default(),
                )
            })
            .collect();
        networks.sort();
        let winner = networks.first().map(|(_, id)| id.as_str());
        if winner.is_some_and(|w| w != ours) {
            tracing::info!(
                network = name,
                "another agent created the network first; using theirs"
            );
            match self.docker.remove_network(ours).await {
                Ok(()) => {}
                Err(err) if status_of(&err) == Some(404) => {}
                Err(err) => return Err(engine(err)),
            }
        }
        Ok(())
    }
}
