//! ECS scopes on a real City database: how wide the scope is before and after merging
//! neighbouring networks, whether every merged scope is right, and what it costs.
//!
//! ```sh
//! STEERDNS_CITY_DB=/path/to/GeoLite2-City.mmdb cargo run --release --example scope_report
//! ```
//!
//! Clients are the first address of every Nth record's network (`STEERDNS_SAMPLE_EVERY`,
//! default 100), IPv4 and IPv6 counted separately, so they spread over every continent the
//! database covers. Three policy shapes: continents, countries, and continents followed by a
//! weighted pick (hashed per /24 or /56). Three scopes per client:
//! - *record*: the scope before merging (the record's network; /24 or /56 at least for hashed
//!   picks). These policies have no ASN or CIDR rules, so that was the whole computation;
//! - *class*: merged across neighbours of one location class, whatever the policy;
//! - *policy*: what `Table::decide` returns, merged across classes the policy answers alike.
//!
//! Every `STEERDNS_VERIFY_EVERY`th client (default 10) is verified: the database is walked for
//! every network inside the returned scope, and each must get the client's outcome.
//!
//! The database is MaxMind's (CC BY-SA 4.0 for GeoLite2): never commit it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Instant, SystemTime};

use maxminddb::{Reader, WithinOptions};
use steerdns::decision::{Table, compile};
use steerdns::geo::{DbSource, GeoDb, truncate};
use steerdns::health::HealthView;
use steerdns::perf::PerfView;
use steerdns::policy::{self, Inputs, Policy};

const CONTINENTS: &str = r#"
name = "continents.example.com"
[targets.iad]
a = ["192.0.2.1"]
[targets.fra]
a = ["192.0.2.2"]
[targets.sin]
a = ["192.0.2.3"]
[[chain]]
kind = "geo"
default = ["iad"]
rules = [
  { match = { continent = ["NA", "SA"] }, targets = ["iad"] },
  { match = { continent = ["EU", "AF"] }, targets = ["fra"] },
  { match = { continent = ["AS", "OC"] }, targets = ["sin"] },
]
"#;

const COUNTRIES: &str = r#"
name = "countries.example.com"
[targets.global]
cname = "global.cdn.example.net."
[targets.us]
cname = "us.cdn.example.net."
[targets.eu]
cname = "eu.cdn.example.net."
[targets.uk]
cname = "uk.cdn.example.net."
[targets.jp]
cname = "jp.cdn.example.net."
[targets.br]
cname = "br.cdn.example.net."
[targets.in]
cname = "in.cdn.example.net."
[[chain]]
kind = "geo"
default = ["global"]
rules = [
  { match = { country = ["US", "CA", "MX"] }, targets = ["us"] },
  { match = { country = ["DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PL", "SE"] }, targets = ["eu"] },
  { match = { country = ["GB", "IE"] }, targets = ["uk"] },
  { match = { country = ["JP", "KR", "TW"] }, targets = ["jp"] },
  { match = { country = ["BR", "AR", "CL"] }, targets = ["br"] },
  { match = { country = ["IN", "BD", "LK"] }, targets = ["in"] },
]
"#;

const GEO_WEIGHTED: &str = r#"
name = "weighted.example.com"
[targets.a]
cname = "a.cdn.example.net."
[targets.b]
cname = "b.cdn.example.net."
[targets.c]
cname = "c.cdn.example.net."
[[chain]]
kind = "geo"
default = ["a", "b"]
rules = [
  { match = { continent = "EU" }, targets = ["b", "c"] },
  { match = { continent = ["AS", "OC"] }, targets = ["c", "a"] },
]
[[chain]]
kind = "weighted"
weights = { a = 50, b = 30, c = 20 }
"#;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn addr(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    }
}

/// The first address of every `every`th record's network, per family.
fn sample(reader: &Reader<Vec<u8>>, every: usize) -> Result<(Vec<IpAddr>, Vec<IpAddr>), String> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let (mut n4, mut n6) = (0usize, 0usize);
    let networks = reader
        .networks(WithinOptions::default())
        .map_err(|e| e.to_string())?;
    for network in networks {
        let net = network
            .and_then(|n| n.network())
            .map_err(|e| e.to_string())?;
        let (count, out) = match net.ip() {
            IpAddr::V4(_) => (&mut n4, &mut v4),
            IpAddr::V6(_) => (&mut n6, &mut v6),
        };
        if *count % every == 0 {
            out.push(net.ip());
        }
        *count += 1;
    }
    Ok((v4, v6))
}

/// Every address inside `ip/prefix` where the City data changes: checking these checks the
/// whole block (these policies read nothing else).
fn checkpoints(reader: &Reader<Vec<u8>>, ip: IpAddr, prefix: u8) -> Result<Vec<IpAddr>, String> {
    let v6 = ip.is_ipv6();
    let lo = bits(truncate(ip, prefix));
    let block = format!("{}/{prefix}", addr(v6, lo));
    let opts = WithinOptions::default()
        .include_networks_without_data()
        .include_aliased_networks();
    let mut points = vec![lo];
    let networks = reader
        .within(block.parse().map_err(|e| format!("{block}: {e}"))?, opts)
        .map_err(|e| e.to_string())?;
    for network in networks {
        let net = network
            .and_then(|n| n.network())
            .map_err(|e| e.to_string())?;
        points.push(bits(net.ip()).max(lo));
    }
    points.sort_unstable();
    points.dedup();
    Ok(points.into_iter().map(|p| addr(v6, p)).collect())
}

