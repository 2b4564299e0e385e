//! Table-driven decisions on the bundled test databases (facts: tests/fixtures/geoip/README.md).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use super::*;
use crate::health::{HealthView, State};
use crate::perf::{PerfView, Region, Stats};
use crate::policy::{self, Reason};

fn geo() -> GeoDb {
    GeoDb::load(&crate::demo::city_db(), Some(&crate::demo::asn_db()), &[]).unwrap()
}

fn inputs<'a>(health: &'a HealthView, perf: &'a PerfView) -> Inputs<'a> {
    Inputs {
        health,
        perf,
        now: SystemTime::now(),
        choices: None,
    }
}

fn target_of(policy: &Policy, table: &Table, geo: &GeoDb, ip: &str) -> (String, Reason, u8) {
    let ip: IpAddr = ip.parse().unwrap();
    let d = table.decide(ip, &geo.locate(ip), geo);
    let t = table.select(&d, Some(ip)).as_slice()[0];
    (
        policy.target(t).id.clone(),
        table.outcome(d.outcome).reason,
        d.scope,
    )
}

const RULES: &str = r#"
name = "www.example.com"
[targets.dflt]
cname = "dflt.example.net"
[targets.na]
cname = "na.example.net"
[targets.eu]
cname = "eu.example.net"
[targets.gb]
cname = "gb.example.net"
[targets.wa]
cname = "wa.example.net"
[targets.asn]
cname = "asn.example.net"
[targets.asn-us]
cname = "asn-us.example.net"
[targets.lab]
cname = "lab.example.net"
[[chain]]
kind = "up"
[[chain]]
kind = "geo"
default = ["dflt"]
rules = [
  { match = { continent = "NA" }, targets = ["na"] },
  { match = { continent = "EU" }, targets = ["eu"] },
  { match = { country = "GB" }, targets = ["gb", "eu"] },
  { match = { subdivision = "US-WA" }, targets = ["wa"] },
  { match = { asn = 1221 }, targets = ["asn"] },
  { match = { asn = 6167, country = "US" }, targets = ["asn-us"] },
  { match = { cidr = "81.2.69.192/26" }, targets = ["lab"] },
]
"#;

#[test]
fn most_specific_rule_wins_and_scope_is_right() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let policy = policy::parse("p.toml", RULES).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let cases = [
        // GB beats EU; the CIDR rule 81.2.69.192/26 is a neighbour: scope ≥ 25.
        ("81.2.69.142", "gb", Reason::Geo, 31),
        ("81.2.69.160", "gb", Reason::Geo, 27),
        ("81.2.69.200", "lab", Reason::Cidr, 26),
        ("89.160.20.128", "eu", Reason::Geo, 25),
        ("216.160.83.56", "wa", Reason::Geo, 29),
        ("214.78.120.1", "na", Reason::Geo, 22),
        ("149.101.100.1", "asn-us", Reason::Asn, 28),
        ("1.128.0.1", "asn", Reason::Asn, 11),
        // Not in the database, and neither is the rest of 8.0.0.0/5: one outcome across it.
        ("10.0.0.1", "dflt", Reason::NoGeo, 5),
        ("175.16.199.1", "dflt", Reason::Default, 24),
        ("2a02:d180::", "eu", Reason::Geo, 29),
        ("2001:480:10::1", "na", Reason::Geo, 48),
    ];
    for (ip, target, reason, scope) in cases {
        assert_eq!(
            target_of(&policy, &table, &geo, ip),
            (target.into(), reason, scope),
            "{ip}"
        );
    }
}

#[test]
fn a_down_target_falls_back_to_the_next_rule_then_last_resort() {
    let geo = geo();
    let policy = policy::parse("p.toml", RULES).unwrap();
    let perf = PerfView::default();
    let mut health = HealthView::default();
    let now = SystemTime::now();
    health.set("gb", State::Down, true, now);
    let (table, _) = compile(&policy, &geo, &inputs(&health, &perf));
    // GB's rule lists gb then eu: eu takes over, still by that rule.
    assert_eq!(target_of(&policy, &table, &geo, "81.2.69.142").0, "eu");
    health.set("eu", State::Down, true, now);
    let (table, _) = compile(&policy, &geo, &inputs(&health, &perf));
    // Both of GB's targets down, and EU's rule has only eu: the default.
    assert_eq!(target_of(&policy, &table, &geo, "81.2.69.142").0, "dflt");
    health.set("dflt", State::Down, true, now);
    let (table, _) = compile(&policy, &geo, &inputs(&health, &perf));
    let (_, reason, _) = target_of(&policy, &table, &geo, "81.2.69.142");
    assert_eq!(reason, Reason::AllDownFallback);
}

