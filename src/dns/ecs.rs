//! EDNS Client Subnet (RFC 7871): which client address to steer on, and the option we echo.

use std::net::IpAddr;

use hickory_proto::op::Edns;

use crate::geo::truncate;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};

/// The client subnet a resolver sent, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub address: IpAddr,
    pub source_prefix: u8,
}

/// Why an ECS option is rejected with FORMERR (RFC 7871 §6, §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsError {
    PrefixTooLong,
    ScopeInQuery,
    HostBitsSet,
    AddressLength,
}

/// The ECS option of a query, if any, validated. `raw` is the query as received: the parsed
/// option does not keep its length, which RFC 7871 also constrains.
pub fn from_request(edns: Option<&Edns>, raw: &[u8]) -> Result<Option<Subnet>, EcsError> {
    let Some(EdnsOption::Subnet(subnet)) = edns.and_then(|e| e.option(EdnsCode::Subnet)) else {
        return Ok(None);
    };
    let address = subnet.addr();
    let source_prefix = subnet.source_prefix();
    let full = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if source_prefix > full {
        return Err(EcsError::PrefixTooLong);
    }
    if subnet.scope_prefix() != 0 {
        return Err(EcsError::ScopeInQuery);
    }
    if truncate(address, source_prefix) != address {
        return Err(EcsError::HostBitsSet);
    }
    if !address_length_ok(raw) {
        return Err(EcsError::AddressLength);
    }
    Ok(Some(Subnet {
        address,
        source_prefix,
    }))
}

/// RFC 7871 §6: ADDRESS carries exactly ceil(SOURCE PREFIX-LENGTH / 8) octets. The parsed
/// option does not keep its length, so check it in the raw message: walk to the OPT record and
/// its ECS option. `true` when there is no ECS option or its length is right.
fn address_length_ok(raw: &[u8]) -> bool {
    fn u16_at(raw: &[u8], at: usize) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *raw.get(at)?,
            *raw.get(at + 1)?,
        ])))
    }
    fn skip_name(raw: &[u8], mut at: usize) -> Option<usize> {
        loop {
            let len = *raw.get(at)?;
            match len {
                0 => return Some(at + 1),
                l if l & 0xc0 == 0xc0 => return Some(at + 2),
                l => at += 1 + usize::from(l),
            }
        }
    }
    let check = || -> Option<bool> {
        let counts: Vec<usize> = (0..4)
            .map(|i| u16_at(raw, 4 + 2 * i))
            .collect::<Option<_>>()?;
        let mut at = 12;
        for _ in 0..counts[0] {
            at = skip_name(raw, at)? + 4;
        }
        for index in 0..counts[1] + counts[2] + counts[3] {
            at = skip_name(raw, at)?;
            let rtype = u16_at(raw, at)?;
            let rdlen = u16_at(raw, at + 8)?;
            let rdata = at + 10;
            at = rdata + rdlen;
            if rtype != 41 || index < counts[1] + counts[2] {
                continue;
            }
            let mut opt = rdata;
            while opt + 4 <= at {
                let (code, len) = (u16_at(raw, opt)?, u16_at(raw, opt + 2)?);
                if code == 8 {
                    let source = usize::from(*raw.get(opt + 6)?);
                    return Some(len == 4 + source.div_ceil(8));
                }
                opt += 4 + len;
            }
        }
        Some(true)
    };
    // A message too short to walk was already rejected by the parser.
    check().unwrap_or(true)
}

/// The option for the response: the query's family, source prefix and address, with our scope.
pub fn response_option(subnet: Subnet, scope_prefix: u8) -> EdnsOption {
    EdnsOption::Subnet(ClientSubnet::new(
        subnet.address,
        subnet.source_prefix,
        scope_prefix,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::truncate;

    #[test]
    fn truncation() {
        let cases = [
            ("81.2.69.142", 24, "81.2.69.0"),
            ("81.2.69.142", 32, "81.2.69.142"),
            ("81.2.69.142", 0, "0.0.0.0"),
            ("2a02:d180::1", 56, "2a02:d180::"),
            ("2a02:d180:ffff::1", 20, "2a02:d000::"),
        ];
        for (ip, prefix, want) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                truncate(ip, prefix),
                want.parse::<IpAddr>().unwrap(),
                "{ip}/{prefix}"
            );
        }
    }
}
