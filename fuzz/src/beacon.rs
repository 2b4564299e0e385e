//! Target `beacon`: the body a browser posts to `/rum/v1/beacons`.
//!
//! The body goes through what ingestion does with it, in order: strict parsing and
//! validation ([`beacon::parse`]), the token check, and the collector's per-minute windows.
//! Invariants: nothing panics; an accepted beacon has 1..=16 results for distinct configured
//! targets with finite times in range; a token only verifies if it carries the MAC this
//! server would have issued for that nonce, network and expiry (so a fuzzer cannot forge
//! one); the collector counts every beacon it is given.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use steerdns::rum::beacon::{self, MAX_KBPS, MAX_MS, MAX_RESULTS};
use steerdns::rum::collector::{Accepted, Collector};
use steerdns::rum::token::{ClientNet, Signer};

/// The HMAC key the seed corpus's tokens were issued with (`tests/targets.rs` writes them).
pub const SECRET: &[u8; 32] = b"steerdns-fuzz-beacon-secret-0001";

/// The network the seed tokens were issued to.
pub fn client() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))
}

pub fn signer() -> Signer {
    Signer::new(SECRET, [7; 16]).expect("a 32-byte secret")
}

struct Rum {
    targets: HashSet<String>,
    signer: Signer,
    collector: Collector,
}

static RUM: LazyLock<Rum> = LazyLock::new(|| Rum {
    targets: ["cdn-a", "cdn-b", "cdn-c", "cdn-d"]
        .into_iter()
        .map(String::from)
        .collect(),
    signer: signer(),
    collector: Collector::new(5),
});

pub fn check(data: &[u8]) {
    let rum = &*RUM;
    let Ok(beacon) = beacon::parse(data, &rum.targets) else {
        return;
    };
    assert!((1..=MAX_RESULTS).contains(&beacon.results.len()));
    let mut seen = HashSet::new();
    for r in &beacon.results {
        assert!(rum.targets.contains(&r.target), "{}", r.target);
        assert!(seen.insert(&r.target), "repeated {}", r.target);
        for ms in [
            r.cold_ms,
            r.warm_ms,
            r.dns_ms,
            r.connect_ms,
            r.tls_ms,
            r.ttfb_ms,
        ] {
            assert!(ms.is_none_or(|v| v.is_finite() && (0.0..=MAX_MS).contains(&v)));
        }
        assert!(
            r.throughput_kbps
                .is_none_or(|v| v.is_finite() && v > 0.0 && v <= MAX_KBPS)
        );
        assert!(r.failed || r.timing().is_some(), "no timing");
    }
    let net = ClientNet::of(client());
    let Ok(expiry) = rum.signer.verify(&beacon.token, &beacon.nonce, &net, 0) else {
        return;
    };
    // Spellings of the same token verify too (hex digits in either case, leading zeros in
    // the expiry): they carry the same MAC over the same values, and a nonce is used once
    // whatever spelling its token came in.
    let issued = rum.signer.issue(&beacon.nonce, &net, expiry);
    let signed = |t: &str| t.split_once('.').map(|(_, rest)| rest.to_ascii_lowercase());
    assert_eq!(
        signed(&beacon.token),
        signed(&issued),
        "a token verified that this server did not issue: {}",
        beacon.token
    );
    let before = rum.collector.accepted();
    rum.collector.accept(Accepted {
        nonce: beacon.nonce,
        net,
        country: Some(*b"DE"),
        continent: None,
        asn: Some(3320),
        // One fixed minute: the windows stay as few as a real minute's traffic makes.
        at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        results: beacon.results,
    });
    // `>`: the seed replay and the random run may share the collector at once.
    assert!(
        rum.collector.accepted() > before,
        "the beacon was not counted"
    );
}
