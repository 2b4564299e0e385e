//! Running one check once: HTTP(S), TCP connect, DNS over UDP.
//!
//! Every run is bounded by the check's timeout: the whole run (resolution, connect, TLS,
//! request, body read) is one future under `tokio::time::timeout`, so a run never outlives it.
//! Latency is wall-clock time from the start of the run to its end, for failures too.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use reqwest::Url;
use reqwest::dns::{Addrs, Resolve, Resolving};
use tokio::net::{TcpStream, UdpSocket};

use crate::{Check, CheckKind, ProbeResult};

/// At most this many body bytes are read when looking for `body_contains`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// User-Agent of HTTP checks and of the reporter.
pub const USER_AGENT: &str = concat!("steerdns-probe/", env!("CARGO_PKG_VERSION"));

/// Install rustls' ring crypto provider as the process default, once. reqwest is built with
/// `rustls-no-provider` (no OpenSSL, no aws-lc), so a provider must be installed before any
/// client is built; if the embedding program installed one already, that one is kept.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A check ready to run repeatedly: HTTP checks keep their client (TLS configuration, resolver
/// override) between runs. Connections are not reused, so every run measures a fresh
/// connection (resolution, TCP, TLS, request), as a new client would see it.
pub struct Prober {
    check: Check,
    http: Option<Result<HttpProber, String>>,
}

impl Prober {
    pub fn new(check: Check) -> Prober {
        let http = match &check.kind {
            CheckKind::Http { .. } => Some(HttpProber::new(&check.kind)),
            _ => None,
        };
        Prober { check, http }
    }

    pub fn check(&self) -> &Check {
        &self.check
    }

    /// Run the check once. Returns within the check's timeout (plus scheduling delay).
    pub async fn run(&self) -> Outcome {
        let start = Instant::now();
        let timeout = self.check.timeout;
        let result = match tokio::time::timeout(timeout, self.attempt()).await {
            Ok(result) => result,
            Err(_) => Err(format!("timeout after {} ms", timeout.as_millis())),
        };
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(()) => Outcome {
                ok: true,
                latency_ms,
                error: None,
            },
            Err(e) => Outcome {
                ok: false,
                latency_ms,
                error: Some(e),
            },
        }
    }

    /// Run the check once and stamp the outcome as a [`ProbeResult`] (time of the start).
    pub async fn probe(&self, target: &str, agent: &str) -> ProbeResult {
        let at_unix_ms = unix_ms_now();
        let outcome = self.run().await;
        ProbeResult {
            target: target.to_string(),
            check: self.check.id.clone(),
            agent: agent.to_string(),
            at_unix_ms,
            ok: outcome.ok,
            latency_ms: outcome.latency_ms,
            error: outcome.error,
        }
    }

    async fn attempt(&self) -> Result<(), String> {
        match &self.check.kind {
            CheckKind::Http { .. } => match self.http.as_ref().expect("built for http checks") {
                Ok(http) => http.run().await,
                Err(e) => Err(e.clone()),
            },
            CheckKind::Tcp { address } => tcp_check(*address).await,
            CheckKind::Dns {
                server,
                name,
                qtype,
            } => dns_check(*server, name, qtype).await,
        }
    }
}

/// Run `check` once (convenience for one-off runs; schedules should keep a [`Prober`]).
pub async fn run_check(check: &Check) -> Outcome {
    Prober::new(check.clone()).run().await
}

/// An error and its sources, joined by ": ", without repeating a message.
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

// ---- HTTP ----

struct HttpProber {
    client: reqwest::Client,
    url: Url,
    host_header: Option<String>,
    expect_status: u16,
    body_contains: Option<String>,
}

