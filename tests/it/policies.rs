//! Each policy kind of the demo (policies/*.toml) over real DNS, with health overrides and
//! edits through the admin API on loopback.
//!
//! Weighted shares are counted over thousands of distinct client networks sent as ECS; the
//! hash is per /24 (IPv4) or /56 (IPv6), so every address of a network gets its answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use steerdns::geo::Continent;
use steerdns::perf::{PerfView, Region, Stats};

use crate::support::*;

/// `n` distinct IPv4 /24 networks spread over unicast space (a fixed LCG, so runs repeat).
fn v4_networks(n: usize, seed: u32) -> Vec<Ipv4Addr> {
    let mut seen = BTreeSet::new();
    let mut x = seed;
    while seen.len() < n {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let first = 1 + (x >> 24) % 223; // 1..=223
        if first == 127 {
            continue;
        }
        seen.insert(Ipv4Addr::from((first << 24) | (x & 0x00ff_ff00)));
    }
    seen.into_iter().collect()
}

/// The answer for each network (as `a.b.c.0/24`), queried concurrently in a few streams.
async fn answers_by_network(
    server: SocketAddr,
    qname: &str,
    subnets: &[String],
) -> BTreeMap<String, String> {
    let streams = 8;
    let mut tasks = Vec::new();
    for part in subnets.chunks(subnets.len().div_ceil(streams)) {
        let part = part.to_vec();
        let qname = qname.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(part.len());
            for subnet in part {
                let reply = udp(server, &ecs_query(&qname, RecordType::A, &subnet)).await;
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::NoError,
                    "{subnet}"
                );
                let got = cname_targets(&reply)
                    .first()
                    .cloned()
                    .unwrap_or_else(|| addresses(&reply.answers).join(" "));
                out.push((subnet, got));
            }
            out
        }));
    }
    let mut all = BTreeMap::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

fn tally(answers: &BTreeMap<String, String>) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for got in answers.values() {
        *counts.entry(got.clone()).or_default() += 1.0;
    }
    let n = answers.len() as f64;
    counts.values_mut().for_each(|c| *c /= n);
    counts
}

fn assert_share(shares: &BTreeMap<String, f64>, target: &str, want: f64, tolerance: f64) {
    let got = shares.get(target).copied().unwrap_or(0.0);
    assert!(
        (got - want).abs() <= tolerance,
        "{target}: share {got:.4}, want {want} ± {tolerance}; all shares {shares:?}"
    );
}

