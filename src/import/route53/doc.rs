//! A Route 53 traffic policy document (JSON) read into a checked tree: every reference
//! resolved, every field the importer does not know rejected with its JSON path, and nothing
//! taken on trust (the rule graph must be a tree: a cycle is an error, not a stack overflow).
//!
//! Depends on `serde_json` only; health checks and evaluate-target-health are kept as read so
//! the translation can say what it drops.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Documents larger than this are refused before parsing (Route 53's own limit is far lower).
pub const MAX_BYTES: usize = 1 << 20;
/// Rules nested deeper than this are refused (Route 53 allows far fewer levels).
const MAX_DEPTH: usize = 32;
/// Entries of the tree with shared rules expanded: the translation walks it once per client
/// location class, so a document whose rules reference each other many times over is refused
/// rather than walked for hours.
const MAX_EXPANDED: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointKind {
    /// `"Type": "value"`: an address or (CNAME policies) a host name.
    Value,
    /// An alias to an AWS resource by its DNS name (`cloudfront`, `elastic-load-balancer`,
    /// `s3-website`, ...): the type as written.
    Alias(String),
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub value: String,
    pub path: String,
}

/// What a rule entry points at, with the health settings written at that reference.
#[derive(Debug, Clone)]
pub struct Ref {
    pub to: Target,
    /// JSON path of the entry, for warnings.
    pub path: String,
    pub health_check: Option<String>,
    pub evaluate_target_health: Option<bool>,
}

#[derive(Debug, Clone)]
pub enum Target {
    Endpoint(String),
    Rule(String),
}

/// A geo location: a continent, or a country with an optional subdivision (ISO 3166-2 suffix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    Continent(String),
    Country(String),
    /// (country, subdivision code without the country), e.g. ("US", "CA").
    Subdivision(String, String),
}

#[derive(Debug, Clone)]
pub enum Rule {
    Failover {
        primary: Ref,
        secondary: Ref,
    },
    Geo {
        locations: Vec<(Location, Ref)>,
        default: Option<Ref>,
    },
    Latency {
        regions: Vec<(String, Ref)>,
    },
    Weighted {
        items: Vec<(u64, Ref)>,
    },
    Multivalue {
        items: Vec<Ref>,
    },
    Geoproximity {
        locations: Vec<(Proximity, Ref)>,
    },
}

#[derive(Debug, Clone)]
pub enum Proximity {
    Region(String),
    Coordinates { latitude: f64, longitude: f64 },
}

#[derive(Debug, Clone)]
pub struct Document {
    pub record_type: RecordType,
    pub start: Target,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub rules: BTreeMap<String, (Rule, String)>,
    /// Geoproximity biases and other settings read but not used, for warnings: (path, what).
    pub ignored: Vec<(String, String)>,
    /// Rules the start reaches (the others are not translated).
    pub reachable: BTreeSet<String>,
}

/// A problem at a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

type Res<T> = Result<T, PathError>;

fn err<T>(path: &str, reason: impl Into<String>) -> Res<T> {
    Err(PathError {
        path: path.to_owned(),
        line: 0,
        reason: reason.into(),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Res<&'a Map<String, Value>> {
    v.as_object().map_or_else(
        || err(path, format!("expected an object, found {}", kind(v))),
        Ok,
    )
}

fn string(v: &Value, path: &str) -> Res<String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::String(_) => err(path, "empty string"),
        other => err(path, format!("expected a string, found {}", kind(other))),
    }
}

/// Route 53 documents write numbers both as JSON numbers and as strings (`"Weight": "50"`).
fn number(v: &Value, path: &str) -> Res<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(n),
        _ => err(path, format!("expected a number, found {v}")),
    }
}

fn boolean(v: &Value, path: &str) -> Res<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        other => err(
            path,
            format!("expected true or false, found {}", kind(other)),
        ),
    }
}

fn array<'a>(v: &'a Value, path: &str) -> Res<&'a [Value]> {
    match v {
        Value::Array(a) if !a.is_empty() => Ok(a),
        Value::Array(_) => err(path, "empty list"),
        other => err(path, format!("expected a list, found {}", kind(other))),
    }
}

fn only(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Res<()> {
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            return err(
                &format!("{path}.{k}"),
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            );
        }
    }
    Ok(())
}

