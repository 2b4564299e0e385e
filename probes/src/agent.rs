//! The schedule: every check of every target in its own task, on its own interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::check::Prober;
use crate::{Check, ProbeResult, TargetChecks};

/// Counters of a running agent, readable while it runs.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Check runs completed.
    pub runs: AtomicU64,
    /// Results handed to the channel.
    pub sent: AtomicU64,
    /// Results dropped because the channel was full.
    pub dropped: AtomicU64,
}

impl AgentStats {
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Run every check of every target on its own interval, each in its own task, sending results.
/// A slow endpoint cannot stall other checks; no check runs past its timeout; if the channel is
/// full the result is dropped and counted (never block the schedule). Stops when `cancel` is
/// cancelled (or when the receiver is gone).
pub fn spawn_agent(
    agent: &str,
    targets: Vec<TargetChecks>,
    tx: mpsc::Sender<ProbeResult>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    spawn_agent_with_stats(agent, targets, tx, cancel, Arc::new(AgentStats::default()))
}

/// [`spawn_agent`], with counters the caller can read while the agent runs.
pub fn spawn_agent_with_stats(
    agent: &str,
    targets: Vec<TargetChecks>,
    tx: mpsc::Sender<ProbeResult>,
    cancel: CancellationToken,
    stats: Arc<AgentStats>,
) -> JoinHandle<()> {
    let agent: Arc<str> = Arc::from(agent);
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for target in targets {
            let name: Arc<str> = Arc::from(target.target.as_str());
            for check in target.checks {
                tasks.spawn(check_loop(
                    name.clone(),
                    agent.clone(),
                    check,
                    tx.clone(),
                    cancel.clone(),
                    stats.clone(),
                ));
            }
        }
        drop(tx);
        let checks = tasks.len();
        tracing::info!(agent = %agent, checks, "probe agent started");
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(agent = %agent, error = %e, "a check task failed");
            }
        }
        tracing::info!(
            agent = %agent,
            runs = stats.runs(),
            sent = stats.sent(),
            dropped = stats.dropped(),
            "probe agent stopped"
        );
    })
}

async fn check_loop(
    target: Arc<str>,
    agent: Arc<str>,
    check: Check,
    tx: mpsc::Sender<ProbeResult>,
    cancel: CancellationToken,
    stats: Arc<AgentStats>,
) {
    // Build the prober (an HTTP client loads its TLS roots) before the first tick, so that the
    // time it takes does not shorten the first interval.
    let interval = check.interval;
    let prober = Prober::new(check);
    let mut ticker = tokio::time::interval(interval);
    // A run always ends before the next tick (timeout < interval); if the process was stalled,
    // skip the missed ticks instead of firing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            result = prober.probe(&target, &agent) => result,
        };
        stats.runs.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(result) {
            Ok(()) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(result)) => {
                let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first drop and then every 100th, not every one.
                if dropped == 1 || dropped % 100 == 0 {
                    tracing::warn!(
                        target = %result.target,
                        check = %result.check,
                        dropped,
                        "result channel full: probe result dropped"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}
