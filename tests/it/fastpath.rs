//! The UDP fast path against the full path, which is the reference: for a few thousand queries
//! (every demo name, many types, with and without EDNS, DO and ECS from many networks, odd
//! case), whenever the fast path answers, its reply must mean exactly what the full path's
//! does, also from resolvers the resolver map locates as their users. And over real sockets,
//! the common queries must really take the fast path.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use steerdns::dns::{Handler, fast, full};
use steerdns::rum::resolver_map::{Limits, ResolverMapConfig, ResolverSessions};

use crate::support::*;

const NAMES: &[&str] = &[
    // steered: addresses, CNAMEs, weighted, failover, ramp
    "www.example.com.",
    "pop.example.com.",
    "failover.example.com.",
    "ap.example.com.",
    "perf.example.com.",
    "rum.example.com.",
    "weighted.example.com.",
    "ramp.example.com.",
    // static
    "example.com.",
    "ns1.example.com.",
    "ns2.example.com.",
    "mail.example.com.",
    "sip.example.com.",
    "_sip._udp.example.com.",
    "static.example.com.",
    "big.example.com.",
    // negative, delegated, foreign, explain
    "nope.example.com.",
    "www.sub.example.com.",
    "sub.example.com.",
    "example.org.",
    "_explain.www.example.com.",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::MX,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::ANY,
    RecordType::HTTPS,
];

/// Networks in the bundled test databases on several continents, IPv4-mapped, /0, and none.
const SUBNETS: &[Option<&str>] = &[
    None,
    Some("81.2.69.0/24"),
    Some("81.2.69.160/27"),
    Some("2a02:d180::/56"),
    Some("149.101.100.0/24"),
    Some("216.160.83.0/24"),
    Some("89.160.20.0/24"),
    Some("175.16.199.0/24"),
    Some("2001:218::/32"),
    Some("2001:480::/48"),
    Some("202.196.224.0/20"),
    Some("::ffff:81.2.69.0/120"),
    Some("10.0.0.0/8"),
    Some("0.0.0.0/0"),
    Some("::/0"),
];

/// Spell a name with mixed case, as resolvers using 0x20 randomisation do.
fn mixed_case(name: &str, seed: usize) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if (i + seed).is_multiple_of(3) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// (name, type, query) for every combination.
fn queries() -> Vec<(&'static str, RecordType, Vec<u8>)> {
    let mut out = Vec::new();
    for (n, name) in NAMES.iter().enumerate() {
        for qtype in TYPES {
            for (s, subnet) in SUBNETS.iter().enumerate() {
                let spelled = mixed_case(name, n + s);
                let mut message = match subnet {
                    Some(subnet) => ecs_query(&spelled, *qtype, subnet),
                    None => query(&spelled, *qtype),
                };
                message.metadata.recursion_desired = s % 2 == 0;
                message.metadata.checking_disabled = s % 3 == 0;
                if let Some(edns) = message.edns.as_mut() {
                    edns.set_dnssec_ok(s % 4 == 0);
                    edns.set_max_payload([512, 1232, 4096, 100][s % 4]);
                }
                out.push((*name, *qtype, encode(&message)));
                if subnet.is_none() {
                    out.push((*name, *qtype, encode(&with_edns(message, 1232))));
                }
            }
        }
    }
    out
}

/// The parts of a reply a client sees, as text. Compared case-sensitively, except record
/// owners: the fast path writes them as pointers to the question, so they take the client's
/// spelling where the full path writes ours (both are the same name, RFC 4343).
fn meaning(message: &Message) -> String {
    let records = |rs: &[hickory_proto::rr::Record]| {
        rs.iter()
            .map(|r| {
                let owner = r.name.to_ascii().to_ascii_lowercase();
                format!("{owner} {} {} {:?}", r.ttl, r.record_type(), r.data)
            })
            .collect::<Vec<_>>()
    };
    format!(
        "{:?}\nquestion {:?}\nanswers {:?}\nauthority {:?}\nadditional {:?}\nedns {:?}",
        message.metadata,
        message
            .queries
            .iter()
            .map(|q| format!("{} {} {}", q.name(), q.query_type(), q.query_class()))
            .collect::<Vec<_>>(),
        records(&message.answers),
        records(&message.authorities),
        records(&message.additionals),
        message.edns,
    )
}

