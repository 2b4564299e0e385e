//! Steering of the demo names (policies/www.example.com.toml, policies/pop.example.com.toml)
//! by EDNS Client Subnet or the resolver's own address, over every transport.
//!
//! Expected targets and ECS scopes follow from tests/fixtures/geoip/README.md: the scope is
//! the longer of the City record network and (www only: it has an ASN rule) the ASN record
//! network of the looked-up address.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// (ECS, www.example.com CNAME target, scope) — `None` scope where the fixture facts do not
/// pin it down.
const WWW: &[(&str, &str, Option<u8>)] = &[
    // DE, Europe: continent rule. City record 2a02:d180::/29.
    ("2a02:d180::/56", "cdn-c.example.net.", Some(29)),
    // GB: the country rule beats the continent rule. City record 2a02:d3c0::/29.
    ("2a02:d3c0::/56", "cdn-d.example.net.", Some(29)),
    // GB over IPv4 (needs /32 in the test DB): City record 81.2.69.142/31, ASN not found
    // (region 81.0.0.0/9).
    ("81.2.69.142/32", "cdn-d.example.net.", Some(31)),
    // US, AS721: continent rule NA. City 214.78.120.0/22, ASN 214.0.0.0/8.
    ("214.78.120.0/24", "cdn-b.example.net.", Some(22)),
    // US, AS6167: the ASN rule beats the continent rule. City and ASN records are /28.
    ("149.101.100.0/24", "cdn-a.example.net.", Some(28)),
    // US (Milton), AS209: City 216.160.83.56/29, ASN 216.160.64.0/18.
    ("216.160.83.56/32", "cdn-b.example.net.", Some(29)),
    // US over IPv6: City 2001:480:10::/48.
    ("2001:480:10::/48", "cdn-b.example.net.", Some(48)),
    // Not in any DB: the default. City region 10.0.0.0/8, but all of 8.0.0.0/5 is in neither
    // DB and gets the default too: the policy's ASN rules are precomputed into runs of one
    // answer, so the scope is the /5.
    ("10.0.0.0/24", "cdn-a.example.net.", Some(5)),
    // CN, Asia: no rule, the default. City 175.16.199.0/24.
    ("175.16.199.0/24", "cdn-a.example.net.", Some(24)),
    // AU, Oceania, AS721: no rule. City 214.0.1.0/24, ASN 214.0.0.0/8; its neighbour
    // 214.0.0.0/24 (SG, Asia) has no rule either, so the answer holds for the /23.
    ("214.0.1.0/24", "cdn-a.example.net.", Some(23)),
    // JP, Asia over IPv6: City 2001:218::/32.
    ("2001:218::/32", "cdn-a.example.net.", Some(32)),
    // Continent EU but no country: the continent rule still applies.
    ("2a02:d500::/56", "cdn-c.example.net.", Some(29)),
    ("2.3.3.0/24", "cdn-c.example.net.", None),
];

/// (ECS, pop.example.com A, AAAA, scope).
const POP: &[(&str, &str, &str, Option<u8>)] = &[
    ("2a02:d180::/56", "192.0.2.2", "2001:db8::2", Some(29)),
    ("81.2.69.142/32", "192.0.2.2", "2001:db8::2", Some(31)),
    ("2.3.3.0/24", "192.0.2.2", "2001:db8::2", Some(24)),
    ("214.78.120.0/24", "192.0.2.1", "2001:db8::1", Some(22)),
    ("149.101.100.0/24", "192.0.2.1", "2001:db8::1", Some(28)),
    // AU / Oceania → pop-sin, like its neighbour 214.0.0.0/24 (SG): the /23.
    ("214.0.1.0/24", "192.0.2.3", "2001:db8::3", Some(23)),
    // SG / Asia → pop-sin.
    ("214.0.0.0/24", "192.0.2.3", "2001:db8::3", None),
    ("175.16.199.0/24", "192.0.2.3", "2001:db8::3", Some(24)),
    ("2001:218::/32", "192.0.2.3", "2001:db8::3", Some(32)),
    // Unknown → default pop-iad. No record anywhere in 8.0.0.0/5.
    ("10.0.0.0/24", "192.0.2.1", "2001:db8::1", Some(5)),
];

