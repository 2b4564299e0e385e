//! `steerdns import gdnsd <dir>`: a gdnsd 3.x config directory (`config`, `zones/`,
//! `geoip/`) into steerdns policies and zones.
//!
//! Each `DYNA`/`DYNC` record becomes one policy, from the resource it names:
//! - `geoip`: the map's datacenter lists become a `geo` step after `up`. Continent, country
//!   and first-level subdivision entries become rules (with their enclosing continent and
//!   country, as gdnsd only looks a country up under its continent), `default`s become the
//!   default or a broader rule, `nets` become `cidr` rules. A list keeps its order: it is the
//!   failover order, which steerdns's geo rule targets are too.
//! - `metafo`: `up` then `failover` in the `datacenters` order.
//! - `multifo`: one target holding every address, after `up`.
//! - `weighted` (single-pick, ungrouped, addresses or CNAMEs): `up` then `weighted`.
//!
//! Datacenters become targets: a CNAME, addresses, a synthesized multifo hash, or
//! `%multifo!res`. Anything else (city-level maps, auto_dc_coords, skip_first, nested
//! meta-plugins, weighted `multi`/groups, `$include`) is a [`Problem`]; health-check settings
//! are warnings, since steerdns's health comes from its own probes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::emit::{self, Answer, Match, Policy, Step};
use super::vscf::{self, Node, Value};
use super::zonefile::{self, DynKind, DynRecord};
use super::{ImportError, Problem, Report};

/// Plugin and resource keys that only configure health checks (translated as a warning).
const HEALTH_KEYS: &[&str] = &["service_types", "up_thresh", "ignore_health"];

struct Ctx<'a> {
    dir: &'a Path,
    file: String,
    root: Node,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    /// The one City DB all maps use (steerdns has one), and where it was named.
    city_db: Option<(PathBuf, usize)>,
}

impl Ctx<'_> {
    fn problem(&mut self, line: usize, what: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            what: what.into(),
        });
    }

    fn warn(&mut self, line: usize, what: impl Into<String>) {
        self.warnings.push(Problem {
            file: self.file.clone(),
            line,
            what: what.into(),
        });
    }

    fn plugin(&self, name: &str) -> Option<Node> {
        self.root.get("plugins")?.get(name).cloned()
    }
}