/// Map two resolvers, one of each family, to users in DE (IPv6) and the US (IPv4).
fn map_resolvers(running: &steerdns::app::Running) {
    let mut sessions = ResolverSessions::new(Limits::default());
    let now = SystemTime::now();
    let cases = [
        ("192.0.2.53", "2a02:d180::/48", "DE", None),
        ("2001:db8::53", "214.78.120.0/24", "US", Some(721)),
    ];
    for (i, (resolver, client, country, asn)) in cases.into_iter().enumerate() {
        let nonce = format!("fastpathnonce{i:03}");
        let resolver: IpAddr = resolver.parse().unwrap();
        sessions.record_dns(&nonce, resolver, None, now);
        let country = country.as_bytes().try_into().ok();
        sessions.record_session(&nonce, client.parse().unwrap(), country, asn, now);
    }
    let config = ResolverMapConfig {
        min_sessions: 1,
        ..ResolverMapConfig::default()
    };
    let map = sessions.build(now, &config);
    assert_eq!(map.len(), 2);
    running.controller.set_resolver_map(map);
}

#[tokio::test]
async fn fast_path_answers_exactly_as_the_full_path() {
    let running = start_demo().await;
    map_resolvers(&running);
    let snapshot = running.published.load_full();
    let handler = Handler::new(running.published.clone());
    let sources: [SocketAddr; 4] = [
        "127.0.0.1:40000".parse().unwrap(),
        "[::1]:40000".parse().unwrap(),
        // Mapped by the resolver map.
        "192.0.2.53:40000".parse().unwrap(),
        "[2001:db8::53]:40000".parse().unwrap(),
    ];
    let mut buf = [0u8; 4096];
    let mut declined = std::collections::HashSet::new();
    for (name, qtype, raw) in &queries() {
        for from in sources {
            let reference = full::respond(&handler, raw, from);
            let Some(len) = fast::answer(&snapshot, raw, from, &mut buf) else {
                declined.insert((*name, *qtype));
                continue;
            };
            let reference = reference.expect("the full path answers what the fast path answers");
            let query = decode(raw);
            assert_eq!(
                meaning(&decode(&buf[..len])),
                meaning(&decode(&reference)),
                "query {:?} from {from}",
                query.queries
            );
        }
    }
    // Sources no reply may go to get none from either path (one rule, `dns::source`).
    let common = encode(&ecs_query(
        "www.example.com.",
        RecordType::A,
        "81.2.69.0/24",
    ));
    for refused in [
        "0.0.0.0:0",
        "0.0.0.0:53",
        "127.0.0.1:0",
        "255.255.255.255:53",
        "224.0.0.1:53",
        "[::]:53",
        "[ff02::1]:53",
        "[::ffff:255.255.255.255]:53",
    ] {
        let from: SocketAddr = refused.parse().unwrap();
        assert_eq!(
            fast::answer(&snapshot, &common, from, &mut buf),
            None,
            "{from}"
        );
        assert_eq!(full::respond(&handler, &common, from), None, "{from}");
    }
    assert!(fast::answer(&snapshot, &common, sources[0], &mut buf).is_some());

    // The map is in effect on the fast path: without ECS, the mapped resolvers get their
    // users' answers (DE: cdn-c; US, AS721: cdn-b), the others the default (cdn-a).
    let plain = encode(&query("www.example.com.", RecordType::A));
    let fast_cname = |from: SocketAddr| {
        let mut out = [0u8; 4096];
        let len = fast::answer(&snapshot, &plain, from, &mut out).expect("fast path");
        cname_targets(&decode(&out[..len]))
    };
    assert_eq!(fast_cname(sources[0]), ["cdn-a.example.net."]);
    assert_eq!(fast_cname(sources[2]), ["cdn-c.example.net."]);
    assert_eq!(fast_cname(sources[3]), ["cdn-b.example.net."]);
    // With ECS, the map is not used.
    let with_ecs = encode(&ecs_query("www.example.com.", RecordType::A, "10.0.0.0/24"));
    let len = fast::answer(&snapshot, &with_ecs, sources[2], &mut buf).expect("fast path");
    assert_eq!(cname_targets(&decode(&buf[..len])), ["cdn-a.example.net."]);
    // The common questions always take the fast path, whatever the EDNS and ECS variant.
    let always_fast = [
        ("pop.example.com.", RecordType::A),
        ("pop.example.com.", RecordType::AAAA),
        ("failover.example.com.", RecordType::A),
        ("www.example.com.", RecordType::A),
        ("www.example.com.", RecordType::AAAA),
        ("www.example.com.", RecordType::CNAME),
        ("weighted.example.com.", RecordType::A),
        ("ap.example.com.", RecordType::AAAA),
        ("example.com.", RecordType::A),
        ("example.com.", RecordType::MX),
        ("mail.example.com.", RecordType::A),
        ("_sip._udp.example.com.", RecordType::SRV),
    ];
    for question in always_fast {
        assert!(
            !declined.contains(&question),
            "{question:?} went to the full path"
        );
    }
    running.shutdown().await;
}

