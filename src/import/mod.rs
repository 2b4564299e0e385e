//! `steerdns import`: translate another server's steering config into a steerdns config
//! directory (steerdns.toml, zones/, policies/).
//!
//! Today the one source is gdnsd 3.x ([`gdnsd`]): its vscf `config` ([`vscf`]), the `geoip`,
//! `metafo`, `multifo` and `weighted` plugin resources, and the zone files whose `DYNA`/`DYNC`
//! records point at them. The importer never guesses: whatever it cannot express exactly is a
//! [`Problem`] naming file, line and what, and nothing is written; behaviour that differs only
//! under failure (health checks) is written with a warning in the generated config's header.
//! The output is loaded and compiled by steerdns itself before the import reports success.

pub mod emit;
pub mod gdnsd;
pub mod vscf;
pub mod zonefile;

use std::fmt;
use std::path::PathBuf;

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
