//! Fleet convergence: how long after a change is accepted through one node's admin API the
//! other nodes' DNS answers show it (see `bench/fleet/README.md`).
//!
//! Two kinds of change, each timed from the moment its HTTP 200 has been read to the first
//! DNS response from a watched node that carries the new answer:
//!
//! - **Policy edits.** `PUT /api/v1/policies/{name}` with `If-Match` (the ETag of the
//!   version before), alternating between policies whose answers differ.
//! - **Health flips.** `POST /api/v1/probe-results` with failing results for a target (its
//!   answer must move to another target), then passing ones (it must come back).
//!
//! Each watched node is polled with a plain UDP query every `poll` (one socket per node,
//! one query in flight), so the resolution is about `poll` plus a loopback round trip,
//! without the milliseconds a `dig` process costs to start. A change that some node has not
//! shown after `timeout` counts as not converged there. Blocking, one thread: the tool is a
//! stopwatch, not a load generator. Depends on `http`, `wire`, `signal`.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{self, bad};
use crate::{signal, wire};

/// A policy text and the one address its name answers with.
#[derive(Debug, Clone)]
pub struct Policy {
    pub text: String,
    pub answer: IpAddr,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The admin API the changes go through.
    pub admin: SocketAddr,
    pub token: String,
    /// The DNS listeners to watch, with labels for the table.
    pub watch: Vec<(String, SocketAddr)>,
    /// The steered name (policy key and query name).
    pub name: String,
    /// At least two, with different answers; edits alternate among them. The first is the
    /// home policy the health flips start from: its answer is `flip_target`'s.
    pub policies: Vec<Policy>,
    pub edits: usize,
    /// The target the health flips take down and bring back.
    pub flip_target: Option<String>,
    /// The answer while `flip_target` is down.
    pub flip_answer: Option<IpAddr>,
    pub flips: usize,
    /// Probe results per post (at least the server's `down_after_failures` and
    /// `up_after_successes`).
    pub flip_results: usize,
    pub timeout: Duration,
    pub poll: Duration,
    /// Wait between changes (longer than the server's `hold_down_ms` for the flips).
    pub pause: Duration,
}

/// One change and when each watched node showed it.
#[derive(Debug, Clone)]
pub struct Trial {
    pub kind: &'static str,
    /// From writing the request to reading its 200.
    pub request: Duration,
    /// Per watched node: from the 200 to the first response with the new answer.
    pub seen: Vec<Option<Duration>>,
}

/// Kinds of change, in table order.
pub const KINDS: [&str; 3] = ["edit", "health down", "health up"];

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One UDP socket per watched node and the query for the name.
struct Poller {
    sockets: Vec<UdpSocket>,
    question: Vec<u8>,
    opt: Vec<u8>,
    id: u16,
}

impl Poller {
    fn new(options: &Options) -> io::Result<Self> {
        let question = wire::parse_question(&format!("{} A", options.name)).map_err(bad)?;
        let mut sockets = Vec::new();
        for (_, addr) in &options.watch {
            let bind: SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::LOCALHOST, 0).into()
            } else {
                (std::net::Ipv6Addr::LOCALHOST, 0).into()
            };
            let socket = UdpSocket::bind(bind)?;
            socket.connect(addr)?;
            sockets.push(socket);
        }
        Ok(Poller {
            sockets,
            question: question.wire,
            opt: wire::encode_opt(None),
            id: 1,
        })
    }

    /// The addresses node `i` answers with now; `None` if it did not answer in `wait`.
    fn answer(&mut self, i: usize, wait: Duration) -> io::Result<Option<Vec<IpAddr>>> {
        self.id = self.id.wrapping_add(1);
        let mut buf = [0u8; 1500];
        let n = wire::write_query(&mut buf, self.id, &self.question, &self.opt);
        let socket = &self.sockets[i];
        socket.send(&buf[..n])?;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            socket.set_read_timeout(Some(left))?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            // A late answer to an earlier query: not this one.
            match wire::response_head(&buf[..n]) {
                Some(h) if h.id == self.id => {}
                _ => continue,
            }
            return wire::answer_addrs(&buf[..n], &self.question)
                .map(Some)
                .map_err(bad);
        }
    }

    /// Poll every node until each answers exactly `want` or `timeout` passes; the time from
    /// `since` to each node's first such answer.
    fn wait_for(
        &mut self,
        want: IpAddr,
        since: Instant,
        timeout: Duration,
        poll: Duration,
    ) -> io::Result<Vec<Option<Duration>>> {
        let mut seen = vec![None; self.sockets.len()];
        let deadline = since + timeout;
        while seen.iter().any(Option::is_none) && Instant::now() < deadline && !signal::stopped() {
            for (i, seen) in seen.iter_mut().enumerate() {
                if seen.is_none()
                    && self.answer(i, Duration::from_millis(200))?.as_deref() == Some(&[want][..])
                {
                    *seen = Some(since.elapsed());
                }
            }
            std::thread::sleep(poll);
        }
        Ok(seen)
    }
}

struct Admin<'a> {
    options: &'a Options,
    api: http::AdminApi,
}

