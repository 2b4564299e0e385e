//! `cargo bench --bench compile`: the control plane's decision compile, so that regressions in
//! rebuild time show in review.
//!
//! - `compile/<shape>`: one steered name compiled against the bundled test GeoIP databases,
//!   for the policy shapes operators use most: geo (continent/country) + weighted, geo with an
//!   ASN rule, performance (with measurements that decide for some regions), ordered failover
//!   with a target down.
//! - `compile_1000`: 1,000 names of those shapes (what a startup or reload compiles).
//! - `assemble_1000`: putting 1,000 compiled names into a snapshot, which every publication
//!   does (a policy edit or a health flip pays this on top of recompiling its own names).
//! - `compile_real/geo_weighted`: only when `STEERDNS_BENCH_CITY_DB` names a real City
//!   database (e.g. GeoLite2-City.mmdb): one name against real data, where the number of
//!   location classes is in the thousands instead of a few dozen.
//!
//! Numbers are for comparing commits on one machine, not absolute claims.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use steerdns::decision::compile;
use steerdns::geo::{Continent, DbSource, GeoDb};
use steerdns::health::{HealthView, State};
use steerdns::perf::{PerfView, Region, Stats};
use steerdns::policy::{self, Inputs, Policy};
use steerdns::snapshot::{DnsSettings, Snapshot, Steered};
use steerdns::zone::{Zone, ZoneText, Zones};

const ZONE: &str = include_str!("../examples/zones/example.com.zone");
const WWW: &str = include_str!("../policies/www.example.com.toml");
const PERF: &str = include_str!("../policies/perf.example.com.toml");
const FAILOVER: &str = include_str!("../policies/failover.example.com.toml");

/// Geo by continent and country, then a weighted split with a commit limit: the most common
/// multi-CDN shape (the same as `bench/rebuild`'s generated policies).
fn geo_weighted(name: &str) -> String {
    format!(
        r#"name = "{name}"
ttl_s = 30
last_resort = "all"

[targets.cdn-a]
cname = "a.cdn-a.example.net."
[targets.cdn-b]
cname = "b.cdn-b.example.net."
max_share = 0.6
[targets.cdn-c]
cname = "c.cdn-c.example.net."
[targets.pop-fra]
a = ["192.0.2.2"]
aaaa = ["2001:db8::2"]

[[chain]]
kind = "up"

[[chain]]
kind = "geo"
default = ["cdn-a", "cdn-b"]
rules = [
  {{ match = {{ continent = "EU" }}, targets = ["pop-fra", "cdn-c", "cdn-a"] }},
  {{ match = {{ country = ["GB", "IE"] }}, targets = ["cdn-c", "cdn-a"] }},
  {{ match = {{ continent = ["NA", "SA"] }}, targets = ["cdn-b", "cdn-a"] }},
  {{ match = {{ country = ["JP", "KR"] }}, targets = ["cdn-a", "cdn-c"] }},
]

[[chain]]
kind = "weighted"
weights = {{ cdn-a = 50, cdn-b = 30, cdn-c = 20, pop-fra = 40 }}
"#
    )
}

/// The demo policies with their name replaced (each shape keeps its own targets).
fn renamed(text: &str, from: &str, to: &str) -> String {
    text.replace(&format!("name = \"{from}\""), &format!("name = \"{to}\""))
}

fn shapes(i: usize) -> String {
    let name = format!("n{i}.example.com");
    match i % 4 {
        0 | 1 => geo_weighted(&name),
        2 => renamed(PERF, "perf.example.com", &name),
        _ => renamed(FAILOVER, "failover.example.com", &name),
    }
}

fn parse(label: &str, text: &str) -> Policy {
    policy::parse(label, text).expect("bench policy parses")
}

fn test_geo() -> GeoDb {
    GeoDb::load(
        &steerdns::demo::city_db(),
        Some(&steerdns::demo::asn_db()),
        &[],
    )
    .expect("bundled databases load")
}

