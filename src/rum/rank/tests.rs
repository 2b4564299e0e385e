//! Tests of the ranking: switching, hysteresis both ways, confidence, failures, min_samples.

use super::*;
use crate::rum::testing::Rng;

/// A bucket of `n` successful lognormal timings and `failures` failed fetches.
fn bucket(seed: u64, median: f64, sigma: f64, n: usize, failures: usize) -> Bucket {
    let mut rng = Rng::new(seed);
    let mut b = Bucket::default();
    for _ in 0..n {
        b.record(Some(rng.lognormal(median, sigma)));
    }
    for _ in 0..failures {
        b.record(None);
    }
    b
}

const NAMES: [&str; 4] = ["cdn-a", "cdn-b", "cdn-c", "cdn-d"];

fn name(t: usize) -> &'static str {
    NAMES[t]
}

#[test]
fn a_clear_winner_replaces_the_incumbent() {
    let a = bucket(1, 48.0, 0.4, 390, 0);
    let b = bucket(2, 21.0, 0.4, 412, 0);
    let r = rank(&[(0, &a), (1, &b)], Some(0), &Rule::default());
    assert_eq!(r.best, Some(1));
    assert!(!r.kept_incumbent);
    assert_eq!(r.order, [1, 0]);
    assert!(r.failing.is_empty());
    let Reason::Switched { from, to, cmp } = r.reason else {
        panic!("{:?}", r.reason)
    };
    assert_eq!((from, to), (0, 1));
    assert!(cmp.confidence > 0.999 && cmp.by_margin, "{cmp:?}");
    let text = r.explain(name);
    assert!(text.starts_with("cdn-b p50 2"), "{text}");
    assert!(
        text.contains("(n=412) beats incumbent cdn-a p50 4"),
        "{text}"
    );
    assert!(
        text.contains("(n=390): confidence 1.000, margin 5"),
        "{text}"
    );
    assert!(r.why.starts_with("#2 p50 "), "{}", r.why);
}

/// (median, median): two targets within the margin (both the
/// 10 % and the 5 ms one), measured well enough (20,000 samples each) that the difference is significant.
const NEAR_TIES: &[(f64, f64)] = &[(48.0, 46.0), (46.0, 48.0), (30.0, 27.5), (200.0, 196.0)];

#[test]
fn a_near_tie_within_the_margin_keeps_the_incumbent_either_way() {
    for (k, &(first, second)) in NEAR_TIES.iter().enumerate() {
        let seed = 10 * k as u64;
        let x = bucket(seed + 1, first, 0.3, 20_000, 0);
        let y = bucket(seed + 2, second, 0.3, 20_000, 0);
        let candidates = [(0usize, &x), (1usize, &y)];
        for incumbent in [0, 1] {
            let r = rank(&candidates, Some(incumbent), &Rule::default());
            assert_eq!(
                r.best,
                Some(incumbent),
                "{first} vs {second}, incumbent {incumbent}: {}",
                r.explain(name)
            );
            assert!(r.kept_incumbent);
            assert_eq!(r.order[0], incumbent, "the answer holder is listed first");
        }
        // The faster one does lead on a cold start when the data are this good, so the
        // hysteresis (not a lack of evidence) is what held.
        let cold = rank(&candidates, None, &Rule::default());
        let faster = usize::from(second < first);
        assert_eq!(cold.best, Some(faster), "{}", cold.explain(name));
    }
}

#[test]
fn kept_reason_names_the_missing_margin() {
    let a = bucket(1, 48.0, 0.3, 5000, 0);
    let b = bucket(2, 46.0, 0.3, 5000, 0);
    let r = rank(&[(0, &a), (1, &b)], Some(0), &Rule::default());
    let Reason::Kept { cmp, .. } = r.reason else {
        panic!("{:?}", r.reason)
    };
    assert!(cmp.confident && !cmp.by_margin, "{cmp:?}");
    let text = r.explain(name);
    assert!(
        text.starts_with("incumbent cdn-a p50 4") && text.contains("kept over cdn-b p50 4"),
        "{text}"
    );
    assert!(text.contains("below 10% and 5.0 ms"), "{text}");
}

