//! The control-side loop of resolver mapping: every second, drain the nonce log (DNS side)
//! and the collector's new sessions (accepted beacons, HTTP side) into the join, forget what
//! left the window, build the map and hand it to the controller.
//!
//! A new map is published at once when it steers some resolver differently; when only its
//! numbers moved (shares, session counts: what explain shows), at most once a minute, so a
//! steady stream of sessions does not make a new snapshot generation every second.
//!
//! In a fleet the two sides of a page view often reach different nodes (its resolver asks
//! one NS, its beacon posts to another), so each round also hands this node's inputs to an
//! [`Exchange`] and feeds in the other nodes' (`fleet::JoinExchange`, through Redis): every
//! node joins every node's inputs and builds the same map from them. Depends on `control`
//! (the `Controller`) and the rest of `rum`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ipnet::IpNet;

use super::collector::{Collector, SESSION_LOG};
use super::nonce_log::{DnsSighting, NonceLog};
use super::resolver_map::{ResolverMapConfig, ResolverSessions};
use crate::control::Controller;

/// How often the log is drained and the map rebuilt.
pub const EVERY: Duration = Duration::from_secs(1);
/// How often a map whose steering did not change is republished for its numbers.
pub const NUMBERS_EVERY: Duration = Duration::from_secs(60);

/// The join both sides feed (shared so that `/metrics` and tests can read its counters).
pub type SharedSessions = Arc<Mutex<ResolverSessions>>;

/// One round's inputs to the join.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Resolvers asking for nonces (the DNS side).
    pub sightings: Vec<DnsSighting>,
    /// Accepted beacons' sessions (the HTTP side).
    pub sessions: Vec<SessionSeen>,
}

/// A beacon's session as the join takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSeen {
    pub nonce: String,
    pub net: IpNet,
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
    pub at: SystemTime,
}

/// Fleet mode: share this node's inputs with the other nodes and take theirs.
pub trait Exchange: Send + Sync {
    /// Called from a blocking thread once a round with this node's new inputs; returns the
    /// other nodes' inputs not seen before (nothing, while the shared store is away).
    fn exchange(&self, local: &Inputs) -> Inputs;
}

/// Run the loop until `cancel`. `collector`: where accepted beacons' sessions come from
/// (`None`: no beacon side, so nothing ever joins).
pub fn spawn(
    controller: Arc<Controller>,
    sessions: SharedSessions,
    collector: Option<Arc<Collector>>,
    exchange: Option<Arc<dyn Exchange>>,
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
            let exchange = exchange.clone();
            let done = tokio::task::spawn_blocking(move || {
                let round = Round {
                    controller: &c,
                    log: &log,
                    collector: from.as_deref(),
                    sessions: &s,
                    config: &config,
                    exchange: exchange.as_deref(),
                };
                let numbers_due = numbers_at.elapsed() >= NUMBERS_EVERY;
                round.run(next_session, numbers_due, SystemTime::now())
            })
            .await;
            if let Ok((next, published)) = done {
                next_session = next;
                if published {
                    numbers_at = Instant::now();
                }
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
    /// Fleet mode: where the other nodes' inputs come from.
    pub exchange: Option<&'a dyn Exchange>,
}

impl Round<'_> {
    /// Feed the join from `next_session` on and publish the map if it steers differently, or
    /// if only its numbers moved and `numbers_due`. Returns the next session to read and
    /// whether it published.
    pub fn run(&self, next_session: u64, numbers_due: bool, now: SystemTime) -> (u64, bool) {
        let (next, map) = self.feed_and_build(next_session, now);
        let current = self.controller.published().load_full();
        let current = &current.resolver_map;
        let due = !map.same_steering(current) || (map != **current && numbers_due);
        if !due {
            return (next, false);
        }
        self.controller.set_resolver_map(map);
        (next, true)
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
        let mut local = Inputs::default();
        self.log.drain(|sighting| local.sightings.push(sighting));
        local.sessions = new
            .into_iter()
            .map(|s| SessionSeen {
                nonce: s.nonce.to_string(),
                net: IpNet::new(s.net.addr(), s.net.prefix_len())
                    .unwrap_or_else(|_| IpNet::from(s.net.addr())),
                country: s.country,
                asn: s.asn,
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(s.unix_secs),
            })
            .collect();
        let remote = self
            .exchange
            .map(|e| e.exchange(&local))
            .unwrap_or_default();
        let config = self.config;
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // DNS first: a beacon follows its init fetch, so its nonce is usually in the log.
        for sighting in local.sightings.into_iter().chain(remote.sightings) {
            sessions.record_sighting(sighting);
        }
        for s in local.sessions.into_iter().chain(remote.sessions) {
            sessions.record_session(&s.nonce, s.net, s.country, s.asn, s.at);
        }
        sessions.prune(now, config);
        (next, sessions.build(now, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ConfigOrigin;
    use crate::rum::nonce::Nonce;
    use crate::rum::nonce_log::DnsSighting;

    /// One session via 192.0.2.53 from 2a02:d180::/48 (DE), both sides.
    fn session(log: &NonceLog, sessions: &Mutex<ResolverSessions>, i: u32, now: SystemTime) {
        let nonce = format!("tasknonce{i:08}");
        log.record(DnsSighting {
            nonce: Nonce::parse(&nonce).unwrap(),
            resolver: "192.0.2.53".parse().unwrap(),
            ecs: None,
            at: now,
        });
        let client = "2a02:d180::/48".parse().unwrap();
        sessions
            .lock()
            .unwrap()
            .record_session(&nonce, client, Some(*b"DE"), None, now);
    }

    #[test]
    fn publishes_new_steering_at_once_and_new_numbers_at_most_once_a_minute() {
        let controller =
            Controller::start(crate::demo::config(), ConfigOrigin::Demo).expect("the demo");
        let generation = || controller.published().load().generation;
        let log = NonceLog::new(100);
        let sessions = Mutex::new(ResolverSessions::default());
        let config = ResolverMapConfig {
            min_sessions: 2,
            ..ResolverMapConfig::default()
        };
        let round = Round {
            controller: &controller,
            log: &log,
            collector: None,
            sessions: &sessions,
            config: &config,
            exchange: None,
        };
        let now = SystemTime::now();
        let g0 = generation();
        assert_eq!(round.run(0, true, now), (0, false), "nothing to map");
        session(&log, &sessions, 0, now);
        assert!(!round.run(0, true, now).1, "1 < min_sessions");
        assert_eq!(generation(), g0);

        session(&log, &sessions, 1, now);
        assert!(round.run(0, false, now).1, "a new mapping");
        assert_eq!(generation(), g0 + 1);
        let mapped = |s: &crate::snapshot::Snapshot| {
            s.resolver_map
                .get(&"192.0.2.53".parse().unwrap())
                .map(|m| m.sessions)
        };
        assert_eq!(mapped(&controller.published().load()), Some(2));

        // Only the numbers moved: not within the minute, then once it is over.
        session(&log, &sessions, 2, now);
        assert!(!round.run(0, false, now).1);
        assert_eq!(generation(), g0 + 1);
        assert!(round.run(0, true, now).1);
        assert_eq!(generation(), g0 + 2);
        assert_eq!(mapped(&controller.published().load()), Some(3));
        // Nothing moved: no new generation, however long ago the last one was.
        assert!(!round.run(0, true, now).1);
        assert_eq!(generation(), g0 + 2);
    }
}