/// Over real UDP: steered, static and negative queries take the fast path, a referral the full
/// path, and `/metrics` says so.
#[tokio::test]
async fn common_queries_take_the_fast_path_over_udp() {
    let running = start_demo().await;
    let server = v4(&running);
    let counts = || udp_path_counts(running.http_addr.unwrap());
    let (fast0, full0) = counts().await;
    for subnet in ["81.2.69.0/24", "2a02:d180::/56", "149.101.100.0/24"] {
        let reply = udp(
            server,
            &ecs_query("pop.example.com.", RecordType::A, subnet),
        )
        .await;
        assert_eq!(reply.answers.len(), 1, "{subnet}");
        let reply = udp(
            server,
            &ecs_query("www.example.com.", RecordType::AAAA, subnet),
        )
        .await;
        assert_eq!(cname_targets(&reply).len(), 1, "{subnet}");
    }
    let reply = udp(server, &query("mail.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&reply.answers), ["192.0.2.25"]);
    let (fast1, full1) = counts().await;
    assert_eq!((fast1 - fast0, full1 - full0), (7, 0));

    let reply = udp(server, &query("nope.example.com.", RecordType::A)).await;
    assert_eq!(
        reply.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    let (fast2, full2) = counts().await;
    assert_eq!((fast2 - fast1, full2 - full1), (1, 0));

    let reply = udp(server, &query("www.sub.example.com.", RecordType::A)).await;
    assert!(!reply.metadata.authoritative, "a referral");
    let (fast3, full3) = counts().await;
    assert_eq!((fast3 - fast2, full3 - full2), (0, 1));
    running.shutdown().await;
}

/// TXT RRsets sized so that truncation falls at different points: (owner, records, string
/// length). `duo` is the case of the bug report: two 221-byte strings fill exactly 512 bytes
/// with EDNS when the owners are pointers to the question.
const TRUNCATION_RRSETS: &[(&str, usize, usize)] = &[
    ("duo", 2, 221),
    ("trio", 3, 150),
    ("five", 5, 100),
    ("quad", 4, 250),
    ("eight", 8, 60),
    ("a-much-longer-owner-name", 3, 120),
];

fn truncation_zone() -> String {
    let mut zone = DEMO_ZONE.to_owned();
    for (owner, records, len) in TRUNCATION_RRSETS {
        for i in 0..*records {
            let text: String = std::iter::once(char::from(b'a' + i as u8))
                .chain(std::iter::repeat_n('x', len - 1))
                .collect();
            zone.push_str(&format!("{owner} 300 IN TXT \"{text}\"\n"));
        }
    }
    zone
}

/// The fast path only answers what fits whole; the full path truncates. Where the fast path
/// answers, the full path must give the same reply, never a truncated one (it used to write
/// owners in full instead of pointing at the question, so it cut records the fast path fit).
/// Where the fast path declines, the full path's reply fits the limit and parses exactly.
/// Over many sizes, with and without EDNS, with ECS and DO, in 0x20 case.
#[tokio::test]
async fn fast_and_full_paths_agree_on_truncation() {
    let dir = TempDir::new("fast-trunc");
    let config = write_config(&dir, &truncation_zone(), &demo_policies());
    let running = start_file(&config).await;
    let snapshot = running.published.load_full();
    let handler = Handler::new(running.published.clone());
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let payloads = [
        None,
        Some(100),
        Some(512),
        Some(513),
        Some(530),
        Some(600),
        Some(700),
        Some(800),
        Some(1000),
        Some(1232),
        Some(4096),
    ];
    let mut buf = [0u8; 4096];
    let (mut fast_answers, mut truncated) = (0, 0);
    for (n, (owner, _, _)) in TRUNCATION_RRSETS.iter().enumerate() {
        for (p, payload) in payloads.iter().enumerate() {
            for variant in 0..4 {
                let name = mixed_case(&format!("{owner}.example.com."), n + p + variant);
                let mut message = match (payload, variant % 2) {
                    (None, _) => query(&name, RecordType::TXT),
                    (Some(_), 0) => query(&name, RecordType::TXT),
                    (Some(_), _) => ecs_query(&name, RecordType::TXT, "81.2.69.0/24"),
                };
                if let Some(payload) = payload {
                    if message.edns.is_none() {
                        message = with_edns(message, *payload);
                    }
                    let edns = message.edns.as_mut().unwrap();
                    edns.set_max_payload(*payload);
                    edns.set_dnssec_ok(variant >= 2);
                }
                let raw = encode(&message);
                let limit = payload.map_or(512, |p| usize::from(p).clamp(512, 1232));
                let reference = full::respond(&handler, &raw, from).expect("full path reply");
                let ctx = format!("{name} payload {payload:?} variant {variant}");
                assert!(reference.len() <= limit, "{ctx}: {} bytes", reference.len());
                let mut decoder = hickory_proto::serialize::binary::BinDecoder::new(&reference);
                let full_reply =
                    <Message as hickory_proto::serialize::binary::BinDecodable>::read(&mut decoder)
                        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert!(decoder.is_empty(), "{ctx}: bytes after the last record");
                truncated += usize::from(full_reply.metadata.truncation);
                if let Some(len) = fast::answer(&snapshot, &raw, from, &mut buf) {
                    fast_answers += 1;
                    assert_eq!(meaning(&decode(&buf[..len])), meaning(&full_reply), "{ctx}");
                    assert_eq!(len, reference.len(), "{ctx}: sizes");
                }
            }
        }
    }
    // Both outcomes occur, so the comparison has teeth.
    assert!(
        fast_answers > 50 && truncated > 50,
        "{fast_answers} {truncated}"
    );

    // The report's case over real UDP: the fast path, and the full path (forced by a record
    // in the query's additional section besides its OPT, which the fast path leaves alone and
    // the full path ignores), both send the two records in 512 bytes, TC clear.
    let server = v4(&running);
    let plain = with_edns(query("duo.example.com.", RecordType::TXT), 512);
    let mut extra = plain.clone();
    extra
        .additionals
        .push(hickory_proto::rr::Record::from_rdata(
            hickory_proto::rr::Name::from_ascii("extra.example.").unwrap(),
            0,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        ));
    let mut buf = [0u8; 4096];
    assert!(fast::answer(&snapshot, &encode(&plain), from, &mut buf).is_some());
    assert!(fast::answer(&snapshot, &encode(&extra), from, &mut buf).is_none());
    for (path, q) in [("fast", plain), ("full", extra)] {
        let bytes = udp_raw_reply(server, &q).await;
        let reply = decode(&bytes);
        assert_eq!(bytes.len(), 512, "{path}");
        assert_eq!(reply.answers.len(), 2, "{path}");
        assert!(!reply.metadata.truncation, "{path}");
    }
    running.shutdown().await;
}

/// The demo zone plus what negative answers must respect: an empty non-terminal chain
/// (`b.c`, `c`), a wildcard, an alias, a second delegation whose child zone we also serve
/// (`kid`), and a host named like the SOA's RNAME (its NXDOMAIN compresses onto the question).
const NEGATIVE_EXTRA: &str = "\
a.b.c 300 IN TXT \"deep\"
*.wild 300 IN A 192.0.2.99
alias 300 IN CNAME mail.example.com.
kid 300 IN NS ns1.example.com.
";

/// A second zone spelling its SOA names in mixed case, and the child zone `kid`.
const NEGATIVE_ZONES: &str = r#"
[[zone]]
origin = "steerdns.test"
records = [
  "@ 600 IN SOA NS1.Steerdns.TEST. Hostmaster.steerdns.test. 7 3600 600 86400 120",
  "@ 600 IN NS NS1.Steerdns.TEST.",
  "ns1 600 IN A 192.0.2.7",
  "x.y 600 IN TXT \"ent\"",
]

[[zone]]
origin = "kid.example.com"
records = [
  "@ 300 IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 5",
  "@ 300 IN NS ns1.example.com.",
  "www 300 IN A 192.0.2.8",
]

[rum]
secret_file = "rum.secret"
zone = "init.example.com"
init_addresses = ["127.0.0.1"]

[[rum.target]]
id = "cdn-a"
small = "https://cdn-a.example.net/rum/test.gif"
"#;

/// The config for the negative-answer tests: the demo policies, one steered name two labels
/// below a name that does not exist (`cdn.example.com` exists only as its ancestor), explain
/// names on, the RUM zone `init.example.com`.
fn negative_config(dir: &TempDir) -> std::path::PathBuf {
    let edge = POP_POLICY.replace(
        "name = \"pop.example.com\"",
        "name = \"edge.cdn.example.com\"",
    );
    assert_ne!(edge, POP_POLICY);
    let mut policies = demo_policies();
    policies.push(("edge.cdn.example.com.toml", &edge));
    let zone = format!("{DEMO_ZONE}{NEGATIVE_EXTRA}");
    let path = write_config_with(dir, &zone, &policies, "explain_names = true");
    dir.write("rum.secret", "fast-path-negative-test-secret-0123456789\n");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(NEGATIVE_ZONES);
    std::fs::write(&path, text).unwrap();
    path
}

/// Labels a random-subdomain flood would send: letters, digits and hyphens, 1 to 40 long, in
/// random case (a fixed seed, so a failure repeats).
fn random_labels(count: usize) -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
    (0..count)
        .map(|_| {
            let len = 1 + (next() % 40) as usize;
            let mut label: String = (0..len)
                .map(|_| char::from(CHARS[(next() % CHARS.len() as u64) as usize]))
                .collect();
            // A label may not start with a hyphen in zone files; on the wire it may, but keep
            // the flood realistic.
            if label.starts_with('-') {
                label.replace_range(..1, "x");
            }
            label
        })
        .collect()
}

/// What the fast path must do with a name: answer (with this rcode) or leave it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    NxDomain,
    NoData,
    Declined,
}

/// (name, types, expectation). Types are those the name has no records of, unless declined.
fn negative_cases() -> Vec<(String, Vec<RecordType>, Expect)> {
    use Expect::*;
    use RecordType as T;
    let no_a = vec![
        T::A,
        T::AAAA,
        T::MX,
        T::TXT,
        T::NS,
        T::SOA,
        T::DS,
        T::CNAME,
        T::HTTPS,
    ];
    let mut cases: Vec<(String, Vec<RecordType>, Expect)> = vec![
        ("nope.example.com.".into(), no_a.clone(), NxDomain),
        (
            "a.b.c.d.e.f.g.h.i.j.example.com.".into(),
            no_a.clone(),
            NxDomain,
        ),
        ("x.a.b.c.example.com.".into(), no_a.clone(), NxDomain),
        ("hostmaster.example.com.".into(), no_a.clone(), NxDomain),
        ("x.alias.example.com.".into(), no_a.clone(), NxDomain),
        ("x.www.example.com.".into(), no_a.clone(), NxDomain),
        ("other.cdn.example.com.".into(), no_a.clone(), NxDomain),
        ("nope.kid.example.com.".into(), no_a.clone(), NxDomain),
        ("nope.steerdns.test.".into(), no_a.clone(), NxDomain),
        ("hostmaster.steerdns.test.".into(), no_a.clone(), NxDomain),
        ("x.ns1.steerdns.test.".into(), no_a.clone(), NxDomain),
        // Empty non-terminals, and the wildcard's parent.
        ("b.c.example.com.".into(), no_a.clone(), NoData),
        ("c.example.com.".into(), no_a.clone(), NoData),
        ("wild.example.com.".into(), no_a.clone(), NoData),
        ("y.steerdns.test.".into(), no_a.clone(), NoData),
        // Names with records, other types (the apex: the SOA's owner is the question).
        (
            "a.b.c.example.com.".into(),
            vec![T::A, T::AAAA, T::MX, T::DS],
            NoData,
        ),
        (
            "example.com.".into(),
            vec![T::AAAA, T::SRV, T::DS, T::HTTPS],
            NoData,
        ),
        (
            "ns1.example.com.".into(),
            vec![T::TXT, T::MX, T::CNAME],
            NoData,
        ),
        ("ns1.steerdns.test.".into(), vec![T::AAAA, T::TXT], NoData),
        ("NS1.Steerdns.TEST.".into(), vec![T::AAAA, T::TXT], NoData),
        ("steerdns.test.".into(), vec![T::A, T::MX], NoData),
        ("*.wild.example.com.".into(), vec![T::AAAA, T::TXT], NoData),
        (
            "kid.example.com.".into(),
            vec![T::AAAA, T::TXT, T::DS],
            NoData,
        ),
        // An ancestor of a steered name that the zone does not hold.
        ("cdn.example.com.".into(), no_a.clone(), NoData),
        // The full path's: referrals, wildcards, aliases, explain and RUM names, steered names
        // asked other types, ANY, other zones.
        ("sub.example.com.".into(), no_a.clone(), Declined),
        ("www.sub.example.com.".into(), no_a.clone(), Declined),
        ("a.b.sub.example.com.".into(), no_a.clone(), Declined),
        ("foo.wild.example.com.".into(), no_a.clone(), Declined),
        ("a.foo.wild.example.com.".into(), no_a.clone(), Declined),
        (
            "alias.example.com.".into(),
            vec![T::A, T::MX, T::TXT],
            Declined,
        ),
        ("_explain.www.example.com.".into(), no_a.clone(), Declined),
        ("_explain.nope.example.com.".into(), no_a.clone(), Declined),
        (
            "0123456789abcdef0123.init.example.com.".into(),
            no_a.clone(),
            Declined,
        ),
        ("init.example.com.".into(), no_a.clone(), Declined),
        ("x.y.init.example.com.".into(), no_a.clone(), Declined),
        ("www.example.com.".into(), vec![T::MX, T::TXT], Declined),
        (
            "nope.example.com.".into(),
            vec![T::ANY, T::AXFR, T::IXFR],
            Declined,
        ),
        ("example.com.".into(), vec![T::ANY], Declined),
        ("example.org.".into(), no_a.clone(), Declined),
    ];
    // More labels than the encoder remembers (64): the zone's own labels are not among them,
    // so the SOA's owner cannot point into the question.
    cases.push((
        format!("{}example.com.", "a.".repeat(70)),
        no_a.clone(),
        NxDomain,
    ));
    cases.push((
        format!("{}example.com.", "x.".repeat(62)),
        no_a.clone(),
        NxDomain,
    ));
    for (i, label) in random_labels(60).into_iter().enumerate() {
        let name = match i % 4 {
            0 => format!("{label}.example.com."),
            1 => format!("{label}.ExAmple.COM."),
            2 => format!("{label}.{label}.steerdns.test."),
            _ => format!("{label}.kid.example.com."),
        };
        cases.push((name, vec![T::A, T::AAAA], NxDomain));
    }
    cases
}

/// Variants of one question: plain, EDNS (sizes, DO, CD, RD), ECS, NSID, a cookie, 0x20 case.
fn negative_variants(name: &str, qtype: RecordType, seed: usize) -> Vec<Message> {
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let spelled = if seed.is_multiple_of(2) {
        name.to_owned()
    } else {
        mixed_case(name, seed)
    };
    let mut out = vec![query(&spelled, qtype)];
    for (i, payload) in [512u16, 1232, 4096, 100].into_iter().enumerate() {
        let mut m = with_edns(query(&spelled, qtype), payload);
        m.metadata.recursion_desired = i % 2 == 0;
        m.metadata.checking_disabled = i % 3 == 0;
        m.edns.as_mut().unwrap().set_dnssec_ok(i % 2 == 1);
        out.push(m);
    }
    out.push(ecs_query(&spelled, qtype, "81.2.69.0/24"));
    out.push(ecs_query(&spelled, qtype, "2a02:d180::/56"));
    let mut nsid = with_edns(query(&spelled, qtype), 1232);
    nsid.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(3, Vec::new()));
    out.push(nsid);
    let mut nsid_ecs = ecs_query(&spelled, qtype, "149.101.100.0/24");
    nsid_ecs
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(3, Vec::new()));
    out.push(nsid_ecs);
    let mut cookie = with_edns(query(&spelled, qtype), 1232);
    cookie
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
    out.push(cookie);
    out
}

