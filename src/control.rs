//! The control plane: turn configuration, policies, health and measurements into published
//! snapshots, and apply every change (reload, file watch, API edit, health flip, hold-down
//! expiry) by recompiling only what it touches.
//!
//! All writers go through one [`Controller`], which serialises them with a mutex that queries
//! never see: queries read the published snapshot. A change that fails validation is refused
//! with file, field and reason, and the last good snapshot keeps serving. Depends on `config`,
//! `zone`, `policy`, `geo`, `health`, `perf`, `rum`, `snapshot`, `store`, `preview`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::rr::{LowerName, Name};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, PolicySource, TextSource};
use crate::decision::fnv1a;
use crate::geo::GeoDb;
use crate::health::{self, HealthView};
use crate::perf::{Choices, PerfView, Region, RumView};
use crate::policy::{self, Inputs, Policy};
use crate::preview::{self, Preview};
use crate::rum::init_zone::{InitZone, InitZoneConfig};
use crate::rum::nonce_log::{self, NonceLog};
use crate::rum::resolver_map::{ResolverMap, ResolverMapConfig};
use crate::snapshot::{self, DnsSettings, Published, Snapshot, Steered};
use crate::store::{PolicyDir, Version};
use crate::zone::{Zone, ZoneText, Zones};

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
}