fn ecs_parts(subnet: &str) -> (String, u8) {
    let (addr, len) = subnet.split_once('/').unwrap();
    (addr.to_owned(), len.parse().unwrap())
}

/// Check every www and pop case with dig against `server`, with extra dig arguments.
async fn check_with_dig(server: SocketAddr, extra: &[&str], transport: &str) {
    let mut failures = Vec::new();
    for (subnet, target, scope) in WWW {
        let opt = format!("+subnet={subnet}");
        let mut args = vec!["www.example.com", "A", opt.as_str(), "+norec"];
        args.extend_from_slice(extra);
        let d = dig(server, &args).await;
        let (addr, source) = ecs_parts(subnet);
        let got_scope = d.ecs.as_ref().map(|e| e.2);
        let ok = d.status == "NOERROR"
            && d.has_flag("aa")
            && d.answer.len() == 1
            && d.answer[0].rtype == "CNAME"
            && d.answer[0].name == "www.example.com."
            && d.answer[0].ttl == 30
            && d.answer[0].data == *target
            && d.ecs.as_ref().is_some_and(|e| e.0 == addr && e.1 == source)
            && scope.is_none_or(|s| got_scope == Some(s))
            && d.transport.as_deref() == Some(transport);
        if !ok {
            failures.push(format!(
                "www {subnet}: want {target} scope {scope:?} over {transport}, got {:?} {:?} ecs {:?} via {:?}",
                d.status, d.answer, d.ecs, d.transport
            ));
        }
    }
    for (subnet, a, aaaa, scope) in POP {
        for (qtype, want) in [("A", a), ("AAAA", aaaa)] {
            let opt = format!("+subnet={subnet}");
            let mut args = vec!["pop.example.com", qtype, opt.as_str(), "+norec"];
            args.extend_from_slice(extra);
            let d = dig(server, &args).await;
            let ok = d.status == "NOERROR"
                && d.has_flag("aa")
                && d.answer.len() == 1
                && d.answer[0].rtype == qtype
                && d.answer[0].ttl == 30
                && d.answer[0].data == *want
                && scope.is_none_or(|s| d.ecs.as_ref().map(|e| e.2) == Some(s));
            if !ok {
                failures.push(format!(
                    "pop {qtype} {subnet}: want {want} scope {scope:?}, got {:?} {:?} ecs {:?}",
                    d.status, d.answer, d.ecs
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_steering_with_dig_over_udp() {
    let running = start_demo().await;
    check_with_dig(v4(&running), &[], "UDP").await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_steering_with_dig_over_tcp() {
    let running = start_demo().await;
    check_with_dig(v4(&running), &["+tcp"], "TCP").await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_steering_on_the_ipv6_listener_udp_and_tcp() {
    let running = start_demo().await;
    check_with_dig(v6(&running), &[], "UDP").await;
    check_with_dig(v6(&running), &["+tcp"], "TCP").await;
    running.shutdown().await;
}

/// The same decisions through hickory's client (UDP and TCP, IPv4 and IPv6 listeners).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_steering_with_the_hickory_client() {
    let running = start_demo().await;
    for server in [v4(&running), v6(&running)] {
        for (transport, client) in [
            ("udp", hickory_udp(server).await),
            ("tcp", hickory_tcp(server).await),
        ] {
            for (subnet, target, scope) in WWW {
                let reply =
                    hickory_send(&client, ecs_query("www.example.com", RecordType::A, subnet))
                        .await;
                let ctx = format!("{transport} {server} {subnet}");
                assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{ctx}");
                assert!(reply.metadata.authoritative, "{ctx}");
                assert_eq!(cname_targets(&reply), vec![*target], "{ctx}");
                let (addr, source, got_scope) = reply_ecs(&reply).expect("ECS echoed");
                let (want_addr, want_source) = ecs_parts(subnet);
                assert_eq!(addr.to_string(), want_addr, "{ctx}");
                assert_eq!(source, want_source, "{ctx}");
                if let Some(scope) = scope {
                    assert_eq!(got_scope, *scope, "{ctx}");
                }
            }
            for (subnet, a, aaaa, _) in POP {
                for (qtype, want) in [(RecordType::A, a), (RecordType::AAAA, aaaa)] {
                    let reply =
                        hickory_send(&client, ecs_query("pop.example.com", qtype, subnet)).await;
                    assert_eq!(
                        addresses(&reply.answers),
                        vec![*want],
                        "{transport} {server} pop {qtype} {subnet}"
                    );
                    assert_eq!(types(&reply.answers), vec![qtype]);
                }
            }
        }
    }
    running.shutdown().await;
}

/// Without ECS the resolver's own address decides: 127.0.0.1 and ::1 are in no database, so
/// the default answers, and the reply carries no ECS option (but does carry OPT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ecs_the_source_address_decides_and_no_ecs_is_echoed() {
    let running = start_demo().await;
    for server in [v4(&running), v6(&running)] {
        for transport in [&[][..], &["+tcp"][..]] {
            let mut args = vec!["www.example.com", "A"];
            args.extend_from_slice(transport);
            let d = dig(server, &args).await;
            assert_eq!(d.status, "NOERROR", "{}", d.text);
            assert_eq!(
                d.answer_data("CNAME"),
                vec!["cdn-a.example.net."],
                "{}",
                d.text
            );
            assert!(
                d.ecs.is_none(),
                "no ECS in the query, none in the reply:\n{}",
                d.text
            );
            assert!(
                d.edns_line.is_some(),
                "EDNS query gets an OPT back:\n{}",
                d.text
            );

            let mut args = vec!["pop.example.com", "AAAA"];
            args.extend_from_slice(transport);
            let d = dig(server, &args).await;
            assert_eq!(d.answer_data("AAAA"), vec!["2001:db8::1"], "{}", d.text);
        }
        // Raw, without EDNS at all.
        let reply = udp(server, &query("www.example.com", RecordType::A)).await;
        assert_eq!(cname_targets(&reply), vec!["cdn-a.example.net."]);
        assert!(
            reply.edns.is_none(),
            "no OPT in the query, none in the reply"
        );
        // With EDNS but no ECS.
        let reply = udp(
            server,
            &with_edns(query("www.example.com", RecordType::A), 1232),
        )
        .await;
        assert!(reply.edns.is_some());
        assert_eq!(reply_ecs(&reply), None);
    }
    running.shutdown().await;
}

/// RFC 7871 §7.1.2: source prefix 0 means "do not use my address": the answer for everyone
/// (the default target) with scope 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_source_prefix_zero_gets_the_default_with_scope_zero() {
    let running = start_demo().await;
    let server = v4(&running);
    for (subnet, addr) in [("0.0.0.0/0", "0.0.0.0"), ("::/0", "::")] {
        let opt = format!("+subnet={subnet}");
        let d = dig(server, &["www.example.com", "A", &opt]).await;
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        assert_eq!(
            d.answer_data("CNAME"),
            vec!["cdn-a.example.net."],
            "{}",
            d.text
        );
        assert_eq!(d.ecs, Some((addr.to_owned(), 0, 0)), "{}", d.text);

        let d = dig(server, &["pop.example.com", "A", &opt]).await;
        assert_eq!(d.answer_data("A"), vec!["192.0.2.1"], "{}", d.text);
        assert_eq!(d.ecs, Some((addr.to_owned(), 0, 0)), "{}", d.text);
    }
    running.shutdown().await;
}

/// A name whose answer does not depend on the client is scope 0 even with ECS (RFC 7871
/// §7.2.1), and so are negative answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_and_negative_answers_have_scope_zero() {
    let running = start_demo().await;
    let server = v4(&running);
    for (qname, qtype, status) in [
        ("mail.example.com", "A", "NOERROR"),
        ("example.com", "MX", "NOERROR"),
        ("mail.example.com", "AAAA", "NOERROR"),
        ("nope.example.com", "A", "NXDOMAIN"),
    ] {
        let d = dig(server, &[qname, qtype, "+subnet=2a02:d180::/56"]).await;
        assert_eq!(d.status, status, "{}", d.text);
        assert_eq!(d.ecs, Some(("2a02:d180::".into(), 56, 0)), "{}", d.text);
    }
    running.shutdown().await;
}

/// A CNAME into a steered name carries the steered answer's scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_into_a_steered_name_carries_its_scope() {
    let running = start_demo().await;
    let d = dig(
        v4(&running),
        &["static.example.com", "A", "+subnet=81.2.69.142/32"],
    )
    .await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["www.example.com.", "cdn-d.example.net."],
        "{}",
        d.text
    );
    assert_eq!(d.ecs, Some(("81.2.69.142".into(), 32, 31)), "{}", d.text);
    running.shutdown().await;
}

/// RFC 7871 §7.1.1 / §6: a non-zero SCOPE in a query, address bits beyond SOURCE, or a
/// SOURCE longer than the address family are FORMERR; the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ecs_is_formerr_and_the_server_goes_on() {
    let running = start_demo().await;
    let server = v4(&running);
    let cases: &[(&str, Vec<u8>)] = &[
        // 2a02:d180::/56 with scope 10.
        (
            "scope in query",
            vec![0, 2, 56, 10, 0x2a, 0x02, 0xd1, 0x80, 0, 0, 0],
        ),
        // 81.2.69.0/20: 69 = 0b0100_0101 has bits set after the 20th.
        ("host bits set (v4 /20)", vec![0, 1, 20, 0, 81, 2, 69]),
        // 2a02:d180::/25 with the 26th bit set.
        (
            "host bits set (v6 /25)",
            vec![0, 2, 25, 0, 0x2a, 0x02, 0xd1, 0xc0],
        ),
        // IPv4 with source prefix 33 (and five address bytes to go with it).
        ("v4 source 33", vec![0, 1, 33, 0, 81, 2, 69, 142, 0]),
        // IPv6 with source prefix 129.
        (
            "v6 source 129",
            [vec![0, 2, 129, 0], vec![0x2a; 16], vec![0]].concat(),
        ),
        // Too few address octets for /24.
        ("short address", vec![0, 1, 24, 0, 81, 2]),
        // Unknown family.
        ("family 3", vec![0, 3, 8, 0, 10]),
    ];
    for (what, data) in cases {
        let q = raw_ecs_query("www.example.com", RecordType::A, data.clone());
        for (transport, reply) in [
            ("UDP", udp(server, &q).await),
            ("TCP", tcp(server, &q).await),
        ] {
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::FormErr,
                "{what} over {transport}"
            );
            assert!(reply.answers.is_empty(), "{what}: no answer with FORMERR");
        }
        assert_alive(server).await;
    }
    // The same through dig: it refuses to send a bad option itself, so only check that its
    // well-formed options keep working after the bad ones.
    let d = dig(server, &["www.example.com", "A", "+subnet=2a02:d3c0::/56"]).await;
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-d.example.net."]);
    running.shutdown().await;
}

