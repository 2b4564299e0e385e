use hickory_proto::rr::{LowerName, RecordType};

use super::*;

const ZONE: &str = "\
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 604800 60
@ IN NS ns1
ns1 IN A 192.0.2.53
www IN A 192.0.2.1
alias IN CNAME www
a.b.c IN TXT \"deep\"
sub IN NS ns.sub
ns.sub IN A 192.0.2.54
";

fn zone() -> Zone {
    Zone::parse(
        "Example.COM",
        &[ZoneText {
            source_name: "example.com.zone".into(),
            text: ZONE.into(),
        }],
    )
    .unwrap()
}

fn name(s: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(s).unwrap())
}

#[test]
fn lookups() {
    let z = zone();
    assert_eq!(z.origin().to_string(), "example.com.");
    assert!(
        matches!(z.lookup(&name("www.example.com."), RecordType::A), Lookup::Answer(r) if r.len() == 1)
    );
    assert!(matches!(
        z.lookup(&name("WWW.example.com."), RecordType::AAAA),
        Lookup::NoData
    ));
    assert!(matches!(
        z.lookup(&name("alias.example.com."), RecordType::A),
        Lookup::Cname(_)
    ));
    assert!(matches!(
        z.lookup(&name("alias.example.com."), RecordType::CNAME),
        Lookup::Answer(_)
    ));
    assert!(matches!(
        z.lookup(&name("nope.example.com."), RecordType::A),
        Lookup::NxDomain
    ));
    // b.c and c are empty non-terminals: they exist.
    assert!(matches!(
        z.lookup(&name("b.c.example.com."), RecordType::A),
        Lookup::NoData
    ));
    assert!(matches!(
        z.lookup(&name("c.example.com."), RecordType::A),
        Lookup::NoData
    ));
    assert!(
        matches!(z.lookup(&name("example.com."), RecordType::ANY), Lookup::Answer(r) if r.len() == 1)
    );
    match z.lookup(&name("host.sub.example.com."), RecordType::A) {
        Lookup::Referral { ns, glue } => {
            assert_eq!(ns.len(), 1);
            assert_eq!(glue.len(), 1);
        }
        other => panic!("expected referral, got {other:?}"),
    }
}

#[test]
fn negative_soa_ttl_is_the_minimum() {
    let z = zone();
    assert_eq!(z.soa().ttl, 300);
    assert_eq!(z.negative_soa().ttl, 60);
}

#[test]
fn errors_name_source_and_line() {
    let bad = ZONE.replace("www IN A 192.0.2.1", "www IN A 192.0.2.300");
    let e = Zone::parse(
        "example.com",
        &[ZoneText {
            source_name: "z.zone".into(),
            text: bad,
        }],
    )
    .unwrap_err();
    assert_eq!(e.source_name, "z.zone:5", "{e}");

    let no_soa = ZONE
        .lines()
        .filter(|l| !l.contains("SOA"))
        .collect::<Vec<_>>()
        .join("\n");
    let e = Zone::parse(
        "example.com",
        &[ZoneText {
            source_name: "z.zone".into(),
            text: no_soa,
        }],
    )
    .unwrap_err();
    assert!(e.reason.contains("no SOA"), "{e}");

    let cname_and_a = format!("{ZONE}alias IN A 192.0.2.9\n");
    let e = Zone::parse(
        "example.com",
        &[ZoneText {
            source_name: "z.zone".into(),
            text: cname_and_a,
        }],
    )
    .unwrap_err();
    assert!(e.reason.contains("CNAME and other records"), "{e}");

    let outside = format!("{ZONE}www.example.org. IN A 192.0.2.9\n");
    let e = Zone::parse(
        "example.com",
        &[ZoneText {
            source_name: "z.zone".into(),
            text: outside,
        }],
    )
    .unwrap_err();
    assert!(e.reason.contains("outside the zone"), "{e}");
}

#[test]
fn steerable_names() {
    let z = zone();
    let n = |s: &str| Name::from_ascii(s).unwrap();
    assert!(
        z.check_steerable(&n("www.example.com."))
            .unwrap_err()
            .contains("static records")
    );
    assert!(
        z.check_steerable(&n("example.com."))
            .unwrap_err()
            .contains("apex")
    );
    assert!(
        z.check_steerable(&n("cdn.example.org."))
            .unwrap_err()
            .contains("not in zone")
    );
    assert!(
        z.check_steerable(&n("x.sub.example.com."))
            .unwrap_err()
            .contains("delegation")
    );
    z.check_steerable(&n("x.y.example.com.")).unwrap();
}
