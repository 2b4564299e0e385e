//! Target `udp_query`: one datagram in, the replies of both UDP paths (and of the TCP path)
//! out, against the demo with extra TXT RRsets sized to truncate at different points, empty
//! non-terminals, a wildcard and an alias, and a second zone with a mixed-case SOA.
//!
//! Invariants, from two sources (127.0.0.1 and ::1):
//! - nothing panics;
//! - a message with QR set, or shorter than a header, gets no reply on any path;
//! - every reply parses with hickory-proto with no bytes left over, is a response, echoes the
//!   query's ID, fits the UDP limit (512 without EDNS, else the client's size within
//!   512..=`max_udp_payload`; 65,535 over TCP), and when the query parses as a message,
//!   echoes its question as the client spelled it (several questions, which get FORMERR,
//!   may be left out whole with TC set when they do not fit);
//! - wherever the fast path answers, the full path answers too, with a reply of the same
//!   meaning (as `tests/it/fastpath.rs` judges it: header, question, records with owners
//!   compared case-insensitively, EDNS, the TC flag) and no larger, so the full path never
//!   truncates what the fast path fits; a negative reply (NXDOMAIN, NODATA) is the same to the
//!   byte.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use steerdns::dns::full::{self, Transport};
use steerdns::dns::{Handler, fast};
use steerdns::snapshot::{Published, Snapshot};

/// TXT RRsets whose replies truncate at different sizes: (owner, records, string length), as
/// in `tests/it/fastpath.rs`.
const TRUNCATION_RRSETS: &[(&str, usize, usize)] = &[
    ("duo", 2, 221),
    ("trio", 3, 150),
    ("five", 5, 100),
    ("eight", 8, 60),
];

/// What negative answers must respect: empty non-terminals (`b.c`, `c`), a wildcard, an
/// alias (as in `tests/it/fastpath.rs`).
const NEGATIVE_RECORDS: &[&str] = &[
    "a.b.c 300 IN TXT \"deep\"",
    "*.wild 300 IN A 192.0.2.99",
    "alias 300 IN CNAME mail.example.com.",
];

/// A second zone spelling its SOA names in mixed case: the SOA's compression against the
/// question depends on how both are spelled.
const SECOND_ZONE: &[&str] = &[
    "@ 600 IN SOA NS1.Steerdns.TEST. Hostmaster.steerdns.test. 7 3600 600 86400 120",
    "@ 600 IN NS NS1.Steerdns.TEST.",
    "ns1 600 IN A 192.0.2.7",
    "x.y 600 IN TXT \"ent\"",
];

struct Dns {
    handler: Handler,
    snapshot: Arc<Snapshot>,
    max_udp_payload: u16,
}

static DNS: LazyLock<Dns> = LazyLock::new(|| {
    let mut config = steerdns::demo::config();
    for (owner, records, len) in TRUNCATION_RRSETS {
        for i in 0..*records {
            let text: String = std::iter::once(char::from(b'a' + i as u8))
                .chain(std::iter::repeat_n('x', len - 1))
                .collect();
            config.zones[0]
                .records
                .push(format!("{owner} 300 IN TXT \"{text}\""));
        }
    }
    config.zones[0]
        .records
        .extend(NEGATIVE_RECORDS.iter().map(|r| r.to_string()));
    config.zones.push(steerdns::config::ZoneConfig {
        origin: "steerdns.test".into(),
        file: None,
        records: SECOND_ZONE.iter().map(|r| r.to_string()).collect(),
    });
    let snapshot = steerdns::control::build_snapshot(&config, 1).expect("the demo loads");
    let published = Arc::new(Published::new(snapshot));
    Dns {
        handler: Handler::new(published.clone()),
        snapshot: published.load_full(),
        max_udp_payload: config.max_udp_payload,
    }
});

const SOURCES: [&str; 2] = ["127.0.0.1:40000", "[::1]:40000"];