#[test]
fn an_untailored_policy_has_scope_zero() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let text = "name = \"x.example.com\"\n[targets.a]\ncname = \"a.example.net\"\n[[chain]]\nkind = \"failover\"\n";
    let policy = policy::parse("p.toml", text).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    assert!(!table.is_tailored());
    assert_eq!(target_of(&policy, &table, &geo, "81.2.69.142").2, 0);
    assert_eq!(table.fallback().scope, 0);
}

#[test]
fn nested_cidr_rules_narrow_the_scope() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let text = r#"
name = "x.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[targets.c]
cname = "c.example.net"
[[chain]]
kind = "geo"
default = ["a"]
rules = [
  { match = { cidr = "10.0.0.0/8" }, targets = ["b"] },
  { match = { cidr = "10.1.2.0/24" }, targets = ["c"] },
]
"#;
    let policy = policy::parse("p.toml", text).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let cases = [
        // In the /8 beside the /24: common prefix with 10.1.2.0 is 15 bits → scope 16.
        ("10.0.0.1", "b", 16),
        ("10.1.2.3", "c", 24),
        // 10.128.0.0/9 holds no /24 rule, so the answer holds for the /9.
        ("10.200.0.1", "b", 9),
        ("11.0.0.1", "a", 8),
    ];
    for (ip, target, scope) in cases {
        let (t, _, s) = target_of(&policy, &table, &geo, ip);
        assert_eq!((t.as_str(), s), (target, scope), "{ip}");
    }
}

const WEIGHTED: &str = r#"
name = "w.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[[chain]]
kind = "weighted"
weights = { a = 70, b = 30 }
"#;

/// Shares across many client networks: within 1 percentage point of the weights.
fn shares(policy: &Policy, table: &Table, geo: &GeoDb, networks: u32) -> HashMap<String, f64> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..networks {
        // Distinct /24s spread over the address space.
        let ip = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761) & 0xffff_ff00));
        let d = table.decide(ip, &geo.locate(ip), geo);
        if table.outcome(d.outcome).pick.needs_hash() {
            assert!(
                d.scope >= 24,
                "a hashed answer must hold for the hashed /24 only"
            );
        }
        let t = table.select(&d, Some(ip)).as_slice()[0];
        *counts.entry(policy.target(t).id.clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, v)| (k, f64::from(v) / f64::from(networks)))
        .collect()
}

#[test]
fn weighted_shares_hold_across_networks_and_networks_keep_their_answer() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let policy = policy::parse("p.toml", WEIGHTED).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let s = shares(&policy, &table, &geo, 100_000);
    assert!((s["a"] - 0.70).abs() < 0.01, "{s:?}");
    assert!((s["b"] - 0.30).abs() < 0.01, "{s:?}");
    // Same /24, different hosts: same answer.
    let pick = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        let d = table.decide(ip, &geo.locate(ip), &geo);
        table.select(&d, Some(ip)).as_slice()[0]
    };
    for n in 0..50 {
        assert_eq!(
            pick(&format!("198.51.{n}.1")),
            pick(&format!("198.51.{n}.254"))
        );
    }
}

#[test]
fn a_ramp_step_moves_only_networks_it_must() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let at = |w: u32| {
        let text = WEIGHTED.replace("a = 70, b = 30", &format!("a = {}, b = {w}", 100 - w));
        let policy = policy::parse("p.toml", &text).unwrap();
        compile(&policy, &geo, &inputs(&h, &p)).0
    };
    let (five, quarter) = (at(5), at(25));
    let mut moved_back = 0;
    for i in 0..20_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(i << 8));
        let located = geo.locate(ip);
        let b5 = five
            .select(&five.decide(ip, &located, &geo), Some(ip))
            .as_slice()[0]
            == TargetId(1);
        let b25 = quarter
            .select(&quarter.decide(ip, &located, &geo), Some(ip))
            .as_slice()[0]
            == TargetId(1);
        if b5 && !b25 {
            moved_back += 1;
        }
    }
    assert_eq!(
        moved_back, 0,
        "networks on the new target at 5% stay on it at 25%"
    );
}

