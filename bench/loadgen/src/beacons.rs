//! The RUM beacon flood: fetch single-use tokens from `GET /rum/v1/config`, then `POST
//! /rum/v1/beacons` with them over keep-alive HTTP/1.1 connections, and count what came back.
//!
//! Two phases, so the timed one measures ingestion alone:
//!
//! 1. **Tokens.** `tokens` config requests over `connections` connections. Tokens are bound
//!    to the client's /24; with `networks` > 0 each request carries `X-Forwarded-For:
//!    10.a.b.1` for one of `networks` /24s (the server must trust loopback as a proxy), so
//!    the per-network rate limit sees many networks, as behind a load balancer.
//! 2. **Beacons.** Each connection takes the next unused token, posts a beacon with one
//!    result per target (cold, warm and phase timings drawn at random) from the token's
//!    network, and waits for the answer (closed loop; browsers do not pipeline). It stops
//!    when the tokens run out, after `duration`, or on SIGINT/SIGTERM. With `rate`, the
//!    connections together send at most that many beacons a second (open-loop pacing), for
//!    measuring something else while beacons arrive at a known rate.
//!
//! Latency is from writing the request to reading the whole response. The client speaks just
//! enough HTTP/1.1 for these two endpoints (status line, `Content-Length`, no chunking). One
//! tokio thread drives every connection, so pinning the process pins the generator.
//! Depends on `hist`, `http`, `rng`, `signal`.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hist::Histogram;
use crate::http::{self, MAX_RESPONSE, Response, bad};
use crate::rng::Rng;
use crate::signal;

#[derive(Debug, Clone)]
pub struct Options {
    /// The server's public HTTP listener (loopback only).
    pub server: SocketAddr,
    pub connections: usize,
    /// Tokens to fetch, and so beacons to send at most.
    pub tokens: usize,
    /// Longest beacon phase.
    pub duration: Duration,
    /// Distinct client /24s via `X-Forwarded-For` (0: none, all from the socket's /24).
    pub networks: usize,
    /// Target ids, one result each per beacon.
    pub targets: Vec<String>,
    /// Beacons per second over all connections; `None`: as fast as the server answers.
    pub rate: Option<f64>,
    /// A request unanswered this long fails the run.
    pub timeout: Duration,
    pub seed: u64,
    /// The server's process id, to report its CPU over the beacon phase (Linux `/proc`).
    pub server_pid: Option<u32>,
}

/// One token from `/rum/v1/config`, and the network it was issued to.
#[derive(Debug, Clone)]
pub struct Token {
    pub nonce: String,
    pub token: String,
    pub network: usize,
}

#[derive(Default)]
pub struct Summary {
    pub tokens: usize,
    pub token_time: Duration,
    pub sent: u64,
    /// Answered 204 No Content.
    pub accepted: u64,
    /// Every other status, with the `reason` of its JSON body: count.
    pub refused: BTreeMap<String, u64>,
    pub run_time: Duration,
    pub latency: Histogram,
    /// This process's CPU time (user + system) during the beacon phase.
    pub cpu_time: Duration,
    /// The server's CPU time (user + system, all threads) during the beacon phase.
    pub server_cpu_time: Option<Duration>,
    pub request_bytes: u64,
}

impl Summary {
    pub fn accepted_per_sec(&self) -> f64 {
        self.accepted as f64 / self.run_time.as_secs_f64().max(1e-9)
    }

    /// The generator's own CPU over the beacon phase's wall time (1.0 = one core busy).
    pub fn cpu_share(&self) -> f64 {
        self.cpu_time.as_secs_f64() / self.run_time.as_secs_f64().max(1e-9)
    }
}

