//! Fleet mode on a real `redis-server`: three nodes on one Redis agree. An edit through node
//! A is answered by B and C; a probe result posted to B flips health on A and C; the same
//! client gets the same answer from all three; two nodes editing at once cannot both win.

use std::time::{Duration, Instant};

use crate::fleet_support::*;
// The RUM-steered name of the Chromium steering test, with the same fallback.
use super::rum_steering::POLICY as RUM_POLICY;
use crate::support::*;

/// A policy edit through A is answered by B and C; probe results posted to B take pop-a
/// down on A and C; every node answers every client alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_edits_health_and_answers() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = node("fleet-a", &url, "agree").await;
    let b = node("fleet-b", &url, "agree").await;
    let c = node("fleet-c", &url, "agree").await;
    for n in [&a, &b, &c] {
        assert_eq!(answer_of(n.dns(), NAME, None).await, "NXDOMAIN");
    }

    // Create through A: B and C answer it.
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    let created = Instant::now();
    for n in [&b, &c] {
        let got = wait_for_answer(n.dns(), NAME, None, A_IP, Duration::from_secs(3)).await;
        assert_eq!(got, A_IP);
    }
    eprintln!(
        "create on A answered by B and C after {:?}",
        created.elapsed()
    );

    // Replace through A: pop-c first.
    let (_, etag) = b.admin.policy(NAME).await;
    let r = a
        .admin
        .put_policy(NAME, "", Some(&etag), &failover("pop-c"))
        .await;
    assert_eq!(r.status, 200, "{r}");
    let edited = Instant::now();
    for n in [&b, &c] {
        let got = wait_for_answer(n.dns(), NAME, None, C_IP, Duration::from_secs(3)).await;
        assert_eq!(got, C_IP);
    }
    eprintln!("edit on A answered by B and C after {:?}", edited.elapsed());
    // B's ETag is the one A wrote: B can edit on from it.
    let etag_a = r.header("etag").expect("ETag").to_owned();
    eventually("B serves A's ETag", Duration::from_secs(3), async || {
        let (_, e) = b.admin.policy(NAME).await;
        if e == etag_a { Ok(()) } else { Err(e) }
    })
    .await;

    // Probe results to B only: pop-c down everywhere.
    let failing: Vec<_> = (0..3).map(|_| result("pop-c", "ext", false)).collect();
    let r = post_results(&b.admin, &failing).await;
    assert_eq!(r.status, 200, "{r}");
    let posted = Instant::now();
    for n in [&a, &b, &c] {
        let got = wait_for_answer(n.dns(), NAME, None, A_IP, Duration::from_secs(3)).await;
        assert_eq!(got, A_IP, "pop-c down, pop-a next");
    }
    eprintln!(
        "probe failures posted to B moved A, B and C after {:?}",
        posted.elapsed()
    );
    for n in [&a, &c] {
        assert_eq!(health_of(&n.admin, "pop-c").await.as_deref(), Some("down"));
    }

    // An override through C holds on A and B: pop-c forced up over its measured down.
    c.admin.set_health("pop-c", Some("up")).await;
    for n in [&a, &b] {
        let got = wait_for_answer(n.dns(), NAME, None, C_IP, Duration::from_secs(3)).await;
        assert_eq!(got, C_IP, "override from C: pop-c up");
    }
    c.admin.set_health("pop-c", None).await;
    for n in [&a, &b] {
        let got = wait_for_answer(n.dns(), NAME, None, A_IP, Duration::from_secs(3)).await;
        assert_eq!(got, A_IP);
    }

    // Same client, same answer, on every node, for clients all over.
    for subnet in [
        None,
        Some("81.2.69.0/24"),
        Some("2a02:d180::/56"),
        Some("89.160.20.0/24"),
        Some("216.160.83.0/24"),
    ] {
        let want = answer_of(a.dns(), NAME, subnet).await;
        for n in [&b, &c] {
            assert_eq!(answer_of(n.dns(), NAME, subnet).await, want, "{subnet:?}");
        }
    }

    // The local copy on disk follows the fleet.
    let copy = std::fs::read_to_string(c.dir.join("cache/fleet.example.com.toml"))
        .expect("C keeps a local copy");
    assert_eq!(copy, failover("pop-c"));
    for n in [a, b, c] {
        n.running.shutdown().await;
    }
}

