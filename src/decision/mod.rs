//! Decision tables: a policy compiled against the GeoIP data, health and measurements, and the
//! per-query lookup in it.
//!
//! [`compile`] runs on the control plane. It evaluates the policy's chain once per location
//! class (distinct continent/country/subdivision of the GeoIP data), once per class for each
//! ASN and CIDR that a rule names (and each ASN with real-user measurements, for RUM
//! steering), and interns the outcomes. [`Table::decide`] is the hot path:
//! a couple of comparisons, array indexes and one binary search for the ECS scope.
//! [`Table::select`] turns an outcome into targets for one client network (a hash, for weighted
//! picks and capacity spill-over). No allocation, no I/O, no locks. Pure; depends on `geo`, `policy`, `health`, `perf`.
//!
//! Per-class rows are shared between tables that compile to equal ones (`rows.rs`): names of
//! one policy shape hold one copy.
//!
//! The ECS scope is the widest network around the client in which every address gets the same
//! outcome. For clients decided by the per-class outcomes (no ASN or CIDR row applies), the
//! table holds the shared [`ScopeIndex`] of the partition its outcomes induce on the classes,
//! which can merge networks of different classes that this policy answers alike. A table with
//! ASN or CIDR rules holds instead runs of one *outcome* ([`GeoDb::outcome_index`]: the class
//! runs merged with the ASN database's runs and the table's CIDR rules, shared by tables of
//! the same shape), so it too decides in one binary search with no database lookup. Only
//! where runs do not describe the address (IPv6 aliases of the IPv4 tree), and for tables with
//! RUM rows per ASN (rebuilt with every measurement window, too often to precompute), does the
//! located path decide: inside an ASN or CIDR row its scope is one location class
//! ([`GeoDb::class_scope`]), bounded by the ASN network and the CIDR rules.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;

use crate::geo::{GeoDb, Located, RuleRow, ScopeIndex, common_prefix};
use crate::policy::{self, Client, Inputs, Outcome, Pick, Policy, TargetId, Trace};

/// Most records one answer can carry (see `policy` validation).
pub const MAX_ANSWERS: usize = 8;
/// Hash-based picks are made per /24 (IPv4) or /56 (IPv6): the networks resolvers send in ECS.
const HASH_PREFIX_V4: u8 = 24;
const HASH_PREFIX_V6: u8 = 56;

/// Index of an interned outcome in a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutcomeId(u32);

/// The outcome for one query: which compiled outcome, and the ECS scope it holds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: OutcomeId,
    pub scope: u8,
}

/// Up to [`MAX_ANSWERS`] targets, best first, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    targets: [TargetId; MAX_ANSWERS],
    len: usize,
}

impl Selected {
    pub fn as_slice(&self) -> &[TargetId] {
        &self.targets[..self.len]
    }

    fn push(&mut self, t: TargetId) {
        if self.len < MAX_ANSWERS && !self.as_slice().contains(&t) {
            self.targets[self.len] = t;
            self.len += 1;
        }
    }
}

/// One steered name's compiled policy.
#[derive(Debug)]
pub struct Table {
    outcomes: Vec<Outcome>,
    /// Per location class; the extra last entry is for clients not in the GeoIP data.
    /// Shared with every table whose row is equal ([`rows`]).
    by_class: Arc<[OutcomeId]>,
    /// ASN → per class (+1), for ASNs that rules name.
    by_asn: HashMap<u32, Row>,
    /// Longest prefix first → per class (+1).
    by_cidr: Box<[(IpNet, Row)]>,
    uses_location: bool,
    uses_asn: bool,
    /// Widest uniform network for the partition `by_class` induces; `None` when the policy
    /// does not use location.
    scopes: Option<Arc<ScopeIndex>>,
    /// For tables with ASN or CIDR rules (not RUM rows, which change with every window): the
    /// address space labelled by outcome, which decides without a database lookup; and the
    /// outcome of each of its parts.
    by_rows: Option<(Arc<ScopeIndex>, Box<[OutcomeId]>)>,
    /// The outcome of each part of `scopes` (parts numbered by first appearance in `by_class`).
    part_outcomes: Box<[OutcomeId]>,
    answers: usize,
    /// Salt for the per-network hash, so different names split networks independently.
    salt: u64,
    /// Per target, mixed into the rendezvous hash.
    target_salts: Box<[u64]>,
}

/// Outcomes per location class (+1 for not located) for one ASN or CIDR network.
#[derive(Debug)]
struct Row {
    per_class: Arc<[OutcomeId]>,
    /// Every class gets the same outcome: the client's location does not matter here, which
    /// allows a wider ECS scope.
    uniform: bool,
}