/// weighted.example.com: weights 70/30, and cdn-b's `max_share = 0.4` does not bind (30% is
/// under it), so 70/30 across networks. Every address of a /24 gets its network's answer, with
/// ECS scope /24.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_shares_follow_the_weights_across_networks() {
    let running = start_demo().await;
    let server = v4(&running);
    let networks = v4_networks(3000, 7);
    let subnets: Vec<String> = networks.iter().map(|n| format!("{n}/24")).collect();
    let answers = answers_by_network(server, "weighted.example.com", &subnets).await;
    let shares = tally(&answers);
    eprintln!("weighted.example.com over 3000 IPv4 /24: {shares:?}");
    assert_eq!(shares.len(), 2, "{shares:?}");
    assert_share(&shares, "cdn-a.example.net.", 0.70, 0.03);
    assert_share(&shares, "cdn-b.example.net.", 0.30, 0.03);

    // Same network, another address in it (and another prefix length): same answer, scope 24.
    for network in networks.iter().take(300) {
        let host = Ipv4Addr::from(u32::from(*network) | 77);
        for subnet in [format!("{host}/32"), format!("{network}/24")] {
            let reply = udp(
                server,
                &ecs_query("weighted.example.com", RecordType::A, &subnet),
            )
            .await;
            assert_eq!(
                cname_targets(&reply).first(),
                answers.get(&format!("{network}/24")),
                "{subnet}"
            );
            assert_eq!(reply_ecs(&reply).map(|e| e.2), Some(24), "{subnet}");
        }
    }

    // IPv6 clients are hashed per /56.
    let v6: Vec<String> = (0..1500u32)
        .map(|i| {
            let h = i.wrapping_mul(2_654_435_761);
            format!("2001:db8:{:x}:{:x}00::/56", h >> 16, h & 0xff)
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let answers6 = answers_by_network(server, "weighted.example.com", &v6).await;
    let shares6 = tally(&answers6);
    eprintln!(
        "weighted.example.com over {} IPv6 /56: {shares6:?}",
        v6.len()
    );
    assert_share(&shares6, "cdn-a.example.net.", 0.70, 0.04);
    let reply = udp(
        server,
        &ecs_query("weighted.example.com", RecordType::A, &v6[0]),
    )
    .await;
    assert_eq!(reply_ecs(&reply).map(|e| e.2), Some(56));

    // The explanation states the shares.
    let admin = AdminClient::of(&running);
    let e = admin
        .explain("weighted.example.com", "203.0.113.0/24")
        .await;
    let steps = e["steps"].to_string();
    assert!(
        steps.contains("cdn-a 70.0%") && steps.contains("cdn-b 30.0%"),
        "{e}"
    );
    assert_eq!(e["scope"], 24, "{e}");
    running.shutdown().await;
}

/// ramp.example.com: pop-new at 5%.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ramp_starts_at_five_percent() {
    let running = start_demo().await;
    let subnets: Vec<String> = v4_networks(3000, 11)
        .iter()
        .map(|n| format!("{n}/24"))
        .collect();
    let answers = answers_by_network(v4(&running), "ramp.example.com", &subnets).await;
    let shares = tally(&answers);
    eprintln!("ramp.example.com over 3000 IPv4 /24: {shares:?}");
    assert_share(&shares, "192.0.2.11", 0.05, 0.015);
    assert_share(&shares, "192.0.2.10", 0.95, 0.015);
    running.shutdown().await;
}

const CAPPED: &str = r#"
name = "capped.example.com"
ttl_s = 30

[targets.small]
cname = "small.example.net."

[targets.big]
cname = "big.example.net."
max_share = 0.4

[[chain]]
kind = "weighted"
weights = { small = 30, big = 70 }
"#;

/// A capacity limit that binds: weights 30/70 with the 70 capped at 40% → 60/40.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_capacity_limit_moves_the_excess() {
    let dir = TempDir::new("capped");
    let mut policies = demo_policies();
    policies.push(("capped.example.com.toml", CAPPED));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let running = start_file(&config).await;
    let subnets: Vec<String> = v4_networks(3000, 3)
        .iter()
        .map(|n| format!("{n}/24"))
        .collect();
    let shares = tally(&answers_by_network(v4(&running), "capped.example.com", &subnets).await);
    eprintln!("capped.example.com over 3000 IPv4 /24: {shares:?}");
    assert_share(&shares, "small.example.net.", 0.60, 0.03);
    assert_share(&shares, "big.example.net.", 0.40, 0.03);
    running.shutdown().await;
}