/// Parse and check a document's text.
pub fn parse(text: &str) -> Result<Document, PathError> {
    let root: Value = serde_json::from_str(text).map_err(|e| PathError {
        path: String::new(),
        line: e.line(),
        reason: format!("not valid JSON: {e}"),
    })?;
    let map = object(&root, "$")?;
    only(
        map,
        "$",
        &[
            "AWSPolicyFormatVersion",
            "RecordType",
            "StartRule",
            "StartEndpoint",
            "Endpoints",
            "Rules",
        ],
    )?;
    match map.get("AWSPolicyFormatVersion") {
        Some(v) => {
            let version = string(v, "AWSPolicyFormatVersion")?;
            if version != "2015-10-01" && version != "2023-05-09" {
                return err(
                    "AWSPolicyFormatVersion",
                    format!("{version:?} is not a known version (2015-10-01, 2023-05-09)"),
                );
            }
        }
        None => return err("AWSPolicyFormatVersion", "missing"),
    }
    let record_type = match map.get("RecordType") {
        Some(v) => match string(v, "RecordType")?.to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::Aaaa,
            "CNAME" => RecordType::Cname,
            other => {
                return err(
                    "RecordType",
                    format!(
                        "{other} is not supported: steerdns steers A, AAAA and CNAME answers only"
                    ),
                );
            }
        },
        None => return err("RecordType", "missing"),
    };
    let mut ignored = Vec::new();
    let mut endpoints = BTreeMap::new();
    if let Some(v) = map.get("Endpoints") {
        for (id, e) in object(v, "Endpoints")? {
            let path = format!("Endpoints.{id}");
            endpoints.insert(id.clone(), endpoint(e, &path, &mut ignored)?);
        }
    }
    let mut rules = BTreeMap::new();
    if let Some(v) = map.get("Rules") {
        for (id, r) in object(v, "Rules")? {
            let path = format!("Rules.{id}");
            rules.insert(id.clone(), (rule(r, &path, &mut ignored)?, path));
        }
    }
    let start = match (map.get("StartRule"), map.get("StartEndpoint")) {
        (Some(_), Some(_)) => return err("StartRule", "give StartRule or StartEndpoint, not both"),
        (Some(v), None) => Target::Rule(string(v, "StartRule")?),
        (None, Some(v)) => Target::Endpoint(string(v, "StartEndpoint")?),
        (None, None) => return err("StartRule", "missing (or StartEndpoint)"),
    };
    let doc = Document {
        record_type,
        start,
        endpoints,
        rules,
        ignored,
        reachable: BTreeSet::new(),
    };
    let start_path = match &doc.start {
        Target::Rule(_) => "StartRule",
        Target::Endpoint(_) => "StartEndpoint",
    };
    let mut done = BTreeSet::new();
    doc.check_target(&doc.start, start_path, &mut Vec::new(), &mut done)?;
    let mut doc = doc;
    doc.reachable = done;
    let size = doc.expanded(&doc.start, &mut BTreeMap::new());
    if size > MAX_EXPANDED {
        return Err(PathError {
            path: start_path.to_owned(),
            line: 0,
            reason: format!(
                "the rule tree expands to more than {MAX_EXPANDED} entries (a rule referenced \
                 from several places counts each time)"
            ),
        });
    }
    Ok(doc)
}

fn endpoint(v: &Value, path: &str, _ignored: &mut Vec<(String, String)>) -> Res<Endpoint> {
    let map = object(v, path)?;
    only(map, path, &["Type", "Value", "Region"])?;
    let ty = match map.get("Type") {
        Some(t) => string(t, &format!("{path}.Type"))?,
        None => return err(&format!("{path}.Type"), "missing"),
    };
    let value = match map.get("Value") {
        Some(t) => string(t, &format!("{path}.Value"))?,
        None => return err(&format!("{path}.Value"), "missing"),
    };
    let kind = match ty.as_str() {
        "value" => EndpointKind::Value,
        "cloudfront"
        | "elastic-load-balancer"
        | "application-load-balancer"
        | "network-load-balancer"
        | "s3-website"
        | "elastic-beanstalk" => EndpointKind::Alias(ty),
        other => {
            return err(
                &format!("{path}.Type"),
                format!(
                    "{other:?} is not an endpoint type (value, cloudfront, elastic-load-balancer, \
                     application-load-balancer, network-load-balancer, s3-website, elastic-beanstalk)"
                ),
            );
        }
    };
    Ok(Endpoint {
        kind,
        value,
        path: path.to_owned(),
    })
}

