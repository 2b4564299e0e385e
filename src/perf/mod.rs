//! Measured performance of targets per region, as the decision compiler sees it: the one
//! measurement view that every producer feeds and `compile` reads.
//!
//! A [`PerfView`] holds two sources side by side, so neither overwrites the other:
//! - **probes**: per (target, region), a window's latency mean/variance and availability,
//!   replaced by the monitor ([`PerfView::set_probes`]);
//! - **RUM** ([`RumView`]): per (target, region), the merged per-minute buckets of what real
//!   browsers measured, replaced by the RUM collector ([`PerfView::set_rum`]), plus the state
//!   the RUM ranking carries from one compile to the next (incumbents, regional hold-downs).
//!
//! A region is a country, a continent, or the whole world, so the performance step can fall
//! back from fine to coarse when a region has too few samples; RUM adds one finer level, a
//! country's ASN. Pure; depends on `geo` (continents) and `rum` (buckets).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::rum::window::Bucket;

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Where a measurement window applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    /// One ASN's users in one country (real-user measurements know both).
    Network {
        country: [u8; 2],
        asn: u32,
    },
    Country([u8; 2]),
    Continent(crate::geo::Continent),
    World,
}

impl Region {
    /// Whether real users' failures here can take a target out (a network or a country):
    /// "out in that region only" would mean nothing at the continent or world level.
    pub fn judges_availability(&self) -> bool {
        matches!(self, Region::Network { .. } | Region::Country(_))
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Region::Network { country, asn } => {
                write!(f, "network {}/AS{asn}", String::from_utf8_lossy(country))
            }
            Region::Country(c) => write!(f, "country {}", String::from_utf8_lossy(c)),
            Region::Continent(c) => write!(f, "continent {c}"),
            Region::World => f.write_str("world"),
        }
    }
}

/// A window of latency samples (milliseconds) and the share of successful fetches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub samples: u64,
    pub mean_ms: f64,
    /// Sample variance (n − 1 denominator).
    pub variance: f64,
    /// Successful / attempted, 0..=1.
    pub availability: f64,
}

impl Stats {
    /// Build from raw samples (tests, simple feeders).
    pub fn from_samples(samples_ms: &[f64], availability: f64) -> Self {
        let n = samples_ms.len();
        let mean = samples_ms.iter().sum::<f64>() / n.max(1) as f64;
        let variance = if n > 1 {
            samples_ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stats {
            samples: n as u64,
            mean_ms: mean,
            variance,
            availability,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerfView {
    windows: HashMap<(String, Region), Stats>,
    rum: RumView,
}

impl PerfView {
    /// Probe latency window for (target, region).
    pub fn insert(&mut self, target: &str, region: Region, stats: Stats) {
        self.windows.insert((target.to_owned(), region), stats);
    }

    pub fn get(&self, target: &str, region: &Region) -> Option<&Stats> {
        self.windows.get(&(target.to_owned(), region.clone()))
    }

    /// Every probe window: ((target, region), stats).
    pub fn probes(&self) -> impl Iterator<Item = (&(String, Region), &Stats)> {
        self.windows.iter()
    }

    /// Replace the probe windows with `probes`'s, keeping the RUM part.
    pub fn set_probes(&mut self, probes: &PerfView) {
        self.windows.clone_from(&probes.windows);
    }

    /// Whether the probe part equals `probes`'s (the monitor refreshes on a timer).
    pub fn same_probes(&self, probes: &PerfView) -> bool {
        self.windows == probes.windows
    }

    pub fn rum(&self) -> &RumView {
        &self.rum
    }

    pub fn rum_mut(&mut self) -> &mut RumView {
        &mut self.rum
    }

    /// Replace the RUM part, keeping the probe windows.
    pub fn set_rum(&mut self, rum: RumView) {
        self.rum = rum;
    }
}

/// What real users measured, and what the RUM ranking remembers between compiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RumView {
    /// Merged window per (target, region): counts, failures, latency histogram.
    pub buckets: HashMap<(String, Region), Bucket>,
    /// (policy, region) → the target that region's ranking chose at the policy's previous
    /// compile: the incumbent a challenger must beat by confidence and margin (hysteresis).
    /// Per policy, these are the incumbents its serving table was compiled against.
    pub incumbents: HashMap<(String, Region), String>,
    /// Targets out in one network or country because users there fail to fetch from them:
    /// `None` while failing, `Some(t)` once recovered, held out until `t` (the same hold-down
    /// as probe health), so one good minute does not bring a flaky target back. Continents
    /// and the world are never here: they sum every network's fetches, so one failing network
    /// would take the target out for everyone.
    pub held_out: HashMap<(String, Region), Option<SystemTime>>,
    /// Failure rate above which a target is out in a region.
    pub max_failure_rate: f64,
    /// Fetches a region needs before its failure rate counts (set by [`RumView::settle`]).
    pub min_attempts: u64,
}

impl RumView {
    pub fn bucket(&self, target: &str, region: &Region) -> Option<&Bucket> {
        self.buckets.get(&(target.to_owned(), region.clone()))
    }

    /// Whether users in `region` cannot use `target` at `now`.
    pub fn is_held_out(&self, target: &str, region: &Region, now: SystemTime) -> bool {
        match self.held_out.get(&(target.to_owned(), region.clone())) {
            Some(None) => true,
            Some(Some(until)) => now < *until,
            None => false,
        }
    }

    /// Where `target` is out for a client in `regions` (finest first), if it is: the client's
    /// network, else its country. The finer of the two with a verdict decides: a network
    /// whose own users fetch the target fine (at least `min_attempts` times, not failing)
    /// keeps it even when its country, summed over every network there, is failing; a
    /// network without enough data of its own follows its country.
    pub fn out_in<'r>(
        &self,
        target: &str,
        regions: &'r [Region],
        now: SystemTime,
    ) -> Option<&'r Region> {
        for region in regions.iter().filter(|r| r.judges_availability()) {
            if self.is_held_out(target, region, now) {
                return Some(region);
            }
            if self
                .bucket(target, region)
                .is_some_and(|b| b.attempts >= self.min_attempts)
            {
                return None;
            }
        }
        None
    }

    /// When a regional hold-down of `target` in `region` ends, if one is running at `now`.
    pub fn held_until(&self, target: &str, region: &Region, now: SystemTime) -> Option<SystemTime> {
        match self.held_out.get(&(target.to_owned(), region.clone())) {
            Some(Some(until)) if now < *until => Some(*until),
            _ => None,
        }
    }

    /// The ASNs that have measurements of any of `targets`: the decision table compiles a
    /// row for each, so a network's own users decide its answer.
    pub fn asns_for<'a>(&self, targets: impl Iterator<Item = &'a str>) -> BTreeSet<u32> {
        let targets: BTreeSet<&str> = targets.collect();
        self.buckets
            .keys()
            .filter_map(|(t, r)| match r {
                Region::Network { asn, .. } if targets.contains(t.as_str()) => Some(*asn),
                _ => None,
            })
            .collect()
    }

