//! Datacenter answers (addresses, lists, synthesized multifo, `%multifo!res`, CNAMEs) and the
//! `metafo`, `multifo` and `weighted` resources.

use std::net::IpAddr;

use super::{Ctx, HEALTH_KEYS, Translated, resource_node, scalars, warn_or_reject};
use crate::import::emit::{Answer, Step};
use crate::import::vscf::{Node, Value};
use crate::import::zonefile::DynRecord;

pub(super) fn metafo(ctx: &mut Ctx<'_>, record: &DynRecord) -> Option<Translated> {
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
pub(super) fn dcmap(
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
pub(super) fn multifo_answer(ctx: &mut Ctx<'_>, node: &Node) -> Option<Answer> {
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

pub(super) fn weighted(ctx: &mut Ctx<'_>, record: &DynRecord) -> Option<Translated> {
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
