//! Where each region's clients go now, for people: per country, per ASN or CIDR exception and
//! for clients not in the GeoIP data, the targets one steered name answers and why.
//!
//! Read by the dashboard (`GET /api/v1/dashboard/names/{name}`) from one snapshot; no I/O.
//! A country the GeoIP data has networks in is answered from the compiled table, exactly as
//! DNS answers its clients (the class of the country itself, without a subdivision, when the
//! data has one; `varies` says whether its subdivisions differ). A country the data has no
//! networks in, or an exception rule's network, gets [`decide_at`]: the policy's chain
//! evaluated for a synthetic client there, through the same [`policy::evaluate`] the compiler
//! uses, at the clock the table was compiled at. Such a country is marked `in_geoip: false`:
//! it shows what the policy says, though no client would be located there with this data.
//! Depends on `snapshot`, `policy`, `geo`.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use crate::geo::{Continent, Location};
use crate::policy::{self, Client, Match, Outcome, TargetId, Trace};
use crate::snapshot::{Snapshot, Steered};

/// A synthetic client: where it is, and optionally its network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub continent: Option<Continent>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
    pub cidr: Option<IpNet>,
}

/// The outcome the policy of `steered` gives a client at `place`, as its serving table was
/// compiled (same health, measurements and clock). Pure.
pub fn decide_at(snapshot: &Snapshot, steered: &Steered, place: &Place) -> Outcome {
    let location = Location {
        continent: place.continent,
        country: place.country,
        ..Location::default()
    };
    let located = place.continent.is_some() || place.country.is_some();
    let client = Client {
        location: located.then_some(&location),
        asn: place.asn,
        cidr: place.cidr,
    };
    policy::evaluate(
        &steered.policy,
        &client,
        &snapshot.inputs(steered.compiled_at),
        &mut Trace::off(),
    )
}

/// An outcome in words and numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decided {
    /// The target with the largest share of answers (the one a map colours by).
    pub target: String,
    /// Target id → expected share of answers, best first, shares above zero only.
    pub shares: Vec<(String, f64)>,
    /// `geo`, `asn`, `cidr`, `default`, `no_geo`, `all_down_fallback`.
    pub reason: &'static str,
    /// The deciding rule and what it matches: `rules[1] continent=EU`.
    pub rule: Option<String>,
    /// Targets the deciding rule (or default) prefers that are down now.
    pub down: Vec<String>,
}

/// Describe `outcome` of `steered`'s policy, health as in `snapshot`.
pub fn describe(snapshot: &Snapshot, steered: &Steered, outcome: &Outcome) -> Decided {
    let policy = &steered.policy;
    let id = |t: TargetId| policy.target(t).id.clone();
    let mut shares: Vec<(TargetId, f64)> = outcome
        .pick
        .shares()
        .into_iter()
        .filter(|(_, s)| *s > 1e-9)
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    let target = shares.first().map_or_else(String::new, |(t, _)| id(*t));
    let geo = policy.geo();
    let rule = outcome
        .rule
        .and_then(|i| geo.and_then(|g| g.rules.iter().find(|r| r.index == i)));
    let preferred: Vec<TargetId> = match (rule, geo) {
        (Some(r), _) => r.targets.clone(),
        (None, Some(g)) => g.default.clone(),
        (None, None) => (0..policy.targets.len())
            .map(|i| TargetId(i as u16))
            .collect(),
    };
    Decided {
        target,
        shares: shares.into_iter().map(|(t, s)| (id(t), s)).collect(),
        reason: outcome.reason.as_str(),
        rule: rule.map(|r| format!("rules[{}] {}", r.index, describe_match(&r.matches))),
        down: preferred
            .into_iter()
            .map(id)
            .filter(|t| snapshot.health.is_down(t))
            .collect(),
    }
}

/// `continent=EU country=GB,IE asn=6167`: a rule's conditions, as in the policy file.
pub fn describe_match(m: &Match) -> String {
    let mut parts = Vec::new();
    let join = |items: Vec<String>| items.join(",");
    if !m.continent.is_empty() {
        parts.push(format!(
            "continent={}",
            join(m.continent.iter().map(|c| c.code().to_owned()).collect())
        ));
    }
    if !m.country.is_empty() {
        parts.push(format!(
            "country={}",
            join(m.country.iter().map(|c| cc(*c)).collect())
        ));
    }
    if !m.subdivision.is_empty() {
        parts.push(format!(
            "subdivision={}",
            join(
                m.subdivision
                    .iter()
                    .map(|(c, s)| format!("{}-{s}", cc(*c)))
                    .collect()
            )
        ));
    }
    if !m.asn.is_empty() {
        parts.push(format!(
            "asn={}",
            join(m.asn.iter().map(u32::to_string).collect())
        ));
    }
    if !m.cidr.is_empty() {
        parts.push(format!(
            "cidr={}",
            join(m.cidr.iter().map(IpNet::to_string).collect())
        ));
    }
    parts.join(" ")
}

fn cc(code: [u8; 2]) -> String {
    String::from_utf8_lossy(&code).into_owned()
}

