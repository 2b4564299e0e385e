//! The collector: accepted beacons → rolling windows per (target, region), plus the session
//! log the resolver map joins on, plus the counters `/metrics` shows.
//!
//! Control-plane side only: ingestion (`api::rum`) writes, the control loop reads
//! [`Collector::view`]. DNS query threads never touch it, so its `Mutex` can never stall an
//! answer. Each result is recorded at four levels: the client's (country, ASN) when both are
//! known, its country, its continent, and the world, so a ranking can fall back from fine to
//! coarse. Depends on `rum::{beacon, token, window}`, `perf::Region` and `geo::Continent`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::beacon::{Reject, TargetResult};
use super::token::{ClientNet, Nonce};
use super::window::{Bucket, Limits, Windows};
use crate::geo::Continent;
use crate::perf::Region;

/// A beacon that passed every check, with where its sender is. Built by ingestion; the raw
/// client address is already gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub nonce: Nonce,
    pub net: ClientNet,
    pub country: Option<[u8; 2]>,
    pub continent: Option<Continent>,
    pub asn: Option<u32>,
    /// When it arrived (its minute is `unix_secs / 60`).
    pub at: SystemTime,
    pub results: Vec<TargetResult>,
}

/// One measured page view, for the resolver map: the nonce its init hostname carried and the
/// client's network and location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Position in the log: [`Collector::sessions_since`] resumes after it.
    pub seq: u64,
    pub nonce: Nonce,
    pub net: ClientNet,
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
    pub unix_secs: u64,
}

/// What the windows say now: per (target, region), the window's merged bucket. Pure data,
/// for the decision inputs and `/api/v1/measurements`.
pub type MergedWindows = HashMap<(String, Region), Bucket>;

/// Sessions kept for the resolver-map join, at most. The join reads every second, so this
/// only matters when it stops reading; then the oldest are dropped.
pub const SESSION_LOG: usize = 100_000;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub rejected: [AtomicU64; Reject::ALL.len()],
    pub sessions: AtomicU64,
    /// Requests for the init URL under the RUM zone (the resolver-mapping fetch).
    pub inits: AtomicU64,
}

#[derive(Debug)]
pub struct Collector {
    window_minutes: u64,
    inner: Mutex<Inner>,
    pub counters: Counters,
    /// Fleet mode: what was recorded since the last [`Collector::take_outbox`], per
    /// (series, minute), for the shared buckets. `None`: not shared.
    outbox: Mutex<Option<Outbox>>,
}

/// (target, region) and minute → bucket: results recorded here, not yet shared.
pub type Outbox = HashMap<((String, Region), u64), Bucket>;

