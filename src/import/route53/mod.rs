//! `steerdns import route53 <document.json> --name <fqdn>`: an Amazon Route 53 traffic policy
//! document into one steerdns policy for that name, the zone that holds it, and a
//! steerdns.toml.
//!
//! The document is a tree of rules (failover, geo, latency, weighted, multivalue,
//! geoproximity) over endpoints. steerdns's chain is flat, so the tree is evaluated for every
//! class of client location the document's conditions can tell apart ([`tiers`]), and each
//! class becomes `geo` rules, one per tier, with a `weighted` (or `failover`) selector after:
//! - endpoints become targets: `value` endpoints addresses (A/AAAA) or CNAMEs (CNAME
//!   policies), alias endpoints (CloudFront, ELB, S3 website, ...) CNAMEs to their DNS name;
//! - a multivalue rule becomes one target holding all its addresses.
//!
//! - health checks, given their configurations (`--health-checks`), become probe target
//!   files where steerdns probes can run them ([`health`]).
//!
//! Malformed input is a [`Problem`] naming the file and the JSON path, and nothing is written.
//! What steerdns answers differently (latency, geoproximity, health checks it cannot see,
//! random versus per-network weighted picks) is a warning naming the rule, also written into
//! the generated files.

mod doc;
mod health;
mod regions;
mod tiers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use hickory_proto::rr::Name;

use super::emit::{self, Answer, Match, Policy, Step};
use super::{ImportError, Problem, Report, read_bounded};
use doc::{Document, EndpointKind, Location, RecordType, Rule, Target};
use tiers::{Eval, Place, Tier};

/// What the command line gives besides the document.
#[derive(Debug, Clone)]
pub struct Options {
    /// The steered name (the traffic policy record's name).
    pub name: String,
    /// The zone that holds it; default: `name` without its first label.
    pub zone: Option<String>,
    /// The record TTL (a traffic policy instance's TTL is not in the document).
    pub ttl: u32,
    /// A GeoIP2/GeoLite2 City database for `[geoip] city`.
    pub geoip: Option<String>,
    /// The health checks' configurations (`aws route53 list-health-checks` JSON), to turn
    /// into probe target files.
    pub health_checks: Option<std::path::PathBuf>,
}