/// Raising a weight moves only networks to the target that gained (rendezvous hashing): no
/// network moves from pop-new back to pop-old, and the new share matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ramp_up_moves_only_the_networks_it_must() {
    let dir = TempDir::new("ramp");
    let ramp = include_str!("../../policies/ramp.example.com.toml");
    let mut policies = demo_policies();
    policies.push(("ramp.example.com.toml", ramp));
    let config = write_config(&dir, DEMO_ZONE, &policies);
    let running = start_file(&config).await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let subnets: Vec<String> = v4_networks(2000, 5)
        .iter()
        .map(|n| format!("{n}/24"))
        .collect();
    let mut before = answers_by_network(server, "ramp.example.com", &subnets).await;
    for ((old, new), (to_old, to_new)) in [
        ((95, 5), (75, 25)),
        ((75, 25), (50, 50)),
        ((50, 50), (0, 100)),
    ] {
        let (text, etag) = admin.policy("ramp.example.com").await;
        let edited = text.replace(
            &format!("pop-old = {old}, pop-new = {new}"),
            &format!("pop-old = {to_old}, pop-new = {to_new}"),
        );
        assert_ne!(edited, text, "weights {old}/{new} in {text}");
        let r = admin
            .put_policy("ramp.example.com", "", Some(&etag), &edited)
            .await;
        assert_eq!(r.status, 200, "{r}");
        assert_published(&running, &r);
        let after = answers_by_network(server, "ramp.example.com", &subnets).await;
        let moved_back = before
            .iter()
            .filter(|(s, a)| *a == "192.0.2.11" && after[*s] == "192.0.2.10")
            .count();
        assert_eq!(moved_back, 0, "{old}/{new} → {to_old}/{to_new}");
        let was = tally(&before);
        let now = tally(&after);
        eprintln!("ramp {old}/{new} → {to_old}/{to_new}: {was:?} → {now:?}");
        assert_share(&was, "192.0.2.11", f64::from(new) / 100.0, 0.03);
        assert_share(&now, "192.0.2.11", f64::from(to_new) / 100.0, 0.03);
        before = after;
    }
    // 0/100: everyone on pop-new.
    assert!(before.values().all(|a| a == "192.0.2.11"));
    running.shutdown().await;
}

/// failover.example.com: two records in order; pop-iad down → pop-fra and pop-sin; the
/// override cleared → back. The response to each override carries the generation serving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_skips_a_down_pop_and_comes_back() {
    let running = start_demo().await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    for subnet in [None, Some("2a02:d180::/56"), Some("214.78.120.0/24")] {
        let reply = udp(
            server,
            &match subnet {
                Some(s) => ecs_query("failover.example.com", RecordType::A, s),
                None => query("failover.example.com", RecordType::A),
            },
        )
        .await;
        assert_eq!(
            addresses(&reply.answers),
            ["192.0.2.1", "192.0.2.2"],
            "{subnet:?}"
        );
        assert!(reply.answers.iter().all(|r| r.ttl == 30));
    }
    let d = dig(server, &["failover.example.com", "A", "+norec"]).await;
    assert_eq!(d.answer_data("A"), ["192.0.2.1", "192.0.2.2"], "{}", d.text);

    let generation = admin.set_health("pop-iad", Some("down")).await;
    assert!(running.published.load().generation >= generation);
    assert_eq!(
        answer_of(server, "failover.example.com", None).await,
        "192.0.2.2 192.0.2.3"
    );
    let health = admin.get("/api/v1/health").await;
    assert_eq!(health.status, 200, "{health}");
    let entries = health.json();
    let iad = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == "pop-iad")
        .unwrap_or_else(|| panic!("pop-iad in {entries}"));
    assert_eq!(iad["state"], "down");
    assert_eq!(iad["forced"], true);

    // pop-fra down as well: one PoP left, one record.
    admin.set_health("pop-fra", Some("down")).await;
    assert_eq!(
        answer_of(server, "failover.example.com", None).await,
        "192.0.2.3"
    );
    // All down: last_resort = "pop-iad".
    admin.set_health("pop-sin", Some("down")).await;
    assert_eq!(
        answer_of(server, "failover.example.com", None).await,
        "192.0.2.1"
    );
    let e = admin.explain("failover.example.com", "192.0.2.1").await;
    assert_eq!(e["reason"], "all_down_fallback", "{e}");

    for pop in ["pop-sin", "pop-fra", "pop-iad"] {
        admin.set_health(pop, None).await;
    }
    assert_eq!(
        answer_of(server, "failover.example.com", None).await,
        "192.0.2.1 192.0.2.2"
    );
    running.shutdown().await;
}

