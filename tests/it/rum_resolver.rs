//! Resolver mapping end to end over real DNS and HTTP, as a browser behind a resolver makes
//! it: `/rum/v1/config` fetched as a client in 127.1.x.0/24 (through a trusted proxy's
//! `X-Forwarded-For`), the init name `<nonce>.rum.example.com` resolved by `dig -b` from a
//! resolver address (127.0.0.53) other than the client's, the beacon posted. A query without
//! ECS from that resolver then gets its users' answer; other resolvers, and queries with ECS,
//! do not. Explain says why.
//!
//! Places (`[[geoip.override]]`): the resolvers' 127.0.0.0/24 in the US (North America:
//! www → cdn-b, pop → pop-iad 192.0.2.1), the users' 127.1.0.0/16 in DE, AS3320 (Europe:
//! www → cdn-c, pop → pop-fra 192.0.2.2), 127.2.0.0/16 in FR.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use steerdns::app::Running;

use crate::support::*;

pub const RESOLVER: &str = "127.0.0.53";
const OTHER_RESOLVER: &str = "127.0.0.54";
/// Sends ECS with its nonce queries: recorded, never mapped.
const ECS_RESOLVER: &str = "127.0.0.55";

pub const PLACES: &str = r#"
[[geoip.override]]
cidr = "127.0.0.0/24"
continent = "NA"
country = "US"
asn = 64500

[[geoip.override]]
cidr = "127.1.0.0/16"
continent = "EU"
country = "DE"
asn = 3320

[[geoip.override]]
cidr = "127.2.0.0/16"
continent = "EU"
country = "FR"
asn = 5410

[rum]
secret_file = "rum.secret"
zone = "rum.example.com"
init_addresses = ["127.0.0.1", "::1"]
init_scheme = "http"
trusted_proxies = ["127.0.0.1/32"]

[[rum.target]]
id = "cdn-a"
small = "https://cdn-a.example.net/rum/test.gif"

[rum.resolver_map]
min_sessions = 20
min_share = 0.8
"#;

async fn start(dir: &TempDir) -> Running {
    dir.write(
        "rum.secret",
        "resolver-mapping-test-secret-0123456789abcdef\n",
    );
    let path = write_config_with(dir, DEMO_ZONE, &demo_policies(), "explain_names = true");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(PLACES);
    std::fs::write(&path, text).unwrap();
    start_file(&path).await
}

/// `dig -b <from> ... <args>`, from a given source address.
pub async fn dig_from(server: SocketAddr, from: &str, args: &[&str]) -> Dig {
    let mut all = vec!["-b", from];
    all.extend_from_slice(args);
    dig(server, &all).await
}

