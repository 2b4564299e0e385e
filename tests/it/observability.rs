//! The operator's metrics and the sampled query log, on running servers: health flips move
//! `steerdns_health_transitions_total` and `steerdns_probe_health`, store calls show in
//! `steerdns_store_op_seconds`, steered replies are counted by rcode on every path, and
//! `serve --query-sample 1` logs one JSON line per query with its fields while the default
//! logs none.

use std::time::SystemTime;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use steerdns::app::Running;

use super::config::{ServeProcess, run, steerdns};
use super::health::{post_results, result};
use crate::support::*;

/// A policy whose only target is an alias into our zone to a name that does not exist: the
/// full path follows it and answers NXDOMAIN (RFC 6604).
const NX_POLICY: &str = r#"name = "nx.example.com"
ttl_s = 30

[targets.gone]
cname = "gone.example.com."

[[chain]]
kind = "up"
"#;

async fn metrics(running: &Running) -> String {
    let addr = running.http_addr.expect("HTTP listener");
    let r = http_request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    r.body
}

/// The value of the sample `series` (name and labels exactly as exported), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_for_value(running: &Running, series: &str, want: f64) {
    eventually(&format!("{series} = {want}"), TIMEOUT, async || {
        let text = metrics(running).await;
        match value(&text, series) {
            Some(v) if v == want => Ok(()),
            other => Err(format!("{other:?} in\n{text}")),
        }
    })
    .await;
}