#[test]
fn capacity_spills_to_the_next_ranked_target() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let text = r#"
name = "c.example.com"
[targets.a]
cname = "a.example.net"
max_share = 0.6
[targets.b]
cname = "b.example.net"
[[chain]]
kind = "failover"
order = ["a", "b"]
"#;
    let policy = policy::parse("p.toml", text).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let s = shares(&policy, &table, &geo, 50_000);
    assert!((s["a"] - 0.6).abs() < 0.01, "{s:?}");
    // Weighted with a cap: 70/30 capped at 50% → 50/50.
    let capped = WEIGHTED.replace(
        "cname = \"a.example.net\"",
        "cname = \"a.example.net\"\nmax_share = 0.5",
    );
    let policy = policy::parse("p.toml", &capped).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let s = shares(&policy, &table, &geo, 50_000);
    assert!((s["a"] - 0.5).abs() < 0.01, "{s:?}");
}

#[test]
fn active_passive_fails_back_only_after_hold_down() {
    let geo = geo();
    let perf = PerfView::default();
    let text = r#"
name = "ap.example.com"
[targets.p]
cname = "p.example.net"
[targets.s]
cname = "s.example.net"
[[chain]]
kind = "active_passive"
primary = "p"
standby = "s"
hold_down_s = 60
"#;
    let policy = policy::parse("p.toml", text).unwrap();
    let t0 = SystemTime::now();
    let mut health = HealthView::default();
    let answer = |health: &HealthView, now: SystemTime| {
        let (table, next) = compile(
            &policy,
            &geo,
            &Inputs {
                health,
                perf: &perf,
                now,
                choices: None,
            },
        );
        let d = table.fallback();
        (
            policy
                .target(table.select(&d, None).as_slice()[0])
                .id
                .clone(),
            next,
        )
    };
    // As the control plane does: each change settles the view against the one serving.
    let set = |health: &mut HealthView, state: State, at: SystemTime| {
        let prev = health.clone();
        health.set("p", state, false, at);
        *health = health.clone().settle(&prev, at);
    };
    assert_eq!(answer(&health, t0).0, "p", "no reports: primary");
    // The first report says up: it was never down, so there is nothing to hold down.
    set(&mut health, State::Up, t0);
    assert_eq!(answer(&health, t0), ("p".into(), None), "first up report");
    set(&mut health, State::Down, t0);
    assert_eq!(answer(&health, t0).0, "s");
    let back = t0 + Duration::from_secs(10);
    set(&mut health, State::Up, back);
    let (target, next) = answer(&health, back + Duration::from_secs(30));
    assert_eq!(target, "s", "still in hold-down");
    assert_eq!(
        next,
        Some(back + Duration::from_secs(60)),
        "rebuild when the hold-down ends"
    );
    assert_eq!(answer(&health, back + Duration::from_secs(61)).0, "p");
    // A flap inside the hold-down restarts it.
    set(&mut health, State::Down, back + Duration::from_secs(62));
    set(&mut health, State::Up, back + Duration::from_secs(63));
    assert_eq!(answer(&health, back + Duration::from_secs(100)).0, "s");
    assert_eq!(answer(&health, back + Duration::from_secs(124)).0, "p");
    // Down → unknown (its agents went silent) is a recovery too: held down from then.
    set(&mut health, State::Down, back + Duration::from_secs(200));
    set(&mut health, State::Unknown, back + Duration::from_secs(210));
    assert_eq!(answer(&health, back + Duration::from_secs(260)).0, "s");
    assert_eq!(answer(&health, back + Duration::from_secs(271)).0, "p");
}

