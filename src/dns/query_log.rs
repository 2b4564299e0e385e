//! The sampled query log (`[log] query_sample`, `serve --query-sample`): a fraction of the
//! queries answered, one structured line each, on the server's log (`--log-format json` makes
//! them JSON objects).
//!
//! Each line has `client` (the ECS subnet when the query sent one, else the source's /24 or
//! /56: never the whole client address), `name`, `qtype`, `rcode`, `answer` (the answer
//! section's data), for a steered name `targets` and `reason` (the policy's reason for the
//! decision, as `explain` gives it), and `path` (`fast`, `full`: UDP, or `tcp`).
//!
//! Off (the default), a query pays one comparison. On, the sampling is a per-thread xorshift
//! draw; a sampled query copies its reply and a reference to the snapshot that answered it
//! into a bounded channel ([`QUEUE`]), and a task does the rest off the query path: parse
//! the reply, re-derive the decision from the same snapshot (deterministic: same table, same
//! hash), format and log. When the channel is full the record is dropped and counted
//! (`steerdns_query_log_total{outcome="dropped"}`): logging never slows answering. The
//! source address travels in the record only to re-derive the decision and is never logged.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::Message;
use hickory_proto::rr::LowerName;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::answer::{self, Asker};
use crate::snapshot::Snapshot;

/// Sampled queries waiting for the log task; beyond this they are dropped and counted.
pub const QUEUE: usize = 1024;

/// Which path answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// UDP, pre-rendered.
    Fast,
    /// UDP, the full path.
    Full,
    Tcp,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Fast => "fast",
            Path::Full => "full",
            Path::Tcp => "tcp",
        }
    }
}

/// One sampled query, as the DNS path hands it over.
struct Sampled {
    snapshot: Arc<Snapshot>,
    from: SocketAddr,
    reply: Box<[u8]>,
    path: Path,
}

/// The DNS side's handle: whether to sample, and where samples go.
#[derive(Debug)]
pub struct QueryLog {
    /// Out of 2^32: a draw below it is sampled. 0: off.
    threshold: u64,
    tx: Option<mpsc::Sender<Sampled>>,
    logged: Arc<AtomicU64>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled").field("path", &self.path).finish()
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed: the thread's stack address and the clock, never zero.
fn seed() -> u64 {
    let local = 0u8;
    let at = std::ptr::addr_of!(local) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (at ^ now.rotate_left(17)) | 1
}

/// xorshift64: enough to spread samples, nothing to do with security.
fn draw() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x >> 32
    })
}

