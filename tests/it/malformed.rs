//! Regression tests for replies that were malformed, or should not have been sent at all:
//! truncated UDP replies with a partial record, question names with compression pointers,
//! messages with QR set, and sources that must never be answered. Over real UDP and TCP
//! sockets, on both the fast and the full path; every reply must parse exactly (no bytes
//! left over) and echo the query's ID and question.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::support::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Parse a reply to `query` exactly: every byte used, counts matching the sections, QR set,
/// the query's ID and question (as hickory reads them from the query) echoed.
fn reply_to(query: &[u8], reply: &[u8]) -> Message {
    let mut decoder = BinDecoder::new(reply);
    let message = Message::read(&mut decoder)
        .unwrap_or_else(|e| panic!("reply does not parse ({e}): {reply:02x?}"));
    assert_eq!(
        decoder.len(),
        0,
        "bytes left after the last record: {reply:02x?}"
    );
    assert_eq!(&reply[..2], &query[..2], "ID echoed");
    assert_eq!(reply[2] & 0x80, 0x80, "QR set");
    let asked = Message::from_vec(query).expect("the query parses");
    assert_eq!(message.queries, asked.queries, "question echoed");
    message
}

/// The size a UDP reply may have for a query with this EDNS payload (none: 512).
fn udp_limit(payload: Option<u16>) -> usize {
    payload.map_or(512, |p| usize::from(p).clamp(512, 1232))
}

/// `dig +noedns +ignore` on the demo's big TXT RRset, as in the bug report, and raw queries
/// at several sizes for the big RRsets of two zones: a truncated reply holds only whole
/// records (the counts say how many), has TC set, and fits the limit; with EDNS, the OPT
/// survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_udp_replies_hold_only_whole_records() {
    let demo = start_demo().await;
    let dir = TempDir::new("trunc");
    let config = write_config(&dir, &zone_with_valid_big_txt(), &demo_policies());
    let big = start_file(&config).await;
    for server in [v4(&demo), v6(&demo)] {
        let text = dig_text(
            server,
            &["big.example.com", "TXT", "+noedns", "+ignore", "+norec"],
        )
        .await;
        assert!(!text.contains("extra bytes"), "{text}");
        assert!(!text.contains("WARNING"), "{text}");
        let d = parse_dig(&text);
        assert!(d.has_flag("tc"), "{text}");
        assert_eq!(usize::from(d.counts[1]), d.answer.len(), "{text}");
    }
    for server in [v4(&demo), v6(&demo), v4(&big)] {
        for payload in [None, Some(512), Some(600), Some(700), Some(900), Some(1232)] {
            for spelling in ["big.example.com.", "BiG.eXaMpLe.CoM."] {
                let q = query(spelling, RecordType::TXT);
                let q = match payload {
                    Some(p) => with_edns(q, p),
                    None => q,
                };
                let raw = encode(&q);
                let bytes = udp_bytes(server, &raw).await.expect("a reply");
                let reply = reply_to(&raw, &bytes);
                let ctx = format!("{server} {spelling} payload {payload:?}");
                assert!(reply.metadata.truncation, "{ctx}: TC");
                assert!(bytes.len() <= udp_limit(payload), "{ctx}: {}", bytes.len());
                assert_eq!(reply.edns.is_some(), payload.is_some(), "{ctx}: OPT");
                assert!(
                    reply
                        .answers
                        .iter()
                        .all(|r| r.record_type() == RecordType::TXT),
                    "{ctx}"
                );
            }
        }
        // Over TCP the whole RRset.
        let q = query("big.example.com.", RecordType::TXT);
        let raw = encode(&q);
        let reply = reply_to(&raw, &tcp_bytes(server, &raw).await);
        assert!(!reply.metadata.truncation);
        assert!(reply.answers.len() >= 4);
    }
    demo.shutdown().await;
    big.shutdown().await;
}