/// Poll `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A page view's start: `/rum/v1/config` as `client`. Returns (nonce, token, init name).
pub async fn page_view(running: &Running, client: &str) -> (String, String, String) {
    let r = http_request(
        running.http_addr.unwrap(),
        "GET",
        "/rum/v1/config",
        &[("X-Forwarded-For", client)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let config = r.json();
    let nonce = config["nonce"].as_str().unwrap().to_owned();
    let token = config["token"].as_str().unwrap().to_owned();
    // http://<nonce>.rum.example.com:<port>/rum/v1/init
    let init = config["init"].as_str().unwrap();
    let host = init
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(host, format!("{nonce}.rum.example.com"));
    (nonce, token, host)
}

/// The page view's end: its beacon, from the same client.
pub async fn send_beacon(running: &Running, client: &str, nonce: &str, token: &str) {
    let body = json!({
        "nonce": nonce,
        "token": token,
        "results": [{ "target": "cdn-a", "cold_ms": 80.0, "warm_ms": 21.5 }],
    })
    .to_string();
    let r = http_request(
        running.http_addr.unwrap(),
        "POST",
        "/rum/v1/beacons",
        &[
            ("X-Forwarded-For", client),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 204, "{r}");
}

/// The client of page view `i` via RESOLVER: 17 from 127.1.0.0/24 and 3 from 127.1.1.0/24
/// (DE, AS3320), then 4 from FR: 20 of 24 (83%) in DE/AS3320.
pub fn client_of(i: usize) -> String {
    match i {
        0..20 if i.is_multiple_of(7) => format!("127.1.1.{}", 10 + i),
        0..20 => format!("127.1.0.{}", 10 + i),
        _ => format!("127.2.0.{}", 10 + i),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_without_ecs_is_located_as_its_users() {
    let dir = TempDir::new("rum-resolver");
    let running = start(&dir).await;
    let server = v4(&running);

    // Before: every resolver here is in the US.
    let www = |from: &'static str| async move {
        dig_from(server, from, &["www.example.com", "A", "+norec"])
            .await
            .answer_data("CNAME")
    };
    assert_eq!(www(RESOLVER).await, ["cdn-b.example.net."]);

    // 24 page views via RESOLVER, 24 via ECS_RESOLVER (which sends ECS): configs fetched and
    // init names resolved now, beacons sent later.
    let mut views = Vec::new();
    for i in 0..24 {
        let client = client_of(i);
        let (nonce, token, host) = page_view(&running, &client).await;
        let reply = match i {
            // The init names answer with the init addresses, TTL 0, authoritatively.
            0 => {
                let d = dig_from(server, RESOLVER, &[&host, "A"]).await;
                assert!(d.has_flag("aa"), "{}", d.text);
                assert_eq!(d.answer_data("A"), ["127.0.0.1"]);
                assert_eq!(d.answer[0].ttl, 0);
                d
            }
            // AAAA, over TCP.
            1 => {
                let d = dig_from(server, RESOLVER, &[&host, "AAAA", "+tcp"]).await;
                assert_eq!(d.answer_data("AAAA"), ["::1"], "{}", d.text);
                d
            }
            // 0x20 spelling is the same nonce; other types are NODATA with the zone's SOA.
            2 => {
                let d = dig_from(server, RESOLVER, &[&host.to_uppercase(), "TXT"]).await;
                assert_eq!(d.counts[1], 0, "{}", d.text);
                assert_eq!(d.authority[0].rtype, "SOA");
                d
            }
            _ => dig_from(server, RESOLVER, &[&host, "A"]).await,
        };
        assert_eq!(reply.status, "NOERROR", "{}", reply.text);
        views.push((client, nonce, token));
    }
    for i in 0..24 {
        let client = format!("127.1.{}.{}", i % 4, 100 + i);
        let (nonce, token, host) = page_view(&running, &client).await;
        let subnet = format!("+subnet=127.1.{}.0/24", i % 4);
        let d = dig_from(server, ECS_RESOLVER, &[&host, "A", &subnet]).await;
        // With ECS, the scope is /0: the answer is the same for everyone.
        assert_eq!(
            d.ecs,
            Some((format!("127.1.{}.0", i % 4), 24, 0)),
            "{}",
            d.text
        );
        views.push((client, nonce, token));
    }
    // Not a nonce: the zone's own answer.
    let short = dig_from(server, RESOLVER, &["tooshort.rum.example.com", "A"]).await;
    assert_eq!(short.status, "NXDOMAIN");

    // The DNS side logged every nonce; alone, that maps nothing.
    eventually("48 nonces drained from the log", || {
        running.resolver_sessions.lock().unwrap().stats().nonces == 48
    })
    .await;
    assert!(running.published.load().resolver_map.is_empty());
    assert_eq!(www(RESOLVER).await, ["cdn-b.example.net."]);

    // The beacons.
    for (client, nonce, token) in &views {
        send_beacon(&running, client, nonce, token).await;
    }
    let resolver: IpAddr = RESOLVER.parse().unwrap();
    eventually("the resolver map is published with every session", || {
        running
            .published
            .load()
            .resolver_map
            .get(&resolver)
            .is_some_and(|m| m.sessions == 24)
    })
    .await;
    let snapshot = running.published.load_full();
    let mapped = snapshot.resolver_map.get(&resolver).unwrap();
    assert_eq!(mapped.group_sessions, 20);
    assert_eq!(mapped.steer_as, "127.1.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(
        snapshot.resolver_map.len(),
        1,
        "the ECS resolver is not mapped"
    );
    assert_eq!(running.resolver_sessions.lock().unwrap().stats().joined, 48);

    // After: the mapped resolver gets its users' answers, on the fast path (A of pop, CNAME
    // of www over UDP) and the full path (TCP).
    assert_eq!(www(RESOLVER).await, ["cdn-c.example.net."]);
    let pop = dig_from(server, RESOLVER, &["pop.example.com", "A", "+norec"]).await;
    assert_eq!(pop.answer_data("A"), ["192.0.2.2"]);
    let pop_tcp = dig_from(server, RESOLVER, &["pop.example.com", "A", "+tcp"]).await;
    assert_eq!(pop_tcp.answer_data("A"), ["192.0.2.2"]);
    let plain = dig_from(
        server,
        RESOLVER,
        &["pop.example.com", "A", "+noedns", "+norec"],
    )
    .await;
    assert_eq!(plain.answer_data("A"), ["192.0.2.2"], "without EDNS too");
    // Other resolvers, and queries with ECS, are located as before.
    assert_eq!(www(OTHER_RESOLVER).await, ["cdn-b.example.net."]);
    assert_eq!(www(ECS_RESOLVER).await, ["cdn-b.example.net."]);
    let with_ecs = dig_from(
        server,
        RESOLVER,
        &["www.example.com", "A", "+subnet=127.0.0.0/24"],
    )
    .await;
    assert_eq!(with_ecs.answer_data("CNAME"), ["cdn-b.example.net."]);

    // Explain says why, over DNS and the API.
    let explain = dig_text(
        server,
        &["-b", RESOLVER, "_explain.www.example.com", "TXT", "+short"],
    )
    .await;
    let want = "located by resolver map: 83% of 24 sessions via 127.0.0.53 are AS3320/DE \
                (steered as 127.1.0.0)";
    assert!(explain.contains(want), "{explain}");
    let api = AdminClient::of(&running)
        .explain("www.example.com", RESOLVER)
        .await;
    assert_eq!(api["resolver_map"], want, "{api}");
    assert_eq!(api["client"], "127.1.0.0", "{api}");
    // /metrics counts the nonce queries and the map's size.
    let metrics = http_request(running.http_addr.unwrap(), "GET", "/metrics", &[], b"")
        .await
        .body;
    for line in [
        "steerdns_rum_resolver_map_size 1",
        "steerdns_rum_nonce_queries_total{outcome=\"logged\"} 48",
        "steerdns_rum_nonce_queries_total{outcome=\"dropped\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let other = AdminClient::of(&running)
        .explain("www.example.com", OTHER_RESOLVER)
        .await;
    assert!(other["resolver_map"].is_null(), "{other}");
    running.shutdown().await;
}

/// The map survives a reload (SIGHUP), and the nonce names keep being logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_and_the_log_survive_a_reload() {
    let dir = TempDir::new("rum-reload");
    let running = start(&dir).await;
    let server = v4(&running);
    for i in 0..20 {
        let client = format!("127.1.5.{i}");
        let (nonce, token, host) = page_view(&running, &client).await;
        dig_from(server, RESOLVER, &[&host, "A"]).await;
        send_beacon(&running, &client, &nonce, &token).await;
    }
    let resolver: IpAddr = RESOLVER.parse().unwrap();
    eventually("mapped", || {
        running
            .published
            .load()
            .resolver_map
            .get(&resolver)
            .is_some()
    })
    .await;
    running.reload().await.expect("reload");
    assert!(
        running
            .published
            .load()
            .resolver_map
            .get(&resolver)
            .is_some(),
        "kept across the reload"
    );
    let pop = dig_from(server, RESOLVER, &["pop.example.com", "A"]).await;
    assert_eq!(pop.answer_data("A"), ["192.0.2.2"]);
    let (_, _, host) = page_view(&running, "127.1.5.99").await;
    dig_from(server, RESOLVER, &[&host, "A"]).await;
    eventually("logged after the reload", || {
        running.resolver_sessions.lock().unwrap().stats().nonces == 21
    })
    .await;
    running.shutdown().await;
}

/// A RUM zone outside every configured zone is a load error naming the field.
#[tokio::test]
async fn a_rum_zone_outside_our_zones_is_refused() {
    let dir = TempDir::new("rum-outside");
    let path = write_config_extra(
        &dir,
        DEMO_ZONE,
        &demo_policies(),
        "[rum]\nzone = \"rum.example.org\"\ninit_addresses = [\"127.0.0.1\"]\n\
         [[rum.target]]\nid = \"cdn-a\"\nsmall = \"https://cdn-a.example.net/t.gif\"\n",
    );
    let config = steerdns::config::Config::load(&path).unwrap();
    let errors = steerdns::control::build_snapshot(&config, 1).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("rum.zone: rum.example.org. is not inside any configured zone"),
        "{errors}"
    );
}
