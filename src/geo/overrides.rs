//! Operator overrides (CIDR → location, ASN) as runs of the address space, so that finding the
//! override of an address is one binary search however many there are (a file of 500,000
//! prefixes included), and so is the narrowing of answers next to them.
//!
//! Overrides are nested or disjoint (CIDR networks), and the most specific one holding an
//! address wins; of equal networks the first listed. An answer must not hold for an override
//! it is not in: the widest network around an address inside its run excludes every other
//! override, which is the narrowing `GeoDb::locate` reports.

use std::net::IpAddr;

use ipnet::IpNet;

use super::LocId;
use super::scope::{OPAQUE, Runs};

/// One override as looked up: its prefix length, location and ASN.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) prefix: u8,
    pub(crate) loc: LocId,
    pub(crate) asn: Option<u32>,
}

/// The overrides of both families.
#[derive(Debug)]
pub(crate) struct OverrideIndex {
    entries: Vec<Entry>,
    /// Labels are indexes in `entries`; [`OPAQUE`] where no override holds.
    pub(crate) v4: Runs<u32>,
    pub(crate) v6: Runs<u128>,
}

/// What the overrides say about one address.
pub(crate) struct Hit {
    /// The override that holds the address, if any.
    pub(crate) entry: Option<Entry>,
    /// Prefix length past which an answer would take in an override the address is not in
    /// (0: no override nearby), in the address's own family.
    pub(crate) narrowest: u8,
}

impl OverrideIndex {
    /// `overrides`: (network, location, ASN) in the order written.
    pub(crate) fn new(overrides: impl IntoIterator<Item = (IpNet, LocId, Option<u32>)>) -> Self {
        let mut entries = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, loc, asn) in overrides {
            let label = entries.len() as u32;
            entries.push(Entry {
                prefix: net.prefix_len(),
                loc,
                asn,
            });
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()), label)),
                IpNet::V6(n) => {
                    v6.push((u128::from(n.network()), u128::from(n.broadcast()), label));
                }
            }
        }
        entries.shrink_to_fit();
        OverrideIndex {
            entries,
            v4: Runs::nested(&v4),
            v6: Runs::nested(&v6),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The override holding `ip` (an IPv4 address or a plain IPv6 one; mapped addresses are
    /// looked up in their IPv4 form by the caller) and how far an answer may reach.
    pub(crate) fn find(&self, ip: IpAddr) -> Hit {
        let (label, widest) = match ip {
            IpAddr::V4(v4) => self.v4.label_and_widest(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.label_and_widest(u128::from(v6)),
        };
        let entry = (label != OPAQUE)
            .then(|| self.entries.get(label as usize).copied())
            .flatten();
        Hit {
            entry,
            narrowest: widest,
        }
    }

    /// The ASN entry `entry` states, if any, for painting the ASN runs.
    pub(crate) fn asn(&self, entry: u32) -> Option<u32> {
        self.entries.get(entry as usize).and_then(|e| e.asn)
    }

    /// The location label (`LocId` index) of entry `entry`, for painting the class runs.
    pub(crate) fn label(&self, entry: u32) -> u32 {
        self.entries
            .get(entry as usize)
            .map_or(OPAQUE, |e| e.loc.index() as u32)
    }
}
