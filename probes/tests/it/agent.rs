//! The schedule: one task per check, intervals kept, timeouts enforced, full channel, cancel.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use steerdns_probes::{AgentStats, CheckKind, TargetChecks, spawn_agent, spawn_agent_with_stats};

use crate::support::*;

#[tokio::test]
async fn fast_check_keeps_its_interval_while_a_slow_one_times_out() {
    let server = HttpServer::standard().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = listener.local_addr().unwrap();
    // Accept (and drop) connections so the TCP check succeeds.
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });

    let targets = vec![
        TargetChecks {
            target: "slow-cdn".into(),
            checks: vec![check("slow", http_kind(&server.url("/hang")), 400, 300)],
        },
        TargetChecks {
            target: "fast-pop".into(),
            checks: vec![check("fast", CheckKind::Tcp { address: tcp_addr }, 100, 50)],
        },
    ];
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let agent = spawn_agent("fra", targets, tx, cancel.clone());

    let mut fast = Vec::new();
    let mut slow = Vec::new();
    while fast.len() < 10 || slow.len() < 2 {
        let r = within("results", rx.recv()).await.expect("agent running");
        assert_eq!(r.agent, "fra");
        match r.check.as_str() {
            "fast" => {
                assert_eq!(r.target, "fast-pop");
                fast.push(r);
            }
            "slow" => {
                assert_eq!(r.target, "slow-cdn");
                slow.push(r);
            }
            other => panic!("unexpected check {other}"),
        }
    }
    cancel.cancel();
    within("the agent to stop", agent).await.unwrap();
    // Every task is gone, so every sender is gone: the channel drains and closes.
    while within("the channel to close", rx.recv()).await.is_some() {}
    accept.abort();

    for r in &fast {
        assert!(r.ok, "{r:?}");
    }
    // The fast check ran every 100 ms although the slow one spent 300 ms per run waiting.
    let starts: Vec<u64> = fast.iter().map(|r| r.at_unix_ms).collect();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((50..=180).contains(&gap), "fast check gaps {starts:?}");
    }
    let span = starts[9] - starts[0];
    assert!(
        (800..=1200).contains(&span),
        "10 fast runs over {span} ms: {starts:?}"
    );

    for r in &slow {
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("timeout after 300 ms"));
        assert!(r.latency_ms >= 300.0 && r.latency_ms < 450.0, "{r:?}");
    }
    let gap = slow[1].at_unix_ms - slow[0].at_unix_ms;
    assert!((330..=480).contains(&gap), "slow check gap {gap}");
}

#[tokio::test]
async fn full_channel_drops_and_counts_without_stalling_the_schedule() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let targets = vec![TargetChecks {
        target: "pop".into(),
        checks: vec![check("tcp", CheckKind::Tcp { address }, 30, 20)],
    }];
    // Room for one result, and nobody reads.
    let (tx, mut rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let stats = Arc::new(AgentStats::default());
    let agent = spawn_agent_with_stats("iad", targets, tx, cancel.clone(), stats.clone());

    // Each run connects once. Run k+1 starts after run k's result was offered, so by the 5th
    // accept runs 1-4 were offered: one fit, three were dropped.
    for _ in 0..5 {
        let (stream, _) = within("a check run", listener.accept()).await.unwrap();
        drop(stream);
    }
    assert!(stats.dropped() >= 3, "dropped {}", stats.dropped());
    assert!(stats.sent() >= 1);
    cancel.cancel();
    within("the agent to stop", agent).await.unwrap();
    assert_eq!(stats.sent(), 1);
    assert_eq!(stats.runs(), stats.sent() + stats.dropped());
    assert!(rx.recv().await.unwrap().ok);
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn cancel_stops_a_check_in_the_middle_of_a_run() {
    let mut server = HttpServer::standard().await;
    let targets = vec![TargetChecks {
        target: "slow".into(),
        checks: vec![check(
            "hang",
            http_kind(&server.url("/hang")),
            10_000,
            9_000,
        )],
    }];
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let agent = spawn_agent("fra", targets, tx, cancel.clone());
    // The run is under way once the server has the request.
    assert_eq!(server.next_request().await.path, "/hang");
    let start = std::time::Instant::now();
    cancel.cancel();
    within("the agent to stop", agent).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(rx.recv().await.is_none(), "a cancelled run reports nothing");
}

#[tokio::test]
async fn agent_stops_when_the_receiver_is_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let targets = vec![TargetChecks {
        target: "pop".into(),
        checks: vec![check("tcp", CheckKind::Tcp { address }, 20, 10)],
    }];
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let agent = spawn_agent("fra", targets, tx, CancellationToken::new());
    within("the agent to stop", agent).await.unwrap();
}
