//! The `geoip` plugin: a resource's map (continent / country / subdivision entries, defaults
//! and `nets`) into a `geo` step whose rule target lists keep gdnsd's failover order.

use std::path::{Path, PathBuf};

use super::resources::dcmap;
use super::{Ctx, Translated, read_bounded, resource_node, scalars, warn_or_reject};
use crate::import::Problem;
use crate::import::emit::{Match, Step};
use crate::import::vscf::{self, Node};
use crate::import::zonefile::DynRecord;

pub(super) fn geoip(ctx: &mut Ctx<'_>, record: &DynRecord) -> Option<Translated> {
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
