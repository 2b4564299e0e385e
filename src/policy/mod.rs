//! Steering policies: how one steered name chooses among its targets.
//!
//! A policy file (`policies/<name>.toml`) is parsed into `Raw*` types, then validated into a
//! [`Policy`] whose every field is known good; errors name the file, the field and the reason.
//!
//! A policy is a **chain** of steps, as in NS1's filter chains: `up` drops unhealthy targets,
//! `geo` narrows by continent/country/subdivision/ASN/CIDR, `performance` ranks by measured
//! latency when the data is conclusive, and one selector (`weighted`, `failover` or
//! `active_passive`) makes the final pick; then `answers` records are returned. Each kind lives
//! in its own file under `kinds/`. [`eval::evaluate`] runs a chain for one class of clients; the
//! decision compiler calls it ahead of time, explain tools call it with a trace.
//!
//! Pure: no I/O except reading the file in [`load_file`]. Depends on `geo`, `health`, `perf`.

pub mod eval;
pub mod kinds;
mod raw;
mod validate;

pub use eval::{Client, Inputs, Outcome, Pick, Reason, Trace, evaluate};
pub use kinds::geo::{Match, Rule};
pub use validate::{PolicyError, parse};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use hickory_proto::rr::Name;

/// Index into [`Policy::targets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u16);

impl TargetId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Also the key of the target's health: ids are global across policies.
    pub id: String,
    pub answer: TargetAnswer,
    /// Capacity or commit limit: the largest share of a region's answers (1.0 = no limit).
    pub max_share: f64,
}

/// What a target is answered as: a CNAME to a CDN hostname, or a pool of PoP addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetAnswer {
    Cname(Name),
    Addresses {
        a: Vec<Ipv4Addr>,
        aaaa: Vec<Ipv6Addr>,
    },
}

/// What to answer when every target is down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LastResort {
    /// Fail open: all targets, in file order (a resolver that gets *something* beats NXDOMAIN).
    All,
    Target(TargetId),
}

/// One step of the chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Up,
    Geo(kinds::geo::Geo),
    Performance(kinds::performance::Performance),
    Weighted(kinds::weighted::Weighted),
    Failover(kinds::failover::Failover),
    ActivePassive(kinds::active_passive::ActivePassive),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Up => "up",
            Step::Geo(_) => "geo",
            Step::Performance(_) => "performance",
            Step::Weighted(_) => "weighted",
            Step::Failover(_) => "failover",
            Step::ActivePassive(_) => "active_passive",
        }
    }

    /// Selectors make the final pick and must end the chain.
    pub fn is_selector(&self) -> bool {
        matches!(
            self,
            Step::Weighted(_) | Step::Failover(_) | Step::ActivePassive(_)
        )
    }
}

/// A validated policy for one steered name.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Fully qualified, lower case.
    pub name: Name,
    pub ttl_s: u32,
    /// Records per answer (1 unless every target is an address pool).
    pub answers: u8,
    pub last_resort: LastResort,
    pub targets: Vec<Target>,
    pub chain: Vec<Step>,
    /// Where it came from (file path or `bundled demo`), for errors and explanations.
    pub source: String,
}

impl Policy {
    pub fn target(&self, id: TargetId) -> &Target {
        &self.targets[id.index()]
    }

    pub fn geo(&self) -> Option<&kinds::geo::Geo> {
        self.chain.iter().find_map(|s| match s {
            Step::Geo(g) => Some(g),
            _ => None,
        })
    }

    /// Whether answers can depend on the client's location (for the ECS scope).
    pub fn uses_location(&self) -> bool {
        self.chain.iter().any(|s| match s {
            Step::Geo(g) => g.rules.iter().any(|r| r.matches.has_location()),
            Step::Performance(_) => true,
            _ => false,
        })
    }

    /// Whether any rule names a subdivision (otherwise only continent and country matter).
    pub fn uses_subdivision(&self) -> bool {
        self.geo()
            .is_some_and(|g| g.rules.iter().any(|r| !r.matches.subdivision.is_empty()))
    }

    pub fn uses_asn(&self) -> bool {
        self.geo()
            .is_some_and(|g| g.rules.iter().any(|r| !r.matches.asn.is_empty()))
    }

    /// Whether a performance step ranks by real-user measurements (which are kept per ASN).
    pub fn uses_rum(&self) -> bool {
        self.chain.iter().any(|s| match s {
            Step::Performance(p) => p.source != kinds::performance::Source::Probes,
            _ => false,
        })
    }
}

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
