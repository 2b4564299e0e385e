//! The little DNS wire format the load generator needs: query files (dnsperf's `name TYPE`
//! lines), ECS subnets, prebuilt questions and OPT records, and the checks on a response.
//!
//! Everything that can be encoded ahead of time is, so building a query at run time is three
//! copies into the send slot.

use std::net::IpAddr;

/// DNS header length.
pub const HEADER_LEN: usize = 12;
/// The UDP payload size advertised in the OPT record.
pub const EDNS_UDP_PAYLOAD: u16 = 1232;

/// One line of a query file, encoded: the question section (name, type, class IN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The text as read (for messages).
    pub text: String,
    /// Wire form: name labels, QTYPE, QCLASS.
    pub wire: Vec<u8>,
}

/// An EDNS Client Subnet, normalised (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parse `name TYPE` (dnsperf's format). The type defaults to A, as in dnsperf.
pub fn parse_question(line: &str) -> Result<Question, String> {
    let mut fields = line.split_whitespace();
    let name = fields.next().ok_or("empty line")?;
    let qtype = match fields.next() {
        Some(t) => parse_type(t)?,
        None => 1,
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected field {extra:?} (want `name TYPE`)"));
    }
    let mut wire = encode_name(name)?;
    wire.extend_from_slice(&qtype.to_be_bytes());
    wire.extend_from_slice(&1u16.to_be_bytes()); // class IN
    Ok(Question {
        text: line.trim().to_owned(),
        wire,
    })
}

/// Read a query file: one `name TYPE` per line; blank lines and lines starting with `;` or
/// `#` are skipped. Errors name the line.
pub fn parse_query_file(text: &str) -> Result<Vec<Question>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        out.push(parse_question(line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if out.is_empty() {
        return Err("no queries".into());
    }
    Ok(out)
}

/// Read a subnet file: the first field of each line is a subnet (`81.2.69.0/24`,
/// `2a02:d180::/56`); anything after it (the `subnets` tool's annotations) is ignored, as are
/// blank lines and `#` comments. Host bits are cleared, as ECS requires.
pub fn parse_subnet_file(text: &str) -> Result<Vec<Subnet>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or(line);
        out.push(parse_subnet(first).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if out.is_empty() {
        return Err("no subnets".into());
    }
    Ok(out)
}

/// Parse `addr/prefix` (a bare address means a host prefix) and clear the host bits.
pub fn parse_subnet(text: &str) -> Result<Subnet, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP subnet"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?,
        None => max,
    };
    Ok(Subnet {
        addr: mask(addr, prefix),
        prefix,
    })
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The OPT pseudo-record (root name, type 41, payload 1232, version 0, no flags), with an
/// ECS option (RFC 7871, code 8) when a subnet is given.
pub fn encode_opt(subnet: Option<Subnet>) -> Vec<u8> {
    let mut option = Vec::new();
    if let Some(s) = subnet {
        let (family, octets): (u16, Vec<u8>) = match s.addr {
            IpAddr::V4(a) => (1, a.octets().to_vec()),
            IpAddr::V6(a) => (2, a.octets().to_vec()),
        };
        let n = (usize::from(s.prefix)).div_ceil(8);
        option.extend_from_slice(&8u16.to_be_bytes());
        option.extend_from_slice(&((4 + n) as u16).to_be_bytes());
        option.extend_from_slice(&family.to_be_bytes());
        option.push(s.prefix);
        option.push(0); // scope prefix: 0 in queries
        option.extend_from_slice(&octets[..n]);
    }
    let mut rr = vec![0u8]; // root name
    rr.extend_from_slice(&41u16.to_be_bytes());
    rr.extend_from_slice(&EDNS_UDP_PAYLOAD.to_be_bytes());
    rr.extend_from_slice(&0u32.to_be_bytes()); // extended rcode, version, flags
    rr.extend_from_slice(&(option.len() as u16).to_be_bytes());
    rr.extend_from_slice(&option);
    rr
}

