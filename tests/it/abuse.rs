//! Abuse resistance over real sockets: UDP response rate limiting per client network (drops
//! and TC "slip" stubs, exempt networks, the next second), the TCP caps (in all, per
//! client network, queries per connection), and the HTTP listeners' bounds (connection cap,
//! head and request timeouts, request rate limits per client network, the stricter limit on
//! failed authentication). Loopback only: 127.0.0.0/8 has many networks (the HTTP limits are
//! set to /32 networks here, so 127.0.0.1 and 127.0.0.2 are two).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::rum_ingest::metric;
use crate::support::*;

/// A burst of `n` queries for www.example.com A from `from`, as fast as they go; the replies
/// that came back within half a second after the last one, decoded.
async fn burst(server: SocketAddr, from: &str, n: u16) -> Vec<Message> {
    let socket = UdpSocket::bind(format!("{from}:0")).await.unwrap();
    socket.connect(server).await.unwrap();
    for id in 0..n {
        let mut q = query("www.example.com", RecordType::A);
        q.metadata.id = id;
        socket.send(&encode(&q)).await.unwrap();
    }
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(len)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
    {
        let reply = decode(&buf[..len]);
        assert!(reply.metadata.id < n, "a reply to one of ours");
        assert_eq!(reply.queries.len(), 1, "the question is echoed");
        replies.push(reply);
    }
    replies
}

