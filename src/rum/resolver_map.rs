//! Resolver mapping: join the nonces resolvers asked for (DNS) with the beacon sessions that
//! carried them (HTTP), and decide which resolvers to locate as their users.
//!
//! A page view that measures gets a unique nonce and resolves `<nonce>.<rum zone>`; its
//! resolver's query is logged ([`super::nonce_log`]) and fed in with
//! [`ResolverSessions::record_dns`]; its beacon, accepted over HTTP with the client network
//! and where that network is, comes in through [`ResolverSessions::record_session`]. The two
//! sightings arrive in either order. When both are in, the session counts once for each
//! resolver that asked for the nonce (up to [`Limits::resolvers_per_nonce`]: a resolver pool
//! may send A and AAAA from different addresses, and each of them asks for these users). A
//! nonce seen on one side only counts nothing; repeats count nothing.
//!
//! Counts are kept per resolver, per hour, per (country, ASN) of the client network, for the
//! sliding window `window_h`. Sessions whose query carried ECS are counted apart: a resolver
//! that sends ECS is located by it and needs no mapping, so only ECS-less sessions decide.
//! [`ResolverSessions::build`] turns the window into an immutable [`ResolverMap`]: a resolver
//! with at least `min_sessions` ECS-less sessions whose dominant (country, ASN) holds at least
//! `min_share` of them is steered as that group's most frequent client network.
//!
//! Memory is bounded: nonces in flight, resolvers and counting cells each have a cap
//! ([`Limits`]); past a cap new data is dropped and counted, never stored. Pure: time comes in
//! as arguments. Depends on [`super::nonce`] and `ipnet` only.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::nonce::Nonce;
use super::nonce_log::{DnsSighting, unix_secs};

/// `[rum.resolver_map]`: when a resolver is located as its users.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverMapConfig {
    /// ECS-less sessions within the window a resolver needs before it is mapped.
    pub min_sessions: u64,
    /// Share of those sessions its dominant (country, ASN) must hold; above one half, so the
    /// dominant group is unique.
    pub min_share: f64,
    /// The sliding window, in hours.
    pub window_h: u32,
}

impl Default for ResolverMapConfig {
    fn default() -> Self {
        ResolverMapConfig {
            min_sessions: 50,
            min_share: 0.8,
            window_h: 24,
        }
    }
}

/// A bad `[rum.resolver_map]` value: the field (below `rum.resolver_map.`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl ResolverMapConfig {
    pub fn validate(self) -> Result<Self, ConfigError> {
        let error = |field, reason: String| Err(ConfigError { field, reason });
        if self.min_sessions == 0 {
            return error("min_sessions", "must be at least 1".into());
        }
        if !(self.min_share > 0.5 && self.min_share <= 1.0) {
            return error(
                "min_share",
                format!(
                    "{} is not in (0.5, 1]: the dominant group must hold more than half",
                    self.min_share
                ),
            );
        }
        if !(1..=168).contains(&self.window_h) {
            return error(
                "window_h",
                format!("{} is out of range 1..=168", self.window_h),
            );
        }
        Ok(self)
    }
}

/// Where a client network is, as far as resolver mapping tells groups apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
}

impl Group {
    fn located(&self) -> bool {
        self.country.is_some() || self.asn.is_some()
    }
}

impl fmt::Display for Group {
    /// `AS3320/DE`, `AS3320`, `DE`, or `unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let country = self
            .country
            .map(|c| String::from_utf8_lossy(&c).into_owned());
        match (self.asn, country) {
            (Some(asn), Some(c)) => write!(f, "AS{asn}/{c}"),
            (Some(asn), None) => write!(f, "AS{asn}"),
            (None, Some(c)) => f.write_str(&c),
            (None, None) => f.write_str("unknown"),
        }
    }
}

/// How a mapped resolver is located.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapped {
    /// What steering locates instead of the resolver: the network address of `network`.
    pub steer_as: IpAddr,
    /// The dominant group's most frequent client network (/24 or /48).
    pub network: IpNet,
    #[serde(skip)]
    pub group: Group,
    /// `group_sessions / sessions`.
    pub share: f64,
    /// ECS-less sessions via this resolver within the window.
    pub sessions: u64,
    pub group_sessions: u64,
}