pub struct Controller {
    origin: ConfigOrigin,
    published: Arc<Published>,
    state: Mutex<State>,
    /// Rung by every publish. A publish can create or move the earliest timed change (a
    /// health flip starts a hold-down, an edit adds a ramp), and the control loop sleeps until
    /// the earliest one it knew of: without this it would sleep past the new deadline.
    rescheduled: tokio::sync::Notify,
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

/// ETags are quoted per RFC 9110.
pub fn etag(text: &str) -> String {
    format!("\"{:016x}\"", fnv1a(text.as_bytes()))
}

/// The key for a policy name: lower case, no trailing dot, only DNS name characters (it is
/// also a file name, so nothing that could leave the directory).
pub fn policy_key(name: &str) -> Result<String, EditError> {
    let parsed = Name::from_ascii(name)
        .map_err(|e| EditError::Invalid(format!("{name:?} is not a valid DNS name: {e}")))?;
    let key = parsed.to_lowercase().to_ascii();
    let key = key.trim_end_matches('.').to_owned();
    let safe = !key.is_empty()
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !safe {
        return Err(EditError::Invalid(format!(
            "{name:?}: policy names may only use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(key)
}

/// Load and validate everything a config names, and compile the first snapshot.
/// Collects all errors rather than stopping at the first, so `steerdns check` shows them
/// together.
pub fn build_snapshot(config: &Config, generation: u64) -> Result<Snapshot, LoadErrors> {
    let state = load_state(
        config.clone(),
        HealthView::default(),
        PerfView::default(),
        None,
    )?;
    assemble(&state, generation).map_err(|e| LoadErrors(vec![e]))
}

/// Compare two policy files on the GeoIP data of `config` (for `steerdns diff`).
pub fn diff_files(
    config: &Config,
    old: &std::path::Path,
    new: &std::path::Path,
) -> Result<Preview, LoadErrors> {
    let one = |e: String| LoadErrors(vec![e]);
    let geo = GeoDb::load(
        &config.geoip_city,
        config.geoip_asn.as_ref(),
        &config.geoip_overrides,
    )
    .map_err(|e| one(e.to_string()))?;
    let (health, perf) = (HealthView::default(), PerfView::default());
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now: SystemTime::now(),
        choices: None,
    };
    let compile = |path: &std::path::Path| -> Result<Steered, LoadErrors> {
        let policy = policy::load_file(path).map_err(|e| one(e.to_string()))?;
        Ok(Steered::compile(policy, &geo, &inputs))
    };
    let (old, new) = (compile(old)?, compile(new)?);
    Ok(preview::compare(Some(&old), &new, &geo))
}

/// `nonce_log`: the log to keep using, if there is one already.
fn load_state(
    config: Config,
    health: HealthView,
    perf: PerfView,
    nonce_log: Option<Arc<NonceLog>>,
) -> Result<State, LoadErrors> {
    let mut errors = Vec::new();
    let started = Instant::now();
    let geo = GeoDb::load(
        &config.geoip_city,
        config.geoip_asn.as_ref(),
        &config.geoip_overrides,
    )
    .map_err(|e| errors.push(e.to_string()))
    .ok();
    let mut zones = Vec::new();
    for zone in &config.zones {
        match load_zone(zone) {
            Ok(z) => zones.push(z),
            Err(e) => errors.push(e),
        }
    }
    let zones = Zones::new(zones)
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    if let (Some(rum), Some(zones)) = (init_zone_config(&config), &zones) {
        match rum {
            Ok(rum) if zones.find(&LowerName::new(&rum.zone)).is_none() => errors.push(format!(
                "{}: rum.zone: {} is not inside any configured zone (steerdns must be authoritative for it)",
                config.source, rum.zone
            )),
            Ok(_) => {}
            Err(reason) => errors.push(format!("{}: rum.zone: {reason}", config.source)),
        }
    }
    let texts = policy_texts(&config.policies, &mut errors);
    let (Some(geo), Some(zones)) = (geo, zones) else {
        return Err(LoadErrors(errors));
    };
    let geo = Arc::new(geo);
    let geoip_ms = ms(started);
    let compiling = Instant::now();
    let mut policies = BTreeMap::new();
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now: SystemTime::now(),
        choices: None,
    };
    for (source, text) in texts {
        match parse_checked(&source, &text, &zones, &geo) {
            Ok((key, policy)) => {
                if let Some(other) = policies
                    .get(&key)
                    .map(|e: &Entry| e.steered.policy.source.clone())
                {
                    errors.push(format!(
                        "{source}: name: {key} is already defined in {other}"
                    ));
                    continue;
                }
                let steered = Arc::new(Steered::compile(policy, &geo, &inputs));
                policies.insert(
                    key,
                    Entry {
                        etag: etag(&text),
                        text,
                        steered,
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    info!(
        geoip_ms,
        policies = policies.len(),
        compile_ms = ms(compiling),
        "inputs loaded and compiled (geoip_ms includes the zones; compile_ms parses and compiles the policies)"
    );
    let (nonce_log, init_zone) = init_zone(&config, nonce_log);
    Ok(State {
        config,
        geo,
        zones: Arc::new(zones),
        policies,
        measured: health.clone(),
        overrides: HealthView::default(),
        health,
        perf,
        rum_choices: HashMap::new(),
        resolver_map: Arc::default(),
        nonce_log,
        init_zone,
    })
}

/// `[rum] zone` and `init_addresses`, when `[rum]` is set.
fn init_zone_config(config: &Config) -> Option<Result<InitZoneConfig, String>> {
    let rum = config.rum.as_ref()?;
    Some(InitZoneConfig::new(&rum.zone, &rum.init_addresses))
}

/// The nonce log (`log` if there is one already) and the RUM zone of `config`.
fn init_zone(
    config: &Config,
    log: Option<Arc<NonceLog>>,
) -> (Option<Arc<NonceLog>>, Option<Arc<InitZone>>) {
    let Some(Ok(rum)) = init_zone_config(config) else {
        return (log, None);
    };
    let log = log.unwrap_or_else(|| Arc::new(NonceLog::new(nonce_log::CAPACITY)));
    let zone = Arc::new(InitZone::new(&rum, log.clone()));
    (Some(log), Some(zone))
}

/// Parse a policy and check it against zones and GeoIP; returns its key.
fn parse_checked(
    source: &str,
    text: &str,
    zones: &Zones,
    geo: &GeoDb,
) -> Result<(String, Policy), String> {
    let policy = policy::parse(source, text).map_err(|e| e.to_string())?;
    snapshot::check_policy(&policy, zones, geo).map_err(|e| e.to_string())?;
    let key = policy_key(&policy.name.to_ascii()).map_err(|e| format!("{source}: name: {e}"))?;
    Ok((key, policy))
}

fn assemble(state: &State, generation: u64) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::assemble(
        generation,
        state.zones.clone(),
        state.geo.clone(),
        state.policies.values().map(|e| e.steered.clone()),
        Arc::new(state.health.clone()),
        Arc::new(state.perf.clone()),
        DnsSettings {
            max_udp_payload: state.config.max_udp_payload,
            explain_names: state.config.explain_names,
        },
    )
    .map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    snapshot.resolver_map = state.resolver_map.clone();
    snapshot.rum = state.init_zone.clone();
    Ok(snapshot)
}

fn load_zone(zone: &crate::config::ZoneConfig) -> Result<Zone, String> {
    let mut texts = Vec::new();
    match &zone.file {
        Some(TextSource::File(path)) => {
            texts.push(ZoneText::from_file(path).map_err(|e| e.to_string())?)
        }
        Some(TextSource::Embedded { name, text }) => texts.push(ZoneText {
            source_name: name.clone(),
            text: (*text).to_owned(),
        }),
        None => {}
    }
    if !zone.records.is_empty() {
        texts.push(ZoneText {
            source_name: format!("config zone {} records", zone.origin),
            text: zone.records.join("\n") + "\n",
        });
    }
    Zone::parse(&zone.origin, &texts).map_err(|e| e.to_string())
}

/// (source name, text) of every policy the config names.
fn policy_texts(source: &PolicySource, errors: &mut Vec<String>) -> Vec<(String, String)> {
    match source {
        PolicySource::Embedded(texts) => texts
            .iter()
            .filter_map(|t| match t {
                TextSource::Embedded { name, text } => Some((name.clone(), (*text).to_owned())),
                TextSource::File(path) => read(path, errors),
            })
            .collect(),
        PolicySource::Dir(dir) => match PolicyDir::new(dir).files() {
            Ok(files) => files.iter().filter_map(|p| read(p, errors)).collect(),
            Err(e) => {
                errors.push(e.to_string());
                Vec::new()
            }
        },
    }
}

fn read(path: &std::path::Path, errors: &mut Vec<String>) -> Option<(String, String)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some((path.display().to_string(), text)),
        Err(e) => {
            errors.push(format!("{}: cannot read: {e}", path.display()));
            None
        }
    }
}

impl Controller {
    /// Load everything and publish generation 1. Fails on any error: a server never starts
    /// half-configured.
    pub fn start(config: Config, origin: ConfigOrigin) -> Result<Self, LoadErrors> {
        if let PolicySource::Dir(dir) = &config.policies {
            PolicyDir::new(dir).clean_temp_files();
        }
        let state = load_state(config, HealthView::default(), PerfView::default(), None)?;
        let assembling = Instant::now();
        let first = assemble(&state, 1).map_err(|e| LoadErrors(vec![e]))?;
        info!(
            steered = state.policies.len(),
            assemble_ms = ms(assembling),
            "first snapshot assembled"
        );
        Ok(Controller {
            origin,
            published: Arc::new(Published::new(first)),
            state: Mutex::new(state),
            rescheduled: tokio::sync::Notify::new(),
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
        let snapshot = assemble(state, generation)?;
        self.swap_in(snapshot);
        Ok(generation)
    }

    /// The one way a snapshot goes live: publish it and wake the control loop, which then
    /// re-reads [`Controller::next_change`].
    fn swap_in(&self, snapshot: Snapshot) {
        self.published.publish(snapshot);
        // A stored permit if the loop is busy: it re-reads the deadline on its next turn.
        self.rescheduled.notify_one();
    }

    fn policy_dir(state: &State) -> Result<PolicyDir, EditError> {
        match &state.config.policies {
            PolicySource::Dir(dir) => Ok(PolicyDir::new(dir)),
            PolicySource::Embedded(_) => Err(EditError::NotEditable(
                "this server runs the embedded demo, whose policies are compiled in; to edit \
                 policies, run with a config file that names a policies directory \
                 (e.g. --config examples/steerdns.toml)"
                    .into(),
            )),
        }
    }

    /// Reload config, zones, GeoIP and policies (SIGHUP). Health and measurements carry over.
    pub fn reload_all(&self) -> Result<u64, LoadErrors> {
        let mut state = self.lock();
        let loaded = self.origin.load().and_then(|config| {
            let mut next = load_state(
                config,
                state.health.clone(),
                state.perf.clone(),
                state.nonce_log.clone(),
            )?;
            next.measured = state.measured.clone();
            next.overrides = state.overrides.clone();
            next.rum_choices = state.rum_choices.clone();
            next.resolver_map = state.resolver_map.clone();
            Ok(next)
        });
        let result = loaded.and_then(|next| {
            let generation = self.published.load().generation + 1;
            let snapshot = assemble(&next, generation).map_err(|e| LoadErrors(vec![e]))?;
            self.swap_in(snapshot);
            *state = next;
            Ok(generation)
        });
        match &result {
            Ok(generation) => info!(generation, "reloaded configuration"),
            Err(errors) => {
                self.published.mark_stale();
                error!(%errors, "reload failed; the previous configuration keeps serving");
            }
        }
        result
    }

    /// Re-read the policy directory (file watch). Each file stands alone: an invalid file keeps
    /// its last good version serving and is reported; valid changes in others still apply.
    pub fn reload_policies(&self) -> Result<u64, LoadErrors> {
        let mut state = self.lock();
        let PolicySource::Dir(dir) = &state.config.policies else {
            return Ok(self.published.load().generation);
        };
        let mut errors = Vec::new();
        let texts = policy_texts(&PolicySource::Dir(dir.clone()), &mut errors);
        let mut next: BTreeMap<String, Entry> = BTreeMap::new();
        let mut changed = false;
        // Which key each file served: one pass, not a search per file (1,000 names would make
        // that a million comparisons per file event).
        let by_source: std::collections::HashMap<String, String> = state
            .policies
            .iter()
            .map(|(k, e)| (e.steered.policy.source.clone(), k.clone()))
            .collect();
        for (source, text) in texts {
            let existing = by_source
                .get(&source)
                .filter(|k| state.policies.contains_key(*k))
                .cloned();
            if let Some(key) = &existing {
                if state.policies[key].text == text {
                    if let Some(other) = next.get(key) {
                        errors.push(format!(
                            "{}: name: {key} is already defined in {source}",
                            other.steered.policy.source
                        ));
                        // The file that was serving keeps serving.
                    }
                    let entry = state.policies.remove(key).expect("present");
                    next.insert(key.clone(), entry);
                    continue;
                }
            }
            match parse_checked(&source, &text, &state.zones, &state.geo) {
                Ok((key, policy)) if next.contains_key(&key) => {
                    errors.push(format!(
                        "{source}: name: {} is already defined elsewhere",
                        policy.name
                    ));
                    if let Some(old) = existing.and_then(|k| state.policies.remove(&k)) {
                        next.insert(key, old);
                    }
                }
                Ok((key, policy)) => {
                    resume_ramps(&mut state, &policy, &key);
                    let steered = Arc::new(state.compile(policy));
                    next.insert(
                        key,
                        Entry {
                            etag: etag(&text),
                            text,
                            steered,
                        },
                    );
                    changed = true;
                }
                Err(e) => {
                    errors.push(e);
                    if let Some(key) = existing {
                        if let Some(old) = state.policies.remove(&key) {
                            next.insert(key, old);
                        }
                    }
                }
            }
        }
        // Policies whose file is gone are removed.
        if !state.policies.is_empty() {
            changed = true;
        }
        state.policies = next;
        let generation = if changed {
            match self.publish(&state) {
                Ok(g) => g,
                Err(e) => {
                    errors.push(e);
                    self.published.load().generation
                }
            }
        } else {
            self.published.load().generation
        };
        if errors.is_empty() {
            Ok(generation)
        } else {
            self.published.mark_stale();
            let errors = LoadErrors(errors);
            error!(%errors, "policy reload: invalid files keep their last good version serving");
            Err(errors)
        }
    }

    pub fn policies(&self) -> Vec<PolicyInfo> {
        self.lock()
            .policies
            .iter()
            .map(|(k, e)| PolicyInfo {
                name: k.clone(),
                etag: e.etag.clone(),
                source: e.steered.policy.source.clone(),
            })
            .collect()
    }

    /// The policy's text and ETag.
    pub fn policy(&self, name: &str) -> Result<(String, String), EditError> {
        let key = policy_key(name)?;
        let state = self.lock();
        state
            .policies
            .get(&key)
            .map(|e| (e.text.clone(), e.etag.clone()))
            .ok_or(EditError::NotFound(key))
    }

    /// Create or replace a policy: validate, preview, write durably, compile, publish.
    pub fn put_policy(
        &self,
        name: &str,
        text: &str,
        pre: &Precondition,
        dry_run: bool,
    ) -> Result<EditOutcome, EditError> {
        let key = policy_key(name)?;
        let mut state = self.lock();
        let started = Instant::now();
        // Say first that the demo cannot be edited at all, before asking for an ETag.
        let dir = Self::policy_dir(&state)?;
        let current = state
            .policies
            .get(&key)
            .map(|e| (e.etag.clone(), e.steered.clone()));
        // A preview changes nothing, so it needs no ETag (If-Match is still checked if sent).
        if !dry_run || pre.if_match.is_some() || pre.if_none_match {
            check_precondition(&key, current.as_ref().map(|(etag, _)| etag.as_str()), pre)?;
        }
        let source = dir.path_of(&key).display().to_string();
        let (parsed_key, policy) =
            parse_checked(&source, text, &state.zones, &state.geo).map_err(EditError::Invalid)?;
        if parsed_key != key {
            return Err(EditError::Invalid(format!(
                "{source}: name: the body is for {parsed_key}, but the request is for {key}"
            )));
        }
        let (compiled, choices) = state.compile_noting(policy);
        let mut steered = Arc::new(compiled);
        let preview = preview::compare(current.as_ref().map(|(_, s)| &**s), &steered, &state.geo);
        let created = current.is_none();
        let new_etag = etag(text);
        if dry_run {
            return Ok(EditOutcome {
                name: key,
                etag: Some(new_etag),
                generation: None,
                created,
                preview,
            });
        }
        let compile_ms = ms(started);
        let writing = Instant::now();
        dir.write(&key, text)
            .map_err(|e| EditError::Storage(e.to_string()))?;
        let write_ms = ms(writing);
        state.keep_choices(&steered.policy, choices);
        // Editing a policy is how an operator resumes a halted ramp.
        if resume_ramps(&mut state, &steered.policy, &key) {
            steered = Arc::new(state.compile(steered.policy.clone()));
        }
        state.policies.insert(
            key.clone(),
            Entry {
                text: text.to_owned(),
                etag: new_etag.clone(),
                steered,
            },
        );
        let publishing = Instant::now();
        let generation = self.publish(&state).map_err(EditError::Invalid)?;
        info!(
            policy = %key,
            generation,
            compile_ms,
            write_ms,
            publish_ms = ms(publishing),
            total_ms = ms(started),
            "policy {}",
            if created { "created" } else { "replaced" }
        );
        Ok(EditOutcome {
            name: key,
            etag: Some(new_etag),
            generation: Some(generation),
            created,
            preview,
        })
    }

    pub fn delete_policy(&self, name: &str, pre: &Precondition) -> Result<EditOutcome, EditError> {
        let key = policy_key(name)?;
        let mut state = self.lock();
        let current = state
            .policies
            .get(&key)
            .ok_or_else(|| EditError::NotFound(key.clone()))?;
        check_precondition(&key, Some(&current.etag), pre)?;
        let dir = Self::policy_dir(&state)?;
        dir.delete(&key)
            .map_err(|e| EditError::Storage(e.to_string()))?;
        state.policies.remove(&key);
        let generation = self.publish(&state).map_err(EditError::Invalid)?;
        info!(policy = %key, generation, "policy deleted");
        Ok(EditOutcome {
            name: key,
            etag: None,
            generation: Some(generation),
            created: false,
            preview: Preview::default(),
        })
    }

    pub fn history(&self, name: &str) -> Result<Vec<Version>, EditError> {
        let key = policy_key(name)?;
        let state = self.lock();
        let dir = Self::policy_dir(&state)?;
        dir.history(&key, etag)
            .map_err(|e| EditError::Storage(e.to_string()))
    }

    /// Make an earlier version current again (itself a new, recorded edit).
    pub fn rollback(
        &self,
        name: &str,
        version: u64,
        pre: &Precondition,
    ) -> Result<EditOutcome, EditError> {
        let key = policy_key(name)?;
        let text = {
            let state = self.lock();
            Self::policy_dir(&state)?
                .version(&key, version)
                .map_err(|e| EditError::Storage(e.to_string()))?
                .ok_or_else(|| EditError::NotFound(format!("{key} version {version}")))?
        };
        self.put_policy(&key, &text, pre, false)
    }

    /// Set (or with `None`, clear) a target's health as an operator override, recompile the
    /// policies that use it, publish. Returns the new generation.
    pub fn set_health(&self, target: &str, state_now: Option<health::State>) -> u64 {
        let mut state = self.lock();
        match state_now {
            Some(s) => state.overrides.set(target, s, true, SystemTime::now()),
            None => state.overrides.clear(target),
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
        match self.publish(state) {
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
        self.recompile(&mut state, |_| false)
    }
}

/// Recompute the view compiles read from its sources, carrying recoveries over
/// ([`HealthView::settle`]).
fn refresh_health(state: &mut State) {
    let next = state.measured.overlay(&state.overrides);
    state.health = next.settle(&state.health, SystemTime::now());
}

/// An edited policy resumes its halted ramps (editing is how an operator says "go on").
/// Returns whether any was halted.
fn resume_ramps(state: &mut State, policy: &Policy, key: &str) -> bool {
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

fn check_precondition(
    key: &str,
    current: Option<&str>,
    pre: &Precondition,
) -> Result<(), EditError> {
    match (current, &pre.if_match) {
        (Some(_), None) if pre.if_none_match => Err(EditError::PreconditionFailed {
            current: current.unwrap_or_default().to_owned(),
        }),
        (Some(_), None) => Err(EditError::PreconditionRequired(key.to_owned())),
        (Some(cur), Some(want)) if want != "*" && want != cur => {
            Err(EditError::PreconditionFailed {
                current: cur.to_owned(),
            })
        }
        (None, Some(_)) => Err(EditError::PreconditionFailed {
            current: String::new(),
        }),
        _ => Ok(()),
    }
}

/// Background work until cancelled: SIGHUP reloads, policy directory changes, timed
/// recompiles (hold-down expiry, ramp steps). Every publish, by any route, wakes the loop so
/// that it sleeps until the earliest deadline of what is serving now. The SIGHUP handler is installed before this returns, not
/// when the task first runs: a SIGHUP right after startup must reload, not kill the process.
pub fn run(
    controller: Arc<Controller>,
    watch: PolicyWatch,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hup: Option<()> = None;
    run_loop(controller, watch, cancel, hup)
}

async fn run_loop(
    controller: Arc<Controller>,
    watch: PolicyWatch,
    cancel: CancellationToken,
    #[cfg(unix)] mut hup: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] _hup: Option<()>,
) {
    let PolicyWatch {
        _watcher,
        changes: mut rx,
    } = watch;
    loop {
        let due = controller.next_change();
        let sleep = async {
            match due {
                Some(at) => {
                    tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default())
                        .await
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let c = controller.clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            // Something was published (an API edit, a health flip, a reload, our own
            // recompile): the earliest deadline may have moved, so compute it again.
            _ = controller.rescheduled.notified() => {}
            _ = hangup => {
                let _ = tokio::task::spawn_blocking(move || c.reload_all()).await;
            }
            Some(()) = rx.recv() => {
                // Editors write several events per save; let them settle.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while rx.try_recv().is_ok() {}
                let _ = tokio::task::spawn_blocking(move || c.reload_policies()).await;
            }
            _ = sleep => {
                let _ = tokio::task::spawn_blocking(move || c.recompile_due()).await;
            }
        }
    }
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

/// A watch on the policy directory and the notices it sends.
pub struct PolicyWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    changes: tokio::sync::mpsc::Receiver<()>,
}

/// Watch the policy directory, then re-read it once, so that nothing written between the
/// first load and the watch's start is missed. Call before serving.
pub fn watch(controller: &Controller) -> PolicyWatch {
    let (tx, changes) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = watch_policies(controller, tx);
    if watcher.is_some() {
        let _ = controller.reload_policies();
    }
    PolicyWatch {
        _watcher: watcher,
        changes,
    }
}

/// Watch the policy directory; each change sends a (coalesced) notice.
fn watch_policies(
    controller: &Controller,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let dir = match &controller.lock().config.policies {
        PolicySource::Dir(dir) => dir.clone(),
        PolicySource::Embedded(_) => return None,
    };
    watch_dir(&dir, tx)
}

fn watch_dir(
    dir: &std::path::Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            changes_content(&e.kind)
                && e.paths.iter().any(|p| {
                    p.extension().is_some_and(|x| x == "toml")
                        && p.file_name()
                            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
        });
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| warn!(%e, "cannot watch the policy directory; reload with SIGHUP"))
    .ok()?;
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        warn!(%e, dir = %dir.display(), "cannot watch the policy directory; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

/// Whether a file event can change what a policy file holds. Opening or reading one cannot,
/// and the reload itself opens every file: counting opens made each reload trigger the next,
/// re-reading the whole directory every 50 ms for as long as the server ran.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Receive a notice within `within`, or not.
    fn notice(rx: &mut tokio::sync::mpsc::Receiver<()>, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if rx.try_recv().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn reading_policy_files_is_not_a_change_but_writing_is() {
        let dir = std::env::temp_dir().join(format!(
            "steerdns-watch-{}-{}",
            std::process::id(),
            fnv1a(format!("{:?}", SystemTime::now()).as_bytes())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.example.com.toml");
        std::fs::write(&file, "name = \"a.example.com\"\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let watcher = watch_dir(&dir, tx).expect("inotify is available");
        // What a reload does to every file: open and read it.
        for _ in 0..3 {
            std::fs::read_to_string(&file).unwrap();
            assert!(
                PolicyDir::new(&dir).files().unwrap().len() == 1,
                "one policy file"
            );
        }
        assert!(
            !notice(&mut rx, Duration::from_millis(300)),
            "reading the files must not trigger a reload"
        );
        std::fs::write(&file, "name = \"b.example.com\"\n").unwrap();
        assert!(
            notice(&mut rx, Duration::from_secs(5)),
            "writing a file triggers a reload"
        );
        drop(watcher);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