/// Queries whose question name holds a compression pointer: there is no earlier name in a
/// query to point at, so the pointer lands in the header. They get FORMERR, with the question
/// as the pointer spells it, written out in full so the reply parses. Over UDP (with and
/// without EDNS, so queries the fast path would otherwise take are covered) and TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_names_with_pointers_get_a_formerr_that_parses() {
    let running = start_demo().await;
    let opt = hex("0000290200000000000000");
    let ecs_opt = hex("00002904d0000000000008000800040001000000");
    let packets = [
        // From the bug report: the name is a pointer to offset 0 ("A.", from the ID).
        hex("014100000001000000000000c00000010001"),
        // "www" and then a pointer into the header.
        hex("01410000000100000000000003777777c00000010001"),
        // The same with EDNS, and with EDNS and ECS: the shape of fast-path queries.
        [hex("014100000001000000000001c00000010001"), opt.clone()].concat(),
        [hex("014101000001000000000001c00000010001"), ecs_opt.clone()].concat(),
        // A pointer after a label of the question.
        hex("0a4b000000010000000000000161c00000010001"),
    ];
    for server in [v4(&running), v6(&running)] {
        for packet in &packets {
            if Message::from_vec(packet).is_err() {
                // Not a question hickory reads (e.g. the pointer target is no name): FORMERR
                // without a question is checked by the robustness tests.
                continue;
            }
            let by_udp = udp_bytes(server, packet).await.expect("UDP reply");
            let by_tcp = tcp_bytes(server, packet).await;
            for (transport, bytes) in [("UDP", by_udp), ("TCP", by_tcp)] {
                let reply = reply_to(packet, &bytes);
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::FormErr,
                    "{transport} {packet:02x?}"
                );
                assert!(reply.answers.is_empty(), "{transport}");
                // Written out: no pointer left in the echoed question.
                let question = &bytes[12..];
                let mut at = 0;
                while question[at] != 0 {
                    assert_eq!(question[at] & 0xc0, 0, "{transport}: pointer echoed");
                    at += 1 + usize::from(question[at]);
                }
            }
        }
        assert_alive(server).await;
    }
    running.shutdown().await;
}

/// Found by fuzzing (`fuzz/`, target `udp_query`): a query with several questions gets
/// FORMERR, and echoing them all used to overflow a 512-byte UDP reply, which then went out as
/// a bare SERVFAIL. Now: FORMERR without the questions and TC set over UDP; FORMERR with
/// every question echoed over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_too_long_for_udp_get_a_formerr_not_servfail() {
    let running = start_demo().await;
    let mut message = query("www.example.com.", RecordType::A);
    for label in ["a", "b", "c"] {
        let name = format!(
            "{}.{}.{}.{label}.example.com.",
            "x".repeat(60),
            "y".repeat(60),
            "z".repeat(60)
        );
        message.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(&name).unwrap(),
            RecordType::A,
        ));
    }
    let packet = encode(&message);
    assert!(packet.len() > 512, "{}", packet.len());
    for server in [v4(&running), v6(&running)] {
        let bytes = udp_bytes(server, &packet).await.expect("UDP reply");
        let mut decoder = BinDecoder::new(&bytes);
        let reply = Message::read(&mut decoder).expect("the reply parses");
        assert!(decoder.is_empty(), "bytes after the header");
        assert_eq!(&bytes[..2], &packet[..2], "ID echoed");
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr, "UDP");
        assert!(reply.metadata.truncation, "UDP: TC set");
        assert!(reply.queries.is_empty(), "UDP: no room for the questions");
        assert!(bytes.len() <= 512);

        let bytes = tcp_bytes(server, &packet).await;
        let reply = reply_to(&packet, &bytes);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr, "TCP");
        assert_eq!(reply.queries.len(), 4, "TCP: every question echoed");
        assert_alive(server).await;
    }
    running.shutdown().await;
}

/// Messages with QR set are responses: never answered, over UDP or TCP, whether they parse or
/// not (a FORMERR to a forged response is how two servers are made to ping-pong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_with_qr_set_get_no_reply() {
    let running = start_demo().await;
    let mut response = query("www.example.com.", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let packets = [
        // From the bug report: QR set, two answers claimed, a record cut short.
        hex("030180000000020000000000000000000000c0000000010000000c78"),
        // A well-formed response.
        encode(&response),
        // QR set, a header and nothing else.
        hex("030280000001000000000000"),
        hex("030380000000000000000000"),
        // QR set with a pointer question, with opcode NOTIFY, with an OPT cut short.
        hex("030480000001000000000000c00000010001"),
        hex("0305a0000001000000000000c00000010001"),
        [
            hex("0306800000010000000000010377777707657861"),
            hex("6d706c6503636f6d00000100010000290200"),
        ]
        .concat(),
        // QR and every other flag set.
        hex("0307ffff0001000000000000c00000010001"),
    ];
    for server in [v4(&running), v6(&running)] {
        let mut silent = tokio::task::JoinSet::new();
        for packet in packets.clone() {
            silent.spawn(async move {
                let got = udp_bytes_wait(server, &packet, SILENCE).await;
                (packet, got)
            });
        }
        while let Some(done) = silent.join_next().await {
            let (packet, got) = done.unwrap();
            assert!(got.is_none(), "UDP {server}: {packet:02x?} got {got:02x?}");
        }

        // TCP: all of them on one connection, then a query: its reply is the first message.
        let mut stream = tcp_connect(server).await;
        for packet in &packets {
            tcp_write(&mut stream, packet).await;
        }
        let probe = encode(&query("mail.example.com.", RecordType::A));
        tcp_write(&mut stream, &probe).await;
        let first = tcp_read(&mut stream).await.expect("the probe's reply");
        let reply = reply_to(&probe, &first);
        assert_eq!(addresses(&reply.answers), ["192.0.2.25"], "TCP {server}");
        assert_alive(server).await;
    }
    running.shutdown().await;
}

