//! Request rate limits on the HTTP listeners, per client network ([`HttpRateConfig`],
//! `[http.rate_limit]`): a token bucket per network ([`crate::limit`]) for every request, and
//! on the admin listener a stricter one for failed authentication, so that bearer tokens
//! cannot be guessed at speed.
//!
//! - Every request on the admin listener (all of `/api/v1`, probe results included) and every
//!   request on the public listener except `POST /rum/v1/beacons` (which has its own
//!   per-network limit, `[rum] beacons_per_network_per_minute`) takes a token from its
//!   network's bucket: `requests_per_second`, in bursts of `burst`.
//! - On the admin listener, each 401 (no token, or an unknown one) takes a token from the
//!   network's failure bucket: `auth_failures_per_minute`, in bursts of as many. While it is
//!   empty, every request from that network gets 429, right token or not, so a guess that
//!   happens to be right is not even looked at. A 403 (a known token outside its scope) is
//!   not a failed authentication: the client proved it holds a token.
//!
//! Over a limit: 429 with `Retry-After` (whole seconds, at least 1) and a JSON error,
//! counted in `steerdns_http_rate_limited_total{listener, reason}` ([`HttpStats`]).
//!
//! A client network is the client address's first `ipv4_prefix` / `ipv6_prefix` bits. The
//! client address is the socket peer, or on the public listener the nearest untrusted hop of
//! `X-Forwarded-For` when the peer is one of `[rum] trusted_proxies`. Networks in `exempt`
//! are never limited. Loopback is not exempt by default: a reverse proxy on the same host
//! would otherwise exempt everyone behind it, and the admin API listens on loopback. Each
//! table tracks at most `max_networks` networks (see [`crate::limit`] for what happens when
//! it is full).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde_json::json;
use tracing::debug;

use super::serve::HttpStats;
use crate::limit::{Buckets, Rate, Refused};

/// `[http.rate_limit]`, validated; the same for both listeners (each has its own tables).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRateConfig {
    /// Requests a second from one client network; 0 turns the request limit off.
    pub requests_per_second: u32,
    /// Requests one network may send at once before the rate applies.
    pub burst: u32,
    /// Failed authentications (401) a minute from one network on the admin listener, in
    /// bursts of as many; 0 turns the limit off.
    pub auth_failures_per_minute: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Networks never limited (default: none).
    pub exempt: Vec<IpNet>,
    /// Networks each table tracks at once.
    pub max_networks: usize,
}

impl Default for HttpRateConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            burst: 500,
            auth_failures_per_minute: 10,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: Vec::new(),
            max_networks: 100_000,
        }
    }
}

/// Which limit refused a request: the `reason` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Requests,
    AuthFailures,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::Requests, Reason::AuthFailures];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Requests => "requests",
            Reason::AuthFailures => "auth_failures",
        }
    }
}

/// One listener's limiter: give it to [`limit`] as the middleware's state.
pub struct Limiter {
    config: HttpRateConfig,
    requests: Option<Mutex<Buckets<IpNet>>>,
    failures: Option<Mutex<Buckets<IpNet>>>,
    trusted_proxies: Vec<IpNet>,
    stats: Arc<HttpStats>,
}

impl Limiter {
    /// The public listener's: requests only, `X-Forwarded-For` believed from
    /// `trusted_proxies`.
    pub fn public(
        config: &HttpRateConfig,
        trusted_proxies: Vec<IpNet>,
        stats: Arc<HttpStats>,
    ) -> Self {
        Self::new(config, false, trusted_proxies, stats)
    }

    /// The admin listener's: requests and failed authentications, from the socket peer.
    pub fn admin(config: &HttpRateConfig, stats: Arc<HttpStats>) -> Self {
        Self::new(config, true, Vec::new(), stats)
    }

