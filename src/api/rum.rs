//! The RUM endpoints on the public listener (present only with `[rum]`):
//!
//! | method and path | what |
//! |---|---|
//! | `GET /rum/v1/beacon.js` | the beacon script (`Cache-Control: public, max-age=300`, strong `ETag`, 304) |
//! | `GET /rum/v1/config` | what to measure, a fresh nonce, a token bound to the client's /24 or /48, the init URL |
//! | `GET /rum/v1/init` | the resolver-mapping fetch at `<nonce>.<zone>`: an empty 204 |
//! | `POST /rum/v1/beacons` | a beacon (`text/plain` JSON, ≤ 16 KiB): 204, or 4xx with the reason |
//!
//! The beacon has its own per-network limit; the other routes are under the public
//! listener's request limit (`super::limit`). Every beacon is checked in this order: the per-network rate limit, the body size, the
//! content type, strict JSON and ranges, the token (signature, network, expiry), then
//! single use. Only then is the client located (GeoIP of the published snapshot) and the
//! beacon handed to the [`Collector`]; a refused beacon changes nothing but its counter.
//! The client address comes from the socket, or from `X-Forwarded-For` when the peer is a
//! configured trusted proxy; it is truncated to /24 or /48 at once and never stored.
//! Responses carry `Access-Control-Allow-Origin: *` (the beacon runs in other sites' pages;
//! no credentials are involved). Depends on `rum`, `config`, `snapshot`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ipnet::IpNet;
use serde_json::json;
use sha2::Digest;

use crate::config::RumConfig;
use crate::limit::{Buckets, Rate};
use crate::rum::beacon::{self, Reject};
use crate::rum::collector::{Accepted, Collector, unix_secs};
use crate::rum::token::{ClientNet, Nonce, Replay, ReplayGuard, Signer, hex};
use crate::snapshot::Published;

/// The beacon, served as is (no build step).
pub const BEACON_JS: &str = include_str!("../../rum-beacon/beacon.js");

/// Client networks the rate limiter tracks at once.
const RATE_TABLE: usize = 100_000;
/// Unexpired used nonces remembered at once (above beacons accepted in one token lifetime
/// at any realistic rate; beyond it beacons are refused as `busy`, never replayable).
const REPLAY_TABLE: usize = 1_000_000;

/// `"<first 16 bytes of SHA-256 in hex>"`: changes whenever the file does.
static BEACON_ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = sha2::Sha256::digest(BEACON_JS.as_bytes());
    format!("\"{}\"", hex(&digest[..16]))
});

/// The gzipped representation and its own strong ETag (RFC 9110 §8.8.3: a different
/// representation must not share one).
static BEACON_GZ: LazyLock<(Vec<u8>, String)> = LazyLock::new(|| {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(BEACON_JS.as_bytes());
    let bytes = gz.finish().unwrap_or_default();
    let etag = format!("{}-gzip\"", BEACON_ETAG.trim_end_matches('"'));
    (bytes, etag)
});

/// Whether the client takes gzip (`Accept-Encoding`, a q of 0 refuses it).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Everything the RUM endpoints share.
pub struct Rum {
    config: RumConfig,
    targets: HashSet<String>,
    signer: Signer,
    replay: Mutex<ReplayGuard>,
    limit: Mutex<Buckets<ClientNet>>,
    published: Arc<Published>,
    pub collector: Arc<Collector>,
}

impl Rum {
    /// `secret`: the HMAC key (≥ 32 bytes); `seed`: random bytes for this run's nonces.
    pub fn new(
        config: RumConfig,
        secret: &[u8],
        seed: [u8; 16],
        published: Arc<Published>,
        collector: Arc<Collector>,
    ) -> Result<Self, String> {
        let signer = Signer::new(secret, seed)?;
        Ok(Rum {
            targets: config.targets.iter().map(|t| t.id.clone()).collect(),
            limit: Mutex::new(Buckets::new(
                Rate::per_minute(config.beacons_per_network_per_minute),
                RATE_TABLE,
            )),
            replay: Mutex::new(ReplayGuard::new(REPLAY_TABLE)),
            signer,
            config,
            published,
            collector,
        })
    }

