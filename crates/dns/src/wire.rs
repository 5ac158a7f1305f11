//! The DNS wire format (RFC 1035, SRV from RFC 2782): header, questions and the record types
//! moor needs (A, AAAA, CNAME, NS, PTR, SRV, SOA); every other type is kept as opaque bytes.
//!
//! Reading follows compression pointers but only backwards, so a hostile message cannot loop;
//! any input yields a value or an [`Error`], never a panic. Writing compresses owner names and
//! the names inside CNAME, NS, PTR and SOA data (never SRV targets, as RFC 2782 asks).

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Length of the fixed message header.
pub const HEADER_LEN: usize = 12;
/// The Internet class.
pub const CLASS_IN: u16 = 1;
/// The largest message a plain UDP exchange may carry (RFC 1035).
pub const UDP_MIN_PAYLOAD: usize = 512;

const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;
const POINTER_LIMIT: usize = 0x4000;

/// Why a message could not be read or a name could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The message ends in the middle of a field.
    #[error("message ends early")]
    Truncated,
    /// A compression pointer points forwards or at itself.
    #[error("bad compression pointer")]
    BadPointer,
    /// A label type other than a plain label or a pointer.
    #[error("unsupported label type {0:#04x}")]
    LabelType(u8),
    /// A label longer than 63 bytes.
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// A name longer than 255 bytes on the wire.
    #[error("name longer than 255 bytes")]
    NameTooLong,
    /// An empty label in the middle of a dotted name.
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    /// Record data whose length does not match its type.
    #[error("record data of type {0} has the wrong length")]
    RdataLength(QType),
}

/// A record or query type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    /// IPv4 address.
    A,
    /// Name server.
    Ns,
    /// Canonical name.
    Cname,
    /// Start of authority.
    Soa,
    /// Pointer.
    Ptr,
    /// Mail exchanger.
    Mx,
    /// Text.
    Txt,
    /// IPv6 address.
    Aaaa,
    /// Service locator.
    Srv,
    /// EDNS(0) pseudo-record.
    Opt,
    /// Any type (queries only).
    Any,
    /// Any other type, by number.
    Other(u16),
}

/// A response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rcode {
    /// No error.
    #[default]
    NoError,
    /// The query was malformed.
    FormErr,
    /// The server failed (e.g. no upstream answered).
    ServFail,
    /// The name does not exist.
    NxDomain,
    /// The kind of query is not implemented.
    NotImp,
    /// The server refuses to answer.
    Refused,
    /// Any other code, by number.
    Other(u8),
}

/// The fixed header; the section counts are filled in by [`Message::to_bytes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Matches a response to its query.
    pub id: u16,
    /// QR: set on responses.
    pub response: bool,
    /// The kind of query; 0 is a standard query.
    pub opcode: u8,
    /// AA: the server is authoritative for the name.
    pub authoritative: bool,
    /// TC: the message was cut to fit; retry over TCP.
    pub truncated: bool,
    /// RD: the client wants recursion.
    pub recursion_desired: bool,
    /// RA: the server offers recursion.
    pub recursion_available: bool,
    /// The response code.
    pub rcode: Rcode,
    /// Number of questions.
    pub qdcount: u16,
    /// Number of answers.
    pub ancount: u16,
    /// Number of authority records.
    pub nscount: u16,
    /// Number of additional records.
    pub arcount: u16,
}

/// A domain name as a list of labels (the root has none). Comparisons with `==` are exact; use
/// [`Name::eq_ignore_case`] for DNS semantics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Name {
    labels: Vec<Vec<u8>>,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: Name,
    /// The type asked for.
    pub qtype: QType,
    /// The class, almost always [`CLASS_IN`].
    pub qclass: u16,
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name.
    pub name: Name,
    /// The class ([`CLASS_IN`]; the UDP payload size for OPT).
    pub class: u16,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The typed data; it also gives the record's type.
    pub data: RData,
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A canonical name.
    Cname(Name),
    /// A name server.
    Ns(Name),
    /// A pointer.
    Ptr(Name),
    /// A service locator.
    Srv(Srv),
    /// A start of authority.
    Soa(Soa),
    /// Any other type, kept as bytes.
    Other {
        /// The record type.
        rtype: QType,
        /// The raw data.
        data: Vec<u8>,
    },
}

/// SRV data (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower is preferred.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// The port of the service.
    pub port: u16,
    /// The host offering it.
    pub target: Name,
}

