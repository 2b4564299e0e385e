//! Loopback test servers: a minimal HTTP/1.1 server, a TLS server that records SNI, a DNS
//! responder. Every server records what it saw on an unbounded channel, so tests wait on
//! events instead of sleeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use steerdns_probes::{Check, CheckKind, ProbeResult};

/// Bound of any single wait in a test: generous, only there so a bug fails instead of hangs.
pub const WAIT: Duration = Duration::from_secs(10);

/// Await `f`, failing the test after [`WAIT`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

pub fn check(id: &str, kind: CheckKind, interval_ms: u64, timeout_ms: u64) -> Check {
    Check {
        id: id.to_string(),
        kind,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
    }
}

pub fn http_kind(url: &str) -> CheckKind {
    CheckKind::Http {
        url: url.to_string(),
        host: None,
        connect_to: None,
        expect_status: 200,
        body_contains: None,
    }
}

pub fn result(i: usize) -> ProbeResult {
    ProbeResult {
        target: "cdn-a".into(),
        check: format!("check {i}"),
        agent: "fra".into(),
        at_unix_ms: 1_700_000_000_000 + i as u64,
        ok: i % 2 == 0,
        latency_ms: i as f64 + 0.5,
        error: (i % 2 == 1).then(|| format!("error {i}")),
    }
}

// ---- HTTP ----

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub enum Reply {
    /// Status, body (sent with Content-Length, then the connection is closed).
    Respond(u16, Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Keep the connection open and never answer.
    Hang,
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct HttpServer {
    pub addr: SocketAddr,
    pub requests: mpsc::UnboundedReceiver<Request>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let tx = tx.clone();
                tokio::spawn(serve_http(stream, handler, tx));
            }
        });
        HttpServer {
            addr,
            requests,
            task,
        }
    }

    /// The test paths: `/ok` (200 "all ok"), `/500`, `/redirect` (302), `/hang`, `/close`,
    /// `/big` (200, 300 kB ending in "needle"); anything else 404.
    pub async fn standard() -> HttpServer {
        HttpServer::start(|req| match req.path.as_str() {
            "/ok" => Reply::Respond(200, b"all ok".to_vec()),
            "/500" => Reply::Respond(500, b"oops".to_vec()),
            "/redirect" => Reply::Respond(302, Vec::new()),
            "/hang" => Reply::Hang,
            "/close" => Reply::Close,
            "/big" => {
                let mut body = vec![b'x'; 300_000];
                body.extend_from_slice(b"needle");
                Reply::Respond(200, body)
            }
            _ => Reply::Respond(404, Vec::new()),
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn next_request(&mut self) -> Request {
        within("a request", self.requests.recv())
            .await
            .expect("server running")
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_http(mut stream: TcpStream, handler: Handler, tx: mpsc::UnboundedSender<Request>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let request = Request {
        method,
        path,
        headers,
        body,
    };
    let reply = handler(&request);
    let _ = tx.send(request);
    match reply {
        Reply::Respond(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Close => {}
        Reply::Hang => {
            // Hold the connection until the client gives up.
            let _ = stream.read(&mut chunk).await;
        }
    }
}

// ---- TLS ----

/// A TLS server with a self-signed certificate for `www.example.com` that records the SNI of
/// each ClientHello, then tries to finish the handshake.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub sni: mpsc::UnboundedReceiver<Option<String>>,
    task: JoinHandle<()>,
}

impl TlsServer {
    pub async fn start() -> TlsServer {
        steerdns_probes::install_crypto_provider();
        let cert = rcgen::generate_simple_self_signed(vec!["www.example.com".to_string()]).unwrap();
        let cert_der = cert.cert.der().clone();
        let key_der =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = Arc::new(
            tokio_rustls::rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![cert_der], key_der)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, sni) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                        tokio_rustls::rustls::server::Acceptor::default(),
                        stream,
                    );
                    let Ok(start) = acceptor.await else { return };
                    let _ = tx.send(start.client_hello().server_name().map(str::to_string));
                    // The client rejects the self-signed certificate; the error is its business.
                    let _ = start.into_stream(config).await;
                });
            }
        });
        TlsServer { addr, sni, task }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- DNS ----

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DnsMode {
    /// NOERROR with one A record 192.0.2.1.
    Answer,
    /// A reply with the wrong id first, then the right answer.
    WrongIdThenAnswer,
    NxDomain,
    /// NOERROR, no answer.
    Empty,
    /// Never reply.
    Silence,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    /// (name, type) of each query received.
    pub queries: mpsc::UnboundedReceiver<(String, String)>,
    task: JoinHandle<()>,
}

impl DnsServer {
    pub async fn start(mode: DnsMode) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, queries) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let q = query.queries[0].clone();
                let _ = tx.send((q.name().to_ascii(), q.query_type().to_string()));
                let mut response = Message::new(
                    query.metadata.id,
                    MessageType::Response,
                    query.metadata.op_code,
                );
                response.add_query(q.clone());
                match mode {
                    DnsMode::Silence => continue,
                    DnsMode::NxDomain => response.metadata.response_code = ResponseCode::NXDomain,
                    DnsMode::Empty => {}
                    DnsMode::Answer | DnsMode::WrongIdThenAnswer => {
                        response.add_answer(Record::from_rdata(
                            q.name().clone(),
                            30,
                            RData::A(A::new(192, 0, 2, 1)),
                        ));
                    }
                }
                if mode == DnsMode::WrongIdThenAnswer {
                    let mut wrong = response.clone();
                    wrong.metadata.id = query.metadata.id.wrapping_add(1);
                    wrong.answers.clear();
                    wrong.metadata.response_code = ResponseCode::NXDomain;
                    let _ = socket.send_to(&wrong.to_vec().unwrap(), peer).await;
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
        DnsServer {
            addr,
            queries,
            task,
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
