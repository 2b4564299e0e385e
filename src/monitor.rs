//! The health monitor: probe results in, measured health and probe latencies out.
//!
//! Results arrive on a bounded channel (from the in-process agent or the ingest API), go into
//! the [`Tracker`], and every tick the tracker's verdicts that changed are handed to the
//! [`Controller`], which recompiles only the policies naming those targets. Many results
//! therefore cost at most one rebuild per tick. Latency windows are refreshed less often, for
//! the performance step. Depends on `health`, `control`.
//!
//! In a fleet, results received here are also handed to a tee (`crate::fleet` appends them
//! to the shared stream), and results other nodes received come back in through
//! [`Monitor::remote_sender`], which does not tee them again: every node's tracker sees every
//! result once, so every node computes the same verdict from the same results.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::control::Controller;
use crate::health::State;
use crate::health::tracker::{Observation, Tracker};

/// How often verdicts are re-evaluated: a bound on the detection-to-DNS delay.
const TICK: Duration = Duration::from_millis(100);
/// How often probe latencies are turned into performance windows.
const PERF_EVERY: Duration = Duration::from_secs(10);
/// Results waiting for the monitor; beyond this the ingest API answers 503 and agents retry.
pub const QUEUE: usize = 65_536;

/// One probe result on the wire (`POST /api/v1/probe-results`), as agents send it.
#[derive(Debug, Clone, Deserialize)]
pub struct WireResult {
    pub target: String,
    #[serde(default)]
    pub check: String,
    pub agent: String,
    pub at_unix_ms: u64,
    pub ok: bool,
    pub latency_ms: f64,
    #[serde(default)]
    pub error: Option<String>,
}

/// Run the probe checks of `dir` inside this process as agent `location`, feeding `monitor`
/// directly (no HTTP): the single-box setup.
pub fn spawn_local_agent(
    dir: &std::path::Path,
    location: &str,
    monitor: &Monitor,
    cancel: CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let targets = steerdns_probes::load_targets(dir).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    info!(
        targets = targets.len(),
        location, "running probes in-process"
    );
    let (tx, mut rx) = mpsc::channel::<steerdns_probes::ProbeResult>(QUEUE);
    let agent = steerdns_probes::spawn_agent(location, targets, tx, cancel);
    let to_monitor = monitor.sender();
    let forward = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let o = Observation {
                target: r.target,
                agent: r.agent,
                at: UNIX_EPOCH + Duration::from_millis(r.at_unix_ms),
                ok: r.ok,
                latency_ms: r.latency_ms,
            };
            if to_monitor.send(o).await.is_err() {
                return;
            }
        }
    });
    Ok(vec![agent, forward])
}

impl WireResult {
    pub fn observation(&self) -> Observation {
        Observation {
            target: self.target.clone(),
            agent: self.agent.clone(),
            at: UNIX_EPOCH + Duration::from_millis(self.at_unix_ms),
            ok: self.ok,
            latency_ms: self.latency_ms,
        }
    }
}

/// Where results go in, and where the API reads per-location detail.
#[derive(Clone)]
pub struct Monitor {
    tx: mpsc::Sender<Observation>,
    remote: mpsc::Sender<Observation>,
    tracker: Arc<Mutex<Tracker>>,
}

impl Monitor {
    pub fn sender(&self) -> mpsc::Sender<Observation> {
        self.tx.clone()
    }

    /// Where results other fleet nodes received go in (not teed back to the fleet).
    pub fn remote_sender(&self) -> mpsc::Sender<Observation> {
        self.remote.clone()
    }

    /// (target, agent, state, reason) per probed location.
    pub fn details(&self) -> Vec<(String, String, State, String)> {
        self.tracker.lock().map(|t| t.details()).unwrap_or_default()
    }
}

/// Start the monitor task.
pub fn spawn(
    tracker: Tracker,
    controller: Arc<Controller>,
    cancel: CancellationToken,
) -> (Monitor, tokio::task::JoinHandle<()>) {
    spawn_with(tracker, controller, cancel, None)
}

/// Where a fleet node copies the results it receives, and the count of copies dropped
/// because it was full (ingest never waits for the fleet).
pub type Tee = (mpsc::Sender<Observation>, Arc<std::sync::atomic::AtomicU64>);

/// [`spawn`], handing every locally received result to `tee` as well (fleet mode).
pub fn spawn_with(
    tracker: Tracker,
    controller: Arc<Controller>,
    cancel: CancellationToken,
    tee: Option<Tee>,
) -> (Monitor, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (remote, remote_rx) = mpsc::channel(QUEUE);
    let tracker = Arc::new(Mutex::new(tracker));
    let monitor = Monitor {
        tx,
        remote,
        tracker: tracker.clone(),
    };
    let inputs = Inputs {
        rx,
        remote_rx,
        // Keeps the remote channel open, so an idle fleet input never reads as closed.
        _remote: monitor.remote.clone(),
        tee,
    };
    let task = tokio::spawn(run(inputs, tracker, controller, cancel));
    (monitor, task)
}

struct Inputs {
    rx: mpsc::Receiver<Observation>,
    remote_rx: mpsc::Receiver<Observation>,
    _remote: mpsc::Sender<Observation>,
    tee: Option<Tee>,
}

async fn run(
    inputs: Inputs,
    tracker: Arc<Mutex<Tracker>>,
    controller: Arc<Controller>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_perf = SystemTime::now();
    let (mut batch, mut remote_batch) = (Vec::new(), Vec::new());
    let Inputs {
        mut rx,
        mut remote_rx,
        _remote,
        tee,
    } = inputs;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            n = rx.recv_many(&mut batch, 4096) => {
                if n == 0 {
                    return;
                }
                let now = SystemTime::now();
                if let Some((tee, dropped)) = &tee {
                    for o in &batch {
                        if tee.try_send(o.clone()).is_err() {
                            dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                if let Ok(mut t) = tracker.lock() {
                    for o in batch.drain(..) {
                        t.ingest(&o, now);
                    }
                }
            }
            n = remote_rx.recv_many(&mut remote_batch, 4096) => {
                if n == 0 {
                    continue;
                }
                let now = SystemTime::now();
                if let Ok(mut t) = tracker.lock() {
                    for o in remote_batch.drain(..) {
                        t.ingest(&o, now);
                    }
                }
            }
            _ = tick.tick() => {
                let now = SystemTime::now();
                let (transitions, perf) = match tracker.lock() {
                    Ok(mut t) => {
                        let transitions = t.evaluate(now);
                        controller.published().obs().health.sync_locations(t.verdicts());
                        let due = now.duration_since(last_perf).unwrap_or_default() >= PERF_EVERY;
                        (transitions, due.then(|| t.perf()))
                    }
                    Err(_) => {
                        warn!("health tracker lock poisoned; measured health is frozen");
                        continue;
                    }
                };
                for t in &transitions {
                    info!(target = %t.target, from = %t.from, to = %t.to, reason = %t.reason, "health transition");
                }
                if !transitions.is_empty() {
                    let c = controller.clone();
                    let _ = tokio::task::spawn_blocking(move || c.apply_measured(&transitions)).await;
                }
                if let Some(perf) = perf {
                    last_perf = now;
                    let c = controller.clone();
                    let _ = tokio::task::spawn_blocking(move || c.set_perf(perf)).await;
                }
            }
        }
    }
}
