//! Tests of the windows: minute boundaries, failure accounting, pruning and memory caps.

use super::*;

fn small(max_keys: usize, max_minutes: u64) -> Windows<&'static str> {
    Windows::new(Limits {
        max_keys,
        max_minutes,
    })
}

#[test]
fn a_sample_counts_in_the_windows_ending_at_its_minute_and_the_next_minutes_minus_one() {
    // (sample minute, window minutes)
    for &(m, w) in &[(100u64, 5u64), (100, 1), (7, 10), (0, 3), (1_000_000, 60)] {
        let mut win = small(10, 61);
        win.record("a", m, Some(20.0));
        for now in m.saturating_sub(3)..m + w + 3 {
            let got = win.merged(&"a", now, w).map(|b| b.attempts);
            let want = (m..m + w).contains(&now).then_some(1);
            assert_eq!(got, want, "sample at {m}, window {w}, now {now}");
        }
        assert_eq!(
            win.merged(&"a", m, 0),
            None,
            "a zero-minute window is empty"
        );
    }
}

#[test]
fn merged_adds_minutes_and_keeps_keys_apart() {
    let mut win = small(10, 10);
    for minute in 10..15 {
        for _ in 0..minute {
            win.record("a", minute, Some(30.0));
        }
        win.record("a", minute, None);
        win.record("b", minute, Some(90.0));
    }
    let a = win.merged(&"a", 14, 3).expect("data");
    assert_eq!(a.samples(), 12 + 13 + 14);
    assert_eq!(a.failures, 3);
    assert_eq!(a.attempts, 12 + 13 + 14 + 3);
    let b = win.merged(&"b", 14, 3).expect("data");
    assert_eq!((b.samples(), b.failures), (3, 0));
    assert_eq!(win.merged(&"c", 14, 3), None);
    let mut keys: Vec<_> = win.keys().copied().collect();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn bucket_accounting_and_summary() {
    let mut b = Bucket::default();
    assert_eq!(b.failure_rate(), 0.0);
    for ms in [10.0, 20.0, 30.0] {
        b.record(Some(ms));
    }
    b.record(None);
    b.record(Some(f64::NAN)); // not a result
    assert_eq!((b.attempts, b.failures, b.samples()), (4, 1, 3));
    assert_eq!(b.failure_rate(), 0.25);
    let s = b.summary();
    assert_eq!((s.samples, s.failures, s.attempts), (3, 1, 4));
    let p50 = s.p50_ms.expect("samples");
    assert!((17.0..24.0).contains(&p50), "p50 {p50}");
    assert!(s.p50_ms <= s.p75_ms && s.p75_ms <= s.p95_ms);
    let json = serde_json::to_value(s).expect("serialises");
    for field in [
        "samples",
        "failures",
        "attempts",
        "p50_ms",
        "p75_ms",
        "p95_ms",
        "failure_rate",
    ] {
        assert!(json.get(field).is_some(), "{field} in {json}");
    }
    assert!(Bucket::default().summary().p50_ms.is_none());

    let mut merged = b.clone();
    merged.merge(&b);
    assert_eq!((merged.attempts, merged.failures), (8, 2));
    assert_eq!(merged.samples(), 6);
}

#[test]
fn out_of_order_minutes_land_in_their_own_bucket() {
    let mut win = small(10, 10);
    for m in [20, 18, 19, 18, 15, 20] {
        win.record("a", m, Some(10.0));
    }
    let minutes: Vec<(u64, u64)> = win.minutes(&"a").map(|(m, b)| (m, b.attempts)).collect();
    assert_eq!(minutes, [(15, 1), (18, 2), (19, 1), (20, 2)]);
    assert_eq!(win.merged(&"a", 19, 2).map(|b| b.attempts), Some(3));
}

#[test]
fn each_key_holds_at_most_max_minutes() {
    let mut win = small(10, 6);
    for m in 0..100 {
        win.record("a", m, Some(10.0));
        assert!(win.bucket_count() <= 6, "minute {m}");
    }
    let held: Vec<u64> = win.minutes(&"a").map(|(m, _)| m).collect();
    assert_eq!(held, [94, 95, 96, 97, 98, 99]);
    // Older than the ring: dropped and counted.
    win.record("a", 93, Some(10.0));
    win.record("a", 10, None);
    assert_eq!(win.late_samples(), 2);
    assert_eq!(win.merged(&"a", 99, 60).map(|b| b.attempts), Some(6));
    // Still inside the ring: kept.
    win.record("a", 94, Some(10.0));
    assert_eq!(win.late_samples(), 2);
}

#[test]
fn prune_drops_old_minutes_and_empty_keys() {
    let mut win = small(100, 60);
    for m in 0..30 {
        win.record("steady", m, Some(10.0));
    }
    win.record("gone", 3, Some(10.0));
    win.record("ahead", 40, Some(10.0));
    win.prune(29, 5);
    let held: Vec<u64> = win.minutes(&"steady").map(|(m, _)| m).collect();
    assert_eq!(held, [25, 26, 27, 28, 29]);
    assert!(win.minutes(&"gone").next().is_none());
    assert_eq!(win.len(), 2, "'gone' removed, 'ahead' (clock skew) kept");
    assert_eq!(win.merged(&"steady", 29, 5).map(|b| b.attempts), Some(5));
    // Pruning everything.
    win.prune(1000, 5);
    assert!(win.is_empty());
    assert_eq!(win.bucket_count(), 0);
}

#[test]
fn the_key_cap_evicts_the_least_recently_updated_keys() {
    let mut win: Windows<u32> = Windows::new(Limits {
        max_keys: 1000,
        max_minutes: 6,
    });
    // 500 old keys at minute 1; key 7 is updated again at minute 2, then new keys arrive.
    for k in 0..500 {
        win.record(k, 1, Some(10.0));
    }
    win.record(7, 2, Some(10.0));
    for k in 500..1000 {
        win.record(k, 2, Some(10.0));
    }
    assert_eq!(
        (win.len(), win.evicted_keys()),
        (1000, 0),
        "at the cap, nothing evicted"
    );
    // One more key: a batch of 1000 / 16 = 62 goes, the oldest updates first.
    win.record(1000, 2, Some(10.0));
    assert_eq!(win.evicted_keys(), 62);
    assert_eq!(win.len(), 1000 - 62 + 1);
    let held = |win: &Windows<u32>, k: u32| win.merged(&k, 2, 5).is_some();
    assert!(!held(&win, 0) && !held(&win, 62), "oldest evicted");
    assert!(held(&win, 7), "recently updated key kept");
    assert!(held(&win, 63) && held(&win, 499) && held(&win, 500));
    // A flood of new keys never exceeds the cap; a key kept busy survives it.
    for k in 1001..6000 {
        win.record(k, 2, Some(10.0));
        if k % 100 == 0 {
            win.record(7, 2, Some(10.0));
        }
        assert!(win.len() <= 1000, "key {k}: {} keys", win.len());
    }
    assert!(held(&win, 7), "busy key evicted");
    assert!(held(&win, 5999), "the newest key is held");
    assert!((0..500).filter(|&k| k != 7).all(|k| !held(&win, k)));
    assert!(win.bucket_count() <= 1000 * 6);
    let bound = win.limits().bound_bytes();
    assert!(bound > 0 && bound < 10_000_000, "{bound}");
}

#[test]
fn add_merges_a_foreign_bucket() {
    let mut other = Bucket::default();
    other.record(Some(12.0));
    other.record(None);
    let mut win = small(10, 6);
    win.record("a", 5, Some(40.0));
    win.add("a", 5, &other);
    win.add("a", 6, &other);
    let b = win.merged(&"a", 6, 2).expect("data");
    assert_eq!((b.attempts, b.failures, b.samples()), (5, 2, 3));
    win.add("a", 0, &other);
    assert_eq!(
        win.late_samples(),
        2,
        "too old: its attempts are counted as late"
    );
}

#[test]
fn zero_caps_are_raised_to_one() {
    let mut win = small(0, 0);
    win.record("a", 1, Some(1.0));
    win.record("b", 2, Some(1.0));
    assert_eq!(win.len(), 1);
    assert_eq!(win.bucket_count(), 1);
    assert!(win.merged(&"b", 2, 1).is_some());
}
