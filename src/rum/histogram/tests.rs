//! Tests of the histogram: bucket edges, quantiles of known distributions, merging, clipping.

use super::*;
use crate::rum::testing::{Rng, empirical};
use statrs::distribution::{ContinuousCDF, Normal};

/// One bucket's width as a ratio: the resolution every quantile must meet.
const STEP: f64 = 1.189_207_115_002_721; // 2^(1/4)

#[test]
fn layout_is_fixed() {
    assert_eq!(BUCKETS, 64);
    assert_eq!(lower_ms(0), MIN_MS);
    assert_eq!(upper_ms(BUCKETS - 1), MAX_MS);
    assert!((upper_ms(0) / lower_ms(0) - STEP).abs() < 1e-12);
}

#[test]
fn bucket_of_known_values() {
    let cases: &[(f64, usize)] = &[
        (f64::NEG_INFINITY, 0),
        (-5.0, 0),
        (0.0, 0),
        (0.5, 0),
        (1.0, 0),
        (1.18, 0),
        (1.19, 1),
        (2.0, 4),
        (3.0, 6),
        (4.0, 8),
        (1000.0, 39),
        (1024.0, 40),
        (65_535.9, 63),
        (65_536.0, 63),
        (1e12, 63),
        (f64::INFINITY, 63),
    ];
    for &(ms, want) in cases {
        assert_eq!(bucket_of(ms), want, "bucket_of({ms})");
    }
}

#[test]
fn every_edge_belongs_to_its_bucket() {
    for i in 0..BUCKETS {
        assert_eq!(bucket_of(lower_ms(i)), i, "lower edge of {i}");
        assert_eq!(
            bucket_of(upper_ms(i) * (1.0 - 1e-12)),
            i,
            "just below upper edge of {i}"
        );
        if i + 1 < BUCKETS {
            assert_eq!(bucket_of(upper_ms(i)), i + 1, "upper edge of {i}");
        }
    }
}

/// Standard-normal quantile, for theoretical lognormal quantiles.
fn z(q: f64) -> f64 {
    Normal::standard().inverse_cdf(q)
}

#[test]
fn quantiles_of_known_distributions() {
    type Gen = fn(&mut Rng) -> f64;
    type Truth = fn(f64) -> f64;
    // (name, generator, theoretical quantile, highest quantile in the smooth interior). At a
    // hard edge inside a bucket (uniform's 200 ms sits in 181..215 ms) interpolation assumes
    // the bucket is filled to its top, so only the one-bucket bound holds there.
    let cases: &[(&str, Gen, Truth, f64)] = &[
        (
            "lognormal median 40 ms, sigma 0.5",
            |r| r.lognormal(40.0, 0.5),
            |q| 40.0 * (0.5 * z(q)).exp(),
            1.0,
        ),
        (
            "lognormal median 300 ms, sigma 1.0",
            |r| r.lognormal(300.0, 1.0),
            |q| 300.0 * z(q).exp(),
            1.0,
        ),
        (
            "uniform 10..200 ms",
            |r| r.uniform(10.0, 200.0),
            |q| 10.0 + 190.0 * q,
            0.75,
        ),
        (
            "uniform 2..3 ms (inside three buckets)",
            |r| r.uniform(2.0, 3.0),
            |q| 2.0 + q,
            0.75,
        ),
    ];
    for (k, &(name, generate, truth, interior)) in cases.iter().enumerate() {
        let mut rng = Rng::new(0x5eed + k as u64);
        let mut h = Histogram::new();
        let mut samples: Vec<f64> = (0..10_000).map(|_| generate(&mut rng)).collect();
        for &s in &samples {
            assert!(h.record(s));
        }
        samples.sort_by(f64::total_cmp);
        assert_eq!(h.count(), 10_000, "{name}");
        for q in [0.05, 0.25, 0.5, 0.75, 0.95, 0.99] {
            let est = h.quantile(q).expect("non-empty");
            let emp = empirical(&samples, q);
            // Never further than one bucket from the sample quantile...
            assert!(
                est / emp < STEP && emp / est < STEP,
                "{name} q{q}: estimate {est:.3} vs sample {emp:.3}"
            );
            if q > interior {
                continue;
            }
            // ...and, interpolated, within 3 % of it where the density is smooth.
            assert!(
                (est / emp - 1.0).abs() < 0.03,
                "{name} q{q}: estimate {est:.3} vs sample {emp:.3}"
            );
            // The generator matches its distribution (sampling error at n = 10,000).
            let t = truth(q);
            assert!(
                (est / t - 1.0).abs() < 0.05,
                "{name} q{q}: estimate {est:.3} vs theory {t:.3}"
            );
        }
    }
}