/// Two nodes replace the same version at the same moment: exactly one wins (200), the other
/// gets 412 with the winner's ETag, and every node serves the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_edits_through_two_nodes_one_wins() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = node("fleet-cas-a", &url, "cas").await;
    let b = node("fleet-cas-b", &url, "cas").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    let mut etag = r.header("etag").expect("ETag").to_owned();
    for round in 0..5 {
        let (ta, tb) = if round % 2 == 0 {
            ("pop-b", "pop-c")
        } else {
            ("pop-c", "pop-b")
        };
        // Both differ from the current text (ETags are of the content: rewriting the current
        // text changes nothing, so it would rightly not conflict).
        let (text_a, text_b) = (
            format!("# round {round} via A\n{}", failover(ta)),
            format!("# round {round} via B\n{}", failover(tb)),
        );
        let (ra, rb) = tokio::join!(
            a.admin.put_policy(NAME, "", Some(&etag), &text_a),
            b.admin.put_policy(NAME, "", Some(&etag), &text_b),
        );
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}: {ra}\n{rb}");
        let (winner, loser) = if ra.status == 200 {
            (&ra, &rb)
        } else {
            (&rb, &ra)
        };
        let win_etag = winner.header("etag").expect("ETag").to_owned();
        assert!(
            loser.error().contains(&win_etag),
            "the 412 names the current ETag {win_etag}: {loser}"
        );
        let want = if ra.status == 200 { ta } else { tb };
        let want_ip = if want == "pop-b" { B_IP } else { C_IP };
        for n in [&a, &b] {
            let got = wait_for_answer(n.dns(), NAME, None, want_ip, Duration::from_secs(3)).await;
            assert_eq!(got, want_ip, "round {round}");
        }
        etag = win_etag;
    }
    // History holds every replaced version.
    let r = b
        .admin
        .get(&format!("/api/v1/policies/{NAME}/history"))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json().as_array().map(Vec::len), Some(5), "{r}");
    a.running.shutdown().await;
    b.running.shutdown().await;
}

/// `steerdns policy import` seeds a fleet from a directory (nodes pick it up), keeps
/// existing policies unless `--replace`; `policy export` writes the fleet back to files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_import_seeds_a_fleet_and_export_backs_it_up() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = node("fleet-io-a", &url, "io").await;
    let seed = TempDir::new("fleet-io-seed");
    seed.write("fleet.example.com.toml", &failover("pop-b"));
    let steerdns = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(args)
            .output()
            .expect("run steerdns");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let dir = seed.join("");
    let dir = dir.to_str().unwrap();
    let (ok, out) = steerdns(&["policy", "import", "--redis", &url, "--prefix", "io", dir]);
    assert!(ok, "{out}");
    assert!(out.contains("imported 1 policies"), "{out}");
    assert_eq!(
        wait_for_answer(a.dns(), NAME, None, B_IP, Duration::from_secs(3)).await,
        B_IP
    );
    // Again, changed: kept without --replace, replaced with it.
    seed.write("fleet.example.com.toml", &failover("pop-c"));
    let (ok, out) = steerdns(&["policy", "import", "--redis", &url, "--prefix", "io", dir]);
    assert!(ok && out.contains("1 already there kept"), "{out}");
    let (ok, out) = steerdns(&[
        "policy",
        "import",
        "--redis",
        &url,
        "--prefix",
        "io",
        "--replace",
        dir,
    ]);
    assert!(ok && out.contains("imported 1 policies"), "{out}");
    assert_eq!(
        wait_for_answer(a.dns(), NAME, None, C_IP, Duration::from_secs(3)).await,
        C_IP
    );
    // A broken file is refused, naming it, and nothing is written.
    seed.write("broken.example.com.toml", "name = 3\n");
    let (ok, out) = steerdns(&["policy", "import", "--redis", &url, "--prefix", "io", dir]);
    assert!(!ok && out.contains("broken.example.com.toml"), "{out}");

    let backup = TempDir::new("fleet-io-backup");
    let bdir = backup.join("");
    let (ok, out) = steerdns(&[
        "policy",
        "export",
        "--redis",
        &url,
        "--prefix",
        "io",
        bdir.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("exported 1 policies"), "{out}");
    assert_eq!(
        std::fs::read_to_string(backup.join("fleet.example.com.toml")).unwrap(),
        failover("pop-c")
    );
    let (ok, out) = steerdns(&["policy", "export", "--help"]);
    assert!(ok && out.contains("--redis"), "{out}");
    a.running.shutdown().await;
}

