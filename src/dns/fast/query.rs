//! A zero-copy reader for the queries the fast path answers.
//!
//! It accepts only the common shape: a query (QR clear, opcode QUERY) with one question of
//! class IN, no compression in the name, and nothing after it but an optional OPT record of
//! EDNS version 0 whose options include at most one valid Client Subnet option (others, NSID
//! among them, are skipped). Everything
//! else, malformed or merely unusual, is `None`: the full path (hickory-proto's parser and the
//! rules in `handler`) decides what it gets, FORMERR included. So the reader never has to be
//! right about an error, only about what it accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::MAX_NAME_LEN;

const HEADER_LEN: usize = 12;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
const OPTION_ECS: u16 = 8;

/// A Client Subnet option as received, validated (RFC 7871 §6, §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs<'a> {
    pub address: IpAddr,
    pub source_prefix: u8,
    /// FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as sent, minus SCOPE: the reply echoes them.
    pub family: [u8; 2],
    pub address_bytes: &'a [u8],
}

/// The query's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns<'a> {
    /// The requestor's UDP payload size.
    pub payload: u16,
    pub dnssec_ok: bool,
    pub ecs: Option<Ecs<'a>>,
}

/// A query in the shape the fast path answers.
pub struct Query<'a> {
    pub id: [u8; 2],
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// Name, type and class as received; the reply echoes them, 0x20 case and all.
    pub question: &'a [u8],
    pub qtype: u16,
    pub edns: Option<Edns<'a>>,
    /// Lower-cased name followed by the type (big-endian): see [`Query::name_key`].
    key: [u8; MAX_NAME_LEN + 2],
    name_len: usize,
}

impl Query<'_> {
    /// The lower-cased wire name.
    pub fn name_key(&self) -> &[u8] {
        &self.key[..self.name_len]
    }

    /// The wire name as received, case and all.
    pub fn spelled_name(&self) -> &[u8] {
        &self.question[..self.name_len]
    }

    /// The lower-cased wire name followed by the type: the key of static answers.
    pub fn name_type_key(&self) -> &[u8] {
        &self.key[..self.name_len + 2]
    }
}

/// Read a query, or `None` when the full path should handle it.
pub fn parse(raw: &[u8]) -> Option<Query<'_>> {
    let header = raw.get(..HEADER_LEN)?;
    let (flags, counts) = (&header[2..4], &header[4..12]);
    let is_query = flags[0] & 0x80 == 0;
    let opcode = (flags[0] >> 3) & 0x0f;
    let additional = u16_at(counts, 6)?;
    if !is_query || opcode != 0 || counts[..6] != [0, 1, 0, 0, 0, 0] || additional > 1 {
        return None;
    }

    let mut key = [0u8; MAX_NAME_LEN + 2];
    let mut at = HEADER_LEN;
    let mut name_len = 0;
    loop {
        let len = usize::from(*raw.get(at)?);
        // A compression pointer (or a reserved label type) in a question: unusual, not ours.
        if len & 0xc0 != 0 || name_len + 1 + len > MAX_NAME_LEN {
            return None;
        }
        key[name_len] = len as u8;
        let label = raw.get(at + 1..at + 1 + len)?;
        for (k, b) in key[name_len + 1..].iter_mut().zip(label) {
            *k = b.to_ascii_lowercase();
        }
        name_len += 1 + len;
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qtype = u16_at(raw, at)?;
    if u16_at(raw, at + 2)? != CLASS_IN {
        return None;
    }
    key[name_len..name_len + 2].copy_from_slice(&qtype.to_be_bytes());
    let question = &raw[HEADER_LEN..at + 4];
    let rest = &raw[at + 4..];

    let edns = if additional == 1 {
        Some(parse_opt(rest)?)
    } else if rest.is_empty() {
        None
    } else {
        return None;
    };
    Some(Query {
        id: [header[0], header[1]],
        recursion_desired: flags[0] & 0x01 != 0,
        checking_disabled: flags[1] & 0x10 != 0,
        question,
        qtype,
        edns,
        key,
        name_len,
    })
}

/// The OPT record, which must be exactly the rest of the message.
fn parse_opt(rr: &[u8]) -> Option<Edns<'_>> {
    // Root owner, TYPE, CLASS (payload), TTL (extended rcode, version, flags), RDLENGTH.
    if rr.len() < 11 || rr[0] != 0 || u16_at(rr, 1)? != TYPE_OPT {
        return None;
    }
    let (extended_rcode, version) = (rr[5], rr[6]);
    if extended_rcode != 0 || version != 0 {
        return None; // BADVERS and friends: the full path answers those.
    }
    let dnssec_ok = rr[7] & 0x80 != 0;
    let rdata = &rr[11..];
    if usize::from(u16_at(rr, 9)?) != rdata.len() {
        return None;
    }
    let mut ecs = None;
    let mut at = 0;
    while at < rdata.len() {
        let code = u16_at(rdata, at)?;
        let len = usize::from(u16_at(rdata, at + 2)?);
        let value = rdata.get(at + 4..at + 4 + len)?;
        match code {
            OPTION_ECS if ecs.is_none() => ecs = Some(parse_ecs(value)?),
            // A second ECS option is ambiguous: the full path judges it.
            OPTION_ECS => return None,
            // NSID, cookies and the rest: no reply carries them (we have no NSID to give, and
            // the full path leaves every option but ECS out of its reply too).
            _ => {}
        }
        at += 4 + len;
    }
    Some(Edns {
        payload: u16_at(rr, 3)?,
        dnssec_ok,
        ecs,
    })
}

