//! Table-driven checks against the facts in tests/fixtures/geoip/README.md.

use std::net::IpAddr;

use super::*;
use scope::Bits as _;

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

// ---- ECS scope runs (scope.rs) ----

use super::scope::{NOT_LOCATED, OPAQUE, Runs, RunsBuilder};

/// splitmix64: a deterministic stream of test addresses without a dependency.
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

/// Runs from (first, prefix, label) networks in order.
fn runs(networks: &[(u32, u8, u32)]) -> Runs<u32> {
    let mut b = RunsBuilder::new();
    for (first, prefix, label) in networks {
        b.network(*first, *prefix, *label);
    }
    b.finish()
}

/// Add `[from, to)` (to = 2^32 for the top) as aligned networks, as a database walk yields them.
fn cover(b: &mut RunsBuilder<u32>, from: u64, to: u64, label: u32) {
    let mut at = from;
    while at < to {
        let mut size = if at == 0 {
            1u64 << 32
        } else {
            1u64 << at.trailing_zeros()
        };
        while at + size > to {
            size >>= 1;
        }
        b.network(at as u32, 32 - size.trailing_zeros() as u8, label);
        at += size;
    }
}

#[test]
fn the_widest_network_inside_a_run_is_aligned_and_maximal() {
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        // Runs narrow and wide, anywhere: label 1 on [first, last], 2 around it.
        let a = rng.next() as u32;
        let b = a.saturating_add((rng.next() as u32) >> (rng.next() % 32));
        let (first, last) = (u64::from(a.min(b)), u64::from(a.max(b)));
        let mut builder = RunsBuilder::new();
        cover(&mut builder, 0, first, 2);
        cover(&mut builder, first, last + 1, 1);
        cover(&mut builder, last + 1, 1 << 32, 2);
        let r = builder.finish();
        let x = (first + rng.next() % (last - first + 1)) as u32;
        let p = r.widest(x).expect("described space");
        let block = |p: u8| {
            let lo = x & u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            let hi = lo | u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
            (u64::from(lo), u64::from(hi))
        };
        let (lo, hi) = block(p);
        assert!(
            first <= lo && hi <= last,
            "{x:#x} in [{first:#x},{last:#x}]: /{p}"
        );
        if p > 0 {
            let (lo, hi) = block(p - 1);
            assert!(lo < first || hi > last, "{x:#x}: /{} also fits", p - 1);
        }
    }
}

#[test]
fn runs_merge_equal_neighbours_and_leave_gaps_opaque() {
    let r = runs(&[(0, 1, 5), (0x8000_0000, 2, 5), (0xc000_0000, 3, 6)]);
    // 0/1 and 128/2 are one run of 5; 224/3 was never yielded.
    assert_eq!(r.run_at(0x9000_0000), (0, Some(0xc000_0000), 5));
    assert_eq!(r.widest(0x1000_0000), Some(1));
    assert_eq!(
        r.widest(0x9000_0000),
        Some(2),
        "128.0.0.0/1 would take in 192/3"
    );
    assert_eq!(r.run_at(0xe000_0001), (0xe000_0000, None, OPAQUE));
    assert_eq!(r.widest(0xe000_0001), None);
    assert_eq!(r.len(), 3);
}

#[test]
fn overlays_paint_the_innermost_network() {
    let base = runs(&[(0, 0, NOT_LOCATED)]);
    // Nested networks: the innermost wins (locate's order, most specific first), and of the
    // same network twice the first listed.
    let layer = Runs::nested(&[
        (0x0a01_0000, 0x0a01_ffff, 2),
        (0x0a00_0000, 0x0aff_ffff, 1),
        (0x0a01_0000, 0x0a01_00ff, 3),
        (0x0a01_0000, 0x0a01_00ff, 4),
    ]);
    let painted = base.overlay(&layer, |l| l + 10);
    assert_eq!(painted.run_at(0x0a00_0001).2, 11);
    assert_eq!(painted.run_at(0x0a01_0001).2, 13, "the /24 inside the /16");
    assert_eq!(painted.run_at(0x0a01_0101).2, 12);
    assert_eq!(
        painted.run_at(0x0a02_0000).2,
        11,
        "the /8 again after the /16"
    );
    assert_eq!(painted.run_at(0x0b00_0000).2, NOT_LOCATED);
    assert_eq!(painted.widest(0x0a80_0000), Some(9));
    assert_eq!(
        painted.widest(0x0900_0000),
        Some(7),
        "8.0.0.0/7 stops short of 10/8"
    );
    assert_eq!(painted.len(), 6);
}

