//! End-to-end tests of the benchmark tools on loopback: the load generator against the no-op
//! responder, and subnet picking from the bundled MaxMind test database. Each is bounded in
//! time (about a second of load at most).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use steerdns_bench::load::{self, Options};
use steerdns_bench::subnets::{self, Request};
use steerdns_bench::{noop, wire};

fn test_db() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/geoip/GeoIP2-City-Test.mmdb")
}

fn options(server: SocketAddr, duration: Duration) -> Options {
    Options {
        server,
        questions: wire::parse_query_file("www.example.com A\npop.example.com AAAA\n").unwrap(),
        subnets: wire::parse_subnet_file("81.2.69.0/24\n2a02:d180::/56\n214.78.120.0/24\n")
            .unwrap(),
        duration,
        sockets: 2,
        outstanding: 64,
        timeout: Duration::from_millis(1000),
        batch: 32,
        seed: 7,
    }
}

/// One second against the no-op responder: everything sent is answered, NOERROR, no loss.
#[test]
fn loadgen_against_noop_answers_everything() {
    let sockets = noop::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let server = sockets[0].local_addr().unwrap();
    let stop = AtomicBool::new(false);
    let deadline = Some(Instant::now() + Duration::from_secs(20));
    let summary = std::thread::scope(|scope| {
        let responder = scope.spawn(|| noop::serve(&sockets[0], 32, &stop, deadline));
        let summary = load::run(&options(server, Duration::from_secs(1)));
        stop.store(true, Ordering::Relaxed);
        let answered = responder.join().unwrap().unwrap();
        let summary = summary.unwrap();
        assert_eq!(answered, summary.sent);
        summary
    });
    assert!(summary.sent > 1000, "sent only {}", summary.sent);
    assert_eq!(summary.completed, summary.sent);
    assert_eq!(summary.lost, 0);
    assert_eq!(summary.unexpected + summary.mismatched, 0);
    assert_eq!(summary.rcodes[0], summary.completed);
    assert_eq!(summary.latency.count(), summary.completed);
    assert!(summary.latency.quantile(0.5) <= summary.latency.quantile(0.99));
    let json: serde_json::Value = serde_json::from_str(&load::render_json(
        &options(server, Duration::from_secs(1)),
        &summary,
    ))
    .unwrap();
    assert_eq!(json["completed"], summary.completed);
    assert_eq!(json["rcodes"]["NOERROR"], summary.completed);
}

/// A server that never answers: every query is lost after the timeout, and the run still ends.
#[test]
fn unanswered_queries_are_lost_and_the_run_ends() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut o = options(silent.local_addr().unwrap(), Duration::from_secs(1));
    o.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let summary = load::run(&o).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(summary.sent > 0);
    assert_eq!(summary.completed, 0);
    assert_eq!(summary.lost, summary.sent);
}

#[test]
fn refuses_servers_off_loopback() {
    let o = options("192.0.2.1:53".parse().unwrap(), Duration::from_secs(1));
    assert!(load::run(&o).is_err());
}

/// Subnets from the MaxMind test DB: distinct, on several continents, both families, the right
/// prefix lengths, reproducible from the seed, and each inside a network the DB places on the
/// continent given.
#[test]
fn subnets_from_the_test_database() {
    let request = Request {
        count: 40,
        ipv6_percent: 50,
        v4_prefix: 24,
        v6_prefix: 56,
        seed: 5,
    };
    let picks = subnets::pick(&test_db(), &request).unwrap();
    assert!(!picks.is_empty() && picks.len() <= 40);
    let again = subnets::pick(&test_db(), &request).unwrap();
    assert_eq!(picks, again, "same seed, same subnets");

    let continents: std::collections::BTreeSet<_> =
        picks.iter().map(|p| p.continent.as_str()).collect();
    assert!(continents.len() >= 3, "{continents:?}");
    assert!(picks.iter().any(|p| p.subnet.addr.is_ipv4()));
    assert!(picks.iter().any(|p| p.subnet.addr.is_ipv6()));
    let distinct: std::collections::HashSet<_> = picks.iter().map(|p| p.subnet).collect();
    assert_eq!(distinct.len(), picks.len());

    let reader = maxminddb::Reader::open_readfile(test_db()).unwrap();
    for p in &picks {
        let want = if p.subnet.addr.is_ipv4() { 24 } else { 56 };
        assert_eq!(p.subnet.prefix, want);
        // The last address of the subnet is in the same DB network as the first.
        let found = reader.lookup(p.subnet.addr).unwrap();
        let continent: Option<String> = found
            .decode_path(&[
                maxminddb::PathElement::Key("continent"),
                maxminddb::PathElement::Key("code"),
            ])
            .unwrap();
        assert_eq!(continent.as_deref(), Some(p.continent.as_str()), "{p}");
        assert!(found.network().unwrap().prefix() <= p.subnet.prefix, "{p}");
        // The output line parses back as the subnet.
        assert_eq!(
            wire::parse_subnet_file(&p.to_string()).unwrap(),
            vec![p.subnet]
        );
    }
}
