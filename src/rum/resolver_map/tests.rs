//! The join and threshold math, on hand-made sightings with known answers.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use super::*;

const DE: Option<[u8; 2]> = Some(*b"DE");
const FR: Option<[u8; 2]> = Some(*b"FR");
const AS3320: Option<u32> = Some(3320);

fn t0() -> SystemTime {
    // An hour boundary, so "+ n minutes" stays in the same hour bucket.
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 / 3600 * 3600)
}

fn at(seconds: u64) -> SystemTime {
    t0() + Duration::from_secs(seconds)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn nonce(i: usize) -> String {
    format!("n{i:015}")
}

const RESOLVER: &str = "192.0.2.53";

/// `count` complete sessions (DNS then HTTP) via `resolver` from `client` in `group`, with
/// nonces from `first` on.
fn sessions(
    s: &mut ResolverSessions,
    first: usize,
    count: usize,
    resolver: &str,
    client: &str,
    country: Option<[u8; 2]>,
    asn: Option<u32>,
) {
    for i in first..first + count {
        s.record_dns(&nonce(i), ip(resolver), None, at(i as u64 % 600));
        assert_eq!(
            s.record_session(&nonce(i), net(client), country, asn, at(i as u64 % 600)),
            Recorded::Joined,
            "nonce {i}"
        );
    }
}

fn config(min_sessions: u64, min_share: f64) -> ResolverMapConfig {
    ResolverMapConfig {
        min_sessions,
        min_share,
        window_h: 24,
    }
}

#[test]
fn a_resolver_is_mapped_from_min_sessions_on() {
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 49, RESOLVER, "198.51.100.0/24", DE, AS3320);
    let cfg = ResolverMapConfig::default();
    assert!(s.build(at(700), &cfg).is_empty(), "49 < min_sessions 50");
    sessions(&mut s, 49, 1, RESOLVER, "198.51.100.0/24", DE, AS3320);
    let map = s.build(at(700), &cfg);
    let m = map.get(&ip(RESOLVER)).expect("mapped at 50");
    assert_eq!(m.steer_as, ip("198.51.100.0"));
    assert_eq!((m.sessions, m.group_sessions, m.share), (50, 50, 1.0));
    assert_eq!(map.steer_as(ip(RESOLVER)), Some(ip("198.51.100.0")));
    assert_eq!(map.steer_as(ip("192.0.2.54")), None);
}

#[test]
fn the_dominant_group_needs_min_share() {
    // 80 DE/AS3320 and 20 FR: share 0.8 exactly.
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 80, RESOLVER, "198.51.100.0/24", DE, AS3320);
    sessions(&mut s, 80, 20, RESOLVER, "203.0.113.0/24", FR, Some(5410));
    let m = s.build(at(700), &config(50, 0.8));
    assert_eq!(m.get(&ip(RESOLVER)).map(|m| m.share), Some(0.8));
    assert!(s.build(at(700), &config(50, 0.81)).is_empty(), "0.8 < 0.81");
    // The same country in another ASN is another group.
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 60, RESOLVER, "198.51.100.0/24", DE, AS3320);
    sessions(&mut s, 60, 40, RESOLVER, "198.51.101.0/24", DE, Some(3209));
    assert!(s.build(at(700), &config(50, 0.8)).is_empty(), "60% only");
    assert!(
        s.build(at(700), &config(50, 0.6))
            .get(&ip(RESOLVER))
            .is_some()
    );
}

#[test]
fn steers_as_the_most_frequent_network_of_the_dominant_group() {
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 30, RESOLVER, "198.51.100.77/32", DE, AS3320);
    sessions(&mut s, 30, 45, RESOLVER, "198.51.101.0/24", DE, AS3320);
    sessions(&mut s, 75, 5, RESOLVER, "2001:db8:1:2::/64", DE, AS3320);
    let map = s.build(at(700), &config(50, 0.8));
    let m = map.get(&ip(RESOLVER)).unwrap();
    assert_eq!(m.network, net("198.51.101.0/24"));
    assert_eq!(m.steer_as, ip("198.51.101.0"));
    assert_eq!(
        client_network(net("198.51.100.77/32")),
        net("198.51.100.0/24")
    );
    assert_eq!(
        client_network(net("2001:db8:1:2::/64")),
        net("2001:db8:1::/48")
    );
}

#[test]
fn a_nonce_seen_on_one_side_only_counts_nothing() {
    let mut s = ResolverSessions::default();
    for i in 0..100 {
        assert_eq!(
            s.record_dns(&nonce(i), ip(RESOLVER), None, at(1)),
            Recorded::Pending
        );
        assert_eq!(
            s.record_session(&nonce(1000 + i), net("198.51.100.0/24"), DE, AS3320, at(1)),
            Recorded::Pending
        );
    }
    assert!(s.build(at(2), &config(1, 0.8)).is_empty());
    assert_eq!(s.stats().joined, 0);
    assert_eq!(s.stats().resolvers, 0);
}

