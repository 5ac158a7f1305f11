//! Links by name: their index, and the dummy link that holds service IPs.

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

use crate::error::{Error, check_name};
use netlink_sys::Socket;

use crate::socket;

/// What [`ensure_dummy`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DummyOutcome {
    /// The link did not exist; it was created and set up.
    Created,
    /// A dummy link of that name was there already; it is now up.
    Existed,
    /// The kernel has no dummy link type (module `dummy` missing): put the
    /// addresses on `lo` instead.
    Unsupported,
}

/// The kernel's index of the interface `name`.
pub fn interface_index(name: &str) -> Result<u32, Error> {
    check_name(name)?;
    index(name).map_err(|e| Error::from_io(format!("looking up interface {name}"), name, e))
}

/// Makes sure a link of kind `dummy` named `name` exists and is up.
///
/// A kernel without the dummy type is an expected outcome, not an error:
/// the caller falls back to `lo`. A link of that name but of another kind is
/// an error, since taking it over could break whatever owns it.
pub fn ensure_dummy(name: &str) -> Result<DummyOutcome, Error> {
    check_name(name)?;
    let fail = |verb: &str, e| Error::from_io(format!("{verb} dummy link {name}"), name, e);
    let (outcome, link) = match get(name) {
        Ok(link) => (DummyOutcome::Existed, link),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            match create_dummy(name) {
                Ok(()) => {}
                // "Unknown device type": no dummy driver, built in or loadable.
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    return Ok(DummyOutcome::Unsupported);
                }
                // Created by someone else since we looked: the kind check
                // below decides whether it is ours to use.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail("creating", e)),
            }
            let link = get(name).map_err(|e| fail("looking up", e))?;
            (DummyOutcome::Created, link)
        }
        Err(e) => return Err(fail("looking up", e)),
    };
    if kind(&link) != Some(&InfoKind::Dummy) {
        return Err(wrong_kind(name, "dummy", &link));
    }
    if !link.header.flags.contains(LinkFlags::Up) {
        set_up(link.header.index).map_err(|e| fail("setting up", e))?;
    }
    Ok(outcome)
}

/// Deletes the link `name`, whatever its kind. Returns `false` when there
/// was no such link.
pub fn remove_link(name: &str) -> Result<bool, Error> {
    check_name(name)?;
    let mut message = LinkMessage::default();
    message.attributes = vec![LinkAttribute::IfName(name.to_owned())];
    match socket::request(RouteNetlinkMessage::DelLink(message), 0) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(Error::from_io(format!("removing link {name}"), name, e)),
    }
}

/// The index of `name`; `ENODEV` when there is no such link.
pub(crate) fn index(name: &str) -> io::Result<u32> {
    get(name).map(|link| link.header.index)
}

/// The kernel's description of the link `name`.
pub(crate) fn get(name: &str) -> io::Result<LinkMessage> {
    get_on(&socket::open()?, name)
}

/// [`get`] on `socket`'s network namespace.
pub(crate) fn get_on(socket: &Socket, name: &str) -> io::Result<LinkMessage> {
    let mut query = LinkMessage::default();
    query.attributes = vec![LinkAttribute::IfName(name.to_owned())];
    socket::request_on(socket, RouteNetlinkMessage::GetLink(query), 0)?
        .into_iter()
        .find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .ok_or_else(|| io::Error::other("the kernel acknowledged but sent no link"))
}

fn create_dummy(name: &str) -> io::Result<()> {
    let mut message = LinkMessage::default();
    // Up from birth, as `ip link add NAME up type dummy` does.
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Dummy)]),
    ];
    socket::request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

pub(crate) fn set_up(index: u32) -> io::Result<()> {
    set_up_on(&socket::open()?, index)
}

/// Sets link `index` of `socket`'s network namespace up.
pub(crate) fn set_up_on(socket: &Socket, index: u32) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    socket::request_on(socket, RouteNetlinkMessage::SetLink(message), 0).map(drop)
}

/// The link's kind (`IFLA_INFO_KIND`); plain devices such as `lo` have none.
pub(crate) fn kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// The error for finding `link` named `name` where a link of kind
/// `expected` should be.
pub(crate) fn wrong_kind(name: &str, expected: &'static str, link: &LinkMessage) -> Error {
    Error::WrongKind {
        name: name.to_owned(),
        expected,
        found: kind(link).map_or_else(
            || "a device with no link kind".to_owned(),
            |k| format!("a {k} link"),
        ),
    }
}
