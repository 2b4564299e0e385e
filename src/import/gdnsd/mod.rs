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

use std::path::{Path, PathBuf};

mod geoip;
mod resources;

use super::emit::{self, Answer, Policy, Step};
use super::vscf::{self, Node, Value};
use super::zonefile::{self, DynKind, DynRecord};
use super::{ImportError, Problem, Report, read_bounded};
use geoip::geoip;
use resources::{metafo, multifo_answer, weighted};

/// Plugin and resource keys that only configure health checks (translated as a warning).
pub(super) const HEALTH_KEYS: &[&str] = &["service_types", "up_thresh", "ignore_health"];

pub(super) struct Ctx<'a> {
    pub(super) dir: &'a Path,
    pub(super) file: String,
    pub(super) root: Node,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// The one City DB all maps use (steerdns has one), and where it was named.
    pub(super) city_db: Option<(PathBuf, usize)>,
}

impl Ctx<'_> {
    pub(super) fn problem(&mut self, line: usize, what: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            what: what.into(),
        });
    }

    pub(super) fn warn(&mut self, line: usize, what: impl Into<String>) {
        self.warnings.push(Problem {
            file: self.file.clone(),
            line,
            what: what.into(),
        });
    }

    pub(super) fn plugin(&self, name: &str) -> Option<Node> {
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
        origin: format!("Imported from gdnsd: {at}"),
        last_resort: None,
        targets,
        chain,
    })
}

pub(super) type Translated = (Vec<(String, Answer)>, Vec<Step>);

/// `plugins.<plugin>[.resources].<resource>`, merged with the plugin's inherited top keys.
pub(super) fn resource_node(
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

pub(super) fn warn_or_reject(ctx: &mut Ctx<'_>, where_: &str, node: &Node, allowed: &[&str]) {
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

pub(super) fn scalars(ctx: &mut Ctx<'_>, node: &Node, what: &str) -> Option<Vec<String>> {
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

fn write(
    dir: &Path,
    out: &Path,
    ctx: &Ctx<'_>,
    zones: &[(String, String)],
    policies: &[Policy],
) -> Result<Report, ImportError> {
    let zone_names: Vec<String> = zones.iter().map(|(o, _)| o.clone()).collect();
    let city = ctx.city_db.as_ref().map(|(p, _)| p.display().to_string());
    let config = emit::config_toml(
        &format!(
            "Generated by `steerdns import gdnsd` from {}.",
            dir.display()
        ),
        city.as_deref(),
        &zone_names,
        &ctx.warnings,
    );
    let written = super::write_dir(out, &config, zones, policies, &[])?;
    Ok(Report {
        out: out.to_owned(),
        zones: zone_names,
        policies: written,
        warnings: ctx.warnings.clone(),
    })
}
