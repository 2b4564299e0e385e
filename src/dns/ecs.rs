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
}

/// The ECS option of a query, if any.
pub fn from_request(edns: Option<&Edns>) -> Result<Option<Subnet>, EcsError> {
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
    Ok(Some(Subnet {
        address,
        source_prefix,
    }))
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
