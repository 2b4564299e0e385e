//! The RUM zone as queries see it: `<nonce>.<zone>` names answered with the init addresses,
//! and the log their queries are written to.
//!
//! steerdns is authoritative for `[rum] zone` (inside one of its zones). Every name of one
//! nonce label directly below it, `[a-z0-9]{16,32}`, exists and has the init addresses as
//! its A and AAAA records: the same for every asker, so the answer has TTL 0 (nobody else
//! will ask for this nonce; a cached copy is of no use) and ECS scope /0. Depends on
//! [`super::nonce`] and [`super::nonce_log`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};

use super::nonce::Nonce;
use super::nonce_log::NonceLog;

/// TTL of a nonce name's records.
pub const TTL: u32 = 0;

/// `[rum] zone` and `init_addresses` as the DNS side needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitZoneConfig {
    pub zone: Name,
    /// Empty: nonce names are NODATA (their queries are still logged).
    pub init_addresses: Vec<IpAddr>,
}

impl InitZoneConfig {
    /// From `[rum]`'s (already validated) zone text; the error says why it is not a name.
    pub fn new(zone: &str, init_addresses: &[IpAddr]) -> Result<Self, String> {
        let mut name =
            Name::from_ascii(zone).map_err(|e| format!("{zone:?} is not a DNS name: {e}"))?;
        name.set_fqdn(true);
        if name.num_labels() == 0 {
            return Err("the root cannot be the RUM zone".into());
        }
        Ok(InitZoneConfig {
            zone: name.to_lowercase(),
            init_addresses: init_addresses.to_vec(),
        })
    }
}

/// What a snapshot holds of the RUM zone.
#[derive(Debug)]
pub struct InitZone {
    pub origin: LowerName,
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    /// Shared by every generation: the one thing in a snapshot that queries write to.
    pub log: Arc<NonceLog>,
}

impl InitZone {
    pub fn new(config: &InitZoneConfig, log: Arc<NonceLog>) -> Self {
        let (mut a, mut aaaa) = (Vec::new(), Vec::new());
        for ip in &config.init_addresses {
            match ip {
                IpAddr::V4(v4) => a.push(*v4),
                IpAddr::V6(v6) => aaaa.push(*v6),
            }
        }
        InitZone {
            origin: LowerName::new(&config.zone),
            a,
            aaaa,
            log,
        }
    }

    /// The nonce, when `name` is `<nonce>.<origin>`. Compares label counts first, so other
    /// names cost one comparison.
    pub fn nonce_of(&self, name: &LowerName) -> Option<Nonce> {
        if name.num_labels() != self.origin.num_labels() + 1 || !self.origin.zone_of(name) {
            return None;
        }
        Nonce::from_bytes(name.iter().next()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_names_are_one_label_below_the_zone() {
        let addresses = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let config = InitZoneConfig::new("RUM.example.com", &addresses).unwrap();
        assert_eq!(config.zone.to_ascii(), "rum.example.com.");
        let zone = InitZone::new(&config, Arc::new(NonceLog::new(1)));
        assert_eq!((zone.a.len(), zone.aaaa.len()), (1, 1));
        let lower = |n: &str| LowerName::new(&Name::from_ascii(n).unwrap());
        let nonce = zone.nonce_of(&lower("0123456789ABCDEF.Rum.Example.com."));
        assert_eq!(
            nonce.map(|n| n.to_string()).as_deref(),
            Some("0123456789abcdef")
        );
        for other in [
            "rum.example.com.",
            "x.rum.example.com.",
            "0123456789abcdef.www.example.com.",
            "a.0123456789abcdef.rum.example.com.",
            "0123456789abcdef.rum.example.org.",
        ] {
            assert!(zone.nonce_of(&lower(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn a_zone_that_is_no_name_is_an_error() {
        assert!(InitZoneConfig::new("rum..x", &[]).is_err());
        assert!(InitZoneConfig::new(".", &[]).is_err());
    }
}
