//! Answers by steered name, chosen target, query type and rcode, for `/metrics`
//! (`steerdns_answers_total{name,target,type,rcode}`).
//!
//! DNS counts where it picks the targets (the UDP fast path once its reply is written, the
//! full path on UDP and TCP); `explain` and previews never count. The hot path adds one to a
//! counter it reaches through the [`Steered`] it already holds: no lookup, no lock, and each
//! thread writes its own cache line (a shard), so workers on different cores do not bounce
//! one line between them.
//!
//! Counters outlive edits. [`AnswerCounters::attach`] runs when a snapshot is published and
//! gives each newly compiled `Steered` the counters of its (name, target) pairs from a
//! registry, so a recompile, an edit or a reload keeps counting where it left off, as
//! Prometheus expects of a counter. The registry keeps every pair it has seen (a removed
//! target's count stays, frozen); its size is bounded by the names and targets configured
//! over the process's life. Each `Steered` in `snapshot` carries its counters, and
//! `snapshot::Published` holds the registry; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::snapshot::{Snapshot, Steered};

/// Per-thread shards of each counter, one per core up to 4: enough that the UDP workers of a
/// typical box rarely share one, and no more (each is 128 bytes per name and target, so on a
/// 2-core box 1,000 names of six targets keep 1.5 MiB instead of 3).
fn shards() -> usize {
    static SHARDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SHARDS.get_or_init(|| std::thread::available_parallelism().map_or(4, |n| n.get().min(4)))
}

/// The query types counted apart; CNAME, ANY and the rest are `other`.
const TYPES: [&str; 3] = ["A", "AAAA", "other"];

/// The rcodes a steered name's reply is counted under: NOERROR (also NODATA), NXDOMAIN (a
/// CNAME chain through our zones that ends at a missing name), SERVFAIL, and the rest.
const ANSWER_RCODES: [&str; 4] = ["NOERROR", "NXDOMAIN", "SERVFAIL", "other"];

/// Which of [`ANSWER_RCODES`] a reply's rcode (the header's four bits) is.
pub fn rcode_slot(rcode: u16) -> usize {
    match rcode {
        0 => 0,
        3 => 1,
        2 => 2,
        _ => 3,
    }
}

/// Which of [`TYPES`] a query type is.
pub fn type_slot(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        _ => 2,
    }
}

#[repr(align(64))]
#[derive(Debug, Default)]
struct Shard([AtomicU64; TYPES.len() * ANSWER_RCODES.len()]);

/// One (name, target) pair's answers, by query type and rcode.
#[derive(Debug)]
pub struct TargetCounter {
    shards: Box<[Shard]>,
}

impl Default for TargetCounter {
    fn default() -> Self {
        TargetCounter {
            shards: (0..shards()).map(|_| Shard::default()).collect(),
        }
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % shards();
}

impl TargetCounter {
    /// Count one answer of the type and rcode slots given.
    pub fn hit(&self, type_slot: usize, rcode_slot: usize) {
        let shard = MY_SHARD.with(|s| *s);
        if let Some(c) = self
            .shards
            .get(shard)
            .and_then(|s| s.0.get(type_slot * ANSWER_RCODES.len() + rcode_slot))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn total(&self, type_slot: usize, rcode_slot: usize) -> u64 {
        let at = type_slot * ANSWER_RCODES.len() + rcode_slot;
        self.shards
            .iter()
            .map(|s| s.0.get(at).map_or(0, |c| c.load(Ordering::Relaxed)))
            .sum()
    }
}

/// Count one NOERROR answer of `steered` whose first chosen target is `target` (an index into
/// the policy's targets): the UDP fast path's (it only answers NOERROR). A `Steered` not yet
/// published has no counters and is not counted.
pub fn count(steered: &Steered, target: usize, qtype: u16) {
    count_rcode(steered, target, qtype, 0);
}

/// [`count`] with the reply's final rcode (the full path counts once the chain is resolved).
pub fn count_rcode(steered: &Steered, target: usize, qtype: u16, rcode: u16) {
    if let Some(c) = steered.counters.get().and_then(|c| c.get(target)) {
        c.hit(type_slot(qtype), rcode_slot(rcode));
    }
}

/// The registry of every (name, target) pair's counter.
#[derive(Debug, Default)]
pub struct AnswerCounters {
    pairs: Mutex<BTreeMap<(String, String), Arc<TargetCounter>>>,
}

impl AnswerCounters {
    /// Give every steered name of `snapshot` that has none yet its counters (once per
    /// compiled `Steered`; unchanged ones shared with the last snapshot keep theirs).
    pub fn attach(&self, snapshot: &Snapshot) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        for steered in snapshot.steered.values() {
            if steered.counters.get().is_some() {
                continue;
            }
            let name = steered.policy.name.to_string();
            let counters: Box<[Arc<TargetCounter>]> = steered
                .policy
                .targets
                .iter()
                .map(|t| {
                    pairs
                        .entry((name.clone(), t.id.clone()))
                        .or_default()
                        .clone()
                })
                .collect();
            let _ = steered.counters.set(counters);
        }
    }