/// Translate `dir` (a gdnsd config directory) into a new steerdns config directory `out`
/// (which must not exist or be empty).
pub fn import(dir: &Path, out: &Path) -> Result<Report, ImportError> {
    let config_path = dir.join("config");
    let file = config_path.display().to_string();
    let text = read_bounded(&config_path, vscf::MAX_BYTES)?;
    let root = vscf::parse(&text).map_err(|e| {
        ImportError::Untranslatable(vec![Problem {
            file: file.clone(),
            line: e.line,
            what: e.reason,
        }])
    })?;
    let mut ctx = Ctx {
        dir,
        file,
        root,
        problems: Vec::new(),
        warnings: Vec::new(),
        city_db: None,
    };
    check_options(&mut ctx);

    let zones_dir = dir.join("zones");
    let mut names: Vec<String> = std::fs::read_dir(&zones_dir)
        .map_err(|e| ImportError::Io(format!("{}: cannot read: {e}", zones_dir.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.ends_with('~'))
        .collect();
    names.sort();
    let mut zones = Vec::new();
    let mut policies: Vec<Policy> = Vec::new();
    for name in &names {
        let path = zones_dir.join(name);
        let origin = name.trim_end_matches('.').to_ascii_lowercase();
        let text = read_bounded(&path, zonefile::MAX_BYTES)?;
        let zone_file = path.display().to_string();
        match zonefile::strip(&zone_file, &origin, &text) {
            Ok(stripped) => {
                for record in &stripped.records {
                    if let Some(policy) = translate(&mut ctx, &zone_file, record)
                        && !policies.iter().any(|p| p.name == policy.name)
                    {
                        policies.push(policy);
                    }
                }
                zones.push((origin, stripped.text));
            }
            Err(mut problems) => ctx.problems.append(&mut problems),
        }
    }
    if zones.is_empty() && ctx.problems.is_empty() {
        ctx.problems.push(Problem {
            file: zones_dir.display().to_string(),
            line: 0,
            what: "no zone files".into(),
        });
    }
    if !ctx.problems.is_empty() {
        return Err(ImportError::Untranslatable(ctx.problems));
    }
    // A setting inherited by several resources is reported once.
    let mut seen = std::collections::HashSet::new();
    ctx.warnings.retain(|w| seen.insert(w.clone()));
    write(dir, out, &ctx, &zones, &policies)
}

fn read_bounded(path: &Path, max: usize) -> Result<String, ImportError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ImportError::Io(format!("{}: cannot read: {e}", path.display())))?;
    if meta.len() > max as u64 {
        return Err(ImportError::Io(format!(
            "{}: {} bytes, more than the {max} accepted",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| ImportError::Io(format!("{}: cannot read: {e}", path.display())))
}

/// Server options steerdns sets differently are not errors: the listeners are steerdns's own.
fn check_options(ctx: &mut Ctx<'_>) {
    let Some(options) = ctx.root.get("options").cloned() else {
        return;
    };
    if let Some(ecs) = options.get("edns_client_subnet")
        && ecs.as_scalar() == Some("false")
    {
        ctx.warn(
            ecs.line,
            "edns_client_subnet = false: steerdns always uses EDNS Client Subnet",
        );
    }
    if options.get("listen").is_some() {
        ctx.warn(
            options.line,
            "options (listen, threads, ...) are not translated: set [dns] in steerdns.toml",
        );
    }
    if let Some(plugins) = ctx
        .root
        .get("plugins")
        .and_then(Node::as_hash)
        .map(<[_]>::to_vec)
    {
        for (name, node) in plugins {
            if !matches!(name.as_str(), "geoip" | "metafo" | "multifo" | "weighted") {
                ctx.warn(
                    node.line,
                    format!("plugin {name:?} is not translated (only resources referenced by DYNA/DYNC are)"),
                );
            }
        }
    }
    if let Some(st) = ctx.root.get("service_types") {
        let line = st.line;
        ctx.warn(line, "service_types (health checks) are not translated: health comes from steerdns probes and overrides");
    }
}

fn translate(ctx: &mut Ctx<'_>, zone_file: &str, record: &DynRecord) -> Option<Policy> {
    let at = format!(
        "{zone_file}:{} {} {}!{}",
        record.line,
        record.kind.rr(),
        record.plugin,
        record.resource
    );
    if record.resource.contains('/') {
        ctx.problems.push(Problem {
            file: zone_file.to_owned(),
            line: record.line,
            what: format!(
                "{}: a resource/datacenter reference (forcing one datacenter) is not supported",
                record.resource
            ),
        });
        return None;
    }
    let before = ctx.problems.len();
    let (targets, chain) = match record.plugin.as_str() {
        "geoip" => geoip(ctx, record)?,
        "metafo" => metafo(ctx, record)?,
        "multifo" => {
            let res = resource_node(ctx, record, "multifo", false)?;
            let answer = multifo_answer(ctx, &res)?;
            (vec![(record.resource.clone(), answer)], vec![Step::Up])
        }
        "weighted" => weighted(ctx, record)?,
        other => {
            ctx.problems.push(Problem {
                file: zone_file.to_owned(),
                line: record.line,
                what: format!(
                    "plugin {other:?} is not supported (geoip, metafo, multifo, weighted are)"
                ),
            });
            return None;
        }
    };
    if record.kind == DynKind::A {
        for (id, answer) in &targets {
            if let Answer::Cname(c) = answer {
                ctx.problems.push(Problem {
                    file: zone_file.to_owned(),
                    line: record.line,
                    what: format!("DYNA resolves datacenter {id} to CNAME {c}; use DYNC"),
                });
            }
        }
    }
    if ctx.problems.len() > before {
        return None;
    }
    Some(Policy {
        name: record.owner.clone(),
        ttl: record.ttl,
        origin: at,
        targets,
        chain,
    })
}

type Translated = (Vec<(String, Answer)>, Vec<Step>);

/// `plugins.<plugin>[.resources].<resource>`, merged with the plugin's inherited top keys.
fn resource_node(
    ctx: &mut Ctx<'_>,
    record: &DynRecord,
    plugin: &str,
    nested: bool,
) -> Option<Node> {
    let Some(top) = ctx.plugin(plugin) else {
        ctx.problems.push(Problem {
            file: ctx.file.clone(),
            line: 0,
            what: format!(
                "{} {}!{} (zone line {}): no plugins.{plugin} section",
                record.kind.rr(),
                plugin,
                record.resource,
                record.line
            ),
        });
        return None;
    };
    let holder = if nested {
        top.get("resources").cloned()
    } else {
        Some(top.clone())
    };
    let Some(res) = holder
        .as_ref()
        .and_then(|h| h.get(&record.resource))
        .cloned()
    else {
        let line = holder.as_ref().map_or(top.line, |h| h.line);
        ctx.problem(
            line,
            format!(
                "no resource {:?} in plugins.{plugin} (used at zone line {})",
                record.resource, record.line
            ),
        );
        return None;
    };
    // Inherited keys: everything at the plugin's top level except the structure itself.
    for (k, v) in top.as_hash().unwrap_or(&[]) {
        if HEALTH_KEYS.contains(&k.as_str()) {
            ctx.warn(v.line, format!("plugins.{plugin}.{k} (health checks) is not translated: steerdns health comes from its probes and overrides"));
        }
    }
    Some(res)
}

fn warn_or_reject(ctx: &mut Ctx<'_>, where_: &str, node: &Node, allowed: &[&str]) {
    for (k, v) in node.as_hash().unwrap_or(&[]) {
        if allowed.contains(&k.as_str()) {
            continue;
        }
        if HEALTH_KEYS.contains(&k.as_str()) {
            ctx.warn(
                v.line,
                format!("{where_}.{k} (health checks) is not translated"),
            );
        } else {
            ctx.problem(
                v.line,
                format!("{where_}.{k} is not supported by the importer"),
            );
        }
    }
}

fn scalars(ctx: &mut Ctx<'_>, node: &Node, what: &str) -> Option<Vec<String>> {
    match &node.value {
        Value::Scalar(s) => Some(vec![s.clone()]),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_scalar() {
                    Some(s) => out.push(s.to_owned()),
                    None => {
                        ctx.problem(
                            item.line,
                            format!("{what}: expected a name, found {}", item.kind()),
                        );
                        return None;
                    }
                }
            }
            Some(out)
        }
        Value::Hash(_) => {
            ctx.problem(node.line, format!("{what}: expected a list, found a hash"));
            None
        }
    }
}

fn geoip(ctx: &mut Ctx<'_>, record: &DynRecord) -> Option<Translated> {
    let res = resource_node(ctx, record, "geoip", true)?;
    let where_ = format!("plugins.geoip.resources.{}", record.resource);
    warn_or_reject(ctx, &where_, &res, &["map", "dcmap"]);
    let Some(map_name) = res.get("map").and_then(Node::as_scalar).map(str::to_owned) else {
        ctx.problem(res.line, format!("{where_}: no map"));
        return None;
    };
    let map = ctx
        .plugin("geoip")
        .and_then(|g| g.get("maps").and_then(|m| m.get(&map_name)).cloned());
    let Some(map) = map else {
        ctx.problem(
            res.line,
            format!("{where_}: map {map_name:?} is not in plugins.geoip.maps"),
        );
        return None;
    };
    let undefined_ok = ctx
        .plugin("geoip")
        .and_then(|g| {
            g.get("undefined_datacenters_ok")
                .and_then(Node::as_scalar)
                .map(|s| s == "true")
        })
        .unwrap_or(false);
    let mwhere = format!("plugins.geoip.maps.{map_name}");
    warn_or_reject(
        ctx,
        &mwhere,
        &map,
        &["geoip2_db", "datacenters", "map", "nets"],
    );
    if let Some(db) = map.get("geoip2_db") {
        geoip_db(ctx, db);
    }
    let dcs = scalars(
        ctx,
        map.get("datacenters")?,
        &format!("{mwhere}.datacenters"),
    )?;
    let targets = dcmap(ctx, &res, &where_, record)?;
    let defined: Vec<String> = dcs
        .iter()
        .filter(|d| targets.iter().any(|(id, _)| id == *d))
        .cloned()
        .collect();
    if defined.len() != dcs.len() && !undefined_ok {
        // Keep going: the map's own problems are worth reporting in the same run.
        ctx.problem(
            res.line,
            format!("{where_}.dcmap does not define every datacenter of map {map_name}"),
        );
    }
    // A datacenter list, restricted to the datacenters this resource defines.
    let list = |ctx: &mut Ctx<'_>, node: &Node, what: &str| -> Option<Vec<String>> {
        let items = scalars(ctx, node, what)?;
        for i in &items {
            if !dcs.contains(i) {
                ctx.problem(
                    node.line,
                    format!("{what}: {i:?} is not in {mwhere}.datacenters"),
                );
                return None;
            }
        }
        let kept: Vec<String> = items.into_iter().filter(|i| defined.contains(i)).collect();
        if kept.is_empty() {
            ctx.problem(node.line, format!("{what}: an empty datacenter list (a NODATA answer) cannot be expressed in steerdns"));
            return None;
        }
        Some(kept)
    };
    let mut default = defined.clone();
    let mut rules: Vec<(Match, Vec<String>)> = Vec::new();
    if let Some(m) = map.get("map") {
        let Some(entries) = m.as_hash() else {
            ctx.problem(m.line, format!("{mwhere}.map: expected a hash"));
            return None;
        };
        for (cont, node) in entries {
            let what = format!("{mwhere}.map.{cont}");
            if cont == "default" {
                default = list(ctx, node, &what)?;
                continue;
            }
            let continent = cont.to_ascii_uppercase();
            if crate::geo::iso::parse_continent(&continent).is_err() {
                ctx.problem(
                    node.line,
                    format!("{what}: {cont:?} is not a continent code (AF AN AS EU NA OC SA)"),
                );
                continue;
            }
            let at = Match {
                continent: Some(continent.clone()),
                ..Match::default()
            };
            let Some(countries) = node.as_hash() else {
                rules.push((at, list(ctx, node, &what)?));
                continue;
            };
            for (country, cnode) in countries {
                let what = format!("{what}.{country}");
                if country == "default" {
                    rules.push((at.clone(), list(ctx, cnode, &what)?));
                    continue;
                }
                let cc = country.to_ascii_uppercase();
                if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_alphabetic()) {
                    ctx.problem(
                        cnode.line,
                        format!("{what}: {country:?} is not an ISO 3166-1 country code"),
                    );
                    continue;
                }
                let at = Match {
                    country: Some(cc.clone()),
                    ..at.clone()
                };
                let Some(subs) = cnode.as_hash() else {
                    rules.push((at, list(ctx, cnode, &what)?));
                    continue;
                };
                for (sub, snode) in subs {
                    let what = format!("{what}.{sub}");
                    if sub == "default" {
                        rules.push((at.clone(), list(ctx, snode, &what)?));
                        continue;
                    }
                    if sub.len() > 3 || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        ctx.problem(snode.line, format!("{what}: {sub:?} looks like a city; city-level map entries are not supported"));
                        continue;
                    }
                    if snode.as_hash().is_some() {
                        ctx.problem(snode.line, format!("{what}: deeper subdivision or city levels are not supported (steerdns matches first-level subdivisions)"));
                        continue;
                    }
                    let m = Match {
                        continent: Some(continent.clone()),
                        subdivision: Some(format!("{cc}-{}", sub.to_ascii_uppercase())),
                        ..Match::default()
                    };
                    rules.push((m, list(ctx, snode, &what)?));
                }
            }
        }
    }
    if let Some(nets) = map.get("nets") {
        let nets = match nets.as_scalar() {
            Some(file) => nets_file(ctx, nets.line, file)?,
            None => nets.clone(),
        };
        let Some(entries) = nets.as_hash() else {
            ctx.problem(
                nets.line,
                format!("{mwhere}.nets: expected a hash or a file name"),
            );
            return None;
        };
        for (net, node) in entries {
            let what = format!("{mwhere}.nets.{net}");
            if net.parse::<ipnet::IpNet>().is_err() {
                ctx.problem(node.line, format!("{what}: {net:?} is not network/prefix"));
                continue;
            }
            let m = Match {
                cidr: Some(net.clone()),
                ..Match::default()
            };
            rules.push((m, list(ctx, node, &what)?));
        }
    }
    Some((targets, vec![Step::Up, Step::Geo { default, rules }]))
}

