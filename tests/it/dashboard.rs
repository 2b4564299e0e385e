//! The operator dashboard in real headless Chromium (Debian package `chromium`), against a
//! running server: the page asks for the read-only token, then shows the live state and
//! follows it while it polls: a measured health flip (probe results over the ingest API), an
//! operator override and a policy edit each appear in the health table, the timeline and the
//! map's colours without a reload. A screenshot of the final state is saved as
//! `target/tmp/dashboard.png`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use steerdns::config::Config;
use steerdns::control::ConfigOrigin;

use super::cdp::Cdp;
use crate::support::*;

const READ_TOKEN: &str = "dashboard-read-token-0123456789";
/// How long the page may take to show a change (it polls every 3 s; probe latency windows
/// are refreshed every 10 s).
const SHOWS_WITHIN: Duration = Duration::from_secs(30);

async fn start() -> (TempDir, steerdns::app::Running) {
    let dir = TempDir::new("dashboard");
    let path = write_config_extra(
        &dir,
        DEMO_ZONE,
        &demo_policies(),
        "[health]\nup_after_successes = 1\nhold_down_ms = 1\nstale_after_ms = 600000\n\
         agent_countries = { fra = \"DE\", iad = \"US\" }\n",
    );
    let mut config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    loopback(&mut config);
    config.read_token_file = Some(dir.write("read.token", READ_TOKEN));
    let running = steerdns::app::start(config, ConfigOrigin::File(path))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (dir, running)
}

fn probe(target: &str, agent: &str, ms_ago: u64, ok: bool, latency_ms: f64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    json!({
        "target": target, "check": "http", "agent": agent, "at_unix_ms": now - ms_ago,
        "ok": ok, "latency_ms": latency_ms,
        "error": if ok { Value::Null } else { json!("connect: connection refused") },
    })
}

