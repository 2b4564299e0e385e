//! Authoritative zone data: static records from zone files and config, and which names are
//! steered.
//!
//! Records use hickory-proto's record types (they are the wire-format data model); nothing here
//! serves or touches sockets. Parsing and validation run on the control plane; [`Zone::lookup`]
//! runs per query and only does hash lookups on prebuilt nodes. Pure.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::serialize::txt::Parser;

use crate::wire::{AnswerIndex, RenderedRrs};

mod names;

pub use names::{Absence, NameIndex, NegativeSoa};

/// The first label of `_explain.<steered name>`, which the DNS layer answers itself.
pub const EXPLAIN_LABEL: &[u8] = b"_explain";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct ZoneError {
    /// File path (with line when known) or `config zone <origin>`.
    pub source_name: String,
    pub reason: String,
}

/// Where a zone's text comes from, so errors can point at it.
#[derive(Debug, Clone)]
pub struct ZoneText {
    pub source_name: String,
    pub text: String,
}

impl ZoneText {
    pub fn from_file(path: &Path) -> Result<Self, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(|e| ZoneError {
            source_name: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        Ok(Self {
            source_name: path.display().to_string(),
            text,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// RRsets at this name, ordered by type code.
    rrsets: Vec<(RecordType, Vec<Record>)>,
}

impl Node {
    fn rrset(&self, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, r)| r.as_slice())
    }
}

/// One authoritative zone.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    soa: Record,
    /// The SOA for negative answers: TTL = min(SOA TTL, MINIMUM) (RFC 2308 §3).
    negative_soa: Record,
    nodes: HashMap<LowerName, Node>,
}

/// What the zone holds for a (name, type).
#[derive(Debug)]
pub enum Lookup<'z> {
    /// The RRset asked for.
    Answer(&'z [Record]),
    /// The name is an alias; the caller may follow it.
    Cname(&'z Record),
    /// The name exists, but not with this type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Records synthesised from a wildcard (RFC 4592), owned by the query name.
    Synthesized(Vec<Record>),
    /// A CNAME synthesised from a wildcard.
    SynthesizedCname(Box<Record>),
    /// The name is below a delegation: NS records of the cut, and glue.
    Referral {
        ns: &'z [Record],
        glue: Vec<&'z Record>,
    },
}

impl Zone {
    /// Build a zone from one or more texts in RFC 1035 master-file syntax (a zone file, the
    /// config's inline records). The apex must have SOA and NS records.
    pub fn parse(origin: &str, texts: &[ZoneText]) -> Result<Self, ZoneError> {
        let mut origin_name = Name::from_ascii(origin).map_err(|e| ZoneError {
            source_name: format!("zone {origin}"),
            reason: format!("origin is not a valid DNS name: {e}"),
        })?;
        origin_name.set_fqdn(true);
        let origin_name = origin_name.to_lowercase();
        let lower_origin = LowerName::new(&origin_name);

        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        for text in texts {
            for record in parse_text(&origin_name, text)? {
                let owner = LowerName::new(&record.name);
                if !lower_origin.zone_of(&owner) {
                    return Err(ZoneError {
                        source_name: text.source_name.clone(),
                        reason: format!("{} is outside the zone {origin_name}", record.name),
                    });
                }
                let node = nodes.entry(owner).or_default();
                let rtype = record.record_type();
                match node.rrsets.iter_mut().find(|(t, _)| *t == rtype) {
                    Some((_, records)) => {
                        if !records.iter().any(|r| r.data == record.data) {
                            records.push(record);
                        }
                    }
                    None => node.rrsets.push((rtype, vec![record])),
                }
            }
        }

        let apex = nodes.get(&lower_origin);
        let soa = apex
            .and_then(|n| n.rrset(RecordType::SOA))
            .and_then(|r| r.first())
            .cloned()
            .ok_or_else(|| ZoneError {
                source_name: format!("zone {origin_name}"),
                reason: "no SOA record at the apex".into(),
            })?;
        if apex.and_then(|n| n.rrset(RecordType::NS)).is_none() {
            return Err(ZoneError {
                source_name: format!("zone {origin_name}"),
                reason: "no NS records at the apex (a delegated zone needs them)".into(),
            });
        }

        let mut negative_soa = soa.clone();
        if let RData::SOA(data) = &soa.data {
            negative_soa.ttl = soa.ttl.min(data.minimum);
        }
        let mut zone = Zone {
            origin: origin_name,
            lower_origin,
            soa,
            negative_soa,
            nodes,
        };
        zone.check_and_normalise()?;
        Ok(zone)
    }

    fn check_and_normalise(&mut self) -> Result<(), ZoneError> {
        let origin = self.origin.clone();
        let mut ents = Vec::new();
        for (name, node) in &mut self.nodes {
            node.rrsets.sort_by_key(|(t, _)| u16::from(*t));
            // A TTL per RRset: RFC 2181 §5.2 says the records of one RRset share one TTL.
            for (_, records) in &mut node.rrsets {
                let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
                records.iter_mut().for_each(|r| r.ttl = ttl);
            }
            let has_cname = node.rrset(RecordType::CNAME).is_some();
            if has_cname && node.rrsets.len() > 1 {
                return Err(ZoneError {
                    source_name: format!("zone {origin}"),
                    reason: format!("{name} has a CNAME and other records (RFC 1034 §3.6.2)"),
                });
            }
            if has_cname && *name == self.lower_origin {
                return Err(ZoneError {
                    source_name: format!("zone {origin}"),
                    reason: "the zone apex cannot be a CNAME".into(),
                });
            }
            // Empty non-terminals: every ancestor up to the apex exists (NODATA, not NXDOMAIN).
            let mut parent = name.base_name();
            while self.lower_origin.zone_of(&parent) && parent != self.lower_origin {
                ents.push(parent.clone());
                parent = parent.base_name();
            }
        }
        for ent in ents {
            self.nodes.entry(ent).or_default();
        }
        Ok(())
    }

    /// Whether `name` may be steered: inside the zone, not the apex, no static records, not
    /// below a delegation.
    pub fn check_steerable(&self, name: &Name) -> Result<(), String> {
        let lower = LowerName::new(name);
        if !self.lower_origin.zone_of(&lower) {
            return Err(format!("{name} is not in zone {}", self.origin));
        }
        if lower == self.lower_origin {
            return Err("the zone apex cannot be steered (it must hold SOA and NS)".into());
        }
        if self.nodes.get(&lower).is_some_and(|n| !n.rrsets.is_empty()) {
            return Err(format!("{name} also has static records in the zone"));
        }
        if self.delegation(&lower).is_some() {
            return Err(format!(
                "{name} is below a delegation in zone {}",
                self.origin
            ));
        }
        Ok(())
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn lower_origin(&self) -> &LowerName {
        &self.lower_origin
    }

    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA record for the authority section of negative answers.
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// Look up a name that [`Zone::contains`]. `RecordType::ANY` answers one RRset (RFC 8482).
    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Lookup<'_> {
        // DS lives on the parent side of a cut (RFC 4035 §3.1.4.1): answer it from here.
        let below = if rtype == RecordType::DS && *name != self.lower_origin {
            name.base_name()
        } else {
            name.clone()
        };
        if let Some(referral) = self.delegation(&below) {
            return referral;
        }
        let Some(node) = self.nodes.get(name) else {
            return self.wildcard(name, rtype);
        };
        if let Some(cname) = node.rrset(RecordType::CNAME).and_then(|r| r.first())
            && rtype != RecordType::CNAME
        {
            return Lookup::Cname(cname);
        }
        let rrset = if rtype == RecordType::ANY {
            node.rrsets.first().map(|(_, r)| r.as_slice())
        } else {
            node.rrset(rtype)
        };
        match rrset {
            Some(records) => Lookup::Answer(records),
            None => Lookup::NoData,
        }
    }

    /// RFC 4592: a name that does not exist is answered from `*.<closest encloser>` if present.
    fn wildcard(&self, name: &LowerName, rtype: RecordType) -> Lookup<'_> {
        let mut encloser = name.base_name();
        while !self.nodes.contains_key(&encloser) && encloser != self.lower_origin {
            encloser = encloser.base_name();
        }
        let star = Name::from_labels([b"*".as_slice()])
            .ok()
            .and_then(|s| s.append_domain(&Name::from(&encloser)).ok());
        let Some(node) = star.and_then(|s| self.nodes.get(&LowerName::new(&s))) else {
            return Lookup::NxDomain;
        };
        let owner = Name::from(name);
        let renamed = |r: &Record| {
            let mut r = r.clone();
            r.name = owner.clone();
            r
        };
        if let Some(cname) = node.rrset(RecordType::CNAME).and_then(|r| r.first())
            && rtype != RecordType::CNAME
        {
            return Lookup::SynthesizedCname(Box::new(renamed(cname)));
        }
        let rrset = if rtype == RecordType::ANY {
            node.rrsets.first().map(|(_, r)| r.as_slice())
        } else {
            node.rrset(rtype)
        };
        match rrset {
            Some(records) => Lookup::Synthesized(records.iter().map(renamed).collect()),
            None => Lookup::NoData,
        }
    }

    pub fn contains(&self, name: &LowerName) -> bool {
        self.lower_origin.zone_of(name)
    }

    /// The closest zone cut at or above `name` (below the apex), if any.
    fn delegation(&self, name: &LowerName) -> Option<Lookup<'_>> {
        let mut cut = name.clone();
        let mut found = None;
        while cut != self.lower_origin && self.lower_origin.zone_of(&cut) {
            if let Some(ns) = self.nodes.get(&cut).and_then(|n| n.rrset(RecordType::NS)) {
                found = Some(ns);
            }
            cut = cut.base_name();
        }
        let ns = found?;
        let glue = ns
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(target) => Some(LowerName::new(&target.0)),
                _ => None,
            })
            .filter_map(|target| self.nodes.get(&target))
            .flat_map(|n| {
                n.rrsets
                    .iter()
                    .filter(|(t, _)| matches!(t, RecordType::A | RecordType::AAAA))
                    .flat_map(|(_, r)| r.iter())
            })
            .collect();
        Some(Lookup::Referral { ns, glue })
    }
}