    /// The client's address: the socket peer, or the nearest untrusted hop of
    /// `X-Forwarded-For` when the peer is a trusted proxy.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer.ip(), headers, &self.config.trusted_proxies)
    }

    /// Run every check on one beacon and record it.
    fn ingest(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<(), Reject> {
        let ip = self.client_ip(peer, headers);
        let net = ClientNet::of(ip);
        let allowed = self
            .limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(net, Instant::now())
            .is_ok();
        if !allowed {
            return Err(Reject::RateLimited);
        }
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Reject::TooLarge
            } else {
                Reject::BadJson
            }
        })?;
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if !matches!(media.as_deref(), Some("text/plain" | "application/json")) {
            return Err(Reject::ContentType);
        }
        let beacon = beacon::parse(&body, &self.targets)?;
        let now = SystemTime::now();
        let now_secs = unix_secs(now);
        let expiry = self
            .signer
            .verify(&beacon.token, &beacon.nonce, &net, now_secs)?;
        let replay = self
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .use_once(beacon.nonce, expiry, now_secs);
        match replay {
            Replay::Fresh => {}
            Replay::Replayed => return Err(Reject::Replayed),
            Replay::Full => return Err(Reject::Busy),
        }
        let (country, continent, asn) = {
            let snapshot = self.published.load();
            let located = snapshot.geo.locate(ip);
            let location = located.loc.map(|id| snapshot.geo.location(id));
            (
                location.and_then(|l| l.country),
                location.and_then(|l| l.continent),
                located.asn,
            )
        };
        self.collector.accept(Accepted {
            nonce: beacon.nonce,
            net,
            country,
            continent,
            asn,
            at: now,
            results: beacon.results,
        });
        Ok(())
    }

    /// The `/rum/v1/config` document for a client network.
    fn client_config(&self, net: &ClientNet, host: Option<&str>) -> serde_json::Value {
        let nonce = self.signer.nonce();
        let expiry = unix_secs(SystemTime::now()) + self.config.token_ttl.as_secs();
        let token = self.signer.issue(&nonce, net, expiry);
        let port = self
            .config
            .init_port
            .or_else(|| host.and_then(host_port))
            .map_or(String::new(), |p| format!(":{p}"));
        let init = format!(
            "{}://{nonce}.{}{port}/rum/v1/init",
            self.config.init_scheme, self.config.zone
        );
        let targets: Vec<serde_json::Value> = self
            .config
            .targets
            .iter()
            .map(|t| json!({ "id": t.id, "small": t.small, "large": t.large }))
            .collect();
        json!({
            "v": 1,
            "sample_rate": self.config.sample_rate,
            "timeout_ms": self.config.timeout_ms,
            "nonce": nonce.to_string(),
            "token": token,
            "init": init,
            "beacons": "/rum/v1/beacons",
            "targets": targets,
        })
    }

    /// Whether `host` (a Host header) is `<nonce>.<zone>`.
    fn is_init_host(&self, host: &str) -> bool {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        name.strip_suffix(&self.config.zone)
            .and_then(|rest| rest.strip_suffix('.'))
            .and_then(Nonce::parse)
            .is_some()
    }
}

/// The RUM routes but the beacon, to merge into the public router under its request limit.
pub fn routes(rum: Arc<Rum>) -> Router {
    Router::new()
        .route("/rum/v1/beacon.js", get(beacon_js))
        .route("/rum/v1/config", get(config))
        .route("/rum/v1/init", get(init))
        .with_state(rum)
}