/// Measurements that let the performance step decide in some regions (cdn-c clearly faster in
/// Europe, cdn-a in the US) and fall back to weights elsewhere; a failover target down.
fn inputs_data() -> (HealthView, PerfView) {
    let mut health = HealthView::default();
    health.set("pop-iad", State::Down, true, SystemTime::now());
    let mut perf = PerfView::default();
    let stats = |mean_ms: f64| Stats {
        samples: 200,
        mean_ms,
        variance: 25.0,
        availability: 1.0,
    };
    perf.insert("cdn-c", Region::Continent(Continent::Europe), stats(20.0));
    perf.insert("cdn-a", Region::Continent(Continent::Europe), stats(35.0));
    perf.insert("cdn-a", Region::Country(*b"US"), stats(18.0));
    perf.insert("cdn-b", Region::Country(*b"US"), stats(30.0));
    perf.insert("cdn-a", Region::World, stats(40.0));
    perf.insert("cdn-b", Region::World, stats(41.0));
    (health, perf)
}

fn zones() -> Arc<Zones> {
    let zone = Zone::parse(
        "example.com",
        &[ZoneText {
            source_name: "examples/zones/example.com.zone".into(),
            text: ZONE.into(),
        }],
    )
    .expect("demo zone parses");
    Arc::new(Zones::new(vec![zone]).expect("one zone"))
}

fn bench(c: &mut Criterion) {
    let geo = test_geo();
    let (health, perf) = inputs_data();
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now: SystemTime::now(),
        choices: None,
    };
    let one = [
        ("geo_weighted", geo_weighted("gw.example.com")),
        ("geo_asn", WWW.to_owned()),
        ("performance", PERF.to_owned()),
        ("failover", FAILOVER.to_owned()),
    ];
    for (label, text) in &one {
        let policy = parse(label, text);
        c.bench_function(&format!("compile/{label}"), |b| {
            b.iter(|| black_box(compile(&policy, &geo, &inputs)))
        });
    }

    let policies: Vec<Policy> = (0..1000).map(|i| parse("bench", &shapes(i))).collect();
    let mut group = c.benchmark_group("control");
    group.sample_size(20);
    group.bench_function("compile_1000", |b| {
        b.iter(|| {
            for p in &policies {
                black_box(compile(p, &geo, &inputs));
            }
        })
    });
    let zones = zones();
    let geo = Arc::new(geo);
    let steered: Vec<Arc<Steered>> = policies
        .iter()
        .map(|p| Arc::new(Steered::compile(p.clone(), &geo, &inputs)))
        .collect();
    let (health, perf) = (Arc::new(health.clone()), Arc::new(perf.clone()));
    group.bench_function("assemble_1000", |b| {
        b.iter(|| {
            black_box(
                Snapshot::assemble(
                    2,
                    zones.clone(),
                    geo.clone(),
                    steered.iter().cloned(),
                    health.clone(),
                    perf.clone(),
                    DnsSettings {
                        max_udp_payload: 1232,
                        explain_names: false,
                    },
                )
                .expect("assembles"),
            )
        })
    });
    group.finish();

    // One name against a real City database, if one is given.
    if let Some(path) = std::env::var_os("STEERDNS_BENCH_CITY_DB") {
        let real = GeoDb::load(&DbSource::File(PathBuf::from(path)), None, &[])
            .expect("STEERDNS_BENCH_CITY_DB loads");
        let policy = parse("real", &geo_weighted("gw.example.com"));
        let mut group = c.benchmark_group("compile_real");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(10));
        group.bench_function("geo_weighted", |b| {
            b.iter(|| black_box(compile(&policy, &real, &inputs)))
        });
        let perf_policy = parse("real", PERF);
        group.bench_function("performance", |b| {
            b.iter(|| black_box(compile(&perf_policy, &real, &inputs)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
