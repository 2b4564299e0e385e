//! The rule tree, evaluated for one class of client location, as **tiers**: an ordered list of
//! weighted endpoint sets, meaning "pick by weight among the healthy endpoints of the first tier
//! that has one". That is what a steerdns policy can answer: `up`, then a `geo` step whose
//! rules for one location are the tiers in order (a rule whose targets are all down passes to
//! the next matching one), then a `weighted` selector.
//!
//! Exact for failover (primary's tiers, then secondary's), geo (the most specific matching
//! location, then the less specific ones and the default: our reading of Route 53's geolocation
//! health behaviour, where an unhealthy location's clients go to the larger region), weighted sets of endpoints or of single-tier rules
//! (weights multiplied through), and weight-0 items (used only when the others are down).
//! Approximated, with a note: a weighted rule over rules that have several tiers (steerdns moves
//! to an item's next tier only when every item's first tier is down), latency and geoproximity
//! (geo by continent, see [`super::regions`]).

use std::collections::BTreeSet;

use super::doc::{Document, Location, Proximity, Rule, Target};
use super::regions;

/// Endpoint (or multivalue rule) id and its relative weight.
pub type Tier = Vec<(String, u128)>;

/// Where a client is, as far as the document's conditions can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub continent: Option<String>,
    pub country: Option<String>,
    /// Subdivision code without the country (`CA` for `US-CA`).
    pub subdivision: Option<String>,
}

pub struct Eval<'a> {
    pub doc: &'a Document,
    /// (JSON path, what) of each approximation met, deduplicated by the caller.
    pub notes: BTreeSet<(String, String)>,
}

impl<'a> Eval<'a> {
    pub fn new(doc: &'a Document) -> Self {
        Eval {
            doc,
            notes: BTreeSet::new(),
        }
    }

    pub fn start(&mut self, place: &Place) -> Vec<Tier> {
        let start = self.doc.start.clone();
        let tiers = self.target(&start, place);
        normalize(tiers)
    }

    fn target(&mut self, t: &Target, place: &Place) -> Vec<Tier> {
        match t {
            Target::Endpoint(id) => vec![vec![(id.clone(), 1)]],
            Target::Rule(id) => match self.doc.rules.get(id) {
                Some((rule, path)) => {
                    let (rule, path) = (rule.clone(), path.clone());
                    self.rule(id, &rule, &path, place)
                }
                None => Vec::new(),
            },
        }
    }