/// A server fed over the probe API, quick to judge: one result decides.
async fn probed_server(tag: &str) -> (TempDir, Running) {
    let dir = TempDir::new(tag);
    let mut policies = demo_policies();
    policies.push(("nx.example.com.toml", NX_POLICY));
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &policies,
        "[health]\nup_after_successes = 1\ndown_after_failures = 1\nstale_after_ms = 60000\nhold_down_ms = 0\n",
    );
    let running = start_file(&config).await;
    (dir, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_move_transitions_and_location_verdicts() {
    let (_dir, running) = probed_server("obs-health").await;
    let admin = AdminClient::of(&running);
    let up = |state: &str| {
        format!("steerdns_health_transitions_total{{target=\"cdn-a\",to=\"{state}\"}}")
    };
    let fra = "steerdns_probe_health{target=\"cdn-a\",location=\"fra\"}";

    // Up from one location: the verdict is up there, and cdn-a went unknown → up once.
    let r = post_results(&admin, &[result("cdn-a", "fra", SystemTime::now(), true)]).await;
    assert_eq!(r.status, 200, "{r}");
    wait_for_value(&running, fra, 1.0).await;
    wait_for_value(&running, &up("up"), 1.0).await;
    assert_eq!(value(&metrics(&running).await, &up("down")), Some(0.0));

    // A failure from the same location: down there, and one transition to down.
    let r = post_results(&admin, &[result("cdn-a", "fra", SystemTime::now(), false)]).await;
    assert_eq!(r.status, 200, "{r}");
    wait_for_value(&running, fra, 0.0).await;
    wait_for_value(&running, &up("down"), 1.0).await;

    // An operator override is a transition too; repeating it is not.
    admin.set_health("cdn-b", Some("down")).await;
    admin.set_health("cdn-b", Some("down")).await;
    let text = metrics(&running).await;
    assert_eq!(
        value(
            &text,
            "steerdns_health_transitions_total{target=\"cdn-b\",to=\"down\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "steerdns_probe_health_unlisted"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(value(&text, &up("up")), Some(1.0), "{text}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_calls_show_in_the_histogram() {
    let (_dir, running) = probed_server("obs-store").await;
    let text = metrics(&running).await;
    // Starting listed the policy directory and loaded the override state.
    for series in [
        "steerdns_store_op_seconds_count{store=\"files\",op=\"list\"}",
        "steerdns_store_op_seconds_count{store=\"memory\",op=\"load\"}",
    ] {
        assert!(
            value(&text, series).is_some_and(|n| n >= 1.0),
            "{series} in\n{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "steerdns_store_op_seconds_count{store=\"memory\",op=\"set_override\"}"
        ),
        None,
        "no override yet:\n{text}"
    );
    AdminClient::of(&running)
        .set_health("cdn-c", Some("down"))
        .await;
    let text = metrics(&running).await;
    let series = |part: &str| {
        format!("steerdns_store_op_seconds_{part}{{store=\"memory\",op=\"set_override\"}}")
    };
    assert_eq!(value(&text, &series("count")), Some(1.0), "{text}");
    assert!(
        value(&text, &series("sum")).is_some_and(|s| s > 0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "steerdns_store_op_seconds_bucket{store=\"memory\",op=\"set_override\",le=\"+Inf\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "steerdns_store_errors_total{store=\"memory\",op=\"set_override\"}"
        ),
        Some(0.0),
        "{text}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steered_replies_are_counted_by_rcode_on_every_path() {
    let (_dir, running) = probed_server("obs-rcode").await;
    let server = v4(&running);
    let series = |name: &str, target: &str, qtype: &str, rcode: &str| {
        format!(
            "steerdns_answers_total{{name=\"{name}\",target=\"{target}\",type=\"{qtype}\",rcode=\"{rcode}\"}}"
        )
    };
    let before = metrics(&running).await;
    assert_eq!(
        value(
            &before,
            &series("pop.example.com.", "pop-iad", "A", "NOERROR")
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&before, &series("nx.example.com.", "gone", "A", "NXDOMAIN")),
        None,
        "{before}"
    );

    // pop: A over UDP (the fast path) and over TCP (the full path), NOERROR both.
    let udp_reply = udp(server, &query("pop.example.com.", RecordType::A)).await;
    assert_eq!(udp_reply.metadata.response_code, ResponseCode::NoError);
    let tcp_reply = tcp(server, &query("pop.example.com.", RecordType::A)).await;
    assert_eq!(tcp_reply.metadata.response_code, ResponseCode::NoError);
    // nx: the alias leads to a missing name of our zone, NXDOMAIN (full path on UDP).
    let nx = udp(server, &query("nx.example.com.", RecordType::A)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "{nx:?}");

    let text = metrics(&running).await;
    let pop = value(
        &text,
        &series("pop.example.com.", "pop-iad", "A", "NOERROR"),
    )
    .or(value(
        &text,
        &series("pop.example.com.", "pop-fra", "A", "NOERROR"),
    ));
    let both = ["pop-iad", "pop-fra"]
        .iter()
        .filter_map(|t| value(&text, &series("pop.example.com.", t, "A", "NOERROR")))
        .sum::<f64>();
    assert!(pop.is_some(), "{text}");
    assert_eq!(both, 2.0, "one UDP and one TCP answer:\n{text}");
    assert_eq!(
        value(&text, &series("nx.example.com.", "gone", "A", "NXDOMAIN")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &series("nx.example.com.", "gone", "A", "NOERROR")),
        Some(0.0),
        "{text}"
    );
    running.shutdown().await;
}

/// The query log's JSON lines seen in `log`.
fn query_lines(log: &[String]) -> Vec<Value> {
    log.iter()
        .filter(|l| l.contains("steerdns::query_log"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_query_log_prints_one_line_per_query_and_none_when_off() {
    let dir = TempDir::new("obs-query-log");
    let mut policies = demo_policies();
    policies.push(("nx.example.com.toml", NX_POLICY));
    let config = write_config(&dir, DEMO_ZONE, &policies);

    let (mut process, server) = ServeProcess::start_with(
        config.clone(),
        vec!["--query-sample", "1", "--log-format", "json"],
    )
    .await;
    // Fast path with ECS, full path (NXDOMAIN through the alias), TCP.
    let fast = udp(
        server,
        &ecs_query("www.example.com.", RecordType::A, "81.2.69.0/24"),
    )
    .await;
    assert_eq!(fast.metadata.response_code, ResponseCode::NoError);
    udp(server, &query("nx.example.com.", RecordType::A)).await;
    tcp(server, &query("pop.example.com.", RecordType::AAAA)).await;
    let process = tokio::task::spawn_blocking(move || {
        for path in ["\"path\":\"fast\"", "\"path\":\"full\"", "\"path\":\"tcp\""] {
            process.wait_for(path);
        }
        process
    })
    .await
    .unwrap();
    let lines = query_lines(process.log());
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let by_path = |path: &str| -> &Value {
        let line = lines
            .iter()
            .find(|l| l["fields"]["path"] == path)
            .unwrap_or_else(|| panic!("no {path} line in {lines:#?}"));
        &line["fields"]
    };
    let fast = by_path("fast");
    assert_eq!(fast["client"], "81.2.69.0/24", "the ECS subnet: {fast}");
    assert_eq!(fast["name"], "www.example.com.", "{fast}");
    assert_eq!(fast["qtype"], "A", "{fast}");
    assert_eq!(fast["rcode"], "NOERROR", "{fast}");
    // 81.2.69.0 itself is not in the test database: the default, and the reason says so.
    assert_eq!(fast["targets"], "cdn-a", "{fast}");
    assert_eq!(fast["answer"], "CNAME cdn-a.example.net.", "{fast}");
    assert_eq!(fast["reason"], "no_geo", "{fast}");
    let full = by_path("full");
    assert_eq!(
        full["client"], "127.0.0.0/24",
        "the source's /24, not its address: {full}"
    );
    assert_eq!(full["name"], "nx.example.com.", "{full}");
    assert_eq!(full["rcode"], "NXDOMAIN", "{full}");
    assert_eq!(full["targets"], "gone", "{full}");
    let tcp_line = by_path("tcp");
    assert_eq!(tcp_line["qtype"], "AAAA", "{tcp_line}");
    assert!(
        tcp_line["answer"]
            .as_str()
            .unwrap()
            .starts_with("AAAA 2001:db8::"),
        "{tcp_line}"
    );
    for line in &lines {
        assert!(
            !line.to_string().contains("127.0.0.1"),
            "no client address: {line}"
        );
    }
    drop(process);

    // Off (the default): the same queries, then a reload whose log line comes after them.
    let (process, server) = ServeProcess::start(config.clone()).await;
    udp(
        server,
        &ecs_query("www.example.com.", RecordType::A, "81.2.69.0/24"),
    )
    .await;
    udp(server, &query("nx.example.com.", RecordType::A)).await;
    tcp(server, &query("pop.example.com.", RecordType::AAAA)).await;
    let process = process.reload("kill", "reloaded configuration").await;
    assert!(
        !process.log().iter().any(|l| l.contains("query_log")),
        "{:#?}",
        process.log()
    );
    drop(process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_outside_zero_to_one_is_refused_naming_the_flag_or_key() {
    let dir = TempDir::new("obs-query-sample");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let mut command = steerdns();
    command
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--query-sample", "1.5"]);
    let out = run(command).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--query-sample: 1.5 is not a fraction in [0, 1]"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[log]\nquery_sample = -0.5\n")).unwrap();
    let mut command = steerdns();
    command.arg("check").arg(&config);
    let out = run(command).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("log.query_sample: -0.5 is not a fraction"),
        "{stderr}"
    );
}
