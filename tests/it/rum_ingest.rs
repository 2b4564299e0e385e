//! RUM ingestion over real HTTP on loopback: the beacon script and its cache headers, the
//! config document, the init fetch, accepted beacons attributed to the client's country and
//! ASN, and every kind of refusal (forged, expired, replayed, wrong network, oversized, out
//! of range, unknown target, bad JSON, wrong content type, rate limit) answered with its
//! status, counted by reason in `/metrics`, and leaving the windows unchanged.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use steerdns::app::Running;
use steerdns::perf::Region;
use steerdns::rum::token::{ClientNet, Nonce, Signer};

use crate::support::*;

pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const BEACON_JS: &str = include_str!("../../rum-beacon/beacon.js");

/// `[rum]` for tests: zone `rum.example.com`, plain-HTTP init, loopback placed in DE / AS3320
/// (continent EU). `extra` goes into `[rum]`; `targets` are `(id, small URL)`.
pub fn rum_config(targets: &[(&str, String)], extra: &str) -> String {
    let mut text = format!(
        "[[geoip.override]]\ncidr = \"127.0.0.0/8\"\ncontinent = \"EU\"\ncountry = \"DE\"\nasn = 3320\n\n\
         [rum]\nsecret_file = \"rum.secret\"\nzone = \"rum.example.com\"\ninit_addresses = [\"127.0.0.1\"]\n\
         init_scheme = \"http\"\ntimeout_ms = 2000\n{extra}\n"
    );
    for (id, small) in targets {
        text.push_str(&format!(
            "[[rum.target]]\nid = \"{id}\"\nsmall = \"{small}\"\n"
        ));
    }
    text
}

/// A server with `[rum]`; the temp dir must outlive it.
pub async fn start_rum(tag: &str, rum: &str) -> (TempDir, Running) {
    let dir = TempDir::new(tag);
    dir.write("rum.secret", &format!("{SECRET}\n"));
    let config = write_config_extra(&dir, DEMO_ZONE, &demo_policies(), rum);
    let running = start_file(&config).await;
    (dir, running)
}

fn targets() -> Vec<(&'static str, String)> {
    vec![
        ("cdn-a", "https://cdn-a.example.net/rum/test.gif".into()),
        ("cdn-b", "https://cdn-b.example.net/rum/test.gif".into()),
    ]
}

pub fn http(running: &Running) -> SocketAddr {
    running.http_addr.expect("the HTTP listener")
}

async fn get_config(addr: SocketAddr, headers: &[(&str, &str)]) -> Value {
    let r = http_request(addr, "GET", "/rum/v1/config", headers, b"").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r}");
    r.json()
}

async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut all = vec![("Content-Type", "text/plain;charset=UTF-8")];
    all.extend_from_slice(headers);
    http_request(addr, "POST", "/rum/v1/beacons", &all, body).await
}

fn beacon(nonce: &str, token: &str, results: Value) -> Vec<u8> {
    json!({ "nonce": nonce, "token": token, "results": results })
        .to_string()
        .into_bytes()
}

fn good_results() -> Value {
    json!([
        { "target": "cdn-a", "cold_ms": 80.0, "warm_ms": 21.5, "dns_ms": 3, "connect_ms": 10,
          "tls_ms": 12, "ttfb_ms": 19 },
        { "target": "cdn-b", "failed": true }
    ])
}

/// `name value` lines of `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let r = http_request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    r.body.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

/// A GET with this Host header (the support client sends the address); the raw response head.
async fn get_with_host(addr: SocketAddr, path: &str, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        String::from_utf8_lossy(&raw)
            .to_ascii_lowercase()
            .replacen("http/1.1", "HTTP/1.1", 1)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .expect("init reply in time")
}

fn rejected(reason: &str) -> String {
    format!("steerdns_rum_beacons_rejected_total{{reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_js_is_served_with_an_etag_and_304() {
    let (_dir, running) = start_rum("rum-js", &rum_config(&targets(), "")).await;
    let addr = http(&running);
    let r = http_request(addr, "GET", "/rum/v1/beacon.js", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, BEACON_JS);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/javascript")
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    let etag = r.header("etag").expect("ETag").to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong: {etag}"
    );
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let r = http_request(
            addr,
            "GET",
            "/rum/v1/beacon.js",
            &[("If-None-Match", &inm)],
            b"",
        )
        .await;
        assert_eq!(r.status, 304, "{inm}: {r}");
        assert_eq!(r.body, "");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
    }
    let r = http_request(
        addr,
        "GET",
        "/rum/v1/beacon.js",
        &[("If-None-Match", "\"other\"")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    running.shutdown().await;
}

/// A raw GET; (head, body bytes). The support client reads bodies as text, and a gzip body is
/// not text.
async fn get_bytes(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&all[..split]).to_lowercase();
    (head, all[split + 4..].to_vec())
}

