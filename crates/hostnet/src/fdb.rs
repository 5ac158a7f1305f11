//! The forwarding database of a VXLAN device: for each peer device's MAC
//! address, the underlay address of the node that holds it, so the kernel
//! knows where to send the encapsulated frame. Entries are the device's own
//! (`self`, not a bridge's) and permanent.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Error;
use crate::neighbour::{mac_text, permanent_entries};
use crate::socket;

/// A forwarding entry: frames to `mac` go to the node at `destination`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FdbEntry {
    /// The peer device's MAC address.
    pub mac: [u8; 6],
    /// The peer node's underlay address.
    pub destination: Ipv4Addr,
}

/// Sends frames for `mac` on the VXLAN link `device` to `destination`, as
/// `bridge fdb replace MAC dev DEVICE dst DESTINATION self permanent`: an
/// entry for `mac` that pointed elsewhere now points there.
pub fn replace_fdb(device: u32, mac: [u8; 6], destination: Ipv4Addr) -> Result<(), Error> {
    let mut message = message(device, mac, destination);
    message.header.state = NeighbourState::Permanent;
    socket::request(
        RouteNetlinkMessage::NewNeighbour(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map(drop)
    .map_err(|e| {
        Error::from_io_index(
            format!(
                "replacing fdb entry {} dst {destination} on dev index {device}",
                mac_text(mac)
            ),
            device,
            e,
        )
    })
}

/// Removes the entry sending `mac` to `destination` from link `device`, as
/// `bridge fdb del MAC dev DEVICE dst DESTINATION self`. Returns `false`
/// when there was none (an entry for `mac` to another node stays).
pub fn remove_fdb(device: u32, mac: [u8; 6], destination: Ipv4Addr) -> Result<bool, Error> {
    match socket::request(
        RouteNetlinkMessage::DelNeighbour(message(device, mac, destination)),
        0,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(Error::from_io_index(
            format!(
                "removing fdb entry {} dst {destination} on dev index {device}",
                mac_text(mac)
            ),
            device,
            e,
        )),
    }
}

/// The permanent forwarding entries of link `device` with an IPv4
/// destination, in the kernel's order.
pub fn list_fdb(device: u32) -> Result<Vec<FdbEntry>, Error> {
    let entries = permanent_entries(AddressFamily::Bridge, device, "fdb entries")?;
    Ok(entries.iter().filter_map(parse).collect())
}

/// What every request about `mac` to `destination` on `device` carries.
fn message(device: u32, mac: [u8; 6], destination: Ipv4Addr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = device;
    // The VXLAN device's own table, not that of a bridge it may be in.
    message.header.flags = NeighbourFlags::Own;
    message.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        // With the bridge family the crate knows no address type: the
        // kernel reads 4 bytes as IPv4.
        NeighbourAttribute::Destination(NeighbourAddress::Other(destination.octets().to_vec())),
    ];
    message
}

fn parse(entry: &NeighbourMessage) -> Option<FdbEntry> {
    let mut mac = None;
    let mut destination = None;
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                destination = <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(Ipv4Addr::from);
            }
            // Should a later version of the crate parse it as IPv4.
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                destination = Some(*ip);
            }
            _ => {}
        }
    }
    Some(FdbEntry {
        mac: mac?,
        destination: destination?,
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};

    use super::*;

    #[test]
    fn an_entry_survives_the_wire() {
        let mac = [0x0a, 0x58, 0, 0, 0, 2];
        let destination = Ipv4Addr::new(198, 19, 0, 2);
        let mut message = message(7, mac, destination);
        message.header.state = NeighbourState::Permanent;
        let mut buf = vec![0; message.buffer_len()];
        message.emit(&mut buf);
        let parsed = NeighbourMessage::parse(&buf).expect("parses");
        assert_eq!(parsed.header.family, AddressFamily::Bridge);
        assert!(parsed.header.flags.contains(NeighbourFlags::Own));
        assert!(crate::neighbour::permanent(&parsed));
        assert_eq!(parse(&parsed), Some(FdbEntry { mac, destination }));
    }

    #[test]
    fn entries_without_an_ipv4_destination_are_skipped() {
        let mut entry = message(7, [0; 6], Ipv4Addr::UNSPECIFIED);
        entry.attributes[1] = NeighbourAttribute::Destination(NeighbourAddress::Other(vec![0; 16]));
        assert_eq!(parse(&entry), None);
        entry.attributes.truncate(1);
        assert_eq!(parse(&entry), None);
    }
}
