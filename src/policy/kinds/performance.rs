//! `performance`: put the target with the best measured latency first, but only when enough
//! samples show the difference with statistical confidence (one-sided Welch's t-test against
//! the runner-up). Measurements are looked up for the client's country, then continent, then
//! the world, the first region where at least two candidates have enough samples. When the
//! data is not conclusive the step changes nothing and the next step (typically `weighted`)
//! decides: that is the configured fallback. When it is conclusive it decides, and a selector
//! after it is skipped.

use super::super::eval::{Client, Trace};
use super::super::{Policy, TargetId};
use crate::perf::{PerfView, Region, Stats, confidence_lower};

#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    pub min_samples: u64,
    /// e.g. 0.95: switch only when P(best is really faster) ≥ this.
    pub confidence: f64,
    /// Windows below this availability never rank first.
    pub min_availability: f64,
}

impl Performance {
    /// Reorder `candidates` best first if the data is conclusive. Returns whether it ranked.
    pub fn apply(
        &self,
        policy: &Policy,
        client: &Client,
        perf: &PerfView,
        candidates: &mut Vec<TargetId>,
        trace: &mut Trace,
    ) -> bool {
        if candidates.len() < 2 {
            return false;
        }
        let loc = client.location;
        let regions = [
            loc.and_then(|l| l.country).map(Region::Country),
            loc.and_then(|l| l.continent).map(Region::Continent),
            Some(Region::World),
        ];
        for region in regions.into_iter().flatten() {
            let mut measured: Vec<(TargetId, Stats)> = candidates
                .iter()
                .filter_map(|t| {
                    perf.get(&policy.target(*t).id, &region)
                        .filter(|s| s.samples >= self.min_samples)
                        .map(|s| (*t, *s))
                })
                .collect();
            if measured.len() < 2 {
                continue;
            }
            // Available enough first, then by mean latency.
            measured.sort_by(|(_, a), (_, b)| {
                let ok = |s: &Stats| s.availability >= self.min_availability;
                ok(b).cmp(&ok(a)).then(a.mean_ms.total_cmp(&b.mean_ms))
            });
            let (best, runner_up) = (&measured[0], &measured[1]);
            if best.1.availability < self.min_availability {
                trace.note(|| format!("performance ({region}): no candidate is available enough"));
                return false;
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
                return false;
            }
            trace.note(|| {
                format!(
                    "performance ({region}): {} {:.1} ms (n={}) beats {} {:.1} ms (n={}) with confidence {:.3}",
                    name(best.0), best.1.mean_ms, best.1.samples, name(runner_up.0), runner_up.1.mean_ms, runner_up.1.samples, confidence
                )
            });
            let mut ranked: Vec<TargetId> = measured.iter().map(|(t, _)| *t).collect();
            let rest: Vec<TargetId> = candidates
                .iter()
                .copied()
                .filter(|t| !ranked.contains(t))
                .collect();
            ranked.extend(rest);
            *candidates = ranked;
            return true;
        }
        trace.note(|| {
            format!(
                "performance: fewer than two candidates have {} samples in any region; passing on",
                self.min_samples
            )
        });
        false
    }
}