/// SOA data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// The primary name server.
    pub mname: Name,
    /// The mailbox of the person responsible.
    pub rname: Name,
    /// Version of the zone.
    pub serial: u32,
    /// Seconds between refreshes.
    pub refresh: u32,
    /// Seconds between retries.
    pub retry: u32,
    /// Seconds until the zone expires.
    pub expire: u32,
    /// TTL of negative answers.
    pub minimum: u32,
}

/// A whole message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The header; its counts are ignored when writing.
    pub header: Header,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section.
    pub authorities: Vec<Record>,
    /// The additional section.
    pub additionals: Vec<Record>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

struct Writer {
    out: Vec<u8>,
    /// Offsets of names already written, by their lowercased labels.
    names: HashMap<Vec<Vec<u8>>, u16>,
}

// === impl QType ===

impl QType {
    /// The type's number.
    pub fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Ns => 2,
            QType::Cname => 5,
            QType::Soa => 6,
            QType::Ptr => 12,
            QType::Mx => 15,
            QType::Txt => 16,
            QType::Aaaa => 28,
            QType::Srv => 33,
            QType::Opt => 41,
            QType::Any => 255,
            QType::Other(code) => code,
        }
    }

    /// The type with this number.
    pub fn from_code(code: u16) -> QType {
        const KNOWN: [QType; 11] = [
            QType::A,
            QType::Ns,
            QType::Cname,
            QType::Soa,
            QType::Ptr,
            QType::Mx,
            QType::Txt,
            QType::Aaaa,
            QType::Srv,
            QType::Opt,
            QType::Any,
        ];
        KNOWN
            .into_iter()
            .find(|t| t.code() == code)
            .unwrap_or(QType::Other(code))
    }
}

impl fmt::Display for QType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            QType::A => "A",
            QType::Ns => "NS",
            QType::Cname => "CNAME",
            QType::Soa => "SOA",
            QType::Ptr => "PTR",
            QType::Mx => "MX",
            QType::Txt => "TXT",
            QType::Aaaa => "AAAA",
            QType::Srv => "SRV",
            QType::Opt => "OPT",
            QType::Any => "ANY",
            QType::Other(code) => return write!(f, "TYPE{code}"),
        };
        f.write_str(name)
    }
}

impl FromStr for QType {
    type Err = String;

    /// Parses `A`, `SRV`, ... (any case) or `TYPE<number>`.
    fn from_str(text: &str) -> Result<QType, String> {
        let upper = text.to_ascii_uppercase();
        if let Some(code) = upper.strip_prefix("TYPE").and_then(|n| n.parse().ok()) {
            return Ok(QType::from_code(code));
        }
        (1..=255)
            .map(QType::from_code)
            .find(|t| !matches!(t, QType::Other(_)) && t.to_string() == upper)
            .ok_or_else(|| format!("unknown record type {text:?}"))
    }
}

// === impl Rcode ===

impl Rcode {
    /// The code's number.
    pub fn code(self) -> u8 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::Other(code) => code & 0x0F,
        }
    }

    /// The code with this number (only the low four bits count).
    pub fn from_code(code: u8) -> Rcode {
        match code & 0x0F {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            other => Rcode::Other(other),
        }
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rcode::NoError => f.write_str("NOERROR"),
            Rcode::FormErr => f.write_str("FORMERR"),
            Rcode::ServFail => f.write_str("SERVFAIL"),
            Rcode::NxDomain => f.write_str("NXDOMAIN"),
            Rcode::NotImp => f.write_str("NOTIMP"),
            Rcode::Refused => f.write_str("REFUSED"),
            Rcode::Other(code) => write!(f, "RCODE{code}"),
        }
    }
}

// === impl Header ===

impl Header {
    /// Reads the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Header, Error> {
        Reader::new(buf).header()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        let mut flags = u16::from(self.opcode & 0x0F) << 11 | u16::from(self.rcode.code());
        for (set, bit) in [
            (self.response, 15),
            (self.authoritative, 10),
            (self.truncated, 9),
            (self.recursion_desired, 8),
            (self.recursion_available, 7),
        ] {
            flags |= u16::from(set) << bit;
        }
        out.extend_from_slice(&flags.to_be_bytes());
        for count in [self.qdcount, self.ancount, self.nscount, self.arcount] {
            out.extend_from_slice(&count.to_be_bytes());
        }
    }
}

// === impl Name ===

impl Name {
    /// The root name.
    pub fn root() -> Name {
        Name::default()
    }

