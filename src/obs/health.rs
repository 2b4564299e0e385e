//! Health as `/metrics` shows it beyond `steerdns_target_health`: how often each target's
//! served verdict flipped (`steerdns_health_transitions_total{target,to}`), and what each
//! probe location says of each target (`steerdns_probe_health{target,location}`).
//!
//! Transitions are counted where health reaches DNS: when a snapshot is published whose
//! health view differs from the one it replaces ([`HealthMetrics::note_published`]), so
//! measured flips and operator overrides count alike, once each. Location verdicts are copied
//! from the tracker after each evaluation ([`HealthMetrics::sync_locations`]).
//!
//! Targets and locations come from probe reports and overrides, so both label sets are
//! capped ([`MAX_TARGETS`], [`MAX_LOCATIONS`]): the first ones seen are kept, and what is
//! beyond a cap is logged once and counted in `steerdns_probe_health_unlisted`. Nothing here
//! is on the query path. Depends on `health`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::warn;

use crate::health::{HealthView, State};

/// Distinct targets given series of their own (transitions and location verdicts each).
pub const MAX_TARGETS: usize = 512;
/// Distinct probe locations given series of their own.
pub const MAX_LOCATIONS: usize = 32;

const STATES: [State; 3] = [State::Up, State::Down, State::Unknown];

fn slot(state: State) -> usize {
    match state {
        State::Up => 0,
        State::Down => 1,
        State::Unknown => 2,
    }
}

/// The gauge value of a location's verdict: 1 up, 0 down, -1 unknown (stale or no data).
fn value(state: State) -> i8 {
    match state {
        State::Up => 1,
        State::Down => 0,
        State::Unknown => -1,
    }
}

#[derive(Debug, Default)]
pub struct HealthMetrics {
    /// target → transitions into each of [`STATES`].
    transitions: Mutex<BTreeMap<String, [u64; 3]>>,
    locations: Mutex<Locations>,
    /// (target, location) pairs the tracker holds that the caps leave out, at the last sync.
    unlisted: AtomicU64,
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct Locations {
    /// Location names kept, in the order first seen (at most [`MAX_LOCATIONS`]).
    names: Vec<String>,
    /// target → location index → verdict.
    verdicts: BTreeMap<String, BTreeMap<usize, State>>,
}

impl HealthMetrics {
    /// Count the targets whose state differs between the view that served and the one about
    /// to. A target absent from a view is unknown.
    pub fn note_published(&self, old: &HealthView, new: &HealthView) {
        if old == new {
            return;
        }
        let mut counts = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        let mut over_cap = false;
        let mut count = |target: &str, to: State| {
            if let Some(c) = counts.get_mut(target) {
                c[slot(to)] += 1;
            } else if counts.len() < MAX_TARGETS {
                let mut c = [0; 3];
                c[slot(to)] = 1;
                counts.insert(target.to_owned(), c);
            } else {
                over_cap = true;
            }
        };
        for (target, h) in new.iter() {
            if old.state(target) != h.state {
                count(target, h.state);
            }
        }
        for (target, h) in old.iter() {
            if new.get(target).is_none() && h.state != State::Unknown {
                count(target, State::Unknown);
            }
        }
        drop(counts);
        if over_cap {
            self.warn_cap("health transitions");
        }
    }

    /// Copy the tracker's per-location verdicts: (target, location, state) for every probed
    /// location. Allocates only for a target or location not seen before.
    pub fn sync_locations<'a>(&self, verdicts: impl Iterator<Item = (&'a str, &'a str, State)>) {
        let mut kept = self.locations.lock().unwrap_or_else(|p| p.into_inner());
        let Locations {
            names,
            verdicts: by_target,
        } = &mut *kept;
        let mut unlisted = 0;
        for (target, location, state) in verdicts {
            let index = match names.iter().position(|n| n == location) {
                Some(i) => i,
                None if names.len() < MAX_LOCATIONS => {
                    names.push(location.to_owned());
                    names.len() - 1
                }
                None => {
                    unlisted += 1;
                    continue;
                }
            };
            if !by_target.contains_key(target) {
                if by_target.len() >= MAX_TARGETS {
                    unlisted += 1;
                    continue;
                }
                by_target.insert(target.to_owned(), BTreeMap::new());
            }
            let Some(per_location) = by_target.get_mut(target) else {
                continue;
            };
            per_location.insert(index, state);
        }
        drop(kept);
        self.unlisted.store(unlisted, Ordering::Relaxed);
        if unlisted > 0 {
            self.warn_cap("probe locations");
        }
    }