/// Browsers get the beacon gzipped (within the 2 KB budget), with its own ETag; a client
/// that refuses gzip gets it as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_js_is_served_gzipped_to_clients_that_take_it() {
    use std::io::Read;
    let (_dir, running) = start_rum("rum-js-gz", &rum_config(&targets(), "")).await;
    let addr = http(&running);
    let (head, body) = get_bytes(
        addr,
        "/rum/v1/beacon.js",
        &[("Accept-Encoding", "gzip, br")],
    )
    .await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(body.len() <= 2048, "{} bytes gzipped", body.len());
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .expect("valid gzip");
    assert_eq!(plain, BEACON_JS);
    let etag = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("etag: ").map(str::to_owned))
            .expect("an etag")
    };
    let gz_etag = etag(&head);
    let (plain_head, plain_body) = get_bytes(
        addr,
        "/rum/v1/beacon.js",
        &[("Accept-Encoding", "gzip;q=0")],
    )
    .await;
    assert!(!plain_head.contains("content-encoding"), "{plain_head}");
    assert_eq!(plain_body, BEACON_JS.as_bytes());
    assert_ne!(
        gz_etag,
        etag(&plain_head),
        "each representation has its own ETag"
    );
    let (head, body) = get_bytes(
        addr,
        "/rum/v1/beacon.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &gz_etag)],
    )
    .await;
    assert!(head.starts_with("http/1.1 304"), "{head}");
    assert!(body.is_empty());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_init() {
    let (_dir, running) =
        start_rum("rum-config", &rum_config(&targets(), "sample_rate = 0.25")).await;
    let addr = http(&running);
    let c = get_config(addr, &[]).await;
    let nonce = c["nonce"].as_str().unwrap();
    assert!(Nonce::parse(nonce).is_some(), "{c}");
    assert_eq!(c["sample_rate"], 0.25);
    assert_eq!(c["timeout_ms"], 2000);
    assert_eq!(c["beacons"], "/rum/v1/beacons");
    // The init URL keeps the port the browser used.
    assert_eq!(
        c["init"],
        format!("http://{nonce}.rum.example.com:{}/rum/v1/init", addr.port())
    );
    assert_eq!(c["targets"][1]["id"], "cdn-b");
    assert_eq!(
        c["targets"][0]["small"],
        "https://cdn-a.example.net/rum/test.gif"
    );
    // Fresh nonces per request.
    assert_ne!(get_config(addr, &[]).await["nonce"], c["nonce"]);
    // The token is bound to 127.0.0.0/24 and verifies with the secret.
    let signer = Signer::new(SECRET.as_bytes(), [0; 16]).unwrap();
    let now = steerdns::rum::collector::unix_secs(SystemTime::now());
    let net = ClientNet::of("127.0.0.1".parse().unwrap());
    let expiry = signer
        .verify(
            c["token"].as_str().unwrap(),
            &Nonce::parse(nonce).unwrap(),
            &net,
            now,
        )
        .expect("the token verifies");
    assert!(
        (now + 290..=now + 301).contains(&expiry),
        "{expiry} vs {now}"
    );

    let host = format!("{nonce}.rum.example.com:{}", addr.port());
    let r = get_with_host(addr, "/rum/v1/init", &host).await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    assert!(r.contains("timing-allow-origin: *"), "{r}");
    assert!(r.contains("access-control-allow-origin: *"), "{r}");
    assert_eq!(metric(addr, "steerdns_rum_init_total").await, Some(1));
    // Not a nonce under the zone: answered, not counted.
    let r = http_request(
        addr,
        "GET",
        "/rum/v1/init",
        &[("Host", "www.example.com")],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(metric(addr, "steerdns_rum_init_total").await, Some(1));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_are_accepted_once_and_refusals_are_counted_by_reason() {
    let (_dir, running) = start_rum("rum-ingest", &rum_config(&targets(), "")).await;
    let addr = http(&running);
    let collector = running.rum.clone().expect("the collector");
    let c = get_config(addr, &[]).await;
    let (nonce, token) = (c["nonce"].as_str().unwrap(), c["token"].as_str().unwrap());
    let good = beacon(nonce, token, good_results());

    let r = post(addr, &[], &good).await;
    assert_eq!(r.status, 204, "{r}");
    let view = collector.view(SystemTime::now());
    let de_3320 = Region::Network {
        country: *b"DE",
        asn: 3320,
    };
    let a = &view[&("cdn-a".to_owned(), de_3320.clone())];
    assert_eq!((a.attempts, a.failures, a.timings.count()), (1, 0, 1));
    let b = &view[&("cdn-b".to_owned(), Region::Country(*b"DE"))];
    assert_eq!((b.attempts, b.failures), (1, 1));
    assert!(view.contains_key(&("cdn-a".to_owned(), Region::World)));
    let (sessions, _) = collector.sessions_since(0, 10);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].nonce.to_string(), nonce);
    assert_eq!(sessions[0].net.to_string(), "127.0.0.0/24");
    assert_eq!(
        (sessions[0].country, sessions[0].asn),
        (Some(*b"DE"), Some(3320))
    );

    // Refusals, each with a fresh, valid token unless the token is the point.
    let signer = Signer::new(SECRET.as_bytes(), [9; 16]).unwrap();
    let forger = Signer::new(b"not the secret, but just as long!", [9; 16]).unwrap();
    let here = ClientNet::of("127.0.0.1".parse().unwrap());
    let elsewhere = ClientNet::of("198.51.100.7".parse().unwrap());
    let now = steerdns::rum::collector::unix_secs(SystemTime::now());
    let n1 = signer.nonce();
    let forged = beacon(
        &n1.to_string(),
        &forger.issue(&n1, &here, now + 60),
        good_results(),
    );
    let n2 = signer.nonce();
    let expired = beacon(
        &n2.to_string(),
        &signer.issue(&n2, &here, now - 1),
        good_results(),
    );
    let n3 = signer.nonce();
    let wrong_net = beacon(
        &n3.to_string(),
        &signer.issue(&n3, &elsewhere, now + 60),
        good_results(),
    );
    let fresh = || async {
        let c = get_config(addr, &[]).await;
        (
            c["nonce"].as_str().unwrap().to_owned(),
            c["token"].as_str().unwrap().to_owned(),
        )
    };
    let (n, t) = fresh().await;
    let out_of_range = beacon(&n, &t, json!([{ "target": "cdn-a", "cold_ms": 0 }]));
    let too_slow = beacon(&n, &t, json!([{ "target": "cdn-a", "cold_ms": 60001 }]));
    let unknown = beacon(&n, &t, json!([{ "target": "cdn-z", "cold_ms": 5 }]));
    let extra_field = beacon(
        &n,
        &t,
        json!([{ "target": "cdn-a", "cold_ms": 5, "ip": "1.2.3.4" }]),
    );
    let mut oversized = beacon(&n, &t, good_results());
    oversized.extend(std::iter::repeat_n(b' ', 16 * 1024));
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("replayed", good.clone(), "text/plain", 403, "replayed"),
        ("forged", forged, "text/plain", 403, "forged"),
        ("expired", expired, "text/plain", 403, "expired"),
        (
            "wrong network",
            wrong_net,
            "text/plain",
            403,
            "wrong_network",
        ),
        ("oversized", oversized, "text/plain", 413, "too_large"),
        (
            "out of range",
            out_of_range,
            "text/plain",
            400,
            "out_of_range",
        ),
        ("too slow", too_slow, "text/plain", 400, "out_of_range"),
        (
            "unknown target",
            unknown,
            "text/plain",
            400,
            "unknown_target",
        ),
        ("unknown field", extra_field, "text/plain", 400, "bad_json"),
        (
            "bad JSON",
            b"{\"nonce\":".to_vec(),
            "text/plain",
            400,
            "bad_json",
        ),
        (
            "form post",
            good.clone(),
            "application/x-www-form-urlencoded",
            415,
            "content_type",
        ),
    ];
    let before = collector.view(SystemTime::now());
    for (what, body, content_type, status, reason) in &cases {
        let r = http_request(
            addr,
            "POST",
            "/rum/v1/beacons",
            &[("Content-Type", content_type)],
            body,
        )
        .await;
        assert_eq!(r.status, *status, "{what}: {r}");
        assert_eq!(r.json()["reason"], *reason, "{what}: {r}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{what}");
    }
    // Nothing refused changed the windows or the session log.
    assert_eq!(collector.view(SystemTime::now()), before);
    assert_eq!(collector.sessions_since(0, 10).0.len(), 1);
    assert_eq!(
        metric(addr, "steerdns_rum_beacons_accepted_total").await,
        Some(1)
    );
    assert_eq!(metric(addr, "steerdns_rum_sessions_total").await, Some(1));
    for (reason, count) in [
        ("replayed", 1),
        ("forged", 1),
        ("expired", 1),
        ("wrong_network", 1),
        ("too_large", 1),
        ("out_of_range", 2),
        ("unknown_target", 1),
        ("bad_json", 2),
        ("content_type", 1),
        ("rate_limited", 0),
    ] {
        assert_eq!(
            metric(addr, &rejected(reason)).await,
            Some(count),
            "{reason}"
        );
    }
    // The token of the refused beacons is still good for a well-formed one.
    let r = post(
        addr,
        &[],
        &beacon(&n, &t, json!([{ "target": "cdn-b", "warm_ms": 7.25 }])),
    )
    .await;
    assert_eq!(r.status, 204, "{r}");
    assert_eq!(
        metric(addr, "steerdns_rum_beacons_accepted_total").await,
        Some(2)
    );

    // The admin API shows the windows.
    let m = AdminClient::of(&running).get("/api/v1/measurements").await;
    assert_eq!(m.status, 200, "{m}");
    let m = m.json();
    assert_eq!(m["window_minutes"], 5);
    assert_eq!(m["rum"]["cdn-a"]["network DE/AS3320"]["samples"], 1, "{m}");
    assert_eq!(m["rum"]["cdn-b"]["country DE"]["attempts"], 2, "{m}");
    assert_eq!(m["rum"]["cdn-b"]["world"]["failures"], 1, "{m}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_per_network() {
    let rum = rum_config(
        &targets(),
        "beacons_per_network_per_minute = 3\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    let (_dir, running) = start_rum("rum-limit", &rum).await;
    let addr = http(&running);
    let statuses = |xff: &'static str| async move {
        let mut out = Vec::new();
        for _ in 0..5 {
            out.push(
                post(addr, &[("X-Forwarded-For", xff)], b"nope")
                    .await
                    .status,
            );
        }
        out
    };
    assert_eq!(statuses("192.0.2.1").await, [400, 400, 400, 429, 429]);
    // Another /24 has its own bucket; the same /24 does not.
    assert_eq!(statuses("192.0.3.1").await, [400, 400, 400, 429, 429]);
    assert_eq!(statuses("192.0.2.99").await, [429; 5]);
    assert_eq!(metric(addr, &rejected("rate_limited")).await, Some(9));
    assert_eq!(metric(addr, &rejected("bad_json")).await, Some(6));
    running.shutdown().await;
}

