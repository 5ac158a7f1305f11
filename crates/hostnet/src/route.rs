//! IPv4 routes in the main table that moor owns: replaced, removed and
//! listed by their protocol number, so moor finds its own routes again after
//! a restart without touching anyone else's.

use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Error;
use crate::socket;

/// The protocol number (`rtm_protocol`) on the routes moor makes: 0x6d,
/// `m`. The kernel gives no meaning to numbers above 4; this one is unused
/// by the kernel's `RTPROT_*` list and iproute2's `rt_protos` (routing
/// daemons take 8 to 18, 42, 99 and 186 to 192; FRR 193 to 199). `ip route
/// show proto 109` lists moor's routes.
pub const ROUTE_PROTOCOL: u8 = 0x6d;

/// An IPv4 route in the main table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The addresses it covers; host bits are ignored (10.1.2.3/24 is
    /// 10.1.2.0/24), as every route is to a network.
    pub destination: Ipv4Net,
    /// The next hop; `None` for a destination on the link itself.
    pub gateway: Option<Ipv4Addr>,
    /// The index of the link packets leave through; `None` lets the kernel
    /// pick the link that reaches the gateway.
    pub device: Option<u32>,
    /// The gateway is on `device` even though no address of the link's
    /// subnet covers it: a VXLAN overlay's routes point at the peer's tunnel
    /// address this way. Needs a device and a gateway.
    pub onlink: bool,
}

/// Makes `route` the main table's route to its destination, as `ip route
/// replace DESTINATION via GATEWAY dev DEVICE [onlink] proto 109`: a route
/// to the same destination is replaced (whoever made it), none is created.
pub fn replace_route(route: &Route) -> Result<(), Error> {
    let action = || format!("replacing route {}", describe(route));
    if route.gateway.is_none() && route.device.is_none() {
        return Err(Error::Io {
            action: action(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "a route needs a gateway or a device",
            ),
        });
    }
    let mut message = message(route.destination);
    // As `ip route` chooses: a route without a next hop reaches only the
    // link itself.
    message.header.scope = if route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    message.header.kind = RouteType::Unicast;
    if route.onlink {
        message.header.flags = RouteFlags::Onlink;
    }
    message.attributes.extend(
        route
            .gateway
            .map(|gateway| RouteAttribute::Gateway(RouteAddress::Inet(gateway))),
    );
    message
        .attributes
        .extend(route.device.map(RouteAttribute::Oif));
    socket::request(
        RouteNetlinkMessage::NewRoute(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map(drop)
    .map_err(|e| match route.device {
        Some(index) => Error::from_io_index(action(), index, e),
        None => Error::Io {
            action: action(),
            source: e,
        },
    })
}

/// Removes moor's route to `destination` from the main table, as `ip route
/// del DESTINATION proto 109`. Returns `false` when there was none; a route
/// to the same destination made by anyone else stays.
pub fn remove_route(destination: Ipv4Net) -> Result<bool, Error> {
    let mut message = message(destination);
    // Match any scope and type: the destination and protocol name the route.
    message.header.scope = RouteScope::NoWhere;
    message.header.kind = RouteType::Unspec;
    match socket::request(RouteNetlinkMessage::DelRoute(message), 0) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(source) => Err(Error::Io {
            action: format!("removing route {}", destination.trunc()),
            source,
        }),
    }
}

/// The main table's IPv4 routes made with `protocol` (moor's is
/// [`ROUTE_PROTOCOL`]), in the kernel's order.
pub fn list_routes(protocol: u8) -> Result<Vec<Route>, Error> {
    let mut query = RouteMessage::default();
    query.header.address_family = AddressFamily::Inet;
    // The kernel filters a dump only for sockets that ask for strict
    // checking, so the table and protocol are checked here.
    let replies =
        socket::request(RouteNetlinkMessage::GetRoute(query), NLM_F_DUMP).map_err(|source| {
            Error::Io {
                action: format!("listing the routes of protocol {protocol}"),
                source,
            }
        })?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(route)
                if table(&route) == u32::from(RouteHeader::RT_TABLE_MAIN)
                    && u8::from(route.header.protocol) == protocol =>
            {
                parse(&route)
            }
            _ => None,
        })
        .collect())
}

/// What every request about moor's route to `destination` carries.
fn message(destination: Ipv4Net) -> RouteMessage {
    let destination = destination.trunc();
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = destination.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    message.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(
        destination.addr(),
    ))];
    message
}

/// The table of `route`: `RTA_TABLE` when present (tables above 255 are
/// only there), the header's otherwise.
fn table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// The reply as a [`Route`]; `None` for what an IPv4 route cannot be.
fn parse(route: &RouteMessage) -> Option<Route> {
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut device = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(index) => device = Some(*index),
            _ => {}
        }
    }
    Some(Route {
        // A default route has no destination attribute: 0.0.0.0/0.
        destination: Ipv4Net::new(destination, route.header.destination_prefix_length).ok()?,
        gateway,
        device,
        onlink: route.header.flags.contains(RouteFlags::Onlink),
    })
}

/// `10.1.2.0/24 via 10.1.2.0 dev index 5 onlink`, for error messages.
fn describe(route: &Route) -> String {
    let mut text = route.destination.trunc().to_string();
    if let Some(gateway) = route.gateway {
        text.push_str(&format!(" via {gateway}"));
    }
    if let Some(index) = route.device {
        text.push_str(&format!(" dev index {index}"));
    }
    if route.onlink {
        text.push_str(" onlink");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid network")
    }

    #[test]
    fn requests_name_the_network_and_moor() {
        let message = message(net("10.1.2.3/24"));
        assert_eq!(message.header.destination_prefix_length, 24);
        assert_eq!(u8::from(message.header.protocol), 0x6d);
        assert_eq!(message.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(
            message.attributes,
            vec![RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(10, 1, 2, 0)
            ))]
        );
    }

    #[test]
    fn replies_parse_back_into_routes() {
        let mut reply = message(net("10.1.2.0/24"));
        reply.header.flags = RouteFlags::Onlink;
        reply.attributes.extend([
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 1, 2, 0))),
            RouteAttribute::Oif(5),
        ]);
        let route = Route {
            destination: net("10.1.2.0/24"),
            gateway: Some(Ipv4Addr::new(10, 1, 2, 0)),
            device: Some(5),
            onlink: true,
        };
        assert_eq!(parse(&reply), Some(route.clone()));
        assert_eq!(
            describe(&route),
            "10.1.2.0/24 via 10.1.2.0 dev index 5 onlink"
        );

        let mut default = RouteMessage::default();
        default.attributes = vec![RouteAttribute::Oif(2)];
        assert_eq!(
            parse(&default).map(|r| r.destination),
            Some(net("0.0.0.0/0"))
        );
    }

    #[test]
    fn a_table_attribute_wins_over_the_header() {
        let mut route = RouteMessage::default();
        route.header.table = 252;
        route.attributes = vec![RouteAttribute::Table(1000)];
        assert_eq!(table(&route), 1000);
        route.attributes.clear();
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        assert_eq!(table(&route), 254);
    }
}