#[test]
fn either_margin_suffices_and_each_can_be_switched_off() {
    // (incumbent median, challenger median, rule, switches)
    let ms_only = Rule {
        margin_ratio: f64::INFINITY,
        ..Rule::default()
    };
    let ratio_only = Rule {
        margin_ms: f64::INFINITY,
        ..Rule::default()
    };
    let cases: &[(f64, f64, Rule, bool)] = &[
        // 10 ms but 2 %: the ms margin carries it.
        (500.0, 490.0, Rule::default(), true),
        (500.0, 490.0, ratio_only, false),
        (500.0, 490.0, ms_only, true),
        // 14 % but 2.8 ms: the ratio carries it.
        (20.0, 17.2, Rule::default(), true),
        (20.0, 17.2, ratio_only, true),
        (20.0, 17.2, ms_only, false),
    ];
    for (k, &(inc, chal, rule, switches)) in cases.iter().enumerate() {
        let seed = 100 + 10 * k as u64;
        let a = bucket(seed, inc, 0.3, 20_000, 0);
        let b = bucket(seed + 1, chal, 0.3, 20_000, 0);
        let r = rank(&[(0, &a), (1, &b)], Some(0), &rule);
        assert_eq!(
            r.best == Some(1),
            switches,
            "case {k}: {inc} -> {chal}: {}",
            r.explain(name)
        );
    }
}

#[test]
fn high_variance_and_few_samples_are_not_conclusive() {
    // Medians 50 vs 40 ms (20 %, 10 ms: over both margins) but σ = 1.5 and 40 samples each.
    let a = bucket(7, 50.0, 1.5, 40, 0);
    let b = bucket(8, 40.0, 1.5, 40, 0);
    let cold = rank(&[(0, &a), (1, &b)], None, &Rule::default());
    assert_eq!(cold.best, None, "{}", cold.explain(name));
    assert!(!cold.kept_incumbent);
    assert!(matches!(cold.reason, Reason::Inconclusive { .. }));
    assert_eq!(cold.order.len(), 2, "both still ranked, by p50");
    assert!(cold.explain(name).starts_with("not conclusive: "));

    for incumbent in [0, 1] {
        let r = rank(&[(0, &a), (1, &b)], Some(incumbent), &Rule::default());
        assert_eq!(r.best, Some(incumbent), "{}", r.explain(name));
        assert!(r.kept_incumbent);
    }

    // The same shift with plenty of samples is conclusive.
    let a = bucket(7, 50.0, 1.5, 4000, 0);
    let b = bucket(8, 40.0, 1.5, 4000, 0);
    let r = rank(&[(0, &a), (1, &b)], Some(0), &Rule::default());
    assert_eq!(r.best, Some(1), "{}", r.explain(name));
}

#[test]
fn a_failing_target_never_ranks_first() {
    let a = bucket(1, 60.0, 0.3, 400, 4); // 1 % failures
    let b = bucket(2, 20.0, 0.3, 400, 60); // 13 % failures, much faster
    let c = bucket(3, 80.0, 0.3, 400, 0);
    for incumbent in [None, Some(0), Some(1), Some(2)] {
        let r = rank(&[(0, &a), (1, &b), (2, &c)], incumbent, &Rule::default());
        assert_eq!(r.failing, [1], "incumbent {incumbent:?}");
        assert!(!r.order.contains(&1), "{:?}", r.order);
        assert_ne!(r.best, Some(1));
        assert_eq!(r.candidates[1].standing, Standing::Failing);
        let text = r.explain(name);
        assert!(text.contains("cdn-b"), "{text}");
        assert!(text.contains("13.0% of 460 fetches > 5.0%"), "{text}");
    }
    // As the incumbent, it is dropped and the rest ranked from scratch.
    let r = rank(&[(0, &a), (1, &b), (2, &c)], Some(1), &Rule::default());
    assert_eq!(r.best, Some(0));
    assert!(!r.kept_incumbent);
    assert_eq!(r.unusable_incumbent, Some(1));
    assert!(
        r.explain(name).starts_with("incumbent cdn-b is failing"),
        "{}",
        r.explain(name)
    );
    // Exactly at the threshold is not failing; the threshold is "above".
    let edge = bucket(4, 20.0, 0.3, 95, 5);
    let r = rank(&[(0, &edge)], None, &Rule::default());
    assert!(r.failing.is_empty());
    assert_eq!(r.best, Some(0));
}

#[test]
fn all_failing_means_no_best() {
    let a = bucket(1, 20.0, 0.3, 100, 50);
    let b = bucket(2, 30.0, 0.3, 0, 40); // nothing but failures
    let r = rank(&[(0, &a), (1, &b)], Some(0), &Rule::default());
    assert_eq!(r.best, None);
    assert!(r.order.is_empty());
    assert_eq!(r.failing, [0, 1], "least failing first");
    assert_eq!(r.reason, Reason::NoCandidates);
}

