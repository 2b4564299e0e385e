//! Per-client-network rate limit for beacons: a token bucket per /24 or /48.
//!
//! Each network may send `per_minute` beacons a minute, in bursts of up to `per_minute`. The
//! table is bounded: when it is full, networks whose buckets have refilled (the same as never
//! seen) are dropped; if it is still full, beacons from networks not in it are refused until
//! room frees up (flooding the table from many networks then costs only those new networks).
//! Pure: time is passed in. Depends on `rum::token` (the network type).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::token::ClientNet;

#[derive(Debug)]
pub struct RateLimit {
    per_minute: f64,
    capacity: usize,
    buckets: HashMap<ClientNet, (f64, Instant)>,
    last_sweep: Option<Instant>,
}

impl RateLimit {
    pub fn new(per_minute: u32, capacity: usize) -> Self {
        RateLimit {
            per_minute: f64::from(per_minute.max(1)),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    fn refill(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        (tokens + elapsed * self.per_minute / 60.0).min(self.per_minute)
    }

    /// Take one beacon's worth from `net`'s bucket; `false`: over the limit.
    pub fn allow(&mut self, net: ClientNet, now: Instant) -> bool {
        if !self.buckets.contains_key(&net) && self.buckets.len() >= self.capacity {
            // At most one sweep a second, so a full table does not cost a scan per beacon.
            let due = self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due {
                self.last_sweep = Some(now);
                let full = self.per_minute;
                let buckets = std::mem::take(&mut self.buckets);
                self.buckets = buckets
                    .into_iter()
                    .filter(|(_, (tokens, at))| self.refill(*tokens, *at, now) < full)
                    .collect();
            }
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let (tokens, at) = self
            .buckets
            .get(&net)
            .copied()
            .unwrap_or((self.per_minute, now));
        let tokens = self.refill(tokens, at, now);
        if tokens < 1.0 {
            self.buckets.insert(net, (tokens, now));
            return false;
        }
        self.buckets.insert(net, (tokens - 1.0, now));
        true
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

    fn net(i: u8) -> ClientNet {
        ClientNet::V4([10, 0, i])
    }

    #[test]
    fn bursts_up_to_the_limit_then_refills_at_the_rate() {
        let mut r = RateLimit::new(60, 100);
        let t0 = Instant::now();
        for i in 0..60 {
            assert!(r.allow(net(1), t0), "beacon {i}");
        }
        assert!(!r.allow(net(1), t0));
        // Another network is not affected.
        assert!(r.allow(net(2), t0));
        // 60 a minute: one a second.
        assert!(!r.allow(net(1), t0 + Duration::from_millis(500)));
        assert!(r.allow(net(1), t0 + Duration::from_millis(1600)));
        assert!(!r.allow(net(1), t0 + Duration::from_millis(1700)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = RateLimit::new(2, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(r.allow(net(i), t0));
        }
        // Full of networks still drawing down: a new one waits.
        assert!(!r.allow(net(9), t0));
        assert_eq!(r.len(), 3);
        // Once their buckets refill they are forgotten and room frees up.
        assert!(r.allow(net(9), t0 + Duration::from_secs(120)));
        assert!(r.len() <= 3);
    }
}
