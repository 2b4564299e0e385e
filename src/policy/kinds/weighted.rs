//! `weighted`: split clients between candidates by weight (70/30, or a new-PoP ramp
//! 5 → 25 → 50 → 100). The pick is made per client network with rendezvous hashing, so a
//! network keeps its answer, shares across many networks match the weights, and changing a
//! weight moves only the networks it must.

use super::super::eval::Trace;
use super::super::{Policy, TargetId};

#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub weights: Vec<(TargetId, u32)>,
}

impl Weighted {
    /// Shares (summing to 1) for the candidates that have a weight; equal shares if none has.
    pub fn shares(
        &self,
        policy: &Policy,
        candidates: &[TargetId],
        trace: &mut Trace,
    ) -> Vec<(TargetId, f64)> {
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
        trace.note(|| {
            let parts: Vec<String> = shares
                .iter()
                .map(|(t, s)| format!("{} {:.1}%", policy.target(*t).id, s * 100.0))
                .collect();
            format!("weighted: {}", parts.join(", "))
        });
        shares
    }
}
