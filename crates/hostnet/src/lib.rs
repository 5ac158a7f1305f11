//! The host's network through netlink: addresses on an interface, the
//! proxy's dummy interface, and pods' veth pairs into a bridge; what a
//! flannel-style overlay programs between nodes (the VXLAN device, routes,
//! permanent neighbours and forwarding entries, or plain routes for host-gw);
//! and, through the `conntrack` program, the kernel's flows to addresses that
//! went away.
//!
//! Every call is blocking and self-contained: it opens its own rtnetlink
//! socket(s), sends its requests with `NLM_F_ACK` and reads each to the
//! kernel's answer, so it is safe to run from `spawn_blocking` on any
//! thread. It acts on the network namespace of the calling thread. Changes
//! are idempotent: adding what is there or removing what is not reports
//! `false` instead of failing, `replace_*` calls make an entry what was
//! asked whatever was there, and `ensure_*` calls keep what matches; a pod's
//! veth pair is made once per namespace. Only IPv4 is handled.

mod address;
mod conntrack;
mod details;
mod error;
mod fdb;
mod link;
mod neighbour;
mod route;
mod socket;
mod veth;
mod vxlan;

pub use address::{add_address, list_addresses, remove_address};
pub use conntrack::{Filter, delete_flows_of, delete_matching};
/// An overlay reads the underlay's MTU to size its tunnel device, and its
/// own MAC address to publish to peers.
pub use details::{LinkDetails, link_details, link_with_address, set_mtu};
pub use error::Error;
/// A VXLAN device knows where to send a peer's frames only through these.
pub use fdb::{FdbEntry, list_fdb, remove_fdb, replace_fdb};
pub use ipnet::Ipv4Net;
pub use link::{DummyOutcome, ensure_dummy, interface_index, remove_link};
/// Peers' tunnel addresses resolve to their devices' MAC addresses without
/// ARP, which a VXLAN device could not carry.
pub use neighbour::{Neighbour, list_neighbours, remove_neighbour, replace_neighbour};
/// Each peer's pod range is a route, over the overlay or (host-gw) straight
/// to the peer node, marked with moor's protocol so it can be found again.
pub use route::{ROUTE_PROTOCOL, Route, list_routes, remove_route, replace_route};
pub use veth::{POD_INTERFACE, PodInterface, attach_pod, set_hairpin};
/// The one device per node that carries a VXLAN overlay.
pub use vxlan::{VXLAN_PORT, VxlanConfig, ensure_vxlan};
