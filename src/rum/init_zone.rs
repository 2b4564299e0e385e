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
/// At most this many init addresses (a reply stays small).
pub const MAX_ADDRESSES: usize = 8;

/// `[rum] zone` and `init_addresses`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitZoneConfig {
    pub zone: Name,
    pub init_addresses: Vec<IpAddr>,
}

impl InitZoneConfig {
    /// Parse and check; the error is (field below `rum.`, reason).
    pub fn parse(zone: &str, addresses: &[String]) -> Result<Self, (&'static str, String)> {
        let mut name = Name::from_ascii(zone)
            .map_err(|e| ("zone", format!("{zone:?} is not a DNS name: {e}")))?;
        name.set_fqdn(true);
        if name.num_labels() == 0 {
            return Err(("zone", "the root cannot be the RUM zone".into()));
        }
        if addresses.is_empty() || addresses.len() > MAX_ADDRESSES {
            return Err((
                "init_addresses",
                format!(
                    "give 1 to {MAX_ADDRESSES} addresses (where the HTTP listener answers the beacon)"
                ),
            ));
        }
        let init_addresses = addresses
            .iter()
            .map(|a| {
                a.parse::<IpAddr>()
                    .map_err(|_| ("init_addresses", format!("{a:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InitZoneConfig {
            zone: name.to_lowercase(),
            init_addresses,
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
        let config =
            InitZoneConfig::parse("RUM.example.com", &["127.0.0.1".into(), "::1".into()]).unwrap();
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
    fn bad_settings_name_the_field() {
        assert_eq!(
            InitZoneConfig::parse("rum..x", &["127.0.0.1".into()])
                .unwrap_err()
                .0,
            "zone"
        );
        assert_eq!(
            InitZoneConfig::parse(".", &["127.0.0.1".into()])
                .unwrap_err()
                .0,
            "zone"
        );
        assert_eq!(
            InitZoneConfig::parse("rum.x", &[]).unwrap_err().0,
            "init_addresses"
        );
        assert_eq!(
            InitZoneConfig::parse("rum.x", &["localhost".into()])
                .unwrap_err()
                .0,
            "init_addresses"
        );
    }
}