#[test]
fn performance_switches_only_on_conclusive_data() {
    let geo = geo();
    let health = HealthView::default();
    let text = r#"
name = "p.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[[chain]]
kind = "performance"
min_samples = 5
[[chain]]
kind = "failover"
order = ["a", "b"]
"#;
    let policy = policy::parse("p.toml", text).unwrap();
    let de = "2a02:d180::1";
    let run = |perf: &PerfView| {
        let (table, _) = compile(
            &policy,
            &geo,
            &Inputs {
                health: &health,
                perf,
                now: SystemTime::now(),
                choices: None,
            },
        );
        target_of(&policy, &table, &geo, de).0
    };
    let fast = Stats::from_samples(&[20.0, 21.0, 19.0, 22.0, 20.0, 21.0], 1.0);
    let slow = Stats::from_samples(&[60.0, 58.0, 65.0, 61.0, 59.0, 62.0], 1.0);
    let noisy = Stats::from_samples(&[15.0, 70.0, 30.0, 55.0, 20.0, 64.0], 1.0);
    let mut perf = PerfView::default();
    assert_eq!(run(&perf), "a", "no data: failover order");
    perf.insert("a", Region::Country(*b"DE"), slow);
    perf.insert("b", Region::Country(*b"DE"), fast);
    assert_eq!(run(&perf), "b", "b is clearly faster in DE");
    perf.insert("b", Region::Country(*b"DE"), noisy);
    assert_eq!(run(&perf), "a", "not conclusive: the fallback decides");
    // Too few samples in the country: the continent's data decides.
    let mut perf = PerfView::default();
    perf.insert(
        "a",
        Region::Country(*b"DE"),
        Stats::from_samples(&[90.0, 91.0], 1.0),
    );
    perf.insert(
        "b",
        Region::Country(*b"DE"),
        Stats::from_samples(&[10.0, 11.0], 1.0),
    );
    perf.insert("a", Region::Continent(crate::geo::Continent::Europe), slow);
    perf.insert("b", Region::Continent(crate::geo::Continent::Europe), fast);
    assert_eq!(run(&perf), "b");
    // Available too rarely: never first.
    let mut perf = PerfView::default();
    perf.insert("a", Region::World, slow);
    perf.insert(
        "b",
        Region::World,
        Stats {
            availability: 0.9,
            ..fast
        },
    );
    assert_eq!(run(&perf), "a");
}

#[test]
fn multi_value_answers_take_the_first_n() {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let text = r#"
name = "m.example.com"
answers = 2
[targets.x]
a = ["192.0.2.1"]
[targets.y]
a = ["192.0.2.2"]
[targets.z]
a = ["192.0.2.3"]
[[chain]]
kind = "failover"
order = ["z", "x", "y"]
"#;
    let policy = policy::parse("p.toml", text).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let d = table.fallback();
    let ids: Vec<&str> = table
        .select(&d, None)
        .as_slice()
        .iter()
        .map(|t| policy.target(*t).id.as_str())
        .collect();
    assert_eq!(ids, ["z", "x"]);
}

#[test]
fn a_guarded_ramp_follows_its_schedule_and_halts_at_zero() {
    let geo = geo();
    let perf = PerfView::default();
    let start = 1_800_000_000u64;
    let text = format!(
        r#"
name = "r.example.com"
[targets.old]
a = ["192.0.2.10"]
[targets.new]
a = ["192.0.2.11"]
[[chain]]
kind = "up"
[[chain]]
kind = "weighted"
weights = {{ old = 100 }}
ramp = {{ target = "new", percent = [5, 25, 50, 100], step_s = 600, start_unix_s = {start} }}
"#
    );
    let policy = policy::parse("p.toml", &text).unwrap();
    let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(start + secs);
    let share_of_new = |health: &HealthView, now: SystemTime| {
        let (table, next) = compile(
            &policy,
            &geo,
            &Inputs {
                health,
                perf: &perf,
                now,
                choices: None,
            },
        );
        let s = shares(&policy, &table, &geo, 20_000);
        (s.get("new").copied().unwrap_or(0.0), next)
    };
    let health = HealthView::default();
    let (before, next) = share_of_new(&health, at(0) - Duration::from_secs(1));
    assert_eq!(before, 0.0);
    assert_eq!(next, Some(at(0)));
    for (secs, want) in [(0, 0.05), (600, 0.25), (1300, 0.50), (1900, 1.0)] {
        let (share, _) = share_of_new(&health, at(secs));
        assert!(
            (share - want).abs() < 0.015,
            "at +{secs}s: {share} vs {want}"
        );
    }
    assert_eq!(
        share_of_new(&health, at(700)).1,
        Some(at(1200)),
        "rebuild at the next step"
    );
    // The new target breaks its criteria mid-ramp: halted at 0%, no further steps.
    let mut halted = HealthView::default();
    halted.halt_ramp("new");
    let (share, next) = share_of_new(&halted, at(1300));
    assert_eq!((share, next), (0.0, None));
}

