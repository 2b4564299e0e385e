//! The soak's checker (`bench/soak/soak.sh` runs it beside `loadgen` and `beaconflood`):
//! answers checked against `explain`, junk datagrams, TCP churn and policy edits, all at once
//! against one server on loopback, for a bounded time.
//!
//! **Expected answers.** Before the soak, the policy being edited is installed in each of its
//! two versions in turn, and `GET /api/v1/explain` is asked for every (name, subnet) pair:
//! the two tables of what DNS must answer. The two versions must differ for some client, or
//! the edits would prove nothing.
//!
//! **Edits and the epoch.** The editor thread alternates the versions through the admin API
//! (`PUT` with `If-Match`). An epoch counter is odd while an edit is in flight and even
//! between edits; stable epoch `2k` serves version `k mod 2`. A checked query reads the epoch
//! when it is sent and when its answer arrives: unchanged and even, the answer must be that
//! version's, exactly; an edit in between, either version's (counted as `raced`). So an edit
//! acknowledged with 200 but not yet served shows up as a wrong answer.
//!
//! **Streams.** `checkers` UDP threads send one ECS query at a time and check every answer;
//! a TCP thread opens connections, checks one to three answers on each and closes it (and
//! now and then leaves a connection holding half a length prefix, a slowloris, for 2 s); a
//! junk thread sends malformed datagrams (random bytes, mutated and truncated queries, QR
//! set) and checks that every reply to them parses. Any wrong answer, unparseable reply or
//! failed edit fails the run.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RData;

use crate::http::{self, bad};
use crate::rng::Rng;
use crate::wire::{self, Subnet};

/// What to run, where, and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
    pub duration: Duration,
    /// Steered names queried (type A) for every subnet.
    pub names: Vec<String>,
    pub subnets: Vec<Subnet>,
    /// The policy the editor alternates, and its two versions (TOML).
    pub edit_name: String,
    pub versions: [String; 2],
    pub edit_every: Duration,
    pub checkers: usize,
    pub junk_per_sec: u32,
    pub tcp_per_sec: u32,
    pub seed: u64,
}

/// Counts of one soak.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub checked_udp: u64,
    pub checked_tcp: u64,
    /// Answers to queries in flight during an edit, which may be either version's.
    pub raced: u64,
    pub wrong: u64,
    pub udp_timeouts: u64,
    pub tcp_connections: u64,
    pub tcp_errors: u64,
    pub slowloris: u64,
    pub junk_sent: u64,
    pub junk_replies: u64,
    pub junk_bad_replies: u64,
    /// Replies to messages with QR set (sent from their own socket): must stay 0.
    pub qr_replies: u64,
    pub edits: u64,
    pub edit_failures: u64,
    /// Up to ten examples of what went wrong.
    pub examples: Vec<String>,
}

/// (name index, subnet index) → the answer, as sorted `TYPE value` strings.
type Table = HashMap<(usize, usize), Vec<String>>;

struct Shared {
    options: Options,
    tables: [Table; 2],
    epoch: AtomicU64,
    stop: AtomicBool,
    summary: Mutex<Summary>,
}

impl Shared {
    fn note(&self, update: impl FnOnce(&mut Summary)) {
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        update(&mut s);
    }

    fn example(&self, text: String) {
        self.note(|s| {
            if s.examples.len() < 10 {
                s.examples.push(text);
            }
        });
    }

    /// Judge one answer to (name, subnet) sent at epoch `sent`; true if it is right.
    fn judge(&self, key: (usize, usize), sent: u64, got: &[String], tcp: bool) -> bool {
        let now = self.epoch.load(Ordering::Acquire);
        let stable = sent == now && sent % 2 == 0;
        let ok = if stable {
            self.tables[((sent / 2) % 2) as usize][&key] == got
        } else {
            self.tables.iter().any(|t| t[&key] == got)
        };
        self.note(|s| {
            if tcp {
                s.checked_tcp += 1;
            } else {
                s.checked_udp += 1;
            }
            if !stable {
                s.raced += 1;
            }
            if !ok {
                s.wrong += 1;
            }
        });
        if !ok {
            let o = &self.options;
            let want = &self.tables[((sent / 2) % 2) as usize][&key];
            self.example(format!(
                "wrong answer ({}) for {} from {}: {got:?}, want {want:?} (epoch {sent} → {now})",
                if tcp { "TCP" } else { "UDP" },
                o.names[key.0],
                o.subnets[key.1],
            ));
        }
        ok
    }
}

