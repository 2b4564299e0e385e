//! Binding DNS sockets: UDP to our own batched workers ([`udp`]), TCP to our own tasks
//! ([`tcp`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::query_log::QueryLog;
use super::rrl::{RateLimiter, RrlConfig};
use super::tcp::{Gate, TcpLimits};
use super::udp::{self, UdpStats, UdpWorkers};
use super::{Handler, tcp};
use crate::snapshot::Published;

/// A running DNS server and the addresses it really bound (port 0 becomes a real port).
pub struct DnsServer {
    tcp: JoinSet<()>,
    stop_tcp: CancellationToken,
    udp: UdpWorkers,
    pub addrs: Vec<SocketAddr>,
    /// UDP replies by path, for `/metrics`.
    pub udp_stats: Arc<UdpStats>,
    /// UDP rate limiting and its counters.
    pub rrl: Arc<RateLimiter>,
    /// TCP caps and their counters.
    pub tcp_gate: Arc<Gate>,
    /// The sampled query log and its counters.
    pub query_log: Arc<QueryLog>,
}

/// The data plane's counters, for `/metrics`.
#[derive(Clone)]
pub struct DnsCounters {
    pub udp: Arc<UdpStats>,
    pub rrl: Arc<RateLimiter>,
    pub tcp: Arc<Gate>,
    pub query_log: Arc<QueryLog>,
}

impl DnsServer {
    pub fn counters(&self) -> DnsCounters {
        DnsCounters {
            udp: self.udp_stats.clone(),
            rrl: self.rrl.clone(),
            tcp: self.tcp_gate.clone(),
            query_log: self.query_log.clone(),
        }
    }

    /// Stop accepting and wait for the sockets' tasks and threads to end.
    pub async fn shutdown(mut self) {
        self.stop_tcp.cancel();
        while self.tcp.join_next().await.is_some() {}
        let udp = self.udp;
        let _ = tokio::task::spawn_blocking(move || udp.stop()).await;
    }
}

/// Bind UDP sockets (`udp_threads` per address, default one per CPU we may run on) and a TCP
/// listener on each address (the same port for both, also when the port is 0) and serve them.
/// Must be called inside the tokio runtime, which serves TCP (and the query log's task, when
/// `query_sample` is above 0).
pub fn bind(
    addrs: &[SocketAddr],
    udp_threads: Option<usize>,
    tcp: &TcpLimits,
    rate_limit: &RrlConfig,
    query_sample: f64,
    published: Arc<Published>,
) -> io::Result<DnsServer> {
    let threads = udp_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let handler = Arc::new(Handler::new(published.clone()));
    let gate = Gate::new(tcp.clone());
    let rrl = Arc::new(RateLimiter::new(rate_limit.clone()));
    let stop_tcp = CancellationToken::new();
    let mut tcp_tasks = JoinSet::new();
    let (query_log, log_task) = QueryLog::new(query_sample);
    if let Some(task) = log_task {
        tcp_tasks.spawn(task.run(stop_tcp.clone()));
    }
    let mut bound = Vec::with_capacity(addrs.len());
    let mut all_udp = Vec::new();
    for addr in addrs {
        // `[::]:53` is dual-stack by default, which collides with `0.0.0.0:53` listed beside
        // it: then the IPv6 sockets take IPv6 only.
        let v6_only = addr.is_ipv6()
            && addr.port() != 0
            && addrs.iter().any(|a| a.is_ipv4() && a.port() == addr.port());
        let (udp, tcp) = bind_pair(*addr, threads, v6_only)?;
        bound.push(tcp.local_addr()?);
        all_udp.extend(udp);
        tcp_tasks.spawn(tcp::serve(
            tcp,
            handler.clone(),
            gate.clone(),
            query_log.clone(),
            stop_tcp.clone(),
        ));
    }
    let udp_stats = Arc::new(UdpStats::default());
    let udp = UdpWorkers::spawn(all_udp, &published, &udp_stats, &rrl, &query_log)?;
    Ok(DnsServer {
        tcp: tcp_tasks,
        stop_tcp,
        udp,
        addrs: bound,
        udp_stats,
        rrl,
        tcp_gate: gate,
        query_log,
    })
}

fn bind_pair(
    addr: SocketAddr,
    threads: usize,
    v6_only: bool,
) -> io::Result<(Vec<UdpSocket>, TcpListener)> {
    let context =
        |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {addr}: {e}"));
    if addr.port() != 0 {
        // TCP first: it has no SO_REUSEPORT, so a second server on the same port fails here
        // instead of silently sharing UDP queries with the first.
        let tcp = bind_tcp(addr, v6_only).map_err(|e| context(e, "cannot bind TCP"))?;
        let udp = udp::bind(addr, threads, v6_only).map_err(|e| context(e, "cannot bind UDP"))?;
        return Ok((udp, tcp));
    }
    // An ephemeral TCP port may be taken for UDP; try a few. `SO_REUSEPORT` would let our
    // workers join sockets of ours still bound there (a server not yet stopped), so first
    // make sure nobody holds it: an exclusive bind must succeed (and is closed again).
    let mut last = None;
    for _ in 0..16 {
        let tcp = bind_tcp(addr, v6_only).map_err(|e| context(e, "cannot bind TCP"))?;
        if let Err(e) = UdpSocket::bind(tcp.local_addr()?) {
            last = Some(e);
            continue;
        }
        match udp::bind(tcp.local_addr()?, threads, v6_only) {
            Ok(udp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(context(
        last.unwrap_or_else(|| io::Error::other("no port")),
        "cannot bind UDP",
    ))
}

/// A TCP listener as tokio's own `bind` makes it (`SO_REUSEADDR`), plus `IPV6_V6ONLY`.
fn bind_tcp(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