/// The address a request from network `i` claims: 10.a.b.1, a /24 per index.
pub fn forwarded_for(i: usize) -> String {
    format!("10.{}.{}.1", (i >> 8) & 255, i & 255)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(server: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(response) = self.take_response()? {
                return Ok(response);
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err(bad("response too large"));
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A whole response from the front of the buffer, if there is one.
    fn take_response(&mut self) -> io::Result<Option<Response>> {
        let Some((response, used)) = http::parse(&self.buf)? else {
            return Ok(None);
        };
        self.buf.drain(..used);
        Ok(Some(response))
    }
}

fn config_request(server: SocketAddr, network: Option<usize>) -> Vec<u8> {
    let xff = network.map_or(String::new(), |i| {
        format!("X-Forwarded-For: {}\r\n", forwarded_for(i))
    });
    format!("GET /rum/v1/config HTTP/1.1\r\nHost: {server}\r\n{xff}Accept: */*\r\n\r\n")
        .into_bytes()
}

/// A beacon like the browser's: every target measured, with plausible timings.
pub fn beacon_body(token: &Token, targets: &[String], rng: &mut Rng) -> String {
    let mut ms =
        |lo: u64, span: u64| (lo * 10 + rng.below(span as usize * 10) as u64) as f64 / 10.0;
    let results: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "target": t,
                "cold_ms": ms(40, 200),
                "warm_ms": ms(10, 80),
                "dns_ms": ms(1, 30),
                "connect_ms": ms(5, 40),
                "tls_ms": ms(5, 40),
                "ttfb_ms": ms(5, 60),
            })
        })
        .collect();
    serde_json::json!({ "nonce": token.nonce, "token": token.token, "results": results })
        .to_string()
}

fn beacon_request(server: SocketAddr, token: &Token, body: &str, forwarded: bool) -> Vec<u8> {
    let xff = if forwarded {
        format!("X-Forwarded-For: {}\r\n", forwarded_for(token.network))
    } else {
        String::new()
    };
    format!(
        "POST /rum/v1/beacons HTTP/1.1\r\nHost: {server}\r\n{xff}Content-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refusal(response: &Response) -> String {
    let reason = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    format!("{} {reason}", response.status)
}

/// utime + stime of a process and its threads, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

async fn with_timeout<T>(
    limit: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
}

/// Phase 1: `options.tokens` tokens, in the order they will be used.
async fn fetch_tokens(options: &Options) -> io::Result<Vec<Token>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let next = next.clone();
        let o = options.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = with_timeout(o.timeout, Conn::open(o.server)).await?;
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= o.tokens || signal::stopped() {
                    return Ok::<_, io::Error>(got);
                }
                let network = (o.networks > 0).then(|| i % o.networks);
                let r = with_timeout(o.timeout, conn.exchange(&config_request(o.server, network)))
                    .await?;
                if r.status != 200 {
                    return Err(bad(format!("/rum/v1/config answered {}", r.status)));
                }
                let doc: serde_json::Value =
                    serde_json::from_slice(&r.body).map_err(|e| bad(format!("config: {e}")))?;
                let field = |k: &str| {
                    doc[k]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("config without {k}")))
                };
                got.push((
                    i,
                    Token {
                        nonce: field("nonce")?,
                        token: field("token")?,
                        network: network.unwrap_or(0),
                    },
                ));
            }
        }));
    }
    let mut all = Vec::with_capacity(options.tokens);
    for t in tasks {
        all.extend(t.await.map_err(io::Error::other)??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Both phases on one thread.
pub fn run(options: &Options) -> io::Result<Summary> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(options))
}

struct ConnResult {
    sent: u64,
    accepted: u64,
    refused: BTreeMap<String, u64>,
    latency: Histogram,
    bytes: u64,
}

