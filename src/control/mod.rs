//! The control plane: turn configuration, policies, health and measurements into published
//! snapshots, and apply every change (reload, file watch, API edit, health flip, hold-down
//! expiry) by recompiling only what it touches.
//!
//! All writers go through one [`Controller`], which serialises them with a mutex that queries
//! never see: queries read the published snapshot. That mutex is never held across a store
//! call: a store on the network (Redis) may stall, and the control loop takes the mutex on
//! the runtime's threads, which the store's own I/O needs. A change that fails validation is refused
//! with file, field and reason, and the last good snapshot keeps serving. What must outlive
//! the process goes through the stores (`crate::store`): policies through a
//! [`PolicyStore`], which also decides compare-and-set, and health overrides and halted ramps
//! through a [`MeasurementStore`].
//!
//! One idea per file: [`load`] (config, zones, GeoIP and policies into a state; reloads),
//! [`edit`] (policy edits and their preconditions), [`inputs`] (health, probe and RUM
//! measurements, the resolver map), [`watch`] (the background loop: SIGHUP, change notices,
//! timed recompiles), `timeline` (what changed and why, into the [`crate::events`] ring). This file holds the state, publishing and recompiling. Depends on
//! `config`, `zone`, `policy`, `geo`, `health`, `perf`, `rum`, `snapshot`, `store`, `preview`.

mod edit;
mod inputs;
mod load;
mod timeline;
mod watch;

pub use edit::{etag, policy_key};
pub use inputs::{RUM_INTERVAL, RUM_MIN_ATTEMPTS, feed_rum};
pub use load::{build_snapshot, diff_files};
pub use watch::{Hangup, PolicyWatch, hangup, run, watch};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use crate::config::{Config, PolicySource};
use crate::geo::GeoDb;
use crate::health::HealthView;
use crate::perf::{Choices, PerfView, Region};
use crate::policy::{Inputs, Policy};
use crate::preview::Preview;
use crate::rum::init_zone::InitZone;
use crate::rum::nonce_log::NonceLog;
use crate::rum::resolver_map::ResolverMap;
use crate::snapshot::{Published, Snapshot, Steered};
use crate::store::timed::{self, StoreMetrics};
use crate::store::{MeasurementStore, PolicyDir, PolicyStore, StateFile, state_file};
use crate::zone::Zones;

/// Every problem found while loading, each naming its file and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<String>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// How the running server gets its configuration again on reload.
#[derive(Debug, Clone)]
pub enum ConfigOrigin {
    Demo,
    File(PathBuf),
}

impl ConfigOrigin {
    pub fn load(&self) -> Result<Config, LoadErrors> {
        match self {
            ConfigOrigin::Demo => Ok(crate::demo::config()),
            ConfigOrigin::File(path) => {
                Config::load(path).map_err(|e| LoadErrors(vec![e.to_string()]))
            }
        }
    }
}

/// Why an edit was refused. The API maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no policy named {0}")]
    NotFound(String),
    #[error("{0} exists: send If-Match with its ETag to replace it")]
    PreconditionRequired(String),
    #[error("the policy changed since you read it (current ETag {current})")]
    PreconditionFailed { current: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotEditable(String),
    #[error("{0}")]
    Storage(String),
    /// The shared store cannot be reached: nothing was written (503).
    #[error("the policy store is unavailable, nothing was written: {0}")]
    Unavailable(String),
}

/// What the editor asserts about the current version (optimistic concurrency).
#[derive(Debug, Clone, Default)]
pub struct Precondition {
    /// `If-Match`: the ETag the editor read.
    pub if_match: Option<String>,
    /// `If-None-Match: *`: create only.
    pub if_none_match: bool,
}

/// An accepted (or previewed) edit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EditOutcome {
    pub name: String,
    /// The new ETag; `None` after a delete.
    pub etag: Option<String>,
    /// The generation serving the change (`None` for a dry run).
    pub generation: Option<u64>,
    pub created: bool,
    pub preview: Preview,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyInfo {
    pub name: String,
    pub etag: String,
    pub source: String,
}

struct Entry {
    text: String,
    etag: String,
    steered: Arc<Steered>,
}