// ---- ECS scope: merged networks are never wrong ----

use std::collections::HashSet;
use std::net::Ipv6Addr;

use crate::geo::{Continent, DbSource, Location, Override};

/// splitmix64: deterministic test addresses without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn reader(source: DbSource) -> maxminddb::Reader<Vec<u8>> {
    let bytes = match source {
        DbSource::Bundled { bytes, .. } => bytes.to_vec(),
        DbSource::File(path) => std::fs::read(path).unwrap(),
    };
    maxminddb::Reader::from_source(bytes).unwrap()
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(x.into())
    } else {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    }
}

/// Independent of the scope code: the raw databases, walked for every network (empty and
/// aliased ones too) that could change an answer inside a block.
struct Oracle {
    city: maxminddb::Reader<Vec<u8>>,
    asn: maxminddb::Reader<Vec<u8>>,
}

impl Oracle {
    fn new() -> Self {
        Oracle {
            city: reader(crate::demo::city_db()),
            asn: reader(crate::demo::asn_db()),
        }
    }

    /// Every address in `ip/prefix` where an input of the decision can change: the first
    /// address of the block, of every City and ASN network in it, and of every rule or
    /// override network in it and the address after each. Between two consecutive
    /// checkpoints nothing changes, so checking them checks the whole block.
    fn checkpoints(&self, ip: IpAddr, prefix: u8, nets: &[IpNet]) -> Vec<IpAddr> {
        let v6 = ip.is_ipv6();
        let width = if v6 { 128 } else { 32 };
        let lo = as_u128(crate::geo::truncate(ip, prefix));
        let hi = lo
            | (u128::MAX >> (128 - width))
                .checked_shr(u32::from(prefix))
                .unwrap_or(0);
        let mut points = vec![lo, hi];
        let opts = maxminddb::WithinOptions::default()
            .include_networks_without_data()
            .include_aliased_networks();
        let block = format!("{}/{prefix}", from_u128(v6, lo));
        for db in [&self.city, &self.asn] {
            for n in db.within(block.parse().unwrap(), opts).unwrap() {
                let first = as_u128(n.unwrap().network().unwrap().ip());
                // Networks under ::/96 come back as IPv4: the same bits.
                points.push(first.max(lo));
            }
        }
        for net in nets {
            if net.network().is_ipv6() != v6 {
                continue;
            }
            let first = as_u128(net.network());
            let after = as_u128(net.broadcast()).checked_add(1);
            points.extend([Some(first), after].into_iter().flatten());
        }
        points.retain(|p| lo <= *p && *p <= hi);
        points.sort_unstable();
        points.dedup();
        points.into_iter().map(|p| from_u128(v6, p)).collect()
    }
}