/// An entry pointing at an endpoint or a rule, with `extra` fields allowed besides.
fn reference(v: &Value, path: &str, extra: &[&str]) -> Res<Ref> {
    let map = object(v, path)?;
    let mut allowed = vec![
        "EndpointReference",
        "RuleReference",
        "EvaluateTargetHealth",
        "HealthCheck",
    ];
    allowed.extend_from_slice(extra);
    only(map, path, &allowed)?;
    let to = match (map.get("EndpointReference"), map.get("RuleReference")) {
        (Some(_), Some(_)) => {
            return err(path, "give EndpointReference or RuleReference, not both");
        }
        (Some(e), None) => Target::Endpoint(string(e, &format!("{path}.EndpointReference"))?),
        (None, Some(r)) => Target::Rule(string(r, &format!("{path}.RuleReference"))?),
        (None, None) => return err(path, "needs an EndpointReference or a RuleReference"),
    };
    let health_check = map
        .get("HealthCheck")
        .map(|h| string(h, &format!("{path}.HealthCheck")))
        .transpose()?;
    let evaluate_target_health = map
        .get("EvaluateTargetHealth")
        .map(|b| boolean(b, &format!("{path}.EvaluateTargetHealth")))
        .transpose()?;
    Ok(Ref {
        to,
        path: path.to_owned(),
        health_check,
        evaluate_target_health,
    })
}

