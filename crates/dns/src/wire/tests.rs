use super::*;

fn name(text: &str) -> Name {
    Name::parse(text).unwrap()
}

fn sample() -> Message {
    let owner = name("_http._tcp.web.default.svc.cluster.local");
    let target = name("web.default.svc.cluster.local");
    Message {
        header: Header {
            id: 0xBEEF,
            response: true,
            authoritative: true,
            recursion_desired: true,
            rcode: Rcode::NxDomain,
            ..Header::default()
        },
        questions: vec![Question {
            name: owner.clone(),
            qtype: QType::Srv,
            qclass: CLASS_IN,
        }],
        answers: vec![Record {
            name: owner,
            class: CLASS_IN,
            ttl: 5,
            data: RData::Srv(Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: target.clone(),
            }),
        }],
        authorities: vec![Record {
            name: name("cluster.local"),
            class: CLASS_IN,
            ttl: 5,
            data: RData::Soa(Soa {
                mname: name("ns.dns.cluster.local"),
                rname: name("hostmaster.cluster.local"),
                serial: 1,
                refresh: 2,
                retry: 3,
                expire: 4,
                minimum: 5,
            }),
        }],
        additionals: vec![
            Record {
                name: target.clone(),
                class: CLASS_IN,
                ttl: 5,
                data: RData::A(Ipv4Addr::new(10, 96, 0, 12)),
            },
            Record {
                name: target,
                class: CLASS_IN,
                ttl: 5,
                data: RData::Aaaa(Ipv6Addr::LOCALHOST),
            },
            Record {
                name: Name::root(),
                class: 1232,
                ttl: 0,
                data: RData::Other {
                    rtype: QType::Opt,
                    data: Vec::new(),
                },
            },
        ],
    }
}

#[test]
fn messages_round_trip() {
    let message = sample();
    let bytes = message.to_bytes();
    let parsed = Message::parse(&bytes).unwrap();
    assert_eq!(parsed.header.ancount, 1);
    assert_eq!(parsed.header.arcount, 3);
    assert_eq!(
        Message {
            header: message.header.clone(),
            ..parsed.clone()
        },
        Message {
            header: message.header.clone(),
            ..message.clone()
        }
    );
    assert_eq!(parsed.header.id, 0xBEEF);
    assert_eq!(parsed.header.rcode, Rcode::NxDomain);
    assert!(parsed.header.authoritative && parsed.header.recursion_desired);
    assert_eq!(parsed.edns_payload(), Some(1232));
}

#[test]
fn writing_compresses_repeated_names() {
    let bytes = sample().to_bytes();
    let needle = b"\x07default";
    let count = bytes.windows(needle.len()).filter(|w| w == needle).count();
    // The question's name is written in full; the SRV target (never compressed) once more.
    assert_eq!(count, 2, "{bytes:?}");
}

#[test]
fn reads_pointers_and_rejects_loops() {
    // Header with one question whose name is `a.` followed by a pointer back to offset 12.
    let mut buf = vec![0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
    buf.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
    buf.extend_from_slice(b"\x01b\xC0\x0C\x00\x01\x00\x01");
    let questions = questions(&buf).unwrap();
    assert_eq!(questions[1].name.to_string(), "b.a.");

    // A pointer to itself, and one pointing forwards.
    let mut looped = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(b"\xC0\x0C\x00\x01\x00\x01");
    assert_eq!(questions_err(&looped), Error::BadPointer);
    let mut forward = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    forward.extend_from_slice(b"\xC0\x0E\x00\x01\x00\x01\x00");
    assert_eq!(questions_err(&forward), Error::BadPointer);
}

fn questions_err(buf: &[u8]) -> Error {
    questions(buf).unwrap_err()
}

#[test]
fn names_parse_and_display() {
    assert_eq!(name("Web.Default.").to_string(), "Web.Default.");
    assert!(name("WEB.default").eq_ignore_case(&name("web.DEFAULT.")));
    assert!(name(".").is_root());
    assert!(matches!(Name::parse("a..b"), Err(Error::EmptyLabel(_))));
    assert_eq!(Name::parse(&"x".repeat(64)), Err(Error::LabelTooLong));
    let long = vec!["abcdefgh"; 40].join(".");
    assert_eq!(Name::parse(&long), Err(Error::NameTooLong));
}

#[test]
fn types_and_codes_convert() {
    for qtype in ["A", "aaaa", "SRV", "TXT", "TYPE99"] {
        let parsed: QType = qtype.parse().unwrap();
        assert_eq!(parsed.to_string().to_lowercase(), qtype.to_lowercase());
        assert_eq!(QType::from_code(parsed.code()), parsed);
    }
    assert!("BOGUS".parse::<QType>().is_err());
    for code in 0..16 {
        assert_eq!(Rcode::from_code(code).code(), code);
    }
}

/// A tiny xorshift generator: the tests need reproducible noise, not a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_truncated_input_never_panics() {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let valid = sample().to_bytes();
    for cut in 0..valid.len() {
        let _ = Message::parse(&valid[..cut]);
        let _ = questions(&valid[..cut]);
    }
    for _ in 0..20_000 {
        let len = (noise.next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        let _ = Message::parse(&bytes);
        // Flip bytes of a valid message too, which reaches deeper into the records.
        bytes = valid.clone();
        for _ in 0..(noise.next() % 4 + 1) {
            let at = (noise.next() as usize) % bytes.len();
            bytes[at] = noise.next() as u8;
        }
        if let Ok(message) = Message::parse(&bytes) {
            // Whatever parses must write and parse back.
            let again = Message::parse(&message.to_bytes()).unwrap();
            assert_eq!(again.questions.len(), message.questions.len());
        }
    }
}
