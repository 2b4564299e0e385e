//! Measured performance of targets per region, as the decision compiler sees it.
//!
//! A [`PerfView`] holds, per (target, region), a window's latency statistics and availability.
//! Synthetic probes and the RUM beacon will fill it; the compiler only reads it. A region is a
//! country, a continent, or the whole world, so the performance step can fall back from fine
//! to coarse when a region has too few samples; RUM adds one finer level, a country's ASN. Pure.

use std::collections::HashMap;

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
}

impl PerfView {
    pub fn insert(&mut self, target: &str, region: Region, stats: Stats) {
        self.windows.insert((target.to_owned(), region), stats);
    }

    pub fn get(&self, target: &str, region: &Region) -> Option<&Stats> {
        self.windows.get(&(target.to_owned(), region.clone()))
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
