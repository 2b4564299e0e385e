//! The Grafana dashboard in `grafana/steerdns.json` cannot drift from `/metrics`: every
//! metric its queries name is exported, every label they match on or group by exists on that
//! metric, every exact label value they match exists, and every exported family is on the
//! dashboard. Checked against the real text of two running servers: one with `[rum]` and a
//! health override and a probe result (target health, transitions, location verdicts, RUM
//! families) and one fleet node on a real `redis-server` (the fleet-only `steerdns_store_*`
//! families, and Redis in the store timings).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::fleet_support::{RedisServer, node};
use super::health::{post_results, result};
use super::rum_ingest::{http, rum_config, start_rum};
use crate::support::*;

const DASHBOARD: &str = include_str!("../../grafana/steerdns.json");

/// Labels Prometheus adds when it scrapes; the server never exports them.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

/// Exported families deliberately not on the dashboard, with the reason.
const NOT_ON_DASHBOARD: [(&str, &str); 0] = [];

/// Metric name → label name → values seen, from Prometheus exposition text.
type Samples = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn parse_exposition(text: &str, samples: &mut Samples) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            samples.entry(name.to_owned()).or_default();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let labels = samples.entry(name.to_owned()).or_default();
        if let Some(body) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for (label, value) in matchers(body.0) {
                labels.entry(label).or_default().insert(value);
            }
        }
    }
}

/// The `label="value"` pairs of a sample's label set.
fn matchers(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(quote) = rest.find('"') {
        let head = rest[..quote].trim().trim_start_matches(',').trim();
        let after = &rest[quote + 1..];
        let Some(end) = after.find('"') else { break };
        out.push((head.to_owned(), after[..end].to_owned()));
        rest = &after[end + 1..];
    }
    out.into_iter()
        .map(|(head, value)| (head.trim_end_matches('=').to_owned(), value))
        .collect()
}

/// One `metric{...}` in a query: its name and its matchers as (label, operator, value).
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String, String)>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `steerdns_*` selectors of a PromQL expression.
fn selectors(expr: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = expr[at..].find("steerdns_") {
        let start = at + found;
        let end = expr[start..]
            .find(|c: char| !is_name_char(c))
            .map_or(expr.len(), |e| start + e);
        let metric = expr[start..end].to_owned();
        let mut matchers = Vec::new();
        if let Some(body) = expr[end..]
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .map(|(b, _)| b)
        {
            for part in body.split(',') {
                let part = part.trim();
                let Some(op_at) = part.find(['=', '!']) else {
                    continue;
                };
                let label = part[..op_at].trim().to_owned();
                let rest = &part[op_at..];
                let op_len =
                    if rest.starts_with("=~") || rest.starts_with("!~") || rest.starts_with("!=") {
                        2
                    } else {
                        1
                    };
                let value = rest[op_len..].trim().trim_matches('"').to_owned();
                matchers.push((label, rest[..op_len].to_owned(), value));
            }
        }
        out.push(Selector { metric, matchers });
        at = end;
    }
    out
}

/// The labels in every `by (...)`, `without (...)`, `on (...)`, `ignoring (...)` clause.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for keyword in ["by", "without", "on", "ignoring"] {
        let mut at = 0;
        while let Some(found) = expr[at..].find(keyword) {
            let start = at + found;
            at = start + keyword.len();
            let before_ok =
                start == 0 || !is_name_char(expr[..start].chars().last().unwrap_or(' '));
            let rest = expr[at..].trim_start();
            if !before_ok || !rest.starts_with('(') {
                continue;
            }
            if let Some((list, _)) = rest[1..].split_once(')') {
                out.extend(
                    list.split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
            }
        }
    }
    out
}

/// Every panel, rows' nested panels included.
fn all_panels(panels: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in panels {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(all_panels(nested));
        }
    }
    out
}

