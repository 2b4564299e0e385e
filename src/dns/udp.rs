//! UDP serving: one thread per CPU, each with its own `SO_REUSEPORT` socket on the shared port
//! (the kernel spreads clients over them by address hash), receiving and replying in batches
//! of up to [`BATCH`] datagrams per system call.
//!
//! A datagram from a source [`super::source`] refuses is dropped first (it must not count
//! against a network's rate); then the shared rate limiter ([`super::rrl`]) may drop it or
//! answer it with a truncated stub; the rest go to the fast path, and to the full path when
//! the fast path declines. (Both paths also apply the source rule themselves, so each stands
//! alone for the tests and fuzz targets that call them directly: a few comparisons.)
//!
//! Plain threads, not tokio tasks: a worker only ever waits in `recvmmsg`, and
//! hickory-server's task per datagram was a large share of the cost (bench/RESULTS.md). The
//! snapshot is loaded once per batch; a batch never mixes two generations.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use super::batch::Packets;
use super::counters::{ReplyCodes, rcode_of};
use super::query_log::{Path, QueryLog};
use super::rrl::{RateLimiter, Verdict, slip_reply};
use super::{Handler, fast, full, source};
use crate::snapshot::Published;

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 64;
/// Largest query read; longer datagrams are dropped (hickory-server reads 4096 bytes too).
const MAX_QUERY: usize = 4096;
/// Largest reply: `dns.max_udp_payload` is at most 4096.
const MAX_REPLY: usize = 4096;
/// How often an idle worker looks at the stop flag.
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// Socket receive buffer asked for, so a burst waits in the kernel rather than being dropped
/// (the kernel caps it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 << 20;

/// Replies sent, by path and by rcode, for `/metrics`.
#[derive(Debug, Default)]
pub struct UdpStats {
    pub fast: AtomicU64,
    pub full: AtomicU64,
    pub rcodes: ReplyCodes,
}

/// Running UDP workers; [`UdpWorkers::stop`] ends them.
pub struct UdpWorkers {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl UdpWorkers {
    /// Serve `sockets`, one thread each.
    pub fn spawn(
        sockets: Vec<UdpSocket>,
        published: &Arc<Published>,
        stats: &Arc<UdpStats>,
        rrl: &Arc<RateLimiter>,
        query_log: &Arc<QueryLog>,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            let worker = Worker {
                socket,
                handler: Handler::new(published.clone()),
                published: published.clone(),
                stats: stats.clone(),
                rrl: rrl.clone(),
                query_log: query_log.clone(),
                stop: stop.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(UdpWorkers { threads, stop })
    }

    /// Ask every worker to stop and wait for them (at most about [`IDLE_WAKE`]).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }
}

/// A server dropped without [`UdpWorkers::stop`] still stops its workers (within
/// [`IDLE_WAKE`]): otherwise their sockets would stay bound, and a later server of ours
/// given the same port would share its queries with them through `SO_REUSEPORT`.
impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Bind `count` sockets to `addr` with `SO_REUSEPORT`; port 0 becomes one real port for all.
/// `v6_only`: an IPv6 socket leaves IPv4 to a socket of its own (see `listen`).
pub fn bind(addr: SocketAddr, count: usize, v6_only: bool) -> io::Result<Vec<UdpSocket>> {
    let first = bind_one(addr, v6_only)?;
    let shared = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_one(shared, v6_only)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr, v6_only: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    // Only sockets of the same user can join the group (Linux), so this shares the port with
    // our own workers, not with another user's process.
    socket.set_reuse_port(true)?;
    if let Err(error) = socket.set_recv_buffer_size(RECV_BUFFER) {
        debug!(%error, "could not enlarge the UDP receive buffer");
    }
    socket.set_read_timeout(Some(IDLE_WAKE))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

struct Worker {
    socket: UdpSocket,
    handler: Handler,
    published: Arc<Published>,
    stats: Arc<UdpStats>,
    rrl: Arc<RateLimiter>,
    query_log: Arc<QueryLog>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) {
        let mut inbox = Packets::new(BATCH, MAX_QUERY);
        let mut outbox = Packets::new(BATCH, MAX_REPLY);
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(error) = inbox.recv(&self.socket) {
                match error.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    _ => {
                        warn!(%error, "UDP receive failed");
                        std::thread::sleep(IDLE_WAKE);
                    }
                }
                continue;
            }
            self.answer(&inbox, &mut outbox);
            if let Err(error) = outbox.send(&self.socket) {
                debug!(%error, "UDP send failed");
            }
        }
    }

    fn answer(&self, inbox: &Packets, outbox: &mut Packets) {
        let snapshot = self.published.load();
        let now = self.rrl.now();
        outbox.clear();
        let (mut fast, mut full) = (0, 0);
        let mut rcodes = [0u64; 16];
        for i in (0..inbox.len()).filter(|i| !inbox.truncated(*i)) {
            let Some((raw, from)) = inbox.get(i) else {
                continue;
            };
            if !source::answerable(from) {
                continue;
            }
            match self.rrl.check(from.ip(), now) {
                Verdict::Answer => {}
                Verdict::Slip => {
                    outbox.try_push(from, |out| slip_reply(raw, out));
                    continue;
                }
                Verdict::Drop => continue,
            }
            outbox.try_push(from, |out| {
                if let Some(len) = fast::answer(&snapshot, raw, from, out) {
                    fast += 1;
                    rcodes[rcode_of(out)] += 1;
                    let reply = out.get(..len).unwrap_or_default();
                    self.query_log.record(&snapshot, from, reply, Path::Fast);
                    return Some(len);
                }
                let reply = full::respond(&self.handler, raw, from)?;
                out.get_mut(..reply.len())?.copy_from_slice(&reply);
                full += 1;
                rcodes[rcode_of(&reply)] += 1;
                self.query_log.record(&snapshot, from, &reply, Path::Full);
                Some(reply.len())
            });
        }
        self.stats.fast.fetch_add(fast, Ordering::Relaxed);
        self.stats.full.fetch_add(full, Ordering::Relaxed);
        self.stats.rcodes.add_batch(&rcodes);
    }
}
