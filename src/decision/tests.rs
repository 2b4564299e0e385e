//! Table-driven decisions on the bundled test databases (facts: tests/fixtures/geoip/README.md).

use std::net::IpAddr;

use super::*;
use crate::policy;

fn geo() -> GeoDb {
    GeoDb::load(&crate::demo::city_db(), Some(&crate::demo::asn_db()), &[]).unwrap()
}

const POLICY: &str = r#"
name = "www.example.com"
default = "dflt"
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
[[rules]]
match = { continent = "NA" }
target = "na"
[[rules]]
match = { continent = "EU" }
target = "eu"
[[rules]]
match = { country = "GB" }
target = "gb"
[[rules]]
match = { subdivision = "US-WA" }
target = "wa"
[[rules]]
match = { asn = 1221 }
target = "asn"
[[rules]]
match = { asn = 6167, country = "US" }
target = "asn-us"
[[rules]]
match = { cidr = "81.2.69.192/26" }
target = "lab"
"#;

#[test]
fn most_specific_rule_wins_and_scope_is_right() {
    let geo = geo();
    let policy = policy::parse("p.toml", POLICY).unwrap();
    let table = compile(&policy, &geo);
    // (client, target, reason, scope)
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
        ("10.0.0.1", "dflt", Reason::NoGeo, 8),
        ("175.16.199.1", "dflt", Reason::Default, 24),
        ("2a02:d180::", "eu", Reason::Geo, 29),
        ("2001:480:10::1", "na", Reason::Geo, 48),
    ];
    for (ip, target, reason, scope) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        let d = table.decide(ip, &geo.locate(ip), &geo);
        assert_eq!(policy.target(d.choice.target).id, target, "{ip}");
        assert_eq!(d.choice.reason, reason, "{ip}");
        assert_eq!(d.scope, scope, "{ip}");
    }
}

#[test]
fn an_untailored_policy_has_scope_zero() {
    let geo = geo();
    let text =
        "name = \"x.example.com\"\ndefault = \"a\"\n[targets.a]\ncname = \"a.example.net\"\n";
    let policy = policy::parse("p.toml", text).unwrap();
    let table = compile(&policy, &geo);
    assert!(!table.is_tailored());
    let ip: IpAddr = "81.2.69.142".parse().unwrap();
    let d = table.decide(ip, &geo.locate(ip), &geo);
    assert_eq!(d.scope, 0);
    assert_eq!(d.choice.reason, Reason::Default);
    assert_eq!(table.fallback().scope, 0);
}

#[test]
fn nested_cidr_rules_narrow_the_scope() {
    let geo = geo();
    let text = r#"
name = "x.example.com"
default = "a"
[targets.a]
cname = "a.example.net"
[targets.b]
cname = "b.example.net"
[targets.c]
cname = "c.example.net"
[[rules]]
match = { cidr = "10.0.0.0/8" }
target = "b"
[[rules]]
match = { cidr = "10.1.2.0/24" }
target = "c"
"#;
    let policy = policy::parse("p.toml", text).unwrap();
    let table = compile(&policy, &geo);
    let cases = [
        // In the /8 but beside the /24: common prefix with 10.1.2.0 is 15 bits → scope 16.
        ("10.0.0.1", "b", 16),
        ("10.1.2.3", "c", 24),
        // 10.128.0.0/9 holds no /24 rule, so the answer holds for the /9.
        ("10.200.0.1", "b", 9),
        // Outside both: must not cover 10.0.0.0/8 → scope ≥ cpl(11.x, 10.x)+1 = 8.
        ("11.0.0.1", "a", 8),
    ];
    for (ip, target, scope) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        let d = table.decide(ip, &geo.locate(ip), &geo);
        assert_eq!(policy.target(d.choice.target).id, target, "{ip}");
        assert_eq!(d.scope, scope, "{ip}");
    }
}
