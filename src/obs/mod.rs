//! Metrics about the control plane that no single module owns: health as it changes
//! ([`health`]: transitions, per-location probe verdicts) and the stores' latency and errors
//! (kept by [`crate::store::timed`], rendered here). One [`Obs`] per server, held by
//! `snapshot::Published`, so every part that publishes or reads health reaches the same one.
//! The DNS data plane's own counters stay in `dns` (`counters`, `query_log`). Depends on
//! `health` and `store`; nothing here runs on the query path.

pub mod health;

use std::sync::Arc;

use crate::store::timed::StoreMetrics;

#[derive(Debug, Default)]
pub struct Obs {
    pub health: health::HealthMetrics,
    pub store: Arc<StoreMetrics>,
}

impl Obs {
    /// An `Obs` counting store calls into `store` (the registry the stores were wrapped with).
    pub fn with_store(store: Arc<StoreMetrics>) -> Self {
        Self {
            health: health::HealthMetrics::default(),
            store,
        }
    }

    /// Every family, Prometheus text.
    pub fn render(&self, out: &mut String) {
        self.health.render(out);
        self.store.render(out);
    }
}