/// Clients worth asking about: both ends of every City and ASN network and the addresses
/// beside them, IPv4-mapped and 6to4 forms of IPv4 ones, and random addresses.
fn clients(oracle: &Oracle, seed: u64) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let opts = maxminddb::WithinOptions::default().include_networks_without_data();
    for db in [&oracle.city, &oracle.asn] {
        for n in db.networks(opts).unwrap() {
            let net = n.unwrap().network().unwrap();
            let v6 = net.ip().is_ipv6();
            let first = as_u128(net.ip());
            let width: u8 = if v6 { 128 } else { 32 };
            let last = first
                | (u128::MAX >> (128 - width))
                    .checked_shr(net.prefix().into())
                    .unwrap_or(0);
            for x in [
                Some(first),
                Some(last),
                first.checked_sub(1),
                last.checked_add(1),
            ]
            .into_iter()
            .flatten()
            {
                if v6 || x <= u128::from(u32::MAX) {
                    out.push(from_u128(v6, x));
                }
            }
        }
    }
    let mut rng = Rng(seed);
    for _ in 0..2000 {
        out.push(IpAddr::V4(Ipv4Addr::from(rng.next() as u32)));
        let hi = rng.next();
        out.push(IpAddr::V6(Ipv6Addr::from(
            (u128::from(hi) << 64) | u128::from(rng.next()),
        )));
        // 2000::/3, where the test database's IPv6 networks are.
        out.push(IpAddr::V6(Ipv6Addr::from(
            (0x2000u128 << 112) | (u128::from(hi >> 3) << 64),
        )));
    }
    let v4: Vec<Ipv4Addr> = out
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    for (i, v4) in v4.into_iter().enumerate() {
        out.push(IpAddr::V6(v4.to_ipv6_mapped()));
        if i % 4 == 0 {
            let bits = u128::from(u32::from(v4));
            out.push(IpAddr::V6(Ipv6Addr::from(
                (0x2002u128 << 112) | (bits << 80),
            )));
        }
    }
    out
}

/// For every client: every address in the ECS scope returned gets the same outcome as the
/// client (through the same per-query path, whose outcome does not depend on the scope), and
/// a hashed pick never claims more than the network it hashes.
/// Returns how many distinct blocks were checked.
fn assert_scopes_hold(policy_text: &str, overrides: &[Override], seed: u64) -> usize {
    let geo = GeoDb::load(
        &crate::demo::city_db(),
        Some(&crate::demo::asn_db()),
        overrides,
    )
    .unwrap();
    let (h, p) = (HealthView::default(), PerfView::default());
    let policy = policy::parse("p.toml", policy_text).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let oracle = Oracle::new();
    let mut nets: Vec<IpNet> = overrides.iter().map(|o| o.net).collect();
    nets.extend(
        policy
            .geo()
            .iter()
            .flat_map(|g| g.rules.iter())
            .flat_map(|r| r.matches.cidr.iter().copied()),
    );
    let mut checked: HashSet<(IpAddr, u8, OutcomeId)> = HashSet::new();
    for ip in clients(&oracle, seed) {
        let located = geo.locate(ip);
        let d = table.decide(ip, &located, &geo);
        if table.outcome(d.outcome).pick.needs_hash() {
            let hashed = if ip.is_ipv4() { 24 } else { 56 };
            assert!(
                d.scope >= hashed,
                "{ip}: hashed answer with scope /{}",
                d.scope
            );
        }
        let block = (crate::geo::truncate(ip, d.scope), d.scope, d.outcome);
        if !checked.insert(block) {
            continue;
        }
        // Checked against the located path, which reads the records themselves: for tables
        // with ASN or CIDR rules `decide` answers from precomputed runs.
        assert_eq!(
            table.decide_located(ip, &located, &geo).outcome,
            d.outcome,
            "{ip}: the runs and the records disagree"
        );
        for y in oracle.checkpoints(ip, d.scope, &nets) {
            let other = table.decide_located(y, &geo.locate(y), &geo);
            assert_eq!(
                other.outcome, d.outcome,
                "{ip} has scope /{} but {y} inside it gets another outcome",
                d.scope
            );
        }
    }
    checked.len()
}

const CONTINENTS: &str = r#"
name = "c.example.com"
[targets.na]
cname = "na.example.net"
[targets.eu]
cname = "eu.example.net"
[targets.ap]
cname = "ap.example.net"
[[chain]]
kind = "geo"
default = ["na"]
rules = [
  { match = { continent = "EU" }, targets = ["eu"] },
  { match = { continent = ["AS", "OC"] }, targets = ["ap"] },
]
"#;

const COUNTRIES: &str = r#"
name = "k.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[targets.c]
cname = "c.example.net"
[[chain]]
kind = "geo"
default = ["a"]
rules = [
  { match = { country = ["DE", "FR", "CH"] }, targets = ["b"] },
  { match = { country = ["GB", "SE", "US"] }, targets = ["c"] },
  { match = { subdivision = "US-CA" }, targets = ["a"] },
]
"#;