/// Write a query into `buf`: header with `id` (opcode QUERY, no flags), the question, and
/// `opt` as the only additional record (none if empty). Returns its length, or 0 if `buf` is
/// too small.
pub fn write_query(buf: &mut [u8], id: u16, question: &[u8], opt: &[u8]) -> usize {
    let len = HEADER_LEN + question.len() + opt.len();
    if buf.len() < len {
        return 0;
    }
    let arcount: u16 = if opt.is_empty() { 0 } else { 1 };
    buf[0..2].copy_from_slice(&id.to_be_bytes());
    buf[2..12].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, (arcount >> 8) as u8, arcount as u8]);
    buf[HEADER_LEN..HEADER_LEN + question.len()].copy_from_slice(question);
    buf[HEADER_LEN + question.len()..len].copy_from_slice(opt);
    len
}

/// What a response says about itself, after the checks that need no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
}

/// The header of a datagram that claims to be a response (QR set, one question), or `None`.
pub fn response_head(packet: &[u8]) -> Option<ResponseHead> {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 == 0 {
        return None;
    }
    if packet[4] != 0 || packet[5] != 1 {
        return None;
    }
    Some(ResponseHead {
        id: u16::from_be_bytes([packet[0], packet[1]]),
        rcode: packet[3] & 0x0f,
        truncated: packet[2] & 0x02 != 0,
    })
}

/// Whether the response echoes `question` (names compared without regard to ASCII case).
pub fn echoes_question(packet: &[u8], question: &[u8]) -> bool {
    packet
        .get(HEADER_LEN..HEADER_LEN + question.len())
        .is_some_and(|q| q.eq_ignore_ascii_case(question))
}

/// The addresses of the A and AAAA records in a response's answer section, in order
/// (other record types are skipped). The question section must be `question`, as
/// [`echoes_question`] checks. Errors say what was malformed.
pub fn answer_addrs(packet: &[u8], question: &[u8]) -> Result<Vec<IpAddr>, String> {
    if !echoes_question(packet, question) {
        return Err("the response does not echo the question".into());
    }
    let ancount = usize::from(u16::from_be_bytes([packet[6], packet[7]]));
    let mut at = HEADER_LEN + question.len();
    let mut out = Vec::new();
    for _ in 0..ancount {
        at = skip_name(packet, at)?;
        let fixed = packet.get(at..at + 10).ok_or("answer record cut short")?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at += 10;
        let rdata = packet.get(at..at + len).ok_or("rdata cut short")?;
        match (rtype, len) {
            (1, 4) => out.push(IpAddr::from(<[u8; 4]>::try_from(rdata).map_err(|_| "A")?)),
            (28, 16) => out.push(IpAddr::from(
                <[u8; 16]>::try_from(rdata).map_err(|_| "AAAA")?,
            )),
            _ => {}
        }
        at += len;
    }
    Ok(out)
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *packet.get(at).ok_or("name cut short")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => {
                packet.get(at + 1).ok_or("pointer cut short")?;
                return Ok(at + 2);
            }
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return Err("bad label type".into()),
        }
    }
}

/// Name text to wire labels. A trailing dot is optional; `.` is the root.
pub fn encode_name(name: &str) -> Result<Vec<u8>, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("{name:?}: empty or over-long label"));
            }
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
    }
    wire.push(0);
    if wire.len() > 255 {
        return Err(format!("{name:?}: name over 255 octets"));
    }
    Ok(wire)
}

/// A type mnemonic (`A`, `AAAA`, …) or `TYPEnnn`.
pub fn parse_type(text: &str) -> Result<u16, String> {
    let upper = text.to_ascii_uppercase();
    let known = [
        ("A", 1),
        ("NS", 2),
        ("CNAME", 5),
        ("SOA", 6),
        ("PTR", 12),
        ("MX", 15),
        ("TXT", 16),
        ("AAAA", 28),
        ("SRV", 33),
        ("NAPTR", 35),
        ("DS", 43),
        ("DNSKEY", 48),
        ("SVCB", 64),
        ("HTTPS", 65),
        ("ANY", 255),
        ("CAA", 257),
    ];
    if let Some((_, code)) = known.iter().find(|(name, _)| *name == upper) {
        return Ok(*code);
    }
    upper
        .strip_prefix("TYPE")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unknown query type {text:?}"))
}

