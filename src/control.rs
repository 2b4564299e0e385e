//! The control plane: turn a [`Config`] into a published [`Snapshot`], and rebuild on reload.
//!
//! Reading files, loading GeoIP and compiling policies happen here, never on the query path. A
//! failed rebuild keeps the last good snapshot serving and marks it stale. Depends on `config`,
//! `zone`, `policy`, `geo`, `snapshot`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Config, PolicySource, TextSource};
use crate::geo::GeoDb;
use crate::policy::{self, Policy};
use crate::snapshot::{DnsSettings, Published, Snapshot};
use crate::zone::{Zone, ZoneText, Zones};

/// Every problem found while loading, each naming its file and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<String>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Load everything the config names and compile a snapshot. Collects all errors rather than
/// stopping at the first, so `steerdns check` shows them together.
pub fn build_snapshot(config: &Config, generation: u64) -> Result<Snapshot, LoadErrors> {
    let mut errors = Vec::new();

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

    let policies = load_policies(&config.policies, &mut errors);

    let (Some(geo), Some(zones)) = (geo, zones) else {
        return Err(LoadErrors(errors));
    };
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    let settings = DnsSettings {
        max_udp_payload: config.max_udp_payload,
    };
    Snapshot::build(generation, zones, policies, Arc::new(geo), settings)
        .map_err(|errs| LoadErrors(errs.iter().map(ToString::to_string).collect()))
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

fn load_policies(source: &PolicySource, errors: &mut Vec<String>) -> Vec<Policy> {
    let mut policies: Vec<Policy> = Vec::new();
    let mut add =
        |result: Result<Policy, policy::PolicyError>, errors: &mut Vec<String>| match result {
            Ok(p) => {
                if let Some(other) = policies.iter().find(|o| o.name == p.name) {
                    errors.push(format!(
                        "{}: name: {} is already defined in {}",
                        p.source, p.name, other.source
                    ));
                } else {
                    policies.push(p);
                }
            }
            Err(e) => errors.push(e.to_string()),
        };
    match source {
        PolicySource::Embedded(texts) => {
            for text in texts {
                match text {
                    TextSource::Embedded { name, text } => add(policy::parse(name, text), errors),
                    TextSource::File(path) => add(policy::load_file(path), errors),
                }
            }
        }
        PolicySource::Dir(dir) => match policy_files(dir) {
            Ok(files) => {
                for path in files {
                    add(policy::load_file(&path), errors);
                }
            }
            Err(e) => errors.push(e),
        },
    }
    policies
}

/// The `*.toml` files of a policy directory, sorted. A missing directory means no policies.
fn policy_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(format!(
                "{}: cannot read policy directory: {e}",
                dir.display()
            ));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
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

/// Rebuild from the config origin and publish; on failure keep serving and mark stale.
/// Listener addresses are not changed by a reload (that needs a restart).
pub fn reload(origin: &ConfigOrigin, published: &Published) -> Result<u64, LoadErrors> {
    let generation = published.load().generation + 1;
    let result = origin
        .load()
        .and_then(|config| build_snapshot(&config, generation));
    match result {
        Ok(snapshot) => {
            published.publish(snapshot);
            info!(generation, "reloaded configuration");
            Ok(generation)
        }
        Err(errors) => {
            published.mark_stale();
            error!(%errors, "reload failed; the previous configuration keeps serving");
            Err(errors)
        }
    }
}

/// Reload on SIGHUP until cancelled.
pub async fn run(origin: ConfigOrigin, published: Arc<Published>, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                error!(%e, "cannot listen for SIGHUP; reload by restarting");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = hup.recv() => {
                    let origin = origin.clone();
                    let published = published.clone();
                    // Loading GeoIP and compiling may take a while: keep it off the runtime.
                    let _ = tokio::task::spawn_blocking(move || reload(&origin, &published)).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    cancel.cancelled().await;
}