impl Row {
    fn new(per_class: Arc<[OutcomeId]>) -> Self {
        let uniform = per_class.windows(2).all(|w| w[0] == w[1]);
        Row { per_class, uniform }
    }
}

/// Compile a policy. Returns the table and when it will change by itself (rebuild then).
pub fn compile(policy: &Policy, geo: &GeoDb, inputs: &Inputs) -> (Table, Option<SystemTime>) {
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut next_change: Option<SystemTime> = None;
    let mut intern = |outcome: Outcome| -> OutcomeId {
        if let Some(at) = outcome.next_change {
            next_change = Some(next_change.map_or(at, |n| n.min(at)));
        }
        let outcome = Outcome {
            next_change: None,
            ..outcome
        };
        let index = outcomes
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or_else(|| {
                outcomes.push(outcome);
                outcomes.len() - 1
            });
        OutcomeId(index as u32)
    };
    // A chain reads continent and country, and subdivisions only if a rule names one: classes
    // that differ in nothing it reads share one evaluation. On real data that is a few hundred
    // evaluations per row instead of thousands, which keeps a health flip of a target shared by
    // many names fast.
    let uses_subdivision = policy.uses_subdivision();
    let countries = geo.country_of_class();
    let mut per_class = |base: Client| -> Arc<[OutcomeId]> {
        // Indexed by class (subdivision rules) or by country number; the last slot is for
        // clients not in the database.
        let mut seen: Vec<Option<OutcomeId>> = vec![None; geo.classes().len() + 1];
        let row = geo
            .classes()
            .iter()
            .map(Some)
            .chain(std::iter::once(None))
            .enumerate()
            .map(|(class, location)| {
                let key = match (location, uses_subdivision) {
                    (Some(_), false) => countries[class] as usize,
                    _ => class,
                };
                *seen[key].get_or_insert_with(|| {
                    let client = Client { location, ..base };
                    intern(policy::evaluate(policy, &client, inputs, &mut Trace::off()))
                })
            })
            .collect::<Vec<_>>();
        rows::intern(row)
    };

    let by_class = per_class(Client::default());
    let rules = policy.geo().map(|g| g.rules.as_slice()).unwrap_or(&[]);
    // Rows per ASN: those rules name, and (RUM steering) those whose users measured any of
    // this policy's targets, so a network's own users decide its answer.
    let rum_asns = if policy.uses_rum() {
        inputs
            .perf
            .rum()
            .asns_for(policy.targets.iter().map(|t| t.id.as_str()))
    } else {
        Default::default()
    };
    let rum_rows = !rum_asns.is_empty();
    let uses_asn = policy.uses_asn() || rum_rows;
    let mut asns: Vec<u32> = rules
        .iter()
        .flat_map(|r| r.matches.asn.iter().copied())
        .chain(rum_asns)
        .collect();
    asns.sort_unstable();
    asns.dedup();
    let by_asn: HashMap<u32, Row> = asns
        .iter()
        .copied()
        .map(|asn| {
            (
                asn,
                Row::new(per_class(Client {
                    asn: Some(asn),
                    ..Client::default()
                })),
            )
        })
        .collect();
    let mut nets: Vec<IpNet> = rules
        .iter()
        .flat_map(|r| r.matches.cidr.iter().copied())
        .collect();
    nets.sort_by_key(|n| (std::cmp::Reverse(n.prefix_len()), *n));
    nets.dedup();
    let by_cidr: Box<[(IpNet, Row)]> = nets
        .into_iter()
        .map(|net| {
            (
                net,
                Row::new(per_class(Client {
                    cidr: Some(net),
                    ..Client::default()
                })),
            )
        })
        .collect();

    let uses_location = policy.uses_location();
    let scopes = if uses_location {
        let part: Vec<u32> = by_class.iter().map(|o| o.0).collect();
        geo.scope_index(&part)
    } else {
        None
    };
    let by_rows = ((uses_asn || !by_cidr.is_empty()) && !rum_rows).then(|| {
        let cidrs: Vec<IpNet> = by_cidr.iter().map(|(net, _)| *net).collect();
        let (index, parts) = geo.outcome_index(uses_location, &asns, &cidrs, |class, row| {
            let per_class = match row {
                RuleRow::Plain => &by_class,
                RuleRow::Asn(i) => &by_asn[&asns[i]].per_class,
                RuleRow::Cidr(i) => &by_cidr[i].1.per_class,
            };
            per_class[class].0
        });
        (index, parts.into_iter().map(OutcomeId).collect())
    });
    let mut part_outcomes = Vec::new();
    for outcome in by_class.iter() {
        if !part_outcomes.contains(outcome) {
            part_outcomes.push(*outcome);
        }
    }
    let salt = mix(fnv1a(policy.name.to_ascii().as_bytes()));
    let table = Table {
        outcomes,
        by_class,
        by_asn,
        by_cidr,
        uses_location,
        uses_asn,
        scopes,
        by_rows,
        part_outcomes: part_outcomes.into(),
        answers: usize::from(policy.answers),
        salt,
        target_salts: policy
            .targets
            .iter()
            .map(|t| mix(fnv1a(t.id.as_bytes()) ^ salt))
            .collect(),
    };
    (table, next_change)
}

