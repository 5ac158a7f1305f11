//! Each apiserver publishes where it is reached, so that a client given one
//! server learns the others and can move to them when it dies, as
//! Kubernetes' lease endpoint reconciler keeps `default/kubernetes`: every
//! apiserver renews a Lease of its own in moor-system and writes, from the
//! Leases still live, the Endpoints `default/kubernetes`. Every apiserver
//! computes the same set, so which one writes it does not matter; one that
//! stops deletes its Lease first, and one that dies drops out when its
//! Lease lapses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moor_api::coordination::v1::{Lease, LeaseSpec};
use moor_api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use moor_api::meta::v1::{DeleteRequest, GetRequest, ListRequest, ObjectMeta};
use moor_api::well_known::apiservers;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::registry::{Part, Registry};

/// How often an apiserver renews its Lease and checks the Endpoints.
const RENEW: Duration = Duration::from_secs(10);
/// How long a Lease lasts without renewal.
const LEASE_SECONDS: i32 = 30;

/// Publishes `address` until `shutdown`, then withdraws it.
pub(crate) async fn publish(
    address: SocketAddr,
    leases: Arc<Registry<Lease>>,
    endpoints: Arc<Registry<Endpoints>>,
    shutdown: CancellationToken,
) {
    let name = format!(
        "{}{}",
        apiservers::LEASE_PREFIX,
        address
            .to_string()
            .replace(['[', ']'], "")
            .replace([':', '.'], "-")
    );
    loop {
        if let Err(err) = renew(&leases, &name, address).await {
            tracing::warn!(%err, "cannot renew this apiserver's lease");
        }
        if let Err(err) = reconcile(&leases, &endpoints).await {
            tracing::debug!(%err, "cannot write the apiservers' endpoints; next round");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
    let request = DeleteRequest {
        namespace: apiservers::LEASE_NAMESPACE.to_string(),
        name,
        ..Default::default()
    };
    if let Err(err) = leases.delete(&request).await {
        tracing::debug!(%err, "cannot delete this apiserver's lease");
    }
    if let Err(err) = reconcile(&leases, &endpoints).await {
        tracing::debug!(%err, "cannot withdraw this apiserver from the endpoints");
    }
}

/// Creates or renews this apiserver's Lease.
async fn renew(leases: &Registry<Lease>, name: &str, address: SocketAddr) -> Result<(), Error> {
    let now = prost_types::Timestamp::from(SystemTime::now());
    let request = GetRequest {
        namespace: apiservers::LEASE_NAMESPACE.to_string(),
        name: name.to_string(),
    };
    match leases.get(&request).await {
        Ok(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(address.to_string());
            spec.lease_duration_seconds = Some(LEASE_SECONDS);
            leases.update(lease, Part::Main).await.map(drop)
        }
        Err(Error::NotFound { .. }) => {
            let mut meta = ObjectMeta {
                namespace: apiservers::LEASE_NAMESPACE.to_string(),
                name: name.to_string(),
                ..Default::default()
            };
            meta.labels
                .insert(apiservers::LEASE_LABEL.to_string(), "true".to_string());
            let mut lease = Lease {
                metadata: Some(meta),
                spec: Some(LeaseSpec {
                    holder_identity: Some(address.to_string()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    ..Default::default()
                }),
                ..Default::default()
            };
            moor_api::Resource::set_type_meta(&mut lease);
            leases.create(lease).await.map(drop)
        }
        Err(err) => Err(err),
    }
}

/// Writes the addresses of the apiservers with a live Lease to the
/// Endpoints, if they differ.
async fn reconcile(leases: &Registry<Lease>, endpoints: &Registry<Endpoints>) -> Result<(), Error> {
    let listed = leases
        .list(&ListRequest {
            namespace: apiservers::LEASE_NAMESPACE.to_string(),
            label_selector: format!("{}=true", apiservers::LEASE_LABEL),
            ..Default::default()
        })
        .await?;
    let now = SystemTime::now();
    let mut live: Vec<SocketAddr> = listed
        .items
        .iter()
        .filter_map(|lease| {
            let spec = lease.spec.as_ref()?;
            let renewed = SystemTime::try_from(spec.renew_time?).ok()?;
            let lasts = Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?);
            let address = spec.holder_identity.as_deref()?.parse().ok()?;
            (renewed + lasts > now).then_some(address)
        })
        .collect();
    live.sort();
    live.dedup();
    let subsets = subsets(&live);
    let request = GetRequest {
        namespace: apiservers::ENDPOINTS_NAMESPACE.to_string(),
        name: apiservers::ENDPOINTS_NAME.to_string(),
    };
    let ours = |e: &Endpoints| {
        e.metadata
            .as_ref()
            .and_then(|m| m.labels.get(apiservers::MANAGED_BY_LABEL))
            .is_some_and(|v| v == apiservers::MANAGED_BY)
    };
    match endpoints.get(&request).await {
        Ok(current) if current.subsets == subsets && ours(&current) => Ok(()),
        Ok(mut current) => {
            current.subsets = subsets;
            current
                .metadata
                .get_or_insert_with(ObjectMeta::default)
                .labels
                .insert(
                    apiservers::MANAGED_BY_LABEL.to_string(),
                    apiservers::MANAGED_BY.to_string(),
                );
            endpoints.update(current, Part::Main).await.map(drop)
        }
        Err(Error::NotFound { .. }) => {
            let mut meta = ObjectMeta {
                namespace: apiservers::ENDPOINTS_NAMESPACE.to_string(),
                name: apiservers::ENDPOINTS_NAME.to_string(),
                ..Default::default()
            };
            meta.labels.insert(
                apiservers::MANAGED_BY_LABEL.to_string(),
                apiservers::MANAGED_BY.to_string(),
            );
            let mut object = Endpoints {
                metadata: Some(meta),
                subsets,
                ..Default::default()
            };
            moor_api::Resource::set_type_meta(&mut object);
            endpoints.create(object).await.map(drop)
        }
        Err(err) => Err(err),
    }
}

/// One subset per port, addresses sorted (`live` is).
fn subsets(live: &[SocketAddr]) -> Vec<EndpointSubset> {
    let mut ports: Vec<u16> = live.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .map(|port| EndpointSubset {
            addresses: live
                .iter()
                .filter(|a| a.port() == port)
                .map(|a| EndpointAddress {
                    ip: a.ip().to_string(),
                    ..Default::default()
                })
                .collect(),
            ports: vec![EndpointPort {
                name: "https".to_string(),
                port: i32::from(port),
                protocol: "TCP".to_string(),
            }],
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subset_per_port_with_its_addresses() {
        let live: Vec<SocketAddr> = ["10.0.0.1:6443", "10.0.0.2:6443", "127.0.0.1:7000"]
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect();
        let subsets = subsets(&live);
        assert_eq!(subsets.len(), 2);
        let ips: Vec<&str> = subsets[0].addresses.iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(subsets[0].ports[0].port, 6443);
        assert_eq!(subsets[1].addresses[0].ip, "127.0.0.1");
        assert_eq!(subsets[1].ports[0].port, 7000);
    }
}
