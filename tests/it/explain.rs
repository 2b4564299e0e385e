//! Explain, three ways: `GET /api/v1/explain`, `steerdns explain` (the real binary) and the
//! `_explain.<name>` TXT names over DNS. Each must agree with what DNS answers.

use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::json;

use crate::support::*;

/// (ECS or resolver address, www target, reason, rule, scope).
const CASES: &[(&str, &str, &str, Option<&str>, u8)] = &[
    ("2a02:d3c0::/56", "cdn-d", "geo", Some("rules[2]"), 29),
    ("2a02:d180::/56", "cdn-c", "geo", Some("rules[1]"), 29),
    ("81.2.69.142/32", "cdn-d", "geo", Some("rules[2]"), 31),
    ("214.78.120.0/24", "cdn-b", "geo", Some("rules[0]"), 22),
    ("149.101.100.0/24", "cdn-a", "asn", Some("rules[3]"), 28),
    ("175.16.199.0/24", "cdn-a", "default", None, 24),
    // 8.0.0.0/5 is in neither DB: one answer across it.
    ("10.0.0.0/24", "cdn-a", "no_geo", None, 5),
    ("0.0.0.0/0", "cdn-a", "no_geo", None, 0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_explain_matches_dns() {
    let running = start_demo().await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);

    let e = admin.explain("www.example.com", "2a02:d3c0::/56").await;
    assert_eq!(e["name"], "www.example.com.", "{e}");
    assert_eq!(e["reason"], "geo", "{e}");
    assert_eq!(e["rule"], "rules[2]", "{e}");
    assert_eq!(e["targets"], json!(["cdn-d"]), "{e}");
    assert_eq!(e["answer"], json!(["CNAME cdn-d.example.net."]), "{e}");
    assert_eq!(e["scope"], 29, "{e}");
    assert_eq!(e["ecs"], "2a02:d3c0::/56", "{e}");
    assert_eq!(e["client"], "2a02:d3c0::", "{e}");
    assert!(
        e["location"].as_str().unwrap().contains("country=GB"),
        "{e}"
    );
    assert_eq!(
        e["generation"].as_u64(),
        Some(running.published.load().generation)
    );
    let health = e["health"].to_string();
    assert!(
        health.contains("cdn-d") && health.contains("unknown"),
        "{e}"
    );
    assert!(
        e["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("rules[2] matches")),
        "{e}"
    );

    for (client, target, reason, rule, scope) in CASES {
        let e = admin.explain("www.example.com", client).await;
        let q = ecs_query("www.example.com", RecordType::A, client);
        let reply = udp(server, &q).await;
        let dns_target = cname_targets(&reply).join(" ");
        assert_eq!(dns_target, format!("{target}.example.net."), "{client}");
        assert_eq!(e["targets"], json!([target]), "{client}: {e}");
        assert_eq!(e["reason"], *reason, "{client}: {e}");
        assert_eq!(e["rule"], json!(rule), "{client}: {e}");
        assert_eq!(e["scope"], *scope, "{client}: {e}");
        assert_eq!(reply_ecs(&reply).map(|x| x.2), Some(*scope), "{client}");
    }

    // A bare address is a resolver without ECS.
    let e = admin.explain("www.example.com", "81.2.69.142").await;
    assert_eq!(e["ecs"], serde_json::Value::Null, "{e}");
    assert_eq!(e["resolver"], "81.2.69.142", "{e}");
    assert_eq!(e["targets"], json!(["cdn-d"]), "{e}");
    // Address pools list every record of the chosen targets.
    let e = admin.explain("failover.example.com", "192.0.2.1").await;
    assert_eq!(e["targets"], json!(["pop-iad", "pop-fra"]), "{e}");
    assert_eq!(e["answer"], json!(["A 192.0.2.1", "A 192.0.2.2"]), "{e}");

    // Errors.
    for (path, status, needle) in [
        (
            "/api/v1/explain?name=mail.example.com&client=192.0.2.1",
            404,
            "not a steered name",
        ),
        (
            "/api/v1/explain?name=www.example.com&client=UK",
            400,
            "client",
        ),
        ("/api/v1/explain?name=www.example.com", 400, ""),
    ] {
        let r = admin.get(path).await;
        assert_eq!(r.status, status, "{path}: {r}");
        assert!(r.body.contains(needle), "{path}: {r}");
    }
    running.shutdown().await;
}

/// The explanation follows live health: the API reads the running server's overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_explain_shows_health() {
    let running = start_demo().await;
    let admin = AdminClient::of(&running);
    admin.set_health("cdn-d", Some("down")).await;
    let e = admin.explain("www.example.com", "2a02:d3c0::/56").await;
    assert_eq!(e["targets"], json!(["cdn-c"]), "{e}");
    assert!(
        e["health"].to_string().contains("[\"cdn-d\",\"down\"]"),
        "{e}"
    );
    assert!(e["steps"].to_string().contains("up:"), "{e}");
    running.shutdown().await;
}

fn steerdns() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steerdns"));
    command.env("NO_COLOR", "1").env("RUST_LOG", "warn");
    command
}

