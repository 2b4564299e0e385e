//! Per-key token buckets with a bounded table: the rate limit shared by RUM beacons (keyed by
//! the beacon's client network) and every HTTP endpoint (keyed by the client network at a
//! configured prefix, see `api::limit`).
//!
//! Each key may take `rate` tokens a second, in bursts of up to `burst`. The table is bounded:
//! when it is full, keys whose buckets have refilled (the same as never seen) are dropped, at
//! most once a second; if it is still full, keys not in it are refused until room frees up
//! (flooding the table from many networks then costs only those new networks, never the ones
//! already tracked). A refusal says how long until the next token ([`Refused::retry_after`]).
//! Pure: time is passed in. Depends on nothing in the crate.
//!
//! [`client_network`]: the network an address counts against, for every per-network limit
//! keyed by `IpNet` (HTTP requests, DNS TCP connections).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use ipnet::IpNet;

/// The network of `ip` (IPv4-mapped addresses as IPv4) at the given prefix lengths.
pub fn client_network(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpNet {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() {
        ipv4_prefix
    } else {
        ipv6_prefix
    };
    IpNet::new(ip, prefix).map_or_else(|_| IpNet::from(ip), |n| n.trunc())
}
use std::time::{Duration, Instant};

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second (> 0).
    pub per_second: f64,
    /// Tokens a full bucket holds (≥ 1): the burst a new key may send at once.
    pub burst: f64,
}

impl Rate {
    /// `n` a minute, in bursts of `n` (the beacon limit).
    pub fn per_minute(n: u32) -> Self {
        let n = f64::from(n.max(1));
        Rate {
            per_second: n / 60.0,
            burst: n,
        }
    }
}

/// Why a key may not take a token now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its bucket is empty.
    Empty { retry_after: Duration },
    /// It is not in the table and the table is full of keys still drawing down.
    TableFull,
}

impl Refused {
    /// How long the client should wait before trying again.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Refused::Empty { retry_after } => retry_after,
            // The table is swept at most once a second.
            Refused::TableFull => SWEEP_EVERY,
        }
    }
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, (f64, Instant)>,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    /// At most `capacity` keys tracked at once.
    pub fn new(rate: Rate, capacity: usize) -> Self {
        Buckets {
            rate: Rate {
                per_second: if rate.per_second > 0.0 {
                    rate.per_second
                } else {
                    f64::MIN_POSITIVE
                },
                burst: rate.burst.max(1.0),
            },
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    fn refill(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        (tokens + elapsed * self.rate.per_second).min(self.rate.burst)
    }

    /// `key`'s tokens now, or `Err` when it is not tracked and cannot be (table full).
    fn tokens(&mut self, key: &K, now: Instant) -> Result<f64, Refused> {
        if let Some(&(tokens, at)) = self.buckets.get(key) {
            return Ok(self.refill(tokens, at, now));
        }
        if self.buckets.len() >= self.capacity {
            let due = self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                self.last_sweep = Some(now);
                let full = self.rate.burst;
                let buckets = std::mem::take(&mut self.buckets);
                self.buckets = buckets
                    .into_iter()
                    .filter(|(_, (tokens, at))| self.refill(*tokens, *at, now) < full)
                    .collect();
            }
            if self.buckets.len() >= self.capacity {
                return Err(Refused::TableFull);
            }
        }
        Ok(self.rate.burst)
    }

    fn empty(&self, tokens: f64) -> Refused {
        let missing = (1.0 - tokens).max(0.0);
        Refused::Empty {
            retry_after: Duration::from_secs_f64(missing / self.rate.per_second)
                .min(Duration::from_secs(86_400)),
        }
    }

    /// Take one token from `key`'s bucket.
    pub fn take(&mut self, key: K, now: Instant) -> Result<(), Refused> {
        let tokens = self.tokens(&key, now)?;
        if tokens < 1.0 {
            self.buckets.insert(key, (tokens, now));
            return Err(self.empty(tokens));
        }
        self.buckets.insert(key, (tokens - 1.0, now));
        Ok(())
    }

    /// Whether `key` could take a token now, without taking it (nor tracking a new key).
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), Refused> {
        let tokens = self.tokens(&key, now)?;
        if tokens < 1.0 {
            return Err(self.empty(tokens));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(i: u8) -> [u8; 3] {
        [10, 0, i]
    }

    #[test]
    fn bursts_up_to_the_limit_then_refills_at_the_rate() {
        let mut r = Buckets::new(Rate::per_minute(60), 100);
        let t0 = Instant::now();
        for i in 0..60 {
            assert!(r.take(net(1), t0).is_ok(), "beacon {i}");
        }
        assert_eq!(
            r.take(net(1), t0),
            Err(Refused::Empty {
                retry_after: Duration::from_secs(1)
            })
        );
        // Another network is not affected.
        assert!(r.take(net(2), t0).is_ok());
        // 60 a minute: one a second.
        let half = r.take(net(1), t0 + Duration::from_millis(500));
        assert!(
            matches!(half, Err(Refused::Empty { retry_after }) if retry_after <= Duration::from_millis(500)),
            "{half:?}"
        );
        assert!(r.take(net(1), t0 + Duration::from_millis(1600)).is_ok());
        assert!(r.take(net(1), t0 + Duration::from_millis(1700)).is_err());
    }

    #[test]
    fn burst_and_rate_are_independent() {
        let mut r = Buckets::new(
            Rate {
                per_second: 10.0,
                burst: 3.0,
            },
            10,
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take(net(1), t0).is_ok());
        }
        assert!(r.take(net(1), t0).is_err());
        assert!(r.take(net(1), t0 + Duration::from_millis(100)).is_ok());
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(r.take(net(1), later).is_ok());
        }
        assert!(r.take(net(1), later).is_err());
    }

    #[test]
    fn check_does_not_take() {
        let mut r = Buckets::new(Rate::per_minute(2), 10);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(r.check(net(1), t0).is_ok());
        }
        assert!(r.is_empty(), "checking tracks nothing");
        assert!(r.take(net(1), t0).is_ok());
        assert!(r.take(net(1), t0).is_ok());
        assert!(r.check(net(1), t0).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = Buckets::new(Rate::per_minute(2), 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(r.take(net(i), t0).is_ok());
        }
        // Full of networks still drawing down: a new one waits; the tracked ones go on.
        assert_eq!(r.take(net(9), t0), Err(Refused::TableFull));
        assert_eq!(r.check(net(9), t0), Err(Refused::TableFull));
        assert!(r.take(net(0), t0).is_ok());
        assert_eq!(r.len(), 3);
        // Once their buckets refill they are forgotten and room frees up.
        assert!(r.take(net(9), t0 + Duration::from_secs(120)).is_ok());
        assert!(r.len() <= 3);
    }
}