#[derive(Debug)]
struct Inner {
    windows: Windows<(String, Region)>,
    sessions: VecDeque<Session>,
    next_seq: u64,
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Collector {
    pub fn new(window_minutes: u32) -> Self {
        let window_minutes = u64::from(window_minutes.max(1));
        let limits = Limits {
            // The minute still filling plus the window.
            max_minutes: window_minutes + 1,
            ..Limits::default()
        };
        Collector {
            window_minutes,
            inner: Mutex::new(Inner {
                windows: Windows::new(limits),
                sessions: VecDeque::new(),
                next_seq: 0,
            }),
            counters: Counters::default(),
            outbox: Mutex::new(None),
        }
    }

    /// Keep what is recorded from now on for [`Collector::take_outbox`] (fleet mode).
    pub fn share(&self) {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        outbox.get_or_insert_with(HashMap::new);
    }

    /// What was recorded since the last call (empty when not shared).
    pub fn take_outbox(&self) -> Outbox {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        outbox.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn window_minutes(&self) -> u64 {
        self.window_minutes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data stays consistent per call even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The regions a beacon from this client counts in, finest first.
    pub fn regions(
        country: Option<[u8; 2]>,
        continent: Option<Continent>,
        asn: Option<u32>,
    ) -> Vec<Region> {
        let mut regions = Vec::with_capacity(4);
        if let (Some(country), Some(asn)) = (country, asn) {
            regions.push(Region::Network { country, asn });
        }
        if let Some(country) = country {
            regions.push(Region::Country(country));
        }
        if let Some(continent) = continent {
            regions.push(Region::Continent(continent));
        }
        regions.push(Region::World);
        regions
    }

    /// Record an accepted beacon: each result at every level, and its session.
    pub fn accept(&self, accepted: Accepted) {
        let Accepted {
            nonce,
            net,
            country,
            continent,
            asn,
            at,
            results,
        } = accepted;
        let secs = unix_secs(at);
        let minute = secs / 60;
        let regions = Self::regions(country, continent, asn);
        if let Some(outbox) = self
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            for result in &results {
                let timing = result.timing();
                for region in &regions {
                    outbox
                        .entry(((result.target.clone(), region.clone()), minute))
                        .or_default()
                        .record(timing);
                }
            }
        }
        {
            let mut inner = self.lock();
            for result in &results {
                let timing = result.timing();
                for region in &regions {
                    inner
                        .windows
                        .record((result.target.clone(), region.clone()), minute, timing);
                }
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            if inner.sessions.len() >= SESSION_LOG {
                inner.sessions.pop_front();
            }
            inner.sessions.push_back(Session {
                seq,
                nonce,
                net,
                country,
                asn,
                unix_secs: secs,
            });
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refused beacon.
    pub fn reject(&self, reason: Reject) {
        self.counters.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: Reject) -> u64 {
        self.counters.rejected[reason.index()].load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Sessions with `seq >= from`, oldest first (at most `limit`), and the `from` to pass
    /// next time. Sessions dropped from a full log are skipped.
    pub fn sessions_since(&self, from: u64, limit: usize) -> (Vec<Session>, u64) {
        let inner = self.lock();
        let out: Vec<Session> = inner
            .sessions
            .iter()
            .filter(|s| s.seq >= from)
            .take(limit)
            .cloned()
            .collect();
        let next = out.last().map_or(from, |s| s.seq + 1);
        (out, next)
    }

    /// Every (target, region) window ending at `now`'s minute, merged. Also drops minutes
    /// that fell out of the window.
    pub fn view(&self, now: SystemTime) -> MergedWindows {
        let minute = unix_secs(now) / 60;
        let mut inner = self.lock();
        inner.windows.prune(minute, self.window_minutes);
        let keys: Vec<(String, Region)> = inner.windows.keys().cloned().collect();
        keys.into_iter()
            .filter_map(|key| {
                let bucket = inner.windows.merged(&key, minute, self.window_minutes)?;
                Some((key, bucket))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(target: &str, warm: Option<f64>, failed: bool) -> TargetResult {
        TargetResult {
            target: target.into(),
            cold_ms: Some(100.0),
            warm_ms: warm,
            dns_ms: None,
            connect_ms: None,
            tls_ms: None,
            ttfb_ms: None,
            throughput_kbps: None,
            failed,
        }
    }

    fn accepted(n: u8, at: SystemTime, asn: Option<u32>, results: Vec<TargetResult>) -> Accepted {
        Accepted {
            nonce: Nonce([n; 16]),
            net: ClientNet::V4([192, 0, 2]),
            country: Some(*b"DE"),
            continent: Some(Continent::Europe),
            asn,
            at,
            results,
        }
    }

    #[test]
    fn results_count_at_every_level_and_age_out() {
        let c = Collector::new(5);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000 * 60);
        c.accept(accepted(
            1,
            t0,
            Some(3320),
            vec![result("a", Some(20.0), false), result("b", None, true)],
        ));
        c.accept(accepted(
            2,
            t0 + Duration::from_secs(61),
            None,
            vec![result("a", None, false)],
        ));
        let view = c.view(t0 + Duration::from_secs(90));
        let get = |t: &str, r: Region| view.get(&(t.to_owned(), r)).cloned();
        let net = get(
            "a",
            Region::Network {
                country: *b"DE",
                asn: 3320,
            },
        )
        .unwrap();
        assert_eq!((net.attempts, net.failures), (1, 0));
        let de = get("a", Region::Country(*b"DE")).unwrap();
        assert_eq!((de.attempts, de.failures, de.timings.count()), (2, 0, 2));
        let b = get("b", Region::World).unwrap();
        assert_eq!((b.attempts, b.failures), (1, 1));
        assert!(get("a", Region::Continent(Continent::Europe)).is_some());
        // Six minutes on, the first minute has left the 5-minute window.
        let later = c.view(t0 + Duration::from_secs(5 * 60 + 1));
        assert_eq!(later[&("a".to_owned(), Region::World)].attempts, 1);
        let gone = c.view(t0 + Duration::from_secs(20 * 60));
        assert!(gone.is_empty(), "{gone:?}");
        assert_eq!(c.accepted(), 2);
    }

    #[test]
    fn sessions_are_read_once_in_order() {
        let c = Collector::new(5);
        let t = SystemTime::now();
        for n in 0..3 {
            c.accept(accepted(n, t, Some(1), vec![result("a", Some(5.0), false)]));
        }
        let (first, next) = c.sessions_since(0, 2);
        assert_eq!(
            first.iter().map(|s| s.nonce.0[0]).collect::<Vec<_>>(),
            [0, 1]
        );
        let (rest, next) = c.sessions_since(next, 10);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].net.to_string(), "192.0.2.0/24");
        let (none, again) = c.sessions_since(next, 10);
        assert!(none.is_empty());
        assert_eq!(again, next);
    }
}
