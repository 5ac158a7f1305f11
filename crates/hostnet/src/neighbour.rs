//! Permanent IPv4 neighbours (ARP entries): an overlay names each peer's
//! tunnel address with the peer device's MAC address, so the kernel never
//! has to ask (and nobody would answer an ARP request over a VXLAN device
//! without forwarding entries for broadcast).

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Error;
use crate::socket;

/// A permanent neighbour: `ip` has the MAC address `mac` on its link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Neighbour {
    /// The neighbour's IPv4 address.
    pub ip: Ipv4Addr,
    /// Its MAC address.
    pub mac: [u8; 6],
}

/// Makes `ip` on link `device` permanently `mac`, as `ip neigh replace IP
/// lladdr MAC dev DEVICE nud permanent`: an entry for `ip` there, learnt or
/// permanent, is replaced.
pub fn replace_neighbour(device: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), Error> {
    let mut message = message(device, ip);
    message.header.state = NeighbourState::Permanent;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    socket::request(
        RouteNetlinkMessage::NewNeighbour(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map(drop)
    .map_err(|e| {
        Error::from_io_index(
            format!(
                "replacing neighbour {ip} lladdr {} on dev index {device}",
                mac_text(mac)
            ),
            device,
            e,
        )
    })
}

/// Removes the neighbour entry of `ip` on link `device`, as `ip neigh del
/// IP dev DEVICE`. Returns `false` when there was none.
pub fn remove_neighbour(device: u32, ip: Ipv4Addr) -> Result<bool, Error> {
    match socket::request(RouteNetlinkMessage::DelNeighbour(message(device, ip)), 0) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(Error::from_io_index(
            format!("removing neighbour {ip} on dev index {device}"),
            device,
            e,
        )),
    }
}

/// The permanent IPv4 neighbours of link `device` (learnt ones come and go
/// and are left out), in the kernel's order.
pub fn list_neighbours(device: u32) -> Result<Vec<Neighbour>, Error> {
    let entries = permanent_entries(AddressFamily::Inet, device, "neighbours")?;
    Ok(entries.iter().filter_map(parse).collect())
}

/// The permanent entries of link `device` in the neighbour table of
/// `family` (`Inet`: ARP; `Bridge`: forwarding entries). The kernel dumps
/// every link's entries unless the socket asked for strict checking, so the
/// link is checked here; `what` names them in an error.
pub(crate) fn permanent_entries(
    family: AddressFamily,
    device: u32,
    what: &str,
) -> Result<Vec<NeighbourMessage>, Error> {
    let mut query = NeighbourMessage::default();
    query.header.family = family;
    let replies =
        socket::request(RouteNetlinkMessage::GetNeighbour(query), NLM_F_DUMP).map_err(|e| {
            Error::from_io_index(
                format!("listing the {what} of dev index {device}"),
                device,
                e,
            )
        })?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewNeighbour(entry)
                if entry.header.ifindex == device && permanent(&entry) =>
            {
                Some(entry)
            }
            _ => None,
        })
        .collect())
}

/// Whether the entry is `NUD_PERMANENT` (the state is a bit set; the crate
/// names only single bits).
pub(crate) fn permanent(neighbour: &NeighbourMessage) -> bool {
    u16::from(neighbour.header.state) & u16::from(NeighbourState::Permanent) != 0
}

/// `aa:bb:cc:dd:ee:ff`, as `ip` writes MAC addresses.
pub(crate) fn mac_text(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// What every request about `ip` on `device` carries.
fn message(device: u32, ip: Ipv4Addr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.ifindex = device;
    message.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))];
    message
}

fn parse(neighbour: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attribute in &neighbour.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(*a),
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            _ => {}
        }
    }
    Some(Neighbour { ip: ip?, mac: mac? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permanent_entries_with_both_addresses_count() {
        let ip = Ipv4Addr::new(10, 1, 2, 0);
        let mac = [0x0a, 0x58, 0, 0, 0, 1];
        let mut reply = message(3, ip);
        reply.header.state = NeighbourState::Permanent;
        reply
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        assert!(permanent(&reply));
        assert_eq!(parse(&reply), Some(Neighbour { ip, mac }));

        reply.header.state = NeighbourState::Reachable;
        assert!(!permanent(&reply));
        reply.header.state = NeighbourState::Other(0x80 | 0x40);
        assert!(permanent(&reply));

        reply.attributes.truncate(1);
        assert_eq!(parse(&reply), None);
        assert_eq!(mac_text(mac), "0a:58:00:00:00:01");
    }
}
