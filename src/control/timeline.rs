//! Feeding the event ring ([`crate::events`]): each entry point that changes what is served
//! records what it did and why, and every publication records which regions moved to another
//! target because of it (a failover, a RUM switch, a hold-down ending, an edit).
//!
//! The moves come from comparing the outgoing and incoming snapshots with the same per-region
//! shares an edit's preview uses ([`crate::preview::compare`]), for the steered names whose
//! compiled table was replaced (the others are the same `Arc`). Only a change of a region's
//! main target is an event; a weighted ramp's step or a share moving by a point is not. Runs
//! on the control plane, after the new snapshot is live: queries never wait for it.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use super::Controller;
use crate::events::Kind;
use crate::snapshot::Snapshot;

/// Regions named in one steering event before the rest are only counted.
const NAMED: usize = 8;

impl Controller {
    /// The event ring this controller feeds.
    pub fn events(&self) -> &Arc<crate::events::Events> {
        &self.events
    }

    /// Record an event and make it the cause the next publication's moves are attributed to.
    pub(super) fn note(&self, kind: Kind, subject: &str, message: &str, reason: &str) {
        self.events.record(kind, subject, message, reason);
        let cause = if reason.is_empty() {
            format!("{subject}: {message}")
        } else {
            format!("{subject}: {message} ({reason})")
        };
        self.set_cause(cause);
    }

    /// What the next publication's moves are attributed to, without an event of its own
    /// (new measurements, a timed change).
    pub(super) fn set_cause(&self, cause: String) {
        *self.cause.lock().unwrap_or_else(PoisonError::into_inner) = cause;
    }

    /// Record the moves between two published snapshots, attributed to the current cause.
    pub(super) fn record_moves(&self, before: &Snapshot, after: &Snapshot) {
        let moves = moves(before, after);
        if moves.is_empty() {
            return;
        }
        let cause = self
            .cause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (name, message) in moves {
            self.events.record(Kind::Steering, &name, &message, &cause);
        }
    }
}

/// Per steered name whose table changed: `cdn-c → cdn-a for AT, BE, SE (3 regions)`, one
/// line per (from, to). Empty when the GeoIP data changed too (a reload: regions are not
/// comparable, and the reload is its own event).
pub(super) fn moves(before: &Snapshot, after: &Snapshot) -> Vec<(String, String)> {
    if !Arc::ptr_eq(&before.geo, &after.geo) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut names: Vec<_> = after.steered.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, new) in names {
        let Some(old) = before.steered.get(name) else {
            continue;
        };
        if Arc::ptr_eq(old, new) {
            continue;
        }
        let preview = crate::preview::compare(Some(old), new, &after.geo);
        let mut grouped: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for change in preview.changes {
            let (from, to) = (main(&change.before), main(&change.after));
            if from != to {
                let region = change
                    .region
                    .strip_prefix("country ")
                    .unwrap_or(&change.region)
                    .to_owned();
                grouped.entry((from, to)).or_default().push(region);
            }
        }
        for ((from, to), regions) in grouped {
            let n = regions.len();
            let mut named = regions[..n.min(NAMED)].join(", ");
            if n > NAMED {
                named.push_str(&format!(" and {} more", n - NAMED));
            }
            let plural = if n == 1 { "region" } else { "regions" };
            out.push((
                // As policy events name it: the policy key, without the root's dot.
                name.to_string().trim_end_matches('.').to_owned(),
                format!("{from} → {to} for {named} ({n} {plural})"),
            ));
        }
    }
    out
}

/// The target with the largest share (`none` when the region is not served).
fn main(shares: &BTreeMap<String, f64>) -> String {
    shares
        .iter()
        .fold(None::<(&String, f64)>, |best, (t, s)| match best {
            Some((_, b)) if b >= *s - 1e-9 => best,
            _ => Some((t, *s)),
        })
        .map_or_else(|| "none".to_owned(), |(t, _)| t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ConfigOrigin;
    use crate::events::Event;
    use crate::health::State;

    fn demo() -> Controller {
        Controller::start(crate::demo::config(), ConfigOrigin::Demo).expect("the demo")
    }

    fn of_kind(events: &[Event], kind: Kind) -> Vec<&Event> {
        events.iter().filter(|e| e.kind == kind).collect()
    }

    #[test]
    fn an_override_records_the_flip_and_the_regions_that_moved_because_of_it() {
        let controller = demo();
        controller
            .set_health("cdn-c", Some(State::Down))
            .expect("override");
        let events = controller.events().since(0, 100);
        let health = of_kind(&events, Kind::Health);
        assert_eq!(health.len(), 1, "{events:?}");
        assert_eq!(health[0].subject, "cdn-c");
        assert_eq!(health[0].message, "operator override: down");
        let www: Vec<_> = of_kind(&events, Kind::Steering)
            .into_iter()
            .filter(|e| e.subject == "www.example.com")
            .collect();
        assert_eq!(www.len(), 1, "{events:?}");
        assert!(
            www[0].message.starts_with("cdn-c → cdn-a for "),
            "{}",
            www[0].message
        );
        assert!(www[0].message.contains("AT, BE"), "{}", www[0].message);
        assert!(
            www[0].reason.contains("cdn-c: operator override: down"),
            "attributed to the flip: {}",
            www[0].reason
        );
        // The steering events come after the flip that caused them.
        assert!(www[0].seq > health[0].seq);

        // Clearing it moves them back, and says so.
        let last = controller.events().last_seq();
        controller.set_health("cdn-c", None).expect("clear");
        let events = controller.events().since(last, 100);
        assert_eq!(
            of_kind(&events, Kind::Health)[0].message,
            "override cleared"
        );
        assert!(
            of_kind(&events, Kind::Steering)
                .iter()
                .any(|e| e.subject == "www.example.com" && e.message.starts_with("cdn-a → cdn-c")),
            "{events:?}"
        );
    }

    #[test]
    fn measured_transitions_are_recorded_with_their_reason() {
        let controller = demo();
        controller.apply_measured(&[crate::health::tracker::Transition {
            target: "pop-fra".into(),
            from: State::Up,
            to: State::Down,
            reason: "2 consecutive failures".into(),
        }]);
        let events = controller.events().since(0, 100);
        let health = of_kind(&events, Kind::Health);
        assert_eq!(health.len(), 1);
        assert_eq!(
            (health[0].message.as_str(), health[0].reason.as_str()),
            ("up → down", "2 consecutive failures")
        );
        let pop = of_kind(&events, Kind::Steering)
            .into_iter()
            .find(|e| e.subject == "pop.example.com")
            .expect("pop.example.com moved");
        assert!(
            pop.message.starts_with("pop-fra → pop-iad"),
            "{}",
            pop.message
        );
    }

    #[test]
    fn nothing_moves_when_nothing_changed() {
        let controller = demo();
        let snapshot = controller.published().load_full();
        assert!(moves(&snapshot, &snapshot).is_empty());
        // A target no policy names: a health event, no steering event.
        controller
            .set_health("nobody-uses-this", Some(State::Down))
            .expect("override");
        let events = controller.events().since(0, 100);
        assert!(of_kind(&events, Kind::Steering).is_empty(), "{events:?}");
    }
}