impl Table {
    /// Decide without locating the client in the GeoIP databases, where that is possible: the
    /// precomputed runs describe the client's address (they give its part of the classes, or
    /// with ASN and CIDR rules its outcome, and the widest scope in one binary search); or the
    /// answer does not depend on location at all. `None`: locate and call [`Table::decide`],
    /// which gives the same decision wherever this one gives any ([`Table::decide_for`] does
    /// both).
    pub fn decide_without_lookup(&self, ip: IpAddr) -> Option<Decision> {
        // Runs of one outcome (tables with rules), else of one part of the classes.
        let (index, outcomes) = match &self.by_rows {
            Some((index, outcomes)) => (index, outcomes),
            None if self.uses_asn || !self.by_cidr.is_empty() => return None,
            None if self.uses_location => (self.scopes.as_ref()?, &self.part_outcomes),
            None => match *self.part_outcomes {
                [only] => {
                    return Some(self.hashed(
                        Decision {
                            outcome: only,
                            scope: 0,
                        },
                        ip,
                    ));
                }
                _ => return None,
            },
        };
        let (part, scope) = index.part_and_widest(ip)?;
        let outcome = *outcomes.get(part as usize)?;
        Some(self.hashed(Decision { outcome, scope }, ip))
    }

    /// A hashed pick holds for the network it hashes, however wide the rest of the decision.
    fn hashed(&self, mut decision: Decision, ip: IpAddr) -> Decision {
        if self.outcome(decision.outcome).pick.needs_hash() {
            decision.scope = decision.scope.max(hash_prefix(ip));
        }
        decision
    }

    /// The query path: [`Table::decide_without_lookup`], else locate the client and decide
    /// from its records (each way once).
    pub fn decide_for(&self, ip: IpAddr, geo: &GeoDb) -> Decision {
        self.decide_without_lookup(ip)
            .unwrap_or_else(|| self.decide_located(ip, &geo.locate(ip), geo))
    }

    /// Decide for a client address already located in `geo`.
    pub fn decide(&self, ip: IpAddr, located: &Located, geo: &GeoDb) -> Decision {
        // Tables with rows decide from their own runs wherever those describe the address, so
        // both ways give one answer (and one scope) for every client.
        if self.by_rows.is_some()
            && let Some(decision) = self.decide_without_lookup(ip)
        {
            return decision;
        }
        self.decide_located(ip, located, geo)
    }

    /// The decision from the client's located record: what the runs are checked against.
    fn decide_located(&self, ip: IpAddr, located: &Located, geo: &GeoDb) -> Decision {
        let class = located
            .loc
            .map_or(geo.classes().len(), |l| geo.class_of(l).index());
        // CIDR rules: the answer must not leak into a neighbouring rule's network, so the
        // scope is at least one bit longer than the common prefix with every rule that missed.
        let mut scope = 0;
        let mut row = None;
        for (net, r) in self.by_cidr.iter() {
            if net.contains(&ip) {
                scope = scope.max(net.prefix_len());
                row = Some(r);
                break;
            }
            if let Some(common) = common_prefix(ip, net.network()) {
                scope = scope.max(common + 1);
            }
        }
        let cidr_hit = row.is_some();
        if !cidr_hit && self.uses_asn {
            // Whether or not this ASN has rules, a neighbouring network's might.
            scope = scope.max(located.asn_prefix);
            row = located.asn.and_then(|asn| self.by_asn.get(&asn));
        }
        let location_matters = row.is_none_or(|r| !r.uniform);
        if self.uses_location && location_matters {
            // Where the precomputed runs do not describe the space (IPv6 aliases of the IPv4
            // tree), the database network's own prefix is still right.
            let widest = match (row, &self.scopes) {
                (None, Some(index)) => index.widest(ip),
                _ => geo.class_scope(ip),
            };
            scope = scope.max(widest.unwrap_or(located.geo_prefix));
        }
        let outcome = match row {
            Some(r) => r.per_class[class],
            None => self.by_class[class],
        };
        self.hashed(Decision { outcome, scope }, ip)
    }

