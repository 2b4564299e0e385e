//! Target `probe_results`: a batch of probe results (the JSON array agents post to
//! `POST /api/v1/probe-results`) and what the health tracker makes of it.
//!
//! Agents are remote and their clocks and numbers untrusted: every result is ingested by a
//! fresh tracker at a fixed "now" (results far in the future or past are ignored there), then
//! every location and target is evaluated, now and ten minutes later, and the latency view
//! the performance step reads is built. Invariants: nothing panics; states and latencies
//! come out finite; a transition always changes the state.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use steerdns::health::tracker::Tracker;
use steerdns::monitor::WireResult;

/// The tracker's clock: the seed corpus's results are from the minutes before it.
pub const NOW_UNIX_MS: u64 = 1_700_000_000_000;

pub fn check(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Ok(results) = serde_json::from_slice::<Vec<WireResult>>(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_millis(NOW_UNIX_MS);
    let regions = HashMap::from([(
        "fra".to_owned(),
        vec![steerdns::perf::Region::Country(*b"DE")],
    )]);
    let mut tracker = Tracker::new(steerdns::demo::config().health, regions);
    for result in &results {
        tracker.ingest(&result.observation(), now);
    }
    for at in [now, now + Duration::from_secs(600)] {
        for transition in tracker.evaluate(at) {
            assert_ne!(transition.from, transition.to, "{transition:?}");
        }
    }
    let _ = tracker.details();
    let _ = tracker.perf();
}
