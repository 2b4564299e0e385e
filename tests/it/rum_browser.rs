//! The beacon in real headless Chromium (Debian package `chromium`): a test page embeds the
//! beacon served by steerdns; three fake CDNs on loopback serve the test object (one fast,
//! one 150 ms slower, one failing), with Timing-Allow-Origin and CORS headers. The init
//! hostname `<nonce>.rum.example.com` is mapped to loopback by Chromium's host resolver rules.
//! Asserts the beacon arrives, is attributed to the loopback network's country and ASN (an
//! override: DE / AS3320), ranks the slow CDN behind the fast one, counts the failing one as
//! failed, and that every fetch was cache-busted.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use steerdns::perf::Region;

use super::rum_ingest::{http, metric, rum_config, start_rum};
use crate::support::*;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const TEST_PAGE: &str = include_str!("../../rum-beacon/test/index.html");

/// A fake CDN: answers `/rum/test.gif` after `delay`, or with 503 when `fail`; records the
/// query strings it saw.
#[derive(Clone)]
struct Cdn {
    delay: Duration,
    fail: bool,
    queries: Arc<Mutex<Vec<String>>>,
}

async fn object(State(cdn): State<Cdn>, RawQuery(query): RawQuery) -> Response {
    cdn.queries.lock().unwrap().push(query.unwrap_or_default());
    tokio::time::sleep(cdn.delay).await;
    test_object(cdn.fail)
}

/// A fake CDN's test object: a GIF header, or 503 when failing, with the headers a CDN must
/// send for the beacon to time it (CORS, Timing-Allow-Origin) and no caching.
pub fn test_object(fail: bool) -> Response {
    let status = if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut r = (status, vec![0x47u8, 0x49, 0x46, 0x38, 0x39, 0x61]).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert("timing-allow-origin", HeaderValue::from_static("*"));
    r
}

pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

async fn start_cdn(delay_ms: u64, fail: bool) -> (SocketAddr, Cdn) {
    let cdn = Cdn {
        delay: Duration::from_millis(delay_ms),
        fail,
        queries: Arc::default(),
    };
    let router = Router::new()
        .route("/rum/test.gif", get(object))
        .with_state(cdn.clone());
    (serve(router).await, cdn)
}

/// Headless Chromium, killed (with its process group) on drop.
pub struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Browser {
    pub fn open(url: &str) -> Self {
        if !std::path::Path::new(CHROMIUM).exists() {
            panic!(
                "{CHROMIUM} is required by this test: install the Debian package chromium \
                 (apt-get install chromium)"
            );
        }
        let profile = TempDir::new("chromium-profile");
        use std::os::unix::process::CommandExt;
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--host-resolver-rules=MAP *.rum.example.com 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {CHROMIUM} ({e}): install the Debian package chromium")
            });
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Kill a browser started as the leader of its own process group, with every process it
/// started (the group is only processes this test started), and reap it.
pub fn kill_group(child: &mut std::process::Child) {
    let pgid = child.id() as i32;
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_measures_three_cdns_and_is_attributed_to_its_network() {
    let (fast_addr, fast) = start_cdn(0, false).await;
    let (slow_addr, slow) = start_cdn(150, false).await;
    let (broken_addr, broken) = start_cdn(0, true).await;
    let url = |a: SocketAddr| format!("http://{a}/rum/test.gif");
    let targets = [
        ("cdn-fast", url(fast_addr)),
        ("cdn-slow", url(slow_addr)),
        ("cdn-broken", url(broken_addr)),
    ];
    let (_dir, running) = start_rum("rum-browser", &rum_config(&targets, "")).await;
    let steer = http(&running);
    let collector = running.rum.clone().unwrap();
    let page = serve(Router::new().route(
        "/index.html",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                TEST_PAGE,
            )
        }),
    ))
    .await;

    let started = tokio::time::Instant::now();
    let _browser = Browser::open(&format!(
        "http://{page}/index.html?beacon=http://{steer}/rum/v1/beacon.js&delay=0"
    ));
    let deadline = started + Duration::from_secs(60);
    while collector.accepted() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = started.elapsed();
    assert_eq!(collector.accepted(), 1, "no beacon within {waited:?}");
    eprintln!("first beacon accepted {waited:?} after starting Chromium");

    let view = collector.view(SystemTime::now());
    let at = |target: &str, region: Region| {
        view.get(&(target.to_owned(), region.clone()))
            .cloned()
            .unwrap_or_else(|| panic!("no window for {target} in {region}: {view:?}"))
    };
    let net = Region::Network {
        country: *b"DE",
        asn: 3320,
    };
    for region in [
        net.clone(),
        Region::Country(*b"DE"),
        Region::Continent(steerdns::geo::Continent::Europe),
        Region::World,
    ] {
        let f = at("cdn-fast", region.clone());
        let s = at("cdn-slow", region.clone());
        let b = at("cdn-broken", region.clone());
        assert_eq!((f.attempts, f.failures), (1, 0), "fast in {region}");
        assert_eq!((s.attempts, s.failures), (1, 0), "slow in {region}");
        assert_eq!((b.attempts, b.failures), (1, 1), "broken in {region}");
        let (fp, sp) = (
            f.timings.quantile(0.5).unwrap(),
            s.timings.quantile(0.5).unwrap(),
        );
        assert!(
            sp >= 120.0 && sp > fp + 100.0,
            "slow {sp} ms vs fast {fp} ms"
        );
    }
    assert_eq!(view.len(), 12, "3 targets × 4 levels: {view:?}");

    // The session for the resolver map: network and location, no address.
    let (sessions, _) = collector.sessions_since(0, 10);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].net.to_string(), "127.0.0.0/24");
    assert_eq!(
        (sessions[0].country, sessions[0].asn),
        (Some(*b"DE"), Some(3320))
    );
    // The init hostname was fetched (through the resolver rule) before the measurements.
    assert_eq!(metric(steer, "steerdns_rum_init_total").await, Some(1));
    assert_eq!(
        metric(
            steer,
            "steerdns_rum_beacons_rejected_total{reason=\"bad_json\"}"
        )
        .await,
        Some(0)
    );

    // A cold and a warm fetch per working CDN, each with its own cache-busting query; the
    // failing one is not retried after its cold fetch failed.
    for (name, cdn, want) in [
        ("fast", &fast, 2),
        ("slow", &slow, 2),
        ("broken", &broken, 1),
    ] {
        let q = cdn.queries.lock().unwrap().clone();
        assert_eq!(q.len(), want, "{name}: {q:?}");
        assert!(
            q.iter().all(|q| q.starts_with("rum=") && q.len() > 6),
            "{name}: {q:?}"
        );
        if q.len() == 2 {
            assert_ne!(q[0], q[1], "{name}");
        }
    }
    running.shutdown().await;
}
