//! RUM steering in compiled tables, on the bundled test databases: per-ASN rows, the fallback
//! from network to country, hysteresis across compiles, and region-scoped availability.
//! Facts: `149.101.100.0/28` is US/NA in AS6167, `214.78.120.0` is US/NA in AS721,
//! `216.160.83.56` is US/NA with no ASN.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::*;
use crate::health::HealthView;
use crate::perf::{Choices, PerfView, Region, RumView};
use crate::rum::window::Bucket;

const CELLCO: &str = "149.101.100.1";
const DOD: &str = "214.78.120.1";
const MILTON: &str = "216.160.83.57";
const US: [u8; 2] = *b"US";

const POLICY: &str = r#"
name = "rum.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[[chain]]
kind = "performance"
source = "rum"
min_samples = 30
[[chain]]
kind = "weighted"
weights = { a = 1, b = 1 }
"#;

fn geo() -> GeoDb {
    GeoDb::load(&crate::demo::city_db(), Some(&crate::demo::asn_db()), &[]).unwrap()
}

/// `n` successful fetches spread evenly over ±10% around `ms`, and `failed` failures.
fn bucket(n: u64, ms: f64, failed: u64) -> Bucket {
    let mut b = Bucket::default();
    for i in 0..n {
        b.record(Some(ms * (0.9 + 0.2 * i as f64 / n as f64)));
    }
    for _ in 0..failed {
        b.record(None);
    }
    b
}

fn view(entries: &[(&str, Region, Bucket)]) -> RumView {
    RumView {
        buckets: entries
            .iter()
            .map(|(t, r, b)| (((*t).to_owned(), r.clone()), b.clone()))
            .collect(),
        max_failure_rate: 0.05,
        ..RumView::default()
    }
}

fn network(asn: u32) -> Region {
    Region::Network { country: US, asn }
}

struct Compiled {
    table: Table,
    next_change: Option<SystemTime>,
    choices: std::collections::HashMap<(String, Region), String>,
}

fn compile_with(policy: &Policy, geo: &GeoDb, rum: RumView, now: SystemTime) -> Compiled {
    let mut perf = PerfView::default();
    perf.set_rum(rum);
    let choices = Choices::default();
    let health = HealthView::default();
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now,
        choices: Some(&choices),
    };
    let (table, next_change) = compile(policy, geo, &inputs);
    Compiled {
        table,
        next_change,
        choices: choices.into_inner(),
    }
}

fn answer(policy: &Policy, table: &Table, geo: &GeoDb, ip: &str) -> (String, u8) {
    let ip: IpAddr = ip.parse().unwrap();
    let d = table.decide(ip, &geo.locate(ip), geo);
    let t = table.select(&d, Some(ip)).as_slice()[0];
    (policy.target(t).id.clone(), d.scope)
}

#[test]
fn each_asn_gets_what_its_own_users_measured() {
    let geo = geo();
    let policy = policy::parse("rum.toml", POLICY).unwrap();
    let rum = view(&[
        ("a", network(6167), bucket(200, 20.0, 0)),
        ("b", network(6167), bucket(200, 60.0, 0)),
        ("a", network(721), bucket(200, 70.0, 0)),
        ("b", network(721), bucket(200, 25.0, 0)),
    ]);
    let c = compile_with(&policy, &geo, rum, SystemTime::now());
    let (cellco, scope) = answer(&policy, &c.table, &geo, CELLCO);
    assert_eq!(cellco, "a", "AS6167's users find a faster");
    // The answer depends on the ASN: never wider than AS6167's network (/28 in the test DB).
    assert!(scope >= 28, "scope /{scope} is wider than the ASN network");
    assert_eq!(
        answer(&policy, &c.table, &geo, DOD).0,
        "b",
        "AS721's find b"
    );
    assert_eq!(
        c.choices.get(&("rum.example.com.".into(), network(6167))),
        Some(&"a".to_owned()),
        "the choice is recorded as the next incumbent: {:?}",
        c.choices
    );
}

#[test]
fn a_thin_network_falls_back_to_its_country() {
    let geo = geo();
    let policy = policy::parse("rum.toml", POLICY).unwrap();
    let rum = view(&[
        // AS6167: too few samples of b.
        ("a", network(6167), bucket(200, 20.0, 0)),
        ("b", network(6167), bucket(10, 5.0, 0)),
        ("a", Region::Country(US), bucket(400, 50.0, 0)),
        ("b", Region::Country(US), bucket(400, 20.0, 0)),
    ]);
    let c = compile_with(&policy, &geo, rum, SystemTime::now());
    assert_eq!(
        answer(&policy, &c.table, &geo, CELLCO).0,
        "b",
        "decided by US"
    );
}