/// A `nets` file: a vscf hash, relative names in `<dir>/geoip/`.
fn nets_file(ctx: &mut Ctx<'_>, line: usize, file: &str) -> Option<Node> {
    let path = geoip_path(ctx.dir, file);
    let text = match read_bounded(&path, vscf::MAX_BYTES) {
        Ok(t) => t,
        Err(e) => {
            ctx.problem(line, format!("nets file: {e}"));
            return None;
        }
    };
    match vscf::parse(&text) {
        Ok(node) => Some(node),
        Err(e) => {
            ctx.problems.push(Problem {
                file: path.display().to_string(),
                line: e.line,
                what: e.reason,
            });
            None
        }
    }
}

fn geoip_path(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join("geoip").join(p)
    }
}

fn geoip_db(ctx: &mut Ctx<'_>, db: &Node) {
    let Some(name) = db.as_scalar() else {
        ctx.problem(db.line, "geoip2_db: expected a file name");
        return;
    };
    let path = geoip_path(ctx.dir, name);
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    match &ctx.city_db {
        Some((p, line)) if *p != path => {
            let what = format!(
                "maps use different GeoIP databases ({} here, {} on line {line}); steerdns has one",
                path.display(),
                p.display()
            );
            ctx.problem(db.line, what);
        }
        Some(_) => {}
        None => ctx.city_db = Some((path, db.line)),
    }
}

