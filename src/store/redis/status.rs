//! Whether the fleet's Redis answers: one flag the DNS side can read without touching Redis.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::{info, warn};

/// Whether the shared store answers, for `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct StoreStatus {
    up: AtomicBool,
    /// Calls that failed or timed out.
    pub failures: AtomicU64,
    /// Buffered writes (probe results) dropped because the buffer was full.
    pub dropped_writes: AtomicU64,
    /// Writes waiting in the buffer for Redis to come back.
    pub buffered_writes: AtomicU64,
    last_error: Mutex<String>,
    /// Signalled when the store comes back, so the change feed re-lists the policies at once
    /// instead of at its next tick (until then `/readyz` would still say stale).
    pub(super) came_back: tokio::sync::Notify,
}

impl StoreStatus {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    pub(super) fn ok(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            info!("the shared store (Redis) is reachable");
            // One waiter (the feed); a stored permit covers a feed that is busy connecting.
            self.came_back.notify_one();
        }
    }

    pub(super) fn failed(&self, reason: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            reason.clone_into(&mut e);
        }
        if self.up.swap(false, Ordering::AcqRel) {
            warn!(
                reason,
                "the shared store (Redis) is unreachable: DNS keeps answering from the last table; edits fail with 503"
            );
        }
    }
}
