//! Transports: UDP and TCP on the same port, the IPv6 listener, TCP framing, pipelining,
//! stalled and idle TCP clients, many clients at once, shutdown.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_share_each_listener_port() {
    let running = start_demo().await;
    assert_eq!(running.dns_addrs.len(), 2);
    for server in [v4(&running), v6(&running)] {
        assert_ne!(server.port(), 0);
        assert!(server.ip().is_loopback());
        let q = ecs_query("www.example.com", RecordType::A, "81.2.69.142/32");
        let by_udp = udp(server, &q).await;
        let by_tcp = tcp(server, &q).await;
        for reply in [&by_udp, &by_tcp] {
            assert_eq!(cname_targets(reply), vec!["cdn-d.example.net."], "{server}");
            assert_eq!(
                reply_ecs(reply),
                Some(("81.2.69.142".parse().unwrap(), 32, 31))
            );
        }
    }
    running.shutdown().await;
}

/// Several queries written at once on one connection are all answered (RFC 7766 §6.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelined_queries_are_all_answered() {
    let running = start_demo().await;
    let server = v4(&running);
    let queries = [
        ecs_query("www.example.com", RecordType::A, "2a02:d180::/56"),
        ecs_query("pop.example.com", RecordType::AAAA, "214.0.1.0/24"),
        query("example.com", RecordType::MX),
        query("nope.example.com", RecordType::A),
    ];
    let mut stream = tcp_connect(server).await;
    let mut all = Vec::new();
    for q in &queries {
        let bytes = encode(q);
        all.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        all.extend_from_slice(&bytes);
    }
    stream.write_all(&all).await.unwrap();
    let mut got = std::collections::BTreeMap::new();
    for _ in &queries {
        let reply = decode(&tcp_read(&mut stream).await.expect("a reply per query"));
        got.insert(reply.metadata.id, reply);
    }
    let ids: BTreeSet<u16> = queries.iter().map(|q| q.metadata.id).collect();
    assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), ids);
    assert_eq!(
        cname_targets(&got[&queries[0].metadata.id]),
        vec!["cdn-c.example.net."]
    );
    assert_eq!(
        addresses(&got[&queries[1].metadata.id].answers),
        vec!["2001:db8::3"]
    );
    assert_eq!(got[&queries[2].metadata.id].answers.len(), 1);
    assert_eq!(
        got[&queries[3].metadata.id].metadata.response_code,
        ResponseCode::NXDomain
    );

    // The connection stays usable for more queries, one at a time.
    for subnet in ["2a02:d3c0::/56", "149.101.100.0/24", "214.78.120.0/24"] {
        let q = ecs_query("www.example.com", RecordType::A, subnet);
        tcp_write(&mut stream, &encode(&q)).await;
        let reply = decode(&tcp_read(&mut stream).await.expect("reply"));
        assert_eq!(reply.metadata.id, q.metadata.id);
        assert_eq!(reply.answers.len(), 1, "{subnet}");
    }
    running.shutdown().await;
}

/// A query split across many small TCP writes is reassembled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_query_split_across_writes() {
    let running = start_demo().await;
    let server = v4(&running);
    let q = ecs_query("www.example.com", RecordType::A, "2a02:d180::/56");
    let bytes = encode(&q);
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let mut stream = tcp_connect(server).await;
    stream.set_nodelay(true).unwrap();
    for chunk in framed.chunks(3) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
    }
    let reply = decode(&tcp_read(&mut stream).await.expect("reply"));
    assert_eq!(cname_targets(&reply), vec!["cdn-c.example.net."]);
    running.shutdown().await;
}