struct State {
    config: Config,
    geo: Arc<GeoDb>,
    zones: Arc<Zones>,
    /// By key: the name, lower case, without the trailing dot (also the file stem).
    policies: BTreeMap<String, Entry>,
    /// What compiles read: `measured` with `overrides` on top.
    health: HealthView,
    measured: HealthView,
    overrides: HealthView,
    perf: PerfView,
    /// (policy, region) → what that RUM ranking chose at the policy's last compile. Copied
    /// into `perf`'s incumbents just before the policy compiles again, so the snapshot holds,
    /// per policy, the incumbents its serving table was compiled against: explanations re-run
    /// exactly that ranking ("beats incumbent …" at the switch, not after it).
    rum_choices: HashMap<(String, Region), String>,
    /// Which resolvers are located as their users (from `rum::task`).
    resolver_map: Arc<ResolverMap>,
    /// The log nonce queries go to; made when a RUM zone is first configured and kept across
    /// reloads, so no sighting is lost to one.
    nonce_log: Option<Arc<NonceLog>>,
    init_zone: Option<Arc<InitZone>>,
    /// Where policies are read and written; `None` for the embedded demo's compiled-in ones.
    policy_store: Option<Arc<dyn PolicyStore>>,
}

/// The stores a controller writes through. `None` fields take the single-node default the
/// config implies: its policy directory, and a state file inside it (memory only for the
/// embedded demo).
#[derive(Clone, Default)]
pub struct Stores {
    pub policies: Option<Arc<dyn PolicyStore>>,
    pub measurements: Option<Arc<dyn MeasurementStore>>,
    /// Where store calls are timed: given stores are wrapped by whoever gives them
    /// ([`crate::store::timed`]); the defaults below are wrapped here.
    pub metrics: Arc<StoreMetrics>,
}

impl Stores {
    /// The policy store for `config`: the given one, or its policy directory.
    fn policies_for(&self, config: &Config) -> Option<Arc<dyn PolicyStore>> {
        if let Some(store) = &self.policies {
            return Some(store.clone());
        }
        match &config.policies {
            PolicySource::Dir(dir) => Some(timed::timed_policies(
                Arc::new(PolicyDir::new(dir)),
                timed::Store::Files,
                &self.metrics,
            )),
            PolicySource::Embedded(_) => None,
        }
    }

    fn measurements_for(&self, config: &Config) -> Result<Arc<dyn MeasurementStore>, LoadErrors> {
        if let Some(store) = &self.measurements {
            return Ok(store.clone());
        }
        let store: Arc<dyn MeasurementStore> = match &config.policies {
            PolicySource::Dir(dir) => Arc::new(
                StateFile::open(&dir.join(state_file::FILE_NAME))
                    .map_err(|e| LoadErrors(vec![e.to_string()]))?,
            ),
            PolicySource::Embedded(_) => Arc::new(StateFile::memory()),
        };
        Ok(timed::timed_measurements(
            store,
            timed::Store::Memory,
            &self.metrics,
        ))
    }
}

pub struct Controller {
    origin: ConfigOrigin,
    published: Arc<Published>,
    state: Mutex<State>,
    /// Rung by every publish. A publish can create or move the earliest timed change (a
    /// health flip starts a hold-down, an edit adds a ramp), and the control loop sleeps until
    /// the earliest one it knew of: without this it would sleep past the new deadline.
    rescheduled: tokio::sync::Notify,
    stores: Stores,
    measurements: Arc<dyn MeasurementStore>,
    /// Serialises this node's store writes (edits, overrides, halts) with its store reloads,
    /// without holding `state` across store calls: a reload's listing cannot predate a write
    /// it then installs over. Always taken before `state`, never on a runtime thread.
    edits: Mutex<()>,
    /// Recent changes and their reasons, for the dashboard's timeline.
    events: Arc<crate::events::Events>,
    /// What the next publication's moves are attributed to (set by each entry point while it
    /// holds the state lock, so it is the change being published).
    cause: Mutex<String>,
}

impl State {
    /// Compile one policy against the current inputs. Its RUM rankings' choices become the
    /// incumbents its next compile must be beaten against (hysteresis).
    fn compile(&mut self, policy: Policy) -> Steered {
        let (steered, choices) = self.compile_noting(policy);
        self.keep_choices(&steered.policy, choices);
        steered
    }