async fn run(mut command: Command) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("steerdns finished in time")
    .unwrap()
    .expect("run steerdns");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_explain_prints_the_decision() {
    let mut command = steerdns();
    command.args(["explain", "www.example.com", "2a02:d180::/56"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "name=www.example.com. generation=1", "{stdout}");
    assert_eq!(
        lines[1], "resolver=2a02:d180:: ecs=2a02:d180::/56",
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("client=2a02:d180:: continent=EU country=DE"),
        "{stdout}"
    );
    assert!(lines.iter().any(|l| l.starts_with("health ")), "{stdout}");
    assert!(
        lines.contains(&"reason=geo (rules[1]) targets=cdn-c scope=/29"),
        "{stdout}"
    );
    assert_eq!(
        lines.last(),
        Some(&"answer CNAME cdn-c.example.net."),
        "{stdout}"
    );

    // With a config file, and a weighted name.
    let dir = TempDir::new("cli-explain");
    let mut policies = demo_policies();
    policies.push((
        "weighted.example.com.toml",
        include_str!("../../policies/weighted.example.com.toml"),
    ));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let mut command = steerdns();
    command
        .args(["explain", "--config"])
        .arg(&config)
        .args(["weighted.example.com", "192.0.2.1"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("resolver=192.0.2.1 ecs=none"), "{stdout}");
    assert!(
        stdout.contains("weighted: cdn-a 70.0%, cdn-b 30.0%"),
        "{stdout}"
    );

    // Not a steered name; not a client.
    let mut command = steerdns();
    command.args(["explain", "mail.example.com", "192.0.2.1"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("not a steered name"), "{stderr}");
    let mut command = steerdns();
    command.args(["explain", "www.example.com", "somewhere"]);
    let (code, _, stderr) = run(command).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"somewhere\""), "{stderr}");
}

/// The TXT strings of the first answer record.
fn txt_strings(reply: &hickory_proto::op::Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The demo config (examples/steerdns.toml) sets `explain_names = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_over_dns() {
    let running = start_demo().await;
    let server = v4(&running);

    let reply = udp(
        server,
        &ecs_query(
            "_explain.www.example.com",
            RecordType::TXT,
            "2a02:d3c0::/56",
        ),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    assert_eq!(reply.answers[0].ttl, 0, "explanations are never cached");
    // Per asker: TTL 0 keeps resolvers from caching (and so sharing) it; the scope is 0.
    assert_eq!(reply_ecs(&reply).map(|e| e.2), Some(0));
    let strings = txt_strings(&reply);
    let all = strings.join("\n");
    assert!(strings.iter().all(|s| s.len() <= 255), "{all}");
    assert!(
        strings
            .iter()
            .any(|s| s.starts_with("resolver=127.0.0.1 ecs=2a02:d3c0::/56")),
        "{all}"
    );
    assert!(
        strings
            .iter()
            .any(|s| s.starts_with("client=2a02:d3c0:: ") && s.contains("country=GB")),
        "{all}"
    );
    assert!(
        strings.contains(&"reason=geo (rules[2]) targets=cdn-d scope=/29".to_owned()),
        "{all}"
    );

    // dig, with the resolver's own address and no ECS.
    let d = dig(server, &["_explain.www.example.com", "TXT", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    let data = d.answer_data("TXT").join(" ");
    assert!(
        data.contains("\"resolver=127.0.0.1 ecs=none\""),
        "{}",
        d.text
    );
    assert!(data.contains("reason=no_geo"), "{}", d.text);

    // Another name, over TCP; case-insensitive label.
    let reply = tcp(
        server,
        &ecs_query(
            "_EXPLAIN.Failover.Example.Com",
            RecordType::TXT,
            "10.1.0.0/16",
        ),
    )
    .await;
    assert!(
        txt_strings(&reply)
            .iter()
            .any(|s| s.starts_with("answer A 192.0.2.1 | A 192.0.2.2")),
        "{reply:?}"
    );

    // Other types: NODATA. Not a steered name below: NXDOMAIN.
    let d = dig(server, &["_explain.www.example.com", "A", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.first().map(|r| r.rtype.as_str()), Some("SOA"));
    let d = dig(server, &["_explain.mail.example.com", "TXT", "+norec"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);

    // It follows live health.
    AdminClient::of(&running)
        .set_health("cdn-d", Some("down"))
        .await;
    let reply = udp(
        server,
        &ecs_query(
            "_explain.www.example.com",
            RecordType::TXT,
            "2a02:d3c0::/56",
        ),
    )
    .await;
    let strings = txt_strings(&reply);
    assert!(
        strings.iter().any(|s| s.contains("cdn-d=down")),
        "{strings:?}"
    );
    assert!(
        strings.iter().any(|s| s.contains("targets=cdn-c")),
        "{strings:?}"
    );
    running.shutdown().await;
}

/// Without `explain_names` the name does not exist: NXDOMAIN with the SOA, like any other
/// name below a steered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_off_is_nxdomain() {
    let dir = TempDir::new("explain-off");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    for qtype in ["TXT", "A"] {
        let d = dig(
            server,
            &["_explain.www.example.com", qtype, "+subnet=2a02:d3c0::/56"],
        )
        .await;
        assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
        assert!(d.answer.is_empty(), "{}", d.text);
        assert_eq!(d.authority.first().map(|r| r.rtype.as_str()), Some("SOA"));
    }
    // `explain_names = true` in the same config turns it on.
    let dir = TempDir::new("explain-on");
    let config = write_config_with(&dir, DEMO_ZONE, &demo_policies(), "explain_names = true");
    let running_on = start_file(&config).await;
    let d = dig(v4(&running_on), &["_explain.www.example.com", "TXT"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(!d.answer.is_empty(), "{}", d.text);
    running_on.shutdown().await;
    running.shutdown().await;
}