/// Run the soak; the summary says what was seen (the caller decides pass or fail).
pub fn run(options: &Options) -> io::Result<Summary> {
    let admin = Admin {
        api: http::AdminApi::new(options.admin, &options.token),
    };
    let mut etag = admin.etag(&options.edit_name)?;
    let mut tables: [Table; 2] = [HashMap::new(), HashMap::new()];
    for v in [1usize, 0] {
        etag = admin.put(&options.edit_name, &options.versions[v], &etag)?;
        tables[v] = expected_table(&admin, options)?;
    }
    if tables[0] == tables[1] {
        return Err(bad(
            "the two policy versions answer every client alike: edits would prove nothing",
        ));
    }
    let shared = Arc::new(Shared {
        options: options.clone(),
        tables,
        epoch: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        summary: Mutex::new(Summary::default()),
    });

    let mut threads = Vec::new();
    for i in 0..options.checkers {
        let s = shared.clone();
        threads.push(thread::spawn(move || checker(&s, options_seed(&s, i))));
    }
    let s = shared.clone();
    threads.push(thread::spawn(move || tcp_churn(&s)));
    let s = shared.clone();
    threads.push(thread::spawn(move || junk(&s)));

    let end = Instant::now() + options.duration;
    while Instant::now() < end {
        thread::sleep(
            options
                .edit_every
                .min(end.saturating_duration_since(Instant::now())),
        );
        if Instant::now() >= end {
            break;
        }
        let next = ((shared.epoch.load(Ordering::Acquire) / 2 + 1) % 2) as usize;
        shared.epoch.fetch_add(1, Ordering::AcqRel); // odd: an edit in flight
        match admin.put(&options.edit_name, &options.versions[next], &etag) {
            Ok(e) => {
                etag = e;
                shared.epoch.fetch_add(1, Ordering::AcqRel);
                shared.note(|s| s.edits += 1);
            }
            Err(e) => {
                shared.note(|s| s.edit_failures += 1);
                shared.example(format!("edit failed: {e}"));
                // Which version is served is unknown now: stop judging strictly.
                shared.stop.store(true, Ordering::Release);
                break;
            }
        }
    }
    shared.stop.store(true, Ordering::Release);
    for t in threads {
        let _ = t.join();
    }
    // Leave the policy as it was found.
    if shared.summary.lock().map(|s| s.edit_failures).unwrap_or(1) == 0 {
        let served = ((shared.epoch.load(Ordering::Acquire) / 2) % 2) as usize;
        if served != 0 {
            admin.put(&options.edit_name, &options.versions[0], &etag)?;
        }
    }
    let summary = shared.summary.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(summary)
}

fn options_seed(s: &Shared, i: usize) -> u64 {
    s.options
        .seed
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(i as u64 + 1)
}

fn expected_table(admin: &Admin, o: &Options) -> io::Result<Table> {
    let mut table = HashMap::new();
    for (n, name) in o.names.iter().enumerate() {
        for (c, subnet) in o.subnets.iter().enumerate() {
            let path = format!("/api/v1/explain?name={name}&client={subnet}");
            let r = admin.api.request("GET", &path, &[], b"")?;
            if r.status != 200 {
                return Err(bad(format!("GET {path}: {} {}", r.status, r.body_text())));
            }
            let json: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| bad(format!("GET {path}: not JSON: {e}")))?;
            let answer = json["answer"]
                .as_array()
                .ok_or_else(|| bad(format!("GET {path}: no answer list")))?;
            table.insert((n, c), explain_records(answer));
        }
    }
    Ok(table)
}

/// Explain's answer strings (`CNAME x.`, `A 192.0.2.1 AAAA 2001:db8::1`) as the records an A
/// query gets: CNAMEs and A records, sorted.
fn explain_records(answer: &[serde_json::Value]) -> Vec<String> {
    let mut out = Vec::new();
    for text in answer.iter().filter_map(|v| v.as_str()) {
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.chunks(2) {
            if let [kind @ ("CNAME" | "A"), value] = pair {
                out.push(format!("{kind} {value}"));
            }
        }
    }
    out.sort();
    out
}