    fn new(
        config: &HttpRateConfig,
        auth: bool,
        trusted_proxies: Vec<IpNet>,
        stats: Arc<HttpStats>,
    ) -> Self {
        let table = |rate| Mutex::new(Buckets::new(rate, config.max_networks));
        let requests = (config.requests_per_second > 0).then(|| {
            table(Rate {
                per_second: f64::from(config.requests_per_second),
                burst: f64::from(config.burst),
            })
        });
        let failures = (auth && config.auth_failures_per_minute > 0)
            .then(|| table(Rate::per_minute(config.auth_failures_per_minute)));
        Limiter {
            config: config.clone(),
            requests,
            failures,
            trusted_proxies,
            stats,
        }
    }

    /// The client network `ip` counts against, or `None` when it is exempt.
    fn network(&self, ip: IpAddr) -> Option<IpNet> {
        let ip = ip.to_canonical();
        if self.config.exempt.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        Some(crate::limit::client_network(
            ip,
            self.config.ipv4_prefix,
            self.config.ipv6_prefix,
        ))
    }

    fn refuse(&self, net: IpNet, reason: Reason, why: Refused) -> Response {
        let counter = match reason {
            Reason::Requests => &self.stats.limited_requests,
            Reason::AuthFailures => &self.stats.limited_auth,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let secs = why.retry_after().as_secs_f64().ceil().max(1.0) as u64;
        debug!(%net, reason = reason.label(), secs, "HTTP request rate limited");
        let what = match reason {
            Reason::Requests => "too many requests",
            Reason::AuthFailures => "too many failed authentications",
        };
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": format!("rate limited: {what} from {net}; retry after {secs} s"),
                "reason": reason.label(),
            })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }
}

fn lock(m: &Mutex<Buckets<IpNet>>) -> std::sync::MutexGuard<'_, Buckets<IpNet>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The middleware: refuse over a limit, else pass on (and count a 401 it answers).
pub async fn limit(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    // `serve` always sets the peer; without one (a router called directly) nothing is limited.
    let Some(&ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    let ip = super::rum::client_ip(peer.ip(), request.headers(), &limiter.trusted_proxies);
    let Some(net) = limiter.network(ip) else {
        return next.run(request).await;
    };
    let now = Instant::now();
    if let Some(requests) = &limiter.requests
        && let Err(why) = lock(requests).take(net, now)
    {
        return limiter.refuse(net, Reason::Requests, why);
    }
    if let Some(failures) = &limiter.failures
        && let Err(why) = lock(failures).check(net, now)
    {
        return limiter.refuse(net, Reason::AuthFailures, why);
    }
    let response = next.run(request).await;
    if let Some(failures) = &limiter.failures
        && response.status() == StatusCode::UNAUTHORIZED
    {
        // Over the limit or not, the next request's check decides.
        let _ = lock(failures).take(net, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(config: HttpRateConfig) -> Limiter {
        Limiter::admin(&config, Arc::default())
    }

    #[test]
    fn networks_are_the_configured_prefixes() {
        let l = limiter(HttpRateConfig::default());
        let net = |s: &str| l.network(s.parse().unwrap()).map(|n| n.to_string());
        assert_eq!(net("192.0.2.77").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(net("127.0.0.2"), net("127.0.0.1"), "one /24");
        assert_eq!(net("::ffff:192.0.2.1").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(
            net("2001:db8:1:2ff::1").as_deref(),
            Some("2001:db8:1:200::/56")
        );
        let l = limiter(HttpRateConfig {
            ipv4_prefix: 32,
            exempt: vec!["10.0.0.0/8".parse().unwrap()],
            ..HttpRateConfig::default()
        });
        let net = |s: &str| l.network(s.parse().unwrap()).map(|n| n.to_string());
        assert_eq!(net("127.0.0.2").as_deref(), Some("127.0.0.2/32"));
        assert_eq!(net("10.1.2.3"), None, "exempt");
    }

    #[test]
    fn the_public_listener_has_no_failure_table() {
        let config = HttpRateConfig::default();
        let public = Limiter::public(&config, Vec::new(), Arc::default());
        assert!(public.failures.is_none() && public.requests.is_some());
        let off = limiter(HttpRateConfig {
            requests_per_second: 0,
            auth_failures_per_minute: 0,
            ..config
        });
        assert!(off.requests.is_none() && off.failures.is_none());
    }
}
