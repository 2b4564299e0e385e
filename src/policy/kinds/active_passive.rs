//! `active_passive`: the primary takes all traffic while it is up; when it goes down the
//! standby takes over, and traffic returns to the primary only after it has been up for
//! `hold_down_s`, so a flapping primary does not flap DNS.

use std::time::{Duration, SystemTime};

use super::super::eval::{Trace, utc};
use super::super::{Policy, TargetId};
use crate::health::{HealthView, State};

#[derive(Debug, Clone, PartialEq)]
pub struct ActivePassive {
    pub primary: TargetId,
    pub standby: TargetId,
    pub hold_down: Duration,
}

impl ActivePassive {
    /// The ranked targets, and when the answer will change by itself (hold-down expiry).
    pub fn rank(
        &self,
        policy: &Policy,
        candidates: &[TargetId],
        health: &HealthView,
        now: SystemTime,
        trace: &mut Trace,
    ) -> (Vec<TargetId>, Option<SystemTime>) {
        let usable = |t: TargetId| candidates.contains(&t) && !health.is_down(&policy.target(t).id);
        let primary = &policy.target(self.primary).id;
        let (primary_up, settled_at) = match health.get(primary) {
            // No report at all: nothing says it is down, nothing to hold down.
            None => (usable(self.primary), None),
            Some(h) if h.state == State::Down => (false, None),
            // Up or unknown: held down only if it recovered from a down recently.
            Some(h) => (
                usable(self.primary),
                h.recovered_at.map(|at| at + self.hold_down),
            ),
        };
        let settled = primary_up && settled_at.is_none_or(|at| at <= now);
        let standby_up = usable(self.standby);
        if settled {
            trace.note(|| format!("active_passive: primary {primary} is up → primary"));
            let mut ranked = vec![self.primary];
            ranked.extend(standby_up.then_some(self.standby));
            (ranked, None)
        } else if standby_up {
            let waiting = primary_up.then_some(settled_at).flatten();
            trace.note(|| match waiting {
                Some(at) => format!(
                    "active_passive: primary {primary} is up; held on standby until {} (hold-down) → standby",
                    utc(at)
                ),
                None => format!("active_passive: primary {primary} is out → standby"),
            });
            (vec![self.standby], waiting)
        } else if primary_up {
            trace.note(|| {
                "active_passive: standby is out; primary still in hold-down → primary".into()
            });
            (vec![self.primary], None)
        } else {
            trace.note(|| "active_passive: primary and standby are out".into());
            (Vec::new(), None)
        }
    }
}
