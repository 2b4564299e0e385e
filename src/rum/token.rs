//! Beacon tokens: who may report, from where, until when.
//!
//! `/rum/v1/config` hands each page view a fresh nonce and a token, an HMAC-SHA256 over
//! (nonce, client network, expiry) under the server's secret. A beacon is only accepted with a
//! token that verifies for its nonce and for the network it is posted from, before its expiry,
//! and only once ([`ReplayGuard`]). This makes forging beacons cost one config request from
//! each network one wants to speak for, and replaying them impossible. The server stores no
//! per-session state until a beacon is accepted.
//!
//! Client addresses are reduced to [`ClientNet`] (/24 or /48) as soon as they are read; the
//! full address is never kept. Pure: time is passed in. Depends on nothing in the crate.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The shortest secret accepted: as long as the HMAC-SHA256 output.
pub const MIN_SECRET_LEN: usize = 32;

/// A nonce's length in bytes (32 hex digits on the wire: a DNS label).
pub const NONCE_LEN: usize = 16;

/// A client's network: the /24 of an IPv4 address or the /48 of an IPv6 address. IPv4-mapped
/// IPv6 addresses are taken as IPv4. This is all steerdns keeps of a beacon's sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientNet {
    V4([u8; 3]),
    V6([u8; 6]),
}

impl ClientNet {
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                ClientNet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                ClientNet::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        match *self {
            ClientNet::V4([a, b, c]) => IpAddr::V4([a, b, c, 0].into()),
            ClientNet::V6(p) => {
                let mut o = [0u8; 16];
                o[..6].copy_from_slice(&p);
                IpAddr::V6(o.into())
            }
        }
    }

    pub fn prefix_len(&self) -> u8 {
        match self {
            ClientNet::V4(_) => 24,
            ClientNet::V6(_) => 48,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            ClientNet::V4(b) => b,
            ClientNet::V6(b) => b,
        }
    }
}

impl fmt::Display for ClientNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix_len())
    }
}

/// A session's nonce. On the wire: 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// Parse 32 lower-case hex digits (upper case is refused: the nonce is also a DNS label,
    /// and one spelling keeps the resolver-map join exact).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = decode_hex(text)?;
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Some(Nonce(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was not issued by this server (bad signature)")]
    Forged,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued to another client network")]
    WrongNetwork,
}

/// Issues and verifies tokens, and mints nonces. Holds the secret.
pub struct Signer {
    key: HmacSha256,
    /// Nonces are HMAC(secret, "nonce" ‖ seed ‖ counter): unique per process run (the seed
    /// is random) and unpredictable without the secret, with no random source per request.
    seed: [u8; 16],
    counter: AtomicU64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { .. }")
    }
}

/// The signed message is domain-separated from nonce minting by its first byte.
const TOKEN_TAG: &[u8] = b"steerdns-rum-token-v1";
const NONCE_TAG: &[u8] = b"steerdns-rum-nonce-v1";

impl Signer {
    /// `seed` must differ between runs with the same secret (read it from the OS).
    pub fn new(secret: &[u8], seed: [u8; 16]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret is {} bytes; at least {MIN_SECRET_LEN} are needed",
                secret.len()
            ));
        }
        let key = HmacSha256::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(Signer {
            key,
            seed,
            counter: AtomicU64::new(0),
        })
    }

    pub fn nonce(&self) -> Nonce {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut mac = self.key.clone();
        mac.update(NONCE_TAG);
        mac.update(&self.seed);
        mac.update(&n.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&out[..NONCE_LEN]);
        Nonce(nonce)
    }

    fn mac(&self, nonce: &Nonce, net: &ClientNet, expiry: u64) -> HmacSha256 {
        let mut mac = self.key.clone();
        mac.update(TOKEN_TAG);
        mac.update(&nonce.0);
        mac.update(&[net.prefix_len()]);
        mac.update(net.bytes());
        mac.update(&expiry.to_be_bytes());
        mac
    }

    /// A token for `nonce` from `net`, good until `expiry` (unix seconds):
    /// `<expiry>.<network hex>.<mac hex>`. The network is in clear so that a token used from
    /// another network is told apart from a forged one (mobile clients change networks).
    pub fn issue(&self, nonce: &Nonce, net: &ClientNet, expiry: u64) -> String {
        let tag = self.mac(nonce, net, expiry).finalize().into_bytes();
        format!("{expiry}.{}.{}", hex(net.bytes()), hex(&tag))
    }

    /// Check a token for `nonce` posted from `net` at `now` (unix seconds). Returns its
    /// expiry. The MAC comparison is constant-time.
    pub fn verify(
        &self,
        token: &str,
        nonce: &Nonce,
        net: &ClientNet,
        now: u64,
    ) -> Result<u64, TokenError> {
        if token.len() > 160 {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(expiry), Some(net_hex), Some(tag_hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if expiry.is_empty() || expiry.len() > 12 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let token_net = decode_hex(net_hex).ok_or(TokenError::Malformed)?;
        let tag = decode_hex(tag_hex).ok_or(TokenError::Malformed)?;
        if tag.len() != 32 {
            return Err(TokenError::Malformed);
        }
        let token_net = match token_net.len() {
            3 => ClientNet::V4([token_net[0], token_net[1], token_net[2]]),
            6 => {
                let mut b = [0u8; 6];
                b.copy_from_slice(&token_net);
                ClientNet::V6(b)
            }
            _ => return Err(TokenError::Malformed),
        };
        // The signature first: an attacker learns nothing from the other checks.
        self.mac(nonce, &token_net, expiry)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Forged)?;
        if token_net != *net {
            return Err(TokenError::WrongNetwork);
        }
        if now > expiry {
            return Err(TokenError::Expired);
        }
        Ok(expiry)
    }
}

