//! Ranking targets by what real users measured, with hysteresis so answers do not flap.
//!
//! **Statistic.** Targets are ordered by the median (p50) of their successful timings, from
//! the window's histogram, with p75 breaking ties. The median rather than the mean: latency
//! distributions are skewed with heavy right tails (a few page loads on a congested Wi-Fi
//! take seconds), and one such tail moves a mean arbitrarily but a median by at most one
//! sample's rank. The histogram's clip already bounds each outlier; the median ignores it.
//!
//! **Confidence.** "Better" is decided with the one-sided Mann–Whitney U test on the bucketed
//! samples ([`confidence_faster`]): distribution-free (no normality assumption that RUM
//! latencies break), computable straight from two mergeable histograms in O(buckets), and
//! correct for the many ties bucketing creates thanks to the tie-corrected variance. The
//! normal approximation (statrs' standard normal) is accurate once both sides have a couple
//! of dozen samples, which is what `min_samples` guarantees (default 30). It tests whether a
//! challenger's timing is more often lower than the incumbent's (P(X < Y) > ½) — close to,
//! but not the same as, "its median is lower", which is why the practical margin on p50 is
//! also required.
//!
//! **Hysteresis.** A challenger replaces the incumbent only if it is better with
//! `confidence` **and** its p50 is lower by at least `margin_ratio` × the incumbent's p50
//! **or** by at least `margin_ms` (either suffices; set one to `f64::INFINITY` to require the
//! other alone). Otherwise the incumbent stays, so two targets within the margin never swap
//! back and forth, whichever one holds the answer. Without an incumbent (or when it fails,
//! lacks samples or is not a candidate) the fastest target wins only if it is confidently
//! faster than the runner-up; otherwise there is no conclusive best and the caller falls back
//! (to a coarser region, probes, or the policy order).
//!
//! **Availability.** A target with at least `min_samples` attempts whose failure rate
//! exceeds `max_failure_rate` is listed in `failing` and never ranked: it cannot be first.
//!
//! **Names.** `rank` only needs `T: Copy + Eq`, so it cannot print target names. The result
//! carries every candidate's numbers ([`Ranked`]) and the structured [`Reason`];
//! [`Ranking::explain`] renders the reason with the caller's names, and [`Ranking::why`] is
//! the same sentence naming candidates by their 1-based position in the input (`#2`).
//!
//! Pure: depends on [`super::histogram`], [`super::window`], `statrs` and `std`.

use std::fmt::{Display, Write as _};

use statrs::distribution::{ContinuousCDF, Normal};

use super::histogram::Histogram;
use super::window::{Bucket, Summary};

/// When a target is good enough to rank, and when a challenger displaces the incumbent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Successful timings needed to rank a target, and attempts needed to judge its
    /// failure rate. At least ~20 keeps the normal approximation honest.
    pub min_samples: u64,
    /// One-sided confidence (0.5 < c < 1) that the challenger is faster.
    pub confidence: f64,
    /// Practical margin as a share of the incumbent's p50 (0.10 = 10 % lower).
    pub margin_ratio: f64,
    /// Practical margin in milliseconds of p50. Either margin suffices.
    pub margin_ms: f64,
    /// Failure rate above which a target is failing in this region (0..=1).
    pub max_failure_rate: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            min_samples: 30,
            confidence: 0.95,
            margin_ratio: 0.10,
            margin_ms: 5.0,
            max_failure_rate: 0.05,
        }
    }
}

/// A [`Rule`] field out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("min_samples must be at least 1")]
    MinSamples,
    #[error("confidence must be above 0.5 and below 1, got {0}")]
    Confidence(f64),
    #[error("margin_ratio must be 0 or more, got {0}")]
    MarginRatio(f64),
    #[error("margin_ms must be 0 or more, got {0}")]
    MarginMs(f64),
    #[error("max_failure_rate must be between 0 and 1, got {0}")]
    MaxFailureRate(f64),
}

impl Rule {
    /// Checks every field's range (for config loading).
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.min_samples == 0 {
            return Err(RuleError::MinSamples);
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(RuleError::Confidence(self.confidence));
        }
        if self.margin_ratio.is_nan() || self.margin_ratio < 0.0 {
            return Err(RuleError::MarginRatio(self.margin_ratio));
        }
        if self.margin_ms.is_nan() || self.margin_ms < 0.0 {
            return Err(RuleError::MarginMs(self.margin_ms));
        }
        if !(0.0..=1.0).contains(&self.max_failure_rate) {
            return Err(RuleError::MaxFailureRate(self.max_failure_rate));
        }
        Ok(())
    }
}

/// Where a candidate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Enough samples and not failing: in `order`.
    Ranked,
    /// At least `min_samples` attempts and failure rate above the maximum: in `failing`.
    Failing,
    /// Not enough evidence either way: in neither list.
    TooFewSamples,
}

