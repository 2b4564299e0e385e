//! Rolling per-minute windows of RUM results, keyed by anything (target × region, usually).
//!
//! One [`Bucket`] holds one key's results for one wall-clock minute (`unix_secs / 60`, so
//! every fleet node cuts minutes at the same instants and their buckets for the same key and
//! minute merge by addition). A window of `w` minutes ending at minute `now` is the merge of
//! the buckets for minutes `now - w + 1 ..= now`: a result recorded at minute `m` counts in
//! the windows ending at `m ..= m + w - 1` and in no later one.
//!
//! Memory is bounded by [`Limits`]: at most `max_keys` keys, each holding at most
//! `max_minutes` consecutive minutes (older minutes are dropped as newer ones arrive), so the
//! whole structure holds at most `max_keys × max_minutes` buckets of about 280 bytes each,
//! plus the keys; see [`Limits::bound_bytes`]. When a new key arrives at the cap, the keys
//! whose newest minute is oldest are evicted, a sixteenth of the cap at a time (so a flood
//! of new keys costs amortised O(1) per key), and counted in [`Windows::evicted_keys`].
//! [`Windows::prune`] drops minutes that fell out of the window; the control loop calls it.
//!
//! Pure: depends on [`super::histogram`], `serde` (for [`Summary`]) and `std`.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use serde::Serialize;

use super::histogram::Histogram;

/// One key's results for one minute (or, merged, for a window).
///
/// `attempts` counts every fetch tried, `failures` those that failed or timed out, and
/// `timings` the successful ones, so `timings.count() == attempts - failures`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub timings: Histogram,
    pub attempts: u64,
    pub failures: u64,
}

impl Bucket {
    /// Records one fetch: `Some(ms)` succeeded in `ms` milliseconds, `None` failed or timed
    /// out. A NaN timing is not a result and is ignored (ingestion rejects it earlier).
    pub fn record(&mut self, timing_ms: Option<f64>) {
        match timing_ms {
            Some(ms) => {
                if self.timings.record(ms) {
                    self.attempts = self.attempts.saturating_add(1);
                }
            }
            None => {
                self.attempts = self.attempts.saturating_add(1);
                self.failures = self.failures.saturating_add(1);
            }
        }
    }

    /// Adds another bucket's results to this one.
    pub fn merge(&mut self, other: &Bucket) {
        self.timings.merge(&other.timings);
        self.attempts = self.attempts.saturating_add(other.attempts);
        self.failures = self.failures.saturating_add(other.failures);
    }

    /// Failed share of attempts, 0..=1; 0 when nothing was attempted (no evidence of failure;
    /// ranking requires `min_samples` attempts before it looks at this).
    pub fn failure_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.failures as f64 / self.attempts as f64
        }
    }

    /// Number of successful timings.
    pub fn samples(&self) -> u64 {
        self.timings.count()
    }

    /// The numbers behind a ranking, as shown by explain and the measurements API.
    pub fn summary(&self) -> Summary {
        Summary::from(self)
    }
}

/// A bucket's numbers: counts, latency quantiles (ms, `None` without samples), failure rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Successful timings.
    pub samples: u64,
    pub failures: u64,
    pub attempts: u64,
    pub p50_ms: Option<f64>,
    pub p75_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// `failures / attempts`, 0 without attempts.
    pub failure_rate: f64,
}

impl From<&Bucket> for Summary {
    fn from(b: &Bucket) -> Self {
        Summary {
            samples: b.samples(),
            failures: b.failures,
            attempts: b.attempts,
            p50_ms: b.timings.quantile(0.50),
            p75_ms: b.timings.quantile(0.75),
            p95_ms: b.timings.quantile(0.95),
            failure_rate: b.failure_rate(),
        }
    }
}