    /// The Prometheus text of `steerdns_answers_total`.
    pub fn render(&self) -> String {
        let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP steerdns_answers_total Answers to steered names over UDP and TCP, by name, \
             chosen target (the first, when several are chosen), query type (A, AAAA, other) and \
             the reply's rcode (NOERROR, NXDOMAIN, SERVFAIL, other; NOERROR always, the rest once seen).\n\
             # TYPE steerdns_answers_total counter\n",
        );
        for ((name, target), counter) in pairs.iter() {
            for (slot, qtype) in TYPES.iter().enumerate() {
                for (rslot, rcode) in ANSWER_RCODES.iter().enumerate() {
                    let n = counter.total(slot, rslot);
                    if rslot > 0 && n == 0 {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "steerdns_answers_total{{name=\"{}\",target=\"{}\",type=\"{qtype}\",rcode=\"{rcode}\"}} {n}",
                        escape(name),
                        escape(target),
                    );
                }
            }
        }
        out
    }
}

/// Replies by rcode (the header's four bits; BADVERS and the like live in the OPT record
/// and count as the header says), for one transport.
#[derive(Debug, Default)]
pub struct ReplyCodes([AtomicU64; 16]);

/// Rcode names for the metric's label (RFC 1035, 2136).
const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

impl ReplyCodes {
    /// Count one reply (its wire bytes).
    pub fn add_reply(&self, reply: &[u8]) {
        if let Some(flags) = reply.get(3) {
            self.0[usize::from(flags & 0x0f)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Add a batch's counts (indexed by rcode), one atomic add per rcode that occurred.
    pub fn add_batch(&self, counts: &[u64; 16]) {
        for (c, n) in self.0.iter().zip(counts).filter(|(_, n)| **n > 0) {
            c.fetch_add(*n, Ordering::Relaxed);
        }
    }

    /// `steerdns_replies_total` lines for `transport`: the six common rcodes always, others
    /// once seen.
    pub fn render(&self, transport: &str, out: &mut String) {
        for (code, c) in self.0.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if code > 5 && n == 0 {
                continue;
            }
            let name = rcode_name(code as u16);
            let _ = writeln!(
                out,
                "steerdns_replies_total{{transport=\"{transport}\",rcode=\"{name}\"}} {n}"
            );
        }
    }
}

/// An rcode's name as the metrics write it (`NOERROR`, `NXDOMAIN`, …, `RCODE<n>`).
pub fn rcode_name(code: u16) -> std::borrow::Cow<'static, str> {
    RCODES
        .get(usize::from(code))
        .map_or_else(|| format!("RCODE{code}").into(), |n| (*n).into())
}

/// The rcode of a reply's wire bytes (0 if it is too short to say).
pub fn rcode_of(reply: &[u8]) -> usize {
    reply.get(3).map_or(0, |f| usize::from(f & 0x0f))
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_across_threads() {
        let c = Arc::new(TargetCounter::default());
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.hit(0, 0);
                    }
                    c.hit(2, 0);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((c.total(0, 0), c.total(1, 0), c.total(2, 0)), (6000, 0, 6));
    }

    #[test]
    fn answers_by_rcode_render_noerror_always_and_the_rest_once_seen() {
        let c = TargetCounter::default();
        c.hit(0, 0);
        c.hit(1, rcode_slot(3));
        c.hit(1, rcode_slot(9));
        assert_eq!(
            [rcode_slot(0), rcode_slot(2), rcode_slot(3), rcode_slot(5)],
            [0, 2, 1, 3]
        );
        assert_eq!((c.total(0, 0), c.total(1, 1), c.total(1, 3)), (1, 1, 1));
        assert_eq!((c.total(0, 1), c.total(2, 0)), (0, 0));
    }

    #[test]
    fn query_types_and_label_values() {
        assert_eq!(
            [type_slot(1), type_slot(28), type_slot(5), type_slot(255)],
            [0, 1, 2, 2]
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn replies_by_rcode() {
        let codes = ReplyCodes::default();
        codes.add_reply(&[0, 0, 0x84, 0x03]);
        let mut batch = [0u64; 16];
        batch[rcode_of(&[0, 0, 0x84, 0x00])] += 2;
        batch[rcode_of(&[0, 0, 0x84, 0x09])] += 1;
        codes.add_batch(&batch);
        let mut out = String::new();
        codes.render("udp", &mut out);
        assert!(
            out.contains("{transport=\"udp\",rcode=\"NOERROR\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("rcode=\"NXDOMAIN\"} 1\n"), "{out}");
        assert!(out.contains("rcode=\"REFUSED\"} 0\n"), "{out}");
        assert!(out.contains("rcode=\"NOTAUTH\"} 1\n"), "{out}");
        assert!(!out.contains("YXDOMAIN"), "{out}");
    }
}
