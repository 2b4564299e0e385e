//! Table-driven checks against the facts in tests/fixtures/geoip/README.md.

use std::net::IpAddr;

use super::*;

fn db() -> GeoDb {
    GeoDb::load(&crate::demo::city_db(), Some(&crate::demo::asn_db()), &[]).unwrap()
}

#[test]
fn locations_match_the_fixture_facts() {
    let db = db();
    // (ip, continent, country, subdivision, record prefix)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        u8,
    );
    let cases: &[Case] = &[
        ("81.2.69.142", Some("EU"), Some("GB"), Some("ENG"), 31),
        ("2.125.160.216", Some("EU"), Some("GB"), Some("ENG"), 29),
        ("89.160.20.128", Some("EU"), Some("SE"), Some("E"), 25),
        ("216.160.83.56", Some("NA"), Some("US"), Some("WA"), 29),
        ("214.0.1.1", Some("OC"), Some("AU"), Some("VIC"), 24),
        ("2001:218::1", Some("AS"), Some("JP"), None, 32),
        ("2a02:d500::1", Some("EU"), None, None, 29),
        (
            "::ffff:81.2.69.142",
            Some("EU"),
            Some("GB"),
            Some("ENG"),
            127,
        ),
    ];
    for (ip, continent, country, sub, prefix) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        let found = db.locate(ip);
        let loc = db.location(found.loc.unwrap_or_else(|| panic!("{ip} not found")));
        assert_eq!(loc.continent.map(Continent::code), *continent, "{ip}");
        assert_eq!(loc.country_code(), *country, "{ip}");
        assert_eq!(loc.subdivision.as_deref(), *sub, "{ip}");
        assert_eq!(found.geo_prefix, *prefix, "{ip}");
    }
}

#[test]
fn record_without_geo_fields_is_found_but_empty() {
    let db = db();
    let found = db.locate("214.1.1.1".parse().unwrap());
    let loc = db.location(found.loc.unwrap());
    assert_eq!(loc.continent, None);
    assert_eq!(loc.country, None);
}

#[test]
fn not_found_reports_the_empty_network() {
    let db = db();
    let found = db.locate("10.0.0.1".parse().unwrap());
    assert_eq!(found.loc, None);
    assert_eq!(found.geo_prefix, 8);
    // The /24 network address of a fact finer than /24 misses the DB.
    let found = db.locate("81.2.69.0".parse().unwrap());
    assert_eq!(found.loc, None);
    assert_eq!(found.geo_prefix, 25);
}

#[test]
fn asns_match_the_fixture_facts() {
    let db = db();
    let cases = [
        ("1.128.0.1", Some(1221), 11),
        ("89.160.20.128", Some(29518), 17),
        ("216.160.83.56", Some(209), 18),
        ("2001:1700::1", Some(6730), 27),
        ("149.101.100.1", Some(6167), 28),
        ("81.2.69.142", None, 9),
    ];
    for (ip, asn, prefix) in cases {
        let found = db.locate(ip.parse().unwrap());
        assert_eq!(found.asn, asn, "{ip}");
        assert_eq!(found.asn_prefix, prefix, "{ip}");
    }
    assert_eq!(
        db.asn_organisation("1.128.0.1".parse().unwrap()).as_deref(),
        Some("Telstra Pty Ltd")
    );
}

#[test]
fn same_record_same_location_id() {
    let db = db();
    let a = db.locate("81.2.69.142".parse().unwrap()).loc;
    let b = db.locate("::ffff:81.2.69.142".parse().unwrap()).loc;
    assert!(a.is_some());
    assert_eq!(a, b);
}

#[test]
fn a_country_database_works_as_city_db() {
    let source = DbSource::File("tests/fixtures/geoip/GeoIP2-Country-Test.mmdb".into());
    let db = GeoDb::load(&source, None, &[]).unwrap();
    let found = db.locate("81.2.69.142".parse().unwrap());
    assert_eq!(db.location(found.loc.unwrap()).country_code(), Some("GB"));
    assert_eq!(found.asn, None);
}

#[test]
fn wrong_database_types_are_rejected_with_names() {
    let asn = crate::demo::asn_db();
    let err = GeoDb::load(&asn, None, &[]).unwrap_err().to_string();
    assert!(
        err.contains("GeoLite2-ASN-Test") && err.contains("City or Country"),
        "{err}"
    );

    let city = crate::demo::city_db();
    let err = GeoDb::load(&city, Some(&city), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ASN database"), "{err}");

    let missing = DbSource::File("/nonexistent/GeoLite2-City.mmdb".into());
    let err = GeoDb::load(&missing, None, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with("/nonexistent/GeoLite2-City.mmdb: cannot read"),
        "{err}"
    );

    let garbage = DbSource::File("Cargo.toml".into());
    let err = GeoDb::load(&garbage, None, &[]).unwrap_err().to_string();
    assert!(err.contains("not a valid MaxMind DB"), "{err}");
}

#[test]
fn overrides_win_and_narrow_neighbouring_answers() {
    let berlin = Override {
        net: "81.2.69.0/24".parse().unwrap(),
        location: Location {
            continent: Some(Continent::Europe),
            country: Some(*b"DE"),
            subdivision: Some("BE".into()),
            ..Location::default()
        },
        asn: Some(64512),
    };
    let lab = Override {
        net: "10.1.0.0/16".parse().unwrap(),
        location: Location {
            country: Some(*b"SE"),
            ..Location::default()
        },
        asn: None,
    };
    let db = GeoDb::load(
        &crate::demo::city_db(),
        Some(&crate::demo::asn_db()),
        &[berlin, lab],
    )
    .unwrap();
    // Inside the override: its location and ASN, its prefix.
    let found = db.locate("81.2.69.142".parse().unwrap());
    assert_eq!(db.location(found.loc.unwrap()).country_code(), Some("DE"));
    assert_eq!(
        (found.asn, found.geo_prefix, found.asn_prefix),
        (Some(64512), 24, 24)
    );
    // Override without an ASN: the ASN database still answers.
    let found = db.locate("10.1.2.3".parse().unwrap());
    assert_eq!(db.location(found.loc.unwrap()).country_code(), Some("SE"));
    assert_eq!(found.asn, None);
    // Outside: the database answers, but not for a network that would cover the override.
    let found = db.locate("10.0.0.1".parse().unwrap());
    assert_eq!(found.loc, None);
    assert_eq!(found.geo_prefix, 16, "10.0.0.0/8 would cover 10.1.0.0/16");
}
