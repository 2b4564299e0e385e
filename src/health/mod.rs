//! Health of targets, as the decision compiler sees it.
//!
//! A [`HealthView`] maps a target id to its state and since when it has held. Target ids are
//! global: two policies that name `cdn-a` share its health. States come from two sources:
//! probe results, turned into measured states by the [`tracker`] (quorum, hysteresis), and
//! admin overrides (`PUT /api/v1/health/{target}`), which win ([`HealthView::overlay`]). A
//! target nobody reports on is [`State::Unknown`]: never treated as proven healthy, but not
//! dropped either, so a server with no health source still answers. Pure.

pub mod tracker;

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Down,
    Unknown,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Up => "up",
            State::Down => "down",
            State::Unknown => "unknown",
        })
    }
}

/// One target's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    /// When the state last changed.
    pub since: SystemTime,
    /// Set by an operator override rather than measured.
    pub forced: bool,
    /// When the target last stopped being down, while it has not been down since; `None` if
    /// this server has not seen it down (or it is down now). Hold-downs count from here: a
    /// primary that was never down has nothing to hold down, even when its first report
    /// arrives (unknown → up must not move traffic away from it). Set by
    /// [`HealthView::settle`], on the view that compiles read.
    pub recovered_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthView {
    targets: BTreeMap<String, Health>,
    /// Targets that went down during a guarded ramp: their ramps stay at 0% until the policy
    /// is edited.
    halted_ramps: std::collections::BTreeSet<String>,
}

impl HealthView {
    pub fn get(&self, target: &str) -> Option<&Health> {
        self.targets.get(target)
    }

    pub fn state(&self, target: &str) -> State {
        self.get(target).map_or(State::Unknown, |h| h.state)
    }

    pub fn is_down(&self, target: &str) -> bool {
        self.state(target) == State::Down
    }

    /// Record a state. `since` only moves when the state really changes, so repeated reports
    /// do not restart hold-down timers.
    pub fn set(&mut self, target: &str, state: State, forced: bool, now: SystemTime) {
        match self.targets.get_mut(target) {
            Some(h) if h.state == state => h.forced = forced,
            _ => {
                self.targets.insert(
                    target.to_owned(),
                    Health {
                        state,
                        since: now,
                        forced,
                        recovered_at: None,
                    },
                );
            }
        }
    }

    pub fn ramp_halted(&self, target: &str) -> bool {
        self.halted_ramps.contains(target)
    }

    pub fn halt_ramp(&mut self, target: &str) {
        self.halted_ramps.insert(target.to_owned());
    }

    /// Targets whose ramp is halted.
    pub fn halted_ramps(&self) -> impl Iterator<Item = &str> {
        self.halted_ramps.iter().map(String::as_str)
    }

    pub fn resume_ramp(&mut self, target: &str) {
        self.halted_ramps.remove(target);
    }

    /// Forget a target (back to unknown).
    pub fn clear(&mut self, target: &str) {
        self.targets.remove(target);
    }

    /// `self` (measured) with `overrides` on top: an operator's word wins.
    pub fn overlay(&self, overrides: &HealthView) -> HealthView {
        let mut out = self.clone();
        for (target, health) in &overrides.targets {
            out.targets.insert(target.clone(), *health);
        }
        out.halted_ramps
            .extend(overrides.halted_ramps.iter().cloned());
        out
    }

    /// The view compiles read after a change: `self` (measured with overrides on top) with
    /// each target's [`Health::recovered_at`] carried over from `prev`, the view that served
    /// until now. The effective state is what matters: an override of up over a measured
    /// down is a recovery too.
    pub fn settle(mut self, prev: &HealthView, now: SystemTime) -> HealthView {
        for (target, h) in self.targets.iter_mut() {
            h.recovered_at = match prev.get(target) {
                _ if h.state == State::Down => None,
                // It was down: it recovered when this state began, if that is after the down
                // began (the same source moved); otherwise (an override over another source's
                // down) now.
                Some(p) if p.state == State::Down => {
                    Some(if h.since >= p.since { h.since } else { now })
                }
                Some(p) => p.recovered_at,
                None => None,
            };
        }
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Health)> {
        self.targets.iter().map(|(k, v)| (k.as_str(), v))
    }
}