fn rule(v: &Value, path: &str, ignored: &mut Vec<(String, String)>) -> Res<Rule> {
    let map = object(v, path)?;
    let ty = match map.get("RuleType") {
        Some(t) => string(t, &format!("{path}.RuleType"))?,
        None => return err(&format!("{path}.RuleType"), "missing"),
    };
    let field = |name: &str| -> Res<&Value> {
        map.get(name)
            .map_or_else(|| err(&format!("{path}.{name}"), "missing"), Ok)
    };
    Ok(match ty.as_str() {
        "failover" => {
            only(map, path, &["RuleType", "Primary", "Secondary"])?;
            Rule::Failover {
                primary: reference(field("Primary")?, &format!("{path}.Primary"), &[])?,
                secondary: reference(field("Secondary")?, &format!("{path}.Secondary"), &[])?,
            }
        }
        "geo" => {
            only(map, path, &["RuleType", "Locations"])?;
            let lpath = format!("{path}.Locations");
            let mut locations = Vec::new();
            let mut default: Option<Ref> = None;
            for (i, l) in array(field("Locations")?, &lpath)?.iter().enumerate() {
                let p = format!("{lpath}[{i}]");
                let r = reference(l, &p, &["IsDefault", "Continent", "Country", "Subdivision"])?;
                let m = object(l, &p)?;
                let is_default = m
                    .get("IsDefault")
                    .map(|b| boolean(b, &format!("{p}.IsDefault")))
                    .transpose()?
                    .unwrap_or(false);
                let text = |k: &str| m.get(k).map(|v| string(v, &format!("{p}.{k}"))).transpose();
                let (continent, country, sub) =
                    (text("Continent")?, text("Country")?, text("Subdivision")?);
                if is_default {
                    if continent.is_some() || country.is_some() || sub.is_some() {
                        return err(&p, "a default location names no continent or country");
                    }
                    if default.is_some() {
                        return err(&p, "a second IsDefault location");
                    }
                    default = Some(r);
                    continue;
                }
                let loc = location(&p, continent, country, sub)?;
                if locations.iter().any(|(l, _)| *l == loc) {
                    return err(&p, format!("{loc:?} is listed twice"));
                }
                locations.push((loc, r));
            }
            Rule::Geo { locations, default }
        }
        "latency" => {
            only(map, path, &["RuleType", "Regions"])?;
            let rpath = format!("{path}.Regions");
            let mut regions = Vec::new();
            for (i, r) in array(field("Regions")?, &rpath)?.iter().enumerate() {
                let p = format!("{rpath}[{i}]");
                let reference = reference(r, &p, &["Region"])?;
                let region = match object(r, &p)?.get("Region") {
                    Some(v) => string(v, &format!("{p}.Region"))?,
                    None => return err(&format!("{p}.Region"), "missing"),
                };
                if super::regions::continent(&region).is_none() {
                    return err(
                        &format!("{p}.Region"),
                        format!("{region:?} is not an AWS region the importer knows"),
                    );
                }
                regions.push((region, reference));
            }
            Rule::Latency { regions }
        }
        "weighted" | "multivalue" => {
            only(map, path, &["RuleType", "Items"])?;
            let ipath = format!("{path}.Items");
            let mut weighted = Vec::new();
            let mut plain = Vec::new();
            for (i, item) in array(field("Items")?, &ipath)?.iter().enumerate() {
                let p = format!("{ipath}[{i}]");
                if ty == "multivalue" {
                    let r = reference(item, &p, &[])?;
                    if let Target::Rule(_) = r.to {
                        return err(&p, "multivalue items must be endpoints (EndpointReference)");
                    }
                    plain.push(r);
                    continue;
                }
                let r = reference(item, &p, &["Weight"])?;
                let w = match object(item, &p)?.get("Weight") {
                    Some(v) => number(v, &format!("{p}.Weight"))?,
                    None => return err(&format!("{p}.Weight"), "missing"),
                };
                if !(0.0..=255.0).contains(&w) || w.fract() != 0.0 {
                    return err(
                        &format!("{p}.Weight"),
                        format!("{w} is not a whole number 0..=255"),
                    );
                }
                weighted.push((w as u64, r));
            }
            if ty == "multivalue" {
                Rule::Multivalue { items: plain }
            } else {
                Rule::Weighted { items: weighted }
            }
        }
        "geoproximity" => {
            only(map, path, &["RuleType", "GeoproximityLocations"])?;
            let gpath = format!("{path}.GeoproximityLocations");
            let mut locations = Vec::new();
            for (i, l) in array(field("GeoproximityLocations")?, &gpath)?
                .iter()
                .enumerate()
            {
                let p = format!("{gpath}[{i}]");
                let r = reference(
                    l,
                    &p,
                    &["Region", "Latitude", "Longitude", "Bias", "LocalZoneGroup"],
                )?;
                let m = object(l, &p)?;
                let at = match (m.get("Region"), m.get("Latitude"), m.get("Longitude")) {
                    (Some(region), None, None) => {
                        let region = string(region, &format!("{p}.Region"))?;
                        let bare = region.strip_prefix("aws:route53:").unwrap_or(&region);
                        if super::regions::continent(bare).is_none() {
                            return err(
                                &format!("{p}.Region"),
                                format!("{region:?} is not an AWS region the importer knows"),
                            );
                        }
                        Proximity::Region(bare.to_owned())
                    }
                    (None, Some(lat), Some(lon)) => {
                        let latitude = number(lat, &format!("{p}.Latitude"))?;
                        let longitude = number(lon, &format!("{p}.Longitude"))?;
                        if !(-90.0..=90.0).contains(&latitude)
                            || !(-180.0..=180.0).contains(&longitude)
                        {
                            return err(&p, "latitude or longitude out of range");
                        }
                        Proximity::Coordinates {
                            latitude,
                            longitude,
                        }
                    }
                    _ => {
                        return err(
                            &p,
                            "needs a Region, or a Latitude and a Longitude (not both)",
                        );
                    }
                };
                if let Some(b) = m.get("Bias") {
                    let bias = number(b, &format!("{p}.Bias"))?;
                    if !(-99.0..=99.0).contains(&bias) {
                        return err(&format!("{p}.Bias"), format!("{bias} is not in -99..=99"));
                    }
                    if bias != 0.0 {
                        ignored.push((format!("{p}.Bias"), format!("bias {bias}")));
                    }
                }
                if m.contains_key("LocalZoneGroup") {
                    ignored.push((format!("{p}.LocalZoneGroup"), "local zone group".into()));
                }
                locations.push((at, r));
            }
            Rule::Geoproximity { locations }
        }
        other => {
            return err(
                &format!("{path}.RuleType"),
                format!(
                    "{other:?} is not a rule type (failover, geo, latency, weighted, multivalue, geoproximity)"
                ),
            );
        }
    })
}

