//! The reporter against real HTTP servers on loopback (and against nothing).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use steerdns_probes::{
    CheckKind, ProbeResult, ReporterConfig, ReporterStats, TargetChecks, run_reporter,
    run_reporter_with, spawn_agent,
};

use crate::support::*;

fn fast_config(base_url: String, max_backlog: usize) -> ReporterConfig {
    let mut config = ReporterConfig::new(base_url, "s3cret", max_backlog);
    config.flush_interval = Duration::from_millis(20);
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(200);
    config.request_timeout = Duration::from_secs(2);
    config.final_flush_timeout = Duration::from_millis(300);
    config
}

/// A channel already holding `n` results, its sender dropped.
fn queued(n: usize) -> mpsc::Receiver<ProbeResult> {
    let (tx, rx) = mpsc::channel(n.max(1));
    for i in 0..n {
        tx.try_send(result(i)).unwrap();
    }
    rx
}

/// A server answering 503 to the first `failures` POSTs, then 200.
async fn flaky_server(failures: usize) -> HttpServer {
    let count = Arc::new(AtomicUsize::new(0));
    HttpServer::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) < failures {
            Reply::Respond(503, b"not yet".to_vec())
        } else {
            Reply::Respond(200, Vec::new())
        }
    })
    .await
}

fn parse(req: &Request) -> Vec<ProbeResult> {
    serde_json::from_slice(&req.body).expect("a JSON array of results")
}

#[tokio::test]
async fn backlog_survives_503s_and_is_delivered_in_order() {
    let mut server = flaky_server(2).await;
    let mut config = fast_config(format!("http://{}/", server.addr), 100);
    config.batch_max = 4;
    let start = Instant::now();
    // The sender is gone, so the reporter returns once everything is delivered.
    let stats = within(
        "the reporter",
        run_reporter_with(queued(10), config, CancellationToken::new()),
    )
    .await;
    assert_eq!(
        stats,
        ReporterStats {
            sent: 10,
            dropped: 0,
            failed_posts: 2
        }
    );
    // Two retries after backoffs of 50 and 100 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );

    let mut delivered = Vec::new();
    for i in 0..5 {
        let req = server.next_request().await;
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/v1/probe-results");
        assert_eq!(req.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        let batch = parse(&req);
        assert!(batch.len() <= 4);
        if i < 2 {
            // The failed batch is retried first, unchanged.
            assert_eq!(batch, (0..4).map(result).collect::<Vec<_>>());
        } else {
            delivered.extend(batch);
        }
    }
    assert_eq!(delivered, (0..10).map(result).collect::<Vec<_>>());
    assert!(server.requests.try_recv().is_err(), "nothing posted twice");
}

#[tokio::test]
async fn backlog_is_bounded_and_keeps_the_newest() {
    let mut server = flaky_server(2).await;
    let config = fast_config(server.url(""), 5);
    let stats = within(
        "the reporter",
        run_reporter_with(queued(20), config, CancellationToken::new()),
    )
    .await;
    let mut delivered = Vec::new();
    for _ in 0..stats.failed_posts + 1 {
        let req = server.next_request().await;
        let batch = parse(&req);
        assert!(batch.len() <= 5, "{} results in one POST", batch.len());
        delivered = batch; // only the last (accepted) one counts
    }
    while let Ok(req) = server.requests.try_recv() {
        delivered.extend(parse(&req));
    }
    assert_eq!(stats.failed_posts, 2);
    assert_eq!(stats.sent as usize, delivered.len());
    assert_eq!(stats.sent + stats.dropped, 20);
    assert!(stats.sent >= 5, "{stats:?}");
    // What survived is the newest results, in order.
    let first = 20 - delivered.len();
    assert_eq!(delivered, (first..20).map(result).collect::<Vec<_>>());
}

#[tokio::test]
async fn nothing_listening_bounds_the_backlog_and_counts_drops() {
    let addr = closed_port().await;
    let (stats_tx, mut stats_rx) = watch::channel(ReporterStats::default());
    let mut config = fast_config(format!("http://{addr}"), 5);
    config.stats = Some(stats_tx);
    let (tx, rx) = mpsc::channel(32);
    for i in 0..20 {
        tx.try_send(result(i)).unwrap();
    }
    let cancel = CancellationToken::new();
    let reporter = tokio::spawn(run_reporter_with(rx, config, cancel.clone()));

    // Retries keep failing; once all 20 are in, exactly 15 are out of the bound.
    let seen = within(
        "failed retries",
        stats_rx.wait_for(|s| s.failed_posts >= 3 && s.dropped == 15),
    )
    .await
    .unwrap()
    .clone();
    assert_eq!(seen.sent, 0);

    let start = Instant::now();
    cancel.cancel();
    let stats = within("the reporter", reporter).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // The 5 kept results could not be delivered in the last flush either.
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.dropped, 20);
    assert!(
        stats.failed_posts > seen.failed_posts,
        "one last attempt: {stats:?}"
    );
    drop(tx);
}