/// One candidate's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranked<T> {
    pub target: T,
    pub summary: Summary,
    pub standing: Standing,
}

/// A challenger measured against an incumbent (or the fastest against the runner-up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// One-sided Mann–Whitney confidence that the challenger is faster.
    pub confidence: f64,
    /// Incumbent p50 minus challenger p50 (ms; positive when the challenger is faster).
    pub diff_ms: f64,
    /// `diff_ms` as a share of the incumbent's p50.
    pub ratio: f64,
    /// `confidence >= rule.confidence`.
    pub confident: bool,
    /// The practical margin holds (by ratio or by ms).
    pub by_margin: bool,
}

/// Why the ranking came out as it did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason<T> {
    /// No candidate has enough samples without failing.
    NoCandidates,
    /// Exactly one candidate ranks.
    Alone { best: T },
    /// The incumbent is still the fastest by p50.
    IncumbentFastest { incumbent: T },
    /// A faster challenger did not pass both tests; the incumbent stays.
    Kept {
        incumbent: T,
        challenger: T,
        cmp: Comparison,
    },
    /// A challenger passed both tests against the incumbent.
    Switched { from: T, to: T, cmp: Comparison },
    /// No usable incumbent; the fastest is confidently faster than the runner-up.
    Won {
        best: T,
        runner_up: T,
        cmp: Comparison,
    },
    /// No usable incumbent, and the fastest is not confidently faster than the runner-up.
    Inconclusive {
        leader: T,
        runner_up: T,
        cmp: Comparison,
    },
}

/// The outcome of [`rank`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking<T> {
    /// Ranked candidates, `best` first (when there is one), then the rest by p50.
    pub order: Vec<T>,
    /// The target to answer with; `None` when not conclusive.
    pub best: Option<T>,
    /// The incumbent is `best` because no challenger passed both tests (or it is fastest).
    pub kept_incumbent: bool,
    /// Candidates whose failure rate exceeds the maximum, worst last.
    pub failing: Vec<T>,
    /// The reason as a sentence with the numbers, naming candidates `#1`, `#2`, … by their
    /// position in the input; see [`Ranking::explain`] for names.
    pub why: String,
    /// The structured reason.
    pub reason: Reason<T>,
    /// Every candidate's numbers, in input order.
    pub candidates: Vec<Ranked<T>>,
    /// The incumbent passed in, when it could not be used (failing, too few samples, or not
    /// among the candidates).
    pub unusable_incumbent: Option<T>,
    /// The rule applied (for rendering thresholds).
    pub rule: Rule,
}