impl QueryLog {
    /// A log sampling `fraction` (0 to 1) of queries. `None` for the task when it is off.
    pub fn new(fraction: f64) -> (Arc<Self>, Option<LogTask>) {
        // Fractions below 2^-32 round to off.
        let threshold = (fraction.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64;
        let logged = Arc::new(AtomicU64::new(0));
        let (tx, task) = if threshold == 0 {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(QUEUE);
            let task = LogTask {
                rx,
                logged: logged.clone(),
            };
            (Some(tx), Some(task))
        };
        let log = QueryLog {
            threshold,
            tx,
            logged,
            dropped: AtomicU64::new(0),
        };
        (Arc::new(log), task)
    }

    /// Whether the log is on at all.
    pub fn is_on(&self) -> bool {
        self.threshold != 0
    }

    /// Offer a query's reply for the log: sampled or not, then queued or dropped. Off, this
    /// is one comparison.
    #[inline]
    pub fn record(&self, snapshot: &Arc<Snapshot>, from: SocketAddr, reply: &[u8], path: Path) {
        if self.threshold != 0 && draw() < self.threshold {
            self.queue(snapshot, from, reply, path);
        }
    }

    #[cold]
    fn queue(&self, snapshot: &Arc<Snapshot>, from: SocketAddr, reply: &[u8], path: Path) {
        let Some(tx) = &self.tx else { return };
        let sampled = Sampled {
            snapshot: snapshot.clone(),
            from,
            reply: reply.into(),
            path,
        };
        if tx.try_send(sampled).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `steerdns_query_log_total`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP steerdns_query_log_total Sampled queries ([log] query_sample): logged, or dropped because the log task was behind.\n\
             # TYPE steerdns_query_log_total counter\n\
             steerdns_query_log_total{{outcome=\"logged\"}} {}\n\
             steerdns_query_log_total{{outcome=\"dropped\"}} {}",
            self.logged.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed)
        );
    }
}

/// The receiving end: [`LogTask::run`] logs until cancelled or every sender is gone.
#[derive(Debug)]
pub struct LogTask {
    rx: mpsc::Receiver<Sampled>,
    logged: Arc<AtomicU64>,
}

impl LogTask {
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let sampled = tokio::select! {
                s = self.rx.recv() => s,
                () = stop.cancelled() => None,
            };
            let Some(sampled) = sampled else { return };
            if let Some(line) = Line::of(&sampled) {
                line.log();
                self.logged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One log line's fields.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    client: String,
    name: String,
    qtype: String,
    rcode: String,
    answer: String,
    targets: String,
    reason: String,
    path: &'static str,
}

impl Line {
    /// The fields of a sampled reply; `None` if it does not parse (every reply we send does).
    fn of(s: &Sampled) -> Option<Line> {
        let reply = Message::from_vec(&s.reply).ok()?;
        let ecs = reply
            .edns
            .as_ref()
            .and_then(|e| e.option(EdnsCode::Subnet))
            .and_then(|o| match o {
                EdnsOption::Subnet(subnet) => Some((subnet.addr(), subnet.source_prefix())),
                _ => None,
            });
        let resolver = s.from.ip().to_canonical();
        let client = match ecs {
            Some((address, prefix)) => format!("{address}/{prefix}"),
            None => crate::limit::client_network(resolver, 24, 56).to_string(),
        };
        let question = reply.queries.first();
        let name = question.map_or_else(String::new, |q| q.name().to_ascii().to_ascii_lowercase());
        let qtype = question.map_or_else(String::new, |q| q.query_type().to_string());
        let answer: Vec<String> = reply
            .answers
            .iter()
            .map(|r| format!("{} {}", r.record_type(), r.data))
            .collect();
        let (targets, reason) = question
            .and_then(|q| steered_why(&s.snapshot, &LowerName::new(q.name()), resolver, ecs))
            .unwrap_or_default();
        Some(Line {
            client,
            name,
            qtype,
            rcode: super::counters::rcode_name(u16::from(reply.metadata.response_code))
                .into_owned(),
            answer: answer.join(", "),
            targets,
            reason,
            path: s.path.label(),
        })
    }

    fn log(&self) {
        info!(
            target: "steerdns::query_log",
            client = %self.client,
            name = %self.name,
            qtype = %self.qtype,
            rcode = %self.rcode,
            answer = %self.answer,
            targets = %self.targets,
            reason = %self.reason,
            path = self.path,
            "query"
        );
    }
}

/// For a steered question name: the chosen targets and the decision's reason, decided again
/// on the snapshot that answered, for the same asker.
fn steered_why(
    snapshot: &Snapshot,
    name: &LowerName,
    resolver: IpAddr,
    ecs: Option<(IpAddr, u8)>,
) -> Option<(String, String)> {
    let steered = snapshot.steered.get(name)?;
    let asker = Asker::new(snapshot, resolver, ecs);
    let decision = answer::decide(snapshot, steered, &asker);
    let selected = steered.table.select(&decision, asker.steer_on());
    let targets: Vec<&str> = selected
        .as_slice()
        .iter()
        .map(|t| steered.policy.target(*t).id.as_str())
        .collect();
    let reason = steered.table.outcome(decision.outcome).reason.to_string();
    Some((targets.join(","), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_samples_nothing_and_on_samples_about_the_fraction() {
        let (off, task) = QueryLog::new(0.0);
        assert!(!off.is_on() && task.is_none());
        let (all, _task) = QueryLog::new(1.0);
        assert_eq!(all.threshold, 1 << 32);
        assert!((0..10_000).all(|_| draw() < all.threshold));
        let (tenth, _task) = QueryLog::new(0.1);
        let hits = (0..100_000).filter(|_| draw() < tenth.threshold).count();
        assert!((8_000..12_000).contains(&hits), "{hits} of 100000 at 0.1");
    }
}
