//! One rtnetlink request and the kernel's answer, over a fresh blocking
//! socket.
//!
//! A socket per request keeps calls independent (no shared sequence numbers,
//! no stale replies from an earlier caller) at the cost of a few syscalls,
//! which is nothing next to how rarely the proxy changes addresses.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_ALIGNTO, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// The only request on each socket carries this sequence number.
const SEQUENCE: u32 = 1;

/// Sends `message` with `NLM_F_REQUEST | NLM_F_ACK | flags` and collects the
/// kernel's replies: until the ack for a plain request, until `NLMSG_DONE`
/// for a dump (`NLM_F_DUMP` in `flags`). A negative errno from the kernel
/// comes back as the matching `io::Error`.
pub(crate) fn request(
    message: RouteNetlinkMessage,
    flags: u16,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    request_on(&open()?, message, flags)
}

/// A socket that talks to the kernel about the calling thread's network
/// namespace (a netlink socket stays with the namespace it was opened in).
pub(crate) fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// A socket on the network namespace `netns` (an open `/proc/PID/ns/net`).
///
/// It is opened on a short-lived thread that enters the namespace, so no
/// thread of the caller ever changes namespace.
pub(crate) fn open_in(netns: &File) -> io::Result<Socket> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))?;
                open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netlink thread panicked")))
    })
}

/// [`request`] on a socket of the caller's: several requests may go over
/// one socket, one after the other.
pub(crate) fn request_on(
    socket: &Socket,
    message: RouteNetlinkMessage,
    flags: u16,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut packet = NetlinkMessage::from(message);
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    packet.header.sequence_number = SEQUENCE;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut replies = Vec::new();
    loop {
        let (datagram, _) = socket.recv_from_full()?;
        let mut rest = datagram.as_slice();
        // One datagram may hold several netlink messages back to back.
        while !rest.is_empty() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            rest = rest
                .get(aligned(reply.header.length)?..)
                .unwrap_or_default();
            if reply.header.sequence_number != SEQUENCE {
                continue;
            }
            match reply.payload {
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                NetlinkPayload::Error(error) => match error.code {
                    Some(code) => return Err(errno(code.get())),
                    // The ack of a plain request ends it; a dump ends at DONE.
                    None if !dump => return Ok(replies),
                    None => {}
                },
                NetlinkPayload::Done(done) if done.code < 0 => return Err(errno(done.code)),
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Overrun(_) => {
                    return Err(io::Error::other("the kernel's reply overran the socket"));
                }
                // Noop, and whatever a later version of the crate adds.
                _ => {}
            }
        }
    }
}

/// The kernel sends `-errno`.
fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code.saturating_neg())
}

/// The offset of the next message after one of `length` bytes.
fn aligned(length: u32) -> io::Result<usize> {
    let align = usize::from(NLMSG_ALIGNTO);
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if length == 0 {
        // A zero length would make the loop spin on the same message forever.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "netlink message with zero length",
        ));
    }
    Ok(length.saturating_add(align - 1) / align * align)
}