/// Ranks `candidates` by p50 with hysteresis around `incumbent`; see the module doc.
pub fn rank<T: Copy + Eq>(
    candidates: &[(T, &Bucket)],
    incumbent: Option<T>,
    rule: &Rule,
) -> Ranking<T> {
    let min_samples = rule.min_samples.max(1);
    let all: Vec<Ranked<T>> = candidates
        .iter()
        .map(|(t, b)| {
            let summary = b.summary();
            let standing = if summary.attempts >= min_samples
                && summary.failure_rate > rule.max_failure_rate
            {
                Standing::Failing
            } else if summary.samples >= min_samples {
                Standing::Ranked
            } else {
                Standing::TooFewSamples
            };
            Ranked {
                target: *t,
                summary,
                standing,
            }
        })
        .collect();

    // Ranked candidates (index into `candidates`) by p50, then p75, then input order.
    let mut ranked: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].standing == Standing::Ranked)
        .collect();
    let key = |i: usize| {
        let s = &all[i].summary;
        (
            s.p50_ms.unwrap_or(f64::INFINITY),
            s.p75_ms.unwrap_or(f64::INFINITY),
        )
    };
    ranked.sort_by(|&a, &b| {
        let (a50, a75) = key(a);
        let (b50, b75) = key(b);
        a50.total_cmp(&b50).then(a75.total_cmp(&b75))
    });

    let mut failing_idx: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].standing == Standing::Failing)
        .collect();
    failing_idx.sort_by(|&a, &b| {
        all[a]
            .summary
            .failure_rate
            .total_cmp(&all[b].summary.failure_rate)
    });
    let failing: Vec<T> = failing_idx.iter().map(|&i| all[i].target).collect();

    let inc_pos = incumbent.and_then(|t| ranked.iter().position(|&i| all[i].target == t));
    let unusable_incumbent = incumbent.filter(|_| inc_pos.is_none());
    let compare = |challenger: usize, holder: usize| {
        comparison(candidates[challenger].1, candidates[holder].1, rule)
    };

    // (best index into `candidates`, kept_incumbent, reason)
    let (best, kept, reason) = match (ranked.as_slice(), inc_pos) {
        ([], _) => (None, false, Reason::NoCandidates),
        (&[only], _) => (
            Some(only),
            inc_pos.is_some(),
            Reason::Alone {
                best: all[only].target,
            },
        ),
        (order, Some(0)) => (
            Some(order[0]),
            true,
            Reason::IncumbentFastest {
                incumbent: all[order[0]].target,
            },
        ),
        (order, Some(p)) => {
            let holder = order[p];
            let winner = order[..p]
                .iter()
                .map(|&c| (c, compare(c, holder)))
                .find(|(_, cmp)| cmp.confident && cmp.by_margin);
            match winner {
                Some((c, cmp)) => (
                    Some(c),
                    false,
                    Reason::Switched {
                        from: all[holder].target,
                        to: all[c].target,
                        cmp,
                    },
                ),
                None => (
                    Some(holder),
                    true,
                    Reason::Kept {
                        incumbent: all[holder].target,
                        challenger: all[order[0]].target,
                        cmp: compare(order[0], holder),
                    },
                ),
            }
        }
        (order, None) => {
            let cmp = compare(order[0], order[1]);
            if cmp.confident {
                (
                    Some(order[0]),
                    false,
                    Reason::Won {
                        best: all[order[0]].target,
                        runner_up: all[order[1]].target,
                        cmp,
                    },
                )
            } else {
                (
                    None,
                    false,
                    Reason::Inconclusive {
                        leader: all[order[0]].target,
                        runner_up: all[order[1]].target,
                        cmp,
                    },
                )
            }
        }
    };

    let mut order: Vec<T> = Vec::with_capacity(ranked.len());
    if let Some(b) = best {
        order.push(all[b].target);
    }
    order.extend(
        ranked
            .iter()
            .filter(|&&i| Some(i) != best)
            .map(|&i| all[i].target),
    );

    let mut out = Ranking {
        order,
        best: best.map(|b| all[b].target),
        kept_incumbent: kept,
        failing,
        why: String::new(),
        reason,
        candidates: all,
        unusable_incumbent,
        rule: *rule,
    };
    out.why = out.render(
        &|t| match out.candidates.iter().position(|c| c.target == t) {
            Some(i) => format!("#{}", i + 1),
            None => "#?".to_owned(),
        },
    );
    out
}

/// Challenger vs holder under `rule`.
fn comparison(challenger: &Bucket, holder: &Bucket, rule: &Rule) -> Comparison {
    let confidence = confidence_faster(&challenger.timings, &holder.timings);
    let c50 = challenger.timings.quantile(0.5).unwrap_or(f64::INFINITY);
    let h50 = holder.timings.quantile(0.5).unwrap_or(f64::INFINITY);
    let diff_ms = h50 - c50;
    let ratio = if h50 > 0.0 && h50.is_finite() {
        diff_ms / h50
    } else {
        0.0
    };
    let by_margin = diff_ms > 0.0 && (diff_ms >= rule.margin_ms || ratio >= rule.margin_ratio);
    Comparison {
        confidence,
        diff_ms,
        ratio,
        confident: confidence >= rule.confidence,
        by_margin,
    }
}

/// One-sided confidence that a timing drawn from `challenger` is lower than one drawn from
/// `incumbent` (Mann–Whitney U, tie-corrected, normal approximation with continuity
/// correction). 0.5 when either side is empty or every sample shares one bucket.
///
/// U counts the (challenger, incumbent) pairs where the challenger's bucket is lower, plus
/// half the pairs in the same bucket; under the null hypothesis (same distribution) its mean
/// is n₁n₂/2 and its variance n₁n₂/12 · ((N + 1) − Σ(t³ − t) / (N(N − 1))), with t the
/// number of samples (both sides) in each bucket.
pub fn confidence_faster(challenger: &Histogram, incumbent: &Histogram) -> f64 {
    let n1 = challenger.count() as f64;
    let n2 = incumbent.count() as f64;
    if n1 == 0.0 || n2 == 0.0 {
        return 0.5;
    }
    let mut u = 0.0_f64;
    let mut incumbent_above = n2;
    let mut ties = 0.0_f64;
    for (&a, &b) in challenger.counts().iter().zip(incumbent.counts()) {
        let (a, b) = (f64::from(a), f64::from(b));
        incumbent_above -= b;
        u += a * (incumbent_above + 0.5 * b);
        let t = a + b;
        ties += t * t * t - t;
    }
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance.is_nan() || variance <= 0.0 {
        return 0.5;
    }
    let centred = u - n1 * n2 / 2.0;
    // Continuity correction towards the mean.
    let corrected = if centred > 0.5 {
        centred - 0.5
    } else if centred < -0.5 {
        centred + 0.5
    } else {
        0.0
    };
    Normal::standard().cdf(corrected / variance.sqrt())
}