#[test]
fn min_samples_is_respected() {
    let rule = Rule::default(); // 30
    let slow = bucket(1, 80.0, 0.3, 500, 0);
    for (n, ranked) in [(29usize, false), (30, true)] {
        let fast = bucket(2, 10.0, 0.1, n, 0);
        let r = rank(&[(0, &slow), (1, &fast)], None, &rule);
        assert_eq!(r.order.contains(&1), ranked, "n = {n}: {:?}", r.order);
        let want = if ranked {
            Standing::Ranked
        } else {
            Standing::TooFewSamples
        };
        assert_eq!(r.candidates[1].standing, want);
        assert_eq!(r.best, Some(if ranked { 1 } else { 0 }), "n = {n}");
    }
    // Failure rate is judged only with min_samples attempts: 2 of 4 failing is no verdict.
    let thin = bucket(3, 10.0, 0.1, 2, 2);
    let r = rank(&[(0, &slow), (1, &thin)], None, &rule);
    assert!(r.failing.is_empty());
    assert_eq!(r.candidates[1].standing, Standing::TooFewSamples);
    // An incumbent without enough samples cannot hold on.
    let r = rank(&[(0, &slow), (1, &thin)], Some(1), &rule);
    assert_eq!(r.best, Some(0));
    assert!(!r.kept_incumbent);
    assert!(
        r.explain(name)
            .starts_with("incumbent cdn-b has too few samples (n=2 < 30)"),
        "{}",
        r.explain(name)
    );
}

#[test]
fn alone_empty_and_unknown_incumbent() {
    let a = bucket(1, 30.0, 0.3, 100, 0);
    let r = rank(&[(0, &a)], None, &Rule::default());
    assert_eq!((r.best, r.kept_incumbent), (Some(0), false));
    assert!(matches!(r.reason, Reason::Alone { best: 0 }));
    let r = rank(&[(0, &a)], Some(0), &Rule::default());
    assert_eq!((r.best, r.kept_incumbent), (Some(0), true));

    let r = rank::<usize>(&[], Some(3), &Rule::default());
    assert_eq!(r.best, None);
    assert_eq!(r.reason, Reason::NoCandidates);
    assert_eq!(r.unusable_incumbent, Some(3));

    let r = rank(&[(0, &a)], Some(3), &Rule::default());
    assert_eq!(r.best, Some(0));
    assert!(
        r.explain(name)
            .starts_with("incumbent cdn-d is not measured here; ")
    );
}

#[test]
fn the_incumbent_that_is_fastest_stays() {
    let a = bucket(1, 20.0, 0.3, 400, 0);
    let b = bucket(2, 40.0, 0.3, 400, 0);
    let c = bucket(3, 30.0, 0.3, 400, 0);
    let r = rank(&[(0, &a), (1, &b), (2, &c)], Some(0), &Rule::default());
    assert_eq!((r.best, r.kept_incumbent), (Some(0), true));
    assert_eq!(r.order, [0, 2, 1]);
    assert!(r.explain(name).starts_with("incumbent cdn-a p50 2"));
    assert!(
        r.explain(name)
            .contains("is still the fastest; next cdn-c p50 3")
    );
}

#[test]
fn a_conclusive_challenger_behind_an_inconclusive_one_still_wins() {
    let inc = bucket(1, 60.0, 0.3, 2000, 0);
    // The lowest p50 (16 of 30 at 20 ms) but 14 at 200 ms: not confidently faster.
    let mut lucky = Bucket::default();
    for k in 0..30 {
        lucky.record(Some(if k < 16 { 20.0 } else { 200.0 }));
    }
    let solid = bucket(3, 40.0, 0.3, 2000, 0);
    let r = rank(
        &[(0, &inc), (1, &lucky), (2, &solid)],
        Some(0),
        &Rule::default(),
    );
    assert_eq!(r.best, Some(2), "{}", r.explain(name));
    assert!(!r.kept_incumbent);
    assert_eq!(r.order, [2, 1, 0], "best first, then by p50");
    let lucky_vs_inc = comparison(&lucky, &inc, &Rule::default());
    assert!(
        !lucky_vs_inc.confident && lucky_vs_inc.by_margin,
        "{lucky_vs_inc:?}"
    );
}

