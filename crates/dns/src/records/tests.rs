use super::*;

fn web() -> ServiceEntry {
    ServiceEntry {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 12)),
        ports: vec![
            PortEntry {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80,
            },
            PortEntry {
                name: "dns".into(),
                protocol: "UDP".into(),
                port: 53,
            },
        ],
        endpoints: vec![],
    }
}

fn db() -> ServiceEntry {
    let endpoint = |ip: [u8; 4], hostname: Option<&str>| EndpointEntry {
        ip: Ipv4Addr::from(ip),
        hostname: hostname.map(str::to_owned),
        ports: BTreeMap::from([("pg".to_owned(), 5432)]),
    };
    ServiceEntry {
        namespace: "prod".into(),
        name: "db".into(),
        cluster_ip: None,
        ports: vec![PortEntry {
            name: "pg".into(),
            protocol: "TCP".into(),
            port: 15432,
        }],
        endpoints: vec![
            endpoint([10, 0, 1, 5], Some("db-0")),
            endpoint([10, 0, 2, 7], None),
        ],
    }
}

fn ask(name: &str, qtype: QType) -> Option<Answer> {
    let records = Records::new("cluster.local.", [web(), db()]);
    records.answer(&Question {
        name: Name::parse(name).unwrap(),
        qtype,
        qclass: CLASS_IN,
    })
}

fn a(answer: &Answer) -> Vec<String> {
    let mut ips: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn srv(answer: &Answer) -> Vec<String> {
    let mut records: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::Srv(s) => Some(format!(
                "{} {} {} {}",
                s.priority, s.weight, s.port, s.target
            )),
            _ => None,
        })
        .collect();
    records.sort();
    records
}

#[test]
fn cluster_ip_service_has_an_a_record_in_any_case() {
    let answer = ask("WEB.Default.svc.Cluster.Local.", QType::A).unwrap();
    assert_eq!(answer.rcode, Rcode::NoError);
    assert_eq!(a(&answer), vec!["10.96.0.12"]);
    // The owner is the name as asked.
    assert_eq!(
        answer.answers[0].name.to_string(),
        "WEB.Default.svc.Cluster.Local."
    );
    assert_eq!(answer.answers[0].ttl, TTL);
}

#[test]
fn headless_service_resolves_to_its_endpoints() {
    let answer = ask("db.prod.svc.cluster.local", QType::A).unwrap();
    assert_eq!(a(&answer), vec!["10.0.1.5", "10.0.2.7"]);
    let host = ask("db-0.db.prod.svc.cluster.local", QType::A).unwrap();
    assert_eq!(a(&host), vec!["10.0.1.5"]);
    let dashed = ask("10-0-2-7.db.prod.svc.cluster.local", QType::A).unwrap();
    assert_eq!(a(&dashed), vec!["10.0.2.7"]);
    // Endpoint names exist only for headless services.
    let none = ask("db-0.web.default.svc.cluster.local", QType::A).unwrap();
    assert_eq!(none.rcode, Rcode::NxDomain);
}

#[test]
fn srv_for_a_cluster_ip_port_targets_the_service() {
    let answer = ask("_http._tcp.web.default.svc.cluster.local", QType::Srv).unwrap();
    assert_eq!(
        srv(&answer),
        vec!["0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(answer.additionals.len(), 1);
    let udp = ask("_dns._udp.web.default.svc.cluster.local", QType::Srv).unwrap();
    assert_eq!(srv(&udp), vec!["0 100 53 web.default.svc.cluster.local."]);
    // Wrong protocol: no such name.
    let wrong = ask("_http._udp.web.default.svc.cluster.local", QType::Srv).unwrap();
    assert_eq!(wrong.rcode, Rcode::NxDomain);
}

#[test]
fn srv_for_a_headless_port_lists_each_endpoint_with_glue() {
    let answer = ask("_pg._tcp.db.prod.svc.cluster.local", QType::Srv).unwrap();
    assert_eq!(
        srv(&answer),
        vec![
            "0 50 5432 10-0-2-7.db.prod.svc.cluster.local.",
            "0 50 5432 db-0.db.prod.svc.cluster.local.",
        ]
    );
    let glue: Vec<String> = answer
        .additionals
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert!(glue.contains(&"db-0.db.prod.svc.cluster.local.".to_owned()));
    assert_eq!(answer.additionals.len(), 2);
}

#[test]
fn srv_on_the_service_name_lists_every_named_port() {
    let answer = ask("web.default.svc.cluster.local", QType::Srv).unwrap();
    assert_eq!(
        srv(&answer),
        vec![
            "0 100 53 web.default.svc.cluster.local.",
            "0 100 80 web.default.svc.cluster.local.",
        ]
    );
    // The glue A record is not repeated.
    assert_eq!(answer.additionals.len(), 1);
}

#[test]
fn pod_names_decode_their_address() {
    let answer = ask("10-244-1-9.anything.pod.cluster.local", QType::A).unwrap();
    assert_eq!(a(&answer), vec!["10.244.1.9"]);
    let bad = ask("10-244-1-999.default.pod.cluster.local", QType::A).unwrap();
    assert_eq!(bad.rcode, Rcode::NxDomain);
}

#[test]
fn missing_names_are_nxdomain_and_other_types_are_nodata() {
    for missing in [
        "nope.default.svc.cluster.local",
        "web.nope.svc.cluster.local",
        "x.y.z.web.default.svc.cluster.local",
        "random.cluster.local",
    ] {
        let answer = ask(missing, QType::A).unwrap();
        assert_eq!(answer.rcode, Rcode::NxDomain, "{missing}");
        assert_eq!(answer.authorities.len(), 1, "an SOA for negative caching");
    }
    for (existing, qtype) in [
        ("web.default.svc.cluster.local", QType::Aaaa),
        ("web.default.svc.cluster.local", QType::Txt),
        ("_http._tcp.web.default.svc.cluster.local", QType::A),
        ("default.svc.cluster.local", QType::A),
        ("svc.cluster.local", QType::A),
        ("cluster.local", QType::A),
        ("_tcp.web.default.svc.cluster.local", QType::Srv),
    ] {
        let answer = ask(existing, qtype).unwrap();
        assert_eq!(answer.rcode, Rcode::NoError, "{existing} {qtype}");
        assert!(answer.answers.is_empty(), "{existing} {qtype}");
    }
    let soa = ask("cluster.local", QType::Soa).unwrap();
    assert_eq!(soa.answers.len(), 1);
}

#[test]
fn names_outside_the_domain_are_not_ours() {
    assert!(ask("example.com", QType::A).is_none());
    assert!(ask("local", QType::A).is_none());
    assert!(ask("cluster.local.example.com", QType::A).is_none());
    let records = Records::new("cluster.local", []);
    assert!(records.is_authoritative_for(&Name::parse("x.CLUSTER.local.").unwrap()));
    assert_eq!(records.domain(), "cluster.local");
}
