//! Inputs to the compiles: health (operator overrides, measured transitions, halted ramps),
//! probe performance, real-user windows and the resolver map. Overrides and halted ramps are
//! written through the measurement store, so a restart keeps them ([`restore`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Controller, State};
use crate::health::{self, HealthView};
use crate::perf::{PerfView, RumView};
use crate::policy::{self, Policy};
use crate::rum::nonce_log::NonceLog;
use crate::rum::resolver_map::{ResolverMap, ResolverMapConfig};
use crate::store::{Durable, StoredOverride};

/// What the measurement store kept, as (measured, overrides): the views a starting
/// controller compiles its first snapshot with.
pub(super) fn restored(durable: &Durable) -> (HealthView, HealthView) {
    let (mut measured, mut overrides) = (HealthView::default(), HealthView::default());
    for (target, o) in &durable.overrides {
        let Some(s) = parse_state(&o.state) else {
            warn!(target, state = %o.state, "ignoring a stored override with an unknown state");
            continue;
        };
        let since = UNIX_EPOCH + Duration::from_millis(o.since_ms);
        overrides.set(target, s, true, since);
    }
    for target in &durable.halted_ramps {
        measured.halt_ramp(target);
    }
    if !durable.overrides.is_empty() || !durable.halted_ramps.is_empty() {
        info!(
            overrides = durable.overrides.len(),
            halted_ramps = durable.halted_ramps.len(),
            "health overrides and halted ramps restored"
        );
    }
    (measured, overrides)
}

