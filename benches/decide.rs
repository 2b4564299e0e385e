//! `cargo bench --bench decide`: the per-query decision (GeoIP lookup, table decide, target
//! select) and the control-plane compile, on the bundled test databases and demo policies.
//! Numbers are for comparing commits on one machine, not absolute claims.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use steerdns::decision::compile;
use steerdns::geo::GeoDb;
use steerdns::health::HealthView;
use steerdns::perf::PerfView;
use steerdns::policy::{self, Inputs};

const WWW: &str = include_str!("../policies/www.example.com.toml");
const WEIGHTED: &str = include_str!("../policies/weighted.example.com.toml");

fn clients() -> Vec<IpAddr> {
    [
        "2a02:d180::",
        "81.2.69.142",
        "214.78.120.0",
        "149.101.100.0",
        "10.0.0.0",
        "175.16.199.0",
        "2001:480:10::",
    ]
    .iter()
    .map(|s| s.parse().expect("a literal address"))
    .collect()
}

fn decide(c: &mut Criterion) {
    let geo = GeoDb::load(
        &steerdns::demo::city_db(),
        Some(&steerdns::demo::asn_db()),
        &[],
    )
    .expect("bundled databases load");
    let (health, perf) = (HealthView::default(), PerfView::default());
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now: SystemTime::now(),
        choices: None,
    };
    let clients = clients();
    for (label, text) in [("geo", WWW), ("weighted", WEIGHTED)] {
        let policy = policy::parse(label, text).expect("demo policy parses");
        let (table, _) = compile(&policy, &geo, &inputs);
        c.bench_function(&format!("locate+decide+select/{label}"), |b| {
            b.iter(|| {
                for ip in &clients {
                    let located = geo.locate(*ip);
                    let d = table.decide(*ip, &located, &geo);
                    black_box(table.select(&d, Some(*ip)));
                }
            })
        });
        c.bench_function(&format!("compile/{label}"), |b| {
            b.iter(|| black_box(compile(&policy, &geo, &inputs)))
        });
    }
    // The query path (`Table::decide_for`): the precomputed runs, else a lookup. The demo `www`
    // shape with its ASN rule, with a CIDR rule added, and without either: tables with rules
    // decide from runs of one outcome, so the three should cost about the same.
    let geo_only = WWW.replace(
        r#"{ match = { asn = 6167 }, targets = ["cdn-a", "cdn-b"] },"#,
        "",
    );
    let with_cidr = WWW.replace(
        r#"{ match = { asn = 6167 }, targets = ["cdn-a", "cdn-b"] },"#,
        r#"{ match = { asn = 6167 }, targets = ["cdn-a", "cdn-b"] },
  { match = { cidr = "81.2.69.192/26" }, targets = ["cdn-b"] },"#,
    );
    assert!(
        geo_only != WWW && with_cidr != WWW,
        "the demo www policy changed shape"
    );
    for (label, text) in [
        ("www-geo-only", geo_only.as_str()),
        ("www-asn", WWW),
        ("www-asn-cidr", with_cidr.as_str()),
    ] {
        let policy = policy::parse(label, text).expect("policy parses");
        let (table, _) = compile(&policy, &geo, &inputs);
        c.bench_function(&format!("query-path-decide/{label}"), |b| {
            b.iter(|| {
                for ip in &clients {
                    let d = table.decide_for(*ip, &geo);
                    black_box(table.select(&d, Some(*ip)));
                }
            })
        });
    }
}

criterion_group!(benches, decide);
criterion_main!(benches);
