//! Regression tests for replies that should not have been sent at all: sources that must
//! never be answered, forged on loopback with a raw socket.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::RecordType;

use crate::support::*;

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
    let counts = || async {
        let body = http_request(running.http_addr.unwrap(), "GET", "/metrics", &[], b"")
            .await
            .body;
        let count = |path: &str| -> u64 {
            let prefix = format!("steerdns_udp_replies_total{{path=\"{path}\"}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        };
        (count("fast"), count("full"))
    };
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
    // One query for each path: a steered name (fast) and a missing one (full).
    let fast_query = encode(&ecs_query(
        "www.example.com.",
        RecordType::A,
        "81.2.69.0/24",
    ));
    let full_query = encode(&query("nope.example.com.", RecordType::A));
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
