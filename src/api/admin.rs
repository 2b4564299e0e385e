//! The admin API under `/api/v1`. Every request needs `Authorization: Bearer <token>` (the
//! dashboard's static page beside it does not: see [`super::dashboard`]), and
//! what it may do depends on the token: the admin token may do everything; the probe token
//! (`[admin] probe_token_file`) only `POST /api/v1/probe-results`, so that agents on remote
//! vantage points cannot edit policies; the read token (`[admin] read_token_file`) only
//! `GET`s, for dashboards and monitoring. An unknown token gets 401, a known token outside
//! its scope 403. Tokens are compared in constant time, every one of them on every request.
//! Bodies are bounded (64 KiB; probe results 2 MiB). Requests are rate limited per client
//! network, and failed authentications (401) more strictly (`super::limit`): 429 with
//! `Retry-After`. Policy bodies are the TOML of the policy file itself, so
//! what the API stores is exactly what a reviewer sees in git.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/policies` | list: name, ETag, file |
//! | `GET /api/v1/policies/{name}` | the TOML, with `ETag` |
//! | `PUT /api/v1/policies/{name}[?dry_run=true]` | create (`If-None-Match: *` optional) or replace (`If-Match` required); the response previews what changed |
//! | `DELETE /api/v1/policies/{name}` | delete (`If-Match` required) |
//! | `GET /api/v1/policies/{name}/history` | earlier versions, newest first |
//! | `POST /api/v1/policies/{name}/rollback?version=ID` | make a version current (`If-Match` required) |
//! | `GET /api/v1/explain?name=…&client=<ip or subnet>` | the answer and why |
//! | `GET /api/v1/health` | health of every reported target |
//! | `PUT /api/v1/health/{target}` `{"state":"up"\|"down"}`, `DELETE` | operator override (stored first: 503 if the store cannot take it) |
//! | `POST /api/v1/probe-results` | a JSON array of probe results from an agent |
//! | `GET /api/v1/dashboard[?since=SEQ]`, `GET /api/v1/dashboard/names/{name}` | what the dashboard shows ([`super::dashboard`]): names, health per location, recent events; per name the map, exceptions, region table and heat map |
//! | `GET /api/v1/measurements` | RUM windows (target → region → samples, p50/p75/p95, failure rate), and what the serving snapshot uses: probe windows, RUM windows, each region's RUM choice, regional hold-outs |

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hickory_proto::rr::{LowerName, Name};
use serde::Deserialize;
use serde_json::json;

use super::limit::Limiter;
use crate::control::{Controller, EditError, Precondition};
use crate::dns::answer::Asker;
use crate::health;
use crate::monitor::{Monitor, WireResult};
use crate::rum::collector::Collector;

const BODY_LIMIT: usize = 64 * 1024;
/// Probe result batches are larger than edits.
const INGEST_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Clone)]
struct Admin {
    controller: Arc<Controller>,
    monitor: Monitor,
    tokens: Arc<Tokens>,
    rum: Option<Arc<Collector>>,
}

/// The admin API's bearer tokens; they must differ (the app checks).
#[derive(Debug, Clone)]
pub struct Tokens {
    /// May do everything.
    pub admin: Arc<str>,
    /// May only post probe results.
    pub probe: Option<Arc<str>>,
    /// May only read.
    pub read: Option<Arc<str>>,
}

