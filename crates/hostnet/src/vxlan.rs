//! The VXLAN device of a flannel-style overlay: one per node, holding the
//! node's tunnel endpoint ("VTEP"). Peers are programmed on it by hand (a
//! route, a permanent neighbour and a forwarding entry per peer node) rather
//! than learnt, so the device is made with learning off.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

use crate::error::{Error, check_name};
use crate::{details, link, socket};

/// The UDP port of flannel's vxlan backend and the Linux default (IANA's is
/// 4789): nodes of one cluster must agree on it.
pub const VXLAN_PORT: u16 = 8472;

/// What VXLAN over IPv4 adds to each packet: the outer IPv4 (20), UDP (8)
/// and VXLAN (8) headers and the inner Ethernet header (14).
const OVERHEAD: u32 = 50;

/// The VXLAN device [`ensure_vxlan`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The device's name (flannel's is `flannel.<vni>`).
    pub name: String,
    /// The VXLAN network identifier, the same on every node.
    pub vni: u32,
    /// The node's underlay address: the source of encapsulated packets.
    pub local: Ipv4Addr,
    /// The UDP port, the same on every node; usually [`VXLAN_PORT`].
    pub port: u16,
    /// The index of the underlay link encapsulated packets leave through;
    /// `None` leaves the choice to the routing table.
    pub underlay: Option<u32>,
    /// The device's MTU; `None` takes the underlay's (or, without one, the
    /// MTU of the link holding `local`) less VXLAN's 50 bytes.
    pub mtu: Option<u32>,
}

/// Makes sure the VXLAN device `config` describes exists and is up, as
/// `ip link add NAME type vxlan id VNI local LOCAL dev UNDERLAY dstport PORT
/// nolearning` followed by `ip link set NAME up`, and returns its MAC
/// address, which peers put in their neighbour and forwarding entries.
///
/// A vxlan link of that name with the same VNI, local address, port (and
/// underlay, when one is given) is kept, with its MAC address; its MTU is
/// corrected if it differs. One that differs is deleted and made anew, as
/// flannel does (the kernel cannot change a VNI or port in place): it then
/// has a new MAC address, so peers must be told. A link of that name of
/// another kind is left alone and is an error.
pub fn ensure_vxlan(config: &VxlanConfig) -> Result<[u8; 6], Error> {
    let name = config.name.as_str();
    check_name(name)?;
    let fail = |verb: &str, e| Error::from_io(format!("{verb} vxlan link {name}"), name, e);
    let mtu = match config.mtu {
        Some(mtu) => Some(mtu),
        None => underlay_mtu(config)?.map(|mtu| mtu.saturating_sub(OVERHEAD)),
    };
    let link = match link::get(name) {
        Ok(link) if link::kind(&link) != Some(&InfoKind::Vxlan) => {
            return Err(link::wrong_kind(name, "vxlan", &link));
        }
        Ok(link) if same(config, &link) => link,
        Ok(link) => {
            remove(link.header.index).map_err(|e| fail("deleting the outdated", e))?;
            create(config, mtu).map_err(|e| fail("re-creating", e))?;
            link::get(name).map_err(|e| fail("looking up", e))?
        }
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            create(config, mtu).map_err(|e| fail("creating", e))?;
            link::get(name).map_err(|e| fail("looking up", e))?
        }
        Err(e) => return Err(fail("looking up", e)),
    };
    let index = link.header.index;
    let found = details::details(&link).map_err(|e| fail("reading", e))?;
    if let Some(mtu) = mtu.filter(|&mtu| mtu != found.mtu) {
        set_mtu(index, mtu).map_err(|e| fail(&format!("setting MTU {mtu} on"), e))?;
    }
    if !link.header.flags.contains(LinkFlags::Up) {
        link::set_up(index).map_err(|e| fail("setting up", e))?;
    }
    found.mac.ok_or_else(|| {
        fail(
            "reading the MAC address of",
            io::Error::new(io::ErrorKind::InvalidData, "the link has no MAC address"),
        )
    })
}

/// The MTU of the link encapsulated packets leave through, when known.
fn underlay_mtu(config: &VxlanConfig) -> Result<Option<u32>, Error> {
    match config.underlay {
        Some(index) => details::get_by_index(index)
            .and_then(|link| details::details(&link))
            .map(|underlay| Some(underlay.mtu))
            .map_err(|e| {
                Error::from_io_index(
                    format!(
                        "reading the MTU of the underlay of vxlan link {}",
                        config.name
                    ),
                    index,
                    e,
                )
            }),
        None => Ok(details::link_with_address(config.local)?.map(|underlay| underlay.mtu)),
    }
}