#[test]
fn nested_runs_agree_with_a_search_of_every_network() {
    // Random CIDR networks in a small corner of the space, and every address in it.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..50 {
        let layer: Vec<(u32, u32, u32)> = (0..40)
            .map(|i| {
                let prefix = 22 + (next() % 11) as u32;
                let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
                let first = 0x0a00_0000 | (next() as u32 & 0x3ff & !host);
                (first, first | host, i)
            })
            .collect();
        let runs = Runs::nested(&layer);
        for x in (0x0a00_0000u32..0x0a00_0400).chain([0, 0x0a00_0400, u32::MAX]) {
            let expected = layer
                .iter()
                .filter(|(f, l, _)| *f <= x && x <= *l)
                .min_by_key(|(f, l, i)| (l - f, *i))
                .map_or(OPAQUE, |(_, _, label)| *label);
            assert_eq!(runs.run_at(x).2, expected, "{x:#x} in {layer:x?}");
        }
    }
}

fn scope_db(overrides: &[Override]) -> GeoDb {
    GeoDb::load(
        &crate::demo::city_db(),
        Some(&crate::demo::asn_db()),
        overrides,
    )
    .unwrap()
}

fn place(cidr: &str, country: &[u8; 2], subdivision: &str) -> Override {
    Override {
        net: cidr.parse().unwrap(),
        location: Location {
            continent: Some(Continent::Europe),
            country: Some(*country),
            subdivision: Some(subdivision.into()),
        },
        asn: None,
    }
}

#[test]
fn class_scope_merges_neighbouring_networks_of_one_class() {
    // Two /25s of one class (different cities) are one /24; the /24 beside them is another
    // class, so the scope stops there.
    let db = scope_db(&[
        place("10.0.0.0/25", b"DE", "BE"),
        place("10.0.0.128/25", b"DE", "BE"),
        place("10.0.1.0/24", b"FR", "IDF"),
    ]);
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(db.locate(ip).geo_prefix, 25, "the record's own network");
    assert_eq!(db.class_scope(ip), Some(24));
    assert_eq!(db.class_scope("10.0.1.7".parse().unwrap()), Some(24));
    // Not located beside them: 10.0.2.0/23 and up, down to 10.0.0.0/8's edge.
    assert_eq!(db.class_scope("10.0.2.1".parse().unwrap()), Some(23));
    assert_eq!(db.class_scope("10.128.0.1".parse().unwrap()), Some(9));
}

#[test]
fn class_scope_never_swallows_unlocated_gaps() {
    let db = scope_db(&[]);
    // 81.2.69.142/31 is GB-ENG and so is everything up to 81.2.69.207, but 81.2.69.128-141 is
    // not in the database: /31 it stays.
    assert_eq!(db.class_scope("81.2.69.142".parse().unwrap()), Some(31));
    // 81.2.69.144/28: widening to /27 would take in the unlocated .128.
    assert_eq!(db.class_scope("81.2.69.150".parse().unwrap()), Some(28));
    assert_eq!(db.class_scope("81.2.69.0".parse().unwrap()), Some(25));
    // Unlocated beside unlocated is one class: the database's 10.0.0.0/8 is one of several
    // empty networks that make up 8.0.0.0/5.
    assert_eq!(db.locate("10.0.0.1".parse().unwrap()).geo_prefix, 8);
    assert_eq!(db.class_scope("10.0.0.1".parse().unwrap()), Some(5));
}