/// The agreement test on a real Redis Cluster (three masters): an edit through A is answered
/// by B and C, probe results posted to B move A and C, and concurrent edits still conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_a_redis_cluster() {
    let dir = TempDir::new("fleet-cluster");
    let cluster = RedisCluster::start(&dir.join("redis"));
    let url = cluster.url();
    let a = node("fleet-cl-a", &url, "cl").await;
    let b = node("fleet-cl-b", &url, "cl").await;
    let c = node("fleet-cl-c", &url, "cl").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-c")).await;
    assert_eq!(r.status, 201, "{r}");
    let etag = r.header("etag").unwrap().to_owned();
    let created = Instant::now();
    for n in [&b, &c] {
        let got = wait_for_answer(n.dns(), NAME, None, C_IP, Duration::from_secs(3)).await;
        assert_eq!(got, C_IP);
    }
    eprintln!(
        "cluster: create on A answered by B and C after {:?}",
        created.elapsed()
    );
    let failing: Vec<_> = (0..3).map(|_| result("pop-c", "ext", false)).collect();
    assert_eq!(post_results(&b.admin, &failing).await.status, 200);
    for n in [&a, &c] {
        let got = wait_for_answer(n.dns(), NAME, None, A_IP, Duration::from_secs(3)).await;
        assert_eq!(got, A_IP, "pop-c down on every node");
    }
    let (text_a, text_b) = (
        format!("# A\n{}", failover("pop-b")),
        format!("# B\n{}", failover("pop-a")),
    );
    let (ra, rb) = tokio::join!(
        a.admin.put_policy(NAME, "", Some(&etag), &text_a),
        b.admin.put_policy(NAME, "", Some(&etag), &text_b),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{ra}\n{rb}");
    for subnet in [None, Some("81.2.69.0/24"), Some("2a02:d180::/56")] {
        let want = answer_of(a.dns(), NAME, subnet).await;
        eventually("B and C answer as A", Duration::from_secs(3), async || {
            for n in [&b, &c] {
                let got = answer_of(n.dns(), NAME, subnet).await;
                if got != want {
                    return Err(format!("{subnet:?}: {got} vs {want}"));
                }
            }
            Ok(())
        })
        .await;
    }
    for n in [a, b, c] {
        n.running.shutdown().await;
    }
}

const RUM_NAME: &str = "rum.example.com";

