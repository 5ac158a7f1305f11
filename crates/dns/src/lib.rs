//! Cluster DNS for moor's node proxy, written by hand to keep the workspace lean.
//!
//! [`Server`] answers A and SRV queries for services and pods from a [`Records`] snapshot the
//! caller swaps through a watch channel, as the Kubernetes DNS specification describes
//! (`<svc>.<ns>.svc.<domain>`, `_<port>._<proto>.<svc>.<ns>.svc.<domain>`,
//! `<a-b-c-d>.<ns>.pod.<domain>`), and forwards every other name to upstream resolvers.
//! [`client`] is a small stub resolver that follows resolv.conf like glibc.

pub mod client;
mod records;
mod resolv;
mod server;
mod transport;
pub mod wire;

pub use records::{EndpointEntry, PortEntry, Records, ServiceEntry, TTL};
pub use resolv::{DNS_PORT, ResolvConf, upstreams_from_resolv_conf};
pub use server::{
    IDLE_TIMEOUT, MAX_IN_FLIGHT, MAX_UDP_PAYLOAD, Server, UPSTREAM_TIMEOUT, bind_both,
};
pub use wire::{QType, Rcode};
