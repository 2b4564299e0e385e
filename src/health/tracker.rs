//! From probe results to measured health: per (target, agent location) verdicts with
//! hysteresis, then a quorum across locations per target.
//!
//! A location says **down** when any criterion trips: `down_after_failures` consecutive
//! failures (the fast path: with 1 s probes a dead endpoint is down after about 2 s), or over
//! the window availability below `min_availability`, p95 latency above `p95_factor` × its
//! baseline, or an error rate above `max_error_rate` in each of the last `error_rate_minutes`
//! minutes (the window criteria apply while up, counted from the last recovery, so a finished
//! outage does not keep it down). It says **up** again only after `up_after_successes`
//! consecutive successes and a run of successes at least `hold_down` long; a reporting gap does
//! not shorten it. An agent that has not reported for `stale_after` is **unknown**, never
//! healthy; a target that was down stays down while nobody reports. A target is down when at
//! least `quorum` locations (default: a majority of those reporting) or `unreachable_from`
//! locations say so. Pure: time comes in as an argument.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::State;
use crate::perf::{PerfView, Region, Stats};

/// One probe observation, as the tracker needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub target: String,
    pub agent: String,
    pub at: SystemTime,
    pub ok: bool,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub down_after_failures: u32,
    pub up_after_successes: u32,
    pub hold_down: Duration,
    pub stale_after: Duration,
    pub window: Duration,
    /// Availability and error-rate criteria need at least this many samples in the window, so
    /// one failure among a handful of slow probes does not take a target down.
    pub min_samples: usize,
    pub min_availability: f64,
    pub p95_factor: f64,
    pub max_error_rate: f64,
    pub error_rate_minutes: u32,
    /// 0: a majority of the locations reporting.
    pub quorum: usize,
    pub unreachable_from: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            down_after_failures: 2,
            up_after_successes: 3,
            hold_down: Duration::from_secs(30),
            stale_after: Duration::from_secs(5),
            window: Duration::from_secs(300),
            min_samples: 100,
            min_availability: 0.995,
            p95_factor: 2.0,
            max_error_rate: 0.01,
            error_rate_minutes: 3,
            quorum: 0,
            unreachable_from: 3,
        }
    }
}

/// A target's measured state changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub target: String,
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// Per-minute summary, for the error-rate criterion and the latency baseline.
#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    minute: u64,
    samples: u32,
    errors: u32,
    p95_ms: f64,
}

/// How many minutes of history feed the latency baseline.
const BASELINE_MINUTES: usize = 60;
/// The baseline needs this many minutes before the window to exist at all.
const BASELINE_MIN_MINUTES: usize = 10;
/// Hard cap on samples kept per (target, agent), whatever the window and interval.
const MAX_SAMPLES: usize = 10_000;

#[derive(Debug)]
struct Location {
    samples: VecDeque<(SystemTime, bool, f64)>,
    minutes: VecDeque<Minute>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_seen: SystemTime,
    state: State,
    /// Set while the location is (or, across a reporting gap, was last) down; cleared on up.
    down_since: Option<SystemTime>,
    /// Start of the current run of successes (for the hold-down).
    healthy_since: Option<SystemTime>,
    /// The window criteria only look at samples from here on: after a recovery the outage
    /// that caused it must not keep the location down until it ages out of the window.
    judged_from: SystemTime,
    reason: String,
}

impl Location {
    fn new(now: SystemTime) -> Self {
        Location {
            samples: VecDeque::new(),
            minutes: VecDeque::new(),
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_seen: now,
            state: State::Unknown,
            down_since: None,
            healthy_since: None,
            judged_from: UNIX_EPOCH,
            reason: "no data yet".into(),
        }
    }

    fn record(&mut self, o: &Observation, received: SystemTime, window: Duration) {
        self.last_seen = received;
        if o.ok {
            self.consecutive_successes += 1;
            self.consecutive_failures = 0;
            self.healthy_since.get_or_insert(received);
        } else {
            self.consecutive_failures += 1;
            self.consecutive_successes = 0;
            self.healthy_since = None;
        }
        self.samples.push_back((o.at, o.ok, o.latency_ms));
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        let horizon = received.checked_sub(window).unwrap_or(UNIX_EPOCH);
        while self.samples.front().is_some_and(|(at, _, _)| *at < horizon) {
            self.close_minute();
        }
    }

    /// Move the oldest sample out of the window, into its minute's summary.
    fn close_minute(&mut self) {
        let Some((at, ok, latency)) = self.samples.pop_front() else {
            return;
        };
        let minute = minute_of(at);
        if self.minutes.back().is_none_or(|m| m.minute != minute) {
            self.minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
            while self.minutes.len() > BASELINE_MINUTES {
                self.minutes.pop_front();
            }
        }
        if let Some(m) = self.minutes.back_mut() {
            // A running maximum of successful latencies is a conservative per-minute p95
            // stand-in for minutes summarised one sample at a time.
            m.samples += 1;
            if ok {
                m.p95_ms = m.p95_ms.max(latency);
            } else {
                m.errors += 1;
            }
        }
    }