    /// Carry the regional hold-downs forward to a new window: a target failing in a network
    /// or country (at least `min_attempts` fetches, failure rate over the maximum) is out
    /// there; one that stops failing stays out until `hold_down` after it recovered.
    pub fn settle(
        &mut self,
        prev: &RumView,
        min_attempts: u64,
        hold_down: std::time::Duration,
        now: SystemTime,
    ) {
        let failing =
            |b: &Bucket| b.attempts >= min_attempts && b.failure_rate() > self.max_failure_rate;
        let mut held = HashMap::new();
        self.min_attempts = min_attempts;
        let keys: BTreeSet<&(String, Region)> = self
            .buckets
            .keys()
            .filter(|(_, r)| r.judges_availability())
            .chain(prev.held_out.keys())
            .collect();
        for key in keys {
            // No data any more (it aged out of the window) is no evidence of failing.
            let now_failing = self.buckets.get(key).is_some_and(failing);
            let state = match (now_failing, prev.held_out.get(key)) {
                (true, _) => Some(None),
                (false, Some(None)) => Some(Some(now + hold_down)),
                (false, Some(Some(until))) if now < *until => Some(Some(*until)),
                _ => None,
            };
            if let Some(state) = state {
                held.insert(key.clone(), state);
            }
        }
        self.held_out = held;
        self.incumbents.clone_from(&prev.incumbents);
    }
}

/// Where a compile writes the RUM ranking's choices, to become the next compile's incumbents.
/// Only the control plane compiles with one; explanations re-run the chain without.
#[derive(Debug, Default)]
pub struct Choices(Mutex<HashMap<(String, Region), String>>);

impl Choices {
    pub fn record(&self, policy: &str, region: &Region, target: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((policy.to_owned(), region.clone()), target.to_owned());
    }

    pub fn into_inner(self) -> HashMap<(String, Region), String> {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// One-sided Welch's t-test: the confidence that `a`'s true mean is lower than `b`'s.
pub fn confidence_lower(a: &Stats, b: &Stats) -> f64 {
    if a.samples < 2 || b.samples < 2 {
        return 0.0;
    }
    let (na, nb) = (a.samples as f64, b.samples as f64);
    let (va, vb) = (a.variance / na, b.variance / nb);
    let se = (va + vb).sqrt();
    if se == 0.0 {
        return if a.mean_ms < b.mean_ms { 1.0 } else { 0.0 };
    }
    let t = (b.mean_ms - a.mean_ms) / se;
    // Welch–Satterthwaite degrees of freedom.
    let df = (va + vb).powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    match StudentsT::new(0.0, 1.0, df.max(1.0)) {
        Ok(dist) => dist.cdf(t),
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_confidence() {
        let fast = Stats::from_samples(&[20.0, 22.0, 19.0, 21.0, 20.0, 23.0, 18.0, 21.0], 1.0);
        let slow = Stats::from_samples(&[40.0, 38.0, 45.0, 41.0, 39.0, 42.0, 44.0, 40.0], 1.0);
        assert!(confidence_lower(&fast, &slow) > 0.999);
        assert!(confidence_lower(&slow, &fast) < 0.001);
        let same = Stats::from_samples(&[20.0, 30.0, 25.0, 22.0, 28.0], 1.0);
        let c = confidence_lower(&same, &same);
        assert!((c - 0.5).abs() < 1e-9, "{c}");
        // Two close, noisy windows: no confidence either way.
        let a = Stats::from_samples(&[20.0, 35.0, 15.0, 40.0, 25.0], 1.0);
        let b = Stats::from_samples(&[22.0, 38.0, 18.0, 41.0, 27.0], 1.0);
        let c = confidence_lower(&a, &b);
        assert!(c > 0.5 && c < 0.9, "{c}");
    }
}