#[test]
fn either_order_joins_and_a_nonce_counts_once() {
    let mut s = ResolverSessions::default();
    // HTTP first, then DNS.
    let n = nonce(1);
    assert_eq!(
        s.record_session(&n, net("198.51.100.0/24"), DE, AS3320, at(1)),
        Recorded::Pending
    );
    assert_eq!(
        s.record_dns(&n, ip(RESOLVER), None, at(2)),
        Recorded::Joined
    );
    // Repeats on both sides: a retried query, an AAAA after the A, a replayed session.
    assert_eq!(
        s.record_dns(&n, ip(RESOLVER), None, at(3)),
        Recorded::Duplicate
    );
    assert_eq!(
        s.record_session(&n, net("203.0.113.0/24"), FR, None, at(4)),
        Recorded::Duplicate
    );
    let m = s.build(at(5), &config(1, 0.8));
    let m = m.get(&ip(RESOLVER)).unwrap();
    assert_eq!((m.sessions, m.group.country), (1, DE));
    assert_eq!(s.stats().duplicates, 2);
}

#[test]
fn a_nonce_counts_once_for_each_of_up_to_four_resolvers() {
    let mut s = ResolverSessions::default();
    let n = nonce(7);
    for r in 1..=5 {
        s.record_dns(&n, ip(&format!("192.0.2.{r}")), None, at(1));
    }
    s.record_session(&n, net("198.51.100.0/24"), DE, AS3320, at(2));
    let map = s.build(at(3), &config(1, 0.8));
    assert_eq!(map.len(), 4);
    assert!(map.get(&ip("192.0.2.5")).is_none(), "the fifth is ignored");
    assert_eq!(s.stats().ignored, 1);
    // An IPv4-mapped resolver address is the same resolver.
    assert_eq!(
        s.record_dns(&n, ip("::ffff:192.0.2.1"), None, at(3)),
        Recorded::Duplicate
    );
}

#[test]
fn sessions_whose_query_carried_ecs_do_not_map() {
    let mut s = ResolverSessions::default();
    for i in 0..100 {
        s.record_dns(&nonce(i), ip(RESOLVER), Some(net("198.51.100.0/24")), at(1));
        s.record_session(&nonce(i), net("198.51.100.0/24"), DE, AS3320, at(1));
    }
    assert_eq!(s.stats().joined, 100, "recorded");
    assert!(s.build(at(2), &config(1, 0.8)).is_empty(), "but not mapped");
}

#[test]
fn an_unlocated_majority_maps_nothing() {
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 90, RESOLVER, "10.1.0.0/24", None, None);
    sessions(&mut s, 90, 10, RESOLVER, "198.51.100.0/24", DE, AS3320);
    assert!(s.build(at(700), &config(50, 0.8)).is_empty());
}

#[test]
fn counts_leave_the_window_and_prune_frees_them() {
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 60, RESOLVER, "198.51.100.0/24", DE, AS3320);
    let cfg = config(50, 0.8);
    let hour = Duration::from_secs(3600);
    assert_eq!(
        s.build(t0() + hour * 23, &cfg).len(),
        1,
        "23 h later: inside 24 h"
    );
    assert!(
        s.build(t0() + hour * 24, &cfg).is_empty(),
        "24 h later: gone"
    );
    // Half in the old hour, half in a new one: the window sums both, then only the new.
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 30, RESOLVER, "198.51.100.0/24", DE, AS3320);
    for i in 30..60 {
        s.record_dns(&nonce(i), ip(RESOLVER), None, t0() + hour * 5);
        s.record_session(
            &nonce(i),
            net("198.51.100.0/24"),
            DE,
            AS3320,
            t0() + hour * 5,
        );
    }
    assert_eq!(
        s.build(t0() + hour * 23, &cfg)
            .get(&ip(RESOLVER))
            .map(|m| m.sessions),
        Some(60)
    );
    assert!(s.build(t0() + hour * 24, &cfg).is_empty(), "30 left");
    assert!(s.stats().cells > 0);
    s.prune(t0() + hour * 30, &cfg);
    assert_eq!((s.stats().cells, s.stats().resolvers), (0, 0));
    assert_eq!(s.stats().nonces, 0, "nonces expire after their ttl");
}

