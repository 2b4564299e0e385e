//! The operator dashboard, on the admin listener: a page that shows, per steered name, where
//! each country's clients go now and why, the ASN/CIDR exceptions, latency per target and
//! region, endpoint health per probe location, and a timeline of recent changes.
//!
//! Two halves with different access:
//!
//! - The page itself (`GET /dashboard/`, its script, style sheet and map outlines) is static
//!   and public on the admin listener: it is compiled into the binary, holds no data and no
//!   secret, and a browser cannot send a bearer token when it loads a page. It is served with
//!   a Content-Security-Policy that allows only its own script, style and requests
//!   (`'self'`), no framing and no referrer. `GET /` redirects to it.
//! - The data (`GET /api/v1/dashboard`, `GET /api/v1/dashboard/names/{name}`) is JSON behind
//!   the admin API's bearer tokens like every other `/api/v1` route; the read-only token is
//!   enough. The page asks for the token, keeps it in `sessionStorage` (this tab only, gone
//!   when it closes) and sends it as `Authorization: Bearer`; it never puts it in a URL, so
//!   it does not end up in access logs, history or a `Referer`. The page polls every few
//!   seconds.
//!
//! Everything shown is read from one published snapshot per request (plus the monitor's
//! per-location verdicts and the controller's event ring); nothing here is on the DNS path.
//! The map's outlines are Natural Earth's (public domain), in `dashboard/world.json`; the
//! countries on the map are also those the per-country decisions are computed for
//! ([`crate::regions`]).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use hickory_proto::rr::{LowerName, Name};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::control::Controller;
use crate::geo::Continent;
use crate::monitor::Monitor;
use crate::perf::Region;
use crate::policy::TargetAnswer;
use crate::regions::{self, CountryDecision, Decided, Exception};
use crate::snapshot::{Snapshot, Steered};

const INDEX: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/style.css");
const WORLD: &str = include_str!("../../dashboard/world.json");

/// Events sent per poll, at most (the ring keeps more; the page asks for what is new).
const EVENTS_PER_POLL: usize = 200;

/// What the page may load and talk to: itself only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The static page and its assets: no token (see the module doc).
pub fn pages() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/dashboard/world.json",
            get(|| async { asset("application/json", WORLD) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Revalidated on every load: an upgraded binary serves its own page at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Clone)]
struct Dash {
    controller: Arc<Controller>,
    monitor: Monitor,
}

/// The JSON the page polls. Mounted by [`crate::api::admin::router`] inside its bearer-token
/// check.
pub fn api(controller: Arc<Controller>, monitor: Monitor) -> Router {
    Router::new()
        .route("/api/v1/dashboard", get(overview))
        .route("/api/v1/dashboard/names/{name}", get(name_view))
        .with_state(Dash {
            controller,
            monitor,
        })
}

/// The countries drawn on the map, with their continents (for countries the GeoIP data has
/// no networks in). Parsed once from the compiled-in outlines.
pub fn map_countries() -> &'static [([u8; 2], Option<Continent>)] {
    static COUNTRIES: OnceLock<Vec<([u8; 2], Option<Continent>)>> = OnceLock::new();
    COUNTRIES.get_or_init(|| {
        #[derive(Deserialize)]
        struct World {
            countries: Vec<(String, String, String, String)>,
        }
        // Part of the build and checked by a test; an unreadable file yields an empty map.
        let world: World = serde_json::from_str(WORLD).unwrap_or(World {
            countries: Vec::new(),
        });
        world
            .countries
            .into_iter()
            .filter_map(|(cc, continent, _, _)| {
                let code: [u8; 2] = cc.as_bytes().try_into().ok()?;
                Some((code, Continent::from_code(&continent)))
            })
            .collect()
    })
}

#[derive(Deserialize)]
struct OverviewQuery {
    /// The last event sequence number the page has.
    #[serde(default)]
    since: u64,
}

/// Steered names, health of every target per probe location, and the events after `since`.
async fn overview(State(dash): State<Dash>, Query(query): Query<OverviewQuery>) -> Response {
    let snapshot = dash.controller.published().load_full();
    let mut names: Vec<Value> = snapshot
        .steered
        .values()
        .map(|s| {
            json!({
                "name": s.policy.name.to_string(),
                "targets": s.policy.targets.iter().map(|t| &t.id).collect::<Vec<_>>(),
                "chain": s.policy.chain.iter().map(|c| c.kind()).collect::<Vec<_>>(),
            })
        })
        .collect();
    names.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let events = dash.controller.events();
    no_store(Json(json!({
        "generation": snapshot.generation,
        "geoip": snapshot.geo.describe(),
        "names": names,
        "health": health(&dash),
        "events": events.since(query.since, EVENTS_PER_POLL),
        "last_seq": events.last_seq(),
    })))
}