/// The standard name of an rcode, for the summary.
pub fn rcode_name(rcode: usize) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    NAMES
        .get(rcode)
        .map_or_else(|| format!("RCODE{rcode}"), |n| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_subnets_parse() {
        let q = parse_question("www.example.com AAAA").unwrap();
        assert_eq!(
            q.wire,
            b"\x03www\x07example\x03com\x00\x00\x1c\x00\x01".to_vec()
        );
        assert!(parse_question("www.example.com BOGUS").is_err());
        assert_eq!(parse_type("type65").unwrap(), 65);
        let s = parse_subnet("81.2.69.142/24").unwrap();
        assert_eq!(s.to_string(), "81.2.69.0/24");
        let s = parse_subnet("2a02:d180::1/56").unwrap();
        assert_eq!(s.to_string(), "2a02:d180::/56");
        assert!(parse_subnet("10.0.0.0/33").is_err());
        let subnets = parse_subnet_file("# c\n81.2.69.0/24 EU GB\n\n2a02:d180::/56\n").unwrap();
        assert_eq!(subnets.len(), 2);
    }

    #[test]
    fn ecs_option_encodes_only_the_prefix_octets() {
        let opt = encode_opt(Some(parse_subnet("2a02:d180::/56").unwrap()));
        // root, type 41, payload 1232, ttl 0, rdlen 4+4+7, code 8, len 11, family 2, /56, 0
        assert_eq!(
            &opt[..],
            &[
                0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 15, 0, 8, 0, 11, 0, 2, 56, 0, 0x2a, 0x02,
                0xd1, 0x80, 0, 0, 0
            ]
        );
        assert_eq!(encode_opt(None).len(), 11);
    }

    #[test]
    fn answer_addresses_are_read_past_compressed_names() {
        let q = parse_question("fleet.example.com A").unwrap();
        let mut packet = vec![0u8; HEADER_LEN];
        packet[2] = 0x84;
        packet[5] = 1;
        packet[7] = 3; // ancount
        packet.extend_from_slice(&q.wire);
        // A CNAME (skipped), then A 192.0.2.1 and AAAA 2001:db8::1, all named by a pointer
        // to the question's name.
        let rr = |rtype: u16, rdata: &[u8]| {
            let mut r = vec![0xc0, 12];
            r.extend_from_slice(&rtype.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 5]);
            r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            r.extend_from_slice(rdata);
            r
        };
        packet.extend(rr(5, b"\x03cdn\x00"));
        packet.extend(rr(1, &[192, 0, 2, 1]));
        let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        packet.extend(rr(28, &v6.octets()));
        let got = answer_addrs(&packet, &q.wire).unwrap();
        assert_eq!(
            got,
            vec!["192.0.2.1".parse::<IpAddr>().unwrap(), IpAddr::V6(v6)]
        );
        assert!(answer_addrs(&packet[..packet.len() - 3], &q.wire).is_err());
        let other = parse_question("other.example.com A").unwrap();
        assert!(answer_addrs(&packet, &other.wire).is_err());
        packet[HEADER_LEN + q.wire.len()] = 0x80; // a reserved label type
        assert!(answer_addrs(&packet, &q.wire).is_err());
    }

    #[test]
    fn responses_are_checked() {
        let q = parse_question("www.example.com A").unwrap();
        let mut buf = [0u8; 128];
        let n = write_query(&mut buf, 0xbeef, &q.wire, &encode_opt(None));
        assert!(
            response_head(&buf[..n]).is_none(),
            "QR clear: not a response"
        );
        buf[2] |= 0x80;
        buf[3] |= 3;
        let head = response_head(&buf[..n]).unwrap();
        assert_eq!((head.id, head.rcode), (0xbeef, 3));
        assert!(echoes_question(&buf[..n], &q.wire));
        buf[13] = b'W';
        assert!(echoes_question(&buf[..n], &q.wire), "case-insensitive");
        assert!(!echoes_question(&buf[..20], &q.wire));
    }
}