    /// Why this location should say down now, if it should.
    fn down_reason(&self, t: &Thresholds, now: SystemTime) -> Option<String> {
        if self.consecutive_failures >= t.down_after_failures {
            return Some(format!(
                "{} consecutive failures",
                self.consecutive_failures
            ));
        }
        // While down (or recovering), only the healthy streak and the hold-down decide; the
        // window criteria judge a location again from its recovery on.
        if self.down_since.is_some() {
            return None;
        }
        let judged = || {
            self.samples
                .iter()
                .filter(|(at, _, _)| *at >= self.judged_from)
        };
        let n = judged().count();
        if n >= t.min_samples {
            let ok = judged().filter(|(_, ok, _)| *ok).count();
            let availability = ok as f64 / n as f64;
            if availability < t.min_availability {
                return Some(format!(
                    "availability {:.2}% < {:.2}% over {}s",
                    availability * 100.0,
                    t.min_availability * 100.0,
                    t.window.as_secs()
                ));
            }
            if let (Some(p95), Some(baseline)) = (self.window_p95(), self.baseline_p95())
                && p95 > t.p95_factor * baseline
            {
                return Some(format!(
                    "p95 {p95:.1} ms > {} × baseline {baseline:.1} ms",
                    t.p95_factor
                ));
            }
        }
        // Error rate per recent full minute, from the samples still in the window.
        let minutes = t.error_rate_minutes as u64;
        if minutes > 0 {
            let current = minute_of(now);
            let all_high = (1..=minutes).all(|back| {
                let m = current.saturating_sub(back);
                let (samples, errors) = judged()
                    .filter(|(at, _, _)| minute_of(*at) == m)
                    .fold((0u32, 0u32), |(s, e), (_, ok, _)| {
                        (s + 1, e + u32::from(!ok))
                    });
                samples > 0 && f64::from(errors) / f64::from(samples) > t.max_error_rate
            });
            if all_high && n >= t.min_samples {
                return Some(format!(
                    "error rate above {:.1}% in each of the last {minutes} minutes",
                    t.max_error_rate * 100.0
                ));
            }
        }
        None
    }

    fn window_p95(&self) -> Option<f64> {
        let mut ok: Vec<f64> = self
            .samples
            .iter()
            .filter(|(at, ok, _)| *ok && *at >= self.judged_from)
            .map(|(_, _, l)| *l)
            .collect();
        percentile(&mut ok, 0.95)
    }

    /// The median of the per-minute p95s before the window.
    fn baseline_p95(&self) -> Option<f64> {
        if self.minutes.len() < BASELINE_MIN_MINUTES {
            return None;
        }
        let mut p95s: Vec<f64> = self
            .minutes
            .iter()
            .filter(|m| m.samples > m.errors)
            .map(|m| m.p95_ms)
            .collect();
        percentile(&mut p95s, 0.5).filter(|b| *b > 0.0)
    }

    fn evaluate(&mut self, t: &Thresholds, now: SystemTime) -> State {
        if now.duration_since(self.last_seen).unwrap_or_default() > t.stale_after {
            self.state = State::Unknown;
            self.reason = format!("no report for more than {}s", t.stale_after.as_secs());
            return self.state;
        }
        match self.down_reason(t, now) {
            Some(reason) => {
                if self.state != State::Down {
                    self.down_since = Some(now);
                }
                self.state = State::Down;
                self.reason = reason;
            }
            None => {
                // Healthy without a break for the hold-down, counted from the first success
                // after the last failure. A reporting gap does not reset `down_since`, so it
                // cannot skip the hold-down.
                let held = self.down_since.is_none()
                    || self.healthy_since.is_some_and(|since| {
                        now.duration_since(since).unwrap_or_default() >= t.hold_down
                    });
                let enough = self.consecutive_successes >= t.up_after_successes;
                if enough && held {
                    if self.state != State::Up {
                        self.judged_from = now;
                    }
                    self.state = State::Up;
                    self.down_since = None;
                    self.reason = format!("{} consecutive successes", self.consecutive_successes);
                } else if self.down_since.is_some() {
                    self.state = State::Down;
                    if enough {
                        self.reason = "recovering: in hold-down".into();
                    }
                }
            }
        }
        self.state
    }
}

fn minute_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values.get(index).copied()
}

/// Measured health of every probed target.
#[derive(Debug, Default)]
pub struct Tracker {
    thresholds: Thresholds,
    /// (target, agent) → location state.
    locations: BTreeMap<(String, String), Location>,
    /// target → (state, reason).
    targets: HashMap<String, (State, String)>,
    /// agent → the region its latencies describe (from the config); others count for the world.
    agent_regions: HashMap<String, Vec<Region>>,
}

