//! `steerdns import`: translate another server's steering config into a steerdns config
//! directory (steerdns.toml, zones/, policies/).
//!
//! Two sources: gdnsd 3.x ([`gdnsd`]): its vscf `config` ([`vscf`]), the `geoip`,
//! `metafo`, `multifo` and `weighted` plugin resources, and the zone files whose `DYNA`/`DYNC`
//! records point at them; and Amazon Route 53 traffic policy documents ([`route53`]), one
//! steered name each. The importer never guesses: whatever it cannot express exactly is a
//! [`Problem`] naming file, line and what, and nothing is written; behaviour that differs only
//! under failure (health checks) is written with a warning in the generated config's header.
//! The output is loaded and compiled by steerdns itself before the import reports success.

pub mod emit;
pub mod gdnsd;
pub mod route53;
pub mod vscf;
pub mod zonefile;

use std::fmt;
use std::path::{Path, PathBuf};

/// Something in the source config, at a file and line, that cannot be (exactly) translated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.what)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.what)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Every untranslatable item found, one per line; nothing was written.
    #[error("cannot translate {} item(s); nothing was written:\n{}", .0.len(), lines(.0))]
    Untranslatable(Vec<Problem>),
    #[error("{0}")]
    Io(String),
    /// The generated directory does not load in steerdns (a bug in the importer).
    #[error("the generated config in {dir} does not load: {reason}")]
    Generated { dir: String, reason: String },
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an import wrote.
#[derive(Debug)]
pub struct Report {
    pub out: PathBuf,
    pub zones: Vec<String>,
    pub policies: Vec<String>,
    /// Translated, but behaving differently in some case (written into steerdns.toml too).
    pub warnings: Vec<Problem>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote {}: {} zone(s) ({}), {} policy file(s) ({})",
            self.out.display(),
            self.zones.len(),
            self.zones.join(", "),
            self.policies.len(),
            self.policies.join(", ")
        )?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// A source file, refused when larger than `max` bytes (read whole, so bounded first).
pub(crate) fn read_bounded(path: &Path, max: usize) -> Result<String, ImportError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ImportError::Io(format!("{}: cannot read: {e}", path.display())))?;
    if meta.len() > max as u64 {
        return Err(ImportError::Io(format!(
            "{}: {} bytes, more than the {max} accepted",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| ImportError::Io(format!("{}: cannot read: {e}", path.display())))
}

/// Write a new config directory (`out` must not exist or be empty): `steerdns.toml`,
/// `zones/<origin>.zone`, `policies/<name>.toml` and `extra` files (path relative to `out`,
/// text); then load and compile it with steerdns's own loader, the judge of what was written.
/// Returns the policy names.
pub(crate) fn write_dir(
    out: &Path,
    config: &str,
    zones: &[(String, String)],
    policies: &[emit::Policy],
    extra: &[(PathBuf, String)],
) -> Result<Vec<String>, ImportError> {
    let io = |path: &Path, e: std::io::Error| ImportError::Io(format!("{}: {e}", path.display()));
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| io(out, e))?;
        if entries.next().is_some() {
            return Err(ImportError::Io(format!(
                "{}: exists and is not empty; choose a new --out directory",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out.join("zones")).map_err(|e| io(out, e))?;
    std::fs::create_dir_all(out.join("policies")).map_err(|e| io(out, e))?;
    for (origin, text) in zones {
        let path = out.join("zones").join(format!("{origin}.zone"));
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    let mut names = std::collections::BTreeSet::new();
    for policy in policies {
        let path = out.join("policies").join(policy.file_name());
        std::fs::write(&path, policy.to_toml()).map_err(|e| io(&path, e))?;
        names.insert(policy.name.clone());
    }
    for (rel, text) in extra {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    let config_path = out.join("steerdns.toml");
    std::fs::write(&config_path, config).map_err(|e| io(&config_path, e))?;

    let generated = |reason: String| ImportError::Generated {
        dir: out.display().to_string(),
        reason,
    };
    let loaded = crate::config::Config::load(&config_path).map_err(|e| generated(e.to_string()))?;
    crate::control::build_snapshot(&loaded, 1).map_err(|e| generated(e.to_string()))?;
    Ok(names.into_iter().collect())
}
