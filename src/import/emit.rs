//! The translated model (policies and a config) and its TOML text, in steerdns's own policy
//! syntax (policies/README.md), written so an operator can read and edit it afterwards.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Cname(String),
    Addresses { a: Vec<String>, aaaa: Vec<String> },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    pub continent: Option<String>,
    pub country: Option<String>,
    /// ISO 3166-2, e.g. `US-CA`.
    pub subdivision: Option<String>,
    pub cidr: Option<String>,
    /// Any of these continents, written as a list (instead of `continent`).
    pub continents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Up,
    Geo {
        default: Vec<String>,
        rules: Vec<(Match, Vec<String>)>,
    },
    Weighted(Vec<(String, u64)>),
    Failover(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Absolute, without the trailing dot.
    pub name: String,
    pub ttl: u32,
    /// Where it came from, for the header comment (`gdnsd: zones/example.com:12 ...`).
    pub origin: String,
    /// `last_resort`, when not the default `"all"`.
    pub last_resort: Option<String>,
    pub targets: Vec<(String, Answer)>,
    pub chain: Vec<Step>,
}

/// A TOML basic string.
fn s(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A bare key when it can be one, else quoted.
fn key(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        text.to_owned()
    } else {
        s(text)
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| s(i)).collect();
    format!("[{}]", quoted.join(", "))
}

impl Policy {
    pub fn file_name(&self) -> String {
        format!("{}.toml", self.name)
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for line in self.origin.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "name = {}", s(&self.name));
        let _ = writeln!(out, "ttl_s = {}", self.ttl);
        if let Some(id) = &self.last_resort {
            let _ = writeln!(out, "last_resort = {}", s(id));
        }
        for (id, answer) in &self.targets {
            let _ = writeln!(out, "\n[targets.{}]", key(id));
            match answer {
                Answer::Cname(c) => {
                    let _ = writeln!(out, "cname = {}", s(c));
                }
                Answer::Addresses { a, aaaa } => {
                    if !a.is_empty() {
                        let _ = writeln!(out, "a = {}", list(a));
                    }
                    if !aaaa.is_empty() {
                        let _ = writeln!(out, "aaaa = {}", list(aaaa));
                    }
                }
            }
        }
        for step in &self.chain {
            out.push_str("\n[[chain]]\n");
            match step {
                Step::Up => out.push_str("kind = \"up\"\n"),
                Step::Geo { default, rules } => {
                    out.push_str("kind = \"geo\"\n");
                    let _ = writeln!(out, "default = {}", list(default));
                    out.push_str("rules = [\n");
                    for (m, targets) in rules {
                        let mut fields = Vec::new();
                        for (k, v) in [
                            ("continent", &m.continent),
                            ("country", &m.country),
                            ("subdivision", &m.subdivision),
                            ("cidr", &m.cidr),
                        ] {
                            if let Some(v) = v {
                                fields.push(format!("{k} = {}", s(v)));
                            }
                        }
                        if !m.continents.is_empty() {
                            fields.push(format!("continent = {}", list(&m.continents)));
                        }
                        let _ = writeln!(
                            out,
                            "  {{ match = {{ {} }}, targets = {} }},",
                            fields.join(", "),
                            list(targets)
                        );
                    }
                    out.push_str("]\n");
                }
                Step::Weighted(weights) => {
                    let w: Vec<String> = weights
                        .iter()
                        .map(|(id, n)| format!("{} = {n}", key(id)))
                        .collect();
                    let _ = writeln!(out, "kind = \"weighted\"\nweights = {{ {} }}", w.join(", "));
                }
                Step::Failover(order) => {
                    let _ = writeln!(out, "kind = \"failover\"\norder = {}", list(order));
                }
            }
        }
        out
    }
}

/// The generated steerdns.toml; `generated` is its first comment line
/// (``Generated by `steerdns import gdnsd` from /etc/gdnsd.``).
pub fn config_toml(
    generated: &str,
    city_db: Option<&str>,
    zones: &[String],
    warnings: &[super::Problem],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {generated}");
    if !warnings.is_empty() {
        out.push_str("#\n# Translated, but not exactly the same behaviour:\n");
        for w in warnings {
            let _ = writeln!(out, "#   {w}");
        }
    }
    out.push_str(
        "\n[dns]\n# Loopback only until you choose: e.g. [\"0.0.0.0:53\", \"[::]:53\"].\n\
         listen = [\"127.0.0.1:5353\"]\n",
    );
    match city_db {
        Some(db) => {
            let _ = writeln!(out, "\n[geoip]\ncity = {}", s(db));
        }
        None => out.push_str(
            "\n# No GeoIP database was named: without [geoip] steerdns uses its\n\
             # bundled test data, so set city = \"...\" before production.\n",
        ),
    }
    for zone in zones {
        let _ = writeln!(
            out,
            "\n[[zone]]\norigin = {}\nfile = {}",
            s(zone),
            s(&format!("zones/{zone}.zone"))
        );
    }
    out.push_str("\n[policies]\ndir = \"policies\"\n");
    out
}