fn location(
    p: &str,
    continent: Option<String>,
    country: Option<String>,
    sub: Option<String>,
) -> Res<Location> {
    match (continent, country, sub) {
        (Some(c), None, None) => {
            let c = c.to_ascii_uppercase();
            crate::geo::iso::parse_continent(&c)
                .map_err(|r| PathError {
                    path: format!("{p}.Continent"),
                    line: 0,
                    reason: r,
                })
                .map(|_| Location::Continent(c))
        }
        (None, Some(cc), sub) => {
            let cc = cc.to_ascii_uppercase();
            crate::geo::iso::parse_country(&cc).map_err(|r| PathError {
                path: format!("{p}.Country"),
                line: 0,
                reason: r,
            })?;
            match sub {
                None => Ok(Location::Country(cc)),
                Some(s) => {
                    let code = format!("{cc}-{}", s.to_ascii_uppercase());
                    let (_, s) =
                        crate::geo::iso::parse_subdivision(&code).map_err(|r| PathError {
                            path: format!("{p}.Subdivision"),
                            line: 0,
                            reason: r,
                        })?;
                    Ok(Location::Subdivision(cc, s))
                }
            }
        }
        (None, None, Some(_)) => err(&format!("{p}.Subdivision"), "needs a Country"),
        (Some(_), Some(_), _) => err(p, "give a Continent or a Country, not both"),
        (Some(_), None, Some(_)) => err(p, "a Subdivision goes with a Country, not a Continent"),
        (None, None, None) => err(p, "needs a Continent, a Country or IsDefault: true"),
    }
}

impl Document {
    /// Every reference exists and the rules form a tree of bounded depth.
    fn check_target(
        &self,
        t: &Target,
        path: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Res<()> {
        match t {
            Target::Endpoint(id) => {
                if !self.endpoints.contains_key(id) {
                    let known: Vec<&str> = self.endpoints.keys().map(String::as_str).collect();
                    return err(
                        path,
                        format!("no endpoint {id:?} in Endpoints ({})", known.join(", ")),
                    );
                }
                Ok(())
            }
            Target::Rule(id) => {
                let Some((rule, rpath)) = self.rules.get(id) else {
                    let known: Vec<&str> = self.rules.keys().map(String::as_str).collect();
                    return err(
                        path,
                        format!("no rule {id:?} in Rules ({})", known.join(", ")),
                    );
                };
                if done.contains(id) {
                    return Ok(());
                }
                if stack.contains(id) {
                    return err(
                        path,
                        format!(
                            "rule {id:?} refers back to itself ({} → {id})",
                            stack.join(" → ")
                        ),
                    );
                }
                if stack.len() >= MAX_DEPTH {
                    return err(path, format!("rules nested deeper than {MAX_DEPTH}"));
                }
                stack.push(id.clone());
                for r in rule.refs() {
                    self.check_target(&r.to, &reference_path(r), stack, done)?;
                }
                let _ = rpath;
                stack.pop();
                done.insert(id.clone());
                Ok(())
            }
        }
    }
}

impl Document {
    /// How many entries the tree has with every shared rule expanded (saturating; the rules
    /// are known to be acyclic here).
    fn expanded(&self, t: &Target, memo: &mut BTreeMap<String, usize>) -> usize {
        match t {
            Target::Endpoint(_) => 1,
            Target::Rule(id) => {
                if let Some(n) = memo.get(id) {
                    return *n;
                }
                let n = self.rules.get(id).map_or(1, |(rule, _)| {
                    rule.refs()
                        .iter()
                        .fold(1usize, |n, r| n.saturating_add(self.expanded(&r.to, memo)))
                });
                memo.insert(id.clone(), n);
                n
            }
        }
    }
}

fn reference_path(r: &Ref) -> String {
    match r.to {
        Target::Endpoint(_) => format!("{}.EndpointReference", r.path),
        Target::Rule(_) => format!("{}.RuleReference", r.path),
    }
}

impl Rule {
    pub fn refs(&self) -> Vec<&Ref> {
        match self {
            Rule::Failover { primary, secondary } => vec![primary, secondary],
            Rule::Geo { locations, default } => locations
                .iter()
                .map(|(_, r)| r)
                .chain(default.as_ref())
                .collect(),
            Rule::Latency { regions } => regions.iter().map(|(_, r)| r).collect(),
            Rule::Weighted { items } => items.iter().map(|(_, r)| r).collect(),
            Rule::Multivalue { items } => items.iter().collect(),
            Rule::Geoproximity { locations } => locations.iter().map(|(_, r)| r).collect(),
        }
    }
}