/// RFC 7871 §6: "A server receiving an ECS option that uses either too few or too many
/// ADDRESS octets ... SHOULD return FORMERR". Here /24 comes with four address octets, the
/// last one non-zero (bits beyond SOURCE PREFIX-LENGTH).
/// (Regression test: before 4ccab55 hickory-proto's decoder dropped the extra octet and the
/// query was answered as 81.2.69.0/24.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_with_too_many_address_octets_is_formerr() {
    let running = start_demo().await;
    let server = v4(&running);
    let q = raw_ecs_query(
        "www.example.com",
        RecordType::A,
        vec![0, 1, 24, 0, 81, 2, 69, 142],
    );
    for reply in [udp(server, &q).await, tcp(server, &q).await] {
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.answers.is_empty());
    }
    // An extra octet of zeros is still too many octets.
    let q = raw_ecs_query(
        "www.example.com",
        RecordType::A,
        vec![0, 2, 56, 0, 0x2a, 0x02, 0xd1, 0x80, 0, 0, 0, 0],
    );
    assert_eq!(
        udp(server, &q).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // Exactly ceil(source/8) octets is fine.
    let q = raw_ecs_query(
        "www.example.com",
        RecordType::A,
        vec![0, 2, 56, 0, 0x2a, 0x02, 0xd1, 0x80, 0, 0, 0],
    );
    let reply = udp(server, &q).await;
    assert_eq!(cname_targets(&reply), vec!["cdn-c.example.net."]);
    assert_alive(server).await;
    running.shutdown().await;
}

