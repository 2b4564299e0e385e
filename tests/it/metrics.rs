//! `/metrics` is valid Prometheus text exposition: every sample belongs to the family of the
//! `# TYPE` line above it, no family is declared twice, and every value parses. Checked on a
//! server with `[rum]` (the most metric families) after a health override adds samples.

use std::collections::HashSet;

use super::rum_ingest::{http, rum_config, start_rum};
use crate::support::*;

/// Problems with the exposition text, one line each.
fn exposition_errors(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut declared = HashSet::new();
    let mut family: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            if !declared.insert(name.clone()) {
                errors.push(format!("line {n}: {name} declared twice"));
            }
            family = Some(name);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let in_family = family.as_deref().is_some_and(|f| {
            name == f
                || ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{f}{s}"))
                || name.strip_suffix("_total") == Some(f)
        });
        if !in_family {
            errors.push(format!(
                "line {n}: {name} is not in the family {family:?} above it"
            ));
        }
        match line.rsplit_once(' ').map(|(_, v)| v.parse::<f64>()) {
            Some(Ok(_)) => {}
            _ => errors.push(format!("line {n}: no numeric value: {line}")),
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_exposition_text() {
    let rum = rum_config(&[("cdn-a", "https://cdn-a.example.net/t.gif".into())], "");
    let (_dir, running) = start_rum("metrics-format", &rum).await;
    AdminClient::of(&running)
        .set_health("cdn-a", Some("down"))
        .await;
    let r = http_request(http(&running), "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    for family in [
        "steerdns_target_health",
        "steerdns_rum_beacons_rejected_total",
        "steerdns_rum_windows",
    ] {
        assert!(
            r.body.contains(&format!("# TYPE {family} ")),
            "{family} in\n{}",
            r.body
        );
    }
    let errors = exposition_errors(&r.body);
    assert!(errors.is_empty(), "{}\n---\n{}", errors.join("\n"), r.body);
    running.shutdown().await;
}

#[test]
fn the_checker_catches_a_sample_outside_its_family() {
    let bad = "# TYPE a gauge\n# TYPE b counter\na 1\n";
    assert_eq!(
        exposition_errors(bad).len(),
        1,
        "{:?}",
        exposition_errors(bad)
    );
    assert!(exposition_errors("# TYPE a gauge\na 1\na{x=\"y\"} 2\n").is_empty());
}