#[test]
fn hysteresis_keeps_the_incumbent_inside_the_margin_and_switches_outside() {
    let geo = geo();
    let policy = policy::parse("rum.toml", POLICY).unwrap();
    let at = |a_ms: f64, b_ms: f64, incumbents: &std::collections::HashMap<_, _>| {
        let mut rum = view(&[
            ("a", Region::Country(US), bucket(500, a_ms, 0)),
            ("b", Region::Country(US), bucket(500, b_ms, 0)),
        ]);
        rum.incumbents.clone_from(incumbents);
        compile_with(&policy, &geo, rum, SystemTime::now())
    };
    let first = at(20.0, 40.0, &Default::default());
    assert_eq!(answer(&policy, &first.table, &geo, DOD).0, "a");
    // b becomes a little faster (21 vs 20.5 ms: under 10% and under 5 ms): a stays.
    let kept = at(21.0, 20.0, &first.choices);
    assert_eq!(answer(&policy, &kept.table, &geo, DOD).0, "a", "no flap");
    // Without an incumbent the same data would pick b (so the test can tell).
    let fresh = at(21.0, 20.0, &Default::default());
    assert_eq!(answer(&policy, &fresh.table, &geo, DOD).0, "b");
    // b clearly faster: it takes over.
    let switched = at(30.0, 15.0, &kept.choices);
    assert_eq!(answer(&policy, &switched.table, &geo, DOD).0, "b");
    // And a coming back within the margin does not take it back.
    let back = at(19.5, 20.0, &switched.choices);
    assert_eq!(
        answer(&policy, &back.table, &geo, DOD).0,
        "b",
        "no flap back"
    );
}

#[test]
fn a_target_failing_in_one_network_is_out_there_only_with_a_hold_down() {
    let geo = geo();
    let policy = policy::parse("rum.toml", POLICY).unwrap();
    let now = SystemTime::now();
    let hold = Duration::from_secs(30);
    let data = |failed: u64| {
        // a is faster everywhere, but AS6167's users fail to fetch it `failed` times in 200.
        // The coarser levels add up both networks, as the collector does: with 30 failures
        // the US, North America and the world fail a too (30 of 400 > 5%).
        let (a_net, a_all) = (
            bucket(200 - failed, 20.0, failed),
            bucket(400 - failed, 20.0, failed),
        );
        let continent = Region::Continent(crate::geo::Continent::NorthAmerica);
        view(&[
            ("a", network(6167), a_net),
            ("b", network(6167), bucket(200, 40.0, 0)),
            ("a", network(721), bucket(200, 20.0, 0)),
            ("b", network(721), bucket(200, 40.0, 0)),
            ("a", Region::Country(US), a_all.clone()),
            ("b", Region::Country(US), bucket(400, 40.0, 0)),
            ("a", continent.clone(), a_all.clone()),
            ("b", continent, bucket(400, 40.0, 0)),
            ("a", Region::World, a_all),
            ("b", Region::World, bucket(400, 40.0, 0)),
        ])
    };
    let mut failing = data(30);
    failing.settle(&RumView::default(), 20, hold, now);
    let c = compile_with(&policy, &geo, failing.clone(), now);
    assert_eq!(
        answer(&policy, &c.table, &geo, CELLCO).0,
        "b",
        "a is out in AS6167"
    );
    assert_eq!(
        answer(&policy, &c.table, &geo, DOD).0,
        "a",
        "a still serves AS721: its own users fetch it fine"
    );
    assert_eq!(
        answer(&policy, &c.table, &geo, MILTON).0,
        "b",
        "a network without data of its own follows its country"
    );
    assert!(
        failing
            .held_out
            .keys()
            .all(|(_, r)| r.judges_availability()),
        "never out by continent or world: {:?}",
        failing.held_out
    );

    // Recovered: held out for the hold-down, and the table says when it changes.
    let mut recovered = data(0);
    recovered.settle(&failing, 20, hold, now);
    let c = compile_with(&policy, &geo, recovered.clone(), now);
    assert_eq!(answer(&policy, &c.table, &geo, CELLCO).0, "b", "held out");
    assert_eq!(c.next_change, Some(now + hold));
    let c = compile_with(&policy, &geo, recovered, now + hold);
    assert_eq!(
        answer(&policy, &c.table, &geo, CELLCO).0,
        "a",
        "back after the hold-down"
    );
}