/// Remembers the nonces of accepted beacons until their tokens expire, so each token is used
/// once. Bounded: at `capacity` unexpired nonces it refuses new ones ([`Replay::Full`]) rather
/// than forget one early, which would let that token be replayed. Size it above the number
/// of beacons accepted in one token lifetime.
#[derive(Debug)]
pub struct ReplayGuard {
    capacity: usize,
    used: HashSet<Nonce>,
    by_expiry: BTreeSet<(u64, Nonce)>,
}

/// What [`ReplayGuard::use_once`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// First use: recorded.
    Fresh,
    /// Seen before.
    Replayed,
    /// The table is full of unexpired nonces.
    Full,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            capacity: capacity.max(1),
            used: HashSet::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Record `nonce` (whose token expires at `expiry`) as used at `now`.
    pub fn use_once(&mut self, nonce: Nonce, expiry: u64, now: u64) -> Replay {
        while let Some(&(at, old)) = self.by_expiry.first() {
            if at >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.used.remove(&old);
        }
        if self.used.contains(&nonce) {
            return Replay::Replayed;
        }
        if self.used.len() >= self.capacity {
            return Replay::Full;
        }
        self.used.insert(nonce);
        self.by_expiry.insert((expiry, nonce));
        Replay::Fresh
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Hex (either case) to bytes; `None` on odd length or a non-hex digit.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(&[7u8; 32], [1u8; 16]).unwrap()
    }

    fn net(text: &str) -> ClientNet {
        ClientNet::of(text.parse().unwrap())
    }

    #[test]
    fn networks_are_truncated() {
        assert_eq!(net("192.0.2.200").to_string(), "192.0.2.0/24");
        assert_eq!(net("2001:db8:1:2:3::4").to_string(), "2001:db8:1::/48");
        assert_eq!(net("::ffff:192.0.2.9"), net("192.0.2.1"));
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(Signer::new(&[0u8; 31], [0; 16]).is_err());
    }

    #[test]
    fn nonces_are_unique_and_parse_back() {
        let s = signer();
        let a = s.nonce();
        let b = s.nonce();
        assert_ne!(a, b);
        assert_eq!(Nonce::parse(&a.to_string()), Some(a));
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(Nonce::parse(&a.to_string().to_uppercase()), None);
        assert_eq!(Nonce::parse("abc"), None);
        // Another run (another seed) mints other nonces.
        let other = Signer::new(&[7u8; 32], [2u8; 16]).unwrap();
        assert_ne!(
            other.nonce(),
            Signer::new(&[7u8; 32], [1u8; 16]).unwrap().nonce()
        );
    }

    #[test]
    fn a_token_verifies_only_for_its_nonce_network_and_time() {
        let s = signer();
        let nonce = s.nonce();
        let home = net("198.51.100.7");
        let token = s.issue(&nonce, &home, 1000);
        assert_eq!(
            s.verify(&token, &nonce, &net("198.51.100.99"), 1000),
            Ok(1000)
        );
        assert_eq!(
            s.verify(&token, &nonce, &home, 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.verify(&token, &nonce, &net("198.51.101.7"), 999),
            Err(TokenError::WrongNetwork)
        );
        assert_eq!(
            s.verify(&token, &s.nonce(), &home, 999),
            Err(TokenError::Forged)
        );
        // Another key.
        let other = Signer::new(&[8u8; 32], [1u8; 16]).unwrap();
        assert_eq!(
            other.verify(&token, &nonce, &home, 999),
            Err(TokenError::Forged)
        );
        // Edited expiry or network: the MAC no longer matches.
        let (_, rest) = token.split_once('.').unwrap();
        assert_eq!(
            s.verify(&format!("9999.{rest}"), &nonce, &home, 999),
            Err(TokenError::Forged)
        );
        let v6 = net("2001:db8::1");
        let t6 = s.issue(&nonce, &v6, 50);
        assert_eq!(s.verify(&t6, &nonce, &v6, 50), Ok(50));
        assert_eq!(
            s.verify(&t6, &nonce, &home, 50),
            Err(TokenError::WrongNetwork)
        );
        for bad in [
            "",
            "1.2",
            "x.c63364.00",
            "1.c63364.zz",
            &format!("{token}.1"),
        ] {
            assert_eq!(
                s.verify(bad, &nonce, &home, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn replay_guard_rejects_second_use_and_forgets_after_expiry() {
        let mut g = ReplayGuard::new(2);
        let (a, b, c) = (Nonce([1; 16]), Nonce([2; 16]), Nonce([3; 16]));
        assert_eq!(g.use_once(a, 100, 10), Replay::Fresh);
        assert_eq!(g.use_once(a, 100, 11), Replay::Replayed);
        assert_eq!(g.use_once(b, 200, 12), Replay::Fresh);
        // Full of unexpired nonces: refuse rather than forget one.
        assert_eq!(g.use_once(c, 300, 13), Replay::Full);
        assert_eq!(
            g.use_once(a, 100, 100),
            Replay::Replayed,
            "still valid at expiry"
        );
        // After a's expiry it is dropped; its token is expired too, so nothing is replayable.
        assert_eq!(g.use_once(c, 300, 101), Replay::Fresh);
        assert_eq!(g.len(), 2);
    }
}
