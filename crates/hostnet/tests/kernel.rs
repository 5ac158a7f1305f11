//! Against the running kernel: these tests change the host's network, so
//! they need root (CAP_NET_ADMIN). Each uses a random address or name and
//! undoes its changes through a guard, even when an assertion fails.

use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};

use moor_hostnet::{
    DummyOutcome, Error, Ipv4Net, add_address, ensure_dummy, interface_index, list_addresses,
    remove_address, remove_link,
};

/// Takes an address off an interface when dropped.
struct AddressGuard {
    ifname: &'static str,
    addr: Ipv4Net,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        // Best effort: the test may have removed it already.
        let _ = remove_address(self.ifname, self.addr);
    }
}

/// Deletes a link when dropped.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = remove_link(&self.0);
    }
}

fn random() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

/// 10.254.x.y/32 with y neither 0 nor 255, unlikely to clash with anything.
fn random_service_ip() -> Ipv4Net {
    let r = random().to_le_bytes();
    let ip = Ipv4Addr::new(10, 254, r[0], r[1] % 254 + 1);
    Ipv4Net::new(ip, 32).expect("32 is a valid prefix")
}

#[test]
fn address_on_lo_is_added_reachable_and_removed() {
    let addr = random_service_ip();
    assert!(add_address("lo", addr).expect("add"), "{addr} was new");
    let _guard = AddressGuard { ifname: "lo", addr };

    assert!(list_addresses("lo").expect("list").contains(&addr));
    assert!(
        !add_address("lo", addr).expect("add twice"),
        "second add is a no-op"
    );

    // The address really is the host's: a socket can bind and be reached on it.
    let listener = TcpListener::bind((addr.addr(), 0)).expect("bind on the new address");
    let mut client =
        TcpStream::connect(listener.local_addr().expect("local addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"x").expect("write");
    let mut byte = [0; 1];
    server.read_exact(&mut byte).expect("read");
    assert_eq!(&byte, b"x");

    // Another prefix length is another address: nothing to remove.
    let wider = Ipv4Net::new(addr.addr(), 24).expect("24 is a valid prefix");
    assert!(!remove_address("lo", wider).expect("remove /24"));
    assert!(list_addresses("lo").expect("list").contains(&addr));

    assert!(remove_address("lo", addr).expect("remove"));
    assert!(!list_addresses("lo").expect("list").contains(&addr));
    assert!(
        !remove_address("lo", addr).expect("remove twice"),
        "second remove is a no-op"
    );
}

#[test]
fn lo_keeps_its_loopback_address() {
    let index = interface_index("lo").expect("lo exists");
    assert!(index > 0);
    let loopback = Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).expect("valid");
    assert!(list_addresses("lo").expect("list").contains(&loopback));
}

#[test]
fn missing_interface_is_named() {
    let addr = random_service_ip();
    let name = "moor-nope0";
    match add_address(name, addr) {
        Err(Error::NoSuchInterface { name: missing, .. }) => assert_eq!(missing, name),
        other => panic!("expected NoSuchInterface, got {other:?}"),
    }
    let err = list_addresses(name).expect_err("no such interface");
    assert!(matches!(err, Error::NoSuchInterface { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("no network interface named \"moor-nope0\""),
        "{err}"
    );
    assert!(matches!(
        remove_address(name, addr),
        Err(Error::NoSuchInterface { .. })
    ));
    assert!(matches!(
        interface_index(name),
        Err(Error::NoSuchInterface { .. })
    ));
    assert!(!remove_link(name).expect("removing a missing link"));
}

#[test]
fn invalid_name_is_refused_before_the_kernel() {
    let addr = random_service_ip();
    for name in ["", "has space", "much-too-long-name0"] {
        assert!(
            matches!(add_address(name, addr), Err(Error::InvalidName { .. })),
            "{name:?}"
        );
    }
}

#[test]
fn dummy_is_created_or_reported_unsupported() {
    let name = format!("moort{:06x}", random() & 0xff_ffff);
    let _guard = LinkGuard(name.clone());
    match ensure_dummy(&name).expect("ensure_dummy") {
        // This kernel has no dummy type: the proxy falls back to lo.
        DummyOutcome::Unsupported => {
            assert!(matches!(
                interface_index(&name),
                Err(Error::NoSuchInterface { .. })
            ));
        }
        DummyOutcome::Created => {
            assert!(interface_index(&name).expect("created") > 0);
            assert_eq!(ensure_dummy(&name).expect("again"), DummyOutcome::Existed);
            assert!(remove_link(&name).expect("remove"));
            assert!(!remove_link(&name).expect("remove twice"));
        }
        DummyOutcome::Existed => panic!("{name} existed before the test"),
    }
}

#[test]
fn dummy_will_not_take_over_another_kind_of_link() {
    match ensure_dummy("lo") {
        Err(Error::WrongKind { name, .. }) => assert_eq!(name, "lo"),
        other => panic!("expected WrongKind for lo, got {other:?}"),
    }
}