#[test]
fn quantile_edges_and_empty() {
    let h = Histogram::new();
    assert!(h.is_empty());
    assert_eq!(h.quantile(0.5), None);

    let mut h = Histogram::new();
    h.record(10.0);
    let i = bucket_of(10.0);
    for q in [-0.1, 1.1, f64::NAN] {
        assert_eq!(h.quantile(q), None, "q = {q}");
    }
    assert_eq!(h.quantile(0.0), Some(lower_ms(i)));
    assert_eq!(h.quantile(1.0), Some(upper_ms(i)));
    let p50 = h.quantile(0.5).expect("one sample");
    assert!(lower_ms(i) < p50 && p50 < upper_ms(i));
    // Monotone in q.
    let mut rng = Rng::new(7);
    let mut h = Histogram::new();
    for _ in 0..1000 {
        h.record(rng.lognormal(50.0, 1.0));
    }
    let qs: Vec<f64> = (0..=100)
        .map(|p| h.quantile(f64::from(p) / 100.0).expect("non-empty"))
        .collect();
    assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?}");
}

#[test]
fn merge_equals_recording_everything_into_one() {
    let mut rng = Rng::new(42);
    let samples: Vec<f64> = (0..10_000).map(|_| rng.lognormal(30.0, 0.8)).collect();
    let mut all = Histogram::new();
    let mut parts = [Histogram::new(), Histogram::new(), Histogram::new()];
    for (k, &s) in samples.iter().enumerate() {
        all.record(s);
        parts[k % 3].record(s);
    }
    let mut forward = Histogram::new();
    for p in &parts {
        forward.merge(p);
    }
    let mut backward = parts[2].clone();
    backward.merge(&parts[1]);
    backward.merge(&parts[0]);
    assert_eq!(forward, all);
    assert_eq!(backward, all);
    assert_eq!(forward.quantile(0.5), all.quantile(0.5));
    // Merging an empty histogram changes nothing.
    forward.merge(&Histogram::new());
    assert_eq!(forward, all);
}

#[test]
fn outliers_are_clipped_into_end_buckets() {
    let mut h = Histogram::new();
    for ms in [-3.0, 0.0, 0.2, 1e7, f64::INFINITY] {
        assert!(h.record(ms));
    }
    assert!(!h.record(f64::NAN), "NaN is not a timing");
    assert_eq!(h.count(), 5);
    assert_eq!(h.counts()[0], 3);
    assert_eq!(h.counts()[BUCKETS - 1], 2);
    assert!(h.quantile(1.0).expect("non-empty") <= MAX_MS);

    // A few absurd timings barely move the median.
    let mut rng = Rng::new(9);
    let mut clean = Histogram::new();
    for _ in 0..1000 {
        clean.record(rng.lognormal(50.0, 0.3));
    }
    let mut dirty = clean.clone();
    for _ in 0..10 {
        dirty.record(1e9);
    }
    let (a, b) = (
        clean.quantile(0.5).expect("non-empty"),
        dirty.quantile(0.5).expect("non-empty"),
    );
    assert!((b / a - 1.0).abs() < 0.02, "median {a} -> {b}");
}

#[test]
fn from_counts_validates_length_and_round_trips() {
    assert_eq!(Histogram::from_counts(&[]), None);
    assert_eq!(Histogram::from_counts(&[1; BUCKETS - 1]), None);
    assert_eq!(Histogram::from_counts(&[1; BUCKETS + 1]), None);
    let mut h = Histogram::new();
    for ms in [1.5, 20.0, 20.5, 300.0, 70_000.0] {
        h.record(ms);
    }
    let back = Histogram::from_counts(h.counts()).expect("right length");
    assert_eq!(back, h);
    assert_eq!(back.count(), 5);
}

#[test]
fn counts_saturate_instead_of_wrapping() {
    let mut counts = [0u32; BUCKETS];
    counts[10] = u32::MAX - 1;
    let mut h = Histogram::from_counts(&counts).expect("right length");
    h.merge(&h.clone());
    assert_eq!(h.counts()[10], u32::MAX);
    h.record(lower_ms(10));
    assert_eq!(h.counts()[10], u32::MAX);
}
