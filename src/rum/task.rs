//! The control-side loop of resolver mapping: every second, drain the nonce log (DNS side)
//! and the collector's new sessions (accepted beacons, HTTP side) into the join, forget what
//! left the window, build the map and hand it to the controller.
//!
//! A new map is published at once when it steers some resolver differently; when only its
//! numbers moved (shares, session counts: what explain shows), at most once a minute, so a
//! steady stream of sessions does not make a new snapshot generation every second. Depends
//! on `control` (the `Controller`) and the rest of `rum`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ipnet::IpNet;

use super::collector::{Collector, SESSION_LOG};
use super::nonce_log::NonceLog;
use super::resolver_map::{ResolverMapConfig, ResolverSessions};
use crate::control::Controller;

/// How often the log is drained and the map rebuilt.
pub const EVERY: Duration = Duration::from_secs(1);
/// How often a map whose steering did not change is republished for its numbers.
pub const NUMBERS_EVERY: Duration = Duration::from_secs(60);

/// The join both sides feed (shared so that `/metrics` and tests can read its counters).
pub type SharedSessions = Arc<Mutex<ResolverSessions>>;

/// Run the loop until `cancel`. `collector`: where accepted beacons' sessions come from
/// (`None`: no beacon side, so nothing ever joins).
pub fn spawn(
    controller: Arc<Controller>,
    sessions: SharedSessions,
    collector: Option<Arc<Collector>>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut numbers_at = Instant::now();
        let mut next_session = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            let Some((log, config)) = controller.resolver_mapping() else {
                continue;
            };
            let (c, s, from) = (controller.clone(), sessions.clone(), collector.clone());
            let done = tokio::task::spawn_blocking(move || {
                let round = Round {
                    controller: &c,
                    log: &log,
                    collector: from.as_deref(),
                    sessions: &s,
                    config: &config,
                };
                round.run(next_session, numbers_at, SystemTime::now())
            })
            .await;
            if let Ok((next, published)) = done {
                next_session = next;
                numbers_at = published.unwrap_or(numbers_at);
            }
        }
    })
}

/// What one round reads and writes.
pub struct Round<'a> {
    pub controller: &'a Controller,
    pub log: &'a NonceLog,
    pub collector: Option<&'a Collector>,
    pub sessions: &'a Mutex<ResolverSessions>,
    pub config: &'a ResolverMapConfig,
}

impl Round<'_> {
    /// Feed the join from `next_session` on; returns the next session to read and when it
    /// published, if it did.
    pub fn run(
        &self,
        next_session: u64,
        published_at: Instant,
        now: SystemTime,
    ) -> (u64, Option<Instant>) {
        let (next, map) = self.feed_and_build(next_session, now);
        let current = self.controller.published().load_full();
        let current = &current.resolver_map;
        let due = !map.same_steering(current)
            || (map != **current && published_at.elapsed() >= NUMBERS_EVERY);
        if !due {
            return (next, None);
        }
        self.controller.set_resolver_map(map);
        (next, Some(Instant::now()))
    }

    fn feed_and_build(
        &self,
        next_session: u64,
        now: SystemTime,
    ) -> (u64, super::resolver_map::ResolverMap) {
        let (new, next) = match self.collector {
            Some(c) => c.sessions_since(next_session, SESSION_LOG),
            None => (Vec::new(), next_session),
        };
        let config = self.config;
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // DNS first: a beacon follows its init fetch, so its nonce is usually in the log.
        self.log.drain(|sighting| {
            sessions.record_sighting(sighting);
        });
        for s in new {
            let net = IpNet::new(s.net.addr(), s.net.prefix_len())
                .unwrap_or_else(|_| IpNet::from(s.net.addr()));
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(s.unix_secs);
            sessions.record_session(&s.nonce.to_string(), net, s.country, s.asn, at);
        }
        sessions.prune(now, config);
        (next, sessions.build(now, config))
    }
}