    /// Compile without keeping the choices yet (an edit keeps them once it is written).
    fn compile_noting(&mut self, policy: Policy) -> (Steered, Choices) {
        let name = policy.name.to_string();
        let incumbents = &mut self.perf.rum_mut().incumbents;
        incumbents.retain(|(p, _), _| *p != name);
        incumbents.extend(
            self.rum_choices
                .iter()
                .filter(|((p, _), _)| *p == name)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let choices = Choices::default();
        let inputs = Inputs {
            health: &self.health,
            perf: &self.perf,
            now: SystemTime::now(),
            choices: Some(&choices),
        };
        (Steered::compile(policy, &self.geo, &inputs), choices)
    }

    fn keep_choices(&mut self, policy: &Policy, choices: Choices) {
        let name = policy.name.to_string();
        self.rum_choices.retain(|(p, _), _| *p != name);
        self.rum_choices.extend(choices.into_inner());
    }
}

/// Milliseconds since `start`, for the timings the control plane logs.
fn ms(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

impl Controller {
    /// Load everything and publish generation 1. Fails on any error: a server never starts
    /// half-configured.
    pub fn start(config: Config, origin: ConfigOrigin) -> Result<Self, LoadErrors> {
        Self::start_with(config, origin, Stores::default())
    }

    /// [`Controller::start`] writing through `stores`. Health overrides and halted ramps the
    /// measurement store kept are in force from the first snapshot.
    pub fn start_with(
        config: Config,
        origin: ConfigOrigin,
        stores: Stores,
    ) -> Result<Self, LoadErrors> {
        if let (PolicySource::Dir(dir), None) = (&config.policies, &stores.policies) {
            PolicyDir::new(dir).clean_temp_files();
        }
        let measurements = stores.measurements_for(&config)?;
        let durable = measurements
            .load()
            .map_err(|e| LoadErrors(vec![e.to_string()]))?;
        let policy_store = stores.policies_for(&config);
        let (measured, overrides) = inputs::restored(&durable);
        let health = measured
            .overlay(&overrides)
            .settle(&HealthView::default(), SystemTime::now());
        let mut state = load::load_state(config, health, PerfView::default(), None, policy_store)?;
        state.measured = measured;
        state.overrides = overrides;
        let assembling = Instant::now();
        let first = load::assemble(&state, 1).map_err(|e| LoadErrors(vec![e]))?;
        info!(
            steered = state.policies.len(),
            assemble_ms = ms(assembling),
            "first snapshot assembled"
        );
        Ok(Controller {
            origin,
            published: Arc::new(Published::with_obs(
                first,
                Arc::new(crate::obs::Obs::with_store(stores.metrics.clone())),
            )),
            state: Mutex::new(state),
            rescheduled: tokio::sync::Notify::new(),
            stores,
            measurements,
            edits: Mutex::new(()),
            events: Arc::default(),
            cause: Mutex::new(String::new()),
        })
    }

    pub fn published(&self) -> &Arc<Published> {
        &self.published
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the last published snapshot serving; the
        // state itself is only replaced whole, so it is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish the state as the next generation.
    fn publish(&self, state: &State) -> Result<u64, String> {
        let generation = self.published.load().generation + 1;
        let snapshot = load::assemble(state, generation)?;
        self.swap_in(snapshot);
        Ok(generation)
    }

    /// The one way a snapshot goes live: publish it and wake the control loop, which then
    /// re-reads [`Controller::next_change`].
    fn swap_in(&self, snapshot: Snapshot) {
        let before = self.published.load_full();
        self.published.publish(snapshot);
        self.record_moves(&before, &self.published.load());
        // A stored permit if the loop is busy: it re-reads the deadline on its next turn.
        self.rescheduled.notify_one();
    }

    fn policy_store(state: &State) -> Result<Arc<dyn PolicyStore>, EditError> {
        state.policy_store.clone().ok_or_else(|| {
            EditError::NotEditable(
                "this server runs the embedded demo, whose policies are compiled in; to edit \
                 policies, run with a config file that names a policies directory \
                 (e.g. --config examples/steerdns.toml)"
                    .into(),
            )
        })
    }

    /// Recompile the policies `affected` selects, reuse the rest, publish.
    fn recompile(&self, state: &mut State, affected: impl Fn(&Policy) -> bool) -> u64 {
        let started = Instant::now();
        let now = SystemTime::now();
        let due: Vec<(String, Policy)> = state
            .policies
            .iter()
            .filter(|(_, e)| {
                affected(&e.steered.policy) || e.steered.next_change.is_some_and(|at| at <= now)
            })
            .map(|(k, e)| (k.clone(), e.steered.policy.clone()))
            .collect();
        let recompiled = due.len();
        for (key, policy) in due {
            let steered = Arc::new(state.compile(policy));
            if let Some(entry) = state.policies.get_mut(&key) {
                entry.steered = steered;
            }
        }
        let compile_ms = ms(started);
        let publishing = Instant::now();
        let published = self.publish(state);
        self.published.note_recompile(started.elapsed());
        match published {
            Ok(g) if recompiled > 0 => {
                info!(
                    generation = g,
                    recompiled,
                    compile_ms,
                    publish_ms = ms(publishing),
                    total_ms = ms(started),
                    "recompiled"
                );
                g
            }
            Ok(g) => g,
            Err(e) => {
                warn!(%e, "could not publish after recompiling");
                self.published.load().generation
            }
        }
    }

    /// The earliest time a compiled table changes by itself.
    pub fn next_change(&self) -> Option<SystemTime> {
        self.lock()
            .policies
            .values()
            .filter_map(|e| e.steered.next_change)
            .min()
    }

    /// Recompile the tables whose hold-down (or other timed change) is due.
    pub fn recompile_due(&self) -> u64 {
        let mut state = self.lock();
        self.set_cause("a timed change (hold-down or ramp step) came due".into());
        self.recompile(&mut state, |_| false)
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::Name;

    use super::*;

    /// The explanation of a RUM switch names the switch: the snapshot holds the incumbents
    /// the serving table was compiled against, not the choice that compile made.
    #[test]
    fn explain_of_a_rum_switch_names_the_incumbent_it_beat() {
        use crate::perf::{Region, RumView};
        use crate::rum::window::Bucket;
        let controller =
            Controller::start(crate::demo::config(), ConfigOrigin::Demo).expect("the demo");
        let bucket = |ms: f64| {
            let mut b = Bucket::default();
            for i in 0..200 {
                b.record(Some(ms * (0.9 + 0.2 * f64::from(i) / 200.0)));
            }
            b
        };
        let view = |a_ms: f64, b_ms: f64| RumView {
            buckets: [("cdn-a", a_ms), ("cdn-b", b_ms)]
                .into_iter()
                .map(|(t, ms)| ((t.to_owned(), Region::World), bucket(ms)))
                .collect(),
            max_failure_rate: 0.05,
            ..RumView::default()
        };
        let steps = |controller: &Controller| {
            let snapshot = controller.published().load();
            let name = hickory_proto::rr::LowerName::from(
                Name::from_ascii("rum.example.com.").expect("a name"),
            );
            let steered = snapshot
                .steered
                .get(&name)
                .expect("rum.example.com")
                .clone();
            let asker = crate::dns::answer::Asker::new(
                &snapshot,
                "10.0.0.1".parse().expect("an address"),
                None,
            );
            let e = crate::explain::explain(&snapshot, &steered, &asker);
            (e.steps.join(" | "), e.targets.join(","))
        };
        controller.set_rum(view(20.0, 60.0), 20);
        let (why, targets) = steps(&controller);
        assert_eq!(targets, "cdn-a", "{why}");
        controller.set_rum(view(60.0, 20.0), 20);
        let (why, targets) = steps(&controller);
        assert_eq!(targets, "cdn-b", "{why}");
        assert!(
            why.contains("incumbent cdn-a"),
            "names the incumbent it beat: {why}"
        );
        // The next compile keeps cdn-b, now the incumbent.
        controller.set_rum(view(61.0, 20.0), 20);
        let (why, targets) = steps(&controller);
        assert_eq!(targets, "cdn-b", "{why}");
        assert!(why.contains("incumbent cdn-b"), "{why}");
    }
}
