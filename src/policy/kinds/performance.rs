//! `performance`: put the target with the best measured latency first, but only when the data
//! proves it. Two sources feed it, chosen per step with `source`:
//!
//! - **`probes`** (default): synthetic probe latencies per country, continent and world. The
//!   fastest must beat the runner-up with `confidence` (one-sided Welch's t-test on the means).
//! - **`rum`**: what real users' browsers measured, per (country, ASN), country, continent and
//!   world ([`crate::rum::rank`]): p50 from mergeable histograms, a Mann–Whitney confidence,
//!   and hysteresis: a challenger replaces the incumbent (the target this region's ranking
//!   chose at the last compile) only when it is better with `confidence` **and** by a
//!   practical margin (`margin_ratio` of the incumbent's p50, or `margin_ms`). A target that
//!   users in a network or country fail to fetch from is out there only, with a hold-down
//!   (the network's own verdict, when it has enough fetches, wins over its country's).
//! - **`both`**: at each level, RUM first; probes where RUM has too few samples there.
//!
//! Levels are tried from fine to coarse; the first where at least two candidates have
//! `min_samples` decides or passes. When the data is not conclusive the step changes nothing
//! and the next step (typically `weighted`) decides: that is the configured fallback. When it
//! is conclusive it decides, and a selector after it is skipped.

use std::time::SystemTime;

use super::super::eval::{Client, Inputs, Trace, utc};
use super::super::{Policy, TargetId};
use crate::perf::{PerfView, Region, RumView, Stats, confidence_lower};
use crate::rum::rank::{self, Rule};
use crate::rum::window::Bucket;

/// Which measurements rank the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Probes,
    Rum,
    Both,
}

impl Source {
    fn rum(self) -> bool {
        matches!(self, Source::Rum | Source::Both)
    }

    fn probes(self) -> bool {
        matches!(self, Source::Probes | Source::Both)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    pub source: Source,
    pub min_samples: u64,
    /// e.g. 0.95: switch only when P(best is really faster) ≥ this.
    pub confidence: f64,
    /// Probe windows below this availability never rank first.
    pub min_availability: f64,
    /// RUM hysteresis: the p50 improvement a challenger needs, as a share of the incumbent's.
    pub margin_ratio: f64,
    /// … or in milliseconds; either suffices.
    pub margin_ms: f64,
}

/// What a level's data said.
enum Verdict {
    /// Ranked: the candidates are reordered and the step decides.
    Decided,
    /// Enough data, but no conclusive best: the step passes on.
    Inconclusive,
    /// Too few samples at this level: try a coarser one.
    Thin,
}

impl Performance {
    /// Reorder `candidates` best first if the data is conclusive. Returns whether it ranked,
    /// and when the result changes by itself (a regional hold-down ending).
    pub fn apply(
        &self,
        policy: &Policy,
        client: &Client,
        inputs: &Inputs,
        candidates: &mut Vec<TargetId>,
        trace: &mut Trace,
    ) -> (bool, Option<SystemTime>) {
        let regions = regions(client);
        let next_change = if self.source.rum() {
            drop_held_out(policy, &regions, inputs, candidates, trace)
        } else {
            None
        };
        if candidates.len() < 2 {
            return (false, next_change);
        }
        for region in &regions {
            let mut verdict = Verdict::Thin;
            if self.source.rum() {
                verdict = self.by_rum(policy, region, inputs, candidates, trace);
            }
            if matches!(verdict, Verdict::Thin) && self.source.probes() {
                verdict = self.by_probes(policy, region, inputs.perf, candidates, trace);
            }
            match verdict {
                Verdict::Decided => return (true, next_change),
                Verdict::Inconclusive => return (false, next_change),
                Verdict::Thin => {}
            }
        }
        trace.note(|| {
            format!(
                "performance: fewer than two candidates have {} samples in any region; passing on",
                self.min_samples
            )
        });
        (false, next_change)
    }

    fn by_rum(
        &self,
        policy: &Policy,
        region: &Region,
        inputs: &Inputs,
        candidates: &mut Vec<TargetId>,
        trace: &mut Trace,
    ) -> Verdict {
        let rum = inputs.perf.rum();
        let measured: Vec<(TargetId, &Bucket)> = candidates
            .iter()
            .filter_map(|t| rum.bucket(&policy.target(*t).id, region).map(|b| (*t, b)))
            .collect();
        let enough = measured
            .iter()
            .filter(|(_, b)| b.samples() >= self.min_samples)
            .count();
        if enough < 2 {
            return Verdict::Thin;
        }
        let key = policy.name.to_string();
        let incumbent = rum
            .incumbents
            .get(&(key.clone(), region.clone()))
            .and_then(|id| {
                candidates
                    .iter()
                    .copied()
                    .find(|t| policy.target(*t).id == *id)
            });
        let rule = Rule {
            min_samples: self.min_samples,
            confidence: self.confidence,
            margin_ratio: self.margin_ratio,
            margin_ms: self.margin_ms,
            max_failure_rate: rum.max_failure_rate,
        };
        let ranking = rank::rank(&measured, incumbent, &rule);
        let name = |t: TargetId| policy.target(t).id.clone();
        let Some(best) = ranking.best else {
            trace.note(|| {
                format!(
                    "performance (rum, {region}): {}: not conclusive, passing on",
                    ranking.explain(name)
                )
            });
            return Verdict::Inconclusive;
        };
        trace.note(|| format!("performance (rum, {region}): {}", ranking.explain(name)));
        if let Some(choices) = inputs.choices {
            choices.record(&key, region, &policy.target(best).id);
        }
        let mut ranked = vec![best];
        ranked.extend(ranking.order.iter().copied().filter(|t| *t != best));
        put_first(candidates, ranked);
        Verdict::Decided
    }