/// (where, PromQL) of every panel query and every query variable.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in all_panels(panels) {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            out.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = var["query"]["query"].as_str().or(var["query"].as_str()) {
            out.push((format!("variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

/// A histogram's family name for one of its series; other names unchanged.
fn histogram_base(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|base| base.ends_with("_seconds"))
        .unwrap_or(name)
}

/// Problems of the dashboard's queries against what the servers export, one line each.
fn drift(dashboard: &Value, samples: &Samples) -> Vec<String> {
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in queries(dashboard) {
        let found = selectors(&expr);
        if found.is_empty() && !expr.is_empty() {
            errors.push(format!("{place}: no steerdns metric in {expr:?}"));
        }
        if expr.matches('(').count() != expr.matches(')').count() {
            errors.push(format!("{place}: unbalanced parentheses in {expr:?}"));
        }
        for sel in &found {
            used.insert(sel.metric.clone());
            let Some(labels) = samples.get(&sel.metric) else {
                errors.push(format!("{place}: {} is not exported", sel.metric));
                continue;
            };
            for (label, op, value) in &sel.matchers {
                if SCRAPE_LABELS.contains(&label.as_str()) {
                    continue;
                }
                match labels.get(label) {
                    None => errors.push(format!(
                        "{place}: {} has no label {label:?} (it has {:?})",
                        sel.metric,
                        labels.keys().collect::<Vec<_>>()
                    )),
                    Some(values)
                        if op == "=" && !value.contains('$') && !values.contains(value) =>
                    {
                        errors.push(format!(
                            "{place}: {}{{{label}=\"{value}\"}} never occurs (values: {values:?})",
                            sel.metric
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        for label in grouping_labels(&expr) {
            let known = SCRAPE_LABELS.contains(&label.as_str())
                || found.iter().any(|s| {
                    samples
                        .get(&s.metric)
                        .is_some_and(|l| l.contains_key(&label))
                });
            if !known {
                errors.push(format!(
                    "{place}: no metric of {expr:?} has the label {label:?}"
                ));
            }
        }
    }
    for family in samples.keys() {
        let skipped = NOT_ON_DASHBOARD.iter().any(|(name, _)| name == family);
        // A histogram is on the dashboard when any of its series (_bucket, _sum, _count) is.
        let on = used
            .iter()
            .any(|u| histogram_base(u) == histogram_base(family));
        if !on && !skipped {
            errors.push(format!("{family} is exported but on no panel"));
        }
    }
    errors
}

#[test]
fn the_dashboard_is_importable_grafana_json() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("grafana/steerdns.json parses");
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "the datasource is the DS_PROMETHEUS input: {inputs:?}"
    );
    let mut ids = BTreeSet::new();
    for panel in all_panels(dashboard["panels"].as_array().expect("panels")) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("numeric id")),
            "{title}: id repeats"
        );
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
    }
    assert!(ids.len() > 10, "{} panels", ids.len());
}

#[test]
fn the_drift_check_catches_a_wrong_name_label_and_value() {
    let mut samples = Samples::new();
    parse_exposition(
        "# TYPE steerdns_x_total counter\nsteerdns_x_total{state=\"up\"} 1\n",
        &mut samples,
    );
    let dashboard = |expr: &str| serde_json::json!({ "panels": [{ "title": "t", "targets": [{ "expr": expr }] }] });
    assert!(
        drift(
            &dashboard(
                "sum by (state) (rate(steerdns_x_total{instance=~\"$instance\", state=\"up\"}[5m]))"
            ),
            &samples
        )
        .is_empty()
    );
    for (expr, complaint) in [
        ("steerdns_y_total", "steerdns_y_total is not exported"),
        ("steerdns_x_total{cap=\"a\"}", "has no label \"cap\""),
        ("steerdns_x_total{state=\"down\"}", "never occurs"),
        (
            "sum by (rcode) (steerdns_x_total)",
            "has the label \"rcode\"",
        ),
    ] {
        let errors = drift(&dashboard(expr), &samples);
        assert!(
            errors.iter().any(|e| e.contains(complaint)),
            "{expr}: {errors:?}"
        );
    }
    let errors = drift(&serde_json::json!({ "panels": [] }), &samples);
    assert!(
        errors.iter().any(|e| e.contains("on no panel")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_real_metrics_and_labels() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("grafana/steerdns.json parses");
    let mut samples = Samples::new();

    // A single node with [rum]; an override gives steerdns_target_health its samples (and
    // a transition), a probe result steerdns_probe_health.
    let rum = rum_config(&[("cdn-a", "https://cdn-a.example.net/t.gif".into())], "");
    let (_dir, running) = start_rum("grafana-rum", &rum).await;
    let admin = AdminClient::of(&running);
    admin.set_health("cdn-a", Some("down")).await;
    let now = std::time::SystemTime::now();
    let posted = post_results(&admin, &[result("cdn-a", "grafana-loc", now, true)]).await;
    assert_eq!(posted.status, 200, "{posted}");
    eventually("a location verdict in /metrics", TIMEOUT, async || {
        let r = http_request(http(&running), "GET", "/metrics", &[], b"").await;
        if r.body.contains("location=\"grafana-loc\"") {
            Ok(())
        } else {
            Err(r.body)
        }
    })
    .await;
    let r = http_request(http(&running), "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.body.contains("forced=\"true\""),
        "the override shows:\n{}",
        r.body
    );
    parse_exposition(&r.body, &mut samples);
    running.shutdown().await;

    // A fleet node on a real Redis: the steerdns_store_* families.
    let redis = RedisServer::start();
    let fleet = node("grafana-fleet", &redis.url(), "grafana").await;
    let r = http_request(http(&fleet.running), "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.contains("steerdns_store_up 1"), "{}", r.body);
    // Its calls to Redis are timed at the store seam.
    assert!(
        r.body
            .contains("steerdns_store_op_seconds_count{store=\"redis\",op=\"list\"}"),
        "{}",
        r.body
    );
    parse_exposition(&r.body, &mut samples);
    fleet.running.shutdown().await;

    let errors = drift(&dashboard, &samples);
    assert!(
        errors.is_empty(),
        "grafana/steerdns.json and /metrics differ:\n{}",
        errors.join("\n")
    );
}
