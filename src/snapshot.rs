//! The immutable state every query reads, and its atomic publication.
//!
//! One [`Snapshot`] holds everything a query needs (zones, GeoIP, compiled decision tables,
//! answer records), so a reload becomes visible in one pointer swap and no query ever mixes
//! two generations. Readers call [`Published::load`]: lock-free, never blocked by a writer.
//! Depends on `zone`, `decision`, `policy`, `geo`; pure except for the swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record};

use crate::decision::{self, Table};
use crate::geo::GeoDb;
use crate::policy::{Policy, TargetAnswer};
use crate::zone::Zones;

/// Answer records for one target, rendered once at build time.
#[derive(Debug)]
pub struct TargetRecords {
    pub cname: Option<Record>,
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
}

/// A steered name: its policy, the compiled table and each target's records.
#[derive(Debug)]
pub struct Steered {
    pub policy: Policy,
    pub table: Table,
    /// Indexed by `TargetId`.
    pub answers: Vec<TargetRecords>,
}

/// DNS behaviour settings that are part of what a query reads.
#[derive(Debug, Clone, Copy)]
pub struct DnsSettings {
    /// Largest UDP response we send, whatever the client advertises (RFC 9715 suggests 1232).
    pub max_udp_payload: u16,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every publication; tests wait for it instead of sleeping.
    pub generation: u64,
    pub zones: Zones,
    pub geo: Arc<GeoDb>,
    pub steered: Vec<Steered>,
    pub settings: DnsSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct BuildError {
    pub source_name: String,
    pub reason: String,
}

impl Snapshot {
    /// Attach policies to their zones and compile each against the GeoIP data.
    pub fn build(
        generation: u64,
        mut zones: Zones,
        policies: Vec<Policy>,
        geo: Arc<GeoDb>,
        settings: DnsSettings,
    ) -> Result<Self, Vec<BuildError>> {
        let mut errors = Vec::new();
        let mut steered = Vec::with_capacity(policies.len());
        let has_asn_db = geo.has_asn();
        for policy in policies {
            let error = |reason: String| BuildError {
                source_name: policy.source.clone(),
                reason,
            };
            if !has_asn_db {
                if let Some(rule) = policy.rules.iter().find(|r| !r.matches.asn.is_empty()) {
                    errors.push(error(format!(
                        "rules[{}].match.asn: no ASN database is configured ([geoip] asn)",
                        rule.index
                    )));
                    continue;
                }
            }
            let index = steered.len();
            match zones.find_mut(&policy.name) {
                None => {
                    errors.push(error(format!(
                        "name: {} is not inside any configured zone",
                        policy.name
                    )));
                    continue;
                }
                Some(zone) => {
                    if let Err(reason) = zone.add_steered(&policy.name, index) {
                        errors.push(error(format!("name: {reason}")));
                        continue;
                    }
                }
            }
            let table = decision::compile(&policy, &geo);
            let answers = render_answers(&policy);
            steered.push(Steered {
                policy,
                table,
                answers,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Snapshot {
            generation,
            zones,
            geo,
            steered,
            settings,
        })
    }
}

fn render_answers(policy: &Policy) -> Vec<TargetRecords> {
    let owner = policy.name.clone();
    let ttl = policy.ttl_s;
    policy
        .targets
        .iter()
        .map(|target| match &target.answer {
            TargetAnswer::Cname(cname) => TargetRecords {
                cname: Some(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::CNAME(CNAME(cname.clone())),
                )),
                a: Vec::new(),
                aaaa: Vec::new(),
            },
            TargetAnswer::Addresses { a, aaaa } => TargetRecords {
                cname: None,
                a: a.iter()
                    .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
                    .collect(),
                aaaa: aaaa
                    .iter()
                    .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
                    .collect(),
            },
        })
        .collect()
}

/// The current snapshot, swapped atomically by the control plane.
pub struct Published {
    current: ArcSwap<Snapshot>,
    /// Set when the last reload failed and an older generation keeps serving.
    stale: AtomicBool,
}

impl Published {
    pub fn new(first: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(first),
            stale: AtomicBool::new(false),
        }
    }

    /// The current snapshot. Lock-free; cheap enough for every query.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn publish(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
        self.stale.store(false, Ordering::Release);
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }
}