#[derive(Default)]
struct Means {
    clients: u64,
    record: u64,
    class: u64,
    policy: u64,
    widened: u64,
    /// Decided from the runs alone, without a database lookup.
    direct: u64,
}

impl Means {
    fn line(&self, policy: &str, family: &str) -> String {
        let n = self.clients.max(1) as f64;
        format!(
            "| {policy} | {family} | {} | {:.2} | {:.2} | {:.2} | {:.1}% | {:.1}% |",
            self.clients,
            self.record as f64 / n,
            self.class as f64 / n,
            self.policy as f64 / n,
            100.0 * self.widened as f64 / n,
            100.0 * self.direct as f64 / n,
        )
    }
}

fn main() -> Result<(), String> {
    let path = std::env::var("STEERDNS_CITY_DB")
        .map_err(|_| "set STEERDNS_CITY_DB to a GeoLite2-City.mmdb".to_owned())?;
    let every = env_number("STEERDNS_SAMPLE_EVERY", 100);
    let verify_every = env_number("STEERDNS_VERIFY_EVERY", 10);

    let started = Instant::now();
    let geo =
        GeoDb::load(&DbSource::File(path.clone().into()), None, &[]).map_err(|e| e.to_string())?;
    let load = started.elapsed();
    let reader = Reader::open_readfile(&path).map_err(|e| e.to_string())?;
    let (v4, v6) = sample(&reader, every)?;
    println!(
        "{path}: {} location classes, loaded in {:.2} s ({geo:?}); {} IPv4 and {} IPv6 clients (every {every}th record)",
        geo.classes().len(),
        load.as_secs_f64(),
        v4.len(),
        v6.len()
    );

    let (health, perf) = (HealthView::default(), PerfView::default());
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now: SystemTime::now(),
        choices: None,
    };
    println!();
    println!(
        "| policy | family | clients | mean scope: record | class-merged | policy-merged | widened | no lookup |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut timings = Vec::new();
    let mut verified = (0usize, 0usize);
    for (label, text) in [
        ("continents", CONTINENTS),
        ("countries", COUNTRIES),
        ("continents + weighted", GEO_WEIGHTED),
    ] {
        let policy = policy::parse(label, text).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let (table, _) = compile(&policy, &geo, &inputs);
        let first = started.elapsed();
        timings.push((label, first, compile_many(&policy, &geo, &inputs)));
        for (family, clients) in [("IPv4", &v4), ("IPv6", &v6)] {
            let mut means = Means::default();
            let mut seen = HashSet::new();
            for (i, ip) in clients.iter().enumerate() {
                let located = geo.locate(*ip);
                let d = table.decide(*ip, &located, &geo);
                // The query path decides without the lookup where it can: it must agree.
                if let Some(direct) = table.decide_without_lookup(*ip) {
                    if direct != d {
                        return Err(format!(
                            "{label}: {ip}: {direct:?} without lookup, {d:?} located"
                        ));
                    }
                    means.direct += 1;
                }
                let hashed = if table.outcome(d.outcome).pick.needs_hash() {
                    if ip.is_ipv4() { 24 } else { 56 }
                } else {
                    0
                };
                let record = located.geo_prefix.max(hashed);
                let class = geo
                    .class_scope(*ip)
                    .unwrap_or(located.geo_prefix)
                    .max(hashed);
                means.clients += 1;
                means.record += u64::from(record);
                means.class += u64::from(class);
                means.policy += u64::from(d.scope);
                means.widened += u64::from(d.scope < record);
                if i % verify_every == 0 && seen.insert((truncate(*ip, d.scope), d.scope)) {
                    verified.0 += 1;
                    for y in checkpoints(&reader, *ip, d.scope)? {
                        verified.1 += 1;
                        let other = table.decide(y, &geo.locate(y), &geo);
                        if other.outcome != d.outcome {
                            return Err(format!(
                                "{label}: {ip} has scope /{} but {y} in it gets another outcome",
                                d.scope
                            ));
                        }
                    }
                }
            }
            println!("{}", means.line(label, family));
        }
        let per_query = time_queries(&table, &geo, &v4, &v6);
        let (r4, r6) = table.scope_runs().unwrap_or_default();
        println!(
            "|   | locate+decide+select {per_query:.0} ns/query; scope index {r4} IPv4 + {r6} IPv6 runs |  |  |  |  |  |"
        );
    }
    println!();
    println!(
        "verified {} scopes: {} checkpoints, every one with the client's outcome",
        verified.0, verified.1
    );
    for (label, first, many) in timings {
        println!(
            "compile {label}: first {:.1} ms (builds the scope index), 1,000 names {:.0} ms",
            first.as_secs_f64() * 1e3,
            many.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// 1,000 names of one shape: one index build at most, then cache hits.
fn compile_many(policy: &Policy, geo: &GeoDb, inputs: &Inputs) -> std::time::Duration {
    let started = Instant::now();
    let tables: Vec<Table> = (0..1000).map(|_| compile(policy, geo, inputs).0).collect();
    let took = started.elapsed();
    drop(tables);
    took
}

/// Mean cost of the per-query path over the sampled clients.
fn time_queries(table: &Table, geo: &GeoDb, v4: &[IpAddr], v6: &[IpAddr]) -> f64 {
    let clients: Vec<IpAddr> = v4.iter().chain(v6).copied().collect();
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        for ip in &clients {
            let located = geo.locate(*ip);
            let d = table.decide(*ip, &located, geo);
            std::hint::black_box(table.select(&d, Some(*ip)));
        }
    }
    started.elapsed().as_nanos() as f64 / (rounds * clients.len().max(1)) as f64
}