/// RUM beacons accepted by node A only are added to the shared per-minute buckets; node B
/// ranks from them and answers the beacons' network with the faster CDN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_accepted_by_one_node_steer_every_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let targets = [
        ("cdn-a", "http://192.0.2.10/rum/test.gif".to_owned()),
        ("cdn-b", "http://192.0.2.11/rum/test.gif".to_owned()),
    ];
    let rum = crate::rum_ingest::rum_config(&targets, "beacons_per_network_per_minute = 100000\n");
    let a = node_with("fleet-rum-a", &url, "rum", &rum).await;
    let b = node_with("fleet-rum-b", &url, "rum", &rum).await;
    let r = a.admin.put_policy(RUM_NAME, "", None, RUM_POLICY).await;
    assert_eq!(r.status, 201, "{r}");
    let de = "127.0.0.0/24";
    for n in [&a, &b] {
        let got = wait_for_answer(
            n.dns(),
            RUM_NAME,
            Some(de),
            "cdn-b.example.net.",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(got, "cdn-b.example.net.", "the fallback before any beacon");
    }
    let steer = a.running.http_addr.expect("HTTP listens");
    for i in 0..12u32 {
        let c = http_request(steer, "GET", "/rum/v1/config", &[], b"").await;
        assert_eq!(c.status, 200, "{c}");
        let c = c.json();
        let jitter = f64::from(i % 4);
        let body = serde_json::json!({
            "nonce": c["nonce"], "token": c["token"],
            "results": [
                { "target": "cdn-a", "cold_ms": 15.0 + jitter, "warm_ms": 10.0 + jitter },
                { "target": "cdn-b", "cold_ms": 180.0 + jitter, "warm_ms": 160.0 + jitter },
            ]
        });
        let r = http_request(
            steer,
            "POST",
            "/rum/v1/beacons",
            &[("Content-Type", "text/plain;charset=UTF-8")],
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 204, "beacon {i}: {r}");
    }
    let posted = Instant::now();
    assert_eq!(
        b.running.rum.as_ref().expect("B collects").accepted(),
        0,
        "B accepted no beacon itself"
    );
    for n in [&b, &a] {
        let got = wait_for_answer(
            n.dns(),
            RUM_NAME,
            Some(de),
            "cdn-a.example.net.",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(got, "cdn-a.example.net.", "ranked from the shared buckets");
    }
    eprintln!("beacons to A steered B after {:?}", posted.elapsed());
    let keys = redis_keys(&redis, "{rum}:rum:cdn-a|*");
    assert!(
        keys.iter().any(|k| k.contains("|n:DE:3320:")),
        "per-minute network bucket in Redis: {keys:?}"
    );
    a.running.shutdown().await;
    b.running.shutdown().await;
}

/// `KEYS pattern` through redis-cli (tests only).
fn redis_keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--raw", "KEYS", pattern])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-cli ({e}): install the Debian package redis-tools")
        });
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The resolver map across the fleet: each page view's init name is resolved through node B
/// (its resolver asked that NS) while its config and beacon go to node A. Neither node sees
/// both halves, yet both join them through Redis and map the resolver alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_map_joins_halves_that_reached_different_nodes() {
    use crate::rum_resolver::{PLACES, RESOLVER, client_of, dig_from, page_view, send_beacon};
    let redis = RedisServer::start();
    let url = redis.url();
    let a = node_with("fleet-rmap-a", &url, "rmap", PLACES).await;
    let b = node_with("fleet-rmap-b", &url, "rmap", PLACES).await;
    let r = a
        .admin
        .put_policy("pop.example.com", "", None, POP_POLICY)
        .await;
    assert_eq!(r.status, 201, "{r}");
    let pop = async |n: &Node| {
        dig_from(n.dns(), RESOLVER, &["pop.example.com", "A", "+norec"])
            .await
            .answer_data("A")
    };
    for n in [&a, &b] {
        let got = wait_for_answer(
            n.dns(),
            "pop.example.com",
            None,
            "192.0.2.1",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(got, "192.0.2.1");
        // The resolver's own place (North America) before any mapping.
        assert_eq!(pop(n).await, ["192.0.2.1"]);
    }

    for i in 0..24 {
        let client = client_of(i);
        let (nonce, token, host) = page_view(&a.running, &client).await;
        let d = dig_from(b.dns(), RESOLVER, &[&host, "A"]).await;
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        send_beacon(&a.running, &client, &nonce, &token).await;
    }
    let resolver: std::net::IpAddr = RESOLVER.parse().unwrap();
    for n in [&a, &b] {
        // Every session joined on both nodes, though each node received only one half.
        eventually(
            "both nodes join all 24 page views",
            Duration::from_secs(10),
            async || {
                let stats = n.running.resolver_sessions.lock().unwrap().stats();
                if stats.joined == 24 {
                    Ok(())
                } else {
                    Err(format!("{stats:?}"))
                }
            },
        )
        .await;
        // A new mapping is published at once (later numbers at most once a minute).
        eventually(
            "both nodes map the resolver",
            Duration::from_secs(5),
            async || match n.running.published.load().resolver_map.get(&resolver) {
                Some(m) if m.sessions >= 20 => Ok(()),
                other => Err(format!("{:?}", other.map(|m| m.sessions))),
            },
        )
        .await;
        // Located as its users (Europe): pop-fra.
        assert_eq!(pop(n).await, ["192.0.2.2"]);
    }
    let steer = |n: &Node| {
        let m = n.running.published.load_full();
        m.resolver_map.get(&resolver).map(|m| m.steer_as)
    };
    assert_eq!(steer(&a), steer(&b), "the same mapping on both nodes");
    assert_eq!(steer(&a), Some("127.1.0.0".parse().unwrap()));
}