impl Tokens {
    /// Which token `given` is. Every token is compared in full, so the time taken does not
    /// say which one (or how much of one) matched.
    fn scope_of(&self, given: &str) -> Option<Scope> {
        let is = |t: Option<&Arc<str>>| {
            t.is_some_and(|t| constant_time_eq(given.as_bytes(), t.as_bytes()))
        };
        let (admin, probe, read) = (
            is(Some(&self.admin)),
            is(self.probe.as_ref()),
            is(self.read.as_ref()),
        );
        if admin {
            Some(Scope::Admin)
        } else if probe {
            Some(Scope::Probe)
        } else if read {
            Some(Scope::Read)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Admin,
    Probe,
    Read,
}

impl Scope {
    /// Why a request is outside this scope, if it is.
    fn refuses(self, method: &Method, path: &str) -> Option<&'static str> {
        match self {
            Scope::Admin => None,
            Scope::Probe if method == Method::POST && path == "/api/v1/probe-results" => None,
            Scope::Probe => Some("the probe token may only POST /api/v1/probe-results"),
            Scope::Read if method == Method::GET || method == Method::HEAD => None,
            Scope::Read => Some("the read token may only read (GET)"),
        }
    }
}

/// Probe results per ingest request, at most (agents batch far fewer).
const MAX_RESULTS: usize = 10_000;

/// `rum`: the RUM collector, when `[rum]` is set (for `/api/v1/measurements`). `limit`: the
/// request and failed-authentication limits, ahead of everything else.
pub fn router(
    controller: Arc<Controller>,
    monitor: Monitor,
    tokens: Tokens,
    rum: Option<Arc<Collector>>,
    limit: Arc<Limiter>,
) -> Router {
    let admin = Admin {
        controller,
        monitor,
        tokens: Arc::new(tokens),
        rum,
    };
    Router::new()
        .route("/api/v1/policies", get(list))
        .route(
            "/api/v1/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/api/v1/policies/{name}/history", get(history))
        .route("/api/v1/policies/{name}/rollback", post(rollback))
        .route("/api/v1/explain", get(explain))
        .route("/api/v1/health", get(health_list))
        .route("/api/v1/measurements", get(measurements))
        .route(
            "/api/v1/health/{target}",
            put(health_put).delete(health_delete),
        )
        .route(
            "/api/v1/probe-results",
            post(ingest).layer(DefaultBodyLimit::max(INGEST_LIMIT)),
        )
        .with_state(admin.clone())
        // Explicit, so it stays behind the token check once the dashboard's page is merged:
        // without a token, an unknown path is 401 like every other.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .merge(super::dashboard::api(
            admin.controller.clone(),
            admin.monitor.clone(),
        ))
        .layer(middleware::from_fn_with_state(admin, authorize))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // The dashboard's static page: no token (it holds no data; see `dashboard`).
        .merge(super::dashboard::pages())
        // Rate limits ahead of everything, the page included.
        .layer(middleware::from_fn_with_state(limit, super::limit::limit))
}

async fn authorize(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    let Some(scope) = admin.tokens.scope_of(given) else {
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    if let Some(why) = scope.refuses(request.method(), request.uri().path()) {
        return error(StatusCode::FORBIDDEN, why);
    }
    next.run(request).await
}

/// Compare without leaking how much of the token matched through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for EditError {
    fn into_response(self) -> Response {
        let status = match &self {
            EditError::NotFound(_) => StatusCode::NOT_FOUND,
            EditError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            EditError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            EditError::Invalid(_) => StatusCode::BAD_REQUEST,
            EditError::NotEditable(_) => StatusCode::CONFLICT,
            EditError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            EditError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = error(status, self.to_string());
        if let EditError::PreconditionFailed { current } = &self
            && let Ok(v) = HeaderValue::from_str(current)
        {
            response.headers_mut().insert(header::ETAG, v);
        }
        response
    }
}

/// Run a blocking control-plane call (file I/O, compiling) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })
}

/// A blocking control-plane result as JSON, or its error.
fn json_or_error<T: serde::Serialize>(result: Result<Result<T, EditError>, Response>) -> Response {
    match result {
        Err(response) => response,
        Ok(Err(e)) => e.into_response(),
        Ok(Ok(value)) => Json(value).into_response(),
    }
}

fn precondition(headers: &HeaderMap) -> Precondition {
    let value = |h| {
        headers
            .get(h)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
    };
    Precondition {
        if_match: value(header::IF_MATCH).map(str::to_owned),
        if_none_match: value(header::IF_NONE_MATCH) == Some("*"),
    }
}

async fn list(State(admin): State<Admin>) -> Response {
    Json(admin.controller.policies()).into_response()
}

