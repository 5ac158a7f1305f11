use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{Chains, Kind};
use crate::table::{Frontend, Protocol, Route, Table};

fn frontend(protocol: Protocol, ip: [u8; 4], port: u16) -> Frontend {
    Frontend {
        protocol,
        listen: SocketAddrV4::new(Ipv4Addr::from(ip), port),
    }
}

fn route(service: &str, backends: &[&str], affinity: Option<u64>) -> Route {
    Route {
        service: service.into(),
        backends: backends
            .iter()
            .map(|b| b.parse::<SocketAddr>().expect("an endpoint"))
            .collect(),
        affinity: affinity.map(Duration::from_secs),
    }
}

/// A ClusterIP service with 2 endpoints and a node port, a UDP service with
/// ClientIP affinity, and a service with a node port and no endpoints.
fn small_table() -> Table {
    let web = route(
        "default/web:http",
        &["10.0.0.1:8080", "10.0.0.2:8080"],
        None,
    );
    let mut table = Table::default();
    table
        .routes
        .insert(frontend(Protocol::Tcp, [10, 96, 0, 5], 80), web.clone());
    table
        .routes
        .insert(frontend(Protocol::Tcp, [0, 0, 0, 0], 30080), web);
    table.routes.insert(
        frontend(Protocol::Udp, [10, 96, 0, 6], 53),
        route(
            "default/sticky:dns",
            &["10.0.0.3:5353", "10.0.0.4:5353"],
            Some(600),
        ),
    );
    let empty = route("default/empty:", &[], None);
    table
        .routes
        .insert(frontend(Protocol::Tcp, [10, 96, 0, 7], 80), empty.clone());
    table
        .routes
        .insert(frontend(Protocol::Tcp, [0, 0, 0, 0], 30081), empty);
    table
}

const GOLDEN: &str = r#"*filter
:MOOR-SERVICES - [0:0]
:MOOR-FORWARD - [0:0]
:MOOR-FIREWALL - [0:0]
-A MOOR-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment "moor service traffic marked for masquerade" -j ACCEPT
-A MOOR-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "moor service flows already accepted" -j ACCEPT
-A MOOR-FIREWALL -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "martians to 127/8 that route_localnet would let in" -j DROP
-A MOOR-SERVICES -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30081 -m comment --comment "default/empty: has no endpoints" -j REJECT
-A MOOR-SERVICES -d 10.96.0.7/32 -p tcp -m tcp --dport 80 -m comment --comment "default/empty: has no endpoints" -j REJECT
COMMIT
*nat
:MOOR-SERVICES - [0:0]
:MOOR-NODEPORTS - [0:0]
:MOOR-MARK-MASQ - [0:0]
:MOOR-POSTROUTING - [0:0]
:MOOR-SVC-24B08DAA12F58DE5 - [0:0]
:MOOR-SEP-A3FB7203FACB690B - [0:0]
:MOOR-SEP-EB8B9AFFF496E0B4 - [0:0]
:MOOR-SVC-799F730B914DEB43 - [0:0]
:MOOR-SEP-563E68C52B056ACB - [0:0]
:MOOR-SEP-AAE1D8C8734A6978 - [0:0]
-A MOOR-MARK-MASQ -j MARK --or-mark 0x4000
-A MOOR-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A MOOR-POSTROUTING -j MARK --xor-mark 0x4000
-A MOOR-POSTROUTING -m comment --comment "moor service traffic requiring SNAT" -j MASQUERADE
-A MOOR-SERVICES -d 10.96.0.5/32 -p tcp -m tcp --dport 80 -m comment --comment "default/web:http cluster IP" -j MOOR-SVC-24B08DAA12F58DE5
-A MOOR-SERVICES -d 10.96.0.6/32 -p udp -m udp --dport 53 -m comment --comment "default/sticky:dns cluster IP" -j MOOR-SVC-799F730B914DEB43
-A MOOR-SERVICES -m addrtype --dst-type LOCAL -m comment --comment "node ports on local addresses go last" -j MOOR-NODEPORTS
-A MOOR-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment "default/web:http node port" -j MOOR-MARK-MASQ
-A MOOR-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment "default/web:http node port" -j MOOR-SVC-24B08DAA12F58DE5
-A MOOR-SVC-24B08DAA12F58DE5 -m comment --comment "default/web:http" -m statistic --mode random --probability 0.5000000000 -j MOOR-SEP-A3FB7203FACB690B
-A MOOR-SVC-24B08DAA12F58DE5 -m comment --comment "default/web:http" -j MOOR-SEP-EB8B9AFFF496E0B4
-A MOOR-SEP-A3FB7203FACB690B -s 10.0.0.1/32 -m comment --comment "default/web:http" -j MOOR-MARK-MASQ
-A MOOR-SEP-A3FB7203FACB690B -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.0.0.1:8080
-A MOOR-SEP-EB8B9AFFF496E0B4 -s 10.0.0.2/32 -m comment --comment "default/web:http" -j MOOR-MARK-MASQ
-A MOOR-SEP-EB8B9AFFF496E0B4 -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.0.0.2:8080
-A MOOR-SVC-799F730B914DEB43 -m comment --comment "default/sticky:dns" -m recent --name MOOR-SEP-563E68C52B056ACB --rcheck --seconds 600 --reap -j MOOR-SEP-563E68C52B056ACB
-A MOOR-SVC-799F730B914DEB43 -m comment --comment "default/sticky:dns" -m recent --name MOOR-SEP-AAE1D8C8734A6978 --rcheck --seconds 600 --reap -j MOOR-SEP-AAE1D8C8734A6978
-A MOOR-SVC-799F730B914DEB43 -m comment --comment "default/sticky:dns" -m statistic --mode random --probability 0.5000000000 -j MOOR-SEP-563E68C52B056ACB
-A MOOR-SVC-799F730B914DEB43 -m comment --comment "default/sticky:dns" -j MOOR-SEP-AAE1D8C8734A6978
-A MOOR-SEP-563E68C52B056ACB -s 10.0.0.3/32 -m comment --comment "default/sticky:dns" -j MOOR-MARK-MASQ
-A MOOR-SEP-563E68C52B056ACB -p udp -m comment --comment "default/sticky:dns" -m recent --name MOOR-SEP-563E68C52B056ACB --set -m udp -j DNAT --to-destination 10.0.0.3:5353
-A MOOR-SEP-AAE1D8C8734A6978 -s 10.0.0.4/32 -m comment --comment "default/sticky:dns" -j MOOR-MARK-MASQ
-A MOOR-SEP-AAE1D8C8734A6978 -p udp -m comment --comment "default/sticky:dns" -m recent --name MOOR-SEP-AAE1D8C8734A6978 --set -m udp -j DNAT --to-destination 10.0.0.4:5353
COMMIT
"#;

