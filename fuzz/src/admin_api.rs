//! Target `admin_api`: request bodies of the admin API, through the real router in-process
//! (no socket), with the admin token, against the demo's policies copied into a temporary
//! policy directory (so policies are editable, as with a config file).
//!
//! The first byte picks the endpoint, the rest is the body:
//! - 0: `PUT /api/v1/policies/{name}?dry_run=true`, a policy TOML body (the name is taken from
//!   its `name = "…"` line, so the body is checked, compiled and previewed rather than refused
//!   for naming another policy). Dry runs write nothing, so every input meets the same state.
//! - 1: `PUT /api/v1/health/cdn-a`, a health override (`{"state": …}`); this one is stored.
//! - 2: `POST /api/v1/probe-results`, a JSON array of probe results, into the monitor.
//!
//! Invariants: nothing panics; no request gets a 500 (bad bodies are 4xx; 503 only when the
//! monitor's queue is full); the response body can be read.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use steerdns::api::admin::{Tokens, router};
use steerdns::api::limit::{HttpRateConfig, Limiter};
use steerdns::config::PolicySource;
use steerdns::control::{ConfigOrigin, Controller};
use steerdns::health::tracker::Tracker;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-admin-token";

struct Admin {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

static ADMIN: LazyLock<Admin> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = policy_dir();
    let mut config = steerdns::demo::config();
    config.policies = PolicySource::Dir(dir);
    let health = config.health.clone();
    let controller =
        Arc::new(Controller::start(config, ConfigOrigin::Demo).expect("the demo policies load"));
    let router = runtime.block_on(async {
        let (monitor, _task) = steerdns::monitor::spawn(
            Tracker::new(health, Default::default()),
            controller.clone(),
            tokio_util::sync::CancellationToken::new(),
        );
        let tokens = Tokens {
            admin: TOKEN.into(),
            probe: None,
            read: None,
        };
        // No peer in-process, so the rate limits pass everything (they have their own tests).
        let limit = Limiter::admin(&HttpRateConfig::default(), Default::default());
        router(controller, monitor, tokens, None, Arc::new(limit))
    });
    Admin { runtime, router }
});

/// A fresh directory with the demo's policy files, one per process. Those of processes that
/// are gone are removed first, so runs leave at most one behind.
fn policy_dir() -> PathBuf {
    let base = std::env::temp_dir().join("steerdns-fuzz-admin");
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !PathBuf::from("/proc").join(&pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for entry in std::fs::read_dir(&policies).expect("the demo policies") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, dir.join(name)).expect("a copy");
        }
    }
    dir
}

/// The policy name a body declares, if it is a plain DNS name.
fn declared_name(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("name"))?
        .trim_start()
        .strip_prefix('=')?
        .trim_start()
        .strip_prefix('"')?;
    let name = &rest[..rest.find('"')?];
    let plain = !name.is_empty()
        && name.len() < 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    plain.then_some(name)
}

pub fn check(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let (method, uri) = match route % 3 {
        0 => (
            Method::PUT,
            format!(
                "/api/v1/policies/{}?dry_run=true",
                declared_name(body).unwrap_or("www.example.com")
            ),
        ),
        1 => (Method::PUT, "/api/v1/health/cdn-a".to_owned()),
        _ => (Method::POST, "/api/v1/probe-results".to_owned()),
    };
    let request = Request::builder()
        .method(method)
        .uri(&uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/octet-stream")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let admin = &*ADMIN;
    let (status, text) = admin.runtime.block_on(async {
        let response = admin
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a readable body");
        (status, body)
    });
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{uri}: {status}: {}",
        String::from_utf8_lossy(&text)
    );
}