/// The CNAME and A records of a reply's answer section, sorted, or why it is not a good
/// reply to `query` (its ID and question echoed).
fn reply_records(packet: &[u8], query: &[u8]) -> Result<Vec<String>, String> {
    let m = Message::from_vec(packet).map_err(|e| format!("unparseable reply: {e}"))?;
    let q = Message::from_vec(query).map_err(|e| format!("our own query: {e}"))?;
    if m.metadata.id != q.metadata.id {
        return Err(format!(
            "reply ID {} to query {}",
            m.metadata.id, q.metadata.id
        ));
    }
    if m.queries != q.queries {
        return Err(format!("reply question {:?} to {:?}", m.queries, q.queries));
    }
    let mut out: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(format!("CNAME {}", c.0.to_ascii())),
            RData::A(a) => Some(format!("A {}", a.0)),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

fn build_query(o: &Options, key: (usize, usize), id: u16) -> io::Result<Vec<u8>> {
    let question = wire::parse_question(&format!("{} A", o.names[key.0])).map_err(bad)?;
    let opt = wire::encode_opt(Some(o.subnets[key.1]));
    let mut buf = vec![0u8; wire::HEADER_LEN + question.wire.len() + opt.len()];
    let n = wire::write_query(&mut buf, id, &question.wire, &opt);
    buf.truncate(n);
    Ok(buf)
}

fn pick(rng: &mut Rng, o: &Options) -> (usize, usize) {
    (rng.below(o.names.len()), rng.below(o.subnets.len()))
}

/// One query at a time over UDP, every answer judged.
fn checker(s: &Shared, seed: u64) {
    let o = &s.options;
    let mut rng = Rng::new(seed);
    let Ok(sock) = UdpSocket::bind(if o.dns.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }) else {
        s.example("checker: cannot bind a UDP socket".into());
        return;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 4096];
    while !s.stop.load(Ordering::Acquire) {
        let key = pick(&mut rng, o);
        let id = rng.next_u64() as u16;
        let Ok(query) = build_query(o, key, id) else {
            return;
        };
        let sent = s.epoch.load(Ordering::Acquire);
        if sock.send_to(&query, o.dns).is_err() {
            s.note(|x| x.udp_timeouts += 1);
            continue;
        }
        // Wait for the reply with our ID; a stale one (to a query that timed out) is skipped.
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
                        continue;
                    }
                    match reply_records(&buf[..n], &query) {
                        Ok(got) => {
                            s.judge(key, sent, &got, false);
                        }
                        Err(e) => {
                            s.note(|x| x.wrong += 1);
                            s.example(format!("UDP: {e}"));
                        }
                    }
                }
                Err(_) => s.note(|x| x.udp_timeouts += 1),
            }
            break;
        }
    }
}

/// Connections opened, used for one to three checked queries and closed; every tenth holds
/// half a length prefix for 2 s instead.
fn tcp_churn(s: &Shared) {
    let o = &s.options;
    let mut rng = Rng::new(o.seed ^ 0x7cb);
    let gap = Duration::from_secs_f64(1.0 / f64::from(o.tcp_per_sec.max(1)));
    let mut held: Vec<(Instant, TcpStream)> = Vec::new();
    let mut n = 0u64;
    while !s.stop.load(Ordering::Acquire) {
        let started = Instant::now();
        held.retain(|(since, _)| since.elapsed() < Duration::from_secs(2));
        n += 1;
        let result = if n % 10 == 0 {
            TcpStream::connect_timeout(&o.dns, Duration::from_secs(1)).and_then(|mut t| {
                t.write_all(&[0])?;
                held.push((Instant::now(), t));
                s.note(|x| x.slowloris += 1);
                Ok(())
            })
        } else {
            tcp_queries(s, &mut rng)
        };
        s.note(|x| x.tcp_connections += 1);
        if let Err(e) = result {
            s.note(|x| x.tcp_errors += 1);
            s.example(format!("TCP: {e}"));
        }
        thread::sleep(gap.saturating_sub(started.elapsed()));
    }
}

fn tcp_queries(s: &Shared, rng: &mut Rng) -> io::Result<()> {
    let o = &s.options;
    let mut t = TcpStream::connect_timeout(&o.dns, Duration::from_secs(1))?;
    t.set_read_timeout(Some(Duration::from_secs(2)))?;
    t.set_nodelay(true)?;
    for _ in 0..=rng.below(3) {
        let key = pick(rng, o);
        let id = rng.next_u64() as u16;
        let query = build_query(o, key, id)?;
        let sent = s.epoch.load(Ordering::Acquire);
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        t.write_all(&framed)?;
        let mut len = [0u8; 2];
        t.read_exact(&mut len)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        t.read_exact(&mut reply)?;
        match reply_records(&reply, &query) {
            Ok(got) => {
                s.judge(key, sent, &got, true);
            }
            Err(e) => {
                s.note(|x| x.wrong += 1);
                s.example(format!("TCP: {e}"));
            }
        }
    }
    Ok(())
}

