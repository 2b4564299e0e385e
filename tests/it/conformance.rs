//! The EDNS compliance battery (`conformance/edns.sh`, after ISC's EDNS compliance tests) run
//! with the real `dig` against in-process servers: the demo and the large-RRset zone of
//! `conformance/large.toml`, over IPv4 and IPv6. The script is the battery, so the test and a
//! user's run cannot drift apart; an echoing responder checks that the battery can fail.
//! Then each large RRset of the fixture through hickory's parser: truncated UDP replies parse,
//! hold only whole records of the RRset and fit; TCP carries all of them.
//!
//! `tests/it/edns.rs` covers the EDNS rules one by one on the demo's steered names; this file
//! is the battery as a whole and every common record type.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::support::*;

/// The large RRsets of `conformance/zones/large.test.zone`: (name, type, records).
const LARGE: &[(&str, RecordType, usize)] = &[
    ("a.large.test", RecordType::A, 120),
    ("aaaa.large.test", RecordType::AAAA, 80),
    ("mx.large.test", RecordType::MX, 80),
    ("txt.large.test", RecordType::TXT, 12),
    ("_sip._tcp.large.test", RecordType::SRV, 80),
    ("caa.large.test", RecordType::CAA, 60),
    ("ptr.large.test", RecordType::PTR, 80),
    ("naptr.large.test", RecordType::NAPTR, 40),
    ("sshfp.large.test", RecordType::SSHFP, 40),
    ("_443._tcp.www.large.test", RecordType::TLSA, 40),
    ("deleg.large.test", RecordType::NS, 40),
];

/// Run `conformance/edns.sh PRESET -s IP -p PORT`; returns (success, output).
async fn battery(preset: &str, server: SocketAddr) -> (bool, String) {
    let script = Path::new(REPO).join("conformance/edns.sh");
    let mut command = std::process::Command::new("bash");
    command.arg(script).arg(preset).args([
        "-s",
        &server.ip().to_string(),
        "-p",
        &server.port().to_string(),
    ]);
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("the battery finishes in time")
    .unwrap()
    .expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The names of the tests with this verdict (`PASS` or `FAIL`), in order.
fn verdicts<'a>(output: &'a str, verdict: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(verdict))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect()
}

fn assert_all_pass(preset: &str, server: SocketAddr, ok: bool, output: &str, tests: usize) {
    assert!(ok, "{preset} on {server}:\n{output}");
    assert!(verdicts(output, "FAIL").is_empty(), "{output}");
    assert_eq!(verdicts(output, "PASS").len(), tests, "{output}");
    assert!(
        output.contains(&format!("{tests} passed, 0 failed")),
        "{output}"
    );
}

/// The ten ISC tests plus four truncation tests per large RRset.
const ISC_TESTS: usize = 10;
const PER_RRSET: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_battery_passes_on_the_demo() {
    let running = start_demo().await;
    let (a, b) = (v4(&running), v6(&running));
    let ((ok4, out4), (ok6, out6)) = tokio::join!(battery("demo", a), battery("demo", b));
    assert_all_pass("demo", a, ok4, &out4, ISC_TESTS + PER_RRSET);
    assert_all_pass("demo", b, ok6, &out6, ISC_TESTS + PER_RRSET);
    running.shutdown().await;
}

async fn start_large() -> steerdns::app::Running {
    start_file(&Path::new(REPO).join("conformance/large.toml")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_battery_passes_on_large_rrsets_of_every_common_type() {
    let running = start_large().await;
    let (a, b) = (v4(&running), v6(&running));
    let ((ok4, out4), (ok6, out6)) = tokio::join!(battery("large", a), battery("large", b));
    let tests = ISC_TESTS + PER_RRSET * LARGE.len();
    assert_all_pass("large", a, ok4, &out4, tests);
    assert_all_pass("large", b, ok6, &out6, tests);
    running.shutdown().await;
}

/// A responder that sends every message back with QR set, over UDP and TCP on one port: it
/// gets BADVERS, option echoing, flag clearing, AA and truncation wrong, as a naive server
/// would. The battery must say so and exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_battery_fails_on_an_echoing_server() {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            if n > 2 {
                buf[2] |= 0x80;
                let _ = udp.send_to(&buf[..n], from).await;
            }
        }
    });
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while stream.read_exact(&mut len).await.is_ok() {
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut body).await.is_err() || body.len() < 3 {
                        return;
                    }
                    body[2] |= 0x80;
                    let _ = stream.write_all(&len).await;
                    let _ = stream.write_all(&body).await;
                }
            });
        }
    });

    let (ok, output) = battery("demo", addr).await;
    assert!(!ok, "the battery passed an echoing server:\n{output}");
    let failed = verdicts(&output, "FAIL");
    for test in [
        "plain",
        "edns1",
        "ednsopt",
        "edns1opt",
        "ednsflags",
        "optlist",
        "trunc512",
        "retrytcp",
    ] {
        assert!(failed.contains(&test), "{test} should fail:\n{output}");
    }
    assert!(output.contains("0 passed, 14 failed"), "{output}");
    udp_task.abort();
    tcp_task.abort();
}