    fn warn_cap(&self, what: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                max_targets = MAX_TARGETS,
                max_locations = MAX_LOCATIONS,
                "more targets or probe locations than /metrics shows; {what} beyond the first ones seen are left out (steerdns_probe_health_unlisted counts the location verdicts)"
            );
        }
    }

    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP steerdns_health_transitions_total Changes of a target's served health (measured verdicts with operator overrides on top), by the state it went to.\n\
             # TYPE steerdns_health_transitions_total counter\n",
        );
        let counts = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        for (target, c) in counts.iter() {
            let target = label(target);
            for state in STATES {
                let _ = writeln!(
                    out,
                    "steerdns_health_transitions_total{{target=\"{target}\",to=\"{state}\"}} {}",
                    c[slot(state)]
                );
            }
        }
        drop(counts);
        out.push_str(
            "# HELP steerdns_probe_health What each probe location says of each target: 1 up, 0 down, -1 unknown (no recent report).\n\
             # TYPE steerdns_probe_health gauge\n",
        );
        let kept = self.locations.lock().unwrap_or_else(|p| p.into_inner());
        for (target, per_location) in &kept.verdicts {
            let target = label(target);
            for (index, state) in per_location {
                let Some(location) = kept.names.get(*index) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "steerdns_probe_health{{target=\"{target}\",location=\"{}\"}} {}",
                    label(location),
                    value(*state)
                );
            }
        }
        drop(kept);
        let _ = writeln!(
            out,
            "# HELP steerdns_probe_health_unlisted Location verdicts left out of steerdns_probe_health: beyond {MAX_LOCATIONS} locations or {MAX_TARGETS} targets.\n\
             # TYPE steerdns_probe_health_unlisted gauge\n\
             steerdns_probe_health_unlisted {}",
            self.unlisted.load(Ordering::Relaxed)
        );
    }
}

/// A label value as `steerdns_target_health` writes it: quote, backslash, newline replaced.
fn label(value: &str) -> String {
    value.replace(['\\', '"', '\n'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn view(states: &[(&str, State)]) -> HealthView {
        let mut v = HealthView::default();
        for (t, s) in states {
            v.set(t, *s, false, SystemTime::now());
        }
        v
    }

    #[test]
    fn transitions_count_changed_targets_once() {
        let m = HealthMetrics::default();
        let a = view(&[("cdn-a", State::Up), ("cdn-b", State::Up)]);
        m.note_published(&HealthView::default(), &a);
        m.note_published(&a, &a);
        let b = view(&[("cdn-a", State::Down), ("cdn-b", State::Up)]);
        m.note_published(&a, &b);
        m.note_published(&b, &view(&[("cdn-b", State::Up)]));
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "steerdns_health_transitions_total{target=\"cdn-a\",to=\"up\"} 1\n",
            "steerdns_health_transitions_total{target=\"cdn-a\",to=\"down\"} 1\n",
            "steerdns_health_transitions_total{target=\"cdn-a\",to=\"unknown\"} 1\n",
            "steerdns_health_transitions_total{target=\"cdn-b\",to=\"up\"} 1\n",
            "steerdns_health_transitions_total{target=\"cdn-b\",to=\"down\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }

    #[test]
    fn locations_are_capped_and_the_rest_counted() {
        let m = HealthMetrics::default();
        let names: Vec<String> = (0..MAX_LOCATIONS + 3).map(|i| format!("loc{i}")).collect();
        let verdicts: Vec<(&str, &str, State)> = names
            .iter()
            .map(|n| ("cdn-a", n.as_str(), State::Down))
            .chain([("cdn-a", "loc0", State::Up)])
            .collect();
        m.sync_locations(verdicts.iter().copied());
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("steerdns_probe_health{target=\"cdn-a\",location=\"loc0\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("location=\"loc1\"} 0\n"), "{out}");
        assert!(!out.contains(&format!("loc{MAX_LOCATIONS}\"")), "{out}");
        assert!(out.contains("steerdns_probe_health_unlisted 3\n"), "{out}");
        assert_eq!(
            out.matches("steerdns_probe_health{").count(),
            MAX_LOCATIONS,
            "{out}"
        );
    }
}
