//! One run of each kind of check against real loopback servers.

use std::time::{Duration, Instant};

use steerdns_probes::{CheckKind, Outcome, Prober, run_check};

use crate::support::*;

async fn run(kind: CheckKind, timeout_ms: u64) -> Outcome {
    within(
        "a check run",
        run_check(&check("test", kind, 1000, timeout_ms)),
    )
    .await
}

fn assert_failed(outcome: &Outcome, fragment: &str) {
    assert!(!outcome.ok, "{outcome:?}");
    let error = outcome.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(fragment),
        "error {error:?} does not contain {fragment:?}"
    );
}

// ---- HTTP ----

#[tokio::test]
async fn http_ok() {
    let mut server = HttpServer::standard().await;
    let outcome = run(http_kind(&server.url("/ok")), 500).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.error, None);
    assert!(
        outcome.latency_ms > 0.0 && outcome.latency_ms < 500.0,
        "{outcome:?}"
    );
    let req = server.next_request().await;
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/ok");
    assert_eq!(req.header("host"), Some(server.addr.to_string().as_str()));
    assert!(
        req.header("user-agent")
            .unwrap()
            .starts_with("steerdns-probe/")
    );
}

#[tokio::test]
async fn http_wrong_status() {
    let server = HttpServer::standard().await;
    let outcome = run(http_kind(&server.url("/500")), 500).await;
    assert_failed(&outcome, "status 500, expected 200");
}

#[tokio::test]
async fn http_expected_non_200_status() {
    let server = HttpServer::standard().await;
    let kind = CheckKind::Http {
        url: server.url("/500"),
        host: None,
        connect_to: None,
        expect_status: 500,
        body_contains: None,
    };
    assert!(run(kind, 500).await.ok);
}

#[tokio::test]
async fn http_redirects_are_not_followed() {
    let server = HttpServer::standard().await;
    let outcome = run(http_kind(&server.url("/redirect")), 500).await;
    assert_failed(&outcome, "status 302, expected 200");
}

fn with_body(url: String, needle: &str) -> CheckKind {
    CheckKind::Http {
        url,
        host: None,
        connect_to: None,
        expect_status: 200,
        body_contains: Some(needle.to_string()),
    }
}

#[tokio::test]
async fn http_body_contains() {
    let server = HttpServer::standard().await;
    assert!(run(with_body(server.url("/ok"), "ok"), 500).await.ok);
    // At the end of a 300 kB body, across read chunks.
    assert!(run(with_body(server.url("/big"), "needle"), 900).await.ok);
}

#[tokio::test]
async fn http_body_mismatch() {
    let server = HttpServer::standard().await;
    let outcome = run(with_body(server.url("/ok"), "healthy"), 500).await;
    assert_failed(&outcome, "body does not contain \"healthy\" (6 bytes read)");
}

#[tokio::test]
async fn http_timeout_when_the_server_never_answers() {
    let mut server = HttpServer::standard().await;
    let start = Instant::now();
    let outcome = run(http_kind(&server.url("/hang")), 300).await;
    let elapsed = start.elapsed();
    assert_failed(&outcome, "timeout after 300 ms");
    assert_eq!(outcome.error.as_deref(), Some("timeout after 300 ms"));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(300 + 400),
        "took {elapsed:?}"
    );
    assert!(
        outcome.latency_ms >= 300.0 && outcome.latency_ms < 700.0,
        "{outcome:?}"
    );
    // The request did reach the server: it is the answer that never came.
    assert_eq!(server.next_request().await.path, "/hang");
}

#[tokio::test]
async fn http_connection_closed_without_answer() {
    let server = HttpServer::standard().await;
    let outcome = run(http_kind(&server.url("/close")), 500).await;
    assert!(!outcome.ok);
    let error = outcome.error.unwrap();
    assert!(!error.contains("timeout"), "{error}");
}

#[tokio::test]
async fn http_connection_refused() {
    let addr = closed_port().await;
    let start = Instant::now();
    let outcome = run(http_kind(&format!("http://{addr}/ok")), 500).await;
    assert_failed(&outcome, "onnection refused");
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn http_connect_to_keeps_the_url_host() {
    let mut server = HttpServer::standard().await;
    // cdn-a.example.net does not resolve here: the connection must go to connect_to.
    let kind = CheckKind::Http {
        url: "http://cdn-a.example.net/ok".into(),
        host: None,
        connect_to: Some(server.addr),
        expect_status: 200,
        body_contains: Some("ok".into()),
    };
    let outcome = run(kind, 500).await;
    assert!(outcome.ok, "{outcome:?}");
    let req = server.next_request().await;
    assert_eq!(req.path, "/ok");
    assert_eq!(req.header("host"), Some("cdn-a.example.net"));
}

#[tokio::test]
async fn http_connect_to_port_wins_over_the_url_port() {
    let mut server = HttpServer::standard().await;
    let kind = CheckKind::Http {
        url: "http://cdn-a.example.net:8080/ok".into(),
        host: None,
        connect_to: Some(server.addr),
        expect_status: 200,
        body_contains: None,
    };
    let outcome = run(kind, 500).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        server.next_request().await.header("host"),
        Some("cdn-a.example.net:8080")
    );
}

