//! Store latency and errors at the store seam: `steerdns_store_op_seconds{store,op}` (a
//! histogram) and `steerdns_store_errors_total{store,op}`.
//!
//! Every call through the [`PolicyStore`] and [`MeasurementStore`] traits is timed by the
//! decorators [`timed_policies`] and [`timed_measurements`], whatever is behind them: the
//! policy directory (`files`), the single node's override state (`memory`, written through
//! to a small file) or the fleet's Redis (`redis`). The fleet's own Redis calls outside those
//! traits (probe results, resolver-map inputs, RUM buckets) are timed by the Redis store with
//! [`StoreMetrics::observe`]. Labels come from fixed sets; the counters are atomics, no lock.
//! Buckets suit Redis on a LAN: 0.5 ms to 1 s. Depends on `store` (the traits) only.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::store::{
    CasError, Durable, Expect, FeedGuard, MeasurementStore, PolicyStore, StoreError,
    StoredOverride, StoredPolicy, Version,
};

/// Upper bounds of the histogram's buckets, in seconds (`+Inf` follows).
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Which store a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Redis,
    Files,
    Memory,
}

const STORES: [&str; 3] = ["redis", "files", "memory"];

/// What a call did: the trait methods, then the fleet's stream and bucket calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List,
    Get,
    Current,
    PutIf,
    DeleteIf,
    History,
    Version,
    Load,
    SetOverride,
    SetHalted,
    AppendProbes,
    ReadProbes,
    AppendJoins,
    ReadJoins,
    AddRum,
    ReadRum,
}

const OPS: [&str; 16] = [
    "list",
    "get",
    "current",
    "put_if",
    "delete_if",
    "history",
    "version",
    "load",
    "set_override",
    "set_halted",
    "append_probes",
    "read_probes",
    "append_joins",
    "read_joins",
    "add_rum",
    "read_rum",
];

#[derive(Debug, Default)]
struct Series {
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    errors: AtomicU64,
}

impl Series {
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// Every (store, op) series, preallocated: no lock, no allocation to observe.
#[derive(Debug)]
pub struct StoreMetrics {
    series: Box<[Series]>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            series: (0..STORES.len() * OPS.len())
                .map(|_| Series::default())
                .collect(),
        }
    }
}

impl StoreMetrics {
    fn series(&self, store: Store, op: Op) -> Option<&Series> {
        self.series.get(store as usize * OPS.len() + op as usize)
    }