async fn get_policy(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    match admin.controller.policy(&name) {
        Ok((text, etag)) => (
            [
                (header::CONTENT_TYPE, "application/toml".to_owned()),
                (header::ETAG, etag),
            ],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct PutQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn put_policy(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(query): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the body must be UTF-8 TOML");
    };
    let pre = precondition(&headers);
    let controller = admin.controller.clone();
    let result = blocking(move || controller.put_policy(&name, &text, &pre, query.dry_run)).await;
    match result {
        Err(response) => response,
        Ok(Err(e)) => e.into_response(),
        Ok(Ok(outcome)) => {
            let status = if query.dry_run {
                StatusCode::OK
            } else if outcome.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let etag = outcome.etag.clone().unwrap_or_default();
            let mut response = (status, Json(outcome)).into_response();
            if !query.dry_run
                && let Ok(v) = HeaderValue::from_str(&etag)
            {
                response.headers_mut().insert(header::ETAG, v);
            }
            response
        }
    }
}

async fn delete_policy(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let pre = precondition(&headers);
    let controller = admin.controller.clone();
    json_or_error(blocking(move || controller.delete_policy(&name, &pre)).await)
}

async fn history(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    let controller = admin.controller.clone();
    json_or_error(blocking(move || controller.history(&name)).await)
}

#[derive(Deserialize)]
struct RollbackQuery {
    version: u64,
}

async fn rollback(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(query): Query<RollbackQuery>,
    headers: HeaderMap,
) -> Response {
    let pre = precondition(&headers);
    let controller = admin.controller.clone();
    json_or_error(blocking(move || controller.rollback(&name, query.version, &pre)).await)
}

#[derive(Deserialize)]
struct ExplainQuery {
    name: String,
    client: String,
}

async fn explain(State(admin): State<Admin>, Query(query): Query<ExplainQuery>) -> Response {
    let asker = match parse_client(&query.client) {
        Ok(asker) => asker,
        Err(reason) => return error(StatusCode::BAD_REQUEST, format!("client: {reason}")),
    };
    let Ok(mut name) = Name::from_ascii(&query.name) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("name: {:?} is not a DNS name", query.name),
        );
    };
    name.set_fqdn(true);
    let snapshot = admin.controller.published().load_full();
    match snapshot.steered.get(&LowerName::new(&name)) {
        None => error(
            StatusCode::NOT_FOUND,
            format!("{name} is not a steered name"),
        ),
        Some(steered) => Json(crate::explain::explain(&snapshot, steered, &asker)).into_response(),
    }
}

/// `192.0.2.1` (a resolver without ECS) or `192.0.2.0/24` (an ECS subnet). The resolver map
/// is applied by `explain`, against the snapshot it explains.
pub fn parse_client(text: &str) -> Result<Asker, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Asker {
            resolver: ip,
            subnet: None,
            mapped: None,
        });
    }
    // Host bits set are refused, as ECS with them is FORMERR on the wire.
    let net = crate::geo::iso::parse_network(text)
        .map_err(|r| format!("{r} (or give a single address)"))?;
    Ok(Asker {
        resolver: net.network(),
        subnet: Some((net.network(), net.prefix_len())),
        mapped: None,
    })
}