fn metafo(ctx: &mut Ctx<'_>, record: &DynRecord) -> Option<Translated> {
    let res = resource_node(ctx, record, "metafo", true)?;
    let where_ = format!("plugins.metafo.resources.{}", record.resource);
    warn_or_reject(ctx, &where_, &res, &["datacenters", "dcmap"]);
    let Some(dcs_node) = res.get("datacenters") else {
        ctx.problem(res.line, format!("{where_}: no datacenters"));
        return None;
    };
    let dcs = scalars(ctx, dcs_node, &format!("{where_}.datacenters"))?;
    let targets = dcmap(ctx, &res, &where_, record)?;
    for dc in &dcs {
        if !targets.iter().any(|(id, _)| id == dc) {
            ctx.problem(
                dcs_node.line,
                format!("{where_}: datacenter {dc:?} has no dcmap entry"),
            );
            return None;
        }
    }
    Some((targets, vec![Step::Up, Step::Failover(dcs)]))
}

/// `dcmap`: each datacenter's answer.
fn dcmap(
    ctx: &mut Ctx<'_>,
    res: &Node,
    where_: &str,
    record: &DynRecord,
) -> Option<Vec<(String, Answer)>> {
    let Some(map) = res.get("dcmap").and_then(Node::as_hash).map(<[_]>::to_vec) else {
        ctx.problem(res.line, format!("{where_}: no dcmap hash"));
        return None;
    };
    let mut out = Vec::new();
    for (dc, node) in &map {
        let what = format!("{where_}.dcmap.{dc}");
        if let Some(answer) = dc_answer(ctx, node, &what, record) {
            out.push((dc.clone(), answer));
        }
    }
    Some(out)
}