fn split(replies: &[Message]) -> (usize, usize) {
    let stubs = replies.iter().filter(|r| r.metadata.truncation).count();
    for r in replies.iter().filter(|r| r.metadata.truncation) {
        assert!(r.answers.is_empty() && r.authorities.is_empty(), "{r:?}");
    }
    (replies.len() - stubs, stubs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_replies_past_the_rate_are_dropped_or_slipped_per_network() {
    let dir = TempDir::new("abuse-rrl");
    let path = write_config_with(
        &dir,
        DEMO_ZONE,
        &demo_policies(),
        "\n[dns.rate_limit]\nresponses_per_second = 20\nslip = 2\nipv4_prefix = 32\n\
         exempt = [\"127.0.0.2\"]\n",
    );
    let running = start_file(&path).await;
    let server = v4(&running);
    let http = running.http_addr.unwrap();

    let limited = burst(server, "127.0.0.1", 100).await;
    let (full, stubs) = split(&limited);
    eprintln!("127.0.0.1, 100 queries at 20/s: {full} answers, {stubs} TC stubs");
    // 20 a second; a burst may straddle a second boundary.
    assert!((20..=40).contains(&full), "{full} full answers");
    let held = 100 - full;
    // Every 2nd limited reply slips.
    assert_eq!(stubs, held / 2, "{stubs} stubs of {held} limited");
    let dropped = metric(http, "steerdns_rrl_limited_total{action=\"drop\"}").await;
    let slipped = metric(http, "steerdns_rrl_limited_total{action=\"slip\"}").await;
    assert_eq!(
        (dropped, slipped),
        (Some((held - stubs) as u64), Some(stubs as u64))
    );

    // Another network has its own budget; an exempt one has none.
    let (other, _) = split(&burst(server, "127.0.0.3", 30).await);
    assert!(other >= 20, "127.0.0.3: {other}");
    let (exempt, exempt_stubs) = split(&burst(server, "127.0.0.2", 100).await);
    assert_eq!((exempt, exempt_stubs), (100, 0));

    // The next second, the first network is answered again, in full.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (again, _) = split(&burst(server, "127.0.0.1", 5).await);
    assert_eq!(again, 5);
    running.shutdown().await;
}

/// A TCP connection from `from` to `server`.
async fn connect_from(server: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Whether `stream` is served: a query gets its reply (`false`: closed without one).
async fn served(stream: &mut TcpStream) -> bool {
    let q = query("pop.example.com", RecordType::A);
    let message = encode(&q);
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    // A connection over a cap may be closed (and reset) before the query is written.
    if stream.write_all(&framed).await.is_err() {
        return false;
    }
    match tcp_read(stream).await {
        Some(bytes) => {
            assert_eq!(decode(&bytes).metadata.id, q.metadata.id);
            true
        }
        None => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_capped_in_all_and_per_network() {
    let dir = TempDir::new("abuse-tcp");
    let path = write_config_with(
        &dir,
        DEMO_ZONE,
        &demo_policies(),
        "tcp_max_connections = 6\ntcp_max_per_network = 4\ntcp_max_queries = 3\n",
    );
    let running = start_file(&path).await;
    let server = v4(&running);
    let http = running.http_addr.unwrap();

    // Four from 127.0.0.0/24 are served; the fifth from that /24 is closed at once.
    let mut held = Vec::new();
    for i in 1..=4 {
        let mut c = connect_from(server, &format!("127.0.0.{i}")).await;
        assert!(served(&mut c).await, "connection {i}");
        held.push(c);
    }
    let mut fifth = connect_from(server, "127.0.0.5").await;
    assert!(!served(&mut fifth).await, "a fifth from the same /24");
    // Two more from another /24 fill the global cap of six; a seventh is closed.
    for i in 1..=2 {
        let mut c = connect_from(server, &format!("127.0.1.{i}")).await;
        assert!(served(&mut c).await, "127.0.1.{i}");
        held.push(c);
    }
    let mut seventh = connect_from(server, "127.0.2.1").await;
    assert!(!served(&mut seventh).await, "a seventh in all");
    assert_eq!(
        metric(http, "steerdns_tcp_refused_total{cap=\"max_per_network\"}").await,
        Some(1)
    );
    assert_eq!(
        metric(http, "steerdns_tcp_refused_total{cap=\"max_connections\"}").await,
        Some(1)
    );
    assert_eq!(metric(http, "steerdns_tcp_connections").await, Some(6));

    // Closing one frees its place (for its network and in all).
    drop(held.remove(0));
    eventually(
        "the closed connection's place is free",
        Duration::from_secs(5),
        async || match metric(http, "steerdns_tcp_connections").await {
            Some(5) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let mut c = connect_from(server, "127.0.0.9").await;
    assert!(served(&mut c).await, "a place again");

    // Three queries per connection, pipelined: three replies, then the server closes. Only
    // as many as the cap allows are sent: a close with queries left unread is a reset, which
    // can race the write of the rest (without the cap the connection stays open, and the
    // read below times out).
    let mut pipelined = c;
    let ids: Vec<u16> = (0..2).map(|_| next_id()).collect();
    for id in &ids {
        let mut q = query("pop.example.com", RecordType::A);
        q.metadata.id = *id;
        tcp_write(&mut pipelined, &encode(&q)).await;
    }
    // The first query of this connection was answered above: two more, then the close.
    for id in &ids {
        let reply = tcp_read(&mut pipelined).await.expect("a reply");
        assert_eq!(decode(&reply).metadata.id, *id);
    }
    assert_eq!(
        tcp_read(&mut pipelined).await,
        None,
        "closed after 3 queries"
    );
    running.shutdown().await;
}

/// A server whose HTTP listeners allow 3 connections, 300 ms for a request head and 600 ms
/// for a whole request.
async fn tight_http(tag: &str) -> (TempDir, steerdns::app::Running) {
    let dir = TempDir::new(tag);
    let path = write_config(&dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[http]\nlisten = \"off\"\n",
        "[http]\nlisten = \"off\"\nmax_connections = 3\nheader_timeout_ms = 300\n\
         request_timeout_ms = 600\n",
    );
    std::fs::write(&path, text).unwrap();
    let running = start_file(&path).await;
    (dir, running)
}

/// Read until the peer closes (true) or `within` passes (false).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped_and_slow_clients_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, running) = tight_http("abuse-http").await;
    let http = running.http_addr.unwrap();

    // A client that sends half a request head is closed after the head timeout.
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "slowloris closed"
    );
    eprintln!("half a head: closed after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A body that never completes gets 408 after the request timeout (an admin edit).
    let admin = AdminClient::of(&running);
    let mut trickle = TcpStream::connect(admin.addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/policies/www.example.com HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nContent-Length: 100\r\n\r\nname = ",
        admin.token
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );

    // Three idle connections fill the cap: a fourth is closed at once, unanswered.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut fourth = TcpStream::connect(http).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), fourth.read_to_end(&mut got)).await;
    assert!(got.is_empty(), "over the cap: closed without a reply");
    // Once the idle ones are timed out, the listener answers again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = http_request(http, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    let line = |name: &str| {
        r.body
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
    };
    assert_eq!(
        line("steerdns_http_refused_total{listener=\"public\"}"),
        Some(1)
    );
    assert_eq!(
        line("steerdns_http_timeouts_total{listener=\"admin\"}"),
        Some(1)
    );
    running.shutdown().await;
}

/// A server with `[http.rate_limit]` set to `limits` (both listeners on loopback).
async fn rate_limited_http(
    tag: &str,
    limits: &str,
    extra: &str,
) -> (TempDir, steerdns::app::Running) {
    let dir = TempDir::new(tag);
    dir.write("rum.secret", &format!("{}\n", crate::rum_ingest::SECRET));
    let path = write_config_extra(&dir, DEMO_ZONE, &demo_policies(), extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[http]\nlisten = \"off\"\n",
        &format!("[http]\nlisten = \"off\"\n[http.rate_limit]\n{limits}\n"),
    );
    std::fs::write(&path, text).unwrap();
    let running = start_file(&path).await;
    (dir, running)
}

/// Send `request` from `from` until it is answered 429 (at most `max` times); the statuses
/// before it and the 429 itself.
async fn until_limited(
    from: &str,
    max: usize,
    request: impl AsyncFn(std::net::IpAddr) -> HttpResponse,
) -> (Vec<u16>, HttpResponse) {
    let ip = from.parse().unwrap();
    let mut before = Vec::new();
    for _ in 0..max {
        let r = request(ip).await;
        if r.status == 429 {
            return (before, r);
        }
        before.push(r.status);
    }
    panic!("{from}: not limited within {max} requests: {before:?}");
}

fn retry_after(r: &HttpResponse) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {r}"))
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After not whole seconds ({e}): {r}"))
}

/// `/metrics` read from 127.0.0.9 (a network of its own with `ipv4_prefix = 32`).
async fn metric_from_aside(http: SocketAddr, name: &str) -> Option<u64> {
    let r = http_request_from(
        "127.0.0.9".parse().unwrap(),
        http,
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    r.body.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

/// Past its burst a client network gets 429 with Retry-After on both listeners (the admin
/// API with the right token too); another network is not affected; after Retry-After the
/// first network is served again; the metric counts each refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_past_the_rate_get_429_per_network() {
    let (_dir, running) = rate_limited_http(
        "abuse-http-rate",
        "requests_per_second = 1\nburst = 5\nipv4_prefix = 32\nauth_failures_per_minute = 0",
        "",
    )
    .await;
    let http = running.http_addr.unwrap();
    let admin = AdminClient::of(&running);
    let auth = format!("Bearer {}", admin.token);
    let public_get = async |ip| http_request_from(ip, http, "GET", "/healthz", &[], b"").await;
    let admin_get = async |ip| {
        let headers = [("Authorization", auth.as_str())];
        http_request_from(ip, admin.addr, "GET", "/api/v1/health", &headers, b"").await
    };

    // The public listener.
    let (served, limited) = until_limited("127.0.0.1", 50, public_get).await;
    assert!(
        served.len() >= 5 && served.iter().all(|&s| s == 200),
        "{served:?}"
    );
    let wait = retry_after(&limited);
    assert!((1..=2).contains(&wait), "{limited}");
    assert_eq!(limited.json()["reason"], "requests", "{limited}");
    assert_eq!(
        public_get("127.0.0.2".parse().unwrap()).await.status,
        200,
        "another network"
    );
    // The admin listener: its own table, so 127.0.0.1 starts with a full bucket there.
    let (served, limited) = until_limited("127.0.0.1", 50, admin_get).await;
    assert!(
        served.len() >= 5 && served.iter().all(|&s| s == 200),
        "{served:?}"
    );
    assert!(limited.error().contains("too many requests"), "{limited}");
    assert!(retry_after(&limited) >= 1, "{limited}");
    assert_eq!(admin_get("127.0.0.2".parse().unwrap()).await.status, 200);

    assert_eq!(
        metric_from_aside(
            http,
            "steerdns_http_rate_limited_total{listener=\"public\",reason=\"requests\"}"
        )
        .await,
        Some(1)
    );
    assert_eq!(
        metric_from_aside(
            http,
            "steerdns_http_rate_limited_total{listener=\"admin\",reason=\"requests\"}"
        )
        .await,
        Some(1)
    );
    assert_eq!(
        metric_from_aside(
            http,
            "steerdns_http_rate_limited_total{listener=\"admin\",reason=\"auth_failures\"}"
        )
        .await,
        Some(0)
    );

    // After Retry-After the bucket has a token again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        public_get("127.0.0.1".parse().unwrap()).await.status,
        200,
        "refilled"
    );
    running.shutdown().await;
}

/// With the default limits, failed authentications (401) are limited long before requests:
/// after 10 from a network every request from it gets 429, the right token too, while
/// another network still gets in. A 403 (a known token outside its scope) does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_before_requests() {
    let dir = TempDir::new("abuse-http-auth");
    dir.write("read.token", "read-token-0123456789ab\n");
    let path = write_config(&dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "[http]\nlisten = \"off\"\n",
            "[http]\nlisten = \"off\"\n[http.rate_limit]\nipv4_prefix = 32\n",
        )
        .replace(
            "[admin]\nlisten = \"off\"\n",
            "[admin]\nlisten = \"off\"\nread_token_file = \"read.token\"\n",
        );
    std::fs::write(&path, text).unwrap();
    let running = start_file(&path).await;
    let http = running.http_addr.unwrap();
    let admin = AdminClient::of(&running);
    let good = format!("Bearer {}", admin.token);
    let get = async |ip, auth: &str| {
        let headers = [("Authorization", auth)];
        http_request_from(ip, admin.addr, "GET", "/api/v1/policies", &headers, b"").await
    };

    // 403s are not failed authentications.
    let local = "127.0.0.1".parse().unwrap();
    for _ in 0..15 {
        let headers = [("Authorization", "Bearer read-token-0123456789ab")];
        let r = http_request_from(
            local,
            admin.addr,
            "DELETE",
            "/api/v1/health/x",
            &headers,
            b"",
        )
        .await;
        assert_eq!(r.status, 403, "{r}");
    }
    assert_eq!(get(local, &good).await.status, 200);

    let (failed, limited) = until_limited("127.0.0.1", 30, async |ip| {
        get(ip, "Bearer guess-0123456789").await
    })
    .await;
    assert_eq!(failed, [401; 10], "ten guesses, then 429");
    assert_eq!(limited.json()["reason"], "auth_failures", "{limited}");
    let wait = retry_after(&limited);
    assert!((1..=6).contains(&wait), "one failure per 6 s: {limited}");
    // Locked out: the right token is not even looked at.
    let r = get("127.0.0.1".parse().unwrap(), &good).await;
    assert_eq!(r.status, 429, "{r}");
    assert!(r.error().contains("failed authentications"), "{r}");
    // Another network is not.
    let other = "127.0.0.2".parse().unwrap();
    assert_eq!(get(other, &good).await.status, 200);
    assert_eq!(get(other, "Bearer guess-0123456789").await.status, 401);
    assert_eq!(
        metric_from_aside(
            http,
            "steerdns_http_rate_limited_total{listener=\"admin\",reason=\"auth_failures\"}"
        )
        .await,
        Some(2)
    );
    assert_eq!(
        metric_from_aside(
            http,
            "steerdns_http_rate_limited_total{listener=\"admin\",reason=\"requests\"}"
        )
        .await,
        Some(0),
        "the request limit (burst 500) was never reached"
    );
    running.shutdown().await;
}

/// Behind a trusted proxy the public limit is per forwarded client network, and the beacon
/// endpoint is not under it (it has its own per-network limit, which comes first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_limit_follows_forwarded_for_and_spares_the_beacon() {
    let rum = crate::rum_ingest::rum_config(
        &[("cdn-a", "https://cdn-a.example.net/rum/test.gif".into())],
        "trusted_proxies = [\"127.0.0.0/8\"]\nbeacons_per_network_per_minute = 100",
    );
    let (_dir, running) =
        rate_limited_http("abuse-http-xff", "requests_per_second = 1\nburst = 3", &rum).await;
    let http = running.http_addr.unwrap();
    let config_from = async |xff: &str| {
        http_request(
            http,
            "GET",
            "/rum/v1/config",
            &[("X-Forwarded-For", xff)],
            b"",
        )
        .await
    };
    let (served, limited) =
        until_limited("127.0.0.1", 30, async |_| config_from("192.0.2.1").await).await;
    assert!(
        served.len() >= 3 && served.iter().all(|&s| s == 200),
        "{served:?}"
    );
    assert!(limited.error().contains("192.0.2.0/24"), "{limited}");
    // Another forwarded /24 has its own bucket.
    assert_eq!(config_from("192.0.3.1").await.status, 200);
    // Beacons from the limited network reach their own checks (400: not JSON), not a 429.
    for _ in 0..5 {
        let headers = [
            ("X-Forwarded-For", "192.0.2.1"),
            ("Content-Type", "text/plain"),
        ];
        let r = http_request(http, "POST", "/rum/v1/beacons", &headers, b"nope").await;
        assert_eq!(r.status, 400, "{r}");
    }
    running.shutdown().await;
}