/// The RUM windows now: `{"window_minutes": 5, "rum": {target: {region: Summary}}}`, regions
/// spelled as in explain (`network DE/AS3320`, `country DE`, `continent EU`, `world`);
/// `rum` is `null` without `[rum]`.
/// Two views: `rum`, the collector's live windows (what the next recompile will read), and
/// `serving`, what the serving snapshot was compiled with: probe windows, the RUM windows,
/// each (policy, region) ranking's current choice (the incumbent a challenger must beat),
/// and the targets held out of a region.
async fn measurements(State(admin): State<Admin>) -> Response {
    use std::collections::BTreeMap;
    let snapshot = admin.controller.published().load();
    let now = std::time::SystemTime::now();
    let perf = &snapshot.perf;
    let mut probes: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for ((target, region), s) in perf.probes() {
        probes.entry(target.clone()).or_default().insert(
            region.to_string(),
            json!({ "samples": s.samples, "mean_ms": s.mean_ms, "availability": s.availability }),
        );
    }
    let rum = perf.rum();
    let mut windows: BTreeMap<String, BTreeMap<String, _>> = BTreeMap::new();
    for ((target, region), bucket) in &rum.buckets {
        windows
            .entry(target.clone())
            .or_default()
            .insert(region.to_string(), bucket.summary());
    }
    let mut choices: Vec<_> = rum
        .incumbents
        .iter()
        .map(|((policy, region), target)| {
            json!({ "policy": policy, "region": region.to_string(), "target": target })
        })
        .collect();
    choices.sort_by_key(|c| c.to_string());
    let mut held_out: Vec<_> = rum
        .held_out
        .iter()
        .filter(|((t, r), _)| rum.is_held_out(t, r, now))
        .map(|((target, region), until)| {
            json!({
                "target": target,
                "region": region.to_string(),
                "state": if until.is_some() { "recovered, in hold-down" } else { "failing" },
                "until": until.map(crate::policy::eval::utc),
            })
        })
        .collect();
    held_out.sort_by_key(|c| c.to_string());
    let serving = json!({
        "generation": snapshot.generation,
        "probes": probes,
        "rum": windows,
        "rum_choices": choices,
        "rum_held_out": held_out,
    });
    let Some(collector) = &admin.rum else {
        return Json(json!({ "window_minutes": null, "rum": null, "serving": serving }))
            .into_response();
    };
    let view = collector.view(now);
    let mut by_target: BTreeMap<String, BTreeMap<String, _>> = BTreeMap::new();
    for ((target, region), bucket) in &view {
        by_target
            .entry(target.clone())
            .or_default()
            .insert(region.to_string(), bucket.summary());
    }
    Json(json!({
        "window_minutes": collector.window_minutes(),
        "rum": by_target,
        "serving": serving,
    }))
    .into_response()
}

async fn health_list(State(admin): State<Admin>) -> Response {
    let view = admin.controller.health();
    let details = admin.monitor.details();
    let entries: Vec<_> = view
        .iter()
        .map(|(target, h)| {
            let locations: Vec<_> = details
                .iter()
                .filter(|(t, _, _, _)| t == target)
                .map(|(_, agent, state, reason)| json!({ "agent": agent, "state": state, "reason": reason }))
                .collect();
            json!({
                "target": target,
                "state": h.state,
                "forced": h.forced,
                "since_unix_ms": h.since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "locations": locations,
            })
        })
        .collect();
    Json(entries).into_response()
}

async fn ingest(State(admin): State<Admin>, body: Bytes) -> Response {
    let results: Vec<WireResult> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body: {e} (expected a JSON array of probe results)"),
            );
        }
    };
    if results.len() > MAX_RESULTS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_RESULTS} results per request"),
        );
    }
    if let Some(bad) = results.iter().find(|r| {
        r.target.is_empty()
            || r.agent.is_empty()
            || r.target.len() > 255
            || r.agent.len() > 64
            || !r.latency_ms.is_finite()
    }) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "result for {:?} from {:?}: target 1-255 chars, agent 1-64 chars, finite latency_ms",
                bad.target, bad.agent
            ),
        );
    }
    let tx = admin.monitor.sender();
    let mut accepted = 0usize;
    for r in &results {
        if tx.try_send(r.observation()).is_err() {
            // Full: tell the agent to keep the rest and retry.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "monitor queue full, retry", "accepted": accepted })),
            )
                .into_response();
        }
        accepted += 1;
    }
    Json(json!({ "accepted": accepted })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthBody {
    state: health::State,
}

async fn health_put(
    State(admin): State<Admin>,
    Path(target): Path<String>,
    body: Bytes,
) -> Response {
    let body: HealthBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body: {e} (expected {{\"state\": \"up\"|\"down\"|\"unknown\"}})"),
            );
        }
    };
    let controller = admin.controller.clone();
    json_or_error(
        blocking(move || {
            controller
                .set_health(&target, Some(body.state))
                .map(|generation| json!({ "generation": generation }))
        })
        .await,
    )
}

async fn health_delete(State(admin): State<Admin>, Path(target): Path<String>) -> Response {
    let controller = admin.controller.clone();
    json_or_error(
        blocking(move || {
            controller
                .set_health(&target, None)
                .map(|generation| json!({ "generation": generation }))
        })
        .await,
    )
}