#[tokio::test]
async fn http_host_and_connect_to() {
    let mut server = HttpServer::standard().await;
    let kind = CheckKind::Http {
        url: "http://cdn-a.example.net/ok".into(),
        host: Some("www.example.com".into()),
        connect_to: Some(server.addr),
        expect_status: 200,
        body_contains: None,
    };
    assert!(run(kind, 500).await.ok);
    assert_eq!(
        server.next_request().await.header("host"),
        Some("www.example.com")
    );
}

#[tokio::test]
async fn http_host_without_connect_to_resolves_the_url_host() {
    let mut server = HttpServer::standard().await;
    let kind = CheckKind::Http {
        url: server.url("/ok"),
        host: Some("www.example.com".into()),
        connect_to: None,
        expect_status: 200,
        body_contains: None,
    };
    let outcome = run(kind, 500).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        server.next_request().await.header("host"),
        Some(format!("www.example.com:{}", server.addr.port()).as_str())
    );
}

#[tokio::test]
async fn https_sends_sni_and_verifies_the_certificate() {
    // A real TLS handshake through reqwest + rustls (ring provider): the server sees the SNI
    // name, and the probe rejects its self-signed certificate.
    let mut server = TlsServer::start().await;
    let kind = CheckKind::Http {
        url: "https://cdn-a.example.net/health".into(),
        host: Some("www.example.com".into()),
        connect_to: Some(server.addr),
        expect_status: 200,
        body_contains: None,
    };
    let outcome = run(kind, 900).await;
    assert_failed(&outcome, "certificate");
    let sni = within("the ClientHello", server.sni.recv()).await.unwrap();
    assert_eq!(sni.as_deref(), Some("www.example.com"));

    // Without `host`, the SNI is the URL's host.
    let kind = CheckKind::Http {
        url: "https://cdn-a.example.net/health".into(),
        host: None,
        connect_to: Some(server.addr),
        expect_status: 200,
        body_contains: None,
    };
    assert!(!run(kind, 900).await.ok);
    let sni = within("the ClientHello", server.sni.recv()).await.unwrap();
    assert_eq!(sni.as_deref(), Some("cdn-a.example.net"));
}

#[tokio::test]
async fn prober_runs_repeatedly_on_fresh_connections() {
    let mut server = HttpServer::standard().await;
    let prober = Prober::new(check("p", http_kind(&server.url("/ok")), 1000, 500));
    for _ in 0..3 {
        let result = within("a probe", prober.probe("cdn-a", "fra")).await;
        assert!(result.ok, "{result:?}");
        assert_eq!(result.target, "cdn-a");
        assert_eq!(result.agent, "fra");
        assert_eq!(result.check, "p");
        assert!(result.at_unix_ms > 1_600_000_000_000);
        assert_eq!(server.next_request().await.path, "/ok");
    }
}

// ---- TCP ----

#[tokio::test]
async fn tcp_ok() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let outcome = run(CheckKind::Tcp { address }, 500).await;
    assert!(outcome.ok, "{outcome:?}");
    within("the accept", listener.accept()).await.unwrap();
}

#[tokio::test]
async fn tcp_refused() {
    let address = closed_port().await;
    let outcome = run(CheckKind::Tcp { address }, 500).await;
    assert_failed(&outcome, &format!("connect {address}: Connection refused"));
}

// ---- DNS ----

fn dns_kind(server: std::net::SocketAddr, qtype: &str) -> CheckKind {
    CheckKind::Dns {
        server,
        name: "www.example.com".into(),
        qtype: qtype.into(),
    }
}

#[tokio::test]
async fn dns_answer() {
    let mut server = DnsServer::start(DnsMode::Answer).await;
    let outcome = run(dns_kind(server.addr, "A"), 500).await;
    assert!(outcome.ok, "{outcome:?}");
    let (name, qtype) = within("the query", server.queries.recv()).await.unwrap();
    assert_eq!(name.trim_end_matches('.'), "www.example.com");
    assert_eq!(qtype, "A");
}

#[tokio::test]
async fn dns_ignores_replies_with_another_id() {
    let server = DnsServer::start(DnsMode::WrongIdThenAnswer).await;
    let outcome = run(dns_kind(server.addr, "AAAA"), 500).await;
    assert!(outcome.ok, "{outcome:?}");
}

#[tokio::test]
async fn dns_nxdomain() {
    let server = DnsServer::start(DnsMode::NxDomain).await;
    let outcome = run(dns_kind(server.addr, "A"), 500).await;
    assert_eq!(outcome.error.as_deref(), Some("NXDOMAIN"));
    assert!(!outcome.ok);
}

#[tokio::test]
async fn dns_no_answer() {
    let server = DnsServer::start(DnsMode::Empty).await;
    let outcome = run(dns_kind(server.addr, "A"), 500).await;
    assert_eq!(outcome.error.as_deref(), Some("NOERROR with no answer"));
}

#[tokio::test]
async fn dns_silence_times_out() {
    let mut server = DnsServer::start(DnsMode::Silence).await;
    let start = Instant::now();
    let outcome = run(dns_kind(server.addr, "A"), 300).await;
    let elapsed = start.elapsed();
    assert_eq!(outcome.error.as_deref(), Some("timeout after 300 ms"));
    assert!(
        elapsed < Duration::from_millis(300 + 400),
        "took {elapsed:?}"
    );
    within("the query", server.queries.recv()).await.unwrap();
}
