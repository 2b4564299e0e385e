//! `cargo bench --bench fastpath`: one UDP query answered by the fast path (pre-rendered
//! reply) and by the full path (hickory-proto parse, handler, encode), on the embedded demo.
//! The difference is what the fast path saves per query in user space; the kernel's share of a
//! real query is measured by `bench/compare.sh`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use steerdns::control::ConfigOrigin;
use steerdns::dns::{Handler, fast, full};

/// `www.example.com A`, EDNS 1232, ECS 2a02:d180::/56 (Germany): a geo-steered CNAME.
const STEERED: &[u8] = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x03www\x07example\x03com\x00\x00\x01\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0f\x00\x08\x00\x0b\x00\x02\x38\x00\x2a\x02\xd1\x80\x00\x00\x00";
/// `mail.example.com A`, EDNS 1232: a static record.
const STATIC: &[u8] = b"\x12\x35\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x04mail\x07example\x03com\x00\x00\x01\x00\x01\
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
    for (label, query) in [("steered", STEERED), ("static", STATIC)] {
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
    runtime.block_on(running.shutdown());
}

criterion_group!(benches, paths);
criterion_main!(benches);