/// Malformed datagrams at `junk_per_sec`; every reply must parse.
fn junk(s: &Shared) {
    let o = &s.options;
    let mut rng = Rng::new(o.seed ^ 0x6a75_6e6b);
    let bind = || {
        let s = UdpSocket::bind(if o.dns.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        })?;
        s.set_nonblocking(true)?;
        Ok::<_, io::Error>(s)
    };
    let (Ok(sock), Ok(qr_sock)) = (bind(), bind()) else {
        s.example("junk: cannot bind UDP sockets".into());
        return;
    };
    let per_tick = (o.junk_per_sec / 100).max(1);
    let mut buf = [0u8; 4096];
    while !s.stop.load(Ordering::Acquire) {
        let tick = Instant::now();
        for _ in 0..per_tick {
            let Ok(packet) = junk_packet(o, &mut rng) else {
                return;
            };
            let from = if packet.len() > 2 && packet[2] & 0x80 != 0 {
                &qr_sock
            } else {
                &sock
            };
            if from.send_to(&packet, o.dns).is_ok() {
                s.note(|x| x.junk_sent += 1);
            }
        }
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let parsed = Message::from_vec(&buf[..n]);
            s.note(|x| {
                x.junk_replies += 1;
                if parsed.is_err() {
                    x.junk_bad_replies += 1;
                }
            });
            if let Err(e) = parsed {
                s.example(format!(
                    "junk reply does not parse ({e}): {:02x?}",
                    &buf[..n]
                ));
            }
        }
        while qr_sock.recv_from(&mut buf).is_ok() {
            s.note(|x| x.qr_replies += 1);
        }
        thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
    }
}

fn junk_packet(o: &Options, rng: &mut Rng) -> io::Result<Vec<u8>> {
    let key = pick(rng, o);
    let mut q = build_query(o, key, rng.next_u64() as u16)?;
    match rng.below(5) {
        // Random bytes.
        0 => Ok((0..rng.below(600)).map(|_| rng.next_u64() as u8).collect()),
        // A few bytes flipped.
        1 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(q.len());
                q[i] ^= 1 << rng.below(8);
            }
            Ok(q)
        }
        // Cut short.
        2 => {
            q.truncate(rng.below(q.len()));
            Ok(q)
        }
        // A response (QR set): must get no reply at all.
        3 => {
            q[2] |= 0x80;
            Ok(q)
        }
        // A compression pointer for a question name.
        _ => {
            q.truncate(wire::HEADER_LEN);
            q.extend_from_slice(&[0xc0, rng.below(40) as u8, 0, 1, 0, 1]);
            Ok(q)
        }
    }
}

/// The admin API: the policy's ETag and replacing it.
struct Admin {
    api: http::AdminApi,
}

impl Admin {
    fn etag(&self, name: &str) -> io::Result<String> {
        let r = self
            .api
            .request("GET", &format!("/api/v1/policies/{name}"), &[], b"")?;
        match (r.status, r.header("etag")) {
            (200, Some(e)) => Ok(e.to_owned()),
            (s, _) => Err(bad(format!("GET policy {name}: {s} {}", r.body_text()))),
        }
    }

    /// Replace the policy; the new ETag.
    fn put(&self, name: &str, text: &str, etag: &str) -> io::Result<String> {
        let headers = [("If-Match", etag), ("Content-Type", "application/toml")];
        let path = format!("/api/v1/policies/{name}");
        let r = self.api.request("PUT", &path, &headers, text.as_bytes())?;
        match (r.status, r.header("etag")) {
            (200 | 201, Some(e)) => Ok(e.to_owned()),
            (s, _) => Err(bad(format!("PUT {path}: {s} {}", r.body_text()))),
        }
    }
}

/// One JSON line for the script's table.
pub fn render_json(options: &Options, s: &Summary) -> String {
    serde_json::json!({
        "duration_s": options.duration.as_secs_f64(),
        "checked_udp": s.checked_udp,
        "checked_tcp": s.checked_tcp,
        "raced": s.raced,
        "wrong": s.wrong,
        "udp_timeouts": s.udp_timeouts,
        "tcp_connections": s.tcp_connections,
        "tcp_errors": s.tcp_errors,
        "slowloris": s.slowloris,
        "junk_sent": s.junk_sent,
        "junk_replies": s.junk_replies,
        "junk_bad_replies": s.junk_bad_replies,
        "qr_replies": s.qr_replies,
        "edits": s.edits,
        "edit_failures": s.edit_failures,
        "examples": s.examples,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_answers_become_the_records_an_a_query_gets() {
        let v = |s: &[&str]| -> Vec<serde_json::Value> { s.iter().map(|x| (*x).into()).collect() };
        assert_eq!(
            explain_records(&v(&["CNAME cdn-c.example.net."])),
            ["CNAME cdn-c.example.net."]
        );
        assert_eq!(
            explain_records(&v(&["A 192.0.2.2 AAAA 2001:db8::2", "A 192.0.2.1"])),
            ["A 192.0.2.1", "A 192.0.2.2"]
        );
    }
}