/// ap.example.com: the primary; primary down → standby; primary up again → still the standby
/// (hold-down 300 s), however often it flaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_passive_holds_down_a_recovered_primary() {
    let running = start_demo().await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let primary = "primary.cdn-a.example.net.";
    let standby = "standby.cdn-b.example.net.";
    assert_eq!(answer_of(server, "ap.example.com", None).await, primary);

    admin.set_health("primary", Some("down")).await;
    assert_eq!(answer_of(server, "ap.example.com", None).await, standby);
    admin.set_health("primary", Some("up")).await;
    assert_eq!(answer_of(server, "ap.example.com", None).await, standby);
    let e = admin.explain("ap.example.com", "2a02:d180::/56").await;
    assert_eq!(e["targets"], serde_json::json!(["standby"]), "{e}");
    let steps = e["steps"].to_string();
    assert!(steps.contains("hold-down"), "{e}");

    // Flapping does not move DNS.
    for state in ["down", "up", "down", "up"] {
        admin.set_health("primary", Some(state)).await;
        assert_eq!(
            answer_of(server, "ap.example.com", Some("81.2.69.142/32")).await,
            standby,
            "after primary {state}"
        );
    }
    // A hold-down expiry is a timed rebuild the controller schedules.
    assert!(running.controller.next_change().is_some());

    // Standby down while the primary is in hold-down: the primary (better than nothing).
    admin.set_health("standby", Some("down")).await;
    assert_eq!(answer_of(server, "ap.example.com", None).await, primary);
    admin.set_health("standby", None).await;
    assert_eq!(answer_of(server, "ap.example.com", None).await, standby);

    // Clearing the override forgets the primary's history: no report, nothing to hold down.
    admin.set_health("primary", None).await;
    assert_eq!(answer_of(server, "ap.example.com", None).await, primary);
    running.shutdown().await;
}

/// www.example.com for a GB client: cdn-d; cdn-d down → cdn-c (same rule); cdn-c down too →
/// the next matching rule (EU: cdn-a); cdn-a down → default (cdn-b); all four down → the last
/// resort (all targets, file order: cdn-a).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_rules_fall_through_as_targets_go_down() {
    let running = start_demo().await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    let gb = "2a02:d3c0::/56";
    // (target marked down, answer, reason, rule)
    let steps: &[(Option<&str>, &str, &str, Option<&str>)] = &[
        (None, "cdn-d", "geo", Some("rules[2]")),
        (Some("cdn-d"), "cdn-c", "geo", Some("rules[2]")),
        (Some("cdn-c"), "cdn-a", "geo", Some("rules[1]")),
        (Some("cdn-a"), "cdn-b", "default", None),
        (Some("cdn-b"), "cdn-a", "all_down_fallback", None),
    ];
    for (down, want, reason, rule) in steps {
        if let Some(target) = down {
            admin.set_health(target, Some("down")).await;
        }
        let ctx = format!("after {down:?} down");
        assert_eq!(
            answer_of(server, "www.example.com", Some(gb)).await,
            format!("{want}.example.net."),
            "{ctx}"
        );
        let d = dig(server, &["www.example.com", "A", "+subnet=81.2.69.142/32"]).await;
        assert_eq!(
            d.answer_data("CNAME"),
            [format!("{want}.example.net.")],
            "{ctx}"
        );
        let e = admin.explain("www.example.com", gb).await;
        assert_eq!(e["reason"], *reason, "{ctx}: {e}");
        assert_eq!(e["rule"], serde_json::json!(rule), "{ctx}: {e}");
        assert_eq!(e["targets"], serde_json::json!([want]), "{ctx}: {e}");
    }
    for target in ["cdn-a", "cdn-b", "cdn-c", "cdn-d"] {
        admin.set_health(target, None).await;
    }
    assert_eq!(
        answer_of(server, "www.example.com", Some(gb)).await,
        "cdn-d.example.net."
    );
    running.shutdown().await;
}