/// ECS together with other, unknown options: the ECS option still steers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_next_to_unknown_options_still_steers() {
    let running = start_demo().await;
    let d = dig(
        v4(&running),
        &[
            "www.example.com",
            "A",
            "+ednsopt=65001:cafe",
            "+subnet=2a02:d3c0::/56",
            "+ednsopt=65002",
        ],
    )
    .await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["cdn-d.example.net."],
        "{}",
        d.text
    );
    assert_eq!(d.ecs, Some(("2a02:d3c0::".into(), 56, 29)), "{}", d.text);
    running.shutdown().await;
}

/// The demo's `[[geoip.override]]` puts 198.51.100.0/24 in Germany (EU); answers just outside
/// it are narrowed so their scope never covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_override_network_is_steered_and_fenced() {
    let running = start_demo().await;
    let server = v4(&running);
    let cases: &[(&str, &str, &str, u8)] = &[
        ("198.51.100.0/24", "cdn-c.example.net.", "192.0.2.2", 24),
        ("198.51.100.77/32", "cdn-c.example.net.", "192.0.2.2", 24),
        // Not in the override nor the DBs: the default, scope one bit past the common
        // prefix with the override (23 + 1, 17 + 1).
        ("198.51.101.0/24", "cdn-a.example.net.", "192.0.2.1", 24),
        ("198.51.0.0/16", "cdn-a.example.net.", "192.0.2.1", 18),
    ];
    for (subnet, www, pop, scope) in cases {
        let (addr, source) = ecs_parts(subnet);
        for (qname, want) in [("www.example.com", www), ("pop.example.com", pop)] {
            let opt = format!("+subnet={subnet}");
            let d = dig(server, &[qname, "A", &opt]).await;
            assert_eq!(d.answer.len(), 1, "{qname} {subnet}:\n{}", d.text);
            assert_eq!(d.answer[0].data, *want, "{qname} {subnet}:\n{}", d.text);
            assert_eq!(
                d.ecs,
                Some((addr.clone(), source, *scope)),
                "{qname} {subnet}:\n{}",
                d.text
            );
        }
    }
    running.shutdown().await;
}

