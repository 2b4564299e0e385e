//! Fleet mode when Redis goes away: `kill -9` and a restart under a bounded query load (no
//! failed or wrong answer, edits 503 meanwhile, probe results buffered and delivered after),
//! a `SIGSTOP` stall (DNS latency unaffected), and a node that starts while Redis is down
//! (serves its local copy, or refuses saying it has none).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fleet_support::*;
use crate::support::*;

/// Queries every node in turn until `stop`, counting answers other than `want`.
fn query_load(
    servers: Vec<std::net::SocketAddr>,
    want: &'static str,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<Vec<String>>, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let task = tokio::spawn(async move {
        let mut wrong = Vec::new();
        // Bounded: at most 20,000 queries, about one every 2 ms.
        for i in 0..20_000u32 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let server = servers[i as usize % servers.len()];
            let got = answer_of(server, NAME, None).await;
            counter.fetch_add(1, Ordering::Relaxed);
            if got != want {
                wrong.push(format!("query {i} to {server}: {got}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        wrong
    });
    (task, sent)
}

async fn readyz(node: &Node) -> String {
    let addr = node.running.http_addr.expect("HTTP listens");
    http_request(addr, "GET", "/readyz", &[], b"").await.body
}

async fn metric(node: &Node, name: &str) -> Option<f64> {
    let addr = node.running.http_addr.expect("HTTP listens");
    let body = http_request(addr, "GET", "/metrics", &[], b"").await.body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load() {
    let data = TempDir::new("fleet-outage-redis");
    let mut redis = RedisServer::start_persistent(data.join("redis"));
    let url = redis.url();
    let a = node("fleet-out-a", &url, "outage").await;
    let b = node("fleet-out-b", &url, "outage").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    let etag = r.header("etag").unwrap().to_owned();
    for n in [&a, &b] {
        assert_eq!(
            wait_for_answer(n.dns(), NAME, None, A_IP, Duration::from_secs(3)).await,
            A_IP
        );
    }
    assert_eq!(metric(&a, "steerdns_store_up").await, Some(1.0));

    let stop = Arc::new(AtomicBool::new(false));
    let (load, sent) = query_load(vec![a.dns(), b.dns()], A_IP, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill9();
    let killed = Instant::now();
    // Edits fail loudly while Redis is gone.
    let r = b
        .admin
        .put_policy(NAME, "", Some(&etag), &failover("pop-b"))
        .await;
    assert_eq!(r.status, 503, "{r}");
    assert!(r.error().contains("unavailable"), "{r}");
    eprintln!(
        "edit during the outage: {} after {:?}",
        r.status,
        killed.elapsed()
    );
    // So do overrides: one the rest of the fleet (and a restart) would not know is refused.
    let r = a
        .admin
        .request("PUT", "/api/v1/health/pop-a", &[], br#"{"state":"down"}"#)
        .await;
    assert_eq!(r.status, 503, "{r}");
    assert!(r.error().contains("unavailable"), "{r}");
    // Stale, visibly.
    eventually(
        "A reports the store down",
        Duration::from_secs(3),
        async || match (metric(&a, "steerdns_store_up").await, readyz(&a).await) {
            (Some(v), body) if v == 0.0 && body.contains("stale") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    // Probe results posted to B while Redis is gone are buffered (pop-z is in no policy the
    // load queries, so its flip changes no answer).
    let failing: Vec<_> = (0..3).map(|_| result("pop-z", "ext", false)).collect();
    assert_eq!(post_results(&b.admin, &failing).await.status, 200);
    eventually(
        "B buffers the results",
        Duration::from_secs(3),
        async || match metric(&b, "steerdns_store_buffered_writes").await {
            Some(v) if v >= 3.0 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(
        health_of(&a.admin, "pop-z").await,
        None,
        "A has not seen them"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    redis.restart();
    let restarted = Instant::now();
    eventually(
        "A reports the store up",
        Duration::from_secs(10),
        async || match metric(&a, "steerdns_store_up").await {
            Some(v) if v > 0.5 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    eventually(
        "B's buffered results reach A",
        Duration::from_secs(10),
        async || match health_of(&a.admin, "pop-z").await {
            Some(s) if s == "down" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    eprintln!(
        "buffered results reached A {:?} after the restart",
        restarted.elapsed()
    );
    // Readiness clears once A re-lists its policies, which it does as soon as its store calls
    // succeed again, not at its next refresh tick (the bound here is under two ticks of
    // the 500 ms refresh plus the 50 ms settle).
    eventually(
        "A stops saying stale",
        Duration::from_millis(900),
        async || match readyz(&a).await {
            body if body.contains("stale") => Err(body),
            _ => Ok(()),
        },
    )
    .await;
    eprintln!(
        "A ready, not stale, {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(
        metric(&b, "steerdns_store_buffered_writes").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&b, "steerdns_store_dropped_writes_total").await,
        Some(0.0)
    );
    // Edits work again without a restart of any node.
    let r = b
        .admin
        .put_policy(
            NAME,
            "",
            Some(&etag),
            &format!("# after\n{}", failover("pop-a")),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let wrong = load.await.unwrap();
    let sent = sent.load(Ordering::Relaxed);
    eprintln!(
        "queries during the outage test: {sent}, wrong or failed: {}",
        wrong.len()
    );
    assert!(sent > 200, "the load ran ({sent} queries)");
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    a.running.shutdown().await;
    b.running.shutdown().await;
}

/// p99 of `n` UDP queries to `server`, one at a time.
async fn p99(server: std::net::SocketAddr, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let got = answer_of(server, NAME, None).await;
        times.push(start.elapsed());
        assert_eq!(got, A_IP);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    times.sort();
    times[(n * 99 / 100).min(n - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stalled_5s_leaves_dns_latency_alone() {
    let redis = RedisServer::start();
    let a = node("fleet-stall-a", &redis.url(), "stall").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    let etag = r.header("etag").unwrap().to_owned();
    let before = p99(a.dns(), 200).await;
    redis.signal("STOP");
    let stalled = Instant::now();
    let edit = {
        let admin = AdminClient {
            addr: a.admin.addr,
            token: a.admin.token.clone(),
        };
        tokio::spawn(async move {
            let start = Instant::now();
            let r = admin
                .put_policy(NAME, "", Some(&etag), &failover("pop-b"))
                .await;
            (r.status, start.elapsed())
        })
    };
    let during = p99(a.dns(), 400).await;
    let (status, took) = edit.await.unwrap();
    while stalled.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.signal("CONT");
    eprintln!(
        "DNS p99 before the stall {before:?}, during {during:?}; edit during it: {status} in {took:?}"
    );
    assert_eq!(
        status, 503,
        "an edit during the stall fails within our timeout"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        during <= before * 10 + Duration::from_millis(20),
        "p99 during the stall {during:?} vs before {before:?}"
    );
    eventually(
        "the store is up again",
        Duration::from_secs(10),
        async || match metric(&a, "steerdns_store_up").await {
            Some(v) if v > 0.5 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    a.running.shutdown().await;
}

/// A node that starts while Redis is down serves its local copy; one without a copy refuses
/// to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starting_while_redis_is_down_serves_its_local_copy() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let a = node("fleet-cold-a", &url, "cold").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    eventually(
        "A's local copy is written",
        Duration::from_secs(3),
        async || {
            std::fs::read_to_string(a.dir.join("cache/fleet.example.com.toml"))
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let config = a.dir.join("steerdns.toml");
    a.running.shutdown().await;
    redis.kill9();

    let running = start_file(&config).await;
    assert_eq!(answer_of(v4(&running), NAME, None).await, A_IP);
    running.shutdown().await;

    // No local copy: a clear refusal.
    std::fs::remove_dir_all(a.dir.join("cache")).unwrap();
    let mut cfg = steerdns::config::Config::load(&config).unwrap();
    loopback(&mut cfg);
    let err = steerdns::app::start(cfg, steerdns::control::ConfigOrigin::File(config.clone()))
        .await
        .err()
        .expect("no Redis and no local copy: no start");
    let err = format!("{err:#}");
    assert!(err.contains("no local copy"), "{err}");
}

/// A Redis that loses its data (here: `FLUSHALL`; in life a restart without persistence)
/// must not empty the fleet: nodes keep their policies and say the store is stale; seeding
/// it again (an import, here a re-create) brings it back. Deleting every policy on purpose
/// still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_does_not_empty_the_fleet() {
    let redis = RedisServer::start();
    let url = redis.url();
    // Waits are generous (each ends as soon as it holds): on a loaded machine a 3 s wait for
    // the fleet's 2 s refresh missed now and then.
    let a = node("fleet-lost-a", &url, "lost").await;
    let b = node("fleet-lost-b", &url, "lost").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    for n in [&a, &b] {
        assert_eq!(
            wait_for_answer(n.dns(), NAME, None, A_IP, Duration::from_secs(15)).await,
            A_IP
        );
    }
    assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
    // Several refreshes later both still answer, and say why their view is stale.
    for n in [&a, &b] {
        eventually(
            "stale after the data loss",
            Duration::from_secs(15),
            async || {
                let body = readyz(n).await;
                if body.contains("stale") {
                    Ok(())
                } else {
                    Err(body)
                }
            },
        )
        .await;
        holds(
            "still answering",
            Duration::from_millis(500),
            async || match answer_of(n.dns(), NAME, None).await.as_str() {
                A_IP => Ok(()),
                other => Err(other.to_owned()),
            },
        )
        .await;
    }
    // Seeded again through A: served, and no longer stale.
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-c")).await;
    assert_eq!(r.status, 201, "{r}");
    for n in [&a, &b] {
        assert_eq!(
            wait_for_answer(n.dns(), NAME, None, C_IP, Duration::from_secs(15)).await,
            C_IP
        );
    }
    // Deleting the last policy on purpose empties the fleet (the marker says it was seeded).
    let (_, etag) = a.admin.policy(NAME).await;
    let r = a.admin.delete_policy(NAME, Some(&etag)).await;
    assert!(r.status == 200 || r.status == 204, "{r}");
    for n in [&a, &b] {
        assert_eq!(
            wait_for_answer(n.dns(), NAME, None, "NXDOMAIN", Duration::from_secs(15)).await,
            "NXDOMAIN"
        );
    }
    for n in [a, b] {
        n.running.shutdown().await;
    }
}

/// Once Redis is back, `/readyz` stops saying stale by itself, even when nothing changed
/// and so nothing new is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_fresh_again_when_redis_returns_with_nothing_changed() {
    let mut redis = RedisServer::start_persistent(TempDir::new("fleet-fresh-redis").join("data"));
    let a = node("fleet-fresh-a", &redis.url(), "fresh").await;
    let r = a.admin.put_policy(NAME, "", None, &failover("pop-a")).await;
    assert_eq!(r.status, 201, "{r}");
    redis.kill9();
    eventually("A says stale", Duration::from_secs(5), async || {
        let body = readyz(&a).await;
        if body.contains("stale") {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
    redis.restart();
    eventually("A says fresh again", Duration::from_secs(5), async || {
        let body = readyz(&a).await;
        if body.contains("stale") {
            Err(body)
        } else {
            Ok(())
        }
    })
    .await;
}
