//! Raw policy → validated [`Policy`], with errors that name file, field and reason.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::kinds::active_passive::ActivePassive;
use super::kinds::failover::Failover;
use super::kinds::geo::{Geo, Match, Rule};
use super::kinds::performance::{Performance, Source};
use super::kinds::weighted::{Ramp, Weighted};
use super::raw::{RawMatch, RawPolicy, RawRamp, RawRule, RawSource, RawStep, RawTarget};
use super::{LastResort, Policy, Step, Target, TargetAnswer, TargetId};
use crate::geo::iso;

/// Shortest and longest TTL a steered answer may carry. Short TTLs are the point of steering;
/// a day is the longest anything in the zone should live.
const TTL_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400;
/// Multi-value answers: enough for any pool, small enough for a 512-byte reply.
const MAX_ANSWERS: u8 = 8;

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

/// Parse and validate the text of one policy file. `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
        file: file.to_owned(),
        field: String::new(),
        reason: e.to_string().trim_end().replace('\n', "\n    "),
    })?;
    Validator {
        file,
        targets: Vec::new(),
    }
    .policy(raw)
}

struct Validator<'a> {
    file: &'a str,
    targets: Vec<Target>,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn policy(mut self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let RawPolicy {
            name,
            ttl_s,
            answers,
            last_resort,
            targets: raw_targets,
            chain: raw_chain,
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
        for (id, raw) in raw_targets {
            let target = self.target(id, raw)?;
            self.targets.push(target);
        }
        if !(1..=MAX_ANSWERS).contains(&answers) {
            return Err(self.err(
                "answers",
                format!("{answers} is out of range 1..={MAX_ANSWERS}"),
            ));
        }
        if answers > 1
            && let Some(t) = self
                .targets
                .iter()
                .find(|t| matches!(t.answer, TargetAnswer::Cname(_)))
        {
            return Err(self.err(
                "answers",
                format!(
                    "multi-value answers need address targets, but {} is a cname",
                    t.id
                ),
            ));
        }
        let last_resort = match last_resort.as_str() {
            "all" => LastResort::All,
            id => LastResort::Target(self.lookup("last_resort", id)?),
        };
        let chain = self.chain(raw_chain)?;
        Ok(Policy {
            name,
            ttl_s,
            answers,
            last_resort,
            targets: self.targets,
            chain,
            source: self.file.to_owned(),
        })
    }

    fn lookup(&self, field: &str, id: &str) -> Result<TargetId, PolicyError> {
        self.targets
            .iter()
            .position(|t| t.id == id)
            .map(|i| TargetId(i as u16))
            .ok_or_else(|| {
                let known: Vec<&str> = self.targets.iter().map(|t| t.id.as_str()).collect();
                self.err(
                    field,
                    format!("unknown target {id:?} (targets: {})", known.join(", ")),
                )
            })
    }

    fn lookup_all(&self, field: &str, ids: &[String]) -> Result<Vec<TargetId>, PolicyError> {
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let t = self.lookup(&format!("{field}[{i}]"), id)?;
            if out.contains(&t) {
                return Err(self.err(format!("{field}[{i}]"), format!("{id:?} is listed twice")));
            }
            out.push(t);
        }
        Ok(out)
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

    fn target(&self, id: String, raw: RawTarget) -> Result<Target, PolicyError> {
        let field = format!("targets.{id}");
        let RawTarget {
            cname,
            a,
            aaaa,
            max_share,
        } = raw;
        let max_share = max_share.unwrap_or(1.0);
        if !(max_share > 0.0 && max_share <= 1.0) {
            return Err(self.err(
                format!("{field}.max_share"),
                format!("{max_share} is not in (0, 1]"),
            ));
        }
        let answer = match cname {
            Some(_) if !(a.is_empty() && aaaa.is_empty()) => {
                return Err(self.err(
                    field,
                    "a target is either a cname or a pool of a/aaaa addresses, not both",
                ));
            }
            Some(cname) => TargetAnswer::Cname(self.fqdn(&format!("{field}.cname"), &cname)?),
            None if a.is_empty() && aaaa.is_empty() => {
                return Err(self.err(
                    field,
                    "a target needs a cname or at least one a/aaaa address",
                ));
            }
            None => TargetAnswer::Addresses {
                a: self.addresses(&format!("{field}.a"), &a, "IPv4")?,
                aaaa: self.addresses(&format!("{field}.aaaa"), &aaaa, "IPv6")?,
            },
        };
        Ok(Target {
            id,
            answer,
            max_share,
        })
    }

    fn addresses<T: std::str::FromStr>(
        &self,
        field: &str,
        texts: &[String],
        family: &str,
    ) -> Result<Vec<T>, PolicyError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse().map_err(|_| {
                    self.err(
                        format!("{field}[{i}]"),
                        format!("{s:?} is not an {family} address"),
                    )
                })
            })
            .collect()
    }

    fn chain(&self, raw: Vec<RawStep>) -> Result<Vec<Step>, PolicyError> {
        if raw.is_empty() {
            return Err(self.err(
                "chain",
                "at least one step is required (e.g. { kind = \"failover\" })",
            ));
        }
        let mut chain: Vec<Step> = Vec::with_capacity(raw.len());
        let last = raw.len() - 1;
        for (i, raw) in raw.into_iter().enumerate() {
            let field = format!("chain[{i}]");
            let step = self.step(&field, raw)?;
            if chain.iter().any(|s| s.kind() == step.kind()) {
                return Err(self.err(
                    &field,
                    format!("a chain has at most one {:?} step", step.kind()),
                ));
            }
            if step.is_selector() && i != last {
                return Err(self.err(
                    &field,
                    format!(
                        "{:?} makes the final pick, so it must be the last step",
                        step.kind()
                    ),
                ));
            }
            chain.push(step);
        }
        Ok(chain)
    }

    fn step(&self, field: &str, raw: RawStep) -> Result<Step, PolicyError> {
        Ok(match raw {
            RawStep::Up {} => Step::Up,
            RawStep::Geo { default, rules } => {
                if default.is_empty() {
                    return Err(self.err(
                        format!("{field}.default"),
                        "at least one target is required",
                    ));
                }
                let default = self.lookup_all(&format!("{field}.default"), &default)?;
                let rules = rules
                    .into_iter()
                    .enumerate()
                    .map(|(index, RawRule { matches, targets })| {
                        let rf = format!("{field}.rules[{index}]");
                        if targets.is_empty() {
                            return Err(self
                                .err(format!("{rf}.targets"), "at least one target is required"));
                        }
                        Ok(Rule {
                            targets: self.lookup_all(&format!("{rf}.targets"), &targets)?,
                            matches: self.matches(&format!("{rf}.match"), matches)?,
                            index,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Step::Geo(Geo::new(rules, default))
            }
            RawStep::Performance {
                source,
                min_samples,
                confidence,
                min_availability,
                margin_ratio,
                margin_ms,
            } => {
                if !(0.0..1.0).contains(&margin_ratio) {
                    return Err(self.err(
                        format!("{field}.margin_ratio"),
                        format!("{margin_ratio} is not in [0, 1)"),
                    ));
                }
                if !(0.0..=10_000.0).contains(&margin_ms) {
                    return Err(self.err(
                        format!("{field}.margin_ms"),
                        format!("{margin_ms} is not in [0, 10000]"),
                    ));
                }
                if min_samples < 2 {
                    return Err(self.err(
                        format!("{field}.min_samples"),
                        "at least 2 samples are needed for a variance",
                    ));
                }
                if !(confidence > 0.5 && confidence < 1.0) {
                    return Err(self.err(
                        format!("{field}.confidence"),
                        format!("{confidence} is not in (0.5, 1)"),
                    ));
                }
                if !(0.0..=1.0).contains(&min_availability) {
                    return Err(self.err(
                        format!("{field}.min_availability"),
                        format!("{min_availability} is not in [0, 1]"),
                    ));
                }
                Step::Performance(Performance {
                    source: match source {
                        RawSource::Probes => Source::Probes,
                        RawSource::Rum => Source::Rum,
                        RawSource::Both => Source::Both,
                    },
                    min_samples,
                    confidence,
                    min_availability,
                    margin_ratio,
                    margin_ms,
                })
            }
            RawStep::Weighted { weights, ramp } => {
                let mut weighted = self.weights(field, weights)?;
                weighted.ramp = ramp
                    .map(|r| self.ramp(&format!("{field}.ramp"), r))
                    .transpose()?;
                Step::Weighted(weighted)
            }
            RawStep::Failover { order } => Step::Failover(Failover {
                order: self.lookup_all(&format!("{field}.order"), &order)?,
            }),
            RawStep::ActivePassive {
                primary,
                standby,
                hold_down_s,
            } => {
                let primary = self.lookup(&format!("{field}.primary"), &primary)?;
                let standby = self.lookup(&format!("{field}.standby"), &standby)?;
                if primary == standby {
                    return Err(
                        self.err(format!("{field}.standby"), "must differ from the primary")
                    );
                }
                if hold_down_s > 86_400 {
                    return Err(self.err(
                        format!("{field}.hold_down_s"),
                        format!("{hold_down_s} is more than a day"),
                    ));
                }
                Step::ActivePassive(ActivePassive {
                    primary,
                    standby,
                    hold_down: Duration::from_secs(hold_down_s),
                })
            }
        })
    }

    fn weights(&self, field: &str, raw: BTreeMap<String, u32>) -> Result<Weighted, PolicyError> {
        let mut weights = Vec::with_capacity(raw.len());
        for (id, weight) in raw {
            weights.push((self.lookup(&format!("{field}.weights.{id}"), &id)?, weight));
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err(self.err(
                format!("{field}.weights"),
                "at least one weight must be above 0",
            ));
        }
        Ok(Weighted {
            weights,
            ramp: None,
        })
    }

    fn ramp(&self, field: &str, raw: RawRamp) -> Result<Ramp, PolicyError> {
        let RawRamp {
            target,
            percent,
            step_s,
            start_unix_s,
        } = raw;
        let target = self.lookup(&format!("{field}.target"), &target)?;
        if percent.is_empty() || percent.iter().any(|p| *p > 100) {
            return Err(self.err(
                format!("{field}.percent"),
                "give one or more steps, each 0..=100",
            ));
        }
        if percent.windows(2).any(|w| w[0] > w[1]) {
            return Err(self.err(format!("{field}.percent"), "steps must not decrease"));
        }
        if step_s < 10 {
            return Err(self.err(
                format!("{field}.step_s"),
                format!("{step_s} is under 10 s: too fast to judge health"),
            ));
        }
        Ok(Ramp {
            target,
            percent: percent.iter().map(|p| f64::from(*p) / 100.0).collect(),
            step: Duration::from_secs(step_s),
            start: std::time::UNIX_EPOCH + Duration::from_secs(start_unix_s),
        })
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
            let c = iso::parse_continent(&code)
                .map_err(|r| self.err(format!("{field}.continent"), r))?;
            m.continent.push(c);
        }
        for code in country.into_vec() {
            let c =
                iso::parse_country(&code).map_err(|r| self.err(format!("{field}.country"), r))?;
            m.country.push(c);
        }
        for code in subdivision.into_vec() {
            let s = iso::parse_subdivision(&code)
                .map_err(|r| self.err(format!("{field}.subdivision"), r))?;
            m.subdivision.push(s);
        }
        for number in asn.into_vec() {
            if number == 0 {
                return Err(self.err(format!("{field}.asn"), "0 is not a valid AS number"));
            }
            m.asn.push(number);
        }
        for text in cidr.into_vec() {
            let net =
                iso::parse_network(&text).map_err(|r| self.err(format!("{field}.cidr"), r))?;
            m.cidr.push(net);
        }
        let kinds = m.specificity().2;
        if kinds == 0 {
            return Err(self.err(
                field,
                "empty match: give at least one of continent, country, subdivision, asn, cidr",
            ));
        }
        if !m.cidr.is_empty() && kinds > 1 {
            return Err(self.err(field, "cidr cannot be combined with other conditions (a CIDR rule is already the most specific)"));
        }
        Ok(m)
    }
}