impl HttpProber {
    fn new(kind: &CheckKind) -> Result<HttpProber, String> {
        let CheckKind::Http {
            url,
            host,
            connect_to,
            expect_status,
            body_contains,
        } = kind
        else {
            unreachable!("HttpProber::new on a non-http check")
        };
        install_crypto_provider();
        let original = Url::parse(url).map_err(|e| format!("bad url {url:?}: {e}"))?;
        let mut request_url = original.clone();
        let mut host_header = None;
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .user_agent(USER_AGENT);

        if host.is_some() || connect_to.is_some() {
            // The request goes to `name` (Host header, SNI, certificate name); a resolver
            // override sends the connection to `connect_to`, or to the URL host's addresses.
            let url_host = original
                .host_str()
                .ok_or_else(|| format!("url {url:?} has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = original
                .port_or_known_default()
                .ok_or_else(|| format!("url {url:?} has no port"))?;
            let name = host.clone().unwrap_or_else(|| url_host.clone());
            request_url
                .set_host(Some(&name))
                .map_err(|e| format!("host {name:?}: {e}"))?;
            // An explicit port in the URL would override the resolved address's port, so the
            // port travels in the address and in the Host header instead.
            let _ = request_url.set_port(None);
            host_header = Some(match original.port() {
                Some(p) => format!("{name}:{p}"),
                None => name.clone(),
            });
            let to = match connect_to {
                Some(addr) => PinnedTo::Addr(*addr),
                None => PinnedTo::Lookup(url_host, port),
            };
            builder = builder.dns_resolver(PinnedResolver {
                name: Arc::from(name.trim_end_matches('.')),
                to: Arc::new(to),
            });
        }

        let client = builder
            .build()
            .map_err(|e| format!("cannot build HTTP client: {}", error_chain(&e)))?;
        Ok(HttpProber {
            client,
            url: request_url,
            host_header,
            expect_status: *expect_status,
            body_contains: body_contains.clone(),
        })
    }

    async fn run(&self) -> Result<(), String> {
        let mut request = self.client.get(self.url.clone());
        if let Some(h) = &self.host_header {
            request = request.header(reqwest::header::HOST, h);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = response.status().as_u16();
        if status != self.expect_status {
            return Err(format!("status {status}, expected {}", self.expect_status));
        }
        let Some(needle) = &self.body_contains else {
            return Ok(());
        };
        let needle = needle.as_bytes();
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading body: {}", error_chain(&e.without_url())))?
        {
            let from = body.len().saturating_sub(needle.len() - 1);
            let room = MAX_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if contains(&body[from..], needle) {
                return Ok(());
            }
            if body.len() >= MAX_BODY_BYTES {
                return Err(format!(
                    "body does not contain {:?} in its first {MAX_BODY_BYTES} bytes",
                    String::from_utf8_lossy(needle)
                ));
            }
        }
        Err(format!(
            "body does not contain {:?} ({} bytes read)",
            String::from_utf8_lossy(needle),
            body.len()
        ))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

enum PinnedTo {
    Addr(SocketAddr),
    Lookup(String, u16),
}

/// Resolves the request's name to `connect_to` (or to the URL host's addresses, when only
/// `host` differs from the URL); any other name resolves normally.
struct PinnedResolver {
    name: Arc<str>,
    to: Arc<PinnedTo>,
}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> Resolving {
        let asked = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let pinned = asked.eq_ignore_ascii_case(&self.name);
        let to = self.to.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match (pinned, &*to) {
                (true, PinnedTo::Addr(addr)) => vec![*addr],
                (true, PinnedTo::Lookup(host, port)) => {
                    tokio::net::lookup_host((host.as_str(), *port))
                        .await?
                        .collect()
                }
                (false, _) => tokio::net::lookup_host((asked.as_str(), 0))
                    .await?
                    .collect(),
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

// ---- TCP ----

async fn tcp_check(address: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect {address}: {e}"))?;
    drop(stream);
    Ok(())
}

// ---- DNS ----

async fn dns_check(server: SocketAddr, name: &str, qtype: &str) -> Result<(), String> {
    let qname = Name::from_utf8(name).map_err(|e| format!("bad name {name:?}: {e}"))?;
    let rtype: RecordType = qtype
        .parse()
        .map_err(|e| format!("bad qtype {qtype:?}: {e}"))?;
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname.clone(), rtype));
    let id = query.metadata.id;
    let wire = query
        .to_vec()
        .map_err(|e| format!("cannot encode query: {e}"))?;

    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    socket
        .send(&wire)
        .await
        .map_err(|e| format!("send to {server}: {e}"))?;

    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("receive from {server}: {e}"))?;
        // Anything that is not the answer to this query (stale, spoofed, garbage) is ignored;
        // the timeout bounds the wait.
        let Ok(response) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if response.metadata.id != id || response.metadata.message_type != MessageType::Response {
            continue;
        }
        let same_question = response
            .queries
            .first()
            .is_none_or(|q| q.query_type() == rtype && same_name(q.name(), &qname));
        if !same_question {
            continue;
        }
        let rcode = response.metadata.response_code;
        if rcode != ResponseCode::NoError {
            return Err(rcode_name(rcode));
        }
        if response.answers.is_empty() {
            return Err(if response.metadata.truncation {
                "truncated response with no answer".to_string()
            } else {
                "NOERROR with no answer".to_string()
            });
        }
        return Ok(());
    }
}

fn same_name(a: &Name, b: &Name) -> bool {
    let norm = |n: &Name| n.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    norm(a) == norm(b)
}

/// The conventional mnemonic of a response code (`NXDOMAIN`, `SERVFAIL`, ...).
fn rcode_name(rcode: ResponseCode) -> String {
    match u16::from(rcode) {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE {n}"),
    }
}
