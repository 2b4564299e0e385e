//! What changed and why, for people: a bounded in-memory ring of recent control-plane events
//! (policy edits and reloads, health flips and overrides, steering changes), newest last.
//!
//! Fed by the control plane where a change is installed (`control`), read by the dashboard
//! (`GET /api/v1/dashboard`). Never touched by a query: recording takes a mutex that only
//! control-plane writers and API readers share. Bounded in count ([`CAPACITY`] by default) and
//! in the size of each field, since subjects can come from API input (a health override's
//! target). Not durable: a restart starts an empty timeline (the logs keep the history).
//! Pure, depends on nothing else in the crate.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Events kept by default: enough for an afternoon of flapping; under 1 MB even with every
/// field at [`MAX_FIELD`].
pub const CAPACITY: usize = 500;
/// Longest subject, message or reason kept, in bytes (longer ones are cut on a character
/// boundary and end in `…`).
pub const MAX_FIELD: usize = 512;

/// What kind of change an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A policy created, replaced, rolled back or deleted (API or policy files).
    Policy,
    /// A target's health changed: measured by probes, or an operator override.
    Health,
    /// Clients of a region moved from one target to another (a failover, a RUM switch, a
    /// hold-down ending, an edit).
    Steering,
    /// The whole configuration was reloaded.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increases by one per event, from 1: a reader asks for what came after the last it saw.
    pub seq: u64,
    pub at_unix_ms: u64,
    pub kind: Kind,
    /// The policy name or target id the event is about.
    pub subject: String,
    /// What happened.
    pub message: String,
    /// Why (the probe verdict, "operator override", the change that caused a move).
    pub reason: String,
}

/// The ring. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Events {
    capacity: usize,
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    last_seq: u64,
    events: VecDeque<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl Events {
    /// A ring keeping the last `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        Events {
            capacity: capacity.max(1),
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Record an event now; returns its sequence number.
    pub fn record(&self, kind: Kind, subject: &str, message: &str, reason: &str) -> u64 {
        self.record_at(SystemTime::now(), kind, subject, message, reason)
    }

    /// [`Events::record`] at a given time (tests, and events that carry their own time).
    pub fn record_at(
        &self,
        at: SystemTime,
        kind: Kind,
        subject: &str,
        message: &str,
        reason: &str,
    ) -> u64 {
        let at_unix_ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut ring = self.lock();
        ring.last_seq += 1;
        let event = Event {
            seq: ring.last_seq,
            at_unix_ms,
            kind,
            subject: bounded(subject),
            message: bounded(message),
            reason: bounded(reason),
        };
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event);
        ring.last_seq
    }

    /// The events after `seq` still kept, oldest first, at most `limit` of them (the newest).
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Event> {
        let ring = self.lock();
        let newer = ring.events.iter().filter(|e| e.seq > seq).count();
        ring.events
            .iter()
            .filter(|e| e.seq > seq)
            .skip(newer.saturating_sub(limit))
            .cloned()
            .collect()
    }

    /// The sequence number of the newest event (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic mid-push leaves a consistent ring (each push is one whole event).
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_FIELD {
        return text.to_owned();
    }
    let mut end = MAX_FIELD - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keeps_the_newest_events_up_to_its_capacity() {
        let events = Events::new(3);
        assert!(events.is_empty());
        for i in 1..=5 {
            let seq = events.record(Kind::Health, &format!("t{i}"), "down", "probe");
            assert_eq!(seq, i);
        }
        assert_eq!(events.len(), 3);
        assert_eq!(events.last_seq(), 5);
        let kept: Vec<String> = events.since(0, 10).into_iter().map(|e| e.subject).collect();
        assert_eq!(kept, ["t3", "t4", "t5"], "oldest dropped first, order kept");
    }

    #[test]
    fn since_returns_only_newer_events_and_the_newest_when_limited() {
        let events = Events::new(10);
        for i in 0..6 {
            events.record(Kind::Policy, &format!("p{i}"), "replaced", "api");
        }
        let after: Vec<u64> = events.since(4, 10).iter().map(|e| e.seq).collect();
        assert_eq!(after, [5, 6]);
        let limited: Vec<u64> = events.since(0, 2).iter().map(|e| e.seq).collect();
        assert_eq!(limited, [5, 6], "the newest two, oldest first");
        assert!(events.since(6, 10).is_empty());
        // A reader far behind (its events dropped) gets what is kept.
        let small = Events::new(2);
        for _ in 0..5 {
            small.record(Kind::Reload, "config", "reloaded", "SIGHUP");
        }
        let seqs: Vec<u64> = small.since(1, 10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4, 5]);
    }

    #[test]
    fn fields_are_bounded_on_a_character_boundary() {
        let events = Events::new(1);
        let long = "é".repeat(MAX_FIELD);
        events.record(Kind::Health, &long, "m", "r");
        let e = &events.since(0, 1)[0];
        assert!(e.subject.len() <= MAX_FIELD, "{}", e.subject.len());
        assert!(e.subject.ends_with('…'));
        assert!(e.subject.starts_with("éé"));
        assert_eq!(e.message, "m");
    }

    #[test]
    fn records_the_time_given_and_serialises_the_kind_in_snake_case() {
        let events = Events::new(4);
        let at = UNIX_EPOCH + Duration::from_millis(1_796_180_645_123);
        events.record_at(
            at,
            Kind::Steering,
            "www.example.com.",
            "EU: cdn-c → cdn-a",
            "x",
        );
        let e = &events.since(0, 4)[0];
        assert_eq!(e.at_unix_ms, 1_796_180_645_123);
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["kind"], "steering");
        assert_eq!(json["seq"], 1);
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_last_event() {
        let events = Events::new(0);
        events.record(Kind::Health, "a", "up", "");
        events.record(Kind::Health, "b", "up", "");
        assert_eq!(events.since(0, 10).len(), 1);
    }
}