#[test]
fn mann_whitney_known_values() {
    let h = |pairs: &[(usize, u32)]| {
        let mut c = [0u32; crate::rum::histogram::BUCKETS];
        for &(i, n) in pairs {
            c[i] = n;
        }
        Histogram::from_counts(&c).expect("right length")
    };
    // Two below two: U = 4, mean 2, ties 2·(8 − 2) = 12, N = 4,
    // var = 4/12 · (5 − 12/12) = 4/3, z = (2 − 0.5)/√(4/3) = 1.299 → Φ = 0.9030.
    let c = confidence_faster(&h(&[(0, 2)]), &h(&[(1, 2)]));
    assert!((c - 0.9030).abs() < 1e-3, "{c}");
    // Reversed: symmetric.
    let r = confidence_faster(&h(&[(1, 2)]), &h(&[(0, 2)]));
    assert!((r - (1.0 - 0.9030)).abs() < 1e-3, "{r}");
    // Everything in one bucket, empty sides: no evidence.
    assert_eq!(confidence_faster(&h(&[(5, 50)]), &h(&[(5, 70)])), 0.5);
    assert_eq!(confidence_faster(&h(&[]), &h(&[(5, 70)])), 0.5);
    assert_eq!(confidence_faster(&h(&[(5, 70)]), &h(&[])), 0.5);
    // Identical distributions: 0.5 exactly (U is at its mean).
    let same = h(&[(3, 10), (4, 20), (9, 5)]);
    assert_eq!(confidence_faster(&same, &same), 0.5);
    // Mixed ties: challenger {b3:3, b4:1}, incumbent {b3:1, b4:3}.
    // U = 3·(3 + 0.5) + 1·(0.5·3) = 12; mean 8; ties 2·(64 − 4) = 120; N = 8;
    // var = 16/12 · (9 − 120/56) = 9.1429; z = 3.5/3.0237 = 1.1575 → Φ = 0.8765.
    let c = confidence_faster(&h(&[(3, 3), (4, 1)]), &h(&[(3, 1), (4, 3)]));
    assert!((c - 0.8765).abs() < 1e-3, "{c}");
}

#[test]
fn rule_validation() {
    assert_eq!(Rule::default().validate(), Ok(()));
    let d = Rule::default();
    let cases: &[(Rule, RuleError)] = &[
        (
            Rule {
                min_samples: 0,
                ..d
            },
            RuleError::MinSamples,
        ),
        (
            Rule {
                confidence: 0.5,
                ..d
            },
            RuleError::Confidence(0.5),
        ),
        (
            Rule {
                confidence: 1.0,
                ..d
            },
            RuleError::Confidence(1.0),
        ),
        (
            Rule {
                margin_ratio: -0.1,
                ..d
            },
            RuleError::MarginRatio(-0.1),
        ),
        (
            Rule {
                margin_ms: -1.0,
                ..d
            },
            RuleError::MarginMs(-1.0),
        ),
        (
            Rule {
                max_failure_rate: 1.5,
                ..d
            },
            RuleError::MaxFailureRate(1.5),
        ),
    ];
    for (rule, want) in cases {
        assert_eq!(rule.validate().as_ref(), Err(want), "{rule:?}");
    }
    assert!(
        Rule {
            confidence: f64::NAN,
            ..d
        }
        .validate()
        .is_err()
    );
}

/// Minute by minute through [`Windows`], feeding each round's best back as the incumbent:
/// two targets whose medians wander around each other within the margin never swap, and a
/// real change (the other target halving its latency) switches exactly once and stays.
#[test]
fn no_flapping_over_time_and_one_switch_on_a_real_change() {
    use crate::rum::window::{Limits, Windows};
    let mut rng = Rng::new(2024);
    let mut win: Windows<usize> = Windows::new(Limits {
        max_keys: 10,
        max_minutes: 6,
    });
    let rule = Rule::default();
    let mut incumbent: Option<usize> = None;
    let mut switches = Vec::new();
    let mut faster_from_40 = None;
    for minute in 0..60u64 {
        // Until minute 40 the two alternate being 2 ms faster; then the target not holding
        // the answer drops to 24 ms.
        let (a, b) = if minute < 40 {
            if minute % 2 == 0 {
                (46.0, 48.0)
            } else {
                (48.0, 46.0)
            }
        } else {
            let fast = *faster_from_40.get_or_insert(1 - incumbent.expect("picked by 40"));
            if fast == 0 {
                (24.0, 48.0)
            } else {
                (48.0, 24.0)
            }
        };
        for _ in 0..400 {
            win.record(0, minute, Some(rng.lognormal(a, 0.4)));
            win.record(1, minute, Some(rng.lognormal(b, 0.4)));
        }
        win.prune(minute, 6);
        let (Some(wa), Some(wb)) = (win.merged(&0, minute, 5), win.merged(&1, minute, 5)) else {
            panic!("minute {minute}: no data");
        };
        let r = rank(&[(0, &wa), (1, &wb)], incumbent, &rule);
        if r.best.is_some() && r.best != incumbent {
            switches.push((minute, r.best, r.explain(name)));
            incumbent = r.best;
        }
    }
    let before: Vec<_> = switches.iter().filter(|s| s.0 < 40).collect();
    let after: Vec<_> = switches.iter().filter(|s| s.0 >= 40).collect();
    assert_eq!(
        before.len(),
        1,
        "one first pick, then no flapping: {switches:#?}"
    );
    assert_eq!(after.len(), 1, "one switch on the change: {switches:#?}");
    assert!(after[0].0 < 45, "switched within the window: {switches:#?}");
    assert_eq!(after[0].1, faster_from_40, "{switches:#?}");
}