/// Memory caps for [`Windows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most keys held at once; beyond it the stalest keys are evicted.
    pub max_keys: usize,
    /// Most minutes held per key: results older than the key's newest minute minus this are
    /// dropped. Set it to at least the longest window read (plus one for the minute that is
    /// still filling if reads lag).
    pub max_minutes: u64,
}

impl Limits {
    /// Worst-case bytes held by the buckets (keys and map overhead not included).
    pub fn bound_bytes(&self) -> u64 {
        let per_bucket = std::mem::size_of::<(u64, Bucket)>() as u64;
        (self.max_keys as u64)
            .saturating_mul(self.max_minutes)
            .saturating_mul(per_bucket)
    }
}

impl Default for Limits {
    /// 50,000 keys (for example 3 targets × ~16,000 country/ASN pairs) × 6 minutes (a
    /// 5-minute window and the minute filling): at most about 85 MB, usually far less
    /// because most keys see few minutes.
    fn default() -> Self {
        Limits {
            max_keys: 50_000,
            max_minutes: 6,
        }
    }
}

/// Per-key rings of per-minute buckets.
#[derive(Clone, Debug)]
pub struct Windows<K: Eq + Hash + Clone> {
    series: HashMap<K, Series>,
    limits: Limits,
    evicted_keys: u64,
    late: u64,
}

/// One key's minutes, oldest first, distinct and ascending, at most `max_minutes` apart.
#[derive(Clone, Debug, Default)]
struct Series {
    minutes: VecDeque<(u64, Bucket)>,
}

impl Series {
    fn newest(&self) -> u64 {
        self.minutes.back().map_or(0, |(m, _)| *m)
    }
}