/// The checksum of RFC 1071 over `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IP packet carrying a UDP datagram from `src` (any address and port: a raw socket lets
/// us forge them) to `dst`.
fn forged_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // The kernel fills in the header checksum; an IPv4 UDP checksum may be 0 (none).
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            [ip, udp].concat()
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut pseudo = [s.octets(), d.octets()].concat();
            pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
            pseudo.extend_from_slice(&udp);
            let sum = match checksum(&pseudo) {
                0 => 0xffff,
                sum => sum,
            };
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[17, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            [ip, udp].concat()
        }
        _ => panic!("{src} and {dst} differ in family"),
    }
}

/// Send `packet` (a whole IP packet) on a raw socket; `None` when raw sockets are not ours
/// to open (not root, no CAP_NET_RAW).
fn send_raw(dst: SocketAddr, packet: &[u8]) -> Option<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = match Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))) {
        Ok(socket) => socket,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(e) => panic!("raw socket: {e}"),
    };
    // The port of a raw socket's destination must be 0.
    let to = SocketAddr::new(dst.ip(), 0);
    socket.send_to(packet, &to.into()).expect("raw send");
    Some(())
}

/// Sources no reply may go to (port 0, broadcast, multicast, unspecified, and their
/// IPv4-mapped forms), forged on loopback with a raw socket: neither path answers them. The
/// kernel delivers these on loopback; `0.0.0.0` (the kernel writes in the real source) and
/// IPv6 multicast sources (dropped on input) cannot be forged this way and are covered by the
/// unit tests of the rule. With one UDP worker the datagrams are handled in order, so a real
/// query sent after them is a barrier: once it is answered, the counters say what the forged
/// ones got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unanswerable_sources_get_no_reply_on_either_path() {
    let mut config = steerdns::demo::config();
    loopback(&mut config);
    config.udp_threads = Some(1);
    let running = steerdns::app::start(config, steerdns::control::ConfigOrigin::Demo)
        .await
        .expect("the demo starts");
    let counts = || udp_path_counts(running.http_addr.unwrap());
    let cases: [(SocketAddr, &[&str]); 2] = [
        (
            v4(&running),
            &["127.0.0.1:0", "255.255.255.255:53", "224.0.0.1:53"],
        ),
        (
            v6(&running),
            &["[::]:53", "[::1]:0", "[::ffff:255.255.255.255]:53"],
        ),
    ];
    // One query for each path: a steered name (fast) and one below a delegation (full).
    let fast_query = encode(&ecs_query(
        "www.example.com.",
        RecordType::A,
        "81.2.69.0/24",
    ));
    let full_query = encode(&query("www.sub.example.com.", RecordType::A));
    for (server, sources) in cases {
        for src in sources.iter().map(|s| s.parse::<SocketAddr>().unwrap()) {
            let before = counts().await;
            for payload in [&fast_query, &full_query] {
                if send_raw(server, &forged_datagram(src, server, payload)).is_none() {
                    eprintln!("raw sockets not permitted: forged sources not tested");
                    running.shutdown().await;
                    return;
                }
            }
            let barrier = udp(server, &query("mail.example.com.", RecordType::A)).await;
            assert_eq!(addresses(&barrier.answers), ["192.0.2.25"]);
            let after = counts().await;
            assert_eq!(
                (after.0 - before.0, after.1 - before.1),
                (1, 0),
                "from {src}: only the barrier is answered (fast, full)"
            );
        }
    }
    // A forged ordinary source is answered: the forging itself works.
    let before = counts().await;
    let server = v4(&running);
    let src: SocketAddr = "127.0.0.9:5300".parse().unwrap();
    send_raw(server, &forged_datagram(src, server, &fast_query)).unwrap();
    send_raw(server, &forged_datagram(src, server, &full_query)).unwrap();
    let _ = udp(server, &query("mail.example.com.", RecordType::A)).await;
    let after = counts().await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1));
    running.shutdown().await;
}
