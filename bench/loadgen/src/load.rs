//! The closed-loop load generator: one thread drives several UDP sockets, each with a fixed
//! number of outstanding queries, and sends and receives in `sendmmsg`/`recvmmsg` batches.
//!
//! Every socket has `outstanding` slots. A free slot gets a new query (a random question, a
//! random subnet, a random ID not in flight on that socket) as soon as the loop comes round,
//! so the server always has up to `sockets × outstanding` queries to answer. A response is
//! matched by (socket, ID), must have QR set and echo the question, and frees its slot. A slot
//! whose query is not answered within the timeout counts as lost and is reused.
//!
//! Time is read once per batch, not per datagram: latencies include the batching, which is
//! what a client of a batching server sees anyway.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use steerdns::dns::batch::Packets;

use crate::hist::Histogram;
use crate::rng::Rng;
use crate::wire::{self, Question, Subnet};

/// Largest query we build (header, a 255-octet name, OPT with a full IPv6 ECS option).
const QUERY_SLOT: usize = 512;
/// Receive slots: bigger than any UDP answer to an EDNS payload of 1232.
const RESPONSE_SLOT: usize = 2048;
/// No slot in `id_slot`.
const NO_SLOT: u32 = u32::MAX;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub server: SocketAddr,
    pub questions: Vec<Question>,
    /// ECS subnets; empty = EDNS0 without ECS.
    pub subnets: Vec<Subnet>,
    pub duration: Duration,
    pub sockets: usize,
    /// Outstanding queries per socket (at most 65535).
    pub outstanding: usize,
    pub timeout: Duration,
    /// Most datagrams per `sendmmsg`/`recvmmsg`.
    pub batch: usize,
    pub seed: u64,
}

/// The results of a run.
#[derive(Clone, Default)]
pub struct Summary {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    /// Datagrams that were not a response to a query in flight (late answers to queries that
    /// had already timed out, wrong IDs, not from the server).
    pub unexpected: u64,
    /// Responses with a known ID that did not echo the question (the query stays in flight).
    pub mismatched: u64,
    pub truncated: u64,
    pub rcodes: [u64; 16],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// From the first send to the last response (or the end of sending, if later).
    pub run_time: Duration,
    /// System calls: `sendmmsg`, `recvmmsg` that returned datagrams, `poll` (to see how well
    /// the batches fill).
    pub send_calls: u64,
    pub recv_calls: u64,
    pub polls: u64,
    pub latency: Histogram,
}

impl Summary {
    pub fn qps(&self) -> f64 {
        let secs = self.run_time.as_secs_f64();
        if secs > 0.0 {
            self.completed as f64 / secs
        } else {
            0.0
        }
    }
}

/// Only loopback targets: 127.0.0.0/8 or ::1. This tool must never load someone else's server.
pub fn check_loopback(server: SocketAddr) -> Result<(), String> {
    let ok = match server.ip() {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback(),
    };
    if ok && server.port() != 0 {
        Ok(())
    } else {
        Err(format!(
            "--server {server}: only loopback servers (127.0.0.0/8 or [::1]) with a port are allowed"
        ))
    }
}

#[derive(Clone, Copy)]
struct Slot {
    sent_ns: u64,
    question: u32,
    id: u16,
    busy: bool,
}

/// One socket and its slots.
struct Flow {
    socket: UdpSocket,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// ID → slot index, `NO_SLOT` when that ID is not in flight.
    id_slot: Vec<u32>,
    rng: Rng,
    out: Packets,
    input: Packets,
}

impl Flow {
    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn release(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.busy = false;
        self.id_slot[usize::from(s.id)] = NO_SLOT;
        self.free.push(slot);
    }
}