fn parse_state(s: &str) -> Option<health::State> {
    match s {
        "up" => Some(health::State::Up),
        "down" => Some(health::State::Down),
        "unknown" => Some(health::State::Unknown),
        _ => None,
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Controller {
    /// Record a ramp's halt (or resume) in the measurement store; a failure is logged, the
    /// change still applies here.
    fn persist_halted(&self, target: &str, halted: bool) {
        if let Err(e) = self.measurements.set_halted(target, halted) {
            error!(%e, target, halted, "could not store the ramp state; a restart may forget it");
        }
    }

    /// Set (or with `None`, clear) a target's health as an operator override, recompile the
    /// policies that use it, publish. Returns the new generation.
    pub fn set_health(&self, target: &str, state_now: Option<health::State>) -> u64 {
        let mut state = self.lock();
        match state_now {
            Some(s) => state.overrides.set(target, s, true, SystemTime::now()),
            None => state.overrides.clear(target),
        }
        let stored = state.overrides.get(target).map(|h| StoredOverride {
            state: h.state.to_string(),
            since_ms: unix_ms(h.since),
        });
        if let Err(e) = self.measurements.set_override(target, stored) {
            error!(%e, target, "could not store the health override; a restart may forget it");
        }
        refresh_health(&mut state);
        info!(target, state = ?state_now, "health override");
        self.recompile(&mut state, |p| p.targets.iter().any(|t| t.id == target))
    }

    /// Apply measured health transitions (from the monitor): recompile the policies that name
    /// those targets, publish once.
    pub fn apply_measured(&self, transitions: &[crate::health::tracker::Transition]) -> u64 {
        let mut state = self.lock();
        let now = SystemTime::now();
        for t in transitions {
            state.measured.set(&t.target, t.to, false, now);
            let ramping = state
                .policies
                .values()
                .flat_map(|e| ramps(&e.steered.policy))
                .any(|(id, ramp)| id == t.target && ramp.in_progress(now));
            if t.to == health::State::Down && ramping {
                warn!(target = %t.target, "target went down during its ramp: ramp halted at 0% until the policy is edited");
                state.measured.halt_ramp(&t.target);
                self.persist_halted(&t.target, true);
            }
        }
        refresh_health(&mut state);
        self.recompile(&mut state, |p| {
            p.targets
                .iter()
                .any(|x| transitions.iter().any(|t| t.target == x.id))
        })
    }

    /// Replace the probe measurements (the RUM part stays) and recompile the policies with a
    /// performance step that reads probes.
    pub fn set_perf(&self, perf: PerfView) -> u64 {
        let mut state = self.lock();
        if state.perf.same_probes(&perf) {
            // The monitor refreshes on a timer; no new data must not mean a new generation.
            return self.published.load().generation;
        }
        state.perf.set_probes(&perf);
        self.recompile(&mut state, |p| {
            p.chain.iter().any(|s| {
                matches!(s, policy::Step::Performance(p) if p.source != policy::kinds::performance::Source::Rum)
            })
        })
    }

    /// Replace the real-user measurements (the probe part stays): carry the regional
    /// hold-downs and incumbents over, and recompile the policies that steer by RUM.
    /// `min_attempts`: fetches a region needs before its failure rate counts.
    pub fn set_rum(&self, mut rum: RumView, min_attempts: u64) -> u64 {
        let mut state = self.lock();
        let now = SystemTime::now();
        rum.settle(
            state.perf.rum(),
            min_attempts,
            state.config.health.hold_down,
            now,
        );
        if rum == *state.perf.rum() {
            return self.published.load().generation;
        }
        state.perf.set_rum(rum);
        self.recompile(&mut state, Policy::uses_rum)
    }

    pub fn health(&self) -> HealthView {
        self.lock().health.clone()
    }

    /// Replace the resolver map and publish, unless it is unchanged. Nothing is recompiled:
    /// queries look the map up before they decide.
    pub fn set_resolver_map(&self, map: ResolverMap) -> u64 {
        let mut state = self.lock();
        if *state.resolver_map == map {
            return self.published.load().generation;
        }
        let size = map.len();
        state.resolver_map = Arc::new(map);
        match self.publish(&state) {
            Ok(generation) => {
                tracing::debug!(generation, resolvers = size, "resolver map published");
                generation
            }
            Err(e) => {
                warn!(%e, "could not publish the resolver map");
                self.published.load().generation
            }
        }
    }

    /// The nonce log and `[rum.resolver_map]`, when a RUM zone is configured.
    pub fn resolver_mapping(&self) -> Option<(Arc<NonceLog>, ResolverMapConfig)> {
        let state = self.lock();
        let log = state.nonce_log.clone()?;
        let rum = state.config.rum.as_ref()?;
        Some((log, rum.resolver_map))
    }
}

/// Recompute the view compiles read from its sources, carrying recoveries over
/// ([`HealthView::settle`]).
pub(super) fn refresh_health(state: &mut State) {
    let next = state.measured.overlay(&state.overrides);
    state.health = next.settle(&state.health, SystemTime::now());
}

/// An edited policy resumes its halted ramps (editing is how an operator says "go on").
/// Returns whether any was halted.
pub(super) fn resume_ramps(
    controller: &Controller,
    state: &mut State,
    policy: &Policy,
    key: &str,
) -> bool {
    let halted: Vec<String> = ramps(policy)
        .map(|(id, _)| id.to_owned())
        .filter(|id| state.measured.ramp_halted(id))
        .collect();
    for id in &halted {
        state.measured.resume_ramp(id);
        controller.persist_halted(id, false);
    }
    if !halted.is_empty() {
        refresh_health(state);
        info!(policy = %key, targets = ?halted, "halted ramps resumed by the edit");
    }
    !halted.is_empty()
}

/// The guarded ramps of a policy: (target id, ramp).
fn ramps(policy: &Policy) -> impl Iterator<Item = (&str, &crate::policy::kinds::weighted::Ramp)> {
    policy.chain.iter().filter_map(move |s| match s {
        policy::Step::Weighted(w) => w
            .ramp
            .as_ref()
            .map(|r| (policy.target(r.target).id.as_str(), r)),
        _ => None,
    })
}

/// How often real-user windows are folded into the decision inputs. Beacons arrive all the
/// time; one recompile a second at most bounds the cost, and minute windows move slower.
pub const RUM_INTERVAL: Duration = Duration::from_secs(1);
/// Fetches a region needs before its failure rate counts against a target there.
pub const RUM_MIN_ATTEMPTS: u64 = 20;

/// Until cancelled: every [`RUM_INTERVAL`], hand the collector's merged windows to the
/// controller, which recompiles the RUM-steered names when they changed.
pub async fn feed_rum(
    controller: Arc<Controller>,
    collector: Arc<crate::rum::collector::Collector>,
    max_failure_rate: f64,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(RUM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (controller, collector) = (controller.clone(), collector.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let rum = RumView {
                buckets: collector.view(SystemTime::now()),
                max_failure_rate,
                ..RumView::default()
            };
            controller.set_rum(rum, RUM_MIN_ATTEMPTS)
        })
        .await;
    }
}
