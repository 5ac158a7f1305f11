//! A pod's network interface: a veth pair from a host bridge into the pod's
//! network namespace, as a CNI bridge plugin makes it.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;

use crate::error::{Error, check_name};
use crate::{address, link, socket};

/// The interface's name inside the pod, as Docker and CNI name it.
pub const POD_INTERFACE: &str = "eth0";

/// Where a pod's interface goes and what it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInterface {
    /// The host end's name (at most 15 bytes, unique on the host).
    pub host_name: String,
    /// The bridge the host end joins.
    pub bridge: String,
    /// A process in the pod's network namespace.
    pub pid: u32,
    /// The pod's address, with the prefix length of the bridge's subnet.
    pub address: Ipv4Net,
    /// The default route's next hop: the bridge's own address.
    pub gateway: Ipv4Addr,
}

/// Creates the veth pair of `interface`: the host end on the bridge, up, in
/// hairpin mode (a pod reaches itself through a service address the kernel
/// translates back to it); the other end `eth0` in the pod's namespace, up,
/// with the address and a default route through the gateway.
///
/// The pod's end gets the MAC address `02:42:` followed by the IP address,
/// as Docker gives its containers, so an address used again by another pod
/// keeps its MAC and no neighbour holds a stale one.
///
/// Nothing needs undoing on failure once the pod's namespace goes: the
/// kernel deletes both ends with it, a half-made pair included. Calling it
/// again for the same namespace fails (`eth0` or the host name exists).
pub fn attach_pod(interface: &PodInterface) -> Result<(), Error> {
    let PodInterface {
        host_name,
        bridge,
        pid,
        ..
    } = interface;
    check_name(host_name)?;
    let bridge_link = link::get(bridge)
        .map_err(|e| Error::from_io(format!("looking up bridge {bridge}"), bridge, e))?;
    let mtu = bridge_link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    });
    let netns_path = format!("/proc/{pid}/ns/net");
    let netns = File::open(&netns_path).map_err(|source| Error::Io {
        action: format!("opening the network namespace {netns_path}"),
        source,
    })?;

    let [a, b, c, d] = interface.address.addr().octets();
    let mac = [0x02, 0x42, a, b, c, d];
    create_pair(host_name, bridge_link.header.index, mtu, mac, &netns).map_err(|e| {
        io_error(
            &format!("creating veth {host_name} on {bridge}"),
            host_name,
            e,
        )
    })?;
    link::index(host_name)
        .and_then(set_hairpin_on)
        .map_err(|e| {
            io_error(
                &format!("setting hairpin mode on {host_name}"),
                host_name,
                e,
            )
        })?;

    let action = |verb: &str| format!("{verb} {POD_INTERFACE} in the namespace of process {pid}");
    let inside = socket::open_in(&netns).map_err(|source| Error::Io {
        action: action("entering"),
        source,
    })?;
    let index = link::get_on(&inside, POD_INTERFACE)
        .map_err(|e| io_error(&action("looking up"), POD_INTERFACE, e))?
        .header
        .index;
    add_address(&inside, index, interface.address)
        .map_err(|e| io_error(&action("addressing"), POD_INTERFACE, e))?;
    link::set_up_on(&inside, index)
        .map_err(|e| io_error(&action("setting up"), POD_INTERFACE, e))?;
    add_default_route(&inside, index, interface.gateway)
        .map_err(|e| io_error(&action("routing"), POD_INTERFACE, e))?;
    Ok(())
}

fn io_error(action: &str, ifname: &str, e: io::Error) -> Error {
    Error::from_io(action.to_owned(), ifname, e)
}

/// Sets hairpin mode on the bridge port with index `index` (`ip link set
/// PORT type bridge_slave hairpin on`), so a pod's own packets may come back
/// to it through the bridge: a pod reaching itself through a service address
/// the kernel translates back to it. Through netlink rather than sysfs:
/// `/sys` shows the namespace that mounted it, which is not the caller's when
/// it runs in a network namespace of its own (the multi-host lab).
pub fn set_hairpin(index: u32) -> Result<(), Error> {
    set_hairpin_on(index).map_err(|source| Error::Io {
        action: format!("setting hairpin mode on link index {index}"),
        source,
    })
}

fn set_hairpin_on(index: u32) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes = vec![LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            true,
        )])),
    ])];
    socket::request(RouteNetlinkMessage::NewLink(message), 0).map(drop)
}

/// `ip link add HOST mtu M master BRIDGE up type veth peer name eth0
/// address MAC mtu M netns NS`.
fn create_pair(
    host: &str,
    bridge: u32,
    mtu: Option<u32>,
    mac: [u8; 6],
    netns: &File,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mtu = mtu.map(LinkAttribute::Mtu);
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(POD_INTERFACE.to_owned()),
        LinkAttribute::Address(mac.to_vec()),
        LinkAttribute::NetNsFd(netns.as_raw_fd()),
    ];
    peer.attributes.extend(mtu.clone());
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes = vec![
        LinkAttribute::IfName(host.to_owned()),
        LinkAttribute::Controller(bridge),
    ];
    message.attributes.extend(mtu);
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    socket::request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

fn add_address(socket: &Socket, index: u32, address: Ipv4Net) -> io::Result<()> {
    let mut message = address::address_message(index, address);
    message.header.scope = AddressScope::Universe;
    message
        .attributes
        .push(AddressAttribute::Broadcast(address.broadcast()));
    socket::request_on(
        socket,
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

/// `ip route add default via GATEWAY dev eth0`.
fn add_default_route(socket: &Socket, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(index),
    ];
    socket::request_on(
        socket,
        RouteNetlinkMessage::NewRoute(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}