#[test]
fn ipv6_aliases_of_the_ipv4_tree() {
    let db = scope_db(&[place("81.2.69.0/24", b"DE", "BE")]);
    // IPv4-mapped: scoped as IPv4 + 96, overrides included (as locate places them).
    assert_eq!(
        db.class_scope("::ffff:81.2.69.142".parse().unwrap()),
        Some(120)
    );
    assert_eq!(
        db.locate("::ffff:81.2.69.142".parse().unwrap()).geo_prefix,
        120
    );
    assert_eq!(
        db.class_scope("::ffff:10.0.0.1".parse().unwrap()),
        Some(96 + 5)
    );
    // The other aliases (IPv4-compatible, Teredo, 6to4) are not described: callers fall back
    // to the record's own network.
    for ip in ["::81.2.69.142", "2001:0:5102:458e::", "2002:5102:458e::"] {
        assert_eq!(db.class_scope(ip.parse().unwrap()), None, "{ip}");
    }
    // Plain IPv6 is described, and an alias never widens a neighbour's scope.
    assert_eq!(db.class_scope("2a02:d180::1".parse().unwrap()), Some(29));
    let before_6to4: IpAddr = "2001:ffff::1".parse().unwrap();
    let p = db.class_scope(before_6to4).unwrap();
    assert!(p >= 16, "2001:ffff::1 /{p} would cover 2002::/16");
    for (ip, run) in [
        ("::1.2.3.4", (0u128, Some(1u128 << 32))),
        ("::ffff:1.2.3.4", (0xffff << 32, Some(1 << 48))),
        (
            "2001::1",
            (0x2001 << 112, Some((0x2001 << 112) + (1 << 96))),
        ),
        ("2002::1", (0x2002 << 112, Some(0x2003 << 112))),
    ] {
        let ip: std::net::Ipv6Addr = ip.parse().unwrap();
        let (first, next, label) = db.runs_v6.expand().run_at(u128::from(ip));
        assert_eq!((first, next, label), (run.0, run.1, OPAQUE), "{ip}");
    }
}

#[test]
fn a_v4_only_view_of_space_the_database_lacks_is_opaque() {
    // A Country database has no cities but the same tree shape: everything is described.
    let source = DbSource::File("tests/fixtures/geoip/GeoIP2-Country-Test.mmdb".into());
    let db = GeoDb::load(&source, None, &[]).unwrap();
    let mut rng = Rng(3);
    for _ in 0..1000 {
        let ip = IpAddr::V4((rng.next() as u32).into());
        let p = db.class_scope(ip).expect("IPv4 is described");
        assert!(
            p <= db.locate(ip).geo_prefix,
            "{ip}: merged /{p} narrower than its record"
        );
    }
}

/// The oracle for `locate`: the record maxminddb itself decodes at `ip` (full structs, none of
/// our record code), as (continent, country, subdivision) codes and the ASN.
type Decoded = (Option<String>, Option<String>, Option<String>, Option<u32>);

fn decoded_at(city: &Reader<Vec<u8>>, asn: &Reader<Vec<u8>>, ip: IpAddr) -> Decoded {
    let place = city
        .lookup(ip)
        .ok()
        .and_then(|f| f.decode::<geoip2::City>().ok().flatten());
    let number = asn
        .lookup(ip)
        .ok()
        .and_then(|f| f.decode::<geoip2::Asn>().ok().flatten())
        .and_then(|a| a.autonomous_system_number);
    match place {
        None => (None, None, None, number),
        Some(c) => (
            c.continent.code.map(str::to_owned),
            c.country.iso_code.map(str::to_owned),
            c.subdivisions
                .first()
                .and_then(|s| s.iso_code)
                .map(str::to_owned),
            number,
        ),
    }
}

fn located_as_decoded(db: &GeoDb, ip: IpAddr) -> Decoded {
    let found = db.locate(ip);
    match found.loc.map(|l| db.location(l)) {
        None => (None, None, None, found.asn),
        Some(l) => (
            l.continent.map(|c| c.code().to_owned()),
            l.country_code().map(str::to_owned),
            l.subdivision.as_deref().map(str::to_owned),
            found.asn,
        ),
    }
}

