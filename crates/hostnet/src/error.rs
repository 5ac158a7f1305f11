//! What can go wrong, worded for the operator who has to fix it.

use std::io;

/// A failed netlink operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused: changing the host's network needs privileges.
    #[error("{action} needs CAP_NET_ADMIN (run moor as root)")]
    PermissionDenied {
        /// What was being done, e.g. `adding 10.96.0.1/32 to lo`.
        action: String,
    },
    /// No interface has this name.
    #[error("{action}: no network interface named {name:?} (see `ip link`)")]
    NoSuchInterface {
        /// What was being done.
        action: String,
        /// The missing interface.
        name: String,
    },
    /// No interface has this index: it went away since the caller looked it
    /// up, or never was.
    #[error("{action}: no network interface has index {index} (see `ip link`)")]
    NoSuchIndex {
        /// What was being done.
        action: String,
        /// The missing interface's index.
        index: u32,
    },
    /// The kernel would never accept this as an interface name.
    #[error("{name:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or whitespace)")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A link of this name exists but is of another kind than asked for.
    #[error(
        "link {name:?} exists but is {found}, not a {expected} link: delete it (`ip link del {name}`) or pick another name"
    )]
    WrongKind {
        /// The link.
        name: String,
        /// The kind that was asked for.
        expected: &'static str,
        /// What the link is, e.g. `a veth link` or `a plain device`.
        found: String,
    },
    /// A program moor runs is not installed.
    #[error("{program} is not installed (Debian: apt-get install {package})")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// Any other failure, from the socket or from the kernel.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The errno the kernel answered, or the socket's error.
        #[source]
        source: io::Error,
    },
}

// === impl Error ===

impl Error {
    /// Classifies a failure of `action` on interface `ifname`.
    pub(crate) fn from_io(action: String, ifname: &str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::PermissionDenied { action },
            Some(libc::ENODEV) => Self::NoSuchInterface {
                action,
                name: ifname.to_owned(),
            },
            _ => Self::Io { action, source },
        }
    }

    /// Classifies a failure of `action` on the interface with index `index`,
    /// for the calls that take an index rather than a name.
    pub(crate) fn from_io_index(action: String, index: u32, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::PermissionDenied { action },
            Some(libc::ENODEV) => Self::NoSuchIndex { action, index },
            _ => Self::Io { action, source },
        }
    }
}

/// Checks `name` the way the kernel's `dev_valid_name` does, so a bad name
/// fails with a clear message instead of a bare `EINVAL`.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernel_rules() {
        for good in ["lo", "eth0", "moor-proxy0", "a.b", "x23456789012345"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a:1", "a b", "x234567890123456"] {
            assert!(
                matches!(check_name(bad), Err(Error::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn errno_picks_the_variant() {
        let denied = Error::from_io(
            "adding 10.0.0.1/32 to lo".into(),
            "lo",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(
            denied.to_string(),
            "adding 10.0.0.1/32 to lo needs CAP_NET_ADMIN (run moor as root)"
        );
        let missing = Error::from_io(
            "x".into(),
            "nope0",
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert!(matches!(missing, Error::NoSuchInterface { name, .. } if name == "nope0"));
        let other = Error::from_io("x".into(), "lo", io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(other, Error::Io { .. }));
        let gone = Error::from_io_index(
            "replacing route 10.1.2.0/24 dev index 9".into(),
            9,
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert_eq!(
            gone.to_string(),
            "replacing route 10.1.2.0/24 dev index 9: no network interface has index 9 (see `ip link`)"
        );
    }
}