/// An IPv4-mapped IPv6 ECS address is found in the City DB like the IPv4 address (fixture
/// fact #17: record ::ffff:5102:458e/127).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_ecs_is_located_like_ipv4() {
    let running = start_demo().await;
    let d = dig(
        v4(&running),
        &["www.example.com", "A", "+subnet=::ffff:81.2.69.142/128"],
    )
    .await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["cdn-d.example.net."],
        "{}",
        d.text
    );
    assert_eq!(
        d.ecs,
        Some(("::ffff:81.2.69.142".into(), 128, 127)),
        "{}",
        d.text
    );
    running.shutdown().await;
}

/// The same client written as an IPv4-mapped IPv6 address must get the same answer as its
/// IPv4 form, overrides included (the GeoIP lookups already treat the two alike); scopes are
/// the IPv4 ones shifted by 96. (Regression test: before 4ccab55 ::ffff:198.51.100.1 skipped
/// the demo's DE override and got the default.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_ecs_gets_the_override_too() {
    let running = start_demo().await;
    let cases = [
        ("::ffff:198.51.100.1/128", "cdn-c.example.net.", 120),
        ("::ffff:198.51.100.0/120", "cdn-c.example.net.", 120),
        // Next door: the default, fenced off the override like 198.51.101.0/24 (24 + 96).
        ("::ffff:198.51.101.0/120", "cdn-a.example.net.", 120),
    ];
    for (subnet, want, scope) in cases {
        let opt = format!("+subnet={subnet}");
        let d = dig(v4(&running), &["www.example.com", "A", &opt]).await;
        assert_eq!(d.answer_data("CNAME"), vec![want], "{subnet}:\n{}", d.text);
        let (addr, source) = ecs_parts(subnet);
        assert_eq!(d.ecs, Some((addr, source, scope)), "{subnet}:\n{}", d.text);
    }
    running.shutdown().await;
}