impl<T: Copy + Eq> Ranking<T> {
    /// The reason as a sentence with the numbers, naming each target with `name`, e.g.
    /// "cdn-b p50 21.3 ms (n=412) beats incumbent cdn-a p50 48.0 ms (n=390): confidence
    /// 0.999, margin 55%".
    pub fn explain<N: Display>(&self, name: impl Fn(T) -> N) -> String {
        self.render(&|t| name(t).to_string())
    }

    fn summary_of(&self, t: T) -> Option<&Summary> {
        self.candidates
            .iter()
            .find(|c| c.target == t)
            .map(|c| &c.summary)
    }

    fn render(&self, name: &dyn Fn(T) -> String) -> String {
        let who = |t: T| -> String {
            let mut s = name(t);
            if let Some(sum) = self.summary_of(t) {
                match sum.p50_ms {
                    Some(p) => {
                        let _ = write!(s, " p50 {p:.1} ms (n={})", sum.samples);
                    }
                    None => {
                        let _ = write!(s, " (n={})", sum.samples);
                    }
                }
            }
            s
        };
        let rule = &self.rule;
        let mut out = String::new();
        if let Some(t) = self.unusable_incumbent {
            let _ = write!(out, "incumbent {} ", name(t));
            match self.candidates.iter().find(|c| c.target == t) {
                Some(c) if c.standing == Standing::Failing => {
                    let _ = write!(
                        out,
                        "is failing ({:.1}% of {} fetches > {:.1}%); ",
                        c.summary.failure_rate * 100.0,
                        c.summary.attempts,
                        rule.max_failure_rate * 100.0
                    );
                }
                Some(c) => {
                    let _ = write!(
                        out,
                        "has too few samples (n={} < {}); ",
                        c.summary.samples, rule.min_samples
                    );
                }
                None => out.push_str("is not measured here; "),
            }
        }
        match self.reason {
            Reason::NoCandidates => {
                let _ = write!(
                    out,
                    "no target has {} samples without failing",
                    rule.min_samples
                );
            }
            Reason::Alone { best } => {
                let _ = write!(out, "{} is the only target with enough samples", who(best));
            }
            Reason::IncumbentFastest { incumbent } => {
                let _ = write!(out, "incumbent {} is still the fastest", who(incumbent));
                if let Some(&next) = self.order.get(1) {
                    let _ = write!(out, "; next {}", who(next));
                }
            }
            Reason::Switched { from, to, cmp } => {
                let _ = write!(
                    out,
                    "{} beats incumbent {}: confidence {:.3}, margin {:.0}% ({:.1} ms)",
                    who(to),
                    who(from),
                    cmp.confidence,
                    cmp.ratio * 100.0,
                    cmp.diff_ms
                );
            }
            Reason::Kept {
                incumbent,
                challenger,
                cmp,
            } => {
                let _ = write!(
                    out,
                    "incumbent {} kept over {}: ",
                    who(incumbent),
                    who(challenger)
                );
                let mut gaps = Vec::new();
                if !cmp.by_margin {
                    gaps.push(format!(
                        "margin {:.0}% ({:.1} ms) below {:.0}% and {:.1} ms",
                        cmp.ratio * 100.0,
                        cmp.diff_ms,
                        rule.margin_ratio * 100.0,
                        rule.margin_ms
                    ));
                }
                if !cmp.confident {
                    gaps.push(format!(
                        "confidence {:.3} below {:.3}",
                        cmp.confidence, rule.confidence
                    ));
                }
                out.push_str(&gaps.join(", "));
            }
            Reason::Won {
                best,
                runner_up,
                cmp,
            } => {
                let _ = write!(
                    out,
                    "{} beats runner-up {}: confidence {:.3}, margin {:.0}% (no incumbent)",
                    who(best),
                    who(runner_up),
                    cmp.confidence,
                    cmp.ratio * 100.0
                );
            }
            Reason::Inconclusive {
                leader,
                runner_up,
                cmp,
            } => {
                let _ = write!(
                    out,
                    "not conclusive: {} vs runner-up {}: confidence {:.3} below {:.3}",
                    who(leader),
                    who(runner_up),
                    cmp.confidence,
                    rule.confidence
                );
            }
        }
        for &t in &self.failing {
            if Some(t) == self.unusable_incumbent {
                continue;
            }
            if let Some(s) = self.summary_of(t) {
                let _ = write!(
                    out,
                    "; {} failing ({:.1}% of {} fetches > {:.1}%)",
                    name(t),
                    s.failure_rate * 100.0,
                    s.attempts,
                    rule.max_failure_rate * 100.0
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