fn dc_answer(ctx: &mut Ctx<'_>, node: &Node, what: &str, record: &DynRecord) -> Option<Answer> {
    match &node.value {
        Value::Scalar(s) if s.starts_with('%') || s.starts_with('!') => {
            let reference = s.trim_start_matches('%');
            match reference.split_once('!') {
                Some(("multifo", res)) => {
                    let sub = DynRecord {
                        resource: res.to_owned(),
                        ..record.clone()
                    };
                    let node = resource_node(ctx, &sub, "multifo", false)?;
                    multifo_answer(ctx, &node)
                }
                _ => {
                    ctx.problem(node.line, format!("{what}: reference {s:?} is not supported (only %multifo!resource; layered meta-plugins are not)"));
                    None
                }
            }
        }
        Value::Scalar(s) if s.parse::<IpAddr>().is_ok() => Some(addresses(vec![s.clone()])),
        Value::Scalar(s) if s.ends_with('.') => Some(Answer::Cname(s.clone())),
        Value::Scalar(s) => {
            ctx.problem(
                node.line,
                format!("{what}: {s:?} is neither an address nor a fully qualified CNAME"),
            );
            None
        }
        Value::Array(_) => {
            let items = scalars(ctx, node, what)?;
            if let Some(bad) = items.iter().find(|i| i.parse::<IpAddr>().is_err()) {
                ctx.problem(node.line, format!("{what}: {bad:?} is not an address"));
                return None;
            }
            Some(addresses(items))
        }
        Value::Hash(_) => {
            if let Some(p) = node.get("plugin")
                && p.as_scalar() != Some("multifo")
            {
                ctx.problem(
                    p.line,
                    format!("{what}.plugin: only synthesized multifo datacenters are supported"),
                );
                return None;
            }
            multifo_answer(ctx, node)
        }
    }
}

