//! `weighted`: split clients between candidates by weight (70/30, or a new-PoP ramp
//! 5 → 25 → 50 → 100). The pick is made per client network with rendezvous hashing, so a
//! network keeps its answer, shares across many networks match the weights, and changing a
//! weight moves only the networks it must.
//!
//! A **guarded ramp** moves one target through traffic shares on a schedule
//! (`percent[i]` during step `i`). If the target goes down during the ramp (the health
//! criteria: failures, availability, p95 latency, error rate), the ramp halts at 0% by itself
//! until an operator edits the policy.

use std::time::{Duration, SystemTime};

use super::super::eval::Trace;
use super::super::{Policy, TargetId};
use crate::health::HealthView;

#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub weights: Vec<(TargetId, u32)>,
    pub ramp: Option<Ramp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    pub target: TargetId,
    /// Traffic share per step, 0..=1, not decreasing.
    pub percent: Vec<f64>,
    pub step: Duration,
    pub start: SystemTime,
}

impl Ramp {
    /// The share now, and when it next changes.
    pub fn share_at(&self, now: SystemTime) -> (f64, Option<SystemTime>) {
        let Ok(elapsed) = now.duration_since(self.start) else {
            return (0.0, Some(self.start));
        };
        let step = (elapsed.as_secs() / self.step.as_secs().max(1)) as usize;
        match self.percent.get(step) {
            Some(p) => (*p, Some(self.start + self.step * (step as u32 + 1))),
            None => (self.percent.last().copied().unwrap_or(0.0), None),
        }
    }

    /// Whether the ramp is under way (the target carries some, but not all, of its share).
    pub fn in_progress(&self, now: SystemTime) -> bool {
        let (share, next) = self.share_at(now);
        share > 0.0 && next.is_some()
    }
}

impl Weighted {
    /// Shares (summing to 1) for the candidates that have a weight; equal shares if none has.
    fn shares(&self, candidates: &[TargetId], trace: &mut Trace) -> Vec<(TargetId, f64)> {
        let weighted: Vec<(TargetId, f64)> = candidates
            .iter()
            .filter_map(|t| {
                self.weights
                    .iter()
                    .find(|(w, _)| w == t)
                    .filter(|(_, w)| *w > 0)
                    .map(|(_, w)| (*t, f64::from(*w)))
            })
            .collect();
        let weighted = if weighted.is_empty() {
            trace.note(|| "weighted: no candidate has a weight; equal shares".into());
            candidates.iter().map(|t| (*t, 1.0)).collect()
        } else {
            weighted
        };
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        let shares: Vec<_> = weighted.into_iter().map(|(t, w)| (t, w / total)).collect();
        shares
    }

    /// Shares with the ramp applied; returns when the ramp's share next changes.
    pub fn shares_now(
        &self,
        policy: &Policy,
        candidates: &[TargetId],
        health: &HealthView,
        now: SystemTime,
        trace: &mut Trace,
    ) -> (Vec<(TargetId, f64)>, Option<SystemTime>) {
        let Some(ramp) = &self.ramp else {
            let shares = self.shares(candidates, trace);
            Self::note(policy, &shares, trace);
            return (shares, None);
        };
        let id = &policy.target(ramp.target).id;
        let (mut share, next) = ramp.share_at(now);
        if health.ramp_halted(id) {
            trace.note(|| format!("weighted: ramp of {id} halted (it went down during the ramp); edit the policy to resume"));
            share = 0.0;
        } else if !candidates.contains(&ramp.target) {
            share = 0.0;
        } else {
            trace.note(|| format!("weighted: ramp of {id} at {:.0}%", share * 100.0));
        }
        let others: Vec<TargetId> = candidates
            .iter()
            .copied()
            .filter(|t| *t != ramp.target)
            .collect();
        let mut shares: Vec<(TargetId, f64)> = if others.is_empty() {
            Vec::new()
        } else {
            self.shares(&others, trace)
                .into_iter()
                .map(|(t, s)| (t, s * (1.0 - share)))
                .collect()
        };
        if share > 0.0 || shares.is_empty() {
            shares.push((ramp.target, if shares.is_empty() { 1.0 } else { share }));
        }
        shares.retain(|(_, s)| *s > 0.0);
        Self::note(policy, &shares, trace);
        (shares, if health.ramp_halted(id) { None } else { next })
    }

    fn note(policy: &Policy, shares: &[(TargetId, f64)], trace: &mut Trace) {
        trace.note(|| {
            let parts: Vec<String> = shares
                .iter()
                .map(|(t, s)| format!("{} {:.1}%", policy.target(*t).id, s * 100.0))
                .collect();
            format!("weighted: {}", parts.join(", "))
        });
    }
}