    /// Which compiled row a client falls in: the CIDR rule network or the ASN with rules, if
    /// any (for explanations, which re-run the chain for exactly that row).
    pub fn row_of(&self, ip: IpAddr, located: &Located) -> (Option<IpNet>, Option<u32>) {
        if let Some((net, _)) = self.by_cidr.iter().find(|(net, _)| net.contains(&ip)) {
            return (Some(*net), None);
        }
        (
            None,
            located.asn.filter(|asn| self.by_asn.contains_key(asn)),
        )
    }

    /// The answer for a client we know nothing about (ECS with prefix 0): valid for everyone.
    pub fn fallback(&self) -> Decision {
        Decision {
            outcome: self.by_class[self.by_class.len() - 1],
            scope: 0,
        }
    }

    pub fn outcome(&self, id: OutcomeId) -> &Outcome {
        &self.outcomes[id.0 as usize]
    }

    /// The targets for one client network, best first, at most `answers` of them.
    pub fn select(&self, decision: &Decision, ip: Option<IpAddr>) -> Selected {
        let mut out = Selected {
            targets: [TargetId(0); MAX_ANSWERS],
            len: 0,
        };
        let key = ip.map_or(self.salt, |ip| self.network_key(ip));
        match &self.outcome(decision.outcome).pick {
            Pick::Ranked(ranked) => {
                // Walk the ranking; each target keeps its capacity share of what is left.
                let mut u = unit(key);
                let mut first = ranked.len().saturating_sub(1);
                for (i, (_, cap)) in ranked.iter().enumerate() {
                    if u < *cap {
                        first = i;
                        break;
                    }
                    u = (u - cap) / (1.0 - cap);
                }
                if let Some((t, _)) = ranked.get(first) {
                    out.push(*t);
                }
                for (t, _) in ranked {
                    if out.len >= self.answers {
                        break;
                    }
                    out.push(*t);
                }
            }
            Pick::Weighted(shares) => {
                // Weighted rendezvous hashing: the smallest -ln(u)/share wins.
                let mut scored = [(f64::INFINITY, TargetId(0)); MAX_ANSWERS * 4];
                let n = shares.len().min(scored.len());
                for (slot, (t, share)) in scored.iter_mut().zip(shares.iter()) {
                    let u = unit(mix(key ^ self.target_salts[t.index()]));
                    *slot = (-u.ln() / share, *t);
                }
                let scored = &mut scored[..n];
                scored.sort_by(|a, b| a.0.total_cmp(&b.0));
                for (_, t) in scored.iter().take(self.answers) {
                    out.push(*t);
                }
            }
        }
        out
    }

    /// Whether any answer depends on the client at all (if not, the ECS scope is 0).
    pub fn is_tailored(&self) -> bool {
        self.uses_location
            || self.uses_asn
            || !self.by_cidr.is_empty()
            || self.outcomes.iter().any(|o| o.pick.needs_hash())
    }

    /// Runs (IPv4, IPv6) in this table's scope index, shared with every table of the same
    /// partition; `None` when the policy does not use location. For reports.
    pub fn scope_runs(&self) -> Option<(usize, usize)> {
        self.scopes.as_ref().map(|s| s.runs())
    }

    /// Outcome per location class (last: not located), for previews.
    pub fn by_class(&self) -> &[OutcomeId] {
        &self.by_class
    }

    pub fn by_asn(&self) -> impl Iterator<Item = (u32, &[OutcomeId])> {
        self.by_asn.iter().map(|(a, r)| (*a, &r.per_class[..]))
    }

    fn network_key(&self, ip: IpAddr) -> u64 {
        let bits = match crate::geo::truncate(ip, hash_prefix(ip)) {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        mix(self.salt ^ mix(bits as u64) ^ mix((bits >> 64) as u64).rotate_left(17))
    }
}

fn hash_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => HASH_PREFIX_V4,
        IpAddr::V6(_) => HASH_PREFIX_V6,
    }
}

/// splitmix64's finaliser: a cheap, well-mixed 64-bit hash step.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-bit hash to a float in (0, 1].
fn unit(x: u64) -> f64 {
    ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// FNV-1a: stable across builds and platforms (also used for ETags).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

mod rows;

#[cfg(test)]
mod rum_tests;
#[cfg(test)]
mod tests;