impl Tracker {
    pub fn new(thresholds: Thresholds, agent_regions: HashMap<String, Vec<Region>>) -> Self {
        Tracker {
            thresholds,
            agent_regions,
            ..Tracker::default()
        }
    }

    /// Take one observation. Results from the future (clock skew beyond a few seconds) or
    /// older than the window are ignored.
    pub fn ingest(&mut self, o: &Observation, now: SystemTime) {
        let too_new = o.at > now + Duration::from_secs(5);
        let too_old = now
            .duration_since(o.at)
            .is_ok_and(|age| age > self.thresholds.window);
        if too_new || too_old {
            return;
        }
        let window = self.thresholds.window;
        self.locations
            .entry((o.target.clone(), o.agent.clone()))
            .or_insert_with(|| Location::new(now))
            .record(o, now, window);
    }

    /// Re-evaluate every location and target; returns the targets whose state changed.
    pub fn evaluate(&mut self, now: SystemTime) -> Vec<Transition> {
        let t = &self.thresholds;
        let mut per_target: BTreeMap<&str, Vec<(State, &str, &str)>> = BTreeMap::new();
        for ((target, agent), location) in &mut self.locations {
            let state = location.evaluate(t, now);
            per_target
                .entry(target)
                .or_default()
                .push((state, agent, &location.reason));
        }
        let mut transitions = Vec::new();
        for (target, verdicts) in per_target {
            let known = verdicts
                .iter()
                .filter(|(s, _, _)| *s != State::Unknown)
                .count();
            let down: Vec<_> = verdicts
                .iter()
                .filter(|(s, _, _)| *s == State::Down)
                .collect();
            let up = verdicts.iter().filter(|(s, _, _)| *s == State::Up).count();
            let quorum = if t.quorum > 0 {
                t.quorum
            } else {
                known / 2 + 1
            };
            let previous = self.targets.get(target).map_or(State::Unknown, |(s, _)| *s);
            let (state, reason) = if known == 0 && previous == State::Down {
                // Silence is not evidence of recovery: stay out until an agent sees it up.
                (
                    State::Down,
                    "no location reporting; last known down".to_owned(),
                )
            } else if known == 0 {
                (State::Unknown, "no location reporting".to_owned())
            } else if down.len() >= quorum || down.len() >= t.unreachable_from {
                let detail: Vec<String> =
                    down.iter().map(|(_, a, r)| format!("{a}: {r}")).collect();
                (
                    State::Down,
                    format!(
                        "down from {} of {known} locations ({})",
                        down.len(),
                        detail.join("; ")
                    ),
                )
            } else if up > 0 {
                (State::Up, format!("up from {up} of {known} locations"))
            } else {
                (State::Unknown, "no location has a verdict yet".to_owned())
            };
            let previous = self.targets.get(target).map_or(State::Unknown, |(s, _)| *s);
            if previous != state {
                transitions.push(Transition {
                    target: target.to_owned(),
                    from: previous,
                    to: state,
                    reason: reason.clone(),
                });
            }
            self.targets.insert(target.to_owned(), (state, reason));
        }
        transitions
    }

    pub fn state(&self, target: &str) -> State {
        self.targets.get(target).map_or(State::Unknown, |(s, _)| *s)
    }

    /// Per target and location: (agent, state, reason), for the API.
    pub fn details(&self) -> Vec<(String, String, State, String)> {
        self.locations
            .iter()
            .map(|((t, a), l)| (t.clone(), a.clone(), l.state, l.reason.clone()))
            .collect()
    }

    /// Per target and location: (target, agent, state), borrowed, for the metrics.
    pub fn verdicts(&self) -> impl Iterator<Item = (&str, &str, State)> {
        self.locations
            .iter()
            .map(|((t, a), l)| (t.as_str(), a.as_str(), l.state))
    }

    /// Latency windows per (target, region) from successful probes: the second performance
    /// signal beside RUM. Agents without a configured region count for the world only.
    pub fn perf(&self) -> PerfView {
        let mut grouped: BTreeMap<(String, Region), (Vec<f64>, usize, usize)> = BTreeMap::new();
        for ((target, agent), location) in &self.locations {
            let mut regions = vec![Region::World];
            regions.extend(self.agent_regions.get(agent).cloned().unwrap_or_default());
            for region in regions {
                let (latencies, ok, n) = grouped.entry((target.clone(), region)).or_default();
                for (_, good, latency) in &location.samples {
                    *n += 1;
                    if *good {
                        *ok += 1;
                        latencies.push(*latency);
                    }
                }
            }
        }
        let mut view = PerfView::default();
        for ((target, region), (latencies, ok, n)) in grouped {
            if n > 0 {
                view.insert(
                    &target,
                    region,
                    Stats::from_samples(&latencies, ok as f64 / n as f64),
                );
            }
        }
        view
    }
}

#[cfg(test)]
mod tests;