    /// Count one call that took `seconds`; `failed`: it returned an error (a refused
    /// compare-and-set is an answer, not an error).
    pub fn observe(&self, store: Store, op: Op, seconds: f64, failed: bool) {
        let Some(s) = self.series(store, op) else {
            return;
        };
        let at = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[at].fetch_add(1, Ordering::Relaxed);
        s.sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        if failed {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Time `call`, counting it under (store, op); `failed` says whether its result is an
    /// error.
    pub fn time<T>(
        &self,
        store: Store,
        op: Op,
        failed: impl Fn(&T) -> bool,
        call: impl FnOnce() -> T,
    ) -> T {
        let started = Instant::now();
        let result = call();
        self.observe(store, op, started.elapsed().as_secs_f64(), failed(&result));
        result
    }

    /// The two families; series that never saw a call are left out.
    pub fn render(&self, out: &mut String) {
        let used = || {
            STORES.iter().enumerate().flat_map(move |(si, store)| {
                OPS.iter().enumerate().filter_map(move |(oi, op)| {
                    let s = &self.series[si * OPS.len() + oi];
                    (s.count() > 0).then_some((*store, *op, s))
                })
            })
        };
        out.push_str(
            "# HELP steerdns_store_op_seconds Time of calls to the policy and measurement stores (and the fleet's Redis), by store (redis, files, memory) and operation.\n\
             # TYPE steerdns_store_op_seconds histogram\n",
        );
        for (store, op, s) in used() {
            let mut cumulative = 0;
            for (i, bucket) in s.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "steerdns_store_op_seconds_bucket{{store=\"{store}\",op=\"{op}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "steerdns_store_op_seconds_sum{{store=\"{store}\",op=\"{op}\"}} {:.9}\n\
                 steerdns_store_op_seconds_count{{store=\"{store}\",op=\"{op}\"}} {cumulative}",
                s.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
            );
        }
        out.push_str(
            "# HELP steerdns_store_errors_total Store calls that failed (unreachable, timed out, I/O), by store and operation.\n\
             # TYPE steerdns_store_errors_total counter\n",
        );
        for (store, op, s) in used() {
            let _ = writeln!(
                out,
                "steerdns_store_errors_total{{store=\"{store}\",op=\"{op}\"}} {}",
                s.errors.load(Ordering::Relaxed)
            );
        }
    }
}

/// `inner`, with every call timed into `metrics` as `store`.
pub fn timed_policies(
    inner: Arc<dyn PolicyStore>,
    store: Store,
    metrics: &Arc<StoreMetrics>,
) -> Arc<dyn PolicyStore> {
    Arc::new(Timed {
        inner,
        store,
        metrics: metrics.clone(),
    })
}

/// `inner`, with every call timed into `metrics` as `store`.
pub fn timed_measurements(
    inner: Arc<dyn MeasurementStore>,
    store: Store,
    metrics: &Arc<StoreMetrics>,
) -> Arc<dyn MeasurementStore> {
    Arc::new(Timed {
        inner,
        store,
        metrics: metrics.clone(),
    })
}

struct Timed<S: ?Sized> {
    inner: Arc<S>,
    store: Store,
    metrics: Arc<StoreMetrics>,
}

fn is_err<T, E>(r: &Result<T, E>) -> bool {
    r.is_err()
}

/// A precondition that failed is the store answering, not failing.
fn cas_failed<T>(r: &Result<T, CasError>) -> bool {
    matches!(r, Err(CasError::Unavailable(_) | CasError::Store(_)))
}

impl<S: PolicyStore + ?Sized> PolicyStore for Timed<S> {
    fn source_of(&self, key: &str) -> String {
        self.inner.source_of(key)
    }
    fn list(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        self.metrics
            .time(self.store, Op::List, is_err, || self.inner.list())
    }
    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.metrics
            .time(self.store, Op::Get, is_err, || self.inner.get(key))
    }
    fn current(&self, key: &str) -> Result<Option<String>, CasError> {
        self.metrics.time(self.store, Op::Current, cas_failed, || {
            self.inner.current(key)
        })
    }
    fn put_if(&self, key: &str, text: &str, expect: &Expect) -> Result<String, CasError> {
        self.metrics.time(self.store, Op::PutIf, cas_failed, || {
            self.inner.put_if(key, text, expect)
        })
    }
    fn delete_if(&self, key: &str, expect: &Expect) -> Result<(), CasError> {
        self.metrics.time(self.store, Op::DeleteIf, cas_failed, || {
            self.inner.delete_if(key, expect)
        })
    }
    fn history(&self, key: &str) -> Result<Vec<Version>, StoreError> {
        self.metrics
            .time(self.store, Op::History, is_err, || self.inner.history(key))
    }
    fn version(&self, key: &str, id: u64) -> Result<Option<String>, StoreError> {
        self.metrics.time(self.store, Op::Version, is_err, || {
            self.inner.version(key, id)
        })
    }
    fn watch(&self, tx: tokio::sync::mpsc::Sender<()>) -> Option<FeedGuard> {
        self.inner.watch(tx)
    }
}

impl<S: MeasurementStore + ?Sized> MeasurementStore for Timed<S> {
    fn load(&self) -> Result<Durable, StoreError> {
        self.metrics
            .time(self.store, Op::Load, is_err, || self.inner.load())
    }
    fn set_override(&self, target: &str, value: Option<StoredOverride>) -> Result<(), StoreError> {
        self.metrics.time(self.store, Op::SetOverride, is_err, || {
            self.inner.set_override(target, value)
        })
    }
    fn set_halted(&self, target: &str, halted: bool) -> Result<(), StoreError> {
        self.metrics.time(self.store, Op::SetHalted, is_err, || {
            self.inner.set_halted(target, halted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StateFile;

    #[test]
    fn calls_land_in_their_bucket_and_errors_count() {
        let m = StoreMetrics::default();
        m.observe(Store::Redis, Op::List, 0.0004, false);
        m.observe(Store::Redis, Op::List, 0.003, true);
        m.observe(Store::Redis, Op::List, 5.0, false);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "steerdns_store_op_seconds_bucket{store=\"redis\",op=\"list\",le=\"0.0005\"} 1\n",
            "steerdns_store_op_seconds_bucket{store=\"redis\",op=\"list\",le=\"0.0025\"} 1\n",
            "steerdns_store_op_seconds_bucket{store=\"redis\",op=\"list\",le=\"0.005\"} 2\n",
            "steerdns_store_op_seconds_bucket{store=\"redis\",op=\"list\",le=\"1\"} 2\n",
            "steerdns_store_op_seconds_bucket{store=\"redis\",op=\"list\",le=\"+Inf\"} 3\n",
            "steerdns_store_op_seconds_count{store=\"redis\",op=\"list\"} 3\n",
            "steerdns_store_errors_total{store=\"redis\",op=\"list\"} 1\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        assert!(
            !out.contains("op=\"get\""),
            "unused series are left out:\n{out}"
        );
    }

    #[test]
    fn the_decorator_times_a_real_store() {
        let metrics = Arc::new(StoreMetrics::default());
        let store = timed_measurements(Arc::new(StateFile::memory()), Store::Memory, &metrics);
        store.set_halted("cdn-a", true).unwrap();
        assert!(store.load().unwrap().halted_ramps.contains("cdn-a"));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("steerdns_store_op_seconds_count{store=\"memory\",op=\"load\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("steerdns_store_errors_total{store=\"memory\",op=\"set_halted\"} 0\n"),
            "{out}"
        );
    }
}