impl Admin<'_> {
    /// The current ETag of the policy, `None` if there is none.
    fn etag(&self) -> io::Result<Option<String>> {
        let r = self.api.request(
            "GET",
            &format!("/api/v1/policies/{}", self.options.name),
            &[],
            b"",
        )?;
        match r.status {
            200 => Ok(r.header("etag").map(str::to_owned)),
            404 => Ok(None),
            s => Err(bad(format!("GET policy answered {s}: {}", r.body_text()))),
        }
    }

    /// Replace (or create) the policy; returns the new ETag, the request time and when the
    /// answer was read.
    fn put(&self, text: &str, etag: Option<&str>) -> io::Result<(String, Duration, Instant)> {
        let headers: Vec<(&str, &str)> = match etag {
            Some(e) => vec![("If-Match", e), ("Content-Type", "application/toml")],
            None => vec![("If-None-Match", "*"), ("Content-Type", "application/toml")],
        };
        let sent = Instant::now();
        let r = self.api.request(
            "PUT",
            &format!("/api/v1/policies/{}", self.options.name),
            &headers,
            text.as_bytes(),
        )?;
        let done = Instant::now();
        if !matches!(r.status, 200 | 201) {
            return Err(bad(format!(
                "PUT policy answered {}: {}",
                r.status,
                r.body_text()
            )));
        }
        let etag = r
            .header("etag")
            .ok_or_else(|| bad("PUT policy answered without an ETag"))?;
        Ok((etag.to_owned(), done - sent, done))
    }

    /// Post `n` probe results for `target`, all `ok` or all failing.
    fn post_results(&self, target: &str, ok: bool, n: usize) -> io::Result<(Duration, Instant)> {
        let now = unix_ms();
        let results: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "target": target, "check": "bench", "agent": "bench",
                    "at_unix_ms": now + i as u128, "ok": ok, "latency_ms": 1.0,
                    "error": if ok { serde_json::Value::Null } else { "bench: forced".into() },
                })
            })
            .collect();
        let body = serde_json::to_vec(&results).map_err(|e| bad(e.to_string()))?;
        let sent = Instant::now();
        let r = self.api.request(
            "POST",
            "/api/v1/probe-results",
            &[("Content-Type", "application/json")],
            &body,
        )?;
        let done = Instant::now();
        if r.status != 200 {
            return Err(bad(format!(
                "POST probe-results answered {}: {}",
                r.status,
                r.body_text()
            )));
        }
        Ok((done - sent, done))
    }
}

/// Check the options a run cannot do without.
pub fn check(options: &Options) -> Result<(), String> {
    if options.policies.len() < 2 {
        return Err("give at least two policies".into());
    }
    if options
        .policies
        .windows(2)
        .any(|w| w[0].answer == w[1].answer)
        || options.policies[0].answer == options.policies[options.policies.len() - 1].answer
    {
        return Err("neighbouring policies must answer differently (they alternate)".into());
    }
    if options.watch.is_empty() {
        return Err("give at least one DNS server to watch".into());
    }
    for addr in std::iter::once(&options.admin).chain(options.watch.iter().map(|(_, a)| a)) {
        crate::load::check_loopback(*addr)?;
    }
    if options.flips > 0 && (options.flip_target.is_none() || options.flip_answer.is_none()) {
        return Err("health flips need a target and the answer while it is down".into());
    }
    Ok(())
}

/// Run the edits, then the flips.
pub fn run(options: &Options) -> io::Result<Vec<Trial>> {
    check(options).map_err(bad)?;
    let admin = Admin {
        options,
        api: http::AdminApi::new(options.admin, &options.token),
    };
    let mut poller = Poller::new(options)?;
    let mut trials = Vec::new();
    // Start from the home policy, served by every watched node.
    let mut etag = admin.etag()?;
    let home = &options.policies[0];
    let (e, _, done) = admin.put(&home.text, etag.as_deref())?;
    etag = Some(e);
    let seen = poller.wait_for(home.answer, done, options.timeout, options.poll)?;
    if seen.iter().any(Option::is_none) {
        return Err(bad(format!(
            "the watched nodes did not all answer {} within {:?} of the first edit",
            home.answer, options.timeout
        )));
    }
    let mut current = 0;
    for _ in 0..options.edits {
        if signal::stopped() {
            break;
        }
        std::thread::sleep(options.pause);
        current = (current + 1) % options.policies.len();
        let next = &options.policies[current];
        let (e, request, done) = admin.put(&next.text, etag.as_deref())?;
        etag = Some(e);
        let seen = poller.wait_for(next.answer, done, options.timeout, options.poll)?;
        trials.push(Trial {
            kind: KINDS[0],
            request,
            seen,
        });
    }
    if options.flips == 0 {
        return Ok(trials);
    }
    let (Some(target), Some(down_answer)) = (&options.flip_target, options.flip_answer) else {
        return Err(bad("health flips need a target and its down answer"));
    };
    if current != 0 {
        std::thread::sleep(options.pause);
        let (_, _, done) = admin.put(&home.text, etag.as_deref())?;
        poller.wait_for(home.answer, done, options.timeout, options.poll)?;
    }
    for _ in 0..options.flips {
        for (kind, ok, want) in [
            (KINDS[1], false, down_answer),
            (KINDS[2], true, home.answer),
        ] {
            if signal::stopped() {
                return Ok(trials);
            }
            std::thread::sleep(options.pause);
            let (request, done) = admin.post_results(target, ok, options.flip_results)?;
            let seen = poller.wait_for(want, done, options.timeout, options.poll)?;
            trials.push(Trial {
                kind,
                request,
                seen,
            });
        }
    }
    Ok(trials)
}