async fn post_probes(admin: &AdminClient, results: &[Value]) {
    let body = serde_json::to_vec(results).unwrap();
    let r = admin
        .request(
            "POST",
            "/api/v1/probe-results",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
}

/// Which target the map colours a country with (`null` if not drawn yet).
fn map_target(cc: &str) -> String {
    format!("(document.querySelector('#map path[data-cc=\"{cc}\"]')?.dataset.target ?? null)")
}

const MAP_STATE: &str = "JSON.stringify(['GB','SE','US','BR'].map(cc => { \
    const p = document.querySelector(`#map path[data-cc=\"${cc}\"]`); \
    return [cc, p && p.dataset.target, p && p.getAttribute('class')]; }))";
const TIMELINE: &str = "document.getElementById('timeline').innerText";
const HEALTH: &str = "document.getElementById('health').innerText";

fn timeline_has(kind: &str, text: &[&str]) -> String {
    let checks: Vec<String> = text
        .iter()
        .map(|t| format!("li.innerText.includes({t:?})"))
        .collect();
    format!(
        "[...document.querySelectorAll('#timeline li[data-kind=\"{kind}\"]')].some(li => {})",
        checks.join(" && ")
    )
}

/// Static page public (with its CSP), data behind the token, the read token read-only.
async fn check_access(running: &steerdns::app::Running) {
    let addr = running.admin_addr.unwrap();
    let page = http_request(addr, "GET", "/dashboard/", &[], b"").await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.body.contains("/dashboard/app.js"), "{page}");
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    for asset in [
        "/dashboard/app.js",
        "/dashboard/style.css",
        "/dashboard/world.json",
    ] {
        let r = http_request(addr, "GET", asset, &[], b"").await;
        assert_eq!(r.status, 200, "{asset}: {r}");
    }
    let root = http_request(addr, "GET", "/", &[], b"").await;
    assert!((300..400).contains(&root.status), "{root}");
    assert_eq!(root.header("location"), Some("/dashboard/"));

    let data = http_request(addr, "GET", "/api/v1/dashboard", &[], b"").await;
    assert_eq!(data.status, 401, "the data needs a token: {data}");
    let read = AdminClient {
        addr,
        token: READ_TOKEN.into(),
    };
    let r = read.get("/api/v1/dashboard").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = read.get("/api/v1/dashboard/names/www.example.com").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["name"], "www.example.com.");
    let r = read.get("/api/v1/dashboard/names/nope.example.com").await;
    assert_eq!(r.status, 404, "{r}");
    let r = read
        .request("PUT", "/api/v1/health/cdn-a", &[], br#"{"state":"down"}"#)
        .await;
    assert_eq!(r.status, 403, "the read token may not write: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_live_state_and_follows_flips_overrides_and_edits() {
    let (_dir, running) = start().await;
    check_access(&running).await;
    let admin = AdminClient::of(&running);
    let url = format!(
        "http://{}/dashboard/#name=www.example.com.",
        running.admin_addr.unwrap()
    );
    let b = &mut tokio::task::block_in_place(|| Cdp::launch(1400, 1000));
    let page = |b: &mut Cdp, f: &dyn Fn(&mut Cdp)| tokio::task::block_in_place(|| f(b));

    // Without a token the page asks for one; with the read token it shows the state.
    page(b, &|b| {
        b.navigate(&url);
        b.wait_for(
            "the token form",
            "document.getElementById('login') && !document.getElementById('login').hidden",
            "document.body.innerText",
            SHOWS_WITHIN,
        );
        let submit = |b: &mut Cdp, token: &str| {
            b.eval(&format!(
                "document.getElementById('token').value = {token:?}; \
                 document.getElementById('login-form').requestSubmit(); true"
            ));
        };
        // A wrong token is refused, forgotten, and the form asks again.
        submit(b, "not-the-token-0123456789");
        b.wait_for(
            "the refusal",
            "document.getElementById('login-error').innerText.includes('refused') \
             && sessionStorage.getItem('steerdns-dashboard-token') === null",
            "document.body.innerText",
            SHOWS_WITHIN,
        );
        submit(b, READ_TOKEN);
        // The demo policy: GB has its own rule, SE is in Europe, US in North America; BR is
        // not in the test GeoIP data, so it is drawn paler with what the policy says.
        b.wait_for(
            "the map coloured by target",
            &format!(
                "{} === 'cdn-d' && {} === 'cdn-c' && {} === 'cdn-b' && {} === 'cdn-a'",
                map_target("GB"),
                map_target("SE"),
                map_target("US"),
                map_target("BR")
            ),
            MAP_STATE,
            SHOWS_WITHIN,
        );
        assert_eq!(
            b.eval(
                "document.querySelector('#map path[data-cc=\"BR\"]').classList.contains('absent')"
            ),
            json!(true)
        );
        assert_eq!(
            b.eval(
                "document.querySelector('#map path[data-cc=\"GB\"]').classList.contains('absent')"
            ),
            json!(false)
        );
        let gb = b.eval(
            "document.querySelector('#regions tr[data-region=\"rules[2] country=GB\"]')?.innerText",
        );
        assert!(gb.as_str().is_some_and(|t| t.contains("cdn-d")), "{gb}");
        let asn =
            b.eval("document.querySelector('#exceptions tr[data-network=\"6167\"]')?.innerText");
        assert!(
            asn.as_str()
                .is_some_and(|t| t.contains("ASN 6167") && t.contains("cdn-a")),
            "{asn}"
        );
        // The token stays out of every URL the page used.
        let urls = b.eval(
            "JSON.stringify([location.href, ...performance.getEntriesByType('resource').map(e => e.name)])",
        );
        let urls = urls.as_str().unwrap();
        assert!(urls.contains("/api/v1/dashboard"), "{urls}");
        assert!(!urls.contains(READ_TOKEN), "token in a URL: {urls}");
        assert_eq!(
            b.eval("sessionStorage.getItem('steerdns-dashboard-token')"),
            json!(READ_TOKEN)
        );
    });

    // Probes from two locations: all CDNs answer, then cdn-d fails from both.
    let mut results = Vec::new();
    for (agent, offsets) in [
        ("fra", [18.0, 31.0, 12.0, 44.0]),
        ("iad", [35.0, 9.0, 27.0, 61.0]),
    ] {
        for (i, target) in ["cdn-a", "cdn-b", "cdn-c", "cdn-d"].iter().enumerate() {
            for k in 0..5u64 {
                results.push(probe(
                    target,
                    agent,
                    9_000 - k * 1000,
                    true,
                    offsets[i] + k as f64,
                ));
            }
        }
    }
    post_probes(&admin, &results).await;
    let failures: Vec<Value> = ["fra", "iad"]
        .iter()
        .flat_map(|a| {
            [
                probe("cdn-d", a, 2_000, false, 0.0),
                probe("cdn-d", a, 1_000, false, 0.0),
            ]
        })
        .collect();
    post_probes(&admin, &failures).await;
    page(b, &|b| {
        b.wait_for(
            "cdn-d measured down from both locations",
            "(() => { const r = document.querySelector('#health tr[data-target=\"cdn-d\"]'); \
              return !!r && r.dataset.state === 'down' \
                && r.querySelector('[data-agent=\"fra\"]')?.classList.contains('down') \
                && r.querySelector('[data-agent=\"iad\"]')?.classList.contains('down'); })()",
            HEALTH,
            SHOWS_WITHIN,
        );
        b.wait_for(
            "the flip in the timeline",
            &timeline_has("health", &["cdn-d", "→ down"]),
            TIMELINE,
            SHOWS_WITHIN,
        );
        b.wait_for(
            "GB failing over to its rule's second target",
            &format!("{} === 'cdn-c'", map_target("GB")),
            MAP_STATE,
            SHOWS_WITHIN,
        );
        b.wait_for(
            "the failover in the timeline",
            &timeline_has("steering", &["www.example.com", "cdn-d → cdn-c for GB"]),
            TIMELINE,
            SHOWS_WITHIN,
        );
    });

    // An operator override.
    admin.set_health("cdn-c", Some("down")).await;
    page(b, &|b| {
        b.wait_for(
            "the override in the health table",
            "(() => { const r = document.querySelector('#health tr[data-target=\"cdn-c\"]'); \
              return !!r && r.dataset.state === 'down' && r.innerText.includes('operator override'); })()",
            HEALTH,
            SHOWS_WITHIN,
        );
        b.wait_for(
            "Europe moving to cdn-a",
            &format!(
                "{} === 'cdn-a' && {} === 'cdn-a'",
                map_target("SE"),
                map_target("GB")
            ),
            MAP_STATE,
            SHOWS_WITHIN,
        );
        b.wait_for(
            "the override and its failover in the timeline",
            &format!(
                "{} && {}",
                timeline_has("health", &["cdn-c", "operator override: down"]),
                timeline_has(
                    "steering",
                    &["cdn-c → cdn-a", "cdn-c: operator override: down"]
                )
            ),
            TIMELINE,
            SHOWS_WITHIN,
        );
    });

    // A policy edit: Brazil gets its own rule.
    let (text, etag) = admin.policy("www.example.com").await;
    let edited = text.replace(
        "  { match = { country = \"GB\" }, targets = [\"cdn-d\", \"cdn-c\"] },\n",
        "  { match = { country = \"GB\" }, targets = [\"cdn-d\", \"cdn-c\"] },\n  \
         { match = { country = \"BR\" }, targets = [\"cdn-b\"] },\n",
    );
    assert_ne!(edited, text);
    let r = admin
        .put_policy("www.example.com", "", Some(&etag), &edited)
        .await;
    assert_eq!(r.status, 200, "{r}");
    page(b, &|b| {
        b.wait_for(
            "the edit on the map",
            &format!("{} === 'cdn-b'", map_target("BR")),
            MAP_STATE,
            SHOWS_WITHIN,
        );
        b.wait_for(
            "the edit in the timeline",
            &timeline_has("policy", &["www.example.com", "replaced", "admin API"]),
            TIMELINE,
            SHOWS_WITHIN,
        );
        // Probe latency per target and region (the windows refresh every 10 s).
        b.wait_for(
            "probe latency in the heat map",
            "document.querySelectorAll('#heat td.cell[data-target]').length >= 8",
            "document.getElementById('heat').innerText",
            SHOWS_WITHIN,
        );
        let heat = b.eval("document.getElementById('heat').innerText");
        let heat = heat.as_str().unwrap();
        assert!(
            heat.contains("country DE") && heat.contains("world"),
            "{heat}"
        );

        let png = b.screenshot();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        assert!(png.len() > 20_000, "{} bytes: an empty page?", png.len());
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        std::fs::write(&path, &png).unwrap();
        eprintln!(
            "dashboard screenshot: {} ({} bytes)",
            path.display(),
            png.len()
        );
    });
    running.shutdown().await;
}
