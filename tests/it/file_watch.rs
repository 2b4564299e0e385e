//! The policy directory is watched: a file written on disk serves within moments (polled,
//! bounded), an invalid file keeps its last good version serving and marks the snapshot
//! stale, and each file stands alone.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

/// How long a file change may take to be served.
const WITHIN: Duration = Duration::from_secs(5);
const GB: &str = "2a02:d3c0::/56";

fn www_gb_to(targets: &str) -> String {
    let text = WWW_POLICY.replace(
        "{ match = { country = \"GB\" }, targets = [\"cdn-d\", \"cdn-c\"] }",
        &format!("{{ match = {{ country = \"GB\" }}, targets = {targets} }}"),
    );
    assert_ne!(text, WWW_POLICY, "the demo www policy changed shape");
    text
}

async fn metrics(http: SocketAddr) -> String {
    let r = http_request(http, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{r}");
    r.body
}

/// Poll /metrics until it has `line` (bounded); returns the last body.
async fn wait_for_metric(http: SocketAddr, line: &str) -> String {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let body = metrics(http).await;
        if body.lines().any(|l| l == line) || tokio::time::Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (bounded) until the server watches its policy directory: write a warm-up policy
/// again and again until it is served, then remove it. (The watch starts in a background
/// task after `app::start` returns; see `a_file_written_right_after_start_is_served`.)
async fn wait_until_watching(dir: &TempDir, server: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    let text = POP_POLICY.replace("pop.example.com", "warmup.example.com");
    loop {
        let path = dir.write("policies/warmup.example.com.toml", &text);
        let got = wait_for_answer(
            server,
            "warmup.example.com",
            Some(GB),
            "192.0.2.2",
            Duration::from_millis(200),
        )
        .await;
        if got == "192.0.2.2" {
            std::fs::remove_file(&path).unwrap();
            let got =
                wait_for_answer(server, "warmup.example.com", Some(GB), "NXDOMAIN", WITHIN).await;
            assert_eq!(got, "NXDOMAIN", "the warm-up policy was not removed");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the policy directory is not watched"
        );
    }
}

/// A file written as soon as the server has started must be served too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_right_after_start_is_served() {
    let dir = TempDir::new("watch-race");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    dir.write(
        "policies/api.example.com.toml",
        &POP_POLICY.replace("pop.example.com", "api.example.com"),
    );
    let got = wait_for_answer(server, "api.example.com", Some(GB), "192.0.2.2", WITHIN).await;
    assert_eq!(got, "192.0.2.2", "not picked up within {WITHIN:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_written_on_disk_is_served() {
    let dir = TempDir::new("watch-edit");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    wait_until_watching(&dir, server).await;
    let admin = AdminClient::of(&running);
    let (_, etag) = admin.policy("www.example.com").await;
    assert_eq!(
        answer_of(server, "www.example.com", Some(GB)).await,
        "cdn-d.example.net."
    );

    let www = dir.join("policies/www.example.com.toml");
    let edited = www_gb_to("[\"cdn-c\"]");
    std::fs::write(&www, &edited).unwrap();
    let got = wait_for_answer(
        server,
        "www.example.com",
        Some(GB),
        "cdn-c.example.net.",
        WITHIN,
    )
    .await;
    assert_eq!(got, "cdn-c.example.net.", "the edit was not picked up");
    assert!(running.published.load().generation >= 2);
    assert!(!running.published.is_stale());
    // The API sees the file's text and a new ETag.
    let (text, etag2) = admin.policy("www.example.com").await;
    assert_eq!(text, edited);
    assert_ne!(etag2, etag);

    // The way editors save: a temp file renamed over the policy.
    let swap = dir.join("policies/.www.example.com.toml.swp");
    std::fs::write(&swap, www_gb_to("[\"cdn-b\"]")).unwrap();
    std::fs::rename(&swap, &www).unwrap();
    let got = wait_for_answer(
        server,
        "www.example.com",
        Some(GB),
        "cdn-b.example.net.",
        WITHIN,
    )
    .await;
    assert_eq!(
        got, "cdn-b.example.net.",
        "the renamed file was not picked up"
    );

    // A new file adds a name; removing it removes the name.
    let api = dir.write(
        "policies/api.example.com.toml",
        &POP_POLICY.replace("pop.example.com", "api.example.com"),
    );
    let got = wait_for_answer(server, "api.example.com", Some(GB), "192.0.2.2", WITHIN).await;
    assert_eq!(got, "192.0.2.2", "the new file was not picked up");
    std::fs::remove_file(&api).unwrap();
    let got = wait_for_answer(server, "api.example.com", Some(GB), "NXDOMAIN", WITHIN).await;
    assert_eq!(got, "NXDOMAIN", "the removed file still serves");
    assert_eq!(
        answer_of(server, "www.example.com", Some(GB)).await,
        "cdn-b.example.net."
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_last_good_version_and_marks_stale() {
    let dir = TempDir::new("watch-invalid");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    wait_until_watching(&dir, server).await;
    let http = running.http_addr.expect("HTTP listener");
    assert!(metrics(http).await.contains("steerdns_snapshot_stale 0"));

    let www = dir.join("policies/www.example.com.toml");
    std::fs::write(&www, WWW_POLICY.replace("\"GB\"", "\"UK\"")).unwrap();
    let body = wait_for_metric(http, "steerdns_snapshot_stale 1").await;
    assert!(body.contains("steerdns_snapshot_stale 1"), "{body}");
    let ready = http_request(http, "GET", "/readyz", &[], b"").await;
    assert_eq!(ready.status, 200, "{ready}");
    assert!(ready.body.contains("stale"), "{ready}");
    assert_eq!(
        answer_of(server, "www.example.com", Some(GB)).await,
        "cdn-d.example.net."
    );
    // The API still serves the last good text.
    let (text, _) = AdminClient::of(&running).policy("www.example.com").await;
    assert_eq!(text, WWW_POLICY);

    // Each file stands alone: a valid change to pop applies while www is broken.
    let pop = dir.join("policies/pop.example.com.toml");
    std::fs::write(
        &pop,
        POP_POLICY.replace(
            "{ match = { continent = \"EU\" }, targets = [\"pop-fra\", \"pop-iad\"] }",
            "{ match = { continent = \"EU\" }, targets = [\"pop-iad\", \"pop-fra\"] }",
        ),
    )
    .unwrap();
    let got = wait_for_answer(server, "pop.example.com", Some(GB), "192.0.2.1", WITHIN).await;
    assert_eq!(got, "192.0.2.1", "the valid pop edit was not applied");
    assert_eq!(
        answer_of(server, "www.example.com", Some(GB)).await,
        "cdn-d.example.net."
    );
    assert!(running.published.is_stale(), "www is still broken");

    // Garbage, an empty file: still the last good version.
    for bad in ["", "\u{0}\u{1}not toml", "name = "] {
        std::fs::write(&www, bad).unwrap();
        // No generation to wait for: give the watcher a change it must act on something visible.
        let probe = dir.write(
            "policies/probe.example.com.toml",
            &POP_POLICY.replace("pop.example.com", "probe.example.com"),
        );
        let got = wait_for_answer(server, "probe.example.com", Some(GB), "192.0.2.2", WITHIN).await;
        assert_eq!(got, "192.0.2.2");
        std::fs::remove_file(&probe).unwrap();
        let got = wait_for_answer(server, "probe.example.com", Some(GB), "NXDOMAIN", WITHIN).await;
        assert_eq!(got, "NXDOMAIN");
        assert_eq!(
            answer_of(server, "www.example.com", Some(GB)).await,
            "cdn-d.example.net.",
            "after writing {bad:?}"
        );
        assert!(running.published.is_stale());
    }

    // Fixed: the new version serves and the snapshot is fresh again.
    std::fs::write(&www, www_gb_to("[\"cdn-a\"]")).unwrap();
    let got = wait_for_answer(
        server,
        "www.example.com",
        Some(GB),
        "cdn-a.example.net.",
        WITHIN,
    )
    .await;
    assert_eq!(got, "cdn-a.example.net.");
    let body = wait_for_metric(http, "steerdns_snapshot_stale 0").await;
    assert!(body.contains("steerdns_snapshot_stale 0"), "{body}");
    running.shutdown().await;
}

/// Dot files (editor swap files, the server's own temp files) are not policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_files_are_ignored() {
    let dir = TempDir::new("watch-dot");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    wait_until_watching(&dir, server).await;
    dir.write("policies/.www.example.com.toml.tmp-1-1", "garbage");
    dir.write("policies/.hidden.toml", "garbage");
    // A visible change after them, so the watcher has certainly looked.
    dir.write(
        "policies/api.example.com.toml",
        &POP_POLICY.replace("pop.example.com", "api.example.com"),
    );
    let got = wait_for_answer(server, "api.example.com", Some(GB), "192.0.2.2", WITHIN).await;
    assert_eq!(got, "192.0.2.2");
    assert!(!running.published.is_stale());
    running.shutdown().await;
}

/// A second file for a name already served is refused, whichever sorts first: at start and on
/// SIGHUP this is an error ("already defined"), so the watcher must not accept a directory the
/// server could not restart from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_policy_file_is_refused_by_the_watch() {
    let dir = TempDir::new("watch-dup");
    let config = write_config(&dir, DEMO_ZONE, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    wait_until_watching(&dir, server).await;
    dir.write("policies/copy-of-www.toml", &www_gb_to("[\"cdn-b\"]"));
    // Something visible after it, so the watcher has certainly looked.
    dir.write(
        "policies/api.example.com.toml",
        &POP_POLICY.replace("pop.example.com", "api.example.com"),
    );
    let got = wait_for_answer(server, "api.example.com", Some(GB), "192.0.2.2", WITHIN).await;
    assert_eq!(got, "192.0.2.2");
    assert_eq!(
        answer_of(server, "www.example.com", Some(GB)).await,
        "cdn-d.example.net."
    );
    // A restart (here: a full reload) refuses this directory...
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"));
    command.arg("check").arg(&config);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already defined"), "{stderr}");
    // ...so the watch must refuse it too: stale, and the error names the file.
    assert!(
        running.published.is_stale(),
        "the watch accepted the duplicate"
    );
    let errors = running
        .controller
        .reload_policies()
        .expect_err("the watch reports the duplicate");
    assert!(errors.to_string().contains("copy-of-www.toml"), "{errors}");
    running.shutdown().await;
}