const V4_ONLY_POLICY: &str = r#"
name = "v4.example.com"
ttl_s = 60

[targets.only-a]
a = ["192.0.2.7", "192.0.2.8"]

[[chain]]
kind = "geo"
default = ["only-a"]
"#;

const ALIAS_POLICY: &str = r#"
name = "alias.example.com"
ttl_s = 45

[targets.mail]
cname = "mail.example.com."

[targets.sip]
cname = "sip.example.com."

[[chain]]
kind = "geo"
default = ["mail"]
rules = [{ match = { continent = "EU" }, targets = ["sip"] }]
"#;

/// An address target with nothing for the asked family is NODATA; a steered CNAME into our
/// own zone is followed to the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steered_nodata_and_steered_cname_into_our_zone() {
    let dir = TempDir::new("targets");
    let mut policies = demo_policies();
    policies.push(("v4.example.com.toml", V4_ONLY_POLICY));
    policies.push(("alias.example.com.toml", ALIAS_POLICY));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let running = start_file(&config).await;
    let server = v4(&running);

    let d = dig(server, &["v4.example.com", "A", "+norec"]).await;
    let mut got = d.answer_data("A");
    got.sort();
    assert_eq!(got, vec!["192.0.2.7", "192.0.2.8"], "{}", d.text);
    assert!(d.answer.iter().all(|r| r.ttl == 60));

    let d = dig(server, &["v4.example.com", "AAAA", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"));
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].rtype, "SOA");
    assert_eq!(d.authority[0].ttl, 30);

    let d = dig(server, &["alias.example.com", "A", "+norec"]).await;
    let answer: Vec<_> = d
        .answer
        .iter()
        .map(|r| (r.name.as_str(), r.ttl, r.rtype.as_str(), r.data.as_str()))
        .collect();
    assert_eq!(
        answer,
        vec![
            ("alias.example.com.", 45, "CNAME", "mail.example.com."),
            ("mail.example.com.", 3600, "A", "192.0.2.25"),
        ],
        "{}",
        d.text
    );
    let d = dig(
        server,
        &["alias.example.com", "A", "+subnet=2a02:d180::/56", "+norec"],
    )
    .await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["sip.example.com."],
        "{}",
        d.text
    );
    assert_eq!(d.answer_data("A"), vec!["192.0.2.50"], "{}", d.text);
    assert_eq!(d.ecs, Some(("2a02:d180::".into(), 56, 29)), "{}", d.text);
    // NODATA at the end of the steered chain: CNAME + SOA.
    let d = dig(server, &["alias.example.com", "AAAA", "+norec"]).await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["mail.example.com."],
        "{}",
        d.text
    );
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    running.shutdown().await;
}

