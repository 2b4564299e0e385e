//! Binding DNS sockets and serving them with hickory-server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::Handler;
use crate::snapshot::Published;

/// Largest TCP response buffer (a DNS message over TCP is at most 64 KiB).
const TCP_RESPONSE_BUFFER: usize = 65_535;

/// A running DNS server and the addresses it really bound (port 0 becomes a real port).
pub struct DnsServer {
    server: Server<Handler>,
    pub addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Stop accepting and wait for the sockets' tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

/// Bind a UDP socket and a TCP listener on each address (the same port for both, also when
/// the port is 0) and start serving.
pub async fn bind(
    addrs: &[SocketAddr],
    tcp_idle_timeout: Duration,
    published: Arc<Published>,
) -> io::Result<DnsServer> {
    let mut server = Server::new(Handler::new(published));
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let (udp, tcp) = bind_pair(*addr).await?;
        bound.push(udp.local_addr()?);
        server.register_socket(udp);
        server.register_listener(tcp, tcp_idle_timeout, TCP_RESPONSE_BUFFER);
    }
    Ok(DnsServer {
        server,
        addrs: bound,
    })
}

async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let context =
        |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {addr}: {e}"));
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| context(e, "cannot bind UDP"))?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| context(e, "cannot bind TCP"))?;
        return Ok((udp, tcp));
    }
    // An ephemeral UDP port may be taken for TCP; try a few.
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| context(e, "cannot bind UDP"))?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(context(
        last.unwrap_or_else(|| io::Error::other("no port")),
        "cannot bind TCP",
    ))
}