/// Every target with a health state, with the verdict of each probe location.
fn health(dash: &Dash) -> Vec<Value> {
    let view = dash.controller.health();
    let details = dash.monitor.details();
    let mut targets: Vec<&str> = view.iter().map(|(t, _)| t).collect();
    for (t, ..) in &details {
        if !targets.contains(&t.as_str()) {
            targets.push(t);
        }
    }
    targets.sort_unstable();
    targets
        .into_iter()
        .map(|target| {
            let h = view.get(target);
            let mut locations: Vec<Value> = details
                .iter()
                .filter(|(t, ..)| t == target)
                .map(|(_, agent, state, reason)| {
                    json!({ "agent": agent, "state": state, "reason": reason })
                })
                .collect();
            locations.sort_by(|a, b| a["agent"].as_str().cmp(&b["agent"].as_str()));
            json!({
                "target": target,
                "state": h.map_or(crate::health::State::Unknown, |h| h.state),
                "forced": h.is_some_and(|h| h.forced),
                "since_unix_ms": h.and_then(|h| h.since.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64),
                "locations": locations,
            })
        })
        .collect()
}

/// One steered name: the map, the exceptions, the region table and the heat map.
async fn name_view(State(dash): State<Dash>, Path(name): Path<String>) -> Response {
    let Ok(mut parsed) = Name::from_ascii(&name) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a DNS name"),
        );
    };
    parsed.set_fqdn(true);
    let snapshot = dash.controller.published().load_full();
    match snapshot.steered.get(&LowerName::new(&parsed)) {
        None => error(
            StatusCode::NOT_FOUND,
            format!("{parsed} is not a steered name"),
        ),
        Some(steered) => no_store(Json(view(&snapshot, steered))),
    }
}

/// The per-name view, from one snapshot. Pure.
pub fn view(snapshot: &Snapshot, steered: &Steered) -> Value {
    let policy = &steered.policy;
    let countries = regions::countries(snapshot, steered, map_countries());
    let not_located = regions::not_located(snapshot, steered);
    let exceptions = regions::exceptions(snapshot, steered);
    let targets: Vec<Value> = policy
        .targets
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "answer": answer_text(&t.answer),
                "state": snapshot.health.state(&t.id),
                "max_share": t.max_share,
            })
        })
        .collect();
    json!({
        "name": policy.name.to_string(),
        "generation": snapshot.generation,
        "ttl_s": policy.ttl_s,
        "chain": policy.chain.iter().map(|c| c.kind()).collect::<Vec<_>>(),
        "targets": targets,
        "regions": region_table(&countries, &not_located, &exceptions),
        "countries": countries,
        "not_located": not_located,
        "exceptions": exceptions,
        "heat": heat(snapshot, steered),
    })
}

