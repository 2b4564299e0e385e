//! Malformed input over UDP and TCP: the server answers FORMERR or stays silent, never hangs,
//! and keeps answering everyone afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A 12-byte header: id, flags (RD), and the four counts.
fn header(id: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[0x01, 0x00]);
    for count in [qd, an, ns, ar] {
        h.extend_from_slice(&count.to_be_bytes());
    }
    h
}

/// Packets whose header parses but whose body is broken: (what, bytes, id).
fn malformed_with_header() -> Vec<(&'static str, Vec<u8>, u16)> {
    let www = b"\x03www\x07example\x03com\x00".to_vec();
    let type_a_in = [0u8, 1, 0, 1];
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("1 question, no question bytes", header(0x5101, 1, 0, 0, 0)),
        ("2 questions, 1 present", {
            let mut p = header(0x5102, 2, 0, 0, 0);
            p.extend_from_slice(&www);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("name without type and class", {
            let mut p = header(0x5103, 1, 0, 0, 0);
            p.extend_from_slice(&www);
            p
        }),
        ("name cut in a label", {
            let mut p = header(0x5104, 1, 0, 0, 0);
            p.extend_from_slice(b"\x03www\x07exa");
            p
        }),
        ("pointer to itself", {
            let mut p = header(0x5105, 1, 0, 0, 0);
            p.extend_from_slice(&[0xc0, 12]);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("two pointers in a loop", {
            let mut p = header(0x5106, 1, 0, 0, 0);
            p.extend_from_slice(&[0xc0, 14, 0xc0, 12]);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("label then pointer back to it", {
            let mut p = header(0x5107, 1, 0, 0, 0);
            p.extend_from_slice(&[1, b'a', 0xc0, 12]);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("pointer past the end", {
            let mut p = header(0x5108, 1, 0, 0, 0);
            p.extend_from_slice(&[0xc3, 0xff]);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("label length 64", {
            let mut p = header(0x5109, 1, 0, 0, 0);
            p.push(64);
            p.extend_from_slice(&[b'a'; 64]);
            p.push(0);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("reserved label type 0x80", {
            let mut p = header(0x510a, 1, 0, 0, 0);
            p.extend_from_slice(&[0x80, 1, b'a', 0]);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("name longer than 255 bytes", {
            let mut p = header(0x510b, 1, 0, 0, 0);
            for _ in 0..5 {
                p.push(63);
                p.extend_from_slice(&[b'x'; 63]);
            }
            p.push(0);
            p.extend_from_slice(&type_a_in);
            p
        }),
        ("OPT with RDLENGTH past the end", {
            let mut p = header(0x510c, 1, 0, 0, 1);
            p.extend_from_slice(&www);
            p.extend_from_slice(&type_a_in);
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0xff, 0xff]);
            p
        }),
        ("EDNS option longer than the OPT", {
            let mut p = header(0x510d, 1, 0, 0, 1);
            p.extend_from_slice(&www);
            p.extend_from_slice(&type_a_in);
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 8]);
            p.extend_from_slice(&[0, 8, 0, 100, 0, 1, 24, 0]);
            p
        }),
        ("65535 answers claimed", {
            let mut p = header(0x510e, 1, 0xffff, 0, 0);
            p.extend_from_slice(&www);
            p.extend_from_slice(&type_a_in);
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            p
        }),
        ("record with RDLENGTH past the end", {
            let mut p = header(0x510f, 1, 1, 0, 0);
            p.extend_from_slice(&www);
            p.extend_from_slice(&type_a_in);
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0x10, 0]);
            p
        }),
    ];
    cases
        .drain(..)
        .map(|(what, bytes)| {
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            (what, bytes, id)
        })
        .collect()
}

/// Packets too short to have a header, or noise.
fn garbage(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut packets = vec![vec![], vec![0x42], rng.bytes(5), rng.bytes(11)];
    for _ in 0..200 {
        let len = rng.below(600);
        packets.push(rng.bytes(len));
    }
    packets
}

/// Valid queries with random bytes flipped.
fn mutated(rng: &mut Rng) -> Vec<Vec<u8>> {
    let base = [
        encode(&ecs_query(
            "www.example.com",
            RecordType::A,
            "2a02:d180::/56",
        )),
        encode(&with_edns(query("pop.example.com", RecordType::AAAA), 1232)),
        encode(&query("static.example.com", RecordType::A)),
    ];
    (0..300)
        .map(|i| {
            let mut p = base[i % base.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(p.len());
                p[at] ^= 1 << rng.below(8);
            }
            if rng.below(5) == 0 {
                let keep = rng.below(p.len());
                p.truncate(keep);
            }
            p
        })
        .collect()
}

/// Send each packet from its own socket at once, collect what comes back within `SILENCE`.
async fn udp_blast(server: SocketAddr, packets: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for packet in packets {
        tasks.spawn(async move {
            let reply = udp_bytes_wait(server, &packet, SILENCE).await;
            (packet, reply)
        });
    }
    let mut out = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(result) = tasks.join_next().await {
            out.push(result.expect("sender task"));
        }
    })
    .await;
    assert!(all.is_ok(), "UDP senders did not finish");
    out
}

/// Any reply must be a response to the packet: QR set, same id.
fn assert_plausible_reply(packet: &[u8], reply: &[u8]) {
    assert!(
        reply.len() >= 12,
        "short reply {reply:02x?} to {packet:02x?}"
    );
    assert_eq!(reply[2] & 0x80, 0x80, "QR set in reply to {packet:02x?}");
    if packet.len() >= 2 {
        assert_eq!(&reply[..2], &packet[..2], "id echoed for {packet:02x?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_udp_packets_get_formerr_or_nothing() {
    let running = start_demo().await;
    for server in [v4(&running), v6(&running)] {
        let cases = malformed_with_header();
        let packets: Vec<Vec<u8>> = cases.iter().map(|(_, p, _)| p.clone()).collect();
        let results = udp_blast(server, packets).await;
        for (packet, reply) in results {
            let (what, _, id) = cases.iter().find(|(_, p, _)| *p == packet).unwrap();
            if let Some(reply) = reply {
                assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), *id, "{what}");
                assert_eq!(reply[2] & 0x80, 0x80, "{what}: QR");
                assert_eq!(reply[3] & 0x0f, 1, "{what}: FORMERR, got {:02x?}", reply);
                assert_eq!(
                    u16::from_be_bytes([reply[6], reply[7]]),
                    0,
                    "{what}: no answer"
                );
            }
        }
        assert_alive(server).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_noise_and_mutated_queries_do_not_hurt() {
    let running = start_demo().await;
    let server = v4(&running);
    let mut rng = Rng(0x5eed_d15e_a5e5_0001);
    let mut packets = garbage(&mut rng);
    packets.extend(mutated(&mut rng));
    for chunk in packets.chunks(100) {
        for (packet, reply) in udp_blast(server, chunk.to_vec()).await {
            if let Some(reply) = reply {
                assert_plausible_reply(&packet, &reply);
            }
        }
    }
    assert_alive(server).await;
    running.shutdown().await;
}

/// A valid query padded to 65,000 bytes (the largest loopback UDP datagram is 65,507).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_udp_datagram() {
    let running = start_demo().await;
    let server = v4(&running);
    let mut packet = encode(&ecs_query(
        "www.example.com",
        RecordType::A,
        "2a02:d180::/56",
    ));
    packet.resize(65_000, 0);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    match socket.send_to(&packet, server).await {
        Ok(_) => {
            let mut buf = vec![0u8; 65_536];
            if let Ok(Ok((n, _))) = tokio::time::timeout(SILENCE, socket.recv_from(&mut buf)).await
            {
                assert_plausible_reply(&packet, &buf[..n]);
            }
        }
        // The OS may refuse a datagram this big; then there is nothing to test.
        Err(e) => eprintln!("65,000-byte datagram not sent: {e}"),
    }
    let mut noise = Rng(7).bytes(65_000);
    noise[2] &= 0x7f;
    let _ = socket.send_to(&noise, server).await;
    assert_alive(server).await;
    running.shutdown().await;
}

/// Over TCP, after each malformed message on a connection, that connection is either closed
/// or still answers the next, valid query; never silent forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tcp_messages_get_formerr_or_close() {
    let running = start_demo().await;
    let server = v4(&running);
    let mut rng = Rng(0x7c9_0000_0001);
    let mut messages: Vec<(String, Vec<u8>)> = malformed_with_header()
        .into_iter()
        .map(|(what, bytes, _)| (what.to_owned(), bytes))
        .collect();
    messages.push(("empty message".into(), vec![]));
    messages.push(("1-byte message".into(), vec![0x42]));
    messages.push(("11-byte message".into(), rng.bytes(11)));
    for i in 0..20 {
        let len = rng.below(300);
        messages.push((format!("noise {i}"), rng.bytes(len)));
    }
    for (i, packet) in mutated(&mut rng).into_iter().take(40).enumerate() {
        messages.push((format!("mutated {i}"), packet));
    }

    for (what, message) in messages {
        let mut stream = tcp_connect(server).await;
        tcp_write(&mut stream, &message).await;
        let probe = query("mail.example.com", RecordType::A);
        // The server may already have closed the connection.
        let mut framed = (encode(&probe).len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&encode(&probe));
        let _ = stream.write_all(&framed).await;
        let mut outcome = "neither answered nor closed";
        for _ in 0..3 {
            let Some(read) = tcp_read_within(&mut stream, TIMEOUT).await else {
                panic!("{what}: connection neither answered nor closed");
            };
            let Some(reply) = read else {
                outcome = "closed";
                break;
            };
            if reply.len() >= 2 && reply[..2] == probe.metadata.id.to_be_bytes() {
                let reply = decode(&reply);
                assert_eq!(addresses(&reply.answers), vec!["192.0.2.25"], "{what}");
                outcome = "answered";
                break;
            }
            // A reply to the malformed message: must look like one.
            assert_plausible_reply(&message, &reply);
        }
        assert_ne!(outcome, "neither answered nor closed", "{what}");
    }
    assert_alive(server).await;
    running.shutdown().await;
}

/// A TCP client that sends unframed noise and half-closes is disconnected, not waited on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_noise_then_eof_is_closed() {
    let running = start_demo().await;
    let server = v4(&running);
    let mut rng = Rng(99);
    for len in [1usize, 2, 3, 50, 700, 5000] {
        let mut stream = tcp_connect(server).await;
        let _ = stream.write_all(&rng.bytes(len)).await;
        let _ = stream.shutdown().await;
        // Read until EOF (or reset); anything read must be framed replies, bounded in time.
        let done = tokio::time::timeout(TIMEOUT, async {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
        })
        .await;
        assert!(
            done.is_ok(),
            "noise of {len} bytes: connection not closed after EOF"
        );
    }
    assert_alive(server).await;
    running.shutdown().await;
}
