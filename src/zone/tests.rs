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

/// The fast path's name index: zone, existence and what makes the full path answer instead.
#[test]
fn name_index_finds_closest_enclosers() {
    let zones = Zones::new(vec![zone()]).unwrap();
    let names = zones.names();
    let key = |s: &str| crate::wire::name_key(&Name::from_ascii(s).unwrap());
    let absence = |s: &str| names.absence(&key(s)).map(|a| (a.exists, a.wildcard));
    assert_eq!(absence("nope.example.com."), Some((false, false)));
    assert_eq!(absence("x.y.a.b.c.example.com."), Some((false, false)));
    assert_eq!(absence("b.c.example.com."), Some((true, false)));
    assert_eq!(absence("example.com."), Some((true, false)));
    assert_eq!(absence("x.alias.example.com."), Some((false, false)));
    // Referrals, aliases, other zones: the full path's.
    assert_eq!(absence("sub.example.com."), None);
    assert_eq!(absence("ns.sub.example.com."), None);
    assert_eq!(absence("x.y.sub.example.com."), None);
    assert_eq!(absence("alias.example.com."), None);
    assert_eq!(absence("example.org."), None);
    assert_eq!(absence("com."), None);
    let soa = names.absence(&key("nope.example.com.")).unwrap().soa;
    assert_eq!(&*soa.owner_key, b"\x07example\x03com\x00");
    assert_eq!(&*soa.mname, b"\x03ns1\x07example\x03com");
    // TTL min(300, 60), then SERIAL 1 ... MINIMUM 60.
    assert_eq!(soa.head, [0, 6, 0, 1, 0, 0, 0, 60]);
    assert_eq!(soa.tail[..4], [0, 0, 0, 1]);

    let wild = Zone::parse(
        "example.com",
        &[ZoneText {
            source_name: "wild".into(),
            text: format!("{ZONE}*.w IN A 192.0.2.9\n"),
        }],
    )
    .unwrap();
    let zones = Zones::new(vec![wild]).unwrap();
    let wildcard = |s: &str| {
        zones
            .names()
            .absence(&key(s))
            .map(|a| (a.exists, a.wildcard))
    };
    assert_eq!(wildcard("x.w.example.com."), Some((false, true)));
    assert_eq!(wildcard("w.example.com."), Some((true, false)));
    assert_eq!(wildcard("x.nope.example.com."), Some((false, false)));
}
