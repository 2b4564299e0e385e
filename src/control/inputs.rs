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
    let views = views_of(durable);
    if !durable.overrides.is_empty() || !durable.halted_ramps.is_empty() {
        info!(
            overrides = durable.overrides.len(),
            halted_ramps = durable.halted_ramps.len(),
            "health overrides and halted ramps restored"
        );
    }
    views
}

/// The state's overrides and halted ramps in their stored form.
fn durable_of(state: &State) -> Durable {
    Durable {
        overrides: state
            .overrides
            .iter()
            .map(|(t, h)| {
                (
                    t.to_owned(),
                    StoredOverride {
                        state: h.state.to_string(),
                        since_ms: unix_ms(h.since),
                    },
                )
            })
            .collect(),
        halted_ramps: state.measured.halted_ramps().map(str::to_owned).collect(),
    }
}

fn views_of(durable: &Durable) -> (HealthView, HealthView) {
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
    /// Take the measurement store's overrides and halted ramps (another fleet node may have
    /// changed them): recompile the policies naming the targets that changed, publish.
    /// Unchanged: nothing happens. A store that cannot be read changes nothing.
    pub fn reload_measurements(&self) -> Result<u64, String> {
        // Not between another writer's store write and its install here (see `edits`).
        let _edit = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let durable = self.measurements.load().map_err(|e| e.to_string())?;
        let mut state = self.lock();
        let current = durable_of(&state);
        if current == durable {
            return Ok(self.published.load().generation);
        }
        let mut changed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for t in current.overrides.keys().chain(durable.overrides.keys()) {
            if current.overrides.get(t) != durable.overrides.get(t) {
                changed.insert(t.clone());
            }
        }
        changed.extend(
            current
                .halted_ramps
                .symmetric_difference(&durable.halted_ramps)
                .cloned(),
        );
        let (_, overrides) = views_of(&durable);
        state.overrides = overrides;
        for t in &current.halted_ramps {
            state.measured.resume_ramp(t);
        }
        for t in &durable.halted_ramps {
            state.measured.halt_ramp(t);
        }
        refresh_health(&mut state);
        info!(targets = ?changed, "overrides or halted ramps changed in the store");
        for t in &changed {
            let message = match state.overrides.get(t) {
                Some(h) => format!("operator override: {}", h.state),
                None if current.overrides.contains_key(t) => "override cleared".to_owned(),
                None => "ramp halt changed".to_owned(),
            };
            self.note(
                crate::events::Kind::Health,
                t,
                &message,
                "changed in the shared store (another node)",
            );
        }
        Ok(self.recompile(&mut state, |p| {
            p.targets.iter().any(|t| changed.contains(&t.id))
        }))
    }

    /// Record resumed ramps in the measurement store (after the state lock is released).
    pub(super) fn persist_resumed(&self, targets: &[String]) {
        for t in targets {
            self.persist_halted(t, false);
        }
    }

    /// Record a ramp's halt (or resume) in the measurement store; a failure is logged, the
    /// change still applies here. Never called with the state lock held.
    fn persist_halted(&self, target: &str, halted: bool) {
        if let Err(e) = self.measurements.set_halted(target, halted) {
            error!(%e, target, halted, "could not store the ramp state; a restart may forget it");
        }
    }

    /// Set (or with `None`, clear) a target's health as an operator override, recompile the
    /// policies that use it, publish. Returns the new generation. The override is stored
    /// first: if the measurement store cannot take it, nothing changes and the error says so
    /// (an override that a restart, or the rest of the fleet, would not know is refused).
    pub fn set_health(
        &self,
        target: &str,
        state_now: Option<health::State>,
    ) -> Result<u64, super::EditError> {
        let _edit = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        // Stored first, without the state lock (the store may be on the network).
        let since = self
            .lock()
            .overrides
            .get(target)
            .filter(|h| Some(h.state) == state_now)
            .map_or(now, |h| h.since);
        let stored = state_now.map(|s| StoredOverride {
            state: s.to_string(),
            since_ms: unix_ms(since),
        });
        if let Err(e) = self.measurements.set_override(target, stored) {
            error!(%e, target, "could not store the health override; nothing changed");
            return Err(super::EditError::Unavailable(e.to_string()));
        }
        let mut state = self.lock();
        match state_now {
            Some(s) => state.overrides.set(target, s, true, now),
            None => state.overrides.clear(target),
        }
        refresh_health(&mut state);
        info!(target, state = ?state_now, "health override");
        let message = match state_now {
            Some(s) => format!("operator override: {s}"),
            None => "override cleared".to_owned(),
        };
        self.note(crate::events::Kind::Health, target, &message, "admin API");
        Ok(self.recompile(&mut state, |p| p.targets.iter().any(|t| t.id == target)))
    }

    /// Apply measured health transitions (from the monitor): recompile the policies that name
    /// those targets, publish once.
    pub fn apply_measured(&self, transitions: &[crate::health::tracker::Transition]) -> u64 {
        // A halt is stored after the install: keep a store reload from undoing it between.
        let _edit = transitions
            .iter()
            .any(|t| t.to == health::State::Down)
            .then(|| self.edits.lock().unwrap_or_else(|p| p.into_inner()));
        let mut state = self.lock();
        let now = SystemTime::now();
        let mut halted = Vec::new();
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
                halted.push(t.target.clone());
            }
        }
        refresh_health(&mut state);
        for t in transitions {
            let ramp = if halted.contains(&t.target) {
                "; its ramp is halted at 0% until the policy is edited"
            } else {
                ""
            };
            self.note(
                crate::events::Kind::Health,
                &t.target,
                &format!("{} → {}{ramp}", t.from, t.to),
                &t.reason,
            );
        }
        if transitions.len() > 1 {
            let all: Vec<String> = transitions
                .iter()
                .map(|t| format!("{} {} → {}", t.target, t.from, t.to))
                .collect();
            self.set_cause(all.join("; "));
        }
        let generation = self.recompile(&mut state, |p| {
            p.targets
                .iter()
                .any(|x| transitions.iter().any(|t| t.target == x.id))
        });
        drop(state);
        for t in &halted {
            self.persist_halted(t, true);
        }
        generation
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
        self.set_cause("new probe latency windows".into());
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
        self.set_cause("new real-user measurements".into());
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
/// Returns the targets resumed, for [`Controller::persist_resumed`] once the lock is released.
pub(super) fn resume_ramps(state: &mut State, policy: &Policy, key: &str) -> Vec<String> {
    let halted: Vec<String> = ramps(policy)
        .map(|(id, _)| id.to_owned())
        .filter(|id| state.measured.ramp_halted(id))
        .collect();
    for id in &halted {
        state.measured.resume_ramp(id);
    }
    if !halted.is_empty() {
        refresh_health(state);
        info!(policy = %key, targets = ?halted, "halted ramps resumed by the edit");
    }
    halted
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
