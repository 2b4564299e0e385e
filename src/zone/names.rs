//! Which names the zones hold, keyed by lower-cased wire name, and each zone's SOA laid out for
//! negative answers: what the UDP fast path needs to answer NXDOMAIN and NODATA exactly as
//! [`super::Zone::lookup`] does, without building a name or allocating.
//!
//! One entry per name a zone holds (records, empty non-terminals, the apex), from the zone
//! that is the most specific for it (as [`super::Zones::find`] picks), with what makes the
//! full path's answer something other than a plain negative one: a delegation at or above it,
//! a CNAME at it, a wildcard child. Walking a query name's suffixes up to the first entry
//! finds its zone and its closest encloser (every ancestor of a held name is held: the empty
//! non-terminals are filled in). Built once per zone load, like the pre-rendered answers.
//! Depends on hickory-proto's record types and [`crate::wire`].

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::{Zone, Zones};
use crate::wire::{NameMap, name_key};

/// The name is, or is below, a delegation point (not the apex): the answer is a referral.
const CUT: u8 = 1;
/// The name holds a CNAME.
const CNAME: u8 = 2;
/// `*.<name>` exists: names below that do not exist are synthesised from it.
const WILDCARD: u8 = 4;

/// Types whose presence means a zone is signed: its negative answers would need NSEC(3)
/// records, which steerdns does not serve, so they stay with the full path.
const DNSSEC_TYPES: [RecordType; 5] = [
    RecordType::DNSKEY,
    RecordType::RRSIG,
    RecordType::NSEC,
    RecordType::NSEC3,
    RecordType::NSEC3PARAM,
];

#[derive(Debug, Clone, Copy)]
struct Entry {
    zone: u32,
    flags: u8,
}

/// A zone's SOA record for the authority section of negative answers (TTL = min(TTL,
/// MINIMUM)), in parts: the fast path writes the names with the same compression the full
/// path's encoder applies, which depends on how the question is spelled.
#[derive(Debug, Clone)]
pub struct NegativeSoa {
    /// The owner's lower-cased wire name: the owner is written as a pointer to the question
    /// when the question is this name.
    pub owner_key: Box<[u8]>,
    /// Owner, MNAME and RNAME as wire labels spelled as the zone spells them, without the
    /// root label.
    pub owner: Box<[u8]>,
    pub mname: Box<[u8]>,
    pub rname: Box<[u8]>,
    /// TYPE, CLASS and TTL.
    pub head: [u8; 8],
    /// SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM.
    pub tail: [u8; 20],
}

/// What the zones say of a name, for a type it holds no records of.
#[derive(Debug, Clone, Copy)]
pub struct Absence<'z> {
    pub soa: &'z NegativeSoa,
    /// The name exists (records of other types, or an empty non-terminal): NODATA.
    pub exists: bool,
    /// The name does not exist and a wildcard at its closest encloser would answer it.
    pub wildcard: bool,
}

/// The names of all zones, for negative answers on the fast path.
#[derive(Debug, Clone, Default)]
pub struct NameIndex {
    names: NameMap<Entry>,
    /// By zone, as in [`Zones`]; `None` for a signed zone.
    soas: Vec<Option<NegativeSoa>>,
}

impl NameIndex {
    pub(super) fn build(zones: &Zones) -> Self {
        let mut index = NameIndex::default();
        for (i, zone) in zones.zones.iter().enumerate() {
            index.soas.push(NegativeSoa::new(zone));
            let zone_index = u32::try_from(i).unwrap_or(u32::MAX);
            for (name, node) in &zone.nodes {
                if zones.find(name).is_none_or(|z| z.origin != zone.origin) {
                    continue;
                }
                let mut flags = 0;
                if node.rrset(RecordType::CNAME).is_some() {
                    flags |= CNAME;
                }
                if below_cut(zone, name) {
                    flags |= CUT;
                }
                if zone.nodes.contains_key(&wildcard_of(name)) {
                    flags |= WILDCARD;
                }
                let entry = Entry {
                    zone: zone_index,
                    flags,
                };
                index
                    .names
                    .insert(name_key(&Name::from(name)).into_boxed_slice(), entry);
            }
        }
        index
    }

    /// For `key` (a lower-cased wire name without compression) that is no steered name and
    /// has no RRset of the type asked: its zone's negative SOA and whether the name exists.
    /// `None` when the full path must answer: no zone of ours holds the name, or the answer is
    /// a referral, an alias, or the zone is signed.
    pub fn absence(&self, key: &[u8]) -> Option<Absence<'_>> {
        let mut at = 0;
        let entry = loop {
            let suffix = key.get(at..)?;
            if let Some(entry) = self.names.get(suffix) {
                break *entry;
            }
            match suffix.first() {
                Some(&len) if len != 0 => at += 1 + usize::from(len),
                _ => return None,
            }
        };
        let exists = at == 0;
        if entry.flags & CUT != 0 || (exists && entry.flags & CNAME != 0) {
            return None;
        }
        let soa = self.soas.get(entry.zone as usize)?.as_ref()?;
        Some(Absence {
            soa,
            exists,
            wildcard: !exists && entry.flags & WILDCARD != 0,
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// `*.<name>`, as `Zone::wildcard` looks it up.
fn wildcard_of(name: &LowerName) -> LowerName {
    let star = Name::from_labels([b"*".as_slice()])
        .and_then(|s| s.append_domain(&Name::from(name)))
        // Only a name of the longest length has no room for `*.`; it has no wildcard child.
        .unwrap_or_else(|_| Name::root());
    LowerName::new(&star)
}

/// Whether `name` or an ancestor below the apex holds NS records (as `Zone::delegation`).
fn below_cut(zone: &Zone, name: &LowerName) -> bool {
    let mut cut = name.clone();
    while cut != zone.lower_origin && zone.lower_origin.zone_of(&cut) {
        if zone
            .nodes
            .get(&cut)
            .is_some_and(|n| n.rrset(RecordType::NS).is_some())
        {
            return true;
        }
        cut = cut.base_name();
    }
    false
}

impl NegativeSoa {
    /// `None` for a signed zone, or an SOA that is no SOA.
    fn new(zone: &Zone) -> Option<Self> {
        let signed = zone
            .nodes
            .values()
            .any(|n| n.rrsets.iter().any(|(t, _)| DNSSEC_TYPES.contains(t)));
        if signed {
            return None;
        }
        let record: &Record = &zone.negative_soa;
        let RData::SOA(soa) = &record.data else {
            return None;
        };
        let mut head = [0; 8];
        head[..2].copy_from_slice(&u16::from(RecordType::SOA).to_be_bytes());
        head[2..4].copy_from_slice(&u16::from(record.dns_class).to_be_bytes());
        head[4..].copy_from_slice(&record.ttl.to_be_bytes());
        let mut tail = [0; 20];
        tail[..4].copy_from_slice(&soa.serial.to_be_bytes());
        tail[4..8].copy_from_slice(&soa.refresh.to_be_bytes());
        tail[8..12].copy_from_slice(&soa.retry.to_be_bytes());
        tail[12..16].copy_from_slice(&soa.expire.to_be_bytes());
        tail[16..].copy_from_slice(&soa.minimum.to_be_bytes());
        Some(NegativeSoa {
            owner_key: name_key(&record.name).into_boxed_slice(),
            owner: labels(&record.name),
            mname: labels(&soa.mname),
            rname: labels(&soa.rname),
            head,
            tail,
        })
    }
}

/// A name's labels in wire format, as spelled, without the root label.
fn labels(name: &Name) -> Box<[u8]> {
    let mut out = Vec::new();
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.into_boxed_slice()
}
