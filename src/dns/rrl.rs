//! Response rate limiting (RRL) on UDP, per client network, as BIND and Knot do it: a
//! source address can be forged, so an open authoritative server can be made to send its
//! replies at a victim. Past `responses_per_second` replies to one network in one second,
//! replies are dropped, except every `slip`-th, which goes out as a minimal truncated reply
//! (header and question, TC set): a real resolver behind that network retries over TCP,
//! which cannot be forged, while the victim of a forged flood gets small replies at a fraction
//! of the rate.
//!
//! The decision is made before any answer is computed, from the source address alone, so a
//! flood costs a hash and a compare-and-swap per datagram and no answer work. One table is
//! shared by every UDP worker (the kernel spreads one network's datagrams over the workers by
//! source port): a fixed array of `AtomicU64` slots, each holding a network's tag, the second
//! it counts and its count, updated with compare-and-swap. No lock, no allocation after
//! start, bounded memory ([`SLOTS`] × 8 bytes). Two networks that share a slot reset each
//! other's count; the limit may leak a little under such collisions, never tighten.
//!
//! TCP is not limited here (it cannot be forged); its caps live in [`super::tcp`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ipnet::IpNet;

/// Slots in the table (a power of two): 512 KiB.
pub const SLOTS: usize = 1 << 16;

/// `[dns.rate_limit]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrlConfig {
    /// Replies per second to one client network before limiting; 0 turns RRL off.
    pub responses_per_second: u32,
    /// Every `slip`-th limited reply goes out truncated (TC) instead of being dropped; 0 drops
    /// them all, 1 truncates them all.
    pub slip: u32,
    /// A client network is the source address's first `ipv4_prefix` / `ipv6_prefix` bits.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Networks never limited (default: loopback).
    pub exempt: Vec<IpNet>,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            responses_per_second: 1000,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
        }
    }
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// A minimal truncated reply ([`slip_reply`]).
    Slip,
    Drop,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RrlStats {
    pub dropped: AtomicU64,
    pub slipped: AtomicU64,
}

pub struct RateLimiter {
    config: RrlConfig,
    slots: Box<[AtomicU64]>,
    start: Instant,
    pub stats: RrlStats,
}

// A slot: tag (24 bits) | second (16 bits) | count (24 bits). An all-zero slot is empty.
const COUNT_BITS: u32 = 24;
const SECOND_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const SECOND_MASK: u64 = (1 << SECOND_BITS) - 1;

impl RateLimiter {
    pub fn new(config: RrlConfig) -> Self {
        let slots = (0..SLOTS).map(|_| AtomicU64::new(0)).collect();
        Self {
            config,
            slots,
            start: Instant::now(),
            stats: RrlStats::default(),
        }
    }

    pub fn config(&self) -> &RrlConfig {
        &self.config
    }

    /// Seconds since start: the batch's clock, read once per batch by the caller.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// The verdict for a reply to `source` in second `now` (from [`Self::now`]).
    pub fn check(&self, source: IpAddr, now: u64) -> Verdict {
        let limit = u64::from(self.config.responses_per_second);
        if limit == 0 {
            return Verdict::Answer;
        }
        let source = source.to_canonical();
        if self.config.exempt.iter().any(|n| n.contains(&source)) {
            return Verdict::Answer;
        }
        let hash = self.network_hash(source);
        let slot = &self.slots[(hash as usize) & (SLOTS - 1)];
        // Never zero, so an empty slot is never taken for a network.
        let tag = ((hash >> 40) & 0xff_ffff) | 1;
        let second = now & SECOND_MASK;
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let same = current >> (COUNT_BITS + SECOND_BITS) == tag
                && (current >> COUNT_BITS) & SECOND_MASK == second;
            let count = if same { (current & COUNT_MASK) + 1 } else { 1 };
            let next = (tag << (COUNT_BITS + SECOND_BITS))
                | (second << COUNT_BITS)
                | count.min(COUNT_MASK);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break count,
                Err(seen) => current = seen,
            }
        };
        if count <= limit {
            return Verdict::Answer;
        }
        let over = count - limit;
        let slip = u64::from(self.config.slip);
        if slip != 0 && over.is_multiple_of(slip) {
            self.stats.slipped.fetch_add(1, Ordering::Relaxed);
            Verdict::Slip
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        }
    }

    /// FNV-1a of the source's network, mixed so that nearby networks spread over the table.
    fn network_hash(&self, source: IpAddr) -> u64 {
        let (bytes, prefix): ([u8; 16], u8) = match source {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                (b, self.config.ipv4_prefix)
            }
            IpAddr::V6(v6) => (v6.octets(), self.config.ipv6_prefix),
        };
        let bits = u32::from(prefix);
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for (i, byte) in bytes.iter().enumerate() {
            let keep = bits
                .saturating_sub(u32::try_from(i * 8).unwrap_or(u32::MAX))
                .min(8);
            let masked = if keep == 0 {
                0
            } else {
                byte & (0xff_u8 << (8 - keep))
            };
            hash = (hash ^ u64::from(masked)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // The family too, so 10.0.0.0/24 and 0a00::/56 differ.
        hash ^= u64::from(source.is_ipv6());
        // A final mix (splitmix64): FNV's low bits alone index poorly.
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^ (hash >> 31)
    }
}

