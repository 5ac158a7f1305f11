//! IPv4 addresses on an interface: list, add, remove.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, check_name};
use crate::{link, socket};

/// The IPv4 addresses on `ifname`, each with its prefix length, in the
/// kernel's order.
pub fn list_addresses(ifname: &str) -> Result<Vec<Ipv4Net>, Error> {
    let action = || format!("listing the addresses of {ifname}");
    check_name(ifname)?;
    let index = link::index(ifname).map_err(|e| Error::from_io(action(), ifname, e))?;
    let mut query = AddressMessage::default();
    query.header.family = AddressFamily::Inet;
    let replies = socket::request(RouteNetlinkMessage::GetAddress(query), NLM_F_DUMP)
        .map_err(|e| Error::from_io(action(), ifname, e))?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(address) if address.header.index == index => {
                ipv4_net(&address)
            }
            _ => None,
        })
        .collect())
}

/// Puts `addr` on `ifname`. Returns `false` when it was there already.
///
/// The scope is the one `ip addr add` picks: host for 127.0.0.0/8, global
/// otherwise, so that a service IP on `lo` is reachable from pods behind a
/// bridge and not only from the host itself.
pub fn add_address(ifname: &str, addr: Ipv4Net) -> Result<bool, Error> {
    let action = || format!("adding {addr} to {ifname}");
    check_name(ifname)?;
    let index = link::index(ifname).map_err(|e| Error::from_io(action(), ifname, e))?;
    let mut message = address_message(index, addr);
    message.header.scope = if addr.addr().is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    match socket::request(
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::from_io(action(), ifname, e)),
    }
}

/// Takes `addr` (address and prefix length) off `ifname`. Returns `false`
/// when it was not there.
pub fn remove_address(ifname: &str, addr: Ipv4Net) -> Result<bool, Error> {
    let action = || format!("removing {addr} from {ifname}");
    check_name(ifname)?;
    let index = link::index(ifname).map_err(|e| Error::from_io(action(), ifname, e))?;
    match socket::request(
        RouteNetlinkMessage::DelAddress(address_message(index, addr)),
        0,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
        Err(e) => Err(Error::from_io(action(), ifname, e)),
    }
}

/// The request both add and remove send: local and peer address the same,
/// as `ip addr` sends them when no peer is given.
pub(crate) fn address_message(index: u32, addr: Ipv4Net) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = addr.prefix_len();
    message.header.index = index;
    let ip = IpAddr::V4(addr.addr());
    message.attributes = vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)];
    message
}

/// The address of a reply: `IFA_LOCAL` is the interface's own address;
/// `IFA_ADDRESS` differs from it only on point-to-point links, where it is
/// the peer, and stands in when the kernel sends no `IFA_LOCAL`.
pub(crate) fn ipv4_net(message: &AddressMessage) -> Option<Ipv4Net> {
    let v4 = |ip: &IpAddr| -> Option<Ipv4Addr> {
        match ip {
            IpAddr::V4(ip) => Some(*ip),
            IpAddr::V6(_) => None,
        }
    };
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => v4(ip),
        _ => None,
    });
    let address = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => v4(ip),
        _ => None,
    });
    Ipv4Net::new(local.or(address)?, message.header.prefix_len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_wins_over_peer() {
        let mut message = address_message(
            1,
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 1), 32).expect("valid"),
        );
        message.attributes = vec![
            AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        ];
        assert_eq!(
            ipv4_net(&message),
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 1), 32).ok()
        );
        message.attributes.remove(1);
        assert_eq!(
            ipv4_net(&message),
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 2), 32).ok()
        );
        message.attributes.clear();
        assert_eq!(ipv4_net(&message), None);
    }
}