impl Mapped {
    /// "91% of 1,204 sessions via 192.0.2.53 are AS3320/DE".
    pub fn describe(&self, resolver: IpAddr) -> String {
        format!(
            "{}% of {} sessions via {resolver} are {}",
            (self.share * 100.0).floor() as u64,
            thousands(self.sessions),
            self.group
        )
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Resolver → how to locate it. Immutable once built; queries read it from the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolverMap {
    map: HashMap<IpAddr, Mapped>,
}

impl ResolverMap {
    /// The address to steer a query from `resolver` on, when mapped. One hash lookup, none
    /// when the map is empty.
    #[inline]
    pub fn steer_as(&self, resolver: IpAddr) -> Option<IpAddr> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(&resolver).map(|m| m.steer_as)
    }

    pub fn get(&self, resolver: &IpAddr) -> Option<&Mapped> {
        self.map.get(resolver)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Mapped)> {
        self.map.iter()
    }

    /// Whether both maps steer every resolver alike (the numbers behind them may differ).
    pub fn same_steering(&self, other: &ResolverMap) -> bool {
        self.map.len() == other.map.len()
            && self.map.iter().all(|(r, m)| {
                other
                    .map
                    .get(r)
                    .is_some_and(|o| o.steer_as == m.steer_as && o.group == m.group)
            })
    }
}

/// Caps that bound memory. Defaults: about 70 MB in the worst case (some 35 MB of nonces in
/// flight at about 175 bytes each, 30 MB of counting cells at up to 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nonces in flight (seen on one side, or joined and kept to spot repeats).
    pub nonces: usize,
    /// How long a nonce is kept, in seconds: longer than a session token lives.
    pub nonce_ttl_s: u64,
    pub resolvers: usize,
    /// Counting cells: one per (resolver, hour), per group in it, per network in a group.
    pub cells: usize,
    /// Groups per (resolver, hour); sessions of further groups count in the total only.
    pub groups: usize,
    /// Client networks per group and hour; further ones count in the group, unnamed.
    pub networks: usize,
    /// Resolvers a nonce counts for (at most 4).
    pub resolvers_per_nonce: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            nonces: 200_000,
            nonce_ttl_s: 600,
            resolvers: 100_000,
            cells: 500_000,
            groups: 8,
            networks: 4,
            resolvers_per_nonce: 4,
        }
    }
}

const MAX_RESOLVERS_PER_NONCE: usize = 4;

/// What a record call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Both sides are in: counted (for this resolver, or for every resolver so far).
    Joined,
    /// Waiting for the other side.
    Pending,
    /// Seen before: counts nothing.
    Duplicate,
    /// Not a nonce, or a resolver past `resolvers_per_nonce`.
    Ignored,
    /// A cap was reached: dropped and counted.
    Dropped,
}

/// Counters, for `/metrics` and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    pub joined: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub dropped: u64,
    pub nonces: usize,
    pub resolvers: usize,
    pub cells: usize,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    network: IpNet,
    group: Group,
}

#[derive(Debug)]
struct Pending {
    first_seen_s: u64,
    resolvers: [Option<(IpAddr, bool)>; MAX_RESOLVERS_PER_NONCE],
    session: Option<Session>,
}

#[derive(Debug)]
struct GroupCount {
    group: Group,
    sessions: u64,
    networks: Vec<(IpNet, u64)>,
}

#[derive(Debug)]
struct Hour {
    hour: u64,
    /// Sessions whose query carried ECS.
    ecs: u64,
    /// ECS-less sessions of groups past the caps: in the total, in no group.
    other: u64,
    groups: Vec<GroupCount>,
}

/// Per resolver, per hour: the counts joined sessions go into.
#[derive(Debug, Default)]
struct Counts {
    resolvers: HashMap<IpAddr, VecDeque<Hour>>,
    cells: usize,
}

impl Counts {
    /// Count one session for `resolver`; false when a cap dropped it.
    fn count(
        &mut self,
        limits: &Limits,
        resolver: IpAddr,
        ecs: bool,
        session: Session,
        hour: u64,
    ) -> bool {
        if !self.resolvers.contains_key(&resolver)
            && (self.resolvers.len() >= limits.resolvers || self.cells >= limits.cells)
        {
            return false;
        }
        let hours = self.resolvers.entry(resolver).or_default();
        // Sightings a little out of order count in the latest hour.
        let hour = hours.back().map_or(hour, |h| h.hour.max(hour));
        if hours.back().is_none_or(|h| h.hour != hour) {
            if self.cells >= limits.cells {
                if hours.is_empty() {
                    self.resolvers.remove(&resolver);
                }
                return false;
            }
            self.cells += 1;
            hours.push_back(Hour {
                hour,
                ecs: 0,
                other: 0,
                groups: Vec::new(),
            });
        }
        let Some(current) = hours.back_mut() else {
            return false;
        };
        if ecs {
            current.ecs += 1;
            return true;
        }
        let index = match current.groups.iter().position(|g| g.group == session.group) {
            Some(i) => i,
            None if current.groups.len() < limits.groups && self.cells < limits.cells => {
                self.cells += 1;
                current.groups.push(GroupCount {
                    group: session.group,
                    sessions: 0,
                    networks: Vec::new(),
                });
                current.groups.len() - 1
            }
            None => {
                current.other += 1;
                return true;
            }
        };
        let group = &mut current.groups[index];
        group.sessions += 1;
        match group
            .networks
            .iter()
            .position(|(n, _)| *n == session.network)
        {
            Some(i) => group.networks[i].1 += 1,
            None if group.networks.len() < limits.networks && self.cells < limits.cells => {
                self.cells += 1;
                group.networks.push((session.network, 1));
            }
            None => {}
        }
        true
    }