pub fn check(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let dns = &*DNS;
    let query = Message::from_bytes(data).ok();
    let question = query.as_ref().map(question);
    let udp_limit = query
        .as_ref()
        .and_then(|q| q.edns.as_ref())
        .map_or(512, |e| {
            usize::from(e.max_payload()).clamp(512, usize::from(dns.max_udp_payload.max(512)))
        });
    let no_reply = data.len() < 12 || data[2] & 0x80 != 0;
    let mut buf = [0u8; 4096];
    for from in SOURCES {
        let from: SocketAddr = from.parse().expect("a socket address");
        let udp = full::respond(&dns.handler, data, from);
        let tcp = full::reply(&dns.handler, data, from, Transport::Tcp);
        let fast = fast::answer(&dns.snapshot, data, from, &mut buf).map(|len| &buf[..len]);
        if no_reply {
            assert!(
                udp.is_none() && tcp.is_none() && fast.is_none(),
                "a response or a runt got a reply"
            );
            continue;
        }
        let udp_bytes = udp;
        let udp = udp_bytes
            .as_ref()
            .map(|r| checked(r, data, udp_limit, question.as_deref(), "full UDP"));
        if let Some(tcp) = &tcp {
            checked(tcp, data, 65_535, question.as_deref(), "TCP");
        }
        if let Some(fast_bytes) = fast {
            let fast = checked(fast_bytes, data, udp_limit, question.as_deref(), "fast");
            let (udp, udp_len) = udp.expect("the full path answers what the fast path answers");
            // Negative answers (no answer records) are written alike to the byte, the SOA's
            // name compression included.
            if fast.0.answers.is_empty() {
                assert_eq!(
                    Some(fast_bytes),
                    udp_bytes.as_deref(),
                    "the paths' negative replies differ"
                );
            }
            // The full path may compress names inside records (an MX exchange against the
            // question) that the fast path's pre-rendered records spell out, never the other
            // way: so whatever the fast path fits, the full path fits whole too.
            assert!(udp_len <= fast.1, "the full path's reply is larger");
            assert_eq!(meaning(&fast.0), meaning(&udp), "the paths' replies differ");
        }
    }
}

/// Parse a reply and check what every reply must be; returns it and its size.
fn checked(
    reply: &[u8],
    query: &[u8],
    limit: usize,
    question: Option<&[String]>,
    path: &str,
) -> (Message, usize) {
    assert!(
        reply.len() <= limit,
        "{path}: {} bytes over {limit}",
        reply.len()
    );
    let mut decoder = BinDecoder::new(reply);
    let message = Message::read(&mut decoder)
        .unwrap_or_else(|e| panic!("{path}: the reply does not parse: {e}\n{reply:02x?}"));
    assert!(decoder.is_empty(), "{path}: bytes after the last record");
    assert_eq!(reply[..2], query[..2], "{path}: the ID is not echoed");
    assert_eq!(
        message.metadata.message_type,
        MessageType::Response,
        "{path}"
    );
    // The question is echoed as the client spelled it: always when there is one; several
    // (FORMERR) are echoed too where they fit, and left out whole (TC) where they do not.
    let echoed = self::question(&message);
    if let Some(question) = question {
        if question.len() == 1 || !echoed.is_empty() {
            assert_eq!(echoed, question, "{path}: the question is not echoed");
        } else if question.len() > 1 {
            assert!(
                message.metadata.truncation,
                "{path}: questions left out without TC"
            );
        }
    }
    (message, reply.len())
}

/// The question section as the client spelled it.
fn question(message: &Message) -> Vec<String> {
    message
        .queries
        .iter()
        .map(|q| {
            format!(
                "{} {} {}",
                q.name().to_ascii(),
                q.query_type(),
                q.query_class()
            )
        })
        .collect()
}

/// The parts of a reply a client sees, as text (as in `tests/it/fastpath.rs`): owners
/// compared case-insensitively, since the fast path points them at the question.
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
        question(message),
        records(&message.answers),
        records(&message.authorities),
        records(&message.additionals),
        message.edns,
    )
}
