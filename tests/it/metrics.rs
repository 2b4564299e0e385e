//! `/metrics` is valid Prometheus text exposition: every sample belongs to the family of the
//! `# TYPE` line above it, no family is declared twice, and every value parses. Checked on a
//! server with `[rum]` (the most metric families) after a health override adds samples.

use std::collections::HashSet;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

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

/// The value of one sample, 0 if absent.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Answers by name, target and type count every path (UDP fast, UDP full, TCP) once and
/// explain never; replies by transport and rcode count NXDOMAIN and REFUSED too; an edit
/// that recompiles the name keeps its counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_count_by_name_target_type_and_rcode_across_paths_and_edits() {
    const GB: &str = "2a02:d3c0::/56";
    let dir = TempDir::new("metrics-answers");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let (server, web) = (v4(&running), http(&running));
    let admin = AdminClient::of(&running);
    let www_d = "steerdns_answers_total{name=\"www.example.com.\",target=\"cdn-d\",type=\"A\",rcode=\"NOERROR\"}";
    let www_d_aaaa = "steerdns_answers_total{name=\"www.example.com.\",target=\"cdn-d\",type=\"AAAA\",rcode=\"NOERROR\"}";
    let metrics = || async { http_request(web, "GET", "/metrics", &[], b"").await.body };
    let before = metrics().await;
    assert_eq!(sample(&before, www_d), 0, "{before}");

    // Fast path (plain ECS query), full path (a record in the additional section besides the
    // OPT makes the fast path decline; the full path ignores it), TCP.
    let q = ecs_query("www.example.com", RecordType::A, GB);
    assert_eq!(
        cname_targets(&udp(server, &q).await),
        ["cdn-d.example.net."]
    );
    let mut extra = ecs_query("www.example.com", RecordType::A, GB);
    extra
        .additionals
        .push(hickory_proto::rr::Record::from_rdata(
            hickory_proto::rr::Name::from_ascii("extra.example.").unwrap(),
            0,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        ));
    assert_eq!(
        cname_targets(&udp(server, &extra).await),
        ["cdn-d.example.net."]
    );
    assert_eq!(
        cname_targets(&tcp(server, &q).await),
        ["cdn-d.example.net."]
    );
    udp(server, &ecs_query("www.example.com", RecordType::AAAA, GB)).await;
    admin.explain("www.example.com", GB).await;
    let nx = udp(server, &query("nope.example.com", RecordType::A)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let refused = udp(server, &query("example.org", RecordType::A)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    let after = metrics().await;
    assert!(exposition_errors(&after).is_empty(), "{after}");
    assert_eq!(sample(&after, www_d), 3, "{after}");
    assert_eq!(sample(&after, www_d_aaaa), 1, "{after}");
    let udp_code = |t: &str, c: &str| {
        sample(
            t,
            &format!("steerdns_replies_total{{transport=\"udp\",rcode=\"{c}\"}}"),
        )
    };
    assert!(
        udp_code(&after, "NOERROR") - udp_code(&before, "NOERROR") >= 3,
        "{after}"
    );
    assert_eq!(
        udp_code(&after, "NXDOMAIN") - udp_code(&before, "NXDOMAIN"),
        1
    );
    assert_eq!(
        udp_code(&after, "REFUSED") - udp_code(&before, "REFUSED"),
        1
    );
    assert_eq!(
        sample(
            &after,
            "steerdns_replies_total{transport=\"tcp\",rcode=\"NOERROR\"}"
        ),
        1,
        "{after}"
    );

    // An edit recompiles www (a new TTL): the count goes on from 3.
    let (text, etag) = admin.policy("www.example.com").await;
    let edited = text.replace("ttl_s = 30", "ttl_s = 31");
    assert_ne!(edited, text, "the demo www policy changed shape");
    let r = admin
        .put_policy("www.example.com", "", Some(&etag), &edited)
        .await;
    assert_published(&running, &r);
    assert_eq!(
        cname_targets(&udp(server, &q).await),
        ["cdn-d.example.net."]
    );
    let edited_metrics = metrics().await;
    assert_eq!(sample(&edited_metrics, www_d), 4, "{edited_metrics}");

    // A health override recompiles the tables that use the target; the snapshot is new.
    let recompiles = |t: &str| sample(t, "steerdns_recompiles_total");
    admin.set_health("cdn-d", Some("down")).await;
    let flipped = metrics().await;
    assert!(
        recompiles(&flipped) > recompiles(&edited_metrics),
        "{flipped}"
    );
    let age: f64 = flipped
        .lines()
        .find_map(|l| l.strip_prefix("steerdns_snapshot_age_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("steerdns_snapshot_age_seconds");
    assert!((0.0..5.0).contains(&age), "a fresh snapshot is {age} s old");
    running.shutdown().await;
}