fn addresses(items: Vec<String>) -> Answer {
    let (a, aaaa) = items
        .into_iter()
        .partition(|i| i.parse::<std::net::Ipv4Addr>().is_ok());
    Answer::Addresses { a, aaaa }
}

/// A multifo resource: `label => address` entries, or `addrs_v4`/`addrs_v6` hashes of them.
fn multifo_answer(ctx: &mut Ctx<'_>, node: &Node) -> Option<Answer> {
    let mut all = Vec::new();
    let mut ok = true;
    let mut collect = |ctx: &mut Ctx<'_>, hash: &Node, all: &mut Vec<String>| {
        for (k, v) in hash.as_hash().unwrap_or(&[]) {
            if HEALTH_KEYS.contains(&k.as_str()) || k == "plugin" {
                if k != "plugin" {
                    ctx.warn(
                        v.line,
                        format!("multifo {k} (health checks) is not translated"),
                    );
                }
                continue;
            }
            if k == "addrs_v4" || k == "addrs_v6" {
                continue;
            }
            match v.as_scalar() {
                Some(s) if s.parse::<IpAddr>().is_ok() => all.push(s.to_owned()),
                _ => {
                    ctx.problem(v.line, format!("multifo entry {k:?}: expected an address"));
                    ok = false;
                }
            }
        }
    };
    collect(ctx, node, &mut all);
    for family in ["addrs_v4", "addrs_v6"] {
        let Some(h) = node.get(family) else { continue };
        if h.as_hash().is_some() {
            collect(ctx, h, &mut all);
            continue;
        }
        // An address or a list of them.
        let items = scalars(ctx, h, &format!("multifo {family}"))?;
        let want_v4 = family == "addrs_v4";
        for item in items {
            match item.parse::<IpAddr>() {
                Ok(ip) if ip.is_ipv4() == want_v4 => all.push(item),
                _ => {
                    ctx.problem(
                        h.line,
                        format!("multifo {family}: {item:?} is not an address of that family"),
                    );
                    return None;
                }
            }
        }
    }
    if !ok {
        return None;
    }
    if all.is_empty() {
        ctx.problem(node.line, "a multifo resource with no addresses");
        return None;
    }
    Some(addresses(all))
}

