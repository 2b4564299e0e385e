//! The no-op responder: the floor of what any UDP DNS server can do on this machine. It echoes
//! each query with QR set (nothing else changed), in `recvmmsg`/`sendmmsg` batches, so a
//! benchmark row for it measures the kernel's UDP path and the load generator, not a server.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use steerdns::dns::batch::Packets;

/// Largest datagram echoed whole; longer ones are dropped.
const SLOT: usize = 4096;
/// How often a blocked receive wakes up to look at the stop flag.
const WAKE: Duration = Duration::from_millis(100);

/// Bind `threads` UDP sockets on `listen` (with SO_REUSEPORT when more than one), so the
/// kernel spreads clients over them.
pub fn bind(listen: SocketAddr, threads: usize) -> io::Result<Vec<UdpSocket>> {
    let domain = if listen.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let mut sockets = Vec::new();
    let mut addr = listen;
    for _ in 0..threads.max(1) {
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if threads > 1 {
            socket.set_reuse_port(true)?;
        }
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.bind(&addr.into())?;
        // With port 0 the first bind picks the port; the others join it.
        if let Some(bound) = socket.local_addr()?.as_socket() {
            addr = bound;
        }
        socket.set_read_timeout(Some(WAKE))?;
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// Echo queries on `socket` until `stop` is set or `deadline` passes. Returns how many
/// datagrams were answered.
pub fn serve(
    socket: &UdpSocket,
    batch: usize,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> io::Result<u64> {
    let mut input = Packets::new(batch, SLOT);
    let mut output = Packets::new(batch, SLOT);
    let mut answered = 0u64;
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        match input.recv(socket) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        output.clear();
        for i in 0..input.len() {
            let Some((query, from)) = input.get(i) else {
                continue;
            };
            // Too short to be DNS, or cut: no answer (a server would drop these too).
            if query.len() < 12 || input.truncated(i) {
                continue;
            }
            output.push(from, |buf| {
                buf[..query.len()].copy_from_slice(query);
                buf[2] |= 0x80;
                query.len()
            });
        }
        if !output.is_empty() {
            answered += output.send(socket)? as u64;
        }
    }
    Ok(answered)
}