/// Clients that open a TCP connection and stall (after a length prefix, in the middle of a
/// length prefix, in the middle of a message, or before sending anything) must not stop
/// anyone else; the server drops them after `tcp_idle_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tcp_clients_do_not_block_others_and_are_dropped() {
    let dir = TempDir::new("stall");
    let config = write_config_with(
        &dir,
        DEMO_ZONE,
        &demo_policies(),
        "tcp_idle_timeout_ms = 500",
    );
    let running = start_file(&config).await;
    let server = v4(&running);

    let mut stalled = Vec::new();
    for prefix in [
        &[0x00u8, 0x40][..],
        &[0x00][..],
        &[0x00, 0x40, 0x12, 0x34, 0x01][..],
        &[][..],
    ] {
        let mut stream = tcp_connect(server).await;
        stream.write_all(prefix).await.unwrap();
        stalled.push(stream);
    }

    // Everyone else is served promptly, over both transports.
    let started = Instant::now();
    for i in 0..10 {
        let subnet = if i % 2 == 0 {
            "2a02:d180::/56"
        } else {
            "2a02:d3c0::/56"
        };
        let q = ecs_query("www.example.com", RecordType::A, subnet);
        assert_eq!(udp(server, &q).await.answers.len(), 1);
        assert_eq!(tcp(server, &q).await.answers.len(), 1);
    }
    let d = dig(server, &["www.example.com", "A", "+tcp"]).await;
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-a.example.net."]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served while others stalled, took {:?}",
        started.elapsed()
    );

    // The stalled connections are closed by the server (EOF or reset) well within a bound.
    for (i, mut stream) in stalled.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        match closed {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("stalled connection {i} got {n} bytes: {:02x?}", &buf[..n]),
            Err(_) => panic!("stalled connection {i} not closed by the idle timeout"),
        }
    }
    assert_alive(server).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_on_both_transports() {
    let running = start_demo().await;
    let server = v4(&running);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        tasks.spawn(async move {
            let (subnet, want) = match i % 4 {
                0 => ("2a02:d180::/56", "cdn-c.example.net."),
                1 => ("81.2.69.142/32", "cdn-d.example.net."),
                2 => ("214.78.120.0/24", "cdn-b.example.net."),
                _ => ("149.101.100.0/24", "cdn-a.example.net."),
            };
            let q = ecs_query("www.example.com", RecordType::A, subnet);
            let reply = if i % 2 == 0 {
                udp(server, &q).await
            } else {
                tcp(server, &q).await
            };
            assert_eq!(cname_targets(&reply), vec![want], "client {i} {subnet}");
        });
    }
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        while let Some(result) = tasks.join_next().await {
            result.expect("client task");
        }
    })
    .await
    .expect("all clients answered in time");
    running.shutdown().await;
}

/// The hickory client over the IPv6 listener, TCP and UDP, with and without ECS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_with_the_hickory_client() {
    let running = start_demo().await;
    let server = v6(&running);
    for client in [hickory_udp(server).await, hickory_tcp(server).await] {
        let reply = hickory_send(
            &client,
            ecs_query("pop.example.com", RecordType::A, "2a02:d3c0::/56"),
        )
        .await;
        assert_eq!(addresses(&reply.answers), vec!["192.0.2.2"]);
        // ::1 is not in the GeoIP data: the default PoP.
        let reply = hickory_send(
            &client,
            with_edns(query("pop.example.com", RecordType::AAAA), 1232),
        )
        .await;
        assert_eq!(addresses(&reply.answers), vec!["2001:db8::1"]);
        assert_eq!(reply_ecs(&reply), None);
    }
    running.shutdown().await;
}

/// After shutdown the listeners are gone: TCP connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_listeners() {
    let running = start_demo().await;
    let server = v4(&running);
    assert_alive(server).await;
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown in time");
    let connect = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(server)).await;
    assert!(
        matches!(connect, Ok(Err(_))),
        "TCP still accepted after shutdown: {connect:?}"
    );
    let q = query("www.example.com", RecordType::A);
    assert!(
        udp_bytes_wait(server, &encode(&q), SILENCE).await.is_none(),
        "UDP still answered after shutdown"
    );
}

/// `0.0.0.0:P` (here its loopback form) beside `[::]:P` on the same port: the IPv6 sockets
/// take IPv6 only instead of colliding with the IPv4 ones, and both families are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_wildcard_listeners_share_a_port() {
    // A port free for UDP and TCP right now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut config = steerdns::demo::config();
    loopback(&mut config);
    config.dns_listen = vec![
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("[::]:{port}").parse().unwrap(),
    ];
    let running = steerdns::app::start(config, steerdns::control::ConfigOrigin::Demo)
        .await
        .expect("both listeners bind");
    for server in [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::new("::1".parse().unwrap(), port),
    ] {
        let q = query("mail.example.com", RecordType::A);
        assert_eq!(
            addresses(&udp(server, &q).await.answers),
            ["192.0.2.25"],
            "{server}"
        );
        assert_eq!(
            addresses(&tcp(server, &q).await.answers),
            ["192.0.2.25"],
            "{server}"
        );
    }
    running.shutdown().await;
}