    /// Parses a dotted name; a trailing dot is optional and `""` or `"."` is the root.
    /// Backslash escapes are not interpreted.
    pub fn parse(text: &str) -> Result<Name, Error> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Name::root());
        }
        let labels = trimmed
            .split('.')
            .map(|label| match label.len() {
                0 => Err(Error::EmptyLabel(text.to_owned())),
                1..=MAX_LABEL_LEN => Ok(label.as_bytes().to_vec()),
                _ => Err(Error::LabelTooLong),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = Name { labels };
        if name.wire_len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        Ok(name)
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.labels.iter().map(Vec::as_slice)
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.labels.is_empty()
    }

    /// Equality ignoring ASCII case, as DNS compares names.
    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.labels.len() == other.labels.len()
            && self
                .labels
                .iter()
                .zip(&other.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    fn wire_len(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }
}

impl fmt::Display for Name {
    /// Presentation format with a trailing dot; dots, backslashes and unprintable bytes inside
    /// labels are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            for &byte in label {
                match byte {
                    b'.' | b'\\' => write!(f, "\\{}", char::from(byte))?,
                    0x21..=0x7E => write!(f, "{}", char::from(byte))?,
                    _ => write!(f, "\\{byte:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

// === impl Record ===

impl Record {
    /// The record's type.
    pub fn rtype(&self) -> QType {
        match &self.data {
            RData::A(_) => QType::A,
            RData::Aaaa(_) => QType::Aaaa,
            RData::Cname(_) => QType::Cname,
            RData::Ns(_) => QType::Ns,
            RData::Ptr(_) => QType::Ptr,
            RData::Srv(_) => QType::Srv,
            RData::Soa(_) => QType::Soa,
            RData::Other { rtype, .. } => *rtype,
        }
    }
}

// === impl Message ===

impl Message {
    /// Reads a whole message. Bytes after the last counted record are ignored.
    pub fn parse(buf: &[u8]) -> Result<Message, Error> {
        let mut reader = Reader::new(buf);
        let header = reader.header()?;
        // Counts come from the sender: collect record by record instead of pre-allocating.
        let questions = (0..header.qdcount)
            .map(|_| reader.question())
            .collect::<Result<_, _>>()?;
        let answers = reader.records(header.ancount)?;
        let authorities = reader.records(header.nscount)?;
        let additionals = reader.records(header.arcount)?;
        Ok(Message {
            header,
            questions,
            answers,
            authorities,
            additionals,
        })
    }

    /// Writes the message, compressing names; the header counts are taken from the sections
    /// (a section longer than 65535 records is cut there).
    pub fn to_bytes(&self) -> Vec<u8> {
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let header = Header {
            qdcount: count(self.questions.len()),
            ancount: count(self.answers.len()),
            nscount: count(self.authorities.len()),
            arcount: count(self.additionals.len()),
            ..self.header.clone()
        };
        let mut writer = Writer {
            out: Vec::with_capacity(UDP_MIN_PAYLOAD),
            names: HashMap::new(),
        };
        header.write(&mut writer.out);
        for question in self.questions.iter().take(usize::from(header.qdcount)) {
            writer.name(&question.name, true);
            writer.u16(question.qtype.code());
            writer.u16(question.qclass);
        }
        for (records, n) in [
            (&self.answers, header.ancount),
            (&self.authorities, header.nscount),
            (&self.additionals, header.arcount),
        ] {
            for record in records.iter().take(usize::from(n)) {
                writer.record(record);
            }
        }
        writer.out
    }

    /// The UDP payload size the sender advertises with EDNS(0), if it sent an OPT record.
    pub fn edns_payload(&self) -> Option<u16> {
        self.additionals
            .iter()
            .find(|r| r.rtype() == QType::Opt)
            .map(|r| r.class)
    }
}

/// Reads only the header and question section of `buf` (e.g. of a forwarded response whose
/// records need not be understood).
pub fn questions(buf: &[u8]) -> Result<Vec<Question>, Error> {
    let mut reader = Reader::new(buf);
    let header = reader.header()?;
    (0..header.qdcount).map(|_| reader.question()).collect()
}

// === impl Reader ===

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut array = [0; N];
        array.copy_from_slice(self.bytes(N)?);
        Ok(array)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_be_bytes)
    }

    fn header(&mut self) -> Result<Header, Error> {
        let id = self.u16()?;
        let flags = self.u16()?;
        let bit = |n: u16| flags & (1 << n) != 0;
        Ok(Header {
            id,
            response: bit(15),
            opcode: ((flags >> 11) & 0x0F) as u8,
            authoritative: bit(10),
            truncated: bit(9),
            recursion_desired: bit(8),
            recursion_available: bit(7),
            rcode: Rcode::from_code((flags & 0x0F) as u8),
            qdcount: self.u16()?,
            ancount: self.u16()?,
            nscount: self.u16()?,
            arcount: self.u16()?,
        })
    }

    /// Reads a possibly compressed name. Every pointer must point before the label sequence
    /// that contains it, so each jump moves strictly backwards and the walk ends.
    fn name(&mut self) -> Result<Name, Error> {
        let mut labels = Vec::new();
        let mut wire_len = 1;
        let mut pos = self.pos;
        let mut limit = self.pos;
        let mut resume = None;
        loop {
            let len = *self.buf.get(pos).ok_or(Error::Truncated)?;
            match len & 0xC0 {
                0x00 if len == 0 => {
                    pos += 1;
                    break;
                }
                0x00 => {
                    let start = pos + 1;
                    let label = self
                        .buf
                        .get(start..start + usize::from(len))
                        .ok_or(Error::Truncated)?;
                    wire_len += label.len() + 1;
                    if wire_len > MAX_NAME_LEN {
                        return Err(Error::NameTooLong);
                    }
                    labels.push(label.to_vec());
                    pos = start + label.len();
                }
                0xC0 => {
                    let low = *self.buf.get(pos + 1).ok_or(Error::Truncated)?;
                    let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                    if target >= limit {
                        return Err(Error::BadPointer);
                    }
                    resume.get_or_insert(pos + 2);
                    limit = target;
                    pos = target;
                }
                other => return Err(Error::LabelType(other)),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Ok(Name { labels })
    }

    fn question(&mut self) -> Result<Question, Error> {
        Ok(Question {
            name: self.name()?,
            qtype: QType::from_code(self.u16()?),
            qclass: self.u16()?,
        })
    }

    fn records(&mut self, count: u16) -> Result<Vec<Record>, Error> {
        (0..count).map(|_| self.record()).collect()
    }

    fn record(&mut self) -> Result<Record, Error> {
        let name = self.name()?;
        let rtype = QType::from_code(self.u16()?);
        let class = self.u16()?;
        let ttl = self.u32()?;
        let len = usize::from(self.u16()?);
        let end = self.pos + len;
        if end > self.buf.len() {
            return Err(Error::Truncated);
        }
        let data = match rtype {
            QType::A => RData::A(Ipv4Addr::from(self.array::<4>()?)),
            QType::Aaaa => RData::Aaaa(Ipv6Addr::from(self.array::<16>()?)),
            QType::Cname => RData::Cname(self.name()?),
            QType::Ns => RData::Ns(self.name()?),
            QType::Ptr => RData::Ptr(self.name()?),
            QType::Srv => RData::Srv(Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            }),
            QType::Soa => RData::Soa(Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            }),
            _ => RData::Other {
                rtype,
                data: self.bytes(len)?.to_vec(),
            },
        };
        if self.pos != end {
            return Err(Error::RdataLength(rtype));
        }
        Ok(Record {
            name,
            class,
            ttl,
            data,
        })
    }
}

// === impl Writer ===

impl Writer {
    fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    fn name(&mut self, name: &Name, compress: bool) {
        for at in 0..name.labels.len() {
            let suffix: Vec<Vec<u8>> = name.labels[at..]
                .iter()
                .map(|l| l.to_ascii_lowercase())
                .collect();
            if compress && let Some(&offset) = self.names.get(&suffix) {
                self.u16(0xC000 | offset);
                return;
            }
            if let Ok(offset) = u16::try_from(self.out.len())
                && usize::from(offset) < POINTER_LIMIT
            {
                self.names.entry(suffix).or_insert(offset);
            }
            let label = &name.labels[at];
            // Names are built by `Name::parse` or read from the wire, so labels fit in a byte.
            self.out.push(label.len().min(MAX_LABEL_LEN) as u8);
            self.out
                .extend_from_slice(&label[..label.len().min(MAX_LABEL_LEN)]);
        }
        self.out.push(0);
    }

    fn record(&mut self, record: &Record) {
        self.name(&record.name, true);
        self.u16(record.rtype().code());
        self.u16(record.class);
        self.u32(record.ttl);
        let length_at = self.out.len();
        self.u16(0);
        match &record.data {
            RData::A(ip) => self.out.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.out.extend_from_slice(&ip.octets()),
            RData::Cname(name) | RData::Ns(name) | RData::Ptr(name) => self.name(name, true),
            RData::Srv(srv) => {
                self.u16(srv.priority);
                self.u16(srv.weight);
                self.u16(srv.port);
                self.name(&srv.target, false);
            }
            RData::Soa(soa) => {
                self.name(&soa.mname, true);
                self.name(&soa.rname, true);
                for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    self.u32(value);
                }
            }
            RData::Other { data, .. } => self.out.extend_from_slice(data),
        }
        let length = u16::try_from(self.out.len() - length_at - 2).unwrap_or(u16::MAX);
        self.out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