/// Write into `out` a minimal truncated reply to `query`: its header with QR and TC set
/// (opcode, RD and ID kept), its one question, nothing else. `None` (drop it) for anything
/// that is not a plain one-question query with an uncompressed name.
pub fn slip_reply(query: &[u8], out: &mut [u8]) -> Option<usize> {
    let header = query.get(..12)?;
    let (flags, qdcount) = (header[2], u16::from_be_bytes([header[4], header[5]]));
    if flags & 0x80 != 0 || qdcount != 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 4;
    if end > query.len() {
        return None;
    }
    let reply = out.get_mut(..end)?;
    reply.copy_from_slice(&query[..end]);
    // QR, the query's opcode and RD, TC; no AA, RA, Z, AD, CD; rcode NOERROR.
    reply[2] = 0x80 | (flags & 0x79) | 0x02;
    reply[3] = 0;
    reply[6..12].fill(0);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: u32, slip: u32) -> RateLimiter {
        RateLimiter::new(RrlConfig {
            responses_per_second: rps,
            slip,
            exempt: vec!["192.0.2.128/25".parse().unwrap()],
            ..RrlConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_each_network_per_second_and_slips_every_nth() {
        let rrl = limiter(10, 3);
        let verdicts: Vec<Verdict> = (0..40).map(|_| rrl.check(ip("198.51.100.7"), 5)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Answer));
        let slips = verdicts[10..]
            .iter()
            .filter(|v| **v == Verdict::Slip)
            .count();
        let drops = verdicts[10..]
            .iter()
            .filter(|v| **v == Verdict::Drop)
            .count();
        assert_eq!((slips, drops), (10, 20), "{verdicts:?}");
        assert_eq!(rrl.stats.slipped.load(Ordering::Relaxed), 10);
        assert_eq!(rrl.stats.dropped.load(Ordering::Relaxed), 20);
        // The same /24 shares the budget; the next /24 and the next second have their own.
        assert_eq!(rrl.check(ip("198.51.100.200"), 5), Verdict::Drop);
        assert_eq!(rrl.check(ip("198.51.101.7"), 5), Verdict::Answer);
        assert_eq!(rrl.check(ip("198.51.100.7"), 6), Verdict::Answer);
    }

    #[test]
    fn ipv6_networks_are_slash_56_and_mapped_v4_is_v4() {
        let rrl = limiter(1, 0);
        assert_eq!(rrl.check(ip("2001:db8:0:1::1"), 1), Verdict::Answer);
        assert_eq!(
            rrl.check(ip("2001:db8:0:ff::2"), 1),
            Verdict::Drop,
            "same /56"
        );
        assert_eq!(
            rrl.check(ip("2001:db8:0:100::1"), 1),
            Verdict::Answer,
            "next /56"
        );
        assert_eq!(rrl.check(ip("203.0.113.1"), 1), Verdict::Answer);
        assert_eq!(
            rrl.check(ip("::ffff:203.0.113.9"), 1),
            Verdict::Drop,
            "the same /24"
        );
    }

    #[test]
    fn exempt_networks_and_zero_rate_are_never_limited() {
        let rrl = limiter(1, 2);
        for _ in 0..100 {
            assert_eq!(rrl.check(ip("192.0.2.200"), 1), Verdict::Answer);
        }
        let off = limiter(0, 2);
        for _ in 0..100 {
            assert_eq!(off.check(ip("198.51.100.1"), 1), Verdict::Answer);
        }
    }

    #[test]
    fn many_networks_stay_within_the_table() {
        // More networks than slots: collisions reset counts, they never limit a newcomer.
        let rrl = limiter(1, 0);
        for i in 0..(SLOTS as u32 * 2) {
            let addr = IpAddr::from((0x0a00_0000 + (i << 8)).to_be_bytes());
            assert_eq!(rrl.check(addr, 1), Verdict::Answer, "{addr}");
        }
    }

    #[test]
    fn slip_replies_are_header_and_question_with_tc() {
        // ID 0xbeef, RD, one question www.example.com A, plus an OPT record.
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        let question_end = q.len();
        q.extend([0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
        let mut out = [0u8; 512];
        let n = slip_reply(&q, &mut out).expect("a reply");
        assert_eq!(n, question_end);
        let reply = &out[..n];
        assert_eq!(&reply[..2], &[0xbe, 0xef]);
        assert_eq!(reply[2], 0x80 | 0x02 | 0x01, "QR, TC, RD");
        assert_eq!(reply[3], 0);
        assert_eq!(&reply[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&reply[12..], &q[12..question_end]);
        // A response, no question, a compressed name, a cut question: no reply.
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(slip_reply(&response, &mut out), None);
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(slip_reply(&two, &mut out), None);
        let pointer = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0, 0, 1, 0, 1];
        assert_eq!(slip_reply(&pointer, &mut out), None);
        assert_eq!(slip_reply(&q[..question_end - 1], &mut out), None);
    }
}