fn weighted(ctx: &mut Ctx<'_>, record: &DynRecord) -> Option<Translated> {
    let res = resource_node(ctx, record, "weighted", false)?;
    let where_ = format!("plugins.weighted.{}", record.resource);
    let multi = ctx
        .plugin("weighted")
        .and_then(|w| w.get("multi").cloned())
        .into_iter()
        .chain(res.get("multi").cloned())
        .filter_map(|n| n.as_scalar().map(|s| (n.line, s == "true")))
        .next_back();
    if let Some((line, true)) = multi {
        ctx.problem(
            line,
            format!("{where_}: multi = true (several addresses per answer) is not supported"),
        );
        return None;
    }
    let mut targets = Vec::new();
    let mut weights = Vec::new();
    for (label, node) in res.as_hash().unwrap_or(&[]) {
        let what = format!("{where_}.{label}");
        match label.as_str() {
            "multi" => continue,
            k if HEALTH_KEYS.contains(&k) => {
                ctx.warn(
                    node.line,
                    format!("{what} (health checks) is not translated"),
                );
                continue;
            }
            "addrs_v4" | "addrs_v6" => {
                ctx.problem(
                    node.line,
                    format!(
                        "{what}: per-family weighted sets (picked independently) are not supported"
                    ),
                );
                continue;
            }
            _ => {}
        }
        let pair = node
            .as_array()
            .map(|a| a.iter().filter_map(Node::as_scalar).collect::<Vec<_>>());
        let Some([value, weight]) = pair.as_deref() else {
            ctx.problem(node.line, format!("{what}: expected [ address-or-cname, weight ] (grouped datacenters are not supported)"));
            continue;
        };
        let Ok(weight) = weight.parse::<u64>() else {
            ctx.problem(
                node.line,
                format!("{what}: weight {weight:?} is not a whole number"),
            );
            continue;
        };
        let answer = if value.parse::<IpAddr>().is_ok() {
            addresses(vec![(*value).to_owned()])
        } else if value.ends_with('.') {
            Answer::Cname((*value).to_owned())
        } else {
            ctx.problem(
                node.line,
                format!("{what}: {value:?} is neither an address nor a fully qualified CNAME"),
            );
            continue;
        };
        targets.push((label.clone(), answer));
        weights.push((label.clone(), weight));
    }
    if targets.is_empty() {
        ctx.problem(res.line, format!("{where_}: no weighted entries"));
        return None;
    }
    ctx.warn(res.line, format!("{where_}: gdnsd picks at random per query; steerdns hashes each client network (/24, /56) so a network keeps its answer, with the same shares overall"));
    Some((targets, vec![Step::Up, Step::Weighted(weights)]))
}

fn write(
    dir: &Path,
    out: &Path,
    ctx: &Ctx<'_>,
    zones: &[(String, String)],
    policies: &[Policy],
) -> Result<Report, ImportError> {
    let io = |path: &Path, e: std::io::Error| ImportError::Io(format!("{}: {e}", path.display()));
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| io(out, e))?;
        if entries.next().is_some() {
            return Err(ImportError::Io(format!(
                "{}: exists and is not empty; choose a new --out directory",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out.join("zones")).map_err(|e| io(out, e))?;
    std::fs::create_dir_all(out.join("policies")).map_err(|e| io(out, e))?;
    let zone_names: Vec<String> = zones.iter().map(|(o, _)| o.clone()).collect();
    for (origin, text) in zones {
        let path = out.join("zones").join(format!("{origin}.zone"));
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    let mut files = BTreeMap::new();
    for policy in policies {
        let path = out.join("policies").join(policy.file_name());
        std::fs::write(&path, policy.to_toml()).map_err(|e| io(&path, e))?;
        files.insert(policy.name.clone(), path);
    }
    let city = ctx.city_db.as_ref().map(|(p, _)| p.display().to_string());
    let config = emit::config_toml(
        &dir.display().to_string(),
        city.as_deref(),
        &zone_names,
        &ctx.warnings,
    );
    let config_path = out.join("steerdns.toml");
    std::fs::write(&config_path, config).map_err(|e| io(&config_path, e))?;

    // Our own loader is the judge of what we wrote.
    let generated = |reason: String| ImportError::Generated {
        dir: out.display().to_string(),
        reason,
    };
    let loaded = crate::config::Config::load(&config_path).map_err(|e| generated(e.to_string()))?;
    crate::control::build_snapshot(&loaded, 1).map_err(|e| generated(e.to_string()))?;
    Ok(Report {
        out: out.to_owned(),
        zones: zone_names,
        policies: files.keys().cloned().collect(),
        warnings: ctx.warnings.clone(),
    })
}
