//! The log of nonce queries: written by DNS threads, drained by the control side.
//!
//! A bounded `std::sync::mpsc::sync_channel` of fixed-size entries. A DNS thread only ever
//! calls `try_send`: when the log is full the sighting is dropped and counted, never waited
//! for. The bounded channel's `try_send` claims a slot with a compare-and-swap and takes a lock
//! only to wake a receiver blocked in `recv`; ours never blocks (it drains with `try_recv`),
//! so writers take no lock at all. Entries are `Copy` (the nonce is inline), so a write does
//! not allocate either. The buffer is allocated once, when RUM is configured.
//!
//! Depends on [`super::nonce`] only.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use super::nonce::Nonce;

/// Entries the log holds between two drains. Drained every second, this is 32,768 nonce
/// queries a second before anything is lost (88 bytes each: about 3 MB).
pub const CAPACITY: usize = 32_768;

/// One query for `<nonce>.<rum zone>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSighting {
    pub nonce: Nonce,
    /// The address the query came from (the resolver's egress address).
    pub resolver: IpAddr,
    /// The ECS subnet the resolver sent, if any.
    pub ecs: Option<IpNet>,
    pub at: SystemTime,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub recorded: u64,
    /// Sightings lost because the log was full.
    pub dropped: u64,
}

#[derive(Debug)]
pub struct NonceLog {
    tx: SyncSender<DnsSighting>,
    /// Control side only: one drainer at a time.
    rx: Mutex<Receiver<DnsSighting>>,
    recorded: AtomicU64,
    dropped: AtomicU64,
}

impl NonceLog {
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = sync_channel(capacity.max(1));
        NonceLog {
            tx,
            rx: Mutex::new(rx),
            recorded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Record a sighting, or drop it if the log is full. Never blocks; called on the DNS path.
    pub fn record(&self, sighting: DnsSighting) {
        match self.tx.try_send(sighting) {
            Ok(()) => self.recorded.fetch_add(1, Ordering::Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Hand every sighting logged so far to `f` (at most one log's worth per call, so a
    /// flood cannot keep the drainer busy forever). Returns how many.
    pub fn drain(&self, mut f: impl FnMut(DnsSighting)) -> usize {
        let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n = 0;
        while n < CAPACITY {
            match rx.try_recv() {
                Ok(sighting) => {
                    f(sighting);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(i: u32) -> DnsSighting {
        DnsSighting {
            nonce: Nonce::parse(&format!("{i:016}")).unwrap(),
            resolver: "192.0.2.53".parse().unwrap(),
            ecs: None,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn full_log_drops_and_counts_instead_of_waiting() {
        let log = NonceLog::new(4);
        for i in 0..6 {
            log.record(sighting(i));
        }
        assert_eq!(
            log.stats(),
            LogStats {
                recorded: 4,
                dropped: 2
            }
        );
        let mut seen = Vec::new();
        assert_eq!(log.drain(|s| seen.push(s)), 4);
        let nonces = |v: &[DnsSighting]| v.iter().map(|s| s.nonce).collect::<Vec<_>>();
        let expected: Vec<_> = (0..4).map(sighting).collect();
        assert_eq!(
            nonces(&seen),
            nonces(&expected),
            "in order, first come first kept"
        );
        // Drained: room again.
        log.record(sighting(7));
        assert_eq!(log.drain(|_| {}), 1);
    }

    #[test]
    fn writers_on_many_threads_lose_nothing_below_capacity() {
        let log = std::sync::Arc::new(NonceLog::new(1000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        log.record(sighting(t * 1000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(log.drain(|_| {}), 1000);
        assert_eq!(log.stats().dropped, 0);
    }
}