/// Whether the vxlan `link` is the device `config` describes.
fn same(config: &VxlanConfig, link: &LinkMessage) -> bool {
    let Some(infos) = vxlan_infos(link) else {
        return false;
    };
    let has = |wanted: &InfoVxlan| infos.contains(wanted);
    has(&InfoVxlan::Id(config.vni))
        && has(&InfoVxlan::Local(config.local))
        && has(&InfoVxlan::Port(config.port))
        && has(&InfoVxlan::Learning(false))
        && config
            .underlay
            .is_none_or(|index| has(&InfoVxlan::Link(index)))
}

/// The vxlan settings the kernel reports (`IFLA_INFO_DATA`).
fn vxlan_infos(link: &LinkMessage) -> Option<&[InfoVxlan]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(vxlan)) => Some(vxlan.as_slice()),
            _ => None,
        }),
        _ => None,
    })
}

/// The settings `config` asks for, in the kernel's terms.
fn infos(config: &VxlanConfig) -> Vec<InfoVxlan> {
    let mut infos = vec![
        InfoVxlan::Id(config.vni),
        InfoVxlan::Local(config.local),
        InfoVxlan::Port(config.port),
        InfoVxlan::Learning(false),
    ];
    infos.extend(config.underlay.map(InfoVxlan::Link));
    infos
}

fn create(config: &VxlanConfig, mtu: Option<u32>) -> io::Result<()> {
    let mut message = LinkMessage::default();
    // Up from birth, as for the dummy link.
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes = vec![LinkAttribute::IfName(config.name.clone())];
    message.attributes.extend(mtu.map(LinkAttribute::Mtu));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(infos(config))),
    ]));
    socket::request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
    .map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            // The name was free a moment ago, so this is most likely the
            // kernel's rule of one device per VNI and port.
            io::Error::new(
                e.kind(),
                format!(
                    "another vxlan link has VNI {} on port {} (or a link of this name appeared meanwhile): {e}",
                    config.vni, config.port
                ),
            )
        } else {
            e
        }
    })
}

fn remove(index: u32) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    match socket::request(RouteNetlinkMessage::DelLink(message), 0) {
        Err(e) if e.raw_os_error() != Some(libc::ENODEV) => Err(e),
        _ => Ok(()),
    }
}

fn set_mtu(index: u32, mtu: u32) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes = vec![LinkAttribute::Mtu(mtu)];
    socket::request(RouteNetlinkMessage::SetLink(message), 0).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VxlanConfig {
        VxlanConfig {
            name: "flannel.1".into(),
            vni: 1,
            local: Ipv4Addr::new(198, 19, 0, 1),
            port: VXLAN_PORT,
            underlay: None,
            mtu: None,
        }
    }

    fn link_with(infos: Vec<InfoVxlan>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(infos)),
        ])];
        link
    }

    #[test]
    fn a_device_is_the_same_when_what_was_asked_matches() {
        let wanted = config();
        // The kernel reports more than was asked (TTL, ageing, ...).
        let mut reported = infos(&wanted);
        reported.extend([InfoVxlan::Ageing(300), InfoVxlan::Link(3)]);
        assert!(same(&wanted, &link_with(reported.clone())));
        // An underlay asked for must match; none asked for matches any.
        let on_3 = VxlanConfig {
            underlay: Some(3),
            ..config()
        };
        assert!(same(&on_3, &link_with(reported.clone())));
        let on_4 = VxlanConfig {
            underlay: Some(4),
            ..config()
        };
        assert!(!same(&on_4, &link_with(reported)));

        for changed in [
            VxlanConfig { vni: 2, ..config() },
            VxlanConfig {
                local: Ipv4Addr::new(198, 19, 0, 2),
                ..config()
            },
            VxlanConfig {
                port: 4789,
                ..config()
            },
        ] {
            assert!(!same(&changed, &link_with(infos(&wanted))), "{changed:?}");
        }
        let mut learning = infos(&wanted);
        learning.retain(|i| *i != InfoVxlan::Learning(false));
        learning.push(InfoVxlan::Learning(true));
        assert!(!same(&wanted, &link_with(learning)));
        assert!(!same(&wanted, &LinkMessage::default()));
    }
}