const GEO_WEIGHTED: &str = r#"
name = "gw.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[targets.c]
cname = "c.example.net"
[[chain]]
kind = "geo"
default = ["a", "b"]
rules = [{ match = { continent = ["AS", "OC"] }, targets = ["c", "b"] }]
[[chain]]
kind = "weighted"
weights = { a = 60, b = 40, c = 50 }
"#;

const CIDR_AND_CONTINENT: &str = r#"
name = "x.example.com"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[targets.c]
cname = "c.example.net"
[[chain]]
kind = "geo"
default = ["a"]
rules = [
  { match = { continent = ["AS", "OC"] }, targets = ["b"] },
  { match = { cidr = "214.0.1.0/25" }, targets = ["c"] },
  { match = { cidr = "2a02:d000::/20" }, targets = ["c"] },
  { match = { asn = 721, continent = "AS" }, targets = ["a"] },
]
"#;

fn overrides() -> Vec<Override> {
    let at = |net: &str, continent, country: &[u8; 2]| Override {
        net: net.parse().unwrap(),
        location: Location {
            continent: Some(continent),
            country: Some(*country),
            ..Location::default()
        },
        asn: None,
    };
    vec![
        at("214.0.0.128/25", Continent::Oceania, b"AU"),
        at("81.2.69.0/24", Continent::Europe, b"DE"),
        at("10.1.0.0/16", Continent::Asia, b"SG"),
        at("2a02:d000::/28", Continent::Asia, b"SG"),
        Override {
            asn: Some(1221),
            ..at("192.0.2.0/24", Continent::Europe, b"FR")
        },
    ]
}

#[test]
fn merged_scopes_never_cover_an_address_with_another_outcome() {
    for (name, text) in [
        ("rules", RULES),
        ("continents", CONTINENTS),
        ("countries", COUNTRIES),
        ("geo+weighted", GEO_WEIGHTED),
        ("cidr+continent", CIDR_AND_CONTINENT),
        ("weighted", WEIGHTED),
    ] {
        for (seed, overrides) in [(1, Vec::new()), (2, overrides())] {
            let blocks = assert_scopes_hold(text, &overrides, seed);
            assert!(blocks > 100, "{name}: only {blocks} blocks checked");
        }
    }
}

fn scope_of(text: &str, ip: &str) -> (u8, u8) {
    let geo = geo();
    let (h, p) = (HealthView::default(), PerfView::default());
    let policy = policy::parse("p.toml", text).unwrap();
    let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
    let ip: IpAddr = ip.parse().unwrap();
    let located = geo.locate(ip);
    (table.decide(ip, &located, &geo).scope, located.geo_prefix)
}

