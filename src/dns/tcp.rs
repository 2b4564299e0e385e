//! DNS over TCP (RFC 7766): length-prefixed messages, each handed to the full path, replies
//! written back in order.
//!
//! Our own loop rather than hickory-server's, so TCP keeps the full path's rules: no reply to
//! a message with QR set even when it does not parse, nor to a source that
//! [`super::source::answerable`] refuses, and the same encoder. One task per connection;
//! queries on a connection are answered one after another (the handler never waits, so
//! pipelined queries are answered as fast as they are read). A connection that does not
//! deliver a whole message within the idle timeout, from the end of the last one, is closed,
//! so a client stalled (or trickling bytes) in a message cannot hold it open.
//!
//! Caps ([`TcpLimits`]), shared by every listener: connections open at once, in all and per
//! client network (/24, /56), and queries per connection. A connection over a cap is
//! accepted and closed at once (rather than left in the kernel's backlog, where it would
//! hold up the clients behind it) and counted in [`TcpStats`]. With the per-message
//! timeout this bounds what a flood of connections, or slow ones, can hold: at most
//! `max_connections` tasks, each with one message buffer of at most 64 KiB.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ipnet::IpNet;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::counters::ReplyCodes;
use super::full::{self, Transport};
use super::query_log::{Path, QueryLog};
use super::{Handler, source};

/// `[dns]` TCP settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpLimits {
    /// Time allowed for each whole message, and for writing each reply.
    pub idle_timeout: Duration,
    /// Connections open at once, over every listener.
    pub max_connections: usize,
    /// Connections open at once from one client network (/24 for IPv4, /56 for IPv6).
    pub max_per_network: usize,
    /// Queries answered on one connection before it is closed (0: no cap).
    pub max_queries: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_per_network: 64,
            max_queries: 1000,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TcpStats {
    pub accepted: AtomicU64,
    /// Closed at once: `max_connections` reached.
    pub refused_total: AtomicU64,
    /// Closed at once: the client network's `max_per_network` reached.
    pub refused_network: AtomicU64,
    /// Open now.
    pub open: AtomicU64,
    /// Replies sent, by rcode.
    pub rcodes: ReplyCodes,
}

/// The connection caps every listener shares.
pub struct Gate {
    limits: TcpLimits,
    per_network: Mutex<HashMap<IpNet, usize>>,
    pub stats: TcpStats,
}

impl Gate {
    pub fn new(limits: TcpLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            per_network: Mutex::new(HashMap::new()),
            stats: TcpStats::default(),
        })
    }

    /// A permit for a connection from `peer`, held while it is open; `None` over a cap.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Permit> {
        let network = client_network(peer);
        let mut open = self
            .per_network
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.stats.open.load(Ordering::Relaxed) >= self.limits.max_connections as u64 {
            self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let here = open.entry(network).or_insert(0);
        if *here >= self.limits.max_per_network {
            self.stats.refused_network.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *here += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            gate: self.clone(),
            network,
        })
    }
}

/// One open connection's place under the caps; given back on drop.
struct Permit {
    gate: Arc<Gate>,
    network: IpNet,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .per_network
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.network) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.network);
            }
        }
        self.gate.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client network for the per-network cap: /24 or /56.
fn client_network(ip: IpAddr) -> IpNet {
    crate::limit::client_network(ip, 24, 56)
}

/// Accept connections on `listener` until `stop` is cancelled; then every connection ends.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    gate: Arc<Gate>,
    query_log: Arc<QueryLog>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        // Finished connections, without waiting.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !source::answerable(peer) {
            continue;
        }
        // Over a cap: dropping the stream closes it now.
        let Some(permit) = gate.admit(peer.ip()) else {
            continue;
        };
        let handler = handler.clone();
        let gate = gate.clone();
        let query_log = query_log.clone();
        connections.spawn(async move {
            let _permit = permit;
            if let Err(error) = connection(stream, peer, &handler, &gate, &query_log).await {
                debug!(%error, %peer, "TCP connection ended");
            }
        });
    }
    // Dropping the set aborts the connections still open.
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    gate: &Gate,
    query_log: &QueryLog,
) -> std::io::Result<()> {
    let limits = &gate.limits;
    let idle_timeout = limits.idle_timeout;
    let mut answered = 0;
    let (mut reader, mut writer) = stream.into_split();
    let mut message = Vec::with_capacity(512);
    let mut framed = Vec::with_capacity(514);
    loop {
        let read = tokio::time::timeout(idle_timeout, async {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len).await?;
            message.resize(usize::from(u16::from_be_bytes(len)), 0);
            reader.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            // EOF between messages is the normal end; anything else ends it too.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_) => return Ok(()),
        }
        let Some(reply) = full::reply(handler, &message, peer, Transport::Tcp) else {
            continue;
        };
        // The encoder keeps a TCP reply within 65,535 bytes.
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        framed.clear();
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        // A client that does not read its replies is dropped like one that does not write.
        match tokio::time::timeout(idle_timeout, writer.write_all(&framed)).await {
            Ok(written) => written?,
            Err(_) => return Ok(()),
        }
        gate.stats.rcodes.add_reply(&reply);
        if query_log.is_on() {
            query_log.record(&handler.snapshot(), peer, &reply, Path::Tcp);
        }
        answered += 1;
        if limits.max_queries != 0 && answered >= limits.max_queries {
            // RFC 7766 §6.2.3: the server may close; the client reconnects for more.
            return Ok(());
        }
    }
}
