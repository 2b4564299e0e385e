//! `geo`: narrow the candidates by where the client is (continent, country, subdivision,
//! ASN, CIDR). The most specific matching rule whose targets are not all down wins; if all of
//! its targets are down, the next matching rule, then `default`.

use ipnet::IpNet;

use super::super::eval::{Client, Reason, Trace};
use super::super::{Policy, TargetId};
use crate::geo::{Continent, Location};

#[derive(Debug, Clone, PartialEq)]
pub struct Geo {
    /// In file order.
    pub rules: Vec<Rule>,
    pub default: Vec<TargetId>,
    /// Indices into `rules`, most specific first (file order among equals).
    pub by_specificity: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub matches: Match,
    pub targets: Vec<TargetId>,
    /// Position in the file, for explanations (`rules[2]`).
    pub index: usize,
}

/// The conditions of a rule. Empty lists mean "any"; at least one list is non-empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    pub continent: Vec<Continent>,
    pub country: Vec<[u8; 2]>,
    /// (country, first-level subdivision code), from `CC-SUB`.
    pub subdivision: Vec<([u8; 2], String)>,
    pub asn: Vec<u32>,
    pub cidr: Vec<IpNet>,
}

impl Match {
    pub fn has_location(&self) -> bool {
        !(self.continent.is_empty() && self.country.is_empty() && self.subdivision.is_empty())
    }

    /// True when the location conditions hold for `loc`.
    pub fn matches_location(&self, loc: Option<&Location>) -> bool {
        if !self.has_location() {
            return true;
        }
        let Some(loc) = loc else {
            return false;
        };
        (self.continent.is_empty() || loc.continent.is_some_and(|c| self.continent.contains(&c)))
            && (self.country.is_empty() || loc.country.is_some_and(|c| self.country.contains(&c)))
            && (self.subdivision.is_empty()
                || self.subdivision.iter().any(|(country, sub)| {
                    loc.country == Some(*country) && loc.subdivision.as_deref() == Some(sub)
                }))
    }

    pub fn matches(&self, client: &Client) -> bool {
        (self.cidr.is_empty()
            || client
                .cidr
                .is_some_and(|net| self.cidr.iter().any(|r| r.contains(&net))))
            && (self.asn.is_empty() || client.asn.is_some_and(|a| self.asn.contains(&a)))
            && self.matches_location(client.location)
    }

    /// How specific the rule is: its most specific kind of condition (cidr > asn > subdivision
    /// > country > continent), then the CIDR prefix length, then how many kinds it combines.
    pub fn specificity(&self) -> (u8, u8, u8) {
        let class = if !self.cidr.is_empty() {
            5
        } else if !self.asn.is_empty() {
            4
        } else if !self.subdivision.is_empty() {
            3
        } else if !self.country.is_empty() {
            2
        } else {
            1
        };
        let prefix = self.cidr.iter().map(IpNet::prefix_len).max().unwrap_or(0);
        let kinds = [
            !self.continent.is_empty(),
            !self.country.is_empty(),
            !self.subdivision.is_empty(),
            !self.asn.is_empty(),
            !self.cidr.is_empty(),
        ];
        (class, prefix, kinds.iter().filter(|k| **k).count() as u8)
    }

    fn reason(&self) -> Reason {
        match self.specificity().0 {
            5 => Reason::Cidr,
            4 => Reason::Asn,
            _ => Reason::Geo,
        }
    }
}

impl Geo {
    pub fn new(rules: Vec<Rule>, default: Vec<TargetId>) -> Self {
        let mut by_specificity: Vec<usize> = (0..rules.len()).collect();
        by_specificity.sort_by_key(|i| std::cmp::Reverse(rules[*i].matches.specificity()));
        Geo {
            rules,
            default,
            by_specificity,
        }
    }

    /// Narrow `candidates`; returns the reason and the deciding rule (None for `default`).
    pub fn apply(
        &self,
        policy: &Policy,
        client: &Client,
        candidates: &mut Vec<TargetId>,
        trace: &mut Trace,
    ) -> (Reason, Option<usize>) {
        for rule in self.by_specificity.iter().map(|i| &self.rules[*i]) {
            if !rule.matches.matches(client) {
                continue;
            }
            let kept = intersect(&rule.targets, candidates);
            if kept.is_empty() {
                trace.note(|| {
                    format!(
                        "geo: rules[{}] matches but all its targets are out; trying the next rule",
                        rule.index
                    )
                });
                continue;
            }
            trace.note(|| {
                format!(
                    "geo: rules[{}] matches → {}",
                    rule.index,
                    ids(policy, &kept)
                )
            });
            *candidates = kept;
            return (rule.matches.reason(), Some(rule.index));
        }
        let kept = intersect(&self.default, candidates);
        trace.note(|| format!("geo: no rule applies → default {}", ids(policy, &kept)));
        *candidates = kept;
        let reason = if client.location.is_none() && client.asn.is_none() && client.cidr.is_none() {
            Reason::NoGeo
        } else {
            Reason::Default
        };
        (reason, None)
    }
}

/// `wanted` in its own order, keeping only those still in `candidates`.
fn intersect(wanted: &[TargetId], candidates: &[TargetId]) -> Vec<TargetId> {
    wanted
        .iter()
        .copied()
        .filter(|t| candidates.contains(t))
        .collect()
}

pub(crate) fn ids(policy: &Policy, targets: &[TargetId]) -> String {
    let names: Vec<&str> = targets
        .iter()
        .map(|t| policy.target(*t).id.as_str())
        .collect();
    format!("[{}]", names.join(", "))
}