/// NXDOMAIN and NODATA: wherever the fast path answers, its reply is the full path's byte for
/// byte (SOA compression included, for every spelling of the question); it answers every
/// negative question it should, whatever the EDNS variant, and declines the rest.
#[tokio::test]
async fn negative_answers_are_fast_and_the_full_paths_byte_for_byte() {
    let dir = TempDir::new("fast-negative");
    let running = start_file(&negative_config(&dir)).await;
    let snapshot = running.published.load_full();
    assert!(snapshot.rum.is_some(), "the RUM zone is configured");
    let handler = Handler::new(running.published.clone());
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut buf = [0u8; 4096];
    let (mut answered, mut compared_with_compression) = (0, 0);
    for (n, (name, types, expect)) in negative_cases().iter().enumerate() {
        for qtype in types {
            for (v, message) in negative_variants(name, *qtype, n).iter().enumerate() {
                let raw = encode(message);
                let ctx = format!("{name} {qtype} variant {v}");
                let reference = full::respond(&handler, &raw, from).expect("a full reply");
                let full_reply = decode(&reference);
                let fast = fast::answer(&snapshot, &raw, from, &mut buf).map(|len| &buf[..len]);
                let Some(fast) = fast else {
                    assert_eq!(*expect, Expect::Declined, "{ctx}: declined");
                    continue;
                };
                assert_ne!(*expect, Expect::Declined, "{ctx}: answered");
                assert_eq!(fast, &reference[..], "{ctx}: bytes");
                let rcode = full_reply.metadata.response_code;
                let want = match expect {
                    Expect::NxDomain => hickory_proto::op::ResponseCode::NXDomain,
                    _ => hickory_proto::op::ResponseCode::NoError,
                };
                assert_eq!(rcode, want, "{ctx}");
                assert!(full_reply.answers.is_empty(), "{ctx}");
                assert_eq!(full_reply.authorities.len(), 1, "{ctx}");
                assert_eq!(
                    full_reply.authorities[0].record_type(),
                    RecordType::SOA,
                    "{ctx}"
                );
                answered += 1;
                // The SOA's names pointed somewhere other than just past its own owner.
                compared_with_compression += usize::from(fast.windows(2).any(|w| w[0] >= 0xc0));
            }
        }
    }
    assert!(answered > 2000, "{answered}");
    assert!(
        compared_with_compression > 2000,
        "{answered} {compared_with_compression}"
    );
    running.shutdown().await;
}

