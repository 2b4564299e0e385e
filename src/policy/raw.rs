//! The policy file as written, before validation. `deny_unknown_fields` everywhere so a typo is
//! an error, not a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(default = "default_ttl")]
    pub ttl_s: u32,
    /// How many targets' records one answer carries (address targets only).
    #[serde(default = "default_answers")]
    pub answers: u8,
    /// When every target is down: "all" (fail open) or a target id.
    #[serde(default = "default_last_resort")]
    pub last_resort: String,
    pub targets: BTreeMap<String, RawTarget>,
    pub chain: Vec<RawStep>,
}

fn default_ttl() -> u32 {
    30
}

fn default_answers() -> u8 {
    1
}

fn default_last_resort() -> String {
    "all".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub cname: Option<String>,
    #[serde(default)]
    pub a: Vec<String>,
    #[serde(default)]
    pub aaaa: Vec<String>,
    /// Capacity or commit limit: the largest share of a region's answers, 0 < x <= 1.
    pub max_share: Option<f64>,
}

/// One step of the chain, by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawStep {
    Up {},
    Geo {
        default: Vec<String>,
        #[serde(default)]
        rules: Vec<RawRule>,
    },
    Performance {
        #[serde(default)]
        source: RawSource,
        #[serde(default = "default_min_samples")]
        min_samples: u64,
        #[serde(default = "default_confidence")]
        confidence: f64,
        #[serde(default = "default_min_availability")]
        min_availability: f64,
        #[serde(default = "default_margin_ratio")]
        margin_ratio: f64,
        #[serde(default = "default_margin_ms")]
        margin_ms: f64,
    },
    Weighted {
        weights: BTreeMap<String, u32>,
        ramp: Option<RawRamp>,
    },
    Failover {
        #[serde(default)]
        order: Vec<String>,
    },
    ActivePassive {
        primary: String,
        standby: String,
        #[serde(default = "default_hold_down")]
        hold_down_s: u64,
    },
}

fn default_min_samples() -> u64 {
    30
}

fn default_confidence() -> f64 {
    0.95
}

fn default_min_availability() -> f64 {
    0.99
}

fn default_hold_down() -> u64 {
    300
}

/// A guarded ramp: `target` takes `percent[i]` of the traffic during step `i`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRamp {
    pub target: String,
    pub percent: Vec<u32>,
    pub step_s: u64,
    /// When step 0 begins (seconds since the Unix epoch).
    pub start_unix_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub matches: RawMatch,
    pub targets: Vec<String>,
}

/// All present fields must hold (AND); a list inside one field is any-of (OR).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub continent: OneOrMany<String>,
    #[serde(default)]
    pub country: OneOrMany<String>,
    #[serde(default)]
    pub subdivision: OneOrMany<String>,
    #[serde(default)]
    pub asn: OneOrMany<u32>,
    #[serde(default)]
    pub cidr: OneOrMany<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// `performance.source`: which measurements rank.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawSource {
    #[default]
    Probes,
    Rum,
    Both,
}

/// RUM hysteresis: 10% of the incumbent's p50 …
fn default_margin_ratio() -> f64 {
    0.10
}

/// … or 5 ms, whichever is easier to clear (Cedexis' sticky app switches below 0.65×; NS1's
/// "stabilize" keeps answers within a percentage or a number of ms of the best).
fn default_margin_ms() -> f64 {
    5.0
}
