//! Per-country decisions on the demo (MaxMind's test databases, `policies/`).

use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};

use super::*;
use crate::control::{ConfigOrigin, Controller};
use crate::health::State;
use crate::snapshot::Snapshot;

fn demo() -> Controller {
    Controller::start(crate::demo::config(), ConfigOrigin::Demo).expect("the demo")
}

fn steered(snapshot: &Snapshot, name: &str) -> Arc<Steered> {
    let name = LowerName::new(&Name::from_ascii(name).expect("a name"));
    snapshot.steered.get(&name).expect("a steered name").clone()
}

fn country<'a>(all: &'a [CountryDecision], code: &str) -> &'a CountryDecision {
    all.iter()
        .find(|c| c.country == code)
        .unwrap_or_else(|| panic!("no {code} in {all:?}"))
}

const MAP: [([u8; 2], Option<Continent>); 3] = [
    (*b"PT", Some(Continent::Europe)),
    (*b"BR", Some(Continent::SouthAmerica)),
    (*b"GB", Some(Continent::Europe)),
];

#[test]
fn countries_in_the_data_get_what_the_table_serves_and_others_what_the_policy_says() {
    let controller = demo();
    let snapshot = controller.published().load_full();
    let www = steered(&snapshot, "www.example.com.");
    let all = countries(&snapshot, &www, &MAP);

    // In the test City database: GB has its own rule, SE is in Europe, US in North America.
    let gb = country(&all, "GB");
    assert!(gb.in_geoip);
    assert_eq!(gb.decided.target, "cdn-d");
    assert_eq!(gb.decided.reason, "geo");
    assert_eq!(gb.decided.rule.as_deref(), Some("rules[2] country=GB"));
    assert_eq!(country(&all, "SE").decided.target, "cdn-c");
    assert_eq!(country(&all, "US").decided.target, "cdn-b");
    assert_eq!(country(&all, "US").continent, Some("NA"));
    // Not in the test data: evaluated for a synthetic client there.
    let pt = country(&all, "PT");
    assert!(!pt.in_geoip);
    assert_eq!(
        (pt.decided.target.as_str(), pt.decided.reason),
        ("cdn-c", "geo")
    );
    let br = country(&all, "BR");
    assert_eq!(
        (br.decided.target.as_str(), br.decided.reason),
        ("cdn-a", "default")
    );
    assert_eq!(br.decided.shares, vec![("cdn-a".to_owned(), 1.0)]);
    // Sorted, one entry per country.
    let codes: Vec<&str> = all.iter().map(|c| c.country.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(codes, sorted);
}

/// The synthetic evaluation agrees with the compiled table wherever both exist: it is the
/// same chain, not a second implementation.
#[test]
fn decide_at_agrees_with_the_compiled_table_for_every_class() {
    let controller = demo();
    controller
        .set_health("cdn-c", Some(State::Down))
        .expect("override");
    let snapshot = controller.published().load_full();
    let mut compared = 0;
    for name in [
        "www.example.com.",
        "pop.example.com.",
        "failover.example.com.",
    ] {
        let s = steered(&snapshot, name);
        for (i, loc) in snapshot.geo.classes().iter().enumerate() {
            // A `Place` without continent and country is not located at all.
            if loc.subdivision.is_some() || (loc.continent.is_none() && loc.country.is_none()) {
                continue;
            }
            let place = Place {
                continent: loc.continent,
                country: loc.country,
                ..Place::default()
            };
            let served = s.table.outcome(s.table.by_class()[i]);
            let synthetic = decide_at(&snapshot, &s, &place);
            assert_eq!(
                (&synthetic.pick, synthetic.reason, synthetic.rule),
                (&served.pick, served.reason, served.rule),
                "{name} {loc}"
            );
            compared += 1;
        }
    }
    assert!(compared > 10, "compared {compared} classes");
}

#[test]
fn a_target_going_down_moves_its_countries_and_says_why() {
    let controller = demo();
    controller
        .set_health("cdn-c", Some(State::Down))
        .expect("override");
    let snapshot = controller.published().load_full();
    let www = steered(&snapshot, "www.example.com.");
    let all = countries(&snapshot, &www, &MAP);
    for code in ["SE", "PT"] {
        let c = country(&all, code);
        assert_eq!(c.decided.target, "cdn-a", "{code}");
        assert_eq!(c.decided.down, ["cdn-c"], "{code}");
        assert_eq!(c.decided.rule.as_deref(), Some("rules[1] continent=EU"));
    }
    // GB's rule prefers cdn-d, then cdn-c: still cdn-d, nothing it prefers is down but cdn-c.
    let gb = country(&all, "GB");
    assert_eq!(gb.decided.target, "cdn-d");
    assert_eq!(gb.decided.down, ["cdn-c"]);
}

#[test]
fn exceptions_list_each_asn_rule_with_what_it_gets_now() {
    let controller = demo();
    let snapshot = controller.published().load_full();
    let www = steered(&snapshot, "www.example.com.");
    let ex = exceptions(&snapshot, &www);
    assert_eq!(ex.len(), 1, "{ex:?}");
    let e = &ex[0];
    assert_eq!((e.kind, e.network.as_str()), ("asn", "6167"));
    assert_eq!(e.rule, "rules[3] asn=6167");
    assert_eq!(e.targets, ["cdn-a", "cdn-b"]);
    assert_eq!((e.now.target.as_str(), e.now.reason), ("cdn-a", "asn"));
    controller
        .set_health("cdn-a", Some(State::Down))
        .expect("override");
    let snapshot = controller.published().load_full();
    let www = steered(&snapshot, "www.example.com.");
    let e = &exceptions(&snapshot, &www)[0];
    assert_eq!(e.now.target, "cdn-b");
    assert_eq!(e.now.down, ["cdn-a"]);
    // No geo step, no exceptions.
    assert!(exceptions(&snapshot, &steered(&snapshot, "ramp.example.com.")).is_empty());
}

#[test]
fn unlocated_clients_get_the_default_and_weighted_names_their_shares() {
    let controller = demo();
    let snapshot = controller.published().load_full();
    let www = steered(&snapshot, "www.example.com.");
    let d = not_located(&snapshot, &www);
    assert_eq!((d.target.as_str(), d.reason), ("cdn-a", "no_geo"));
    let ramp = steered(&snapshot, "ramp.example.com.");
    let d = not_located(&snapshot, &ramp);
    assert_eq!(d.target, "pop-old");
    let shares: Vec<(&str, u32)> = d
        .shares
        .iter()
        .map(|(t, s)| (t.as_str(), (s * 100.0).round() as u32))
        .collect();
    assert_eq!(shares, [("pop-old", 95), ("pop-new", 5)]);
}

#[test]
fn matches_are_described_as_in_the_policy_file() {
    let m = Match {
        continent: vec![Continent::Europe, Continent::Asia],
        country: vec![*b"GB"],
        subdivision: vec![(*b"US", "CA".into())],
        asn: vec![6167, 3320],
        cidr: vec!["192.0.2.0/24".parse().expect("a network")],
    };
    assert_eq!(
        describe_match(&m),
        "continent=EU,AS country=GB subdivision=US-CA asn=6167,3320 cidr=192.0.2.0/24"
    );
}
