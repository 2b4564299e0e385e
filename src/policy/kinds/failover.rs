//! `failover`: an ordered list; the first target that is not down wins (later ones follow it
//! in multi-value answers).

use super::super::TargetId;
use crate::health::HealthView;
use crate::policy::Policy;

#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// Empty: the order the candidates arrive in.
    pub order: Vec<TargetId>,
}

impl Failover {
    pub fn rank(
        &self,
        policy: &Policy,
        candidates: &[TargetId],
        health: &HealthView,
    ) -> Vec<TargetId> {
        let order: Vec<TargetId> = if self.order.is_empty() {
            candidates.to_vec()
        } else {
            self.order
                .iter()
                .copied()
                .filter(|t| candidates.contains(t))
                .collect()
        };
        order
            .into_iter()
            .filter(|t| !health.is_down(&policy.target(*t).id))
            .collect()
    }
}