async fn run_async(options: &Options) -> io::Result<Summary> {
    let t0 = Instant::now();
    let tokens = Arc::new(fetch_tokens(options).await?);
    let token_time = t0.elapsed();
    // Scripts wait for this line to start sampling the server (perf).
    eprintln!(
        "beaconflood: {} tokens in {:.2} s; beacon phase",
        tokens.len(),
        token_time.as_secs_f64()
    );
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_time();
    let server0 = options.server_pid.and_then(process_cpu);
    let start = Instant::now();
    let deadline = start + options.duration;
    let period = options
        .rate
        .map(|r| Duration::from_secs_f64(options.connections as f64 / r.max(1e-3)));
    let mut tasks = Vec::new();
    for c in 0..options.connections {
        let (next, tokens, o) = (next.clone(), tokens.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(o.seed.wrapping_add(c as u64));
            let mut conn = with_timeout(o.timeout, Conn::open(o.server)).await?;
            let mut out = ConnResult {
                sent: 0,
                accepted: 0,
                refused: BTreeMap::new(),
                latency: Histogram::default(),
                bytes: 0,
            };
            // Spread the paced connections over one period.
            let mut due =
                period.map(|p| Instant::now() + p.mul_f64(c as f64 / o.connections as f64));
            loop {
                if let (Some(d), Some(p)) = (due.as_mut(), period) {
                    tokio::time::sleep_until((*d).into()).await;
                    *d += p;
                }
                if Instant::now() >= deadline || signal::stopped() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                let body = beacon_body(token, &o.targets, &mut rng);
                let request = beacon_request(o.server, token, &body, o.networks > 0);
                let sent_at = Instant::now();
                let r = with_timeout(o.timeout, conn.exchange(&request)).await?;
                out.latency.record(sent_at.elapsed().as_nanos() as u64);
                out.sent += 1;
                out.bytes += request.len() as u64;
                if r.status == 204 {
                    out.accepted += 1;
                } else {
                    *out.refused.entry(refusal(&r)).or_default() += 1;
                }
            }
            Ok::<_, io::Error>(out)
        }));
    }
    let mut sum = Summary {
        tokens: tokens.len(),
        token_time,
        ..Summary::default()
    };
    for t in tasks {
        let r = t.await.map_err(io::Error::other)??;
        sum.sent += r.sent;
        sum.accepted += r.accepted;
        sum.request_bytes += r.bytes;
        sum.latency.merge(&r.latency);
        for (k, v) in r.refused {
            *sum.refused.entry(k).or_default() += v;
        }
    }
    sum.run_time = start.elapsed();
    sum.cpu_time = cpu_time().saturating_sub(cpu0);
    sum.server_cpu_time = match (server0, options.server_pid.and_then(process_cpu)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    Ok(sum)
}

/// One JSON object on one line.
pub fn render_json(options: &Options, sum: &Summary) -> String {
    let us = |ns: u64| ns as f64 / 1e3;
    serde_json::json!({
        "server": options.server.to_string(),
        "connections": options.connections,
        "networks": options.networks,
        "targets": options.targets.len(),
        "rate_limit": options.rate,
        "tokens": sum.tokens,
        "token_time_s": sum.token_time.as_secs_f64(),
        "tokens_per_s": sum.tokens as f64 / sum.token_time.as_secs_f64().max(1e-9),
        "sent": sum.sent,
        "accepted": sum.accepted,
        "refused": sum.refused,
        "run_time_s": sum.run_time.as_secs_f64(),
        "accepted_per_s": sum.accepted_per_sec(),
        "avg_request_bytes": sum.request_bytes as f64 / sum.sent.max(1) as f64,
        "client_cpu_s": sum.cpu_time.as_secs_f64(),
        "client_cpu_share": sum.cpu_share(),
        "server_cpu_s": sum.server_cpu_time.map(|t| t.as_secs_f64()),
        "server_cpu_share": sum.server_cpu_time.map(|t| t.as_secs_f64() / sum.run_time.as_secs_f64().max(1e-9)),
        "latency_us": {
            "avg": sum.latency.mean() / 1e3,
            "p50": us(sum.latency.quantile(0.5)),
            "p90": us(sum.latency.quantile(0.9)),
            "p99": us(sum.latency.quantile(0.99)),
            "max": us(sum.latency.max()),
        },
    })
    .to_string()
}

/// A short human-readable summary.
pub fn render_text(sum: &Summary) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    format!(
        "tokens {} in {:.2} s ({:.0}/s)\nbeacons sent {}, accepted (204) {}, refused {:?}\n\
         run {:.2} s: {:.0} accepted/s; latency ms p50 {:.3} p99 {:.3} max {:.3}; client CPU {:.0}%\n",
        sum.tokens,
        sum.token_time.as_secs_f64(),
        sum.tokens as f64 / sum.token_time.as_secs_f64().max(1e-9),
        sum.sent,
        sum.accepted,
        sum.refused,
        sum.run_time.as_secs_f64(),
        sum.accepted_per_sec(),
        ms(sum.latency.quantile(0.5)),
        ms(sum.latency.quantile(0.99)),
        ms(sum.latency.max()),
        sum.cpu_share() * 100.0
    )
}
