//! Decision tables: a policy compiled against the GeoIP data, and the per-query lookup in it.
//!
//! [`compile`] runs on the control plane: it evaluates the policy once per distinct location
//! of the City database and stores the result in an array indexed by [`LocId`], plus small
//! side tables for ASN and CIDR rules. [`Table::decide`] is the hot path: a few comparisons
//! and one array index; no allocation, no I/O, no locks. Pure; depends on `geo` and `policy`.
//!
//! Health, weights and measurements will be further inputs of `compile`; `decide` stays a
//! lookup.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::geo::{GeoDb, Located, common_prefix};
use crate::policy::{Match, Policy, TargetId};

/// Why a client got its answer. Shown by explain tools and counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A CIDR rule matched the client network.
    Cidr,
    /// An ASN rule matched.
    Asn,
    /// A continent/country/subdivision rule matched.
    Geo,
    /// The client was located but no rule matched.
    Default,
    /// The client is not in the GeoIP database (or gave no usable address).
    NoGeo,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Cidr => "cidr",
            Reason::Asn => "asn",
            Reason::Geo => "geo",
            Reason::Default => "default",
            Reason::NoGeo => "no_geo",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome for one class of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub target: TargetId,
    pub reason: Reason,
    /// The rule's position in the policy file, when a rule decided.
    pub rule: Option<usize>,
}

/// The outcome for one query: the choice and the ECS scope (prefix length) it holds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub choice: Choice,
    pub scope: u8,
}

/// One steered name's compiled policy.
#[derive(Debug)]
pub struct Table {
    by_location: Box<[Choice]>,
    not_located: Choice,
    /// ASN → rules naming it, most specific first (they may carry location conditions).
    by_asn: HashMap<u32, Box<[(Match, Choice)]>>,
    /// Longest prefix first, so the first network containing the client wins.
    by_cidr: Box<[(IpNet, Choice)]>,
    uses_location: bool,
    uses_asn: bool,
}

/// Compile a policy against the GeoIP data.
pub fn compile(policy: &Policy, geo: &GeoDb) -> Table {
    let mut rules: Vec<_> = policy.rules.iter().collect();
    // Most specific first; among equals, file order (sort is stable).
    rules.sort_by_key(|r| std::cmp::Reverse(r.matches.specificity()));

    let default = Choice {
        target: policy.default,
        reason: Reason::Default,
        rule: None,
    };
    let choice = |rule: &crate::policy::Rule, reason| Choice {
        target: rule.target,
        reason,
        rule: Some(rule.index),
    };

    let location_rules: Vec<_> = rules
        .iter()
        .filter(|r| r.matches.asn.is_empty() && r.matches.cidr.is_empty())
        .collect();
    let by_location = geo
        .locations()
        .iter()
        .map(|loc| {
            location_rules
                .iter()
                .find(|r| r.matches.matches_location(Some(loc)))
                .map_or(default, |r| choice(r, Reason::Geo))
        })
        .collect();

    let mut by_asn: HashMap<u32, Vec<(Match, Choice)>> = HashMap::new();
    for rule in rules.iter().filter(|r| !r.matches.asn.is_empty()) {
        for asn in &rule.matches.asn {
            by_asn
                .entry(*asn)
                .or_default()
                .push((rule.matches.clone(), choice(rule, Reason::Asn)));
        }
    }

    let mut by_cidr: Vec<(IpNet, Choice)> = rules
        .iter()
        .flat_map(|r| {
            r.matches
                .cidr
                .iter()
                .map(|net| (*net, choice(r, Reason::Cidr)))
        })
        .collect();
    by_cidr.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));

    Table {
        by_location,
        not_located: Choice {
            reason: Reason::NoGeo,
            ..default
        },
        by_asn: by_asn
            .into_iter()
            .map(|(asn, v)| (asn, v.into_boxed_slice()))
            .collect(),
        by_cidr: by_cidr.into_boxed_slice(),
        uses_location: policy.rules.iter().any(|r| r.matches.has_location()),
        uses_asn: policy.rules.iter().any(|r| !r.matches.asn.is_empty()),
    }
}

impl Table {
    /// Decide for a client address already located in `geo`. The hot path.
    pub fn decide(&self, ip: IpAddr, located: &Located, geo: &GeoDb) -> Decision {
        // CIDR rules: the answer must not leak to a neighbouring rule's network, so the scope
        // is at least one bit longer than the common prefix with every rule that missed.
        let mut scope = 0;
        for (net, choice) in self.by_cidr.iter() {
            if net.contains(&ip) {
                return Decision {
                    choice: *choice,
                    scope: scope.max(net.prefix_len()),
                };
            }
            if let Some(common) = common_prefix(ip, net.network()) {
                scope = scope.max(common + 1);
            }
        }

        if self.uses_location {
            scope = scope.max(located.geo_prefix);
        }
        if self.uses_asn {
            scope = scope.max(located.asn_prefix);
            let location = located.loc.map(|id| geo.location(id));
            if let Some(rules) = located.asn.and_then(|asn| self.by_asn.get(&asn)) {
                if let Some((_, choice)) = rules.iter().find(|(m, _)| m.matches_location(location))
                {
                    return Decision {
                        choice: *choice,
                        scope,
                    };
                }
            }
        }

        let choice = match located.loc {
            Some(id) => self
                .by_location
                .get(id.index())
                .copied()
                .unwrap_or(self.not_located),
            None => self.not_located,
        };
        Decision { choice, scope }
    }

    /// The answer for a client we know nothing about (ECS with prefix 0): valid for everyone.
    pub fn fallback(&self) -> Decision {
        Decision {
            choice: self.not_located,
            scope: 0,
        }
    }

    /// Whether answers depend on the client at all (if not, the ECS scope is 0).
    pub fn is_tailored(&self) -> bool {
        self.uses_location || self.uses_asn || !self.by_cidr.is_empty()
    }
}

#[cfg(test)]
mod tests;