#[tokio::test]
async fn backoff_grows_and_is_capped() {
    let addr = closed_port().await;
    let (stats_tx, mut stats_rx) = watch::channel(ReporterStats::default());
    let mut config = fast_config(format!("http://{addr}"), 5);
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(80);
    config.stats = Some(stats_tx);
    let (tx, rx) = mpsc::channel(4);
    tx.send(result(0)).await.unwrap();
    let cancel = CancellationToken::new();
    let reporter = tokio::spawn(run_reporter_with(rx, config, cancel.clone()));

    let mut failures_at = Vec::new();
    for n in 1..=6 {
        within("a failed post", stats_rx.wait_for(|s| s.failed_posts >= n))
            .await
            .unwrap();
        failures_at.push(Instant::now());
    }
    cancel.cancel();
    within("the reporter", reporter).await.unwrap();
    let gaps: Vec<u128> = failures_at
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // 20, 40, 80, 80, 80 ms (plus connect time): growing, then capped.
    assert!(gaps[0] >= 15 && gaps[1] >= 35 && gaps[2] >= 75, "{gaps:?}");
    assert!(gaps[3] < 250 && gaps[4] < 250, "capped: {gaps:?}");
}

#[tokio::test]
async fn cancel_exits_promptly_while_a_post_hangs() {
    let mut server = HttpServer::start(|_| Reply::Hang).await;
    let config = fast_config(server.url(""), 100);
    let (tx, rx) = mpsc::channel(8);
    tx.send(result(1)).await.unwrap();
    let cancel = CancellationToken::new();
    let reporter = tokio::spawn(run_reporter_with(rx, config, cancel.clone()));
    // The POST is in flight once the server has read it.
    assert_eq!(server.next_request().await.path, "/api/v1/probe-results");

    let start = Instant::now();
    cancel.cancel();
    let stats = within("the reporter", reporter).await.unwrap();
    let elapsed = start.elapsed();
    // Bounded by the final flush timeout (300 ms), not by the request timeout (2 s).
    assert!(
        elapsed < Duration::from_millis(300 + 300),
        "took {elapsed:?}"
    );
    assert_eq!(
        stats,
        ReporterStats {
            sent: 0,
            dropped: 1,
            failed_posts: 1
        }
    );
    drop(tx);
}

#[tokio::test]
async fn default_reporter_exits_promptly_on_cancel() {
    let addr = closed_port().await;
    let (tx, rx) = mpsc::channel(8);
    for i in 0..3 {
        tx.send(result(i)).await.unwrap();
    }
    let cancel = CancellationToken::new();
    let reporter = tokio::spawn(run_reporter(
        rx,
        format!("http://{addr}"),
        "t".into(),
        100,
        cancel.clone(),
    ));
    cancel.cancel();
    let start = Instant::now();
    let stats = within("the reporter", reporter).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.dropped, 3);
    assert_eq!(stats.failed_posts, 1);
    drop(tx);
}

#[tokio::test]
async fn final_flush_delivers_what_is_queued() {
    let mut server = HttpServer::start(|_| Reply::Respond(204, Vec::new())).await;
    let mut config = fast_config(server.url(""), 100);
    config.flush_interval = Duration::from_secs(60); // only the final flush posts
    let (tx, rx) = mpsc::channel(8);
    for i in 0..3 {
        tx.send(result(i)).await.unwrap();
    }
    let cancel = CancellationToken::new();
    cancel.cancel();
    let stats = within("the reporter", run_reporter_with(rx, config, cancel)).await;
    assert_eq!(
        stats,
        ReporterStats {
            sent: 3,
            dropped: 0,
            failed_posts: 0
        }
    );
    assert_eq!(
        parse(&server.next_request().await),
        (0..3).map(result).collect::<Vec<_>>()
    );
    drop(tx);
}

#[tokio::test]
async fn agent_to_reporter_to_server() {
    let mut server = HttpServer::start(|_| Reply::Respond(200, Vec::new())).await;
    let target_server = HttpServer::standard().await;
    let targets = vec![TargetChecks {
        target: "cdn-a".into(),
        checks: vec![check(
            "http ok",
            CheckKind::Http {
                url: target_server.url("/ok"),
                host: None,
                connect_to: None,
                expect_status: 200,
                body_contains: Some("ok".into()),
            },
            // Every result must be a success: a timeout generous enough for a loaded
            // machine (40 ms failed now and then when other builds shared the cores).
            300,
            250,
        )],
    }];
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let agent = spawn_agent("sin", targets, tx, cancel.clone());
    let reporter = tokio::spawn(run_reporter_with(
        rx,
        fast_config(server.url(""), 100),
        cancel.clone(),
    ));

    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(parse(&server.next_request().await));
    }
    cancel.cancel();
    within("the agent", agent).await.unwrap();
    let stats = within("the reporter", reporter).await.unwrap();
    for r in &got {
        assert_eq!(
            (r.target.as_str(), r.check.as_str(), r.agent.as_str()),
            ("cdn-a", "http ok", "sin")
        );
        assert!(r.ok, "{r:?}");
    }
    assert!(got.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms));
    assert!(stats.sent >= 3);
    assert_eq!(stats.dropped, 0);
}
