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
    /// Target answered when no rule matches.
    pub default: String,
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

fn default_ttl() -> u32 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub cname: Option<String>,
    #[serde(default)]
    pub a: Vec<String>,
    #[serde(default)]
    pub aaaa: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub matches: RawMatch,
    pub target: String,
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