    fn rule(&mut self, id: &str, rule: &Rule, path: &str, place: &Place) -> Vec<Tier> {
        match rule {
            Rule::Failover { primary, secondary } => {
                let mut tiers = self.target(&primary.to, place);
                tiers.extend(self.target(&secondary.to, place));
                tiers
            }
            Rule::Geo { locations, default } => {
                let mut matching: Vec<(u8, &super::doc::Ref)> = locations
                    .iter()
                    .filter_map(|(loc, r)| {
                        let rank = match loc {
                            Location::Subdivision(cc, s)
                                if place.country.as_ref() == Some(cc)
                                    && place.subdivision.as_ref() == Some(s) =>
                            {
                                3
                            }
                            Location::Country(cc) if place.country.as_ref() == Some(cc) => 2,
                            Location::Continent(c) if place.continent.as_ref() == Some(c) => 1,
                            _ => return None,
                        };
                        Some((rank, r))
                    })
                    .collect();
                matching.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
                let mut tiers = Vec::new();
                for (_, r) in matching {
                    tiers.extend(self.target(&r.to, place));
                }
                if let Some(d) = default {
                    tiers.extend(self.target(&d.to, place));
                }
                tiers
            }
            Rule::Latency { regions } => {
                self.notes.insert((
                    path.to_owned(),
                    format!(
                        "latency rule {id:?}: steerdns has no AWS latency measurements, so it \
                         answers by continent: each region's continent ({}) gets that region first, \
                         then the others in document order; other continents and clients not in \
                         the GeoIP data get the regions in document order (add a `performance` step \
                         by hand to steer by steerdns's own probe or RUM measurements)",
                        regions
                            .iter()
                            .map(|(r, _)| format!(
                                "{r} → {}",
                                regions::continent(r).unwrap_or("?")
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                let located: Vec<(&str, &super::doc::Ref)> = regions
                    .iter()
                    .map(|(r, re)| (regions::continent(r).unwrap_or(""), re))
                    .collect();
                self.by_continent(&located, place)
            }
            Rule::Geoproximity { locations } => {
                let located: Vec<(&str, &super::doc::Ref)> = locations
                    .iter()
                    .map(|(p, r)| (proximity_continent(p).1, r))
                    .collect();
                let described: Vec<String> = locations
                    .iter()
                    .map(|(p, _)| {
                        let (region, c) = proximity_continent(p);
                        match p {
                            Proximity::Region(_) => format!("{region} → {c}"),
                            Proximity::Coordinates {
                                latitude,
                                longitude,
                            } => format!("({latitude}, {longitude}) near {region} → {c}"),
                        }
                    })
                    .collect();
                self.notes.insert((
                    path.to_owned(),
                    format!(
                        "geoproximity rule {id:?}: translated as geo by the continent of each \
                         location ({}); distances within a continent and Bias are not expressed \
                         (other continents and clients not in the GeoIP data get the locations in \
                         document order)",
                        described.join(", ")
                    ),
                ));
                self.by_continent(&located, place)
            }
            Rule::Weighted { items } => {
                self.notes.insert((
                    path.to_owned(),
                    format!(
                        "weighted rule {id:?}: Route 53 picks at random per query; steerdns hashes \
                         each client network (/24, /56), so a network keeps its answer, with the \
                         same shares overall"
                    ),
                ));
                let all_zero = items.iter().all(|(w, _)| *w == 0);
                let mut positive = Vec::new();
                let mut zero = Vec::new();
                for (w, r) in items {
                    let tiers = self.target(&r.to, place);
                    if all_zero {
                        positive.push((1, tiers));
                    } else if *w == 0 {
                        zero.push((1, tiers));
                    } else {
                        positive.push((u128::from(*w), tiers));
                    }
                }
                if positive.len() > 1 && positive.iter().any(|(_, t)| t.len() > 1) {
                    self.notes.insert((
                        format!("{path}.Items"),
                        format!(
                            "weighted rule {id:?} has an item with its own fallback (a failover, \
                             geo, latency or nested rule): Route 53 moves only that item's share \
                             to its fallback when its first choice is down; steerdns keeps the \
                             share among the other items' first choices and uses the fallbacks \
                             only when all of them are down"
                        ),
                    ));
                }
                let mut tiers = merge_weighted(&positive);
                tiers.extend(merge_weighted(&zero));
                tiers
            }
            Rule::Multivalue { .. } => vec![vec![(id.to_owned(), 1)]],
        }
    }

    /// Latency and geoproximity as geo by continent: the client's continent's entries first
    /// (document order), then every other entry in document order.
    fn by_continent(&mut self, located: &[(&str, &super::doc::Ref)], place: &Place) -> Vec<Tier> {
        let mut tiers = Vec::new();
        if let Some(c) = &place.continent {
            for (_, r) in located.iter().filter(|(lc, _)| lc == c) {
                tiers.extend(self.target(&r.to, place));
            }
        }
        for (_, r) in located {
            tiers.extend(self.target(&r.to, place));
        }
        tiers
    }
}

pub fn proximity_continent(p: &Proximity) -> (&str, &'static str) {
    match p {
        Proximity::Region(r) => (r.as_str(), regions::continent(r).unwrap_or("")),
        Proximity::Coordinates {
            latitude,
            longitude,
        } => regions::nearest_continent(*latitude, *longitude),
    }
}

/// Weighted items (each a list of tiers) into tiers: tier k holds every item's k-th tier, the
/// item's weight spread over its endpoints in proportion to their weights there.
fn merge_weighted(items: &[(u128, Vec<Tier>)]) -> Vec<Tier> {
    let depth = items.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..depth {
        let level: Vec<(u128, &Tier)> = items
            .iter()
            .filter_map(|(w, t)| t.get(k).map(|tier| (*w, tier)))
            .collect();
        // Common denominator of the items' tier sums, so the products stay whole numbers.
        let mut lcm: u128 = 1;
        for (_, tier) in &level {
            let sum: u128 = tier.iter().map(|(_, w)| *w).sum::<u128>().max(1);
            lcm = lcm / gcd(lcm, sum) * sum;
            lcm = lcm.min(1 << 60);
        }
        let mut tier: Tier = Vec::new();
        for (w, t) in level {
            let sum: u128 = t.iter().map(|(_, x)| *x).sum::<u128>().max(1);
            for (id, x) in t {
                tier.push((id.clone(), w.saturating_mul(*x).saturating_mul(lcm / sum)));
            }
        }
        out.push(tier);
    }
    out
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Merge repeated endpoints within a tier, drop endpoints already in an earlier tier (they are
/// down by the time a later tier is used), drop empty tiers, reduce each tier's weights.
fn normalize(tiers: Vec<Tier>) -> Vec<Tier> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for tier in tiers {
        let mut merged: Tier = Vec::new();
        for (id, w) in tier {
            if seen.contains(&id) {
                continue;
            }
            match merged.iter_mut().find(|(i, _)| *i == id) {
                Some((_, total)) => *total = total.saturating_add(w),
                None => merged.push((id, w)),
            }
        }
        merged.retain(|(_, w)| *w > 0);
        if merged.is_empty() {
            continue;
        }
        let g = merged.iter().fold(0, |g, (_, w)| gcd(g, *w));
        for (id, w) in &mut merged {
            *w /= g;
            seen.insert(id.clone());
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_multiply_through_nested_weighted_sets() {
        let inner = vec![vec![("a".to_owned(), 1), ("b".to_owned(), 3)]];
        let other = vec![vec![("c".to_owned(), 1)]];
        let tiers = normalize(merge_weighted(&[(50, inner), (50, other)]));
        // a: 50 × 1/4, b: 50 × 3/4, c: 50.
        assert_eq!(
            tiers,
            vec![vec![
                ("a".to_owned(), 1),
                ("b".to_owned(), 3),
                ("c".to_owned(), 4)
            ]]
        );
    }

    #[test]
    fn later_tiers_lose_endpoints_of_earlier_ones() {
        let tiers = normalize(vec![
            vec![("a".to_owned(), 2)],
            vec![("a".to_owned(), 1), ("b".to_owned(), 1)],
            vec![("b".to_owned(), 1)],
        ]);
        assert_eq!(
            tiers,
            vec![vec![("a".to_owned(), 1)], vec![("b".to_owned(), 1)]]
        );
    }
}
