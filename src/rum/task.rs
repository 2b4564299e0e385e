//! The control-side loop of resolver mapping: every second, drain the nonce log into the
//! sessions, forget what left the window, build the map and hand it to the controller.
//!
//! A new map is published at once when it steers some resolver differently; when only its
//! numbers moved (shares, session counts: what explain shows), at most once a minute, so a
//! steady stream of sessions does not make a new snapshot generation every second. Depends
//! on `control` (the `Controller`) and the rest of `rum`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::nonce_log::NonceLog;
use super::resolver_map::{ResolverMapConfig, ResolverSessions};
use crate::control::Controller;

/// How often the log is drained and the map rebuilt.
pub const EVERY: Duration = Duration::from_secs(1);
/// How often a map whose steering did not change is republished for its numbers.
pub const NUMBERS_EVERY: Duration = Duration::from_secs(60);

/// The sessions both sides feed: the HTTP side calls `record_session` on it.
pub type SharedSessions = Arc<Mutex<ResolverSessions>>;

/// Run the loop until `cancel`.
pub fn spawn(
    controller: Arc<Controller>,
    sessions: SharedSessions,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut numbers_at = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            let Some((log, config)) = controller.resolver_mapping() else {
                continue;
            };
            let (c, s) = (controller.clone(), sessions.clone());
            let done = tokio::task::spawn_blocking(move || {
                tick(&c, &log, &s, &config, numbers_at, SystemTime::now())
            })
            .await;
            if let Ok(Some(at)) = done {
                numbers_at = at;
            }
        }
    })
}

/// One round; returns when it published, if it did.
pub fn tick(
    controller: &Controller,
    log: &NonceLog,
    sessions: &Mutex<ResolverSessions>,
    config: &ResolverMapConfig,
    published_at: Instant,
    now: SystemTime,
) -> Option<Instant> {
    let map = {
        let mut sessions = sessions.lock().unwrap_or_else(PoisonError::into_inner);
        log.drain(|sighting| {
            sessions.record_sighting(sighting);
        });
        sessions.prune(now, config);
        sessions.build(now, config)
    };
    let current = controller.published().load_full();
    let current = &current.resolver_map;
    let due = !map.same_steering(current)
        || (map != **current && published_at.elapsed() >= NUMBERS_EVERY);
    if !due {
        return None;
    }
    controller.set_resolver_map(map);
    Some(Instant::now())
}