/// The nearest-rank quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One table row: the kind, the column (a node, or "every node": the slowest per change).
struct Row {
    kind: &'static str,
    node: String,
    changes: usize,
    converged: usize,
    sorted_ms: Vec<f64>,
    request_ms: Vec<f64>,
}

fn rows(options: &Options, trials: &[Trial]) -> Vec<Row> {
    let mut out = Vec::new();
    for kind in KINDS {
        let these: Vec<&Trial> = trials.iter().filter(|t| t.kind == kind).collect();
        if these.is_empty() {
            continue;
        }
        let mut request_ms: Vec<f64> = these.iter().map(|t| ms(t.request)).collect();
        request_ms.sort_by(f64::total_cmp);
        let mut columns: Vec<(String, Vec<Option<f64>>)> = options
            .watch
            .iter()
            .enumerate()
            .map(|(i, (label, _))| {
                (
                    label.clone(),
                    these.iter().map(|t| t.seen[i].map(ms)).collect(),
                )
            })
            .collect();
        if options.watch.len() > 1 {
            let slowest = these
                .iter()
                .map(|t| {
                    t.seen
                        .iter()
                        .try_fold(0.0f64, |m, s| s.map(|d| m.max(ms(d))))
                })
                .collect();
            columns.push(("every node".into(), slowest));
        }
        for (node, values) in columns {
            let mut sorted_ms: Vec<f64> = values.iter().flatten().copied().collect();
            sorted_ms.sort_by(f64::total_cmp);
            out.push(Row {
                kind,
                node,
                changes: values.len(),
                converged: sorted_ms.len(),
                sorted_ms,
                request_ms: request_ms.clone(),
            });
        }
    }
    out
}

/// A Markdown table: per kind of change and watched node, p50/p95/max from the 200.
pub fn render_table(options: &Options, trials: &[Trial]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| change | seen on | changes | converged | p50 ms | p95 ms | max ms | request p50 ms |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for r in rows(options, trials) {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.kind,
            r.node,
            r.changes,
            r.converged,
            f(quantile(&r.sorted_ms, 0.5)),
            f(quantile(&r.sorted_ms, 0.95)),
            f(r.sorted_ms.last().copied()),
            f(quantile(&r.request_ms, 0.5)),
        );
    }
    t
}

/// Every trial, one JSON object on one line (times in ms, `null`: not converged).
pub fn render_json(options: &Options, trials: &[Trial]) -> String {
    let nodes: Vec<&str> = options.watch.iter().map(|(l, _)| l.as_str()).collect();
    let trials: Vec<serde_json::Value> = trials
        .iter()
        .map(|t| {
            serde_json::json!({
                "kind": t.kind,
                "request_ms": ms(t.request),
                "seen_ms": t.seen.iter().map(|s| s.map(ms)).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "nodes": nodes, "trials": trials }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(10.0));
        assert_eq!(quantile(&v, 0.95), Some(19.0));
        assert_eq!(quantile(&v, 1.0), Some(20.0));
        assert_eq!(quantile(&v[..1], 0.95), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_slowest_node_decides_and_a_miss_is_not_converged() {
        let options = Options {
            admin: "127.0.0.1:1".parse().unwrap(),
            token: String::new(),
            watch: vec![
                ("b".into(), "127.0.0.1:2".parse().unwrap()),
                ("c".into(), "127.0.0.1:3".parse().unwrap()),
            ],
            name: "x.example.com".into(),
            policies: Vec::new(),
            edits: 2,
            flip_target: None,
            flip_answer: None,
            flips: 0,
            flip_results: 3,
            timeout: Duration::from_secs(1),
            poll: Duration::from_millis(1),
            pause: Duration::ZERO,
        };
        let d = Duration::from_millis;
        let trials = vec![
            Trial {
                kind: KINDS[0],
                request: d(5),
                seen: vec![Some(d(10)), Some(d(30))],
            },
            Trial {
                kind: KINDS[0],
                request: d(7),
                seen: vec![Some(d(20)), None],
            },
        ];
        let rows = rows(&options, &trials);
        let every = rows.iter().find(|r| r.node == "every node").unwrap();
        assert_eq!((every.changes, every.converged), (2, 1));
        assert_eq!(every.sorted_ms, vec![30.0]);
        let c = rows.iter().find(|r| r.node == "c").unwrap();
        assert_eq!((c.changes, c.converged), (2, 1));
        let table = render_table(&options, &trials);
        assert!(
            table.contains("| edit | b | 2 | 2 | 10.0 | 20.0 | 20.0 | 5.0 |"),
            "{table}"
        );
    }
}