#[test]
fn memory_is_bounded_by_the_limits() {
    let limits = Limits {
        nonces: 10,
        nonce_ttl_s: 600,
        resolvers: 2,
        cells: 1_000,
        groups: 2,
        networks: 2,
        resolvers_per_nonce: 4,
    };
    // Nonces in flight.
    let mut s = ResolverSessions::new(limits);
    for i in 0..10 {
        assert_eq!(
            s.record_dns(&nonce(i), ip(RESOLVER), None, at(1)),
            Recorded::Pending
        );
    }
    assert_eq!(
        s.record_dns(&nonce(10), ip(RESOLVER), None, at(1)),
        Recorded::Dropped
    );
    assert_eq!(s.stats().nonces, 10);
    // Past their ttl they make room.
    assert_eq!(
        s.record_dns(&nonce(10), ip(RESOLVER), None, at(700)),
        Recorded::Pending
    );
    assert_eq!(s.stats().nonces, 1);

    // Resolvers.
    let mut s = ResolverSessions::new(Limits {
        nonces: 1_000,
        ..limits
    });
    sessions(&mut s, 0, 1, "192.0.2.1", "198.51.100.0/24", DE, AS3320);
    sessions(&mut s, 1, 1, "192.0.2.2", "198.51.100.0/24", DE, AS3320);
    s.record_dns(&nonce(2), ip("192.0.2.3"), None, at(1));
    assert_eq!(
        s.record_session(&nonce(2), net("198.51.100.0/24"), DE, AS3320, at(1)),
        Recorded::Dropped
    );
    assert_eq!(s.stats().resolvers, 2);

    // Groups and networks: a third group counts in the total only (diluting the share), a
    // third network in its group only.
    let mut s = ResolverSessions::new(Limits {
        nonces: 1_000,
        ..limits
    });
    sessions(&mut s, 0, 8, RESOLVER, "198.51.100.0/24", DE, AS3320);
    sessions(&mut s, 8, 1, RESOLVER, "198.51.101.0/24", DE, AS3320);
    sessions(&mut s, 9, 1, RESOLVER, "198.51.102.0/24", DE, AS3320);
    sessions(&mut s, 10, 1, RESOLVER, "203.0.113.0/24", FR, None);
    sessions(
        &mut s,
        11,
        1,
        RESOLVER,
        "203.0.114.0/24",
        Some(*b"IT"),
        None,
    );
    let cells = s.stats().cells;
    assert_eq!(
        cells,
        1 + 2 + 2 + 1,
        "hour, DE and FR, two DE networks, one FR"
    );
    let map = s.build(at(700), &config(1, 0.5001));
    let m = map.get(&ip(RESOLVER)).unwrap();
    assert_eq!((m.group_sessions, m.sessions), (10, 12));

    // Cells: with room for one hour and one group, a second group is counted apart.
    let mut s = ResolverSessions::new(Limits {
        nonces: 1_000,
        cells: 2,
        ..limits
    });
    sessions(&mut s, 0, 3, RESOLVER, "198.51.100.0/24", DE, AS3320);
    sessions(&mut s, 3, 1, RESOLVER, "203.0.113.0/24", FR, None);
    assert_eq!(s.stats().cells, 2);
    let map = s.build(at(700), &config(1, 0.7));
    assert!(
        map.is_empty(),
        "no network was stored for DE: nothing to steer as"
    );
}

#[test]
fn explains_itself_in_one_line() {
    let m = Mapped {
        steer_as: ip("198.51.100.0"),
        network: net("198.51.100.0/24"),
        group: Group {
            country: DE,
            asn: AS3320,
        },
        share: 1100.0 / 1204.0,
        sessions: 1204,
        group_sessions: 1100,
    };
    assert_eq!(
        m.describe(ip(RESOLVER)),
        "91% of 1,204 sessions via 192.0.2.53 are AS3320/DE"
    );
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(999), "999");
}

#[test]
fn same_steering_ignores_the_numbers() {
    let mut s = ResolverSessions::default();
    sessions(&mut s, 0, 50, RESOLVER, "198.51.100.0/24", DE, AS3320);
    let a = s.build(at(700), &config(50, 0.8));
    sessions(&mut s, 50, 5, RESOLVER, "198.51.100.0/24", DE, AS3320);
    let b = s.build(at(700), &config(50, 0.8));
    assert_ne!(a, b);
    assert!(a.same_steering(&b));
    assert!(!a.same_steering(&ResolverMap::default()));
}

#[test]
fn config_is_validated() {
    let ok = ResolverMapConfig::default();
    assert_eq!(ok.validate(), Ok(ok));
    let field = |c: ResolverMapConfig| c.validate().unwrap_err().field;
    assert_eq!(
        field(ResolverMapConfig {
            min_sessions: 0,
            ..ok
        }),
        "min_sessions"
    );
    for share in [0.5, 1.01, f64::NAN] {
        assert_eq!(
            field(ResolverMapConfig {
                min_share: share,
                ..ok
            }),
            "min_share"
        );
    }
    assert_eq!(field(ResolverMapConfig { window_h: 0, ..ok }), "window_h");
    let parsed: ResolverMapConfig = toml::from_str("min_sessions = 5").unwrap();
    assert_eq!((parsed.min_sessions, parsed.window_h), (5, 24));
    assert!(toml::from_str::<ResolverMapConfig>("min_session = 5").is_err());
}
