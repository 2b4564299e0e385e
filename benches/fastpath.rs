//! `cargo bench --bench fastpath`: one UDP query answered by the fast path (pre-rendered
//! reply) and by the full path (hickory-proto parse, handler, encode), on the embedded demo:
//! a steered name, a static record, and the negative answers a random-subdomain flood and a
//! missing type get (NXDOMAIN, NODATA, each with the zone's SOA).
//! The difference is what the fast path saves per query in user space; the kernel's share of a
//! real query is measured by `bench/compare.sh`. The `no-ecs` cases show what the resolver
//! map costs a query without ECS: nothing while it is empty, one hash lookup once it has
//! entries (10,000 here), whether or not the asking resolver is among them.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use steerdns::control::ConfigOrigin;
use steerdns::dns::{Handler, fast, full};
use steerdns::rum::resolver_map::{Limits, ResolverMapConfig, ResolverSessions};

/// `www.example.com A`, EDNS 1232, ECS 2a02:d180::/56 (Germany): a geo-steered CNAME.
const STEERED: &[u8] = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x03www\x07example\x03com\x00\x00\x01\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0f\x00\x08\x00\x0b\x00\x02\x38\x00\x2a\x02\xd1\x80\x00\x00\x00";
/// `www.example.com A`, EDNS 1232, no ECS: located by the resolver (or its users).
const NO_ECS: &[u8] = b"\x12\x36\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x03www\x07example\x03com\x00\x00\x01\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
/// `mail.example.com A`, EDNS 1232: a static record.
const STATIC: &[u8] = b"\x12\x35\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x04mail\x07example\x03com\x00\x00\x01\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

/// `q7x9zk2m.example.com A`, EDNS 1232: a random name under the zone, NXDOMAIN with the SOA.
const NXDOMAIN: &[u8] = b"\x12\x37\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x08q7x9zk2m\x07example\x03com\x00\x00\x01\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
/// `mail.example.com AAAA`, EDNS 1232: a name without records of the type, NODATA.
const NODATA: &[u8] = b"\x12\x38\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x04mail\x07example\x03com\x00\x00\x1c\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

fn paths(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut config = steerdns::demo::config();
    config.dns_listen = vec!["127.0.0.1:0".parse().expect("address")];
    config.http_listen = None;
    config.admin_listen = None;
    let running = runtime
        .block_on(steerdns::app::start(config, ConfigOrigin::Demo))
        .expect("the demo starts");
    let snapshot = running.published.load_full();
    let handler = Handler::new(running.published.clone());
    let from: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let mut out = [0u8; 4096];
    for (label, query) in [
        ("steered", STEERED),
        ("static", STATIC),
        ("no-ecs/empty-map", NO_ECS),
        ("nxdomain", NXDOMAIN),
        ("nodata", NODATA),
    ] {
        assert!(
            fast::answer(&snapshot, query, from, &mut out).is_some(),
            "{label}"
        );
        c.bench_function(&format!("fast/{label}"), |b| {
            b.iter(|| black_box(fast::answer(&snapshot, black_box(query), from, &mut out)))
        });
        c.bench_function(&format!("full/{label}"), |b| {
            b.iter(|| black_box(full::respond(&handler, black_box(query), from)))
        });
    }

    // 10,000 mapped resolvers, `from` among them; then a resolver that is not.
    let mut sessions = ResolverSessions::new(Limits::default());
    let now = SystemTime::now();
    for i in 0..10_000u32 {
        let nonce = format!("benchnonce{i:08}");
        let resolver = if i == 0 {
            from.ip()
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
        };
        sessions.record_dns(&nonce, resolver, None, now);
        let client = "2a02:d180::/48".parse().expect("network");
        sessions.record_session(&nonce, client, Some(*b"DE"), None, now);
    }
    let map_config = ResolverMapConfig {
        min_sessions: 1,
        ..ResolverMapConfig::default()
    };
    running
        .controller
        .set_resolver_map(sessions.build(now, &map_config));
    let snapshot = running.published.load_full();
    assert_eq!(snapshot.resolver_map.len(), 10_000);
    let unmapped: SocketAddr = "127.0.0.2:40000".parse().expect("address");
    for (label, from) in [("mapped", from), ("unmapped", unmapped)] {
        assert!(fast::answer(&snapshot, NO_ECS, from, &mut out).is_some());
        c.bench_function(&format!("fast/no-ecs/{label}-resolver"), |b| {
            b.iter(|| black_box(fast::answer(&snapshot, black_box(NO_ECS), from, &mut out)))
        });
    }
    runtime.block_on(running.shutdown());
}

criterion_group!(benches, paths);
criterion_main!(benches);
