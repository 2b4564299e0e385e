//! Running a policy's chain for one class of clients.
//!
//! The decision compiler calls [`evaluate`] once per distinct location class (and per ASN or
//! CIDR rule), ahead of time; `explain` calls it for one client with a [`Trace`]. Both go
//! through this one function, so an explanation always matches what DNS answers.

use std::fmt;
use std::time::SystemTime;

use ipnet::IpNet;

use super::kinds::geo::ids;
use super::{LastResort, Policy, Step, TargetId};
use crate::geo::Location;
use crate::health::HealthView;
use crate::perf::{Choices, PerfView};

/// Who the chain is evaluated for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    pub location: Option<&'a Location>,
    pub asn: Option<u32>,
    /// The client network as matched against CIDR rules.
    pub cidr: Option<IpNet>,
}

/// Everything besides the policy and the client that a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub health: &'a HealthView,
    pub perf: &'a PerfView,
    pub now: SystemTime,
    /// Where the RUM ranking records what it chose, to be the next compile's incumbents.
    /// `None` when the evaluation must not leave a trace (explanations, previews).
    pub choices: Option<&'a Choices>,
}

/// Why a client got its answer. Shown by explain tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A CIDR rule matched the client network.
    Cidr,
    /// An ASN rule matched.
    Asn,
    /// A continent/country/subdivision rule matched.
    Geo,
    /// No rule matched (or the policy has no geo step).
    Default,
    /// The client is not in the GeoIP data (or gave no usable address).
    NoGeo,
    /// Every candidate was out: the policy's last resort answered.
    AllDownFallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Cidr => "cidr",
            Reason::Asn => "asn",
            Reason::Geo => "geo",
            Reason::Default => "default",
            Reason::NoGeo => "no_geo",
            Reason::AllDownFallback => "all_down_fallback",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The final choice for a class of clients, before the per-network hash.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// In order. Each target takes at most its share (capacity) of the clients not yet
    /// placed; the rest spill to the next. The last takes whatever is left.
    Ranked(Vec<(TargetId, f64)>),
    /// Rendezvous hashing by share (shares sum to 1, capacity limits already applied).
    Weighted(Vec<(TargetId, f64)>),
}

impl Pick {
    /// Whether different client networks of one class can get different answers.
    pub fn needs_hash(&self) -> bool {
        match self {
            Pick::Weighted(shares) => shares.len() > 1,
            Pick::Ranked(ranked) => ranked.len() > 1 && ranked[0].1 < 1.0,
        }
    }