fn open_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if server.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Big buffers, so a burst of answers is not dropped while the loop is sending. The kernel
    // caps these at net.core.{r,w}mem_max; that is fine.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    let local: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().map_err(io::Error::other)?
    } else {
        "[::1]:0".parse().map_err(io::Error::other)?
    };
    socket.bind(&local.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Run the load for `options.duration`, then wait up to the timeout for what is in flight.
pub fn run(options: &Options) -> io::Result<Summary> {
    check_loopback(options.server).map_err(io::Error::other)?;
    if options.questions.is_empty() {
        return Err(io::Error::other("no questions"));
    }
    let outstanding = options.outstanding.clamp(1, 65_535);
    let batch = options.batch.clamp(1, 1024);
    let opts: Vec<Vec<u8>> = if options.subnets.is_empty() {
        vec![wire::encode_opt(None)]
    } else {
        options
            .subnets
            .iter()
            .map(|s| wire::encode_opt(Some(*s)))
            .collect()
    };

    let mut flows = Vec::with_capacity(options.sockets.max(1));
    for i in 0..options.sockets.max(1) {
        flows.push(Flow {
            socket: open_socket(options.server)?,
            slots: vec![
                Slot {
                    sent_ns: 0,
                    question: 0,
                    id: 0,
                    busy: false
                };
                outstanding
            ],
            free: (0..outstanding as u32).rev().collect(),
            id_slot: vec![NO_SLOT; 65_536],
            rng: Rng::new(
                options
                    .seed
                    .wrapping_add(i as u64)
                    .wrapping_mul(0x2545_f491_4f6c_dd1d),
            ),
            out: Packets::new(batch, QUERY_SLOT),
            input: Packets::new(batch, RESPONSE_SLOT),
        });
    }
    let mut pollfds: Vec<libc::pollfd> = flows
        .iter()
        .map(|f| libc::pollfd {
            fd: f.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();

    let mut sum = Summary::default();
    let start = Instant::now();
    let send_until = options.duration.as_nanos() as u64;
    let timeout_ns = options.timeout.as_nanos() as u64;
    let mut last_response_ns = 0u64;
    let mut next_expiry_check = 0u64;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        let sending = now < send_until && !crate::signal::stopped();
        if !sending {
            let in_flight: usize = flows.iter().map(Flow::in_flight).sum();
            if in_flight == 0 || now >= send_until + timeout_ns {
                sum.lost += in_flight as u64;
                break;
            }
        }

        if sending {
            for flow in &mut flows {
                fill_and_send(flow, options, &opts, now, &mut sum)?;
            }
        }

        let mut got = 0;
        for flow in &mut flows {
            got += receive(flow, options, &mut sum, start, &mut last_response_ns)?;
        }

        if now >= next_expiry_check {
            for flow in &mut flows {
                expire(flow, now, timeout_ns, &mut sum);
            }
            next_expiry_check = now + timeout_ns.clamp(1_000_000, 50_000_000) / 4;
        }

        if got == 0 {
            // Nothing queued: sleep in poll until a socket is readable (at most 1 ms, so
            // timeouts and the end of the run are noticed).
            sum.polls += 1;
            // SAFETY: `pollfds` is a live array of `len` pollfd structs.
            let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, 1) };
            if rc < 0 {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    let end_ns = last_response_ns.max(send_until.min(start.elapsed().as_nanos() as u64));
    sum.run_time = Duration::from_nanos(end_ns);
    Ok(sum)
}

fn fill_and_send(
    flow: &mut Flow,
    options: &Options,
    opts: &[Vec<u8>],
    now: u64,
    sum: &mut Summary,
) -> io::Result<()> {
    while !flow.free.is_empty() {
        flow.out.clear();
        let mut pushed: usize = 0;
        while pushed < flow.out.capacity() {
            let Some(slot) = flow.free.pop() else { break };
            let question = flow.rng.below(options.questions.len());
            let opt = &opts[flow.rng.below(opts.len())];
            let mut id = flow.rng.next_u64() as u16;
            while flow.id_slot[usize::from(id)] != NO_SLOT {
                id = flow.rng.next_u64() as u16;
            }
            let wire = &options.questions[question].wire;
            let mut len = 0;
            flow.out.push(options.server, |buf| {
                len = wire::write_query(buf, id, wire, opt);
                len
            });
            flow.slots[slot as usize] = Slot {
                sent_ns: now,
                question: question as u32,
                id,
                busy: true,
            };
            flow.id_slot[usize::from(id)] = slot;
            sum.bytes_sent += len as u64;
            pushed += 1;
        }
        if pushed == 0 {
            break;
        }
        // A datagram the kernel refuses stays in flight and times out: it is counted as lost.
        flow.out.send(&flow.socket)?;
        sum.sent += pushed as u64;
        sum.send_calls += 1;
    }
    Ok(())
}

fn receive(
    flow: &mut Flow,
    options: &Options,
    sum: &mut Summary,
    start: Instant,
    last_response_ns: &mut u64,
) -> io::Result<usize> {
    let n = match flow.input.recv(&flow.socket) {
        Ok(n) => n,
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let now = start.elapsed().as_nanos() as u64;
    for i in 0..n {
        let Some((packet, from)) = flow.input.get(i) else {
            sum.unexpected += 1;
            continue;
        };
        if from != options.server || flow.input.truncated(i) {
            sum.unexpected += 1;
            continue;
        }
        let Some(head) = wire::response_head(packet) else {
            sum.unexpected += 1;
            continue;
        };
        let slot = flow.id_slot[usize::from(head.id)];
        if slot == NO_SLOT {
            sum.unexpected += 1;
            continue;
        }
        let s = flow.slots[slot as usize];
        let question = &options.questions[s.question as usize].wire;
        if !wire::echoes_question(packet, question) {
            sum.mismatched += 1;
            continue;
        }
        sum.completed += 1;
        sum.bytes_received += packet.len() as u64;
        sum.rcodes[usize::from(head.rcode)] += 1;
        sum.truncated += u64::from(head.truncated);
        sum.latency.record(now.saturating_sub(s.sent_ns));
        flow.release(slot);
    }
    if n > 0 {
        *last_response_ns = now;
        sum.recv_calls += 1;
    }
    Ok(n)
}

fn expire(flow: &mut Flow, now: u64, timeout_ns: u64, sum: &mut Summary) {
    for i in 0..flow.slots.len() {
        let s = flow.slots[i];
        if s.busy && now.saturating_sub(s.sent_ns) >= timeout_ns {
            sum.lost += 1;
            flow.release(i as u32);
        }
    }
}

/// The dnsperf-like text summary.
pub fn render_text(options: &Options, sum: &Summary) -> String {
    use std::fmt::Write as _;
    let pct = |n: u64| {
        if sum.sent == 0 {
            0.0
        } else {
            n as f64 * 100.0 / sum.sent as f64
        }
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[loadgen] {} sockets x {} outstanding, {} questions, {} subnets, {:.0} s to {}",
        options.sockets,
        options.outstanding,
        options.questions.len(),
        options.subnets.len(),
        options.duration.as_secs_f64(),
        options.server
    );
    let _ = writeln!(t, "Statistics:\n");
    let _ = writeln!(t, "  Queries sent:         {}", sum.sent);
    let _ = writeln!(
        t,
        "  Queries completed:    {} ({:.2}%)",
        sum.completed,
        pct(sum.completed)
    );
    let _ = writeln!(
        t,
        "  Queries lost:         {} ({:.2}%)",
        sum.lost,
        pct(sum.lost)
    );
    if sum.unexpected + sum.mismatched > 0 {
        let _ = writeln!(
            t,
            "  Unexpected:           {} (late or unknown ID), {} not echoing the question",
            sum.unexpected, sum.mismatched
        );
    }
    let _ = write!(t, "\n  Response codes:      ");
    for (code, n) in sum.rcodes.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = write!(
            t,
            " {} {} ({:.2}%)",
            wire::rcode_name(code),
            n,
            *n as f64 * 100.0 / sum.completed.max(1) as f64
        );
    }
    let _ = writeln!(t);
    if sum.truncated > 0 {
        let _ = writeln!(t, "  Truncated (TC):       {}", sum.truncated);
    }
    let _ = writeln!(
        t,
        "  Average packet size:  request {}, response {}",
        sum.bytes_sent / sum.sent.max(1),
        sum.bytes_received / sum.completed.max(1)
    );
    let _ = writeln!(
        t,
        "  Run time (s):         {:.6}",
        sum.run_time.as_secs_f64()
    );
    let _ = writeln!(t, "  Queries per second:   {:.6}\n", sum.qps());
    let _ = writeln!(
        t,
        "  Batches:              {:.1} queries per sendmmsg, {:.1} responses per recvmmsg, {} polls",
        sum.sent as f64 / sum.send_calls.max(1) as f64,
        sum.completed as f64 / sum.recv_calls.max(1) as f64,
        sum.polls
    );
    let _ = writeln!(
        t,
        "  Latency (ms):         avg {:.3}  p50 {:.3}  p99 {:.3}  max {:.3}  min {:.3}",
        sum.latency.mean() / 1e6,
        ms(sum.latency.quantile(0.5)),
        ms(sum.latency.quantile(0.99)),
        ms(sum.latency.max()),
        ms(sum.latency.min())
    );
    t
}

/// One JSON object on one line.
pub fn render_json(options: &Options, sum: &Summary) -> String {
    let mut rcodes = serde_json::Map::new();
    for (code, n) in sum.rcodes.iter().enumerate().filter(|(_, n)| **n > 0) {
        rcodes.insert(wire::rcode_name(code), (*n).into());
    }
    let us = |ns: u64| ns as f64 / 1e3;
    serde_json::json!({
        "server": options.server.to_string(),
        "sockets": options.sockets,
        "outstanding": options.outstanding,
        "duration_s": options.duration.as_secs_f64(),
        "questions": options.questions.len(),
        "subnets": options.subnets.len(),
        "sent": sum.sent,
        "completed": sum.completed,
        "lost": sum.lost,
        "unexpected": sum.unexpected,
        "mismatched": sum.mismatched,
        "truncated": sum.truncated,
        "rcodes": rcodes,
        "bytes_sent": sum.bytes_sent,
        "bytes_received": sum.bytes_received,
        "run_time_s": sum.run_time.as_secs_f64(),
        "send_calls": sum.send_calls,
        "recv_calls": sum.recv_calls,
        "polls": sum.polls,
        "qps": sum.qps(),
        "latency_us": {
            "avg": sum.latency.mean() / 1e3,
            "p50": us(sum.latency.quantile(0.5)),
            "p90": us(sum.latency.quantile(0.9)),
            "p99": us(sum.latency.quantile(0.99)),
            "max": us(sum.latency.max()),
            "min": us(sum.latency.min()),
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers() {
        for ok in ["127.0.0.1:53", "127.9.9.9:5353", "[::1]:53"] {
            assert!(check_loopback(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1:53",
            "8.8.8.8:53",
            "[::ffff:127.0.0.1]:53",
            "[2001:db8::1]:53",
            "127.0.0.1:0",
        ] {
            assert!(check_loopback(bad.parse().unwrap()).is_err(), "{bad}");
        }
    }
}