#[test]
fn locate_agrees_with_the_records_maxminddb_decodes() {
    // `locate` answers from the runs (and decodes only in the IPv6 aliases of the IPv4 tree):
    // check it against maxminddb's own decoding at the first, middle and last address of every
    // network of both databases, each IPv4 one also in its four IPv6 aliases, and at random.
    let city =
        Reader::from_source(std::fs::read("tests/fixtures/geoip/GeoIP2-City-Test.mmdb").unwrap())
            .unwrap();
    let asn =
        Reader::from_source(std::fs::read("tests/fixtures/geoip/GeoLite2-ASN-Test.mmdb").unwrap())
            .unwrap();
    let db = db();
    let mut addresses: Vec<IpAddr> = Vec::new();
    for reader in [&city, &asn] {
        let walk = WithinOptions::default().include_networks_without_data();
        for network in reader.networks(walk).unwrap() {
            let net = network.unwrap().network().unwrap();
            match net.ip() {
                IpAddr::V4(first) => {
                    let first = u32::from(first);
                    let last = first.last_of(net.prefix());
                    for a in [first, first + (last - first) / 2, last] {
                        let v4 = std::net::Ipv4Addr::from(a);
                        let hi = u128::from(a);
                        addresses.push(IpAddr::V4(v4));
                        addresses.push(IpAddr::V6(v4.to_ipv6_mapped()));
                        addresses.push(IpAddr::V6(hi.into())); // ::a.b.c.d
                        addresses.push(IpAddr::V6(((0x2002u128 << 112) | (hi << 80)).into()));
                        addresses.push(IpAddr::V6(((0x2001u128 << 112) | (hi << 64)).into()));
                    }
                }
                IpAddr::V6(first) => {
                    let first = u128::from(first);
                    let last = first.last_of(net.prefix());
                    for a in [first, first + (last - first) / 2, last] {
                        addresses.push(IpAddr::V6(a.into()));
                    }
                }
            }
        }
    }
    let mut rng = Rng(11);
    for _ in 0..20_000 {
        let x = rng.next();
        addresses.push(IpAddr::V4((x as u32).into()));
        addresses.push(IpAddr::V6(
            (u128::from(x) << 64 | u128::from(rng.next())).into(),
        ));
    }
    let mut aliases_located = 0;
    for ip in &addresses {
        let want = decoded_at(&city, &asn, *ip);
        assert_eq!(located_as_decoded(&db, *ip), want, "{ip}");
        if matches!(ip, IpAddr::V6(v6) if v6.segments()[0] == 0x2002) && want.1.is_some() {
            aliases_located += 1;
        }
    }
    // The aliases were reached, not all missed.
    assert!(
        aliases_located > 20,
        "{aliases_located} 6to4 addresses located"
    );
}

#[test]
fn aliases_keep_the_database_answer_under_an_ipv4_override() {
    // An override of 81.2.69.0/24 holds for 81.2.69.142 and its IPv4-mapped form; the 6to4 and
    // IPv4-compatible forms are other addresses and keep the database's answer.
    let db = scope_db(&[place("81.2.69.0/24", b"DE", "BE")]);
    let country = |ip: &str| {
        let found = db.locate(ip.parse().unwrap());
        found
            .loc
            .and_then(|l| db.location(l).country_code().map(str::to_owned))
    };
    assert_eq!(country("81.2.69.142").as_deref(), Some("DE"));
    assert_eq!(country("::ffff:81.2.69.142").as_deref(), Some("DE"));
    assert_eq!(country("2002:5102:458e::").as_deref(), Some("GB"));
    assert_eq!(country("::81.2.69.142").as_deref(), Some("GB"));
}

#[test]
fn a_partition_of_the_wrong_length_gets_no_index() {
    let db = db();
    let n = db.classes().len();
    assert!(db.scope_index(&vec![0; n + 1]).is_some());
    for len in [0, n, n + 2] {
        assert!(db.scope_index(&vec![0; len]).is_none(), "{len} of {n}");
    }
}