/// Over real UDP: a random-subdomain flood, NODATA and NSID queries are all answered by the
/// fast path (`/metrics` counts them there), a referral by the full path.
#[tokio::test]
async fn negative_and_nsid_queries_take_the_fast_path_over_udp() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let dir = TempDir::new("fast-negative-udp");
    let path = negative_config(&dir);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[http]\nlisten = \"off\"",
        "[http]\nlisten = \"127.0.0.1:0\"",
    );
    std::fs::write(&path, text).unwrap();
    let running = start_file(&path).await;
    let server = v4(&running);
    let counts = || udp_path_counts(running.http_addr.unwrap());
    let (fast0, full0) = counts().await;
    let labels = random_labels(20);
    for label in &labels {
        let reply = udp(
            server,
            &query(&format!("{label}.example.com."), RecordType::A),
        )
        .await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{label}"
        );
        assert_eq!(reply.authorities.len(), 1, "{label}");
    }
    let reply = udp(server, &query("b.c.example.com.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty() && reply.authorities.len() == 1);
    let mut nsid = with_edns(query("mail.example.com.", RecordType::A), 1232);
    nsid.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(3, Vec::new()));
    let reply = udp(server, &nsid).await;
    assert_eq!(addresses(&reply.answers), ["192.0.2.25"]);
    assert!(reply.edns.unwrap().option(3.into()).is_none(), "no NSID");
    let (fast1, full1) = counts().await;
    assert_eq!((fast1 - fast0, full1 - full0), (22, 0));

    let reply = udp(server, &query("www.sub.example.com.", RecordType::A)).await;
    assert!(!reply.metadata.authoritative, "a referral");
    let (fast2, full2) = counts().await;
    assert_eq!((fast2 - fast1, full2 - full1), (0, 1));
    running.shutdown().await;
}