fn answer_text(answer: &TargetAnswer) -> String {
    match answer {
        TargetAnswer::Cname(c) => format!("CNAME {c}"),
        TargetAnswer::Addresses { a, aaaa } => a
            .iter()
            .map(|x| format!("A {x}"))
            .chain(aaaa.iter().map(|x| format!("AAAA {x}")))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// One row of the region table: a group of regions decided alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    /// `rules[1] continent=EU`, `default`, `not located`, `asn 6167`.
    pub region: String,
    /// The countries in the group (empty for exceptions and "not located").
    pub countries: Vec<String>,
    #[serde(flatten)]
    pub decided: Decided,
}

/// Countries grouped by what decides them (rule or default) and what they get, then the
/// exceptions, then clients not located.
pub fn region_table(
    countries: &[CountryDecision],
    not_located: &Decided,
    exceptions: &[Exception],
) -> Vec<RegionRow> {
    let mut groups: BTreeMap<(String, String, Vec<String>), RegionRow> = BTreeMap::new();
    for c in countries {
        let region = c
            .decided
            .rule
            .clone()
            .unwrap_or_else(|| c.decided.reason.replace('_', " "));
        let key = (
            region.clone(),
            c.decided.target.clone(),
            c.decided.down.clone(),
        );
        groups
            .entry(key)
            .or_insert_with(|| RegionRow {
                region,
                countries: Vec::new(),
                decided: c.decided.clone(),
            })
            .countries
            .push(c.country.clone());
    }
    let mut rows: Vec<RegionRow> = groups.into_values().collect();
    // The rules first, in file order (`rules[10]` after `rules[9]`), then the default.
    rows.sort_by_key(|r| {
        r.region
            .strip_prefix("rules[")
            .and_then(|rest| rest.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    rows.extend(exceptions.iter().map(|e| RegionRow {
        region: format!("{} {}", e.kind, e.network),
        countries: Vec::new(),
        decided: e.now.clone(),
    }));
    rows.push(RegionRow {
        region: "not located".into(),
        countries: Vec::new(),
        decided: not_located.clone(),
    });
    rows
}

/// Latency per (region, target) for this policy's targets: real-user p50 and probe mean, as
/// the serving snapshot was compiled with. Regions: world, continents, countries, networks.
fn heat(snapshot: &Snapshot, steered: &Steered) -> Value {
    let ids: Vec<&str> = steered
        .policy
        .targets
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    #[derive(Default, Serialize)]
    struct Cell {
        rum_p50_ms: Option<f64>,
        rum_p95_ms: Option<f64>,
        rum_samples: u64,
        rum_failure_rate: Option<f64>,
        probe_mean_ms: Option<f64>,
        probe_samples: u64,
        probe_availability: Option<f64>,
    }
    let mut rows: BTreeMap<Region, BTreeMap<&str, Cell>> = BTreeMap::new();
    for ((target, region), bucket) in &snapshot.perf.rum().buckets {
        let Some(t) = ids.iter().find(|id| **id == target) else {
            continue;
        };
        let s = bucket.summary();
        let cell = rows
            .entry(region.clone())
            .or_default()
            .entry(t)
            .or_default();
        cell.rum_p50_ms = s.p50_ms;
        cell.rum_p95_ms = s.p95_ms;
        cell.rum_samples = s.samples;
        cell.rum_failure_rate = (s.attempts > 0).then_some(s.failure_rate);
    }
    for ((target, region), stats) in snapshot.perf.probes() {
        let Some(t) = ids.iter().find(|id| **id == target) else {
            continue;
        };
        let cell = rows
            .entry(region.clone())
            .or_default()
            .entry(t)
            .or_default();
        cell.probe_mean_ms = (stats.samples > 0).then_some(stats.mean_ms);
        cell.probe_samples = stats.samples;
        cell.probe_availability = Some(stats.availability);
    }
    // World first, networks last: the reverse of `Region`'s order.
    let rows: Vec<Value> = rows
        .into_iter()
        .rev()
        .map(|(region, cells)| json!({ "region": region.to_string(), "cells": cells }))
        .collect();
    json!({ "targets": ids, "rows": rows })
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_has_the_world_s_countries_with_continents() {
        let countries = map_countries();
        assert!(countries.len() > 150, "{}", countries.len());
        let find = |cc: &[u8; 2]| countries.iter().find(|(c, _)| c == cc).map(|(_, k)| *k);
        assert_eq!(find(b"DE"), Some(Some(Continent::Europe)));
        assert_eq!(find(b"BR"), Some(Some(Continent::SouthAmerica)));
        assert_eq!(find(b"AU"), Some(Some(Continent::Oceania)));
        assert_eq!(
            find(b"XK"),
            Some(Some(Continent::Europe)),
            "Kosovo as MaxMind codes it"
        );
        assert!(countries.iter().all(|(_, k)| k.is_some()));
        // Small enough to send on every page load.
        assert!(WORLD.len() < 150_000, "{} bytes", WORLD.len());
    }

    /// No ring crosses the map: a step of more than half the width is an antimeridian
    /// crossing left unwrapped (a line drawn across the whole map).
    #[test]
    fn no_outline_jumps_across_the_map() {
        let world: Value = serde_json::from_str(WORLD).expect("JSON");
        let width = world["width"].as_i64().expect("width");
        for c in world["countries"].as_array().expect("countries") {
            let d = c[3].as_str().expect("a path");
            for ring in d.split('M').filter(|r| !r.is_empty()) {
                let steps = ring.split_once('l').map_or("", |(_, l)| l);
                let numbers: Vec<i64> = steps
                    .trim_end_matches('z')
                    .replace('-', " -")
                    .split_whitespace()
                    .map(|n| n.parse().expect("a number"))
                    .collect();
                assert_eq!(numbers.len() % 2, 0, "{}", c[2]);
                for dx in numbers.iter().step_by(2) {
                    assert!(dx.abs() < width / 2, "{}: a step of {dx}", c[2]);
                }
            }
        }
    }

    /// RUM p50 and probe means side by side, this policy's targets only, world first.
    #[test]
    fn the_heat_map_has_rum_and_probe_latency_per_region() {
        use crate::perf::{PerfView, RumView, Stats};
        use crate::rum::window::Bucket;
        let controller = crate::control::Controller::start(
            crate::demo::config(),
            crate::control::ConfigOrigin::Demo,
        )
        .expect("the demo");
        let bucket = |ms: f64| {
            let mut b = Bucket::default();
            for _ in 0..50 {
                b.record(Some(ms));
            }
            b.record(None);
            b
        };
        let de = Region::Country(*b"DE");
        let rum = RumView {
            buckets: [
                (("cdn-a".to_owned(), Region::World), bucket(40.0)),
                (("cdn-b".to_owned(), de.clone()), bucket(25.0)),
                (("pop-iad".to_owned(), Region::World), bucket(5.0)),
            ]
            .into_iter()
            .collect(),
            max_failure_rate: 0.5,
            ..RumView::default()
        };
        controller.set_rum(rum, 1_000);
        let mut probes = PerfView::default();
        let stats = Stats {
            samples: 12,
            mean_ms: 33.0,
            variance: 1.0,
            availability: 0.9,
        };
        probes.insert("cdn-a", de.clone(), stats);
        controller.set_perf(probes);
        let snapshot = controller.published().load_full();
        let name = LowerName::new(&Name::from_ascii("rum.example.com.").expect("a name"));
        let heat = view(&snapshot, snapshot.steered.get(&name).expect("rum"))["heat"].clone();
        assert_eq!(heat["targets"], json!(["cdn-a", "cdn-b"]), "{heat}");
        let rows = heat["rows"].as_array().expect("rows");
        let regions: Vec<&str> = rows.iter().filter_map(|r| r["region"].as_str()).collect();
        assert_eq!(
            regions,
            ["world", "country DE"],
            "pop-iad is not this policy's"
        );
        let world_a = &rows[0]["cells"]["cdn-a"];
        let p50 = world_a["rum_p50_ms"].as_f64().expect("a p50");
        assert!((p50 - 40.0).abs() < 4.0, "{world_a}");
        assert_eq!(world_a["rum_samples"], 50);
        let failure = world_a["rum_failure_rate"].as_f64().expect("a rate");
        assert!((failure - 1.0 / 51.0).abs() < 1e-9, "{world_a}");
        let de_a = &rows[1]["cells"]["cdn-a"];
        assert_eq!(
            (&de_a["probe_mean_ms"], &de_a["probe_samples"]),
            (&json!(33.0), &json!(12))
        );
        assert_eq!(de_a["rum_p50_ms"], Value::Null);
        assert!(rows[1]["cells"]["cdn-b"]["rum_p50_ms"].as_f64().is_some());
    }

    #[test]
    fn the_region_table_groups_countries_by_rule_and_target() {
        let controller = crate::control::Controller::start(
            crate::demo::config(),
            crate::control::ConfigOrigin::Demo,
        )
        .expect("the demo");
        let snapshot = controller.published().load_full();
        let name = LowerName::new(&Name::from_ascii("www.example.com.").expect("a name"));
        let www = snapshot.steered.get(&name).expect("www");
        let v = view(&snapshot, www);
        let rows = v["regions"].as_array().expect("rows");
        let row = |region: &str| {
            rows.iter()
                .find(|r| r["region"] == region)
                .unwrap_or_else(|| panic!("no {region} in {rows:?}"))
        };
        let eu = row("rules[1] continent=EU");
        assert_eq!(eu["target"], "cdn-c");
        let eu_countries = eu["countries"].as_array().expect("countries");
        assert!(eu_countries.iter().any(|c| c == "SE"));
        assert!(
            eu_countries.iter().all(|c| c != "GB"),
            "GB has its own rule"
        );
        assert_eq!(row("rules[2] country=GB")["target"], "cdn-d");
        assert_eq!(row("rules[0] continent=NA")["target"], "cdn-b");
        assert_eq!(row("default")["target"], "cdn-a");
        assert_eq!(row("asn 6167")["reason"], "asn");
        assert_eq!(rows.last().expect("a row")["region"], "not located");
        // Rules in file order, then the default.
        let order: Vec<&str> = rows.iter().filter_map(|r| r["region"].as_str()).collect();
        assert!(order[0].starts_with("rules[0]"), "{order:?}");
        // The map colours countries the GeoIP data lacks, and marks them.
        let countries = v["countries"].as_array().expect("countries");
        let br = countries
            .iter()
            .find(|c| c["country"] == "BR")
            .expect("BR on the map");
        assert_eq!(br["in_geoip"], false);
        assert_eq!(br["target"], "cdn-a");
        assert_eq!(v["targets"][0]["answer"], "CNAME cdn-a.example.net.");
    }
}
