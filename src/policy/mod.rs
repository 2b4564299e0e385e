//! Steering policies: how one steered name chooses among its targets.
//!
//! A policy file (`policies/<name>.toml`) is parsed into `Raw*` types, then validated into a
//! [`Policy`] whose every field is known good; errors name the file, the field and the reason.
//! Pure: no I/O except reading the file in [`load_file`]. Depends on `geo` for its vocabulary.
//!
//! Today one kind exists, the geo/ASN/CIDR rule list; the composable chain (weighted,
//! active-passive, failover, performance) extends [`Policy`] without changing its callers.

mod raw;
mod validate;

pub use validate::{Match, Policy, PolicyError, Rule, Target, TargetAnswer, TargetId, parse};

use std::path::Path;

/// Read and validate one policy file.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.display().to_string(),
        field: String::new(),
        reason: format!("cannot read: {e}"),
    })?;
    parse(&path.display().to_string(), &text)
}

#[cfg(test)]
mod tests;