    fn prune(&mut self, oldest_hour: u64) {
        let mut freed = 0;
        self.resolvers.retain(|_, hours| {
            while hours.front().is_some_and(|h| h.hour < oldest_hour) {
                if let Some(h) = hours.pop_front() {
                    freed += 1 + h.groups.iter().map(|g| 1 + g.networks.len()).sum::<usize>();
                }
            }
            !hours.is_empty()
        });
        self.cells -= freed.min(self.cells);
    }
}

/// The join of DNS sightings and beacon sessions, over a sliding window. Control side only
/// (the caller holds it behind a mutex); never read by queries, which read [`ResolverMap`].
#[derive(Debug, Default)]
pub struct ResolverSessions {
    limits: Limits,
    nonces: HashMap<Nonce, Pending>,
    /// When the nonce table was last scanned for expired entries (a full table is scanned at
    /// most once a second, so a flood cannot make every insert a scan).
    last_scan_s: u64,
    counts: Counts,
    stats: SessionStats,
}

/// The client network as resolver mapping keeps it: /24 for IPv4, /48 for IPv6, at most.
pub fn client_network(net: IpNet) -> IpNet {
    let max = match net {
        IpNet::V4(_) => 24,
        IpNet::V6(_) => 48,
    };
    IpNet::new(net.addr(), net.prefix_len().min(max))
        .map(|n| n.trunc())
        .unwrap_or(net)
}

impl ResolverSessions {
    pub fn new(limits: Limits) -> Self {
        ResolverSessions {
            limits: Limits {
                resolvers_per_nonce: limits.resolvers_per_nonce.min(MAX_RESOLVERS_PER_NONCE),
                ..limits
            },
            ..Default::default()
        }
    }

    /// The DNS side: `resolver` (with `ecs`, if it sent one) asked for `<nonce>.<rum zone>`.
    pub fn record_dns(
        &mut self,
        nonce: &str,
        resolver: IpAddr,
        ecs: Option<IpNet>,
        at: SystemTime,
    ) -> Recorded {
        match Nonce::parse(nonce) {
            Some(nonce) => self.record_sighting(DnsSighting {
                nonce,
                resolver,
                ecs,
                at,
            }),
            None => self.tally(Recorded::Ignored),
        }
    }

    /// [`Self::record_dns`] for an entry of the nonce log.
    pub fn record_sighting(&mut self, sighting: DnsSighting) -> Recorded {
        let now_s = unix_secs(sighting.at);
        let limits = self.limits;
        let resolver = sighting.resolver.to_canonical();
        let ecs = sighting.ecs.is_some();
        let Some(pending) = self.pending(sighting.nonce, now_s) else {
            return self.tally(Recorded::Dropped);
        };
        let slots = &mut pending.resolvers[..limits.resolvers_per_nonce];
        if slots.iter().flatten().any(|(r, _)| *r == resolver) {
            return self.tally(Recorded::Duplicate);
        }
        let Some(free) = slots.iter_mut().find(|s| s.is_none()) else {
            return self.tally(Recorded::Ignored);
        };
        *free = Some((resolver, ecs));
        let Some(session) = pending.session else {
            return self.tally(Recorded::Pending);
        };
        let counted = self
            .counts
            .count(&limits, resolver, ecs, session, now_s / 3600);
        self.tally(if counted {
            Recorded::Joined
        } else {
            Recorded::Dropped
        })
    }

    /// The HTTP side: an accepted beacon session with this nonce came from `client_net` (kept
    /// as its /24 or /48), located in `country` and `asn`.
    pub fn record_session(
        &mut self,
        nonce: &str,
        client_net: IpNet,
        country: Option<[u8; 2]>,
        asn: Option<u32>,
        at: SystemTime,
    ) -> Recorded {
        let Some(nonce) = Nonce::parse(nonce) else {
            return self.tally(Recorded::Ignored);
        };
        let now_s = unix_secs(at);
        let limits = self.limits;
        let session = Session {
            network: client_network(client_net),
            group: Group { country, asn },
        };
        let Some(pending) = self.pending(nonce, now_s) else {
            return self.tally(Recorded::Dropped);
        };
        if pending.session.is_some() {
            return self.tally(Recorded::Duplicate);
        }
        pending.session = Some(session);
        let resolvers = pending.resolvers;
        let mut outcome = Recorded::Pending;
        for (resolver, ecs) in resolvers.iter().flatten() {
            outcome = if self
                .counts
                .count(&limits, *resolver, *ecs, session, now_s / 3600)
            {
                Recorded::Joined
            } else {
                Recorded::Dropped
            };
        }
        self.tally(outcome)
    }