/// Each large RRset through hickory's parser, without and with EDNS: the truncated UDP reply
/// parses, has TC, fits the limit, and holds only whole records of the RRset (in the answer,
/// or for the delegation in the authority section, with part of its glue); TCP carries every
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_rrsets_truncate_to_whole_records_and_come_whole_over_tcp() {
    let running = start_large().await;
    for server in [v4(&running), v6(&running)] {
        for &(qname, rtype, records) in LARGE {
            let of_type = |m: &Message| {
                m.answers
                    .iter()
                    .chain(&m.authorities)
                    .filter(|r| r.record_type() == rtype)
                    .count()
            };
            let all = |m: &Message| m.answers.len() + m.authorities.len() + m.additionals.len();
            let whole = tcp(server, &with_edns(query(qname, rtype), 1232)).await;
            assert!(!whole.metadata.truncation, "{qname} {rtype} over TCP");
            assert_eq!(of_type(&whole), records, "{qname} {rtype} over TCP");

            for payload in [0u16, 512, 1232, 4096] {
                let q = query(qname, rtype);
                let q = if payload == 0 {
                    q
                } else {
                    with_edns(q, payload)
                };
                let raw = udp_raw_reply(server, &q).await;
                let limit = if payload == 0 {
                    512
                } else {
                    usize::from(payload).min(1232)
                };
                let ctx = format!("{qname} {rtype} payload {payload} on {server}");
                assert!(raw.len() <= limit, "{ctx}: {} bytes", raw.len());
                let reply = decode(&raw);
                assert!(reply.metadata.truncation, "{ctx}: TC");
                assert_eq!(reply.edns.is_some(), payload != 0, "{ctx}: OPT");
                assert!(
                    all(&reply) < all(&whole),
                    "{ctx}: all records in one datagram"
                );
                let got = of_type(&reply);
                assert!(got > 0, "{ctx}: nothing fitted");
                assert_eq!(
                    reply.answers.len() + reply.authorities.len(),
                    got,
                    "{ctx}: only records of the RRset"
                );
                // Whole records, in order: a prefix of the full reply's.
                let prefix: Vec<_> = whole
                    .answers
                    .iter()
                    .chain(&whole.authorities)
                    .take(got)
                    .collect();
                let sent: Vec<_> = reply.answers.iter().chain(&reply.authorities).collect();
                assert_eq!(sent, prefix, "{ctx}");
            }
        }
    }
    running.shutdown().await;
}

/// `conformance/zonemaster.sh` on both presets: Zonemaster in undelegated mode finds no
/// ERROR or CRITICAL. Zonemaster asks port 53 only, so the script's server binds
/// 127.0.0.1:53 and 127.0.0.2:53; without root (or zonemaster-cli) the test says SKIPPED.
#[test]
fn zonemaster_finds_no_error_on_the_served_zones() {
    let have_cli = std::process::Command::new("sh")
        .args(["-c", "command -v zonemaster-cli"])
        .output()
        .is_ok_and(|o| o.status.success());
    let can_bind_53 = std::net::UdpSocket::bind("127.0.0.2:53").is_ok();
    if !have_cli || !can_bind_53 {
        eprintln!("SKIPPED: zonemaster-cli installed: {have_cli}, port 53 bindable: {can_bind_53}");
        return;
    }
    for preset in ["large", "demo"] {
        let output = std::process::Command::new("bash")
            .arg(Path::new(REPO).join("conformance/zonemaster.sh"))
            .arg(preset)
            .env("STEERDNS", env!("CARGO_BIN_EXE_steerdns"))
            .env("ZM_LEVEL", "INFO")
            .output()
            .expect("run bash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "zonemaster on {preset}:\n{text}");
        assert!(text.contains("PASS: no ERROR or CRITICAL"), "{text}");
        // It really ran: the basic, delegation, name server and zone tests each reported.
        for module in ["BASIC", "DELEGATION", "NAMESERVER", "ZONE"] {
            assert!(
                text.contains(module),
                "{preset}: no {module} test ran:\n{text}"
            );
        }
    }
}