/// `POST /rum/v1/beacons`, to merge into the public router beside its request limit: a
/// beacon's own per-network limit comes first among its checks.
pub fn beacon_route(rum: Arc<Rum>) -> Router {
    Router::new()
        .route(
            "/rum/v1/beacons",
            post(post_beacon).layer(DefaultBodyLimit::max(beacon::MAX_BODY)),
        )
        .with_state(rum)
}

impl Rum {
    /// `[rum] trusted_proxies`: whose `X-Forwarded-For` the public listener believes.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.config.trusted_proxies
    }
}

const ANY_ORIGIN: (header::HeaderName, HeaderValue) = (
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    HeaderValue::from_static("*"),
);

async fn beacon_js(headers: HeaderMap) -> Response {
    let gzip = accepts_gzip(&headers);
    let etag = if gzip {
        BEACON_GZ.1.as_str()
    } else {
        BEACON_ETAG.as_str()
    };
    let common = [
        (
            header::ETAG,
            // Hex in quotes: always a valid header value.
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ),
        ANY_ORIGIN,
        (header::VARY, HeaderValue::from_static("Accept-Encoding")),
    ];
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // If-None-Match compares weakly (RFC 9110 §13.1.2).
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag);
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let js = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    if gzip {
        let gz = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (common, [js, gz], BEACON_GZ.0.clone()).into_response()
    } else {
        (common, [js], BEACON_JS).into_response()
    }
}

async fn config(
    State(rum): State<Arc<Rum>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let net = ClientNet::of(rum.client_ip(peer, &headers));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ANY_ORIGIN,
        ],
        axum::Json(rum.client_config(&net, host)),
    )
        .into_response()
}

async fn init(State(rum): State<Arc<Rum>>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if rum.is_init_host(host) {
        rum.collector
            .counters
            .inits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    (
        StatusCode::NO_CONTENT,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::HeaderName::from_static("timing-allow-origin"),
                HeaderValue::from_static("*"),
            ),
            ANY_ORIGIN,
        ],
    )
        .into_response()
}

async fn post_beacon(
    State(rum): State<Arc<Rum>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match rum.ingest(peer, &headers, body) {
        Ok(()) => (StatusCode::NO_CONTENT, [ANY_ORIGIN]).into_response(),
        Err(reason) => {
            rum.collector.reject(reason);
            let status = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                [ANY_ORIGIN],
                axum::Json(json!({ "error": reason.to_string(), "reason": reason.label() })),
            )
                .into_response()
        }
    }
}

/// The client address behind `peer`: walk `X-Forwarded-For` from the right while the hop is
/// a trusted proxy; the first untrusted hop is the client. A malformed entry stops the walk
/// at the last trusted hop (never believe what cannot be parsed).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let unmap = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut hop = unmap(peer);
    if !is_trusted(&hop) {
        return hop;
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for value in values.iter().rev() {
        for part in value.rsplit(',') {
            let Ok(ip) = part.trim().parse::<IpAddr>() else {
                return hop;
            };
            hop = unmap(ip);
            if !is_trusted(&hop) {
                return hop;
            }
        }
    }
    hop
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The port of a Host header value, if it names one.
fn host_port(host: &str) -> Option<u16> {
    let after = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.1.strip_prefix(':')?,
        None => host.rsplit_once(':')?.1,
    };
    after.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.1, 10.1.1.1".parse().unwrap(),
        );
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
        h.insert("x-forwarded-for", "nonsense, 10.2.2.2".parse().unwrap());
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "10.2.2.2".parse::<IpAddr>().unwrap()
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(mapped, &h, &trusted), outsider);
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("127.0.0.1:8080"), Some(8080));
        assert_eq!(host_port("[::1]:81"), Some(81));
        assert_eq!(host_port("[::1]"), None);
        assert_eq!(host_port("example.com"), None);
        assert_eq!(strip_port("[::1]:81"), "::1");
        assert_eq!(strip_port("a.rum.test:81"), "a.rum.test");
    }
}
