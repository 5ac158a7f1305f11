//! A link's MTU and MAC address: read by name or by an address on it, and
//! the MTU set. An overlay sizes its tunnel device from the underlay's MTU.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, check_name};
use crate::{address, link, socket};

/// What the kernel says of one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkDetails {
    /// Its name.
    pub name: String,
    /// Its index, which stays while the link lives (a rename keeps it).
    pub index: u32,
    /// Its MTU in bytes.
    pub mtu: u32,
    /// Its MAC address; `None` for links without a 6-byte one (tunnels
    /// without an Ethernet header, such as wireguard).
    pub mac: Option<[u8; 6]>,
}

/// The name, index, MTU and MAC address of the link `name`.
pub fn link_details(name: &str) -> Result<LinkDetails, Error> {
    check_name(name)?;
    link::get(name)
        .and_then(|link| details(&link))
        .map_err(|e| Error::from_io(format!("looking up link {name}"), name, e))
}

/// The link that holds the IPv4 address `ip`, or `None` when no link of the
/// calling thread's namespace has it.
///
/// An overlay's tunnel device takes its MTU from this link: the one its
/// encapsulated packets leave through when `ip` is their source.
pub fn link_with_address(ip: Ipv4Addr) -> Result<Option<LinkDetails>, Error> {
    let action = || format!("looking up the link holding {ip}");
    let io_error = |e: io::Error| Error::Io {
        action: action(),
        source: e,
    };
    let mut query = AddressMessage::default();
    query.header.family = AddressFamily::Inet;
    let replies =
        socket::request(RouteNetlinkMessage::GetAddress(query), NLM_F_DUMP).map_err(io_error)?;
    let index = replies.into_iter().find_map(|reply| match reply {
        RouteNetlinkMessage::NewAddress(address)
            if address::ipv4_net(&address).is_some_and(|net| net.addr() == ip) =>
        {
            Some(address.header.index)
        }
        _ => None,
    });
    let Some(index) = index else {
        return Ok(None);
    };
    match get_by_index(index).and_then(|link| details(&link)) {
        Ok(details) => Ok(Some(details)),
        // The link went between the two requests: so did the address.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// Sets the MTU of the link `name` to `mtu` bytes, as `ip link set NAME mtu
/// MTU` does; setting the MTU it has is a no-op.
pub fn set_mtu(name: &str, mtu: u32) -> Result<(), Error> {
    check_name(name)?;
    let mut message = LinkMessage::default();
    // With index 0 the kernel finds the link by this name (and does not
    // rename anything).
    message.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::Mtu(mtu),
    ];
    socket::request(RouteNetlinkMessage::SetLink(message), 0)
        .map(drop)
        .map_err(|e| Error::from_io(format!("setting the MTU of {name} to {mtu}"), name, e))
}

/// The kernel's description of the link with index `index`.
pub(crate) fn get_by_index(index: u32) -> io::Result<LinkMessage> {
    let mut query = LinkMessage::default();
    query.header.index = index;
    socket::request(RouteNetlinkMessage::GetLink(query), 0)?
        .into_iter()
        .find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .ok_or_else(|| io::Error::other("the kernel acknowledged but sent no link"))
}

/// The parts of `link` that [`LinkDetails`] holds.
pub(crate) fn details(link: &LinkMessage) -> io::Result<LinkDetails> {
    let mut name = None;
    let mut mtu = None;
    let mut mac = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => {}
        }
    }
    let missing = |what| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the kernel described link {} without {what}",
                link.header.index
            ),
        )
    };
    Ok(LinkDetails {
        name: name.ok_or_else(|| missing("a name"))?,
        index: link.header.index,
        mtu: mtu.ok_or_else(|| missing("an MTU"))?,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_need_a_name_and_an_mtu() {
        let mut link = LinkMessage::default();
        link.header.index = 4;
        link.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Address(vec![2, 0x42, 10, 0, 0, 1]),
        ];
        assert_eq!(
            details(&link).expect("complete"),
            LinkDetails {
                name: "eth0".into(),
                index: 4,
                mtu: 1500,
                mac: Some([2, 0x42, 10, 0, 0, 1]),
            }
        );
        // A link without an Ethernet address has no MAC.
        link.attributes[2] = LinkAttribute::Address(vec![]);
        assert_eq!(details(&link).expect("complete").mac, None);
        link.attributes.remove(1);
        assert!(details(&link).is_err());
    }
}