fn samples(mean: f64, n: usize, spread: f64) -> Vec<f64> {
    (0..n)
        .map(|i| mean + spread * (((i * 7) % 11) as f64 - 5.0) / 5.0)
        .collect()
}

/// perf.example.com: without measurements `weighted` splits EU clients between cdn-c and
/// cdn-a; with conclusive measurements for Germany the fastest wins for every German network;
/// with inconclusive ones the split is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn performance_decides_only_when_conclusive() {
    let running = start_demo().await;
    let server = v4(&running);
    let admin = AdminClient::of(&running);
    // German networks inside the City record 2a02:d180::/29.
    let de: Vec<String> = (0..400u32)
        .map(|i| format!("2a02:d18{}:{:x}:{:x}00::/56", i % 8, i * 97, i % 256))
        .collect();
    let split = tally(&answers_by_network(server, "perf.example.com", &de).await);
    eprintln!("perf.example.com, DE, no measurements: {split:?}");
    assert_eq!(
        split.keys().collect::<Vec<_>>(),
        ["cdn-a.example.net.", "cdn-c.example.net."],
        "{split:?}"
    );
    assert_share(&split, "cdn-c.example.net.", 0.5, 0.08);

    let mut perf = PerfView::default();
    perf.insert(
        "cdn-a",
        Region::Country(*b"DE"),
        Stats::from_samples(&samples(20.0, 40, 3.0), 1.0),
    );
    perf.insert(
        "cdn-c",
        Region::Country(*b"DE"),
        Stats::from_samples(&samples(45.0, 40, 3.0), 1.0),
    );
    // Europe as a whole says the opposite; the country is more specific and wins.
    perf.insert(
        "cdn-a",
        Region::Continent(Continent::Europe),
        Stats::from_samples(&samples(60.0, 40, 3.0), 1.0),
    );
    perf.insert(
        "cdn-c",
        Region::Continent(Continent::Europe),
        Stats::from_samples(&samples(10.0, 40, 3.0), 1.0),
    );
    let generation = running.controller.set_perf(perf.clone());
    assert!(running.published.load().generation >= generation);
    let ranked = tally(&answers_by_network(server, "perf.example.com", &de).await);
    assert_eq!(ranked.get("cdn-a.example.net."), Some(&1.0), "{ranked:?}");
    let e = admin.explain("perf.example.com", &de[0]).await;
    assert!(
        e["steps"].to_string().contains("performance (country DE)"),
        "{e}"
    );
    // An EU client outside Germany (GB) falls back to the continent: cdn-c.
    assert_eq!(
        answer_of(server, "perf.example.com", Some("2a02:d3c0::/56")).await,
        "cdn-c.example.net."
    );
    // Fewer samples than min_samples (30): not used; the continent decides for DE too.
    let mut few = perf.clone();
    few.insert(
        "cdn-a",
        Region::Country(*b"DE"),
        Stats::from_samples(&samples(20.0, 10, 3.0), 1.0),
    );
    running.controller.set_perf(few);
    assert_eq!(
        answer_of(server, "perf.example.com", Some(&de[0])).await,
        "cdn-c.example.net."
    );

    // Close, noisy numbers everywhere: not conclusive, the weighted split again.
    let mut close = PerfView::default();
    for (target, mean) in [("cdn-a", 30.0), ("cdn-c", 30.5)] {
        for region in [
            Region::Country(*b"DE"),
            Region::Continent(Continent::Europe),
            Region::World,
        ] {
            close.insert(
                target,
                region,
                Stats::from_samples(&samples(mean, 40, 15.0), 1.0),
            );
        }
    }
    running.controller.set_perf(close);
    let again = tally(&answers_by_network(server, "perf.example.com", &de).await);
    assert_eq!(again, split, "inconclusive data changes nothing");
    let e = admin.explain("perf.example.com", &de[0]).await;
    assert!(e["steps"].to_string().contains("not conclusive"), "{e}");
    running.shutdown().await;
}
