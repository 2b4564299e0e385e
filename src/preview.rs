//! What a policy change would do, before it is applied: per country (and per ASN that a rule
//! names), the share of answers each target gets before and after, computed on the real
//! GeoIP data. Used by `?dry_run=true`, every accepted edit's response, and `steerdns diff`.
//! Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decision::OutcomeId;
use crate::geo::GeoDb;
use crate::snapshot::Steered;

/// Changes smaller than this (half a percentage point) are not reported.
const NOISE: f64 = 0.005;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Preview {
    pub changes: Vec<Change>,
    /// Regions compared in all.
    pub regions: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// `country GB`, `continent EU` (no country), `not located`, `asn 6167`.
    pub region: String,
    /// Target id → share of answers, 0..=1.
    pub before: BTreeMap<String, f64>,
    pub after: BTreeMap<String, f64>,
}

impl std::fmt::Display for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no change in any of {} regions", self.regions);
        }
        writeln!(
            f,
            "{} of {} regions change:",
            self.changes.len(),
            self.regions
        )?;
        for c in &self.changes {
            writeln!(
                f,
                "  {}: {} → {}",
                c.region,
                shares(&c.before),
                shares(&c.after)
            )?;
        }
        Ok(())
    }
}

fn shares(map: &BTreeMap<String, f64>) -> String {
    if map.is_empty() {
        return "(not served)".into();
    }
    let parts: Vec<String> = map
        .iter()
        .map(|(t, s)| format!("{t} {:.1}%", s * 100.0))
        .collect();
    parts.join(", ")
}

/// Compare the answers of `before` (none: a new name) and `after`.
pub fn compare(before: Option<&Steered>, after: &Steered, geo: &GeoDb) -> Preview {
    let old = before.map(|b| regions(b, geo)).unwrap_or_default();
    let new = regions(after, geo);
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    let empty = BTreeMap::new();
    let changes = names
        .iter()
        .filter_map(|region| {
            let (b, a) = (
                old.get(*region).unwrap_or(&empty),
                new.get(*region).unwrap_or(&empty),
            );
            let differs = b
                .keys()
                .chain(a.keys())
                .any(|t| (b.get(t).unwrap_or(&0.0) - a.get(t).unwrap_or(&0.0)).abs() > NOISE);
            differs.then(|| Change {
                region: (*region).clone(),
                before: b.clone(),
                after: a.clone(),
            })
        })
        .collect();
    Preview {
        changes,
        regions: names.len(),
    }
}

/// Average target shares per region over the location classes in it.
fn regions(steered: &Steered, geo: &GeoDb) -> BTreeMap<String, BTreeMap<String, f64>> {
    let table = &steered.table;
    let mut sums: BTreeMap<String, (BTreeMap<String, f64>, usize)> = BTreeMap::new();
    let mut add = |region: String, id: OutcomeId| {
        let (sum, n) = sums.entry(region).or_default();
        for (t, share) in table
            .outcome(id)
            .pick
            .shares()
            .into_iter()
            .filter(|(_, s)| *s > 1e-9)
        {
            *sum.entry(steered.policy.target(t).id.clone()).or_default() += share;
        }
        *n += 1;
    };
    let classes = geo.classes();
    for (i, id) in table.by_class().iter().enumerate() {
        let region = match classes.get(i) {
            None => "not located".to_owned(),
            Some(loc) => match (loc.country_code(), loc.continent) {
                (Some(c), _) => format!("country {c}"),
                (None, Some(k)) => format!("continent {k} (no country)"),
                (None, None) => "located, no country".to_owned(),
            },
        };
        add(region, *id);
    }
    for (asn, per_class) in table.by_asn() {
        for id in per_class {
            add(format!("asn {asn}"), *id);
        }
    }
    sums.into_iter()
        .map(|(region, (sum, n))| {
            let avg = sum.into_iter().map(|(t, s)| (t, s / n as f64)).collect();
            (region, avg)
        })
        .collect()
}
