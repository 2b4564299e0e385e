//! Raw policy → validated [`Policy`], with errors that name file, field and reason.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use ipnet::IpNet;

use super::raw::{RawMatch, RawPolicy, RawRule, RawTarget};
use crate::geo::{Continent, Location, iso};

/// Shortest and longest TTL a steered answer may carry. Short TTLs are the point of steering;
/// a day is the longest anything in the zone should live.
const TTL_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.reason)
        }
    }
}

/// Index into [`Policy::targets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u16);

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: String,
    pub answer: TargetAnswer,
}

/// What a target is answered as: a CNAME to a CDN hostname, or a pool of PoP addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetAnswer {
    Cname(Name),
    Addresses {
        a: Vec<Ipv4Addr>,
        aaaa: Vec<Ipv6Addr>,
    },
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
    /// True when the rule's location conditions hold for `loc` (ASN and CIDR are checked by
    /// the caller, which has them at hand).
    pub fn matches_location(&self, loc: Option<&Location>) -> bool {
        let has_geo =
            !(self.continent.is_empty() && self.country.is_empty() && self.subdivision.is_empty());
        if !has_geo {
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

    pub fn has_location(&self) -> bool {
        !(self.continent.is_empty() && self.country.is_empty() && self.subdivision.is_empty())
    }

    /// How specific the rule is: the most specific condition it has, then how many kinds of
    /// condition it combines. The most specific matching rule wins.
    pub fn specificity(&self) -> (u8, u8) {
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
        let kinds = [
            !self.continent.is_empty(),
            !self.country.is_empty(),
            !self.subdivision.is_empty(),
            !self.asn.is_empty(),
            !self.cidr.is_empty(),
        ];
        (class, kinds.iter().filter(|k| **k).count() as u8)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub matches: Match,
    pub target: TargetId,
    /// Position in the file, for explanations (`rules[2]`).
    pub index: usize,
}

/// A validated policy for one steered name.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Fully qualified, lower case.
    pub name: Name,
    pub ttl_s: u32,
    pub targets: Vec<Target>,
    /// In file order; the decision compiler orders them by specificity.
    pub rules: Vec<Rule>,
    pub default: TargetId,
    /// Where it came from (file path or `bundled demo`), for errors and explanations.
    pub source: String,
}

impl Policy {
    pub fn target(&self, id: TargetId) -> &Target {
        &self.targets[usize::from(id.0)]
    }
}

/// Parse and validate the text of one policy file. `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
        file: file.to_owned(),
        field: String::new(),
        reason: e.to_string().trim_end().replace('\n', "\n    "),
    })?;
    Validator { file }.policy(raw)
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn policy(&self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let RawPolicy {
            name,
            ttl_s,
            default,
            targets: raw_targets,
            rules: raw_rules,
        } = raw;
        let name = self.fqdn("name", &name)?;
        if !TTL_RANGE.contains(&ttl_s) {
            return Err(self.err(
                "ttl_s",
                format!(
                    "{ttl_s} is out of range {}..={}",
                    TTL_RANGE.start(),
                    TTL_RANGE.end()
                ),
            ));
        }
        if raw_targets.is_empty() {
            return Err(self.err("targets", "at least one target is required"));
        }
        if raw_targets.len() > usize::from(u16::MAX) {
            return Err(self.err("targets", "too many targets"));
        }
        let mut targets = Vec::with_capacity(raw_targets.len());
        for (id, raw) in raw_targets {
            let answer = self.target(&id, raw)?;
            targets.push(Target { id, answer });
        }
        let lookup = |field: &str, id: &str| -> Result<TargetId, PolicyError> {
            targets
                .iter()
                .position(|t| t.id == id)
                .map(|i| TargetId(i as u16))
                .ok_or_else(|| {
                    let known: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
                    self.err(
                        field,
                        format!("unknown target {id:?} (targets: {})", known.join(", ")),
                    )
                })
        };
        let default = lookup("default", &default)?;
        let mut rules = Vec::with_capacity(raw_rules.len());
        for (index, RawRule { matches, target }) in raw_rules.into_iter().enumerate() {
            let field = format!("rules[{index}]");
            let target = lookup(&format!("{field}.target"), &target)?;
            let matches = self.matches(&format!("{field}.match"), matches)?;
            rules.push(Rule {
                matches,
                target,
                index,
            });
        }
        Ok(Policy {
            name,
            ttl_s,
            targets,
            rules,
            default,
            source: self.file.to_owned(),
        })
    }

    fn fqdn(&self, field: &str, text: &str) -> Result<Name, PolicyError> {
        let mut name = Name::from_ascii(text)
            .map_err(|e| self.err(field, format!("{text:?} is not a valid DNS name: {e}")))?;
        name.set_fqdn(true);
        if name.is_root() {
            return Err(self.err(field, "the root name cannot be used here"));
        }
        Ok(name.to_lowercase())
    }

    fn target(&self, id: &str, raw: RawTarget) -> Result<TargetAnswer, PolicyError> {
        let field = format!("targets.{id}");
        let RawTarget { cname, a, aaaa } = raw;
        match cname {
            Some(_) if !(a.is_empty() && aaaa.is_empty()) => Err(self.err(
                field,
                "a target is either a cname or a pool of a/aaaa addresses, not both",
            )),
            Some(cname) => Ok(TargetAnswer::Cname(
                self.fqdn(&format!("{field}.cname"), &cname)?,
            )),
            None if a.is_empty() && aaaa.is_empty() => Err(self.err(
                field,
                "a target needs a cname or at least one a/aaaa address",
            )),
            None => {
                let a = a
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.parse().map_err(|_| {
                            self.err(
                                format!("{field}.a[{i}]"),
                                format!("{s:?} is not an IPv4 address"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let aaaa = aaaa
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.parse().map_err(|_| {
                            self.err(
                                format!("{field}.aaaa[{i}]"),
                                format!("{s:?} is not an IPv6 address"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TargetAnswer::Addresses { a, aaaa })
            }
        }
    }

    fn matches(&self, field: &str, raw: RawMatch) -> Result<Match, PolicyError> {
        let RawMatch {
            continent,
            country,
            subdivision,
            asn,
            cidr,
        } = raw;
        let mut m = Match::default();
        for code in continent.into_vec() {
            let continent = iso::parse_continent(&code)
                .map_err(|r| self.err(format!("{field}.continent"), r))?;
            m.continent.push(continent);
        }
        for code in country.into_vec() {
            let country =
                iso::parse_country(&code).map_err(|r| self.err(format!("{field}.country"), r))?;
            m.country.push(country);
        }
        for code in subdivision.into_vec() {
            let sub = iso::parse_subdivision(&code)
                .map_err(|r| self.err(format!("{field}.subdivision"), r))?;
            m.subdivision.push(sub);
        }
        for number in asn.into_vec() {
            if number == 0 {
                return Err(self.err(format!("{field}.asn"), "0 is not a valid AS number"));
            }
            m.asn.push(number);
        }
        for text in cidr.into_vec() {
            let f = format!("{field}.cidr");
            let net: IpNet = text.parse().map_err(|_| {
                self.err(&f, format!("{text:?} is not a network like 192.0.2.0/24"))
            })?;
            if net.trunc() != net {
                return Err(self.err(
                    f,
                    format!(
                        "{text:?} has host bits set (did you mean \"{}\"?)",
                        net.trunc()
                    ),
                ));
            }
            m.cidr.push(net);
        }
        let kinds = m.specificity().1;
        if kinds == 0 {
            return Err(self.err(
                field,
                "empty match: give at least one of continent, country, subdivision, asn, cidr",
            ));
        }
        if !m.cidr.is_empty() && kinds > 1 {
            return Err(self.err(
                field,
                "cidr cannot be combined with other conditions (a CIDR rule is already the most specific)",
            ));
        }
        Ok(m)
    }
}