#[test]
fn a_small_table_renders_the_golden_rules() {
    let chains = Chains::new("MOOR").expect("a valid prefix");
    let ruleset = chains.render(&small_table(), &BTreeSet::new());
    assert_eq!(ruleset.text, GOLDEN, "got:\n{}", ruleset.text);
    // The chains it leaves: 4 fixed nat, 3 filter, 2 services, 4 endpoints.
    assert_eq!(ruleset.chains.len(), 13);
    assert!(ruleset.chains.iter().all(|(_, c)| c.len() <= 28));
}

#[test]
fn chains_no_longer_wanted_are_flushed_and_deleted_and_others_left_alone() {
    let chains = Chains::new("MOOR").expect("a valid prefix");
    let before = chains.render(&small_table(), &BTreeSet::new());
    let mut present = before.chains.clone();
    // Another proxy's chain, whose prefix merely starts like ours.
    present.insert((Kind::Nat, "MOOR2-SERVICES".to_string()));
    let after = chains.render(&Table::default(), &present);
    let deleted: Vec<&str> = after
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("-X "))
        .collect();
    assert_eq!(deleted.len(), 6, "{}", after.text);
    assert!(
        deleted.iter().all(|c| c.starts_with("MOOR-S")),
        "{deleted:?}"
    );
    for chain in &deleted {
        assert!(after.text.contains(&format!(":{chain} - [0:0]")));
    }
    assert!(!after.text.contains("MOOR2"));
    // Rendering again from what is there now is a fixed point.
    let again = chains.render(&Table::default(), &after.chains);
    assert!(!again.text.contains("-X "));
}

#[test]
fn prefixes_must_make_valid_chain_names() {
    assert!(Chains::new("MOOR").is_some());
    assert!(Chains::new("MT12345").is_some());
    for bad in ["", "moor", "MOOR-1", "MOOR1234"] {
        assert!(Chains::new(bad).is_none(), "{bad:?}");
    }
    let chains = Chains::new("MOOR").expect("a valid prefix");
    assert!(chains.owns("MOOR-SVC-0123"));
    assert!(!chains.owns("MOOR2-SVC-0123") && !chains.owns("DOCKER"));
}