/// The zones a server is authoritative for.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    zones: Vec<Zone>,
    /// Every (name, type) that [`Zone::lookup`] answers with records of its own, pre-rendered
    /// for the UDP fast path. Built once per load: zones never change in place.
    answers: AnswerIndex,
    /// Every name held, for the fast path's negative answers; built with `answers`.
    names: NameIndex,
}

impl Zones {
    pub fn new(mut zones: Vec<Zone>) -> Result<Self, ZoneError> {
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin.num_labels()));
        for (i, a) in zones.iter().enumerate() {
            if zones[i + 1..].iter().any(|b| b.origin == a.origin) {
                return Err(ZoneError {
                    source_name: format!("zone {}", a.origin),
                    reason: "configured twice".into(),
                });
            }
        }
        let mut zones = Self {
            zones,
            answers: AnswerIndex::default(),
            names: NameIndex::default(),
        };
        zones.answers = zones.render_answers()?;
        zones.names = NameIndex::build(&zones);
        Ok(zones)
    }

    /// Render what a plain lookup answers for each (name, type) held, where the answer is the
    /// name's own RRset and depends on nothing but the question. Everything else (CNAME
    /// chains, wildcards, referrals, negative answers, `ANY`, explain names) stays with the
    /// full path, so the fast path cannot answer differently from it.
    fn render_answers(&self) -> Result<AnswerIndex, ZoneError> {
        let mut index = AnswerIndex::default();
        for zone in &self.zones {
            for (name, node) in &zone.nodes {
                let owned_here = self.find(name).is_some_and(|z| z.origin == zone.origin);
                let explain = name.iter().next() == Some(EXPLAIN_LABEL);
                if !owned_here || explain {
                    continue;
                }
                for (rtype, _) in &node.rrsets {
                    if let Lookup::Answer(records) = zone.lookup(name, *rtype) {
                        let rendered = RenderedRrs::render(records).map_err(|e| ZoneError {
                            source_name: format!("zone {}", zone.origin),
                            reason: format!("{name} {rtype}: cannot encode: {e}"),
                        })?;
                        index.insert(&Name::from(name), *rtype, rendered);
                    }
                }
            }
        }
        Ok(index)
    }

    /// Pre-rendered static answers, for the UDP fast path.
    pub fn answers(&self) -> &AnswerIndex {
        &self.answers
    }

    /// The names held and the negative SOAs, for the UDP fast path.
    pub fn names(&self) -> &NameIndex {
        &self.names
    }

    /// The most specific zone containing `name`.
    pub fn find(&self, name: &LowerName) -> Option<&Zone> {
        self.zones.iter().find(|z| z.contains(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }
}

/// Parse one master-file text; on error, point at the line that broke it.
fn parse_text(origin: &Name, text: &ZoneText) -> Result<Vec<Record>, ZoneError> {
    let parse = |input: &str| -> Result<BTreeMap<_, _>, String> {
        Parser::new(input, None, Some(origin.clone()))
            .parse()
            .map(|(_, sets)| sets)
            .map_err(|e| e.to_string())
    };
    match parse(&text.text) {
        Ok(sets) => {
            let records: Vec<Record> = sets
                .into_values()
                .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
                .collect();
            // Catch what the text parser lets through but the wire format cannot carry (e.g.
            // a TXT string over 255 bytes): better a load error than SERVFAIL on every query.
            for record in &records {
                let mut buf = Vec::new();
                if let Err(e) = record.emit(&mut BinEncoder::new(&mut buf)) {
                    return Err(ZoneError {
                        source_name: text.source_name.clone(),
                        reason: format!(
                            "{} {} cannot be sent on the wire: {e}",
                            record.name,
                            record.record_type()
                        ),
                    });
                }
            }
            Ok(records)
        }
        Err(reason) => {
            let line = first_bad_line(&text.text, parse);
            Err(ZoneError {
                source_name: match line {
                    Some(line) => format!("{}:{line}", text.source_name),
                    None => text.source_name.clone(),
                },
                reason,
            })
        }
    }
}

/// The parser reports no positions, so find the shortest failing prefix (error path only).
fn first_bad_line<T>(text: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<usize> {
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(text.len()))
        .collect();
    // Binary search for the first prefix that fails; a prefix ending inside a parenthesised
    // record may fail early, which still points at (or just before) the bad record.
    let (mut lo, mut hi) = (0, ends.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if parse(&text[..ends[mid]]).is_err() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo < ends.len()).then_some(lo + 1)
}

#[cfg(test)]
mod tests;