impl<K: Eq + Hash + Clone> Default for Windows<K> {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl<K: Eq + Hash + Clone> Windows<K> {
    /// Empty windows with the given caps (a cap of 0 is raised to 1).
    pub fn new(limits: Limits) -> Self {
        Windows {
            series: HashMap::new(),
            limits: Limits {
                max_keys: limits.max_keys.max(1),
                max_minutes: limits.max_minutes.max(1),
            },
            evicted_keys: 0,
            late: 0,
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Records one fetch result for `key` at wall-clock `minute` (`unix_secs / 60`);
    /// `None` is a failure or timeout. A result older than the key's newest minute minus
    /// `max_minutes` is dropped and counted in [`Windows::late_samples`].
    pub fn record(&mut self, key: K, minute: u64, timing_ms: Option<f64>) {
        if !self.series.contains_key(&key) && self.series.len() >= self.limits.max_keys {
            self.evict_stalest();
        }
        let max_minutes = self.limits.max_minutes;
        let series = self.series.entry(key).or_default();
        let Some(bucket) = bucket_for(series, minute, max_minutes) else {
            self.late = self.late.saturating_add(1);
            return;
        };
        bucket.record(timing_ms);
    }

    /// Merges an already-aggregated bucket (e.g. another node's minute) into `key`'s
    /// `minute`, under the same rules as [`Windows::record`].
    pub fn add(&mut self, key: K, minute: u64, other: &Bucket) {
        if !self.series.contains_key(&key) && self.series.len() >= self.limits.max_keys {
            self.evict_stalest();
        }
        let max_minutes = self.limits.max_minutes;
        let series = self.series.entry(key).or_default();
        match bucket_for(series, minute, max_minutes) {
            Some(bucket) => bucket.merge(other),
            None => self.late = self.late.saturating_add(other.attempts),
        }
    }

    /// The merge of `key`'s buckets for the `minutes` minutes ending at `now_minute`, i.e.
    /// minutes in `(now_minute - minutes, now_minute]`. `None` when the key has no bucket in
    /// that range.
    pub fn merged(&self, key: &K, now_minute: u64, minutes: u64) -> Option<Bucket> {
        let series = self.series.get(key)?;
        let mut out: Option<Bucket> = None;
        let in_window = |m: u64| m <= now_minute && m.saturating_add(minutes) > now_minute;
        for (_, b) in series.minutes.iter().filter(|(m, _)| in_window(*m)) {
            out.get_or_insert_with(Bucket::default).merge(b);
        }
        out
    }

    /// The keys currently held (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.series.keys()
    }

    /// One key's minutes and buckets, oldest first (for a shared store writer).
    pub fn minutes(&self, key: &K) -> impl Iterator<Item = (u64, &Bucket)> {
        self.series
            .get(key)
            .into_iter()
            .flat_map(|s| s.minutes.iter().map(|(m, b)| (*m, b)))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of (key, minute) buckets held.
    pub fn bucket_count(&self) -> usize {
        self.series.values().map(|s| s.minutes.len()).sum()
    }

    /// Keys evicted because the key cap was reached (for metrics).
    pub fn evicted_keys(&self) -> u64 {
        self.evicted_keys
    }

    /// Results dropped because their minute was older than the key's ring (for metrics).
    pub fn late_samples(&self) -> u64 {
        self.late
    }

    /// Drops every bucket whose minute is not among the `keep_minutes` minutes ending at
    /// `now_minute` (minutes ahead of `now_minute`, from a node whose clock runs ahead, are
    /// kept), and keys left with no bucket.
    pub fn prune(&mut self, now_minute: u64, keep_minutes: u64) {
        self.series.retain(|_, s| {
            while s
                .minutes
                .front()
                .is_some_and(|(m, _)| m.saturating_add(keep_minutes) <= now_minute)
            {
                s.minutes.pop_front();
            }
            !s.minutes.is_empty()
        });
    }

    /// Evicts the keys whose newest minute is oldest, `max_keys / 16` (at least one) of them.
    fn evict_stalest(&mut self) {
        let batch = (self.limits.max_keys / 16).max(1).min(self.series.len());
        if batch == 0 {
            return;
        }
        let mut newest: Vec<u64> = self.series.values().map(Series::newest).collect();
        let (_, cutoff, _) = newest.select_nth_unstable(batch - 1);
        let cutoff = *cutoff;
        // Everything strictly older than the cutoff goes; ties at the cutoff go until the
        // batch is full.
        let strictly_older = newest.iter().filter(|&&m| m < cutoff).count();
        let mut ties_to_drop = batch - strictly_older;
        let before = self.series.len();
        self.series.retain(|_, s| {
            let m = s.newest();
            if m < cutoff {
                false
            } else if m == cutoff && ties_to_drop > 0 {
                ties_to_drop -= 1;
                false
            } else {
                true
            }
        });
        self.evicted_keys = self
            .evicted_keys
            .saturating_add((before - self.series.len()) as u64);
    }
}

/// The bucket for `minute` in `series`, created if needed; `None` when `minute` is too old
/// for the ring. Keeps the ring ascending and at most `max_minutes` wide.
fn bucket_for(series: &mut Series, minute: u64, max_minutes: u64) -> Option<&mut Bucket> {
    let newest = series.minutes.back().map(|(m, _)| *m);
    match newest {
        Some(n) if minute.saturating_add(max_minutes) <= n => None,
        Some(n) if minute == n => series.minutes.back_mut().map(|(_, b)| b),
        Some(n) if minute < n => {
            let at = series.minutes.partition_point(|(m, _)| *m < minute);
            if series.minutes.get(at).is_none_or(|(m, _)| *m != minute) {
                series.minutes.insert(at, (minute, Bucket::default()));
            }
            series.minutes.get_mut(at).map(|(_, b)| b)
        }
        _ => {
            series.minutes.push_back((minute, Bucket::default()));
            while series
                .minutes
                .front()
                .is_some_and(|(m, _)| m.saturating_add(max_minutes) <= minute)
            {
                series.minutes.pop_front();
            }
            series.minutes.back_mut().map(|(_, b)| b)
        }
    }
}

#[cfg(test)]
mod tests;
