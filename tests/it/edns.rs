//! EDNS(0) (RFC 6891): buffer sizes and truncation, BADVERS, DO, unknown options and flags.

use std::net::SocketAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::support::*;

/// A server whose zone has a valid ~2.1 KB `big.example.com TXT` RRset (8 records).
async fn start_big(dns_extra: &str) -> (TempDir, steerdns::app::Running) {
    let dir = TempDir::new("big");
    let config = write_config_with(
        &dir,
        &zone_with_valid_big_txt(),
        &demo_policies(),
        dns_extra,
    );
    let running = start_file(&config).await;
    (dir, running)
}

/// UDP replies never exceed the client's buffer (at least 512), capped by max_udp_payload;
/// what does not fit is truncated with TC; TCP carries the whole RRset.
async fn check_truncation(server: SocketAddr, cap: usize, records: usize) {
    let cases: &[(&[&str], usize, bool)] = &[
        (&["+bufsize=512"], 512, true),
        // No EDNS: the classic 512-byte limit, and no OPT in the reply.
        (&["+noedns"], 512, false),
        // Below 512 is treated as 512 (RFC 6891 §6.2.5).
        (&["+bufsize=100"], 512, true),
        (&["+bufsize=1232"], 1232, true),
        // More than we are willing to send: capped at max_udp_payload.
        (&["+bufsize=4096"], 4096, true),
    ];
    for (opts, client_limit, edns) in cases {
        let mut args = vec!["big.example.com", "TXT", "+ignore", "+norec"];
        args.extend_from_slice(opts);
        let d = dig(server, &args).await;
        let limit = (*client_limit).min(cap).max(512);
        let ctx = format!("{opts:?}:\n{}", d.text);
        assert_eq!(d.status, "NOERROR", "{ctx}");
        assert!(d.has_flag("tc"), "TC set: {ctx}");
        assert!(d.has_flag("aa"), "{ctx}");
        assert!(d.answer.len() < records, "{ctx}");
        let size = d.msg_size.expect("MSG SIZE");
        assert!(size <= limit, "{size} > {limit}: {ctx}");
        assert_eq!(d.edns_line.is_some(), *edns, "OPT echoed iff sent: {ctx}");
        if *edns {
            let udp = usize::from(d.edns_udp.unwrap());
            assert!((512..=cap).contains(&udp), "advertised {udp}: {ctx}");
        }
    }

    // Raw: exact byte counts, and the OPT survives truncation (RFC 6891 §7).
    for payload in [0u16, 512, 700, 1000, 1232, 1400, 4096, 65535] {
        let q = if payload == 0 {
            query("big.example.com", RecordType::TXT)
        } else {
            with_edns(query("big.example.com", RecordType::TXT), payload)
        };
        let raw = udp_raw_reply(server, &q).await;
        let limit = if payload == 0 {
            512
        } else {
            usize::from(payload).clamp(512, cap)
        };
        assert!(raw.len() <= limit, "payload {payload}: {} bytes", raw.len());
        let reply = decode(&raw);
        assert!(reply.metadata.truncation, "payload {payload}: TC");
        assert_eq!(reply.edns.is_some(), payload != 0, "payload {payload}: OPT");
        assert!(reply.answers.len() < records);
    }

    // TCP: everything, no TC.
    let d = dig(server, &["big.example.com", "TXT", "+tcp"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(!d.has_flag("tc"), "{}", d.text);
    assert_eq!(d.answer_data("TXT").len(), records, "{}", d.text);
    let reply = tcp(server, &query("big.example.com", RecordType::TXT)).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), records);

    // dig's default: TC over UDP, then the full answer over TCP.
    let d = dig(server, &["big.example.com", "TXT"]).await;
    assert!(
        d.text.contains("Truncated, retrying in TCP mode"),
        "{}",
        d.text
    );
    assert_eq!(d.transport.as_deref(), Some("TCP"));
    assert_eq!(d.answer_data("TXT").len(), records, "{}", d.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_buffer_size_is_honoured_and_capped() {
    let (_dir, running) = start_big("").await;
    check_truncation(v4(&running), 1232, 8).await;
    check_truncation(v6(&running), 1232, 8).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_udp_payload_setting_caps_replies() {
    let (_dir, running) = start_big("max_udp_payload = 600").await;
    check_truncation(v4(&running), 600, 8).await;
    running.shutdown().await;
}

/// The demo's own `big.example.com TXT` RRset (4 records, ~1.9 KB) as the README describes it:
/// truncated over UDP, complete over TCP.
/// (Regression test: before 4ccab55 the demo's strings were 430 characters, more than a
/// character-string holds, and every query for the name was SERVFAIL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_big_txt_is_truncated_over_udp_and_complete_over_tcp() {
    let running = start_demo().await;
    check_truncation(v4(&running), 1232, 4).await;
    running.shutdown().await;
}

/// RFC 6891 §6.1.3: a version we do not implement gets BADVERS (extended rcode 16, so the high
/// bits live in the OPT) and an OPT of the version we do speak, 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_version_one_gets_badvers() {
    let running = start_demo().await;
    let server = v4(&running);

    let d = dig(
        server,
        &["www.example.com", "A", "+edns=1", "+noednsnegotiation"],
    )
    .await;
    assert_eq!(d.status, "BADVERS", "{}", d.text);
    assert_eq!(d.edns_version, Some(0), "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);

    // dig's default negotiation falls back to version 0 and gets the answer.
    let d = dig(server, &["www.example.com", "A", "+edns=1"]).await;
    assert!(d.text.contains("BADVERS"), "{}", d.text);
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-a.example.net."]);

    // Raw, with ECS too (the version is checked first).
    for mut q in [
        with_edns(query("www.example.com", RecordType::A), 1232),
        ecs_query("www.example.com", RecordType::A, "2a02:d180::/56"),
    ] {
        q.edns.as_mut().unwrap().set_version(1);
        for raw in [
            udp_raw_reply(server, &q).await,
            tcp_bytes(server, &encode(&q)).await,
        ] {
            assert_eq!(raw[3] & 0x0f, 0, "low 4 bits of BADVERS (16) are 0");
            let reply = decode(&raw);
            // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
            assert_eq!(u16::from(reply.metadata.response_code), 16);
            let edns = reply.edns.as_ref().expect("OPT in a BADVERS reply");
            assert_eq!(edns.version(), 0);
            assert_eq!(edns.rcode_high(), 1);
            assert!(reply.answers.is_empty());
            assert_eq!(reply_ecs(&reply), None);
        }
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_bit_is_echoed() {
    let running = start_demo().await;
    let server = v4(&running);
    let d = dig(server, &["www.example.com", "A", "+dnssec"]).await;
    assert_eq!(d.edns_flags, vec!["do"], "{}", d.text);
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-a.example.net."]);
    let d = dig(server, &["www.example.com", "A"]).await;
    assert!(d.edns_flags.is_empty(), "{}", d.text);

    for dnssec_ok in [false, true] {
        let mut q = with_edns(query("example.com", RecordType::SOA), 1232);
        q.edns.as_mut().unwrap().set_dnssec_ok(dnssec_ok);
        let reply = udp(server, &q).await;
        assert_eq!(reply.edns.as_ref().unwrap().flags().dnssec_ok, dnssec_ok);
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_options_are_ignored_and_not_echoed() {
    let running = start_demo().await;
    let server = v4(&running);
    let d = dig(
        server,
        &["www.example.com", "A", "+ednsopt=65001:abcd", "+nsid"],
    )
    .await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-a.example.net."]);
    let echoed: Vec<_> = d
        .text
        .lines()
        .filter(|l| !l.starts_with("; <<>> DiG") && (l.contains("65001") || l.contains("NSID")))
        .collect();
    assert!(echoed.is_empty(), "{echoed:?} in\n{}", d.text);

    let mut q = ecs_query("www.example.com", RecordType::A, "2a02:d180::/56");
    let opt = q.edns.as_mut().unwrap().options_mut();
    opt.insert(EdnsOption::Unknown(65001, vec![0xab, 0xcd]));
    opt.insert(EdnsOption::Unknown(65002, vec![]));
    let reply = udp(server, &q).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(cname_targets(&reply), vec!["cdn-c.example.net."]);
    let options: Vec<EdnsCode> = reply
        .edns
        .as_ref()
        .unwrap()
        .options()
        .as_ref()
        .iter()
        .map(|(code, _)| *code)
        .collect();
    assert_eq!(options, vec![EdnsCode::Subnet], "only ECS comes back");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_edns_flags_are_cleared() {
    let running = start_demo().await;
    let server = v4(&running);
    let d = dig(server, &["www.example.com", "A", "+ednsflags=0x40"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    let line = d.edns_line.clone().unwrap();
    assert!(!line.contains("MBZ"), "flags must be cleared: {line}");
    assert!(d.edns_flags.is_empty(), "{line}");

    for (dnssec_ok, z) in [(false, 0x0040u16), (true, 0x7fff), (false, 0x0001)] {
        let mut q = with_edns(query("www.example.com", RecordType::A), 1232);
        let flags = q.edns.as_mut().unwrap().flags_mut();
        flags.dnssec_ok = dnssec_ok;
        flags.z = z;
        let raw = udp_raw_reply(server, &q).await;
        let reply = decode(&raw);
        let edns = reply.edns.as_ref().unwrap();
        assert_eq!(edns.flags().z, 0, "z {z:#x} cleared");
        assert_eq!(edns.flags().dnssec_ok, dnssec_ok);
        // And on the wire: the OPT is the last 11 bytes (no options); TTL = ext-rcode,
        // version, flags.
        let opt = &raw[raw.len() - 11..];
        assert_eq!(&opt[..3], &[0, 0, 41], "root owner, type OPT");
        let want_flags = if dnssec_ok { 0x80 } else { 0 };
        assert_eq!(
            &opt[5..9],
            &[0, 0, want_flags, 0],
            "ext-rcode 0, version 0, flags"
        );
    }
    running.shutdown().await;
}

/// Every reply to an EDNS query carries an OPT of version 0 with a sane buffer size, whatever
/// the rcode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_opt_is_version_zero_for_every_rcode() {
    let running = start_demo().await;
    let server = v4(&running);
    let cases: Vec<(Message, ResponseCode)> = vec![
        (
            with_edns(query("www.example.com", RecordType::A), 4096),
            ResponseCode::NoError,
        ),
        (
            with_edns(query("nope.example.com", RecordType::A), 512),
            ResponseCode::NXDomain,
        ),
        (
            with_edns(query("www.example.org", RecordType::A), 1232),
            ResponseCode::Refused,
        ),
        (
            raw_ecs_query("www.example.com", RecordType::A, vec![0, 1, 24, 5, 1, 2, 3]),
            ResponseCode::FormErr,
        ),
    ];
    for (q, rcode) in cases {
        let reply = udp(server, &q).await;
        assert_eq!(reply.metadata.response_code, rcode);
        let edns = reply
            .edns
            .as_ref()
            .unwrap_or_else(|| panic!("{rcode}: OPT"));
        assert_eq!(edns.version(), 0, "{rcode}");
        assert!((512..=1232).contains(&edns.max_payload()), "{rcode}");
    }
    running.shutdown().await;
}

/// RFC 6891 §6.1.1: "If a query message with more than one OPT RR is received, a FORMERR
/// (RCODE=1) MUST be returned."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_opt_records_are_formerr() {
    let running = start_demo().await;
    let server = v4(&running);
    let q = with_edns(query("www.example.com", RecordType::A), 1232);
    let mut bytes = encode(&q);
    // A second OPT: root, type 41, class 1232, TTL 0, RDLEN 0.
    bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    bytes[11] += 1; // ARCOUNT
    let raw = udp_bytes(server, &bytes).await.expect("a reply");
    assert_eq!(raw[3] & 0x0f, 1, "FORMERR, got {:02x?}", &raw[..12]);
    assert_eq!(u16::from_be_bytes([raw[6], raw[7]]), 0, "no answers");
    assert_alive(server).await;
    running.shutdown().await;
}