    fn by_probes(
        &self,
        policy: &Policy,
        region: &Region,
        perf: &PerfView,
        candidates: &mut Vec<TargetId>,
        trace: &mut Trace,
    ) -> Verdict {
        let mut measured: Vec<(TargetId, Stats)> = candidates
            .iter()
            .filter_map(|t| {
                perf.get(&policy.target(*t).id, region)
                    .filter(|s| s.samples >= self.min_samples)
                    .map(|s| (*t, *s))
            })
            .collect();
        if measured.len() < 2 {
            return Verdict::Thin;
        }
        // Available enough first, then by mean latency.
        measured.sort_by(|(_, a), (_, b)| {
            let ok = |s: &Stats| s.availability >= self.min_availability;
            ok(b).cmp(&ok(a)).then(a.mean_ms.total_cmp(&b.mean_ms))
        });
        let (best, runner_up) = (&measured[0], &measured[1]);
        if best.1.availability < self.min_availability {
            trace.note(|| format!("performance ({region}): no candidate is available enough"));
            return Verdict::Inconclusive;
        }
        let confidence = if runner_up.1.availability < self.min_availability {
            1.0
        } else {
            confidence_lower(&best.1, &runner_up.1)
        };
        let name = |t: TargetId| policy.target(t).id.clone();
        if confidence < self.confidence {
            trace.note(|| {
                format!(
                    "performance ({region}): {} {:.1} ms vs {} {:.1} ms, confidence {:.3} < {}: not conclusive, passing on",
                    name(best.0), best.1.mean_ms, name(runner_up.0), runner_up.1.mean_ms, confidence, self.confidence
                )
            });
            return Verdict::Inconclusive;
        }
        trace.note(|| {
            format!(
                "performance ({region}): {} {:.1} ms (n={}) beats {} {:.1} ms (n={}) with confidence {:.3}",
                name(best.0), best.1.mean_ms, best.1.samples, name(runner_up.0), runner_up.1.mean_ms, runner_up.1.samples, confidence
            )
        });
        put_first(candidates, measured.iter().map(|(t, _)| *t).collect());
        Verdict::Decided
    }
}

/// `ranked` first, then the candidates it does not name, in their order.
fn put_first(candidates: &mut Vec<TargetId>, mut ranked: Vec<TargetId>) {
    candidates.retain(|t| !ranked.contains(t));
    ranked.append(candidates);
    *candidates = ranked;
}

/// The client's regions, finest first: its network (country + ASN) when both are known, its
/// country, its continent, the world.
fn regions(client: &Client) -> Vec<Region> {
    let loc = client.location;
    let country = loc.and_then(|l| l.country);
    [
        country
            .zip(client.asn)
            .map(|(country, asn)| Region::Network { country, asn }),
        country.map(Region::Country),
        loc.and_then(|l| l.continent).map(Region::Continent),
        Some(Region::World),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Drop the candidates that users in the client's network or country fail to fetch from
/// ([`RumView::out_in`]), unless that would leave none: an answer beats none. Returns when the
/// earliest regional hold-down of a dropped target ends.
fn drop_held_out(
    policy: &Policy,
    regions: &[Region],
    inputs: &Inputs,
    candidates: &mut Vec<TargetId>,
    trace: &mut Trace,
) -> Option<SystemTime> {
    let rum: &RumView = inputs.perf.rum();
    if rum.held_out.is_empty() {
        return None;
    }
    let now = inputs.now;
    let out_in = |t: TargetId| rum.out_in(&policy.target(t).id, regions, now);
    let kept: Vec<TargetId> = candidates
        .iter()
        .copied()
        .filter(|t| out_in(*t).is_none())
        .collect();
    if kept.is_empty() || kept.len() == candidates.len() {
        return None;
    }
    let mut next_change: Option<SystemTime> = None;
    for t in candidates.iter().copied().filter(|t| !kept.contains(t)) {
        let id = &policy.target(t).id;
        let Some(region) = out_in(t) else { continue };
        let until = rum.held_until(id, region, now);
        trace.note(|| match (until, rum.bucket(id, region)) {
            (Some(until), _) => format!(
                "performance (rum, {region}): {id} recovered; held out until {} (hold-down)",
                utc(until)
            ),
            (None, Some(b)) => format!(
                "performance (rum, {region}): {id} is out here: {:.1}% of {} fetches failed (> {:.1}%)",
                b.failure_rate() * 100.0,
                b.attempts,
                rum.max_failure_rate * 100.0
            ),
            (None, None) => format!("performance (rum, {region}): {id} is out here"),
        });
        if let Some(until) = until {
            next_change = Some(next_change.map_or(until, |n| n.min(until)));
        }
    }
    *candidates = kept;
    next_change
}
