//! Cluster IPs and node ports: reserved in the store itself with
//! create-if-absent, so two creates (or two apiservers) can never hand out the
//! same one.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use ipnet::Ipv4Net;
use moor_storage::Store;

use crate::error::Error;

/// Store prefix of cluster IP reservations.
const IP_PREFIX: &str = "/registry/allocations/clusterips/";
/// Store prefix of node port reservations.
const PORT_PREFIX: &str = "/registry/allocations/nodeports/";
/// Node ports Kubernetes hands out by default.
pub const DEFAULT_NODE_PORTS: RangeInclusive<u16> = 30000..=32767;
/// Random tries before a full scan for a free value.
const RANDOM_TRIES: usize = 32;

/// Hands out cluster IPs and node ports.
pub struct Allocator {
    store: Arc<dyn Store>,
    cidr: Ipv4Net,
    /// Never handed out: the cluster DNS address.
    dns_ip: Ipv4Addr,
    node_ports: RangeInclusive<u16>,
}

// === impl Allocator ===

impl Allocator {
    /// An allocator of cluster IPs from `cidr` (except `dns_ip`) and node
    /// ports from `node_ports`.
    pub fn new(
        store: Arc<dyn Store>,
        cidr: Ipv4Net,
        dns_ip: Ipv4Addr,
        node_ports: RangeInclusive<u16>,
    ) -> Self {
        Self {
            store,
            cidr,
            dns_ip,
            node_ports,
        }
    }

    /// The reservation key of a cluster IP.
    pub fn ip_key(ip: &str) -> String {
        format!("{IP_PREFIX}{ip}")
    }

    /// The reservation key of a node port.
    pub fn port_key(port: i32) -> String {
        format!("{PORT_PREFIX}{port}")
    }

    /// Reserves `wanted` for `owner`, or any free IP when `None`. An IP the
    /// same owner already holds is fine.
    pub async fn reserve_ip(
        &self,
        owner: &str,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, Error> {
        if let Some(ip) = wanted {
            if !self.cidr.contains(&ip) {
                return Err(Error::BadRequest(format!(
                    "{ip} is not in the service CIDR {}",
                    self.cidr
                )));
            }
            if ip == self.dns_ip {
                return Err(Error::BadRequest(format!(
                    "{ip} is reserved for the cluster DNS"
                )));
            }
            return match self.reserve(&Self::ip_key(&ip.to_string()), owner).await? {
                true => Ok(ip),
                false => Err(Error::BadRequest(format!(
                    "provided IP {ip} is already allocated"
                ))),
            };
        }
        // Skip the network address, the first host (kept for an API service,
        // as Kubernetes does) and the broadcast address.
        let base = u32::from(self.cidr.network());
        let size = 1u64 << (32 - u32::from(self.cidr.prefix_len()));
        let usable = size.saturating_sub(3);
        if usable == 0 {
            return Err(Error::ResourceExhausted(format!(
                "service CIDR {} is too small",
                self.cidr
            )));
        }
        let candidate = |offset: u64| Ipv4Addr::from(base.wrapping_add(2 + offset as u32));
        for _ in 0..RANDOM_TRIES {
            let ip = candidate(random() % usable);
            if ip != self.dns_ip && self.reserve(&Self::ip_key(&ip.to_string()), owner).await? {
                return Ok(ip);
            }
        }
        for offset in 0..usable {
            let ip = candidate(offset);
            if ip != self.dns_ip && self.reserve(&Self::ip_key(&ip.to_string()), owner).await? {
                return Ok(ip);
            }
        }
        Err(Error::ResourceExhausted(format!(
            "no cluster IPs left in {}",
            self.cidr
        )))
    }

    /// Reserves node port `wanted` for `owner`, or any free one when `None`.
    pub async fn reserve_port(&self, owner: &str, wanted: Option<i32>) -> Result<i32, Error> {
        let (low, high) = (*self.node_ports.start(), *self.node_ports.end());
        if let Some(port) = wanted {
            if !(i32::from(low)..=i32::from(high)).contains(&port) {
                return Err(Error::BadRequest(format!(
                    "provided port {port} is not in the valid range {low}-{high}"
                )));
            }
            return match self.reserve(&Self::port_key(port), owner).await? {
                true => Ok(port),
                false => Err(Error::BadRequest(format!(
                    "provided port {port} is already allocated"
                ))),
            };
        }
        let first = i32::from(low);
        let count = u64::from(high - low) + 1;
        for _ in 0..RANDOM_TRIES {
            let port = first + (random() % count) as i32;
            if self.reserve(&Self::port_key(port), owner).await? {
                return Ok(port);
            }
        }
        for offset in 0..count {
            let port = first + offset as i32;
            if self.reserve(&Self::port_key(port), owner).await? {
                return Ok(port);
            }
        }
        Err(Error::ResourceExhausted(format!(
            "no node ports left in {low}-{high}"
        )))
    }

    /// Gives back reservations; failures are logged, a leaked value is only
    /// unusable until an operator deletes its key.
    pub async fn release(&self, keys: &[String]) {
        for key in keys {
            match self.store.delete(key, None).await {
                Ok(_) | Err(moor_storage::Error::NotFound(_)) => {}
                Err(err) => {
                    tracing::warn!(%key, %err, "could not release allocation; it stays reserved")
                }
            }
        }
    }

    /// True when `key` is now held by `owner` (newly, or already).
    async fn reserve(&self, key: &str, owner: &str) -> Result<bool, Error> {
        match self.store.create(key, Bytes::from(owner.to_string())).await {
            Ok(_) => Ok(true),
            Err(moor_storage::Error::AlreadyExists(_)) => {
                let current = self.store.get(key).await?;
                Ok(current.is_some_and(|kv| kv.value == owner.as_bytes()))
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// A random number from the OS-seeded UUID generator (no extra dependency).
fn random() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64
}