/// Behind a trusted proxy the client is the forwarded address: the token is bound to it and
/// the beacon is located there (81.2.69.142 is GB in the test database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_places_the_client() {
    let rum = rum_config(&targets(), "trusted_proxies = [\"127.0.0.0/8\"]");
    let (_dir, running) = start_rum("rum-xff", &rum).await;
    let addr = http(&running);
    let collector = running.rum.clone().unwrap();
    let xff = [("X-Forwarded-For", "81.2.69.142")];
    let c = get_config(addr, &xff).await;
    let body = beacon(
        c["nonce"].as_str().unwrap(),
        c["token"].as_str().unwrap(),
        good_results(),
    );
    // From the proxy itself: another network than the token's.
    let r = post(addr, &[], &body).await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("wrong_network")),
        "{r}"
    );
    let r = post(addr, &xff, &body).await;
    assert_eq!(r.status, 204, "{r}");
    let view = collector.view(SystemTime::now());
    assert!(
        view.contains_key(&("cdn-a".to_owned(), Region::Country(*b"GB"))),
        "{view:?}"
    );
    assert!(!view.contains_key(&("cdn-a".to_owned(), Region::Country(*b"DE"))));
    let (sessions, _) = collector.sessions_since(0, 10);
    assert_eq!(sessions[0].net.to_string(), "81.2.69.0/24");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rum_there_are_no_rum_routes_or_metrics() {
    let running = start_demo().await;
    assert!(running.rum.is_none());
    let addr = http(&running);
    for path in ["/rum/v1/beacon.js", "/rum/v1/config"] {
        assert_eq!(
            http_request(addr, "GET", path, &[], b"").await.status,
            404,
            "{path}"
        );
    }
    assert_eq!(
        metric(addr, "steerdns_rum_beacons_accepted_total").await,
        None
    );
    let m = AdminClient::of(&running).get("/api/v1/measurements").await;
    assert_eq!(m.json()["rum"], Value::Null);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_short_secret_stops_the_start() {
    let dir = TempDir::new("rum-secret");
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &demo_policies(),
        &rum_config(&targets(), ""),
    );
    let mut c = steerdns::config::Config::load(&config).unwrap();
    loopback(&mut c);
    let origin = steerdns::control::ConfigOrigin::File(config.clone());
    let e = steerdns::app::start(c.clone(), origin.clone())
        .await
        .err()
        .expect("no secret file");
    assert!(format!("{e:#}").contains("rum.secret_file"), "{e:#}");
    dir.write("rum.secret", "short\n");
    let e = steerdns::app::start(c, origin)
        .await
        .err()
        .expect("short secret");
    assert!(format!("{e:#}").contains("at least 32 bytes"), "{e:#}");
}