#[test]
fn neighbours_a_policy_answers_alike_share_one_scope() {
    // 214.0.0.0/24 (SG, Asia) and 214.0.1.0/24 (AU, Oceania): one answer for a policy that
    // groups Asia with Oceania, so the scope is the /23; two for one that does not.
    assert_eq!(scope_of(CONTINENTS, "214.0.1.1"), (23, 24));
    assert_eq!(scope_of(CONTINENTS, "214.0.0.1"), (23, 24));
    assert_eq!(
        scope_of(COUNTRIES, "214.0.1.1").0,
        23,
        "neither country has a rule"
    );
    let split = CONTINENTS.replace(r#"continent = ["AS", "OC"]"#, r#"continent = "OC""#);
    assert_eq!(scope_of(&split, "214.0.1.1"), (24, 24));
    // A hashed pick holds for its /24 only, however wide the geo part is.
    assert_eq!(scope_of(GEO_WEIGHTED, "214.0.1.1").0, 24);
}

#[test]
fn unlocated_neighbours_are_not_swallowed() {
    // GB-ENG from 81.2.69.142 to .207, but .128-.141 is not in the database: /31 it stays,
    // for a policy that answers GB like the default, too (not located is its own outcome).
    assert_eq!(scope_of(COUNTRIES, "81.2.69.142"), (31, 31));
    assert_eq!(scope_of(CONTINENTS, "81.2.69.150"), (28, 28));
    // Unlocated beside unlocated merges: 8.0.0.0/5 has no record.
    assert_eq!(scope_of(CONTINENTS, "10.0.0.1"), (5, 8));
    // A record with no location fields (214.1.1.0/24) is not "not located".
    assert_eq!(scope_of(CONTINENTS, "214.1.1.1"), (24, 24));
}

#[test]
fn ipv4_mapped_clients_are_scoped_as_ipv4() {
    assert_eq!(scope_of(CONTINENTS, "::ffff:214.0.1.1"), (96 + 23, 96 + 24));
    // 6to4 is answered from the IPv4 tree too, but not merged: the record's network.
    let (scope, record) = scope_of(CONTINENTS, "2002:d600:0101::");
    assert_eq!(scope, record);
}

/// Classes that differ only in what a chain does not read share one evaluation; the table
/// must still hold, for every class, exactly what evaluating that class gives.
#[test]
fn shared_evaluations_give_every_class_its_own_outcome() {
    let geo = geo();
    let (health, perf) = (HealthView::default(), PerfView::default());
    let inputs = inputs(&health, &perf);
    let without_subdivisions = RULES.replace(
        "{ match = { subdivision = \"US-WA\" }, targets = [\"wa\"] },",
        "",
    );
    for text in [RULES, without_subdivisions.as_str()] {
        let policy = policy::parse("test", text).unwrap();
        let (table, _) = compile(&policy, &geo, &inputs);
        let classes = geo.classes().iter().map(Some).chain(std::iter::once(None));
        for (class, location) in classes.enumerate() {
            let client = Client {
                location,
                ..Client::default()
            };
            let direct = policy::evaluate(&policy, &client, &inputs, &mut Trace::off());
            let stored = table.outcome(table.by_class()[class]);
            assert_eq!(stored.pick, direct.pick, "{location:?}");
        }
    }
}

/// Deciding from the precomputed runs alone (no database lookup) gives exactly the decision
/// of the located path, for every client worth asking about, with and without overrides; and
/// it really answers most of them.
#[test]
fn deciding_without_a_lookup_matches_the_located_path() {
    let oracle = Oracle::new();
    let (h, p) = (HealthView::default(), PerfView::default());
    for (name, text) in [
        ("continents", CONTINENTS),
        ("countries", COUNTRIES),
        ("geo+weighted", GEO_WEIGHTED),
        ("weighted", WEIGHTED),
        ("rules", RULES),
        ("cidr+continent", CIDR_AND_CONTINENT),
    ] {
        for (seed, overrides) in [(3, Vec::new()), (4, overrides())] {
            let geo = GeoDb::load(
                &crate::demo::city_db(),
                Some(&crate::demo::asn_db()),
                &overrides,
            )
            .unwrap();
            let policy = policy::parse("p.toml", text).unwrap();
            let (table, _) = compile(&policy, &geo, &inputs(&h, &p));
            let rows = table.by_rows.is_some();
            assert_eq!(
                rows,
                text == RULES || text == CIDR_AND_CONTINENT,
                "{name}: outcome runs only for tables with ASN or CIDR rules"
            );
            let clients = clients(&oracle, seed);
            let mut direct = 0;
            for ip in &clients {
                let Some(d) = table.decide_without_lookup(*ip) else {
                    continue;
                };
                direct += 1;
                let located = table.decide_located(*ip, &geo.locate(*ip), &geo);
                if rows {
                    // The runs' scope is the widest network of one outcome: never narrower
                    // than the records' (whose network is of one outcome too);
                    // `assert_scopes_hold` checks that it holds.
                    assert_eq!(d.outcome, located.outcome, "{name}: {ip}");
                    assert!(
                        d.scope <= located.scope,
                        "{name}: {ip}: runs /{} narrower than the records' /{}",
                        d.scope,
                        located.scope
                    );
                } else {
                    assert_eq!(d, located, "{name}: {ip}");
                }
            }
            assert!(
                direct * 2 > clients.len(),
                "{name}: only {direct} of {} decided without a lookup",
                clients.len()
            );
        }
    }
}
