//! Fleet mode's probe sharing: every node appends the probe results it receives to the
//! shared stream in Redis, and feeds the results the other nodes appended into its own
//! tracker. Every node therefore sees the same results and computes the same verdict from
//! them (the tracker is pure given its inputs; there is no leader to elect or lose), and an
//! agent may report to any node.
//!
//! While Redis is away the results this node receives wait in a bounded buffer
//! ([`BUFFER`]; the oldest are dropped first and counted in `steerdns_store_dropped_writes_total`)
//! and are appended when it returns; meanwhile they count here at once, so this node's own
//! health view keeps moving. Depends on `store::redis`, `monitor`, `health`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::tracker::Observation;
use crate::monitor::{Monitor, Tee};
use crate::store::redis::{RedisStore, SharedProbe};

/// Results waiting for Redis, at most.
pub const BUFFER: usize = 100_000;
/// How often the buffer is flushed and the stream read.
const EVERY: Duration = Duration::from_millis(100);
/// How far back a starting node reads the stream, so it starts with the fleet's recent view.
const CATCH_UP: Duration = Duration::from_secs(300);
/// Results appended per pipeline.
const BATCH: usize = 2048;

/// The tee the monitor copies local results into, and its drop counter.
pub fn tee() -> (Tee, mpsc::Receiver<Observation>) {
    let (tx, rx) = mpsc::channel(crate::monitor::QUEUE);
    ((tx, Arc::new(AtomicU64::new(0))), rx)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Until cancelled: flush local results to the stream, feed other nodes' results in.
pub async fn run(
    store: Arc<RedisStore>,
    node: String,
    mut local: mpsc::Receiver<Observation>,
    tee_dropped: Arc<AtomicU64>,
    monitor: Monitor,
    cancel: CancellationToken,
) {
    let mut buffer: VecDeque<SharedProbe> = VecDeque::new();
    let since = SystemTime::now()
        .checked_sub(CATCH_UP)
        .unwrap_or(UNIX_EPOCH);
    let mut after = format!("{}-0", unix_ms(since));
    let remote = monitor.remote_sender();
    let status = store.status.clone();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut incoming = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Take what the monitor teed, bounded.
        while let Ok(o) = local.try_recv() {
            incoming.push(o);
        }
        for o in incoming.drain(..) {
            if buffer.len() >= BUFFER {
                buffer.pop_front();
                status.dropped_writes.fetch_add(1, Ordering::Relaxed);
            }
            buffer.push_back(SharedProbe {
                node: node.clone(),
                target: o.target,
                agent: o.agent,
                at_ms: unix_ms(o.at),
                ok: o.ok,
                latency_ms: o.latency_ms,
            });
        }
        let teed_away = tee_dropped.swap(0, Ordering::Relaxed);
        status
            .dropped_writes
            .fetch_add(teed_away, Ordering::Relaxed);
        while !buffer.is_empty() {
            let n = buffer.len().min(BATCH);
            let batch: Vec<SharedProbe> = buffer.range(..n).cloned().collect();
            if store.append_probes(&batch).await.is_err() {
                break;
            }
            buffer.drain(..n);
        }
        status
            .buffered_writes
            .store(buffer.len() as u64, Ordering::Relaxed);
        // Other nodes' results.
        loop {
            let Ok((probes, next)) = store.read_probes(&after, BATCH).await else {
                break;
            };
            let done = probes.len() < BATCH;
            after = next;
            for p in probes.into_iter().filter(|p| p.node != node) {
                let o = Observation {
                    target: p.target,
                    agent: p.agent,
                    at: UNIX_EPOCH + Duration::from_millis(p.at_ms),
                    ok: p.ok,
                    latency_ms: p.latency_ms,
                };
                if remote.send(o).await.is_err() {
                    return;
                }
            }
            if done {
                break;
            }
        }
    }
}