const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Translate the traffic policy document at `path` into a new config directory `out`.
pub fn import(path: &Path, options: &Options, out: &Path) -> Result<Report, ImportError> {
    let file = path.display().to_string();
    let text = read_bounded(path, doc::MAX_BYTES)?;
    let problem = |path: String, line: usize, reason: String| {
        ImportError::Untranslatable(vec![Problem {
            file: file.clone(),
            line,
            what: if path.is_empty() {
                reason
            } else {
                format!("{path}: {reason}")
            },
        }])
    };
    let doc = doc::parse(&text).map_err(|e| problem(e.path, e.line, e.reason))?;
    let (name, zone) = names(options).map_err(|e| problem("--name".into(), 0, e))?;
    let mut warnings = Vec::new();
    let mut warn = |what: String| {
        warnings.push(Problem {
            file: file.clone(),
            line: 0,
            what,
        })
    };
    let ids = target_ids(&doc, &mut warn);
    let mut answers = answers(&doc, &ids, &mut warn).map_err(|(p, r)| problem(p, 0, r))?;
    let configs = match &options.health_checks {
        Some(p) => {
            let text = read_bounded(p, doc::MAX_BYTES)?;
            health::parse(&text).map_err(|e| {
                ImportError::Untranslatable(vec![Problem {
                    file: p.display().to_string(),
                    line: 0,
                    what: e,
                }])
            })?
        }
        None => BTreeMap::new(),
    };
    let probes = health_notes(
        &doc,
        &ids,
        &configs,
        options.health_checks.is_some(),
        &mut warn,
    );
    for (id, (_, path)) in &doc.rules {
        if !doc.reachable.contains(id) {
            warn(format!(
                "{path}: rule {id:?} is not reached from the start, so it is not translated"
            ));
        }
    }
    for (path, what) in &doc.ignored {
        warn(format!("{path}: {what} is not translated"));
    }

    let mut eval = Eval::new(&doc);
    let compiled = compile(&mut eval, &name);
    for (path, what) in std::mem::take(&mut eval.notes) {
        warn(format!("{path}: {what}"));
    }
    for w in &compiled.notes {
        warn(w.clone());
    }
    let chain = assign(&compiled, &ids, &mut answers, &mut warn);
    let mut header = format!(
        "Imported from a Route 53 traffic policy: {file} ({} rule(s), {} endpoint(s)).",
        doc.rules.len(),
        doc.endpoints.len()
    );
    if !warnings.is_empty() {
        header.push_str("\nNot exactly the same behaviour (see steerdns.toml):");
        for w in &warnings {
            header.push_str(&format!("\n  {}", w.what));
        }
    }
    let policy = Policy {
        name: name.clone(),
        ttl: options.ttl,
        origin: header,
        last_resort: chain.last_resort.clone(),
        targets: answers.into_iter().collect(),
        chain: chain.steps,
    };
    let zone_text = zone_file(&zone, &name);
    // The config lives in `out`: name the database by its absolute path.
    let geoip = match &options.geoip {
        Some(db) => Some(
            std::fs::canonicalize(db)
                .map_err(|e| ImportError::Io(format!("--geoip {db}: {e}")))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let config = emit::config_toml(
        &format!("Generated by `steerdns import route53` from {file} for {name}."),
        geoip.as_deref(),
        std::slice::from_ref(&zone),
        &warnings,
    );
    let mut config = config;
    let mut extra = Vec::new();
    if !probes.is_empty() {
        config.push_str(
            "\n[probes]\n# Checks translated from the Route 53 health checks (--health-checks).\n\
             targets = \"probes/targets\"\n",
        );
        for (target, text) in &probes {
            let rel = Path::new("probes/targets").join(format!("{target}.toml"));
            // The probes' own parser is the judge of what was written.
            steerdns_probes::parse_target(&rel.display().to_string(), text).map_err(|e| {
                ImportError::Generated {
                    dir: out.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
            extra.push((rel, text.clone()));
        }
    }
    let written = super::write_dir(
        out,
        &config,
        &[(zone.clone(), zone_text)],
        &[policy],
        &extra,
    )?;
    Ok(Report {
        out: out.to_owned(),
        zones: vec![zone],
        policies: written,
        warnings,
    })
}

/// The steered name and its zone, lower case without the trailing dot.
fn names(options: &Options) -> Result<(String, String), String> {
    let parse = |text: &str| -> Result<Name, String> {
        let mut n =
            Name::from_ascii(text).map_err(|e| format!("{text:?} is not a DNS name: {e}"))?;
        n.set_fqdn(true);
        Ok(n.to_lowercase())
    };
    let name = parse(&options.name)?;
    let zone = match &options.zone {
        Some(z) => parse(z)?,
        None => name.base_name(),
    };
    if zone.is_root() || name.num_labels() <= zone.num_labels() || !zone.zone_of(&name) {
        return Err(format!(
            "{name} must be a name below its zone {zone} (give --zone, e.g. --zone {})",
            name.base_name()
        ));
    }
    let bare = |n: &Name| n.to_ascii().trim_end_matches('.').to_owned();
    Ok((bare(&name), bare(&zone)))
}

/// steerdns target ids for the document's endpoints and multivalue rules: the id itself when
/// it is plain (letters, digits, `-`, `_`, `.`), else a cleaned-up one.
fn target_ids(doc: &Document, warn: &mut impl FnMut(String)) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    let mut taken = BTreeSet::new();
    let sources = doc.endpoints.keys().map(|k| (k, "Endpoints")).chain(
        doc.rules
            .iter()
            .filter(|(_, (r, _))| matches!(r, Rule::Multivalue { .. }))
            .map(|(k, _)| (k, "Rules")),
    );
    for (id, section) in sources {
        let mut clean: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .take(63)
            .collect();
        let base = clean.clone();
        let mut n = 2;
        while !taken.insert(clean.clone()) {
            clean = format!("{base}-{n}");
            n += 1;
        }
        if clean != *id {
            warn(format!(
                "{section}.{id}: is target {clean:?} in steerdns (target ids name health)"
            ));
        }
        ids.insert(id.clone(), clean);
    }
    ids
}

/// Each endpoint's (and multivalue rule's) answer, checked against the record type.
fn answers(
    doc: &Document,
    ids: &BTreeMap<String, String>,
    warn: &mut impl FnMut(String),
) -> Result<BTreeMap<String, Answer>, (String, String)> {
    let mut out = BTreeMap::new();
    let value = |path: &str, v: &str| -> Result<Answer, (String, String)> {
        let bad = |what: &str| Err((format!("{path}.Value"), format!("{v:?} is not {what}")));
        match doc.record_type {
            RecordType::A => match v.parse::<Ipv4Addr>() {
                Ok(_) => Ok(Answer::Addresses {
                    a: vec![v.to_owned()],
                    aaaa: vec![],
                }),
                Err(_) => bad("an IPv4 address (RecordType A)"),
            },
            RecordType::Aaaa => match v.parse::<Ipv6Addr>() {
                Ok(ip) => Ok(Answer::Addresses {
                    a: vec![],
                    aaaa: vec![ip.to_string()],
                }),
                Err(_) => bad("an IPv6 address (RecordType AAAA)"),
            },
            RecordType::Cname => cname(v).map_or_else(
                || bad("a host name (RecordType CNAME)"),
                |c| Ok(Answer::Cname(c)),
            ),
        }
    };
    for (id, e) in &doc.endpoints {
        let answer = match &e.kind {
            EndpointKind::Value => value(&e.path, &e.value)?,
            EndpointKind::Alias(kind) => {
                let Some(c) = cname(&e.value) else {
                    return Err((
                        format!("{}.Value", e.path),
                        format!("{:?} is not a DNS name", e.value),
                    ));
                };
                warn(format!(
                    "{}: a {kind} alias: Route 53 answers the resource's own addresses; steerdns \
                     answers a CNAME to {c} (resolvers follow it; not possible at a zone apex)",
                    e.path
                ));
                Answer::Cname(c)
            }
        };
        out.insert(ids[id].clone(), answer);
    }
    for (id, (rule, path)) in &doc.rules {
        let Rule::Multivalue { items } = rule else {
            continue;
        };
        if doc.record_type == RecordType::Cname {
            return Err((
                path.clone(),
                "multivalue rules answer addresses; RecordType CNAME has one record".into(),
            ));
        }
        let (mut a, mut aaaa) = (Vec::new(), Vec::new());
        for item in items {
            let Target::Endpoint(e) = &item.to else {
                continue;
            };
            let Some(endpoint) = doc.endpoints.get(e) else {
                continue;
            };
            if endpoint.kind != EndpointKind::Value {
                return Err((
                    item.path.clone(),
                    format!("multivalue item {e:?} is an alias; multivalue answers values only"),
                ));
            }
            if let Answer::Addresses { a: x, aaaa: y } = value(&endpoint.path, &endpoint.value)? {
                a.extend(x);
                aaaa.extend(y);
            }
        }
        warn(format!(
            "{path}: multivalue rule {id:?} is one target answering all {} of its addresses: \
             Route 53 answers up to 8 healthy ones, each with its own health; steerdns takes \
             the set up or down as a whole",
            a.len() + aaaa.len()
        ));
        out.insert(ids[id].clone(), Answer::Addresses { a, aaaa });
    }
    Ok(out)
}

fn cname(v: &str) -> Option<String> {
    let fq = if v.ends_with('.') {
        v.to_ascii_lowercase()
    } else {
        format!("{}.", v.to_ascii_lowercase())
    };
    let name = Name::from_ascii(&fq).ok()?;
    (!name.is_root() && name.num_labels() >= 2).then_some(fq)
}

/// Health checks are Route 53 objects referenced by id, not part of the document. With their
/// configurations (`--health-checks`), the ones steerdns probes can run become probe target
/// files (target id, TOML); for the others, say what steerdns does instead.
fn health_notes(
    doc: &Document,
    ids: &BTreeMap<String, String>,
    configs: &BTreeMap<String, serde_json::Value>,
    given: bool,
    warn: &mut impl FnMut(String),
) -> BTreeMap<String, String> {
    let mut probes: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    for (rule_id, (rule, _)) in &doc.rules {
        if !doc.reachable.contains(rule_id) {
            continue;
        }
        for r in rule.refs() {
            let target = match &r.to {
                Target::Endpoint(e) => ids.get(e).cloned(),
                Target::Rule(_) => None,
            };
            if let Some(hc) = &r.health_check {
                let untranslated = |why: &str| match &target {
                    Some(t) => format!(
                        "{}.HealthCheck: Route 53 health check {hc:?} {why}, so it is not \
                         translated: target {t:?} counts as up until a steerdns probe \
                         ([probes]) or an operator override (PUT /api/v1/health/{t}) marks it down",
                        r.path
                    ),
                    None => format!(
                        "{}.HealthCheck: Route 53 health check {hc:?} on a rule is not translated: \
                         steerdns counts the rule up while any of its endpoints is",
                        r.path
                    ),
                };
                match (configs.get(hc), &target) {
                    (None, _) if !given => warn(untranslated("is not in the document")),
                    (None, _) => warn(untranslated("is not in the --health-checks file")),
                    (Some(_), None) => warn(untranslated("")),
                    (Some(config), Some(t)) => match health::checks(hc, config) {
                        Ok(text) => {
                            let entry = probes.entry(t.clone()).or_default();
                            if !entry.0.contains(hc) {
                                entry.0.push(hc.clone());
                                entry.1.push_str(&text);
                                warn(format!(
                                    "{}.HealthCheck: Route 53 health check {hc:?} is a steerdns probe \
                                     check of target {t:?} (probes/targets/{t}.toml); its failure \
                                     threshold and checker regions are steerdns's own ([health])",
                                    r.path
                                ));
                            }
                        }
                        Err(why) => warn(format!(
                            "{}.HealthCheck: {why}: target {t:?} counts as up until a steerdns \
                             probe or an operator override marks it down",
                            r.path
                        )),
                    },
                }
            }
            if r.evaluate_target_health == Some(true)
                && let (Target::Endpoint(e), Some(t)) = (&r.to, &target)
                && doc
                    .endpoints
                    .get(e)
                    .is_some_and(|e| e.kind != EndpointKind::Value)
            {
                warn(format!(
                    "{}.EvaluateTargetHealth: steerdns cannot see the AWS resource's health: \
                     target {t:?} is up until a steerdns probe or an override marks it down",
                    r.path
                ));
            }
        }
    }
    probes
        .into_iter()
        .map(|(t, (hcs, checks))| {
            let toml_target = toml::Value::String(t.clone()).to_string();
            (
                t,
                format!(
                    "# From Route 53 health check(s) {} (steerdns import route53).\ntarget = {toml_target}\n{checks}",
                    hcs.join(", ")
                ),
            )
        })
        .collect()
}

/// Per client class, the tiers; and what steerdns needs to answer them.
struct Compiled {
    /// (place, tiers), least specific first; only places that answer differently from what
    /// the rules before them would give.
    classes: Vec<(Place, Vec<Tier>)>,
    /// Clients with no location (and those no class covers).
    default: Vec<Tier>,
    notes: Vec<String>,
}

fn specificity(p: &Place) -> (u8, u8) {
    let class = if p.subdivision.is_some() {
        3
    } else if p.country.is_some() {
        2
    } else {
        1
    };
    let fields = [&p.continent, &p.country, &p.subdivision]
        .iter()
        .filter(|f| f.is_some())
        .count() as u8;
    (class, fields)
}

/// What steerdns's geo step answers a client at `place`: the most specific matching class.
fn lookup<'a>(classes: &'a [(Place, Vec<Tier>)], default: &'a [Tier], place: &Place) -> &'a [Tier] {
    let matches = |c: &Place| {
        [
            (&c.continent, &place.continent),
            (&c.country, &place.country),
            (&c.subdivision, &place.subdivision),
        ]
        .iter()
        .all(|(want, have)| want.is_none() || want == have)
    };
    classes
        .iter()
        .filter(|(c, _)| matches(c))
        .max_by_key(|(c, _)| specificity(c))
        .map_or(default, |(_, t)| t)
}

fn compile(eval: &mut Eval<'_>, name: &str) -> Compiled {
    // Every condition the document names.
    let (mut continents, mut countries, mut subdivisions) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (rule, _) in eval.doc.rules.values() {
        match rule {
            Rule::Geo { locations, .. } => {
                for (loc, _) in locations {
                    match loc {
                        Location::Continent(c) => {
                            continents.insert(c.clone());
                        }
                        Location::Country(cc) => {
                            countries.insert(cc.clone());
                        }
                        Location::Subdivision(cc, s) => {
                            subdivisions.insert((cc.clone(), s.clone()));
                        }
                    }
                }
            }
            Rule::Latency { regions } => {
                continents.extend(
                    regions
                        .iter()
                        .filter_map(|(r, _)| regions::continent(r).map(str::to_owned)),
                );
            }
            Rule::Geoproximity { locations } => {
                continents.extend(
                    locations
                        .iter()
                        .map(|(p, _)| tiers::proximity_continent(p).1.to_owned()),
                );
            }
            _ => {}
        }
    }
    let mut notes = Vec::new();
    let default = eval.start(&Place::default());
    // Candidate places, least specific first, so a class is kept only when it changes what the
    // classes before it (and the default) would answer.
    let mut places: Vec<Place> = Vec::new();
    for c in &continents {
        places.push(Place {
            continent: Some(c.clone()),
            ..Place::default()
        });
    }
    let variants = |country: &str, sub: Option<&String>| {
        std::iter::once(None)
            .chain(
                continents
                    .iter()
                    .filter(|c| regions::country_on(country, c))
                    .cloned()
                    .map(Some),
            )
            .map(move |continent| Place {
                continent,
                country: Some(country.to_owned()),
                subdivision: sub.cloned(),
            })
            .collect::<Vec<_>>()
    };
    for cc in &countries {
        places.extend(variants(cc, None));
    }
    for (cc, s) in &subdivisions {
        places.extend(variants(cc, Some(s)));
    }
    places.sort_by_key(specificity);
    let mut classes: Vec<(Place, Vec<Tier>)> = Vec::new();
    for place in places {
        let tiers = eval.start(&place);
        if tiers.is_empty() {
            notes.push(format!(
                "{name}: Route 53 answers clients at {} with no record (no location matches and no \
                 default); steerdns answers them as the rules around them",
                describe(&place)
            ));
            continue;
        }
        if lookup(&classes, &default, &place) != tiers.as_slice() {
            classes.push((place, tiers));
        }
    }
    Compiled {
        classes,
        default,
        notes,
    }
}

fn describe(p: &Place) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &p.continent {
        parts.push(format!("continent {c}"));
    }
    if let Some(cc) = &p.country {
        parts.push(format!("country {cc}"));
    }
    if let Some(s) = &p.subdivision {
        parts.push(format!("subdivision {s}"));
    }
    if parts.is_empty() {
        "an unknown location".into()
    } else {
        parts.join(", ")
    }
}

struct Chain {
    steps: Vec<Step>,
    last_resort: Option<String>,
}

/// Tiers into a chain. steerdns weights are per target and one weighted step serves every
/// tier, so an endpoint that two tiers weigh differently becomes a second target (`id-2`, the
/// same answer) with its own weight.
fn assign(
    compiled: &Compiled,
    ids: &BTreeMap<String, String>,
    answers: &mut BTreeMap<String, Answer>,
    warn: &mut impl FnMut(String),
) -> Chain {
    let mut weights: BTreeMap<String, Option<u128>> =
        answers.keys().map(|t| (t.clone(), None)).collect();
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut multi = false;
    let mut resolve = |tier: &Tier, weights: &mut BTreeMap<String, Option<u128>>| -> Vec<String> {
        if tier.len() == 1 {
            return vec![ids[&tier[0].0].clone()];
        }
        multi = true;
        let mut out = Vec::new();
        for (endpoint, w) in tier {
            let base = ids[endpoint].clone();
            let known = aliases
                .entry(base.clone())
                .or_insert_with(|| vec![base.clone()]);
            let pick = known.iter().find(|t| {
                weights
                    .get(*t)
                    .is_some_and(|have| have.is_none() || *have == Some(*w))
            });
            let id = match pick {
                Some(id) => id.clone(),
                None => {
                    let id = format!("{base}-{}", known.len() + 1);
                    known.push(id.clone());
                    if let Some(answer) = answers.get(&base).cloned() {
                        answers.insert(id.clone(), answer);
                    }
                    warn(format!(
                        "endpoint {endpoint:?} is weighted differently in different places: \
                         steerdns weights are per target, so one of them is target {id:?} (the \
                         same answer; mark both down to take the endpoint out)"
                    ));
                    id
                }
            };
            weights.insert(id.clone(), Some(*w));
            out.push(id);
        }
        out
    };
    let default: Vec<Vec<String>> = compiled
        .default
        .iter()
        .map(|t| resolve(t, &mut weights))
        .collect();
    let classes: Vec<(Place, Vec<Vec<String>>)> = compiled
        .classes
        .iter()
        .map(|(p, tiers)| {
            (
                p.clone(),
                tiers.iter().map(|t| resolve(t, &mut weights)).collect(),
            )
        })
        .collect();
    // Clients not in the GeoIP data only have the geo default, one list: with weights, that is
    // the default's first tier, and its fallback is `last_resort`, the best of the second tier.
    let last_resort = if multi && default.len() > 1 {
        if default.len() > 2 || default[1].len() > 1 {
            warn(format!(
                "clients not in the GeoIP data: when every target of the default's first choice \
                 ({}) is down, steerdns answers last_resort; Route 53 would go on through {} \
                 fallback level(s) ({})",
                default[0].join(", "),
                default.len() - 1,
                default[1..]
                    .iter()
                    .map(|t| t.join(" + "))
                    .collect::<Vec<_>>()
                    .join(", then ")
            ));
        }
        default[1]
            .iter()
            .max_by_key(|t| (weights.get(*t).copied().flatten(), std::cmp::Reverse(*t)))
            .cloned()
    } else {
        default.first().and_then(|t| t.first()).cloned()
    };
    let mut steps = vec![Step::Up];
    let needs_geo = !classes.is_empty() || (default.len() > 1 && multi);
    if needs_geo {
        let mut rules = Vec::new();
        for (place, tiers) in &classes {
            let m = Match {
                continent: place.continent.clone(),
                country: if place.subdivision.is_some() {
                    None
                } else {
                    place.country.clone()
                },
                subdivision: place
                    .subdivision
                    .as_ref()
                    .map(|s| format!("{}-{s}", place.country.as_deref().unwrap_or_default())),
                ..Match::default()
            };
            if multi {
                for tier in tiers {
                    rules.push((m.clone(), tier.clone()));
                }
            } else {
                // One target per tier: the failover selector takes them in this order.
                rules.push((m, tiers.iter().flatten().cloned().collect()));
            }
        }
        // With weights, the default's fallbacks apply to located clients as rules on every
        // continent, after the continents' own rules (same specificity, later in the file).
        if multi && default.len() > 1 {
            let any = Match {
                continents: CONTINENTS.iter().map(|c| (*c).to_owned()).collect(),
                ..Match::default()
            };
            for tier in &default {
                rules.push((any.clone(), tier.clone()));
            }
        }
        let default = if multi {
            default.first().cloned().unwrap_or_default()
        } else {
            default.iter().flatten().cloned().collect()
        };
        steps.push(Step::Geo { default, rules });
    }
    if multi {
        // Nested weights multiply; past a million, scale them down (shares kept to 1e-6).
        let top = weights.values().filter_map(|w| *w).max().unwrap_or(1);
        let scale = top.div_ceil(1_000_000).max(1);
        if scale > 1 {
            warn(format!(
                "nested weights multiply to {top}: divided by {scale} (shares rounded to about \
                 one in a million)"
            ));
        }
        let weights = weights
            .into_iter()
            .map(|(id, w)| (id, (w.unwrap_or(1) / scale).max(1) as u64))
            .collect();
        steps.push(Step::Weighted(weights));
    } else if needs_geo {
        steps.push(Step::Failover(Vec::new()));
    } else {
        steps.push(Step::Failover(default.into_iter().flatten().collect()));
    }
    Chain { steps, last_resort }
}

fn zone_file(zone: &str, name: &str) -> String {
    let ns = if name == format!("ns1.{zone}") {
        "ns2"
    } else {
        "ns1"
    };
    format!(
        "; Generated by `steerdns import route53`: the zone holding the steered name {name}\n\
         ; (its answers come from policies/{name}.toml). The SOA, NS and address below are\n\
         ; placeholders: put your name servers and the zone's other records here.\n\
         $ORIGIN {zone}.\n\
         $TTL 3600\n\
         @ IN SOA {ns}.{zone}. hostmaster.{zone}. 1 3600 600 604800 30\n\
         @ IN NS {ns}.{zone}.\n\
         {ns} IN A 127.0.0.1\n"
    )
}

#[cfg(test)]
mod tests;