    /// Expected share of answers per target across many client networks.
    pub fn shares(&self) -> Vec<(TargetId, f64)> {
        match self {
            Pick::Weighted(shares) => shares.clone(),
            Pick::Ranked(ranked) => {
                let mut left = 1.0;
                let mut out = Vec::new();
                for (i, (t, cap)) in ranked.iter().enumerate() {
                    let take = if i + 1 == ranked.len() {
                        left
                    } else {
                        left * cap
                    };
                    out.push((*t, take));
                    left -= take;
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub pick: Pick,
    pub reason: Reason,
    /// The geo rule (file position) that decided, if any.
    pub rule: Option<usize>,
    /// When this outcome will change by itself (a hold-down expiring): rebuild then.
    pub next_change: Option<SystemTime>,
}

/// Notes on each step, collected only when explaining.
#[derive(Debug, Default)]
pub struct Trace(Option<Vec<String>>);

impl Trace {
    pub fn off() -> Self {
        Trace(None)
    }

    pub fn on() -> Self {
        Trace(Some(Vec::new()))
    }

    /// The closure runs only when tracing, so compiling pays nothing for explanations.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.0 {
            lines.push(line());
        }
    }

    pub fn into_lines(self) -> Vec<String> {
        self.0.unwrap_or_default()
    }
}

/// `2026-12-02T03:04:05Z`: how notes name a moment (explain output is read by people and
/// compared across nodes, so UTC and whole seconds).
pub fn utc(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Run the chain: all targets → each step → caps → the pick; the last resort if nothing is left.
pub fn evaluate(policy: &Policy, client: &Client, inputs: &Inputs, trace: &mut Trace) -> Outcome {
    let mut candidates: Vec<TargetId> = (0..policy.targets.len())
        .map(|i| TargetId(i as u16))
        .collect();
    let mut reason = Reason::Default;
    let mut rule = None;
    let mut next_change = None;
    let mut selected: Option<Pick> = None;
    // A conclusive performance ranking decides; selectors after it are its fallback only.
    let mut ranked_by_performance = false;

    for step in &policy.chain {
        match step {
            Step::Up => {
                let before = candidates.len();
                candidates.retain(|t| !inputs.health.is_down(&policy.target(*t).id));
                if candidates.len() != before {
                    trace.note(|| {
                        format!(
                            "up: {} left after dropping down targets",
                            ids(policy, &candidates)
                        )
                    });
                }
            }
            Step::Geo(geo) => (reason, rule) = geo.apply(policy, client, &mut candidates, trace),
            Step::Performance(p) => {
                let change;
                (ranked_by_performance, change) =
                    p.apply(policy, client, inputs, &mut candidates, trace);
                next_change = earliest(next_change, change);
            }
            _ if ranked_by_performance => {
                trace.note(|| format!("{}: skipped (performance decided)", step.kind()));
            }
            Step::Weighted(w) => {
                if !candidates.is_empty() {
                    let (shares, change) =
                        w.shares_now(policy, &candidates, inputs.health, inputs.now, trace);
                    next_change = earliest(next_change, change);
                    selected = Some(Pick::Weighted(shares));
                }
            }
            Step::Failover(f) => {
                candidates = f.rank(policy, &candidates, inputs.health);
                trace.note(|| format!("failover: {}", ids(policy, &candidates)));
            }
            Step::ActivePassive(ap) => {
                let (ranked, change) =
                    ap.rank(policy, &candidates, inputs.health, inputs.now, trace);
                candidates = ranked;
                next_change = earliest(next_change, change);
            }
        }
        if candidates.is_empty() {
            break;
        }
    }

    let pick = match selected {
        Some(pick) => cap_weighted(policy, pick),
        None if candidates.is_empty() => {
            reason = Reason::AllDownFallback;
            let fallback = match policy.last_resort {
                LastResort::All => (0..policy.targets.len())
                    .map(|i| (TargetId(i as u16), 1.0))
                    .collect(),
                LastResort::Target(t) => vec![(t, 1.0)],
            };
            trace.note(|| "no candidate left: last resort".into());
            Pick::Ranked(fallback)
        }
        None => Pick::Ranked(
            candidates
                .iter()
                .map(|t| (*t, policy.target(*t).max_share))
                .collect(),
        ),
    };
    Outcome {
        pick,
        reason,
        rule,
        next_change,
    }
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Water-filling: shares above a target's `max_share` are cut to it and the excess goes to the
/// others in proportion, until nothing is over (or everyone is capped).
fn cap_weighted(policy: &Policy, pick: Pick) -> Pick {
    let Pick::Weighted(mut shares) = pick else {
        return pick;
    };
    for _ in 0..shares.len() {
        let cap = |t: TargetId| policy.target(t).max_share;
        let excess: f64 = shares.iter().map(|(t, s)| (s - cap(*t)).max(0.0)).sum();
        if excess <= 1e-12 {
            break;
        }
        let room: f64 = shares
            .iter()
            .filter(|(t, s)| *s < cap(*t))
            .map(|(_, s)| s)
            .sum();
        if room <= 0.0 {
            break;
        }
        for (t, s) in &mut shares {
            if *s >= cap(*t) {
                *s = cap(*t);
            } else {
                *s += excess * (*s / room);
            }
        }
    }
    Pick::Weighted(shares)
}

#[cfg(test)]
mod utc_tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_formats_known_instants() {
        let at = |s: u64| super::utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century leap year) 23:59:59.
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(at(1_796_180_645), "2026-12-02T03:04:05Z");
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
