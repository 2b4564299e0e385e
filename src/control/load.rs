//! Loading: config, zones, GeoIP and the policies of the policy store into a [`State`], the
//! first snapshot, and the two reloads (everything on SIGHUP; the policies on a change
//! notice). Every error names its file (or store key), field and reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hickory_proto::rr::LowerName;
use tracing::{error, info};

use super::{Controller, Entry, LoadErrors, State, etag, ms, policy_key};
use crate::config::{Config, PolicySource, TextSource};
use crate::geo::GeoDb;
use crate::health::HealthView;
use crate::perf::PerfView;
use crate::policy::{self, Inputs, Policy};
use crate::preview::{self, Preview};
use crate::rum::init_zone::{InitZone, InitZoneConfig};
use crate::rum::nonce_log::{self, NonceLog};
use crate::snapshot::{self, DnsSettings, Snapshot, Steered};
use crate::store::PolicyStore;
use crate::zone::{Zone, ZoneText, Zones};

/// Load and validate everything a config names, and compile the first snapshot.
/// Collects all errors rather than stopping at the first, so `steerdns check` shows them
/// together.
pub fn build_snapshot(config: &Config, generation: u64) -> Result<Snapshot, LoadErrors> {
    let store = super::Stores::default().policies_for(config);
    let state = load_state(
        config.clone(),
        HealthView::default(),
        PerfView::default(),
        None,
        store,
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

/// `nonce_log`: the log to keep using, if there is one already. `policy_store`: where the
/// policies are (`None`: the config's embedded ones).
pub(super) fn load_state(
    config: Config,
    health: HealthView,
    perf: PerfView,
    nonce_log: Option<Arc<NonceLog>>,
    policy_store: Option<Arc<dyn PolicyStore>>,
) -> Result<State, LoadErrors> {
    let listed = policy_store.as_ref().map(|s| s.list());
    load_state_listed(config, health, perf, nonce_log, policy_store, listed)
}

/// [`load_state`] with the store's listing already taken (`None`: no store).
pub(super) fn load_state_listed(
    config: Config,
    health: HealthView,
    perf: PerfView,
    nonce_log: Option<Arc<NonceLog>>,
    policy_store: Option<Arc<dyn PolicyStore>>,
    listed: Option<Result<Vec<crate::store::StoredPolicy>, crate::store::StoreError>>,
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
    let texts = policy_texts(&config.policies, listed, &mut errors);
    let (Some(geo), Some(zones)) = (geo, zones) else {
        return Err(LoadErrors(errors));
    };
    let geo = Arc::new(geo);
    let geoip_ms = ms(started);
    info!(?geo, geoip_ms, "GeoIP indexed");
    let compiling = Instant::now();
    let mut policies = BTreeMap::new();
    let inputs = Inputs {
        health: &health,
        perf: &perf,
        now: SystemTime::now(),
        choices: None,
    };
    // Parsing and compiling one policy needs nothing from another: spread them over the
    // cores (10,000 names are seconds of CPU), then take the results in the listed order so
    // duplicates and errors are reported as one pass would.
    let texts: Vec<(String, String)> = texts.into_iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(texts.len().div_ceil(100).max(1));
    let chunk = texts.len().div_ceil(threads).max(1);
    let compiled: Vec<Result<(String, Steered), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = texts
            .chunks(chunk)
            .map(|part| {
                let (zones, geo, inputs) = (&zones, &geo, &inputs);
                scope.spawn(move || {
                    part.iter()
                        .map(|(source, text)| {
                            parse_checked(source, text, zones, geo)
                                .map(|(key, policy)| (key, Steered::compile(policy, geo, inputs)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for ((source, text), result) in texts.into_iter().zip(compiled) {
        match result {
            Ok((key, steered)) => {
                if let Some(other) = policies
                    .get(&key)
                    .map(|e: &Entry| e.steered.policy.source.clone())
                {
                    errors.push(format!(
                        "{source}: name: {key} is already defined in {other}"
                    ));
                    continue;
                }
                policies.insert(
                    key,
                    Entry {
                        etag: etag(&text),
                        text,
                        steered: Arc::new(steered),
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
    crate::alloc::return_freed_memory();
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
        policy_store,
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
pub(super) fn parse_checked(
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

pub(super) fn assemble(state: &State, generation: u64) -> Result<Snapshot, String> {
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

/// (source name, text) of every policy: the store's listing, or the config's embedded ones.
fn policy_texts(
    source: &PolicySource,
    listed: Option<Result<Vec<crate::store::StoredPolicy>, crate::store::StoreError>>,
    errors: &mut Vec<String>,
) -> Vec<(String, String)> {
    if let Some(listed) = listed {
        return match listed {
            Ok(list) => list.into_iter().map(|p| (p.source, p.text)).collect(),
            Err(e) => {
                errors.push(e.to_string());
                Vec::new()
            }
        };
    }
    match source {
        PolicySource::Embedded(texts) => texts
            .iter()
            .filter_map(|t| match t {
                TextSource::Embedded { name, text } => Some((name.clone(), (*text).to_owned())),
                TextSource::File(path) => read(path, errors),
            })
            .collect(),
        PolicySource::Dir(_) => Vec::new(),
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
    /// Reload config, zones, GeoIP and policies (SIGHUP). Health and measurements carry over.
    pub fn reload_all(&self) -> Result<u64, LoadErrors> {
        let _edit = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        // The config and the policies are read before taking the state lock (the policy
        // store may be on the network).
        let read = self.origin.load().map(|config| {
            let store = self.stores.policies_for(&config);
            let listed = store.as_ref().map(|s| s.list());
            (config, store, listed)
        });
        let mut state = self.lock();
        let loaded = read.and_then(|(config, store, listed)| {
            let mut next = load_state_listed(
                config,
                state.health.clone(),
                state.perf.clone(),
                state.nonce_log.clone(),
                store,
                listed,
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
            self.note(
                crate::events::Kind::Reload,
                "configuration",
                &format!("reloaded from {}", next.config.source),
                "reload (SIGHUP)",
            );
            self.swap_in(snapshot);
            *state = next;
            Ok(generation)
        });
        drop(state);
        crate::alloc::return_freed_memory();
        match &result {
            Ok(generation) => info!(generation, "reloaded configuration"),
            Err(errors) => {
                self.published.mark_stale();
                self.events.record(
                    crate::events::Kind::Reload,
                    "configuration",
                    "reload refused; the previous configuration keeps serving",
                    &errors.to_string(),
                );
                error!(%errors, "reload failed; the previous configuration keeps serving");
            }
        }
        result
    }

    /// Re-read the policy directory (file watch). Each file stands alone: an invalid file keeps
    /// its last good version serving and is reported; valid changes in others still apply.
    pub fn reload_policies(&self) -> Result<u64, LoadErrors> {
        // Not while an edit is between its store write and its install here: a listing
        // taken before the write would undo it.
        let _edit = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let Some(store) = self.lock().policy_store.clone() else {
            return Ok(self.published.load().generation);
        };
        // Listed without the state lock (the store may be on the network). A store that
        // cannot be listed (Redis away) changes nothing: what serves keeps serving, and the
        // store's own status says it is unreachable.
        let listed = store.list().map_err(|e| {
            let errors = LoadErrors(vec![e.to_string()]);
            // Unreachable or lost data: the last good policies keep serving, flagged stale
            // until a listing succeeds again.
            self.published.set_store_stale(true);
            error!(%errors, "policy store: cannot list; the last good policies keep serving");
            errors
        })?;
        self.published.set_store_stale(false);
        let mut state = self.lock();
        let mut resumed = Vec::new();
        let mut errors = Vec::new();
        let texts: Vec<(String, String)> = listed.into_iter().map(|p| (p.source, p.text)).collect();
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
            if let Some(key) = &existing
                && state.policies[key].text == text
            {
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
                    let what = if existing.is_some() {
                        "changed"
                    } else {
                        "added"
                    };
                    self.note(
                        crate::events::Kind::Policy,
                        &key,
                        &format!("{what} in the policy store"),
                        &source,
                    );
                    resumed.extend(super::inputs::resume_ramps(&mut state, &policy, &key));
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
                    self.events.record(
                        crate::events::Kind::Policy,
                        &source,
                        "invalid; its last good version keeps serving",
                        &e,
                    );
                    errors.push(e);
                    if let Some(key) = existing
                        && let Some(old) = state.policies.remove(&key)
                    {
                        next.insert(key, old);
                    }
                }
            }
        }
        // Policies whose file is gone are removed.
        if !state.policies.is_empty() {
            changed = true;
        }
        for key in state.policies.keys() {
            self.note(
                crate::events::Kind::Policy,
                key,
                "removed from the policy store",
                "",
            );
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
        drop(state);
        self.persist_resumed(&resumed);
        if errors.is_empty() {
            Ok(generation)
        } else {
            self.published.mark_stale();
            let errors = LoadErrors(errors);
            error!(%errors, "policy reload: invalid files keep their last good version serving");
            Err(errors)
        }
    }
}
