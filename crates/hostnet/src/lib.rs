//! The host's network through netlink: addresses on an interface, the
//! proxy's dummy interface, and pods' veth pairs into a bridge; and, through
//! the `conntrack` program, the kernel's flows to addresses that went away.
//!
//! Every call is blocking and self-contained: it opens its own rtnetlink
//! socket(s), sends its requests with `NLM_F_ACK` and reads each to the
//! kernel's answer, so it is safe to run from `spawn_blocking` on any
//! thread. Address and dummy-link changes are idempotent: adding what is
//! there or removing what is not reports `false` instead of failing; a
//! pod's veth pair is made once per namespace. Only IPv4 is handled.

mod address;
mod conntrack;
mod error;
mod link;
mod socket;
mod veth;

pub use address::{add_address, list_addresses, remove_address};
pub use conntrack::{Filter, delete_flows_of, delete_matching};
pub use error::Error;
pub use ipnet::Ipv4Net;
pub use link::{DummyOutcome, ensure_dummy, interface_index, remove_link};
pub use veth::{POD_INTERFACE, PodInterface, attach_pod};