const LAB_POLICY: &str = r#"
name = "lab.example.com"
ttl_s = 30

[targets.far]
a = ["192.0.2.101"]

[targets.us]
a = ["192.0.2.102"]

[targets.lab]
a = ["192.0.2.103"]

[[chain]]
kind = "geo"
default = ["far"]
rules = [
  { match = { continent = "NA" }, targets = ["us"] },
  { match = { cidr = ["214.78.121.0/24", "2001:480:10:8000::/49"] }, targets = ["lab"] },
]
"#;

const CIDR_ONLY_POLICY: &str = r#"
name = "cidr.example.com"
ttl_s = 30

[targets.out]
a = ["192.0.2.111"]

[targets.in]
a = ["192.0.2.112"]

[[chain]]
kind = "geo"
default = ["out"]
rules = [{ match = { cidr = "192.0.2.0/24" }, targets = ["in"] }]
"#;

/// CIDR rules win over location, and the scope of every other answer is narrowed to one bit
/// past its common prefix with each CIDR rule, so a cached answer never covers a CIDR network
/// that answers differently. A policy with only CIDR rules does not depend on GeoIP at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cidr_rules_win_and_fence_the_scope() {
    let dir = TempDir::new("cidr");
    let mut policies = demo_policies();
    policies.push(("lab.example.com.toml", LAB_POLICY));
    policies.push(("cidr.example.com.toml", CIDR_ONLY_POLICY));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let running = start_file(&config).await;
    let server = v4(&running);
    let cases: &[(&str, &str, &str, u8)] = &[
        // US record 214.78.120.0/22 would give /22; the /24 CIDR inside it narrows to 24.
        ("lab.example.com", "214.78.120.0/24", "192.0.2.102", 24),
        ("lab.example.com", "214.78.121.0/24", "192.0.2.103", 24),
        ("lab.example.com", "214.78.121.128/25", "192.0.2.103", 24),
        // 122 vs 121: 22 common bits → 23.
        ("lab.example.com", "214.78.122.0/24", "192.0.2.102", 23),
        // US record 2001:480:10::/48; the /49 CIDR inside it → 49.
        ("lab.example.com", "2001:480:10::/56", "192.0.2.102", 49),
        (
            "lab.example.com",
            "2001:480:10:8000::/56",
            "192.0.2.103",
            49,
        ),
        // Far from both CIDRs: no record anywhere in 8.0.0.0/5.
        ("lab.example.com", "10.0.0.0/24", "192.0.2.101", 5),
        ("cidr.example.com", "192.0.2.0/24", "192.0.2.112", 24),
        ("cidr.example.com", "192.0.3.0/24", "192.0.2.111", 24),
        // 10/8 and 192.0.2.0/24 differ in the first bit: the answer holds for 0.0.0.0/1.
        ("cidr.example.com", "10.0.0.0/24", "192.0.2.111", 1),
        // An IPv4 CIDR says nothing about IPv6 clients: scope 0.
        ("cidr.example.com", "2a02:d180::/56", "192.0.2.111", 0),
    ];
    let mut failures = Vec::new();
    for (qname, subnet, want, scope) in cases {
        let opt = format!("+subnet={subnet}");
        let d = dig(server, &[qname, "A", &opt]).await;
        let (addr, source) = ecs_parts(subnet);
        if d.answer_data("A") != vec![*want] || d.ecs != Some((addr, source, *scope)) {
            failures.push(format!(
                "{qname} {subnet}: want {want} scope {scope}, got {:?} ecs {:?}",
                d.answer_data("A"),
                d.ecs
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    running.shutdown().await;
}