/// What one country's clients get.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountryDecision {
    pub country: String,
    pub continent: Option<&'static str>,
    /// Whether the GeoIP data has networks in this country (else: what the policy says for a
    /// client there, through [`decide_at`]).
    pub in_geoip: bool,
    /// Some of its subdivisions get a different target than the country itself.
    pub varies: bool,
    #[serde(flatten)]
    pub decided: Decided,
}

/// Every country in the GeoIP data, and every one of `also` (alpha-2, continent: the map's
/// countries), with what it gets. Sorted by country code.
pub fn countries(
    snapshot: &Snapshot,
    steered: &Steered,
    also: &[([u8; 2], Option<Continent>)],
) -> Vec<CountryDecision> {
    let table = &steered.table;
    let geo = &snapshot.geo;
    // Country → (representative class outcome, its continent, whether primaries differ).
    let mut known: BTreeMap<[u8; 2], (usize, Option<Continent>, bool)> = BTreeMap::new();
    let primary = |class: usize| {
        let outcome = table.outcome(table.by_class()[class]);
        best(&outcome.pick)
    };
    for (i, loc) in geo.classes().iter().enumerate() {
        let Some(country) = loc.country else { continue };
        match known.get_mut(&country) {
            None => {
                known.insert(country, (i, loc.continent, false));
            }
            Some((rep, continent, varies)) => {
                *varies |= primary(*rep) != primary(i);
                // The country's own class (no subdivision) represents it when there is one.
                let rep_has_sub = geo.classes()[*rep].subdivision.is_some();
                if rep_has_sub && loc.subdivision.is_none() {
                    *rep = i;
                    *continent = loc.continent;
                }
            }
        }
    }
    let mut out: Vec<CountryDecision> = known
        .iter()
        .map(|(country, (class, continent, varies))| CountryDecision {
            country: cc(*country),
            continent: continent.map(Continent::code),
            in_geoip: true,
            varies: *varies,
            decided: describe(snapshot, steered, table.outcome(table.by_class()[*class])),
        })
        .collect();
    for (country, continent) in also {
        if known.contains_key(country) || out.iter().any(|c| c.country.as_bytes() == country) {
            continue;
        }
        let place = Place {
            continent: *continent,
            country: Some(*country),
            ..Place::default()
        };
        out.push(CountryDecision {
            country: cc(*country),
            continent: continent.map(Continent::code),
            in_geoip: false,
            varies: false,
            decided: describe(snapshot, steered, &decide_at(snapshot, steered, &place)),
        });
    }
    out.sort_by(|a, b| a.country.cmp(&b.country));
    out
}

/// What clients the GeoIP data does not locate get (and ECS /0 queries).
pub fn not_located(snapshot: &Snapshot, steered: &Steered) -> Decided {
    let table = &steered.table;
    describe(snapshot, steered, table.outcome(table.fallback().outcome))
}

/// An ASN or CIDR rule and what its clients get now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exception {
    /// `asn` or `cidr`.
    pub kind: &'static str,
    /// `6167`, `192.0.2.0/24`.
    pub network: String,
    /// The rule, as `rules[3] asn=6167`.
    pub rule: String,
    /// The rule's targets, in its order.
    pub targets: Vec<String>,
    /// What a client of that network gets now (located where the rule's own location
    /// conditions, if any, hold).
    #[serde(flatten)]
    pub now: Decided,
}

/// Every ASN and CIDR named by the policy's geo rules, one entry per network.
pub fn exceptions(snapshot: &Snapshot, steered: &Steered) -> Vec<Exception> {
    let policy = &steered.policy;
    let Some(geo) = policy.geo() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in &geo.rules {
        let m = &rule.matches;
        // A client where the rule's location conditions hold: its first continent/country.
        let base = Place {
            continent: m.continent.first().copied(),
            country: m
                .country
                .first()
                .or(m.subdivision.first().map(|(c, _)| c))
                .copied(),
            ..Place::default()
        };
        let networks = m
            .asn
            .iter()
            .map(|a| {
                (
                    "asn",
                    a.to_string(),
                    Place {
                        asn: Some(*a),
                        ..base.clone()
                    },
                )
            })
            .chain(m.cidr.iter().map(|n| {
                (
                    "cidr",
                    n.to_string(),
                    Place {
                        cidr: Some(*n),
                        // A CIDR rule with an ASN condition: its first ASN.
                        asn: m.asn.first().copied(),
                        ..base.clone()
                    },
                )
            }));
        for (kind, network, place) in networks {
            out.push(Exception {
                kind,
                network,
                rule: format!("rules[{}] {}", rule.index, describe_match(m)),
                targets: rule
                    .targets
                    .iter()
                    .map(|t| policy.target(*t).id.clone())
                    .collect(),
                now: describe(snapshot, steered, &decide_at(snapshot, steered, &place)),
            });
        }
    }
    out
}

/// The target with the largest expected share (the first of equals).
fn best(pick: &policy::Pick) -> Option<TargetId> {
    let mut best: Option<(TargetId, f64)> = None;
    for (t, s) in pick.shares() {
        if best.is_none_or(|(_, b)| s > b + 1e-9) {
            best = Some((t, s));
        }
    }
    best.map(|(t, _)| t)
}

#[cfg(test)]
mod tests;
