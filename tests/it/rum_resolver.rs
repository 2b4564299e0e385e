//! Resolver mapping end to end over real DNS: `dig -b` sends the nonce queries from a resolver
//! address (127.0.0.53) other than the client networks (127.1.x.0/24), the sessions for those
//! nonces are recorded with the client networks located by the server's own GeoIP, and a
//! query without ECS from that resolver then gets its users' answer; other resolvers, and
//! queries with ECS, do not. Explain says why.
//!
//! Places (`[[geoip.override]]`): the resolvers' 127.0.0.0/24 in the US (North America:
//! www → cdn-b, pop → pop-iad 192.0.2.1), the users' 127.1.0.0/16 in DE, AS3320 (Europe:
//! www → cdn-c, pop → pop-fra 192.0.2.2), 127.2.0.0/16 in FR.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use steerdns::app::Running;

use crate::support::*;

const RESOLVER: &str = "127.0.0.53";
const OTHER_RESOLVER: &str = "127.0.0.54";
/// Sends ECS with its nonce queries: recorded, never mapped.
const ECS_RESOLVER: &str = "127.0.0.55";

const PLACES: &str = r#"
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
zone = "rum.example.com"
init_addresses = ["127.0.0.1", "::1"]

[rum.resolver_map]
min_sessions = 20
min_share = 0.8
"#;

fn nonce(i: usize) -> String {
    format!("itnonce{i:09}x")
}

async fn start(dir: &TempDir) -> Running {
    let path = write_config_with(dir, DEMO_ZONE, &demo_policies(), "explain_names = true");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(PLACES);
    std::fs::write(&path, text).unwrap();
    start_file(&path).await
}

/// `dig -b <from> ... <args>`, from a given source address.
async fn dig_from(server: SocketAddr, from: &str, args: &[&str]) -> Dig {
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

/// Record a beacon session for `nonce` from `client`, located as the beacon side locates
/// clients: with the server's GeoIP (overrides included).
fn record_session(running: &Running, nonce: &str, client: &str) {
    let net: IpNet = client.parse().unwrap();
    let snapshot = running.published.load_full();
    let located = snapshot.geo.locate(net.network());
    let country = located.loc.and_then(|id| snapshot.geo.location(id).country);
    let mut sessions = running.resolver_sessions.lock().unwrap();
    sessions.record_session(nonce, net, country, located.asn, SystemTime::now());
}

#[tokio::test]
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

    // The nonce names answer with the init addresses, TTL 0, authoritatively, over UDP and
    // TCP, and AAAA too.
    let first = dig_from(
        server,
        RESOLVER,
        &[&format!("{}.rum.example.com", nonce(0)), "A"],
    )
    .await;
    assert_eq!(first.status, "NOERROR", "{}", first.text);
    assert!(first.has_flag("aa"), "{}", first.text);
    assert_eq!(first.answer_data("A"), ["127.0.0.1"]);
    assert_eq!(first.answer[0].ttl, 0);
    let tcp = dig_from(
        server,
        RESOLVER,
        &[&format!("{}.rum.example.com", nonce(1)), "AAAA", "+tcp"],
    )
    .await;
    assert_eq!(tcp.answer_data("AAAA"), ["::1"], "{}", tcp.text);
    // 0x20 spelling is the same nonce; other types are NODATA with the zone's SOA.
    let txt = dig_from(
        server,
        RESOLVER,
        &[
            &format!("{}.RUM.example.COM", nonce(2).to_uppercase()),
            "TXT",
        ],
    )
    .await;
    assert_eq!(
        (txt.status.as_str(), txt.counts[1]),
        ("NOERROR", 0),
        "{}",
        txt.text
    );
    assert_eq!(txt.authority[0].rtype, "SOA");
    // Not a nonce: the zone's own answer.
    let short = dig_from(server, RESOLVER, &["tooshort.rum.example.com", "A"]).await;
    assert_eq!(short.status, "NXDOMAIN");
    // With ECS, the scope is /0: the answer is the same for everyone.
    let ecs = dig_from(
        server,
        ECS_RESOLVER,
        &[
            &format!("{}.rum.example.com", nonce(100)),
            "A",
            "+subnet=127.1.9.0/24",
        ],
    )
    .await;
    assert_eq!(ecs.ecs, Some(("127.1.9.0".into(), 24, 0)), "{}", ecs.text);

    // The rest of the 24 sessions via RESOLVER (20 from DE networks, 4 from FR: 83%), and
    // 24 via ECS_RESOLVER with ECS, all from DE.
    for i in 3..24 {
        dig_from(
            server,
            RESOLVER,
            &[&format!("{}.rum.example.com", nonce(i)), "A"],
        )
        .await;
    }
    for i in 101..124 {
        let subnet = format!("+subnet=127.1.{}.0/24", i % 4);
        dig_from(
            server,
            ECS_RESOLVER,
            &[&format!("{}.rum.example.com", nonce(i)), "A", &subnet],
        )
        .await;
    }
    // The DNS side logged every nonce; alone, that maps nothing.
    eventually("48 nonces drained from the log", || {
        running.resolver_sessions.lock().unwrap().stats().nonces == 48
    })
    .await;
    assert!(running.published.load().resolver_map.is_empty());
    assert_eq!(www(RESOLVER).await, ["cdn-b.example.net."]);

    {
        for i in 0..24 {
            let client = if i < 20 {
                format!("127.1.{}.0/24", usize::from(i % 7 == 0))
            } else {
                "127.2.0.0/24".to_owned()
            };
            record_session(&running, &nonce(i), &client);
        }
        for i in 100..124 {
            record_session(&running, &nonce(i), &format!("127.1.{}.0/24", i % 4));
        }
    }
    let resolver: IpAddr = RESOLVER.parse().unwrap();
    eventually("the resolver map is published", || {
        running
            .published
            .load()
            .resolver_map
            .get(&resolver)
            .is_some()
    })
    .await;
    let snapshot = running.published.load_full();
    let mapped = snapshot.resolver_map.get(&resolver).unwrap();
    assert_eq!((mapped.sessions, mapped.group_sessions), (24, 20));
    // 127.1.0.0/24 had 17 sessions, 127.1.1.0/24 three.
    assert_eq!(mapped.steer_as, "127.1.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(
        snapshot.resolver_map.len(),
        1,
        "the ECS resolver is not mapped"
    );

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
#[tokio::test]
async fn the_map_and_the_log_survive_a_reload() {
    let dir = TempDir::new("rum-reload");
    let running = start(&dir).await;
    let server = v4(&running);
    for i in 0..20 {
        dig_from(
            server,
            RESOLVER,
            &[&format!("{}.rum.example.com", nonce(i)), "A"],
        )
        .await;
    }
    eventually("20 nonces drained", || {
        running.resolver_sessions.lock().unwrap().stats().nonces == 20
    })
    .await;
    for i in 0..20 {
        record_session(&running, &nonce(i), "127.1.5.0/24");
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
    dig_from(
        server,
        RESOLVER,
        &[&format!("{}.rum.example.com", nonce(99)), "A"],
    )
    .await;
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
        "[rum]\nzone = \"rum.example.org\"\ninit_addresses = [\"127.0.0.1\"]\n",
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