    fn tally(&mut self, outcome: Recorded) -> Recorded {
        match outcome {
            Recorded::Joined => self.stats.joined += 1,
            Recorded::Duplicate => self.stats.duplicates += 1,
            Recorded::Ignored => self.stats.ignored += 1,
            Recorded::Dropped => self.stats.dropped += 1,
            Recorded::Pending => {}
        }
        outcome
    }

    /// The nonce's entry, made if new; `None` when the table is full even after expiry.
    fn pending(&mut self, nonce: Nonce, now_s: u64) -> Option<&mut Pending> {
        if !self.nonces.contains_key(&nonce) {
            if self.nonces.len() >= self.limits.nonces && now_s > self.last_scan_s {
                self.expire_nonces(now_s);
            }
            if self.nonces.len() >= self.limits.nonces {
                return None;
            }
            self.nonces.insert(
                nonce,
                Pending {
                    first_seen_s: now_s,
                    resolvers: [None; MAX_RESOLVERS_PER_NONCE],
                    session: None,
                },
            );
        }
        self.nonces.get_mut(&nonce)
    }

    fn expire_nonces(&mut self, now_s: u64) {
        self.last_scan_s = now_s;
        let ttl = self.limits.nonce_ttl_s;
        self.nonces
            .retain(|_, p| p.first_seen_s.saturating_add(ttl) > now_s);
    }

    /// Forget nonces past their time and counts older than the window.
    pub fn prune(&mut self, now: SystemTime, config: &ResolverMapConfig) {
        let now_s = unix_secs(now);
        self.expire_nonces(now_s);
        self.counts.prune(oldest_hour(now_s, config.window_h));
    }

    /// The map for the window ending at `now`.
    pub fn build(&self, now: SystemTime, config: &ResolverMapConfig) -> ResolverMap {
        let oldest = oldest_hour(unix_secs(now), config.window_h);
        let mut map = HashMap::new();
        for (resolver, hours) in &self.counts.resolvers {
            if let Some(mapped) = decide(hours.iter().filter(|h| h.hour >= oldest), config) {
                map.insert(*resolver, mapped);
            }
        }
        ResolverMap { map }
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            nonces: self.nonces.len(),
            resolvers: self.counts.resolvers.len(),
            cells: self.counts.cells,
            ..self.stats
        }
    }
}

/// The first hour inside a window of `window_h` hours ending in the current hour.
fn oldest_hour(now_s: u64, window_h: u32) -> u64 {
    (now_s / 3600).saturating_sub(u64::from(window_h.max(1)) - 1)
}

/// Whether one resolver's hours map it, and how.
fn decide<'h>(hours: impl Iterator<Item = &'h Hour>, config: &ResolverMapConfig) -> Option<Mapped> {
    let mut total = 0u64;
    // The window's sums, per group (no caps: each hour's are already bounded).
    let mut groups: Vec<GroupCount> = Vec::new();
    for hour in hours {
        total += hour.other;
        for g in &hour.groups {
            total += g.sessions;
            let at = match groups.iter().position(|x| x.group == g.group) {
                Some(i) => i,
                None => {
                    groups.push(GroupCount {
                        group: g.group,
                        sessions: 0,
                        networks: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let sum = &mut groups[at];
            sum.sessions += g.sessions;
            for (net, n) in &g.networks {
                match sum.networks.iter().position(|(x, _)| x == net) {
                    Some(i) => sum.networks[i].1 += n,
                    None => sum.networks.push((*net, *n)),
                }
            }
        }
    }
    if total < config.min_sessions {
        return None;
    }
    // Most sessions first; ties broken by the group, so the map does not depend on order.
    let dominant = groups
        .into_iter()
        .min_by_key(|g| (Reverse(g.sessions), g.group))?;
    let share = dominant.sessions as f64 / total as f64;
    if !dominant.group.located() || share < config.min_share {
        return None;
    }
    let (network, _) = dominant
        .networks
        .into_iter()
        .min_by_key(|(net, n)| (Reverse(*n), *net))?;
    Some(Mapped {
        steer_as: network.network(),
        network,
        group: dominant.group,
        share,
        sessions: total,
        group_sessions: dominant.sessions,
    })
}

#[cfg(test)]
mod tests;