/// A Client Subnet option that RFC 7871 accepts: known family, prefix within it, SCOPE zero,
/// exactly ceil(prefix / 8) address octets, no bits set beyond the prefix.
fn parse_ecs(value: &[u8]) -> Option<Ecs<'_>> {
    let family = [*value.first()?, *value.get(1)?];
    let source_prefix = *value.get(2)?;
    let scope_prefix = *value.get(3)?;
    let address_bytes = &value[4..];
    let full_bits = match u16::from_be_bytes(family) {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source_prefix > full_bits
        || scope_prefix != 0
        || address_bytes.len() != usize::from(source_prefix).div_ceil(8)
    {
        return None;
    }
    if let Some(last) = address_bytes.last() {
        let used_bits = source_prefix % 8;
        if used_bits != 0 && last & (0xff >> used_bits) != 0 {
            return None;
        }
    }
    let address = if full_bits == 32 {
        let mut octets = [0; 4];
        octets[..address_bytes.len()].copy_from_slice(address_bytes);
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        let mut octets = [0; 16];
        octets[..address_bytes.len()].copy_from_slice(address_bytes);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    Some(Ecs {
        address,
        source_prefix,
        family,
        address_bytes,
    })
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.Example.com A` with RD, and the given additional section.
    fn query(additional: &[u8]) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&u16::from(!additional.is_empty()).to_be_bytes());
        q.extend_from_slice(b"\x03www\x07Example\x03com\x00\x00\x01\x00\x01");
        q.extend_from_slice(additional);
        q
    }

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut rr = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0];
        rr.extend_from_slice(&(options.len() as u16).to_be_bytes());
        rr.extend_from_slice(options);
        rr
    }

    #[test]
    fn plain_query() {
        let raw = query(&[]);
        let q = parse(&raw).unwrap();
        assert_eq!(q.id, [0xab, 0xcd]);
        assert!(q.recursion_desired && !q.checking_disabled);
        assert_eq!(q.qtype, 1);
        assert_eq!(q.name_key(), b"\x03www\x07example\x03com\x00");
        assert_eq!(q.name_type_key(), b"\x03www\x07example\x03com\x00\x00\x01");
        assert_eq!(q.question, &raw[12..]);
        assert!(q.edns.is_none());
    }

    #[test]
    fn edns_with_ecs() {
        let raw = query(&opt(&[0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69, 0, 10, 0, 0]));
        let q = parse(&raw).unwrap();
        let edns = q.edns.unwrap();
        assert_eq!(edns.payload, 1232);
        assert!(edns.dnssec_ok);
        let ecs = edns.ecs.unwrap();
        assert_eq!(ecs.address, "81.2.69.0".parse::<IpAddr>().unwrap());
        assert_eq!(ecs.source_prefix, 24);
        assert_eq!(ecs.address_bytes, &[81, 2, 69]);
    }

    /// Everything unusual or wrong goes to the full path.
    #[test]
    fn unusual_queries_are_left_to_the_full_path() {
        let ecs = |v: &[u8]| {
            let mut o = vec![0, 8];
            o.extend_from_slice(&(v.len() as u16).to_be_bytes());
            o.extend_from_slice(v);
            query(&opt(&o))
        };
        let mut response = query(&[]);
        response[2] |= 0x80;
        let mut notify = query(&[]);
        notify[2] |= 4 << 3;
        let mut two_questions = query(&[]);
        two_questions[5] = 2;
        let mut chaos = query(&[]);
        let class_at = chaos.len() - 1;
        chaos[class_at] = 3;
        let mut badvers = query(&opt(&[]));
        badvers[chaos.len() + 6] = 1;
        let mut pointer = query(&[]);
        pointer[12] = 0xc0;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("response", response),
            ("opcode NOTIFY", notify),
            ("two questions", two_questions),
            ("class CH", chaos),
            ("EDNS version 1", badvers),
            ("pointer in question", pointer),
            ("short header", vec![0; 11]),
            ("cut name", query(&[])[..20].to_vec()),
            ("trailing bytes", [query(&[]), vec![0]].concat()),
            ("ECS /25 with 3 octets", ecs(&[0, 1, 25, 0, 81, 2, 69])),
            ("ECS host bits", ecs(&[0, 1, 23, 0, 81, 2, 69])),
            ("ECS scope set", ecs(&[0, 1, 24, 8, 81, 2, 69])),
            ("ECS /33", ecs(&[0, 1, 33, 0, 1, 2, 3, 4, 5])),
            ("ECS family 3", ecs(&[0, 3, 0, 0])),
            ("ECS empty", ecs(&[])),
            ("option past the end", query(&opt(&[0, 10, 0, 9, 1]))),
        ];
        for (what, raw) in cases {
            assert!(parse(&raw).is_none(), "{what}");
        }
        // Unknown options (a cookie), NSID (empty as RFC 5001 asks, or not) are fine, and
        // ECS /0 has no address octets.
        assert!(parse(&query(&opt(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]))).is_some());
        assert!(parse(&query(&opt(&[0, 3, 0, 0]))).is_some());
        assert!(parse(&query(&opt(&[0, 3, 0, 2, 1, 2, 0, 8, 0, 4, 0, 1, 0, 0]))).is_some());
        let zero = ecs(&[0, 2, 0, 0]);
        let q = parse(&zero).unwrap();
        assert_eq!(q.edns.unwrap().ecs.unwrap().source_prefix, 0);
    }
}
