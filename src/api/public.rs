//! Public, unauthenticated endpoints: `/healthz` (the process is up), `/readyz` (a snapshot is
//! serving, and whether it is stale), `/metrics` (Prometheus text), and with `[rum]` the RUM
//! routes of [`super::rum`]. Reads the published snapshot and the RUM counters only. Every
//! route but the beacon is under the request limit of [`super::limit`].

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;

use super::limit::{Limiter, Reason};
use super::rum::Rum;
use super::serve::HttpCounters;
use crate::dns::listen::DnsCounters;
use crate::health;
use crate::rum::beacon::Reject;
use crate::rum::collector::Collector;
use crate::snapshot::Published;
use crate::store::redis::StoreStatus;

/// What the public endpoints read.
#[derive(Clone)]
struct Shared {
    published: Arc<Published>,
    dns: DnsCounters,
    http: HttpCounters,
    rum: Option<Arc<Collector>>,
    store: Option<Arc<StoreStatus>>,
}

/// The public router; `rum`: the RUM endpoints and their collector, when `[rum]` is set.
/// `store`: the fleet store's status, in fleet mode. `limit`: the request limit, on every
/// route but the beacon (which has its own).
pub fn router(
    published: Arc<Published>,
    dns: DnsCounters,
    http: HttpCounters,
    rum: Option<Arc<Rum>>,
    store: Option<Arc<StoreStatus>>,
    limit: Arc<Limiter>,
) -> Router {
    let collector = rum.as_ref().map(|r| r.collector.clone());
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Shared {
            published,
            dns,
            http,
            rum: collector,
            store,
        });
    let Some(rum) = rum else {
        return router.layer(middleware::from_fn_with_state(limit, super::limit::limit));
    };
    router
        .merge(super::rum::routes(rum.clone()))
        .layer(middleware::from_fn_with_state(limit, super::limit::limit))
        .merge(super::rum::beacon_route(rum))
}

async fn readyz(
    State(Shared {
        published, store, ..
    }): State<Shared>,
) -> (StatusCode, String) {
    let snapshot = published.load();
    let mut stale = String::new();
    if published.is_store_stale() {
        stale.push_str(" (stale: the policy store cannot be listed, see the log)");
    } else if published.is_stale() {
        stale.push_str(" (stale: the last reload failed, see the log)");
    }
    if let Some(store) = store.as_ref().filter(|s| !s.is_up()) {
        stale.push_str(&format!(
            " (stale: the shared store is unreachable, serving the last table: {})",
            store.last_error()
        ));
    }
    (
        StatusCode::OK,
        format!(
            "ready: generation {}{stale}; geoip {}\n",
            snapshot.generation,
            snapshot.geo.describe()
        ),
    )
}

async fn metrics(
    State(Shared {
        published,
        dns,
        http,
        rum,
        store,
    }): State<Shared>,
) -> String {
    let snapshot = published.load();
    let mut out = String::new();
    let (recompiles, recompile_s) = published.recompile_totals();
    let _ = writeln!(
        out,
        "# HELP steerdns_snapshot_age_seconds Time since the serving snapshot was published.\n\
         # TYPE steerdns_snapshot_age_seconds gauge\n\
         steerdns_snapshot_age_seconds {:.3}\n\
         # HELP steerdns_recompiles_total Recompiles of decision tables driven by health, measurements and timed changes (edits and reloads not counted).\n\
         # TYPE steerdns_recompiles_total counter\n\
         steerdns_recompiles_total {recompiles}\n\
         # HELP steerdns_recompile_seconds_total Time those recompiles took, compile and publish.\n\
         # TYPE steerdns_recompile_seconds_total counter\n\
         steerdns_recompile_seconds_total {recompile_s:.6}",
        published.age().as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "# HELP steerdns_snapshot_generation Generation of the serving snapshot.\n\
         # TYPE steerdns_snapshot_generation gauge\n\
         steerdns_snapshot_generation {}\n\
         # HELP steerdns_snapshot_stale 1 when the last reload failed and an older snapshot serves.\n\
         # TYPE steerdns_snapshot_stale gauge\n\
         steerdns_snapshot_stale {}\n\
         # HELP steerdns_zones Zones served.\n\
         # TYPE steerdns_zones gauge\n\
         steerdns_zones {}\n\
         # HELP steerdns_steered_names Steered names served.\n\
         # TYPE steerdns_steered_names gauge\n\
         steerdns_steered_names {}\n\
         # HELP steerdns_geoip_locations Distinct location records in the GeoIP City database.\n\
         # TYPE steerdns_geoip_locations gauge\n\
         steerdns_geoip_locations {}\n\
         # HELP steerdns_geoip_location_classes Distinct (continent, country, subdivision) classes: the rows of each decision table.\n\
         # TYPE steerdns_geoip_location_classes gauge\n\
         steerdns_geoip_location_classes {}",
        snapshot.generation,
        u8::from(published.is_stale()),
        snapshot.zones.iter().count(),
        snapshot.steered.len(),
        snapshot.geo.records(),
        snapshot.geo.classes().len(),
    );
    if let Some(store) = &store {
        let up = store.is_up();
        let _ = writeln!(
            out,
            "# HELP steerdns_store_up 1 when the fleet's shared store (Redis) answered the last call.\n\
             # TYPE steerdns_store_up gauge\n\
             steerdns_store_up {}\n\
             # HELP steerdns_store_stale 1 while the shared store is unreachable and the last table serves.\n\
             # TYPE steerdns_store_stale gauge\n\
             steerdns_store_stale {}\n\
             # HELP steerdns_store_failures_total Shared store calls that failed or timed out.\n\
             # TYPE steerdns_store_failures_total counter\n\
             steerdns_store_failures_total {}\n\
             # HELP steerdns_store_buffered_writes Probe results waiting for the shared store.\n\
             # TYPE steerdns_store_buffered_writes gauge\n\
             steerdns_store_buffered_writes {}\n\
             # HELP steerdns_store_dropped_writes_total Probe results dropped because the buffer for the shared store was full.\n\
             # TYPE steerdns_store_dropped_writes_total counter\n\
             steerdns_store_dropped_writes_total {}",
            u8::from(up),
            u8::from(!up),
            store.failures.load(Ordering::Relaxed),
            store.buffered_writes.load(Ordering::Relaxed),
            store.dropped_writes.load(Ordering::Relaxed),
        );
    }
    let _ = writeln!(
        out,
        "# HELP steerdns_udp_replies_total UDP replies sent, by path: fast (pre-rendered) or full.\n\
         # TYPE steerdns_udp_replies_total counter\n\
         steerdns_udp_replies_total{{path=\"fast\"}} {}\n\
         steerdns_udp_replies_total{{path=\"full\"}} {}",
        dns.udp.fast.load(Ordering::Relaxed),
        dns.udp.full.load(Ordering::Relaxed),
    );
    out.push_str(
        "# HELP steerdns_replies_total DNS replies sent, by transport and rcode (RRL's truncated slips are counted apart).\n\
         # TYPE steerdns_replies_total counter\n",
    );
    dns.udp.rcodes.render("udp", &mut out);
    dns.tcp.stats.rcodes.render("tcp", &mut out);
    out.push_str(&published.answer_counters().render());
    dns.query_log.render(&mut out);
    published.obs().render(&mut out);
    let (rrl, tcp) = (&dns.rrl.stats, &dns.tcp.stats);
    let _ = writeln!(
        out,
        "# HELP steerdns_rrl_limited_total UDP replies held back by response rate limiting: dropped, or sent truncated (slip).\n\
         # TYPE steerdns_rrl_limited_total counter\n\
         steerdns_rrl_limited_total{{action=\"drop\"}} {}\n\
         steerdns_rrl_limited_total{{action=\"slip\"}} {}\n\
         # HELP steerdns_tcp_connections Open DNS TCP connections.\n\
         # TYPE steerdns_tcp_connections gauge\n\
         steerdns_tcp_connections {}\n\
         # HELP steerdns_tcp_accepted_total DNS TCP connections accepted under the caps.\n\
         # TYPE steerdns_tcp_accepted_total counter\n\
         steerdns_tcp_accepted_total {}\n\
         # HELP steerdns_tcp_refused_total DNS TCP connections closed at once, by the cap reached.\n\
         # TYPE steerdns_tcp_refused_total counter\n\
         steerdns_tcp_refused_total{{cap=\"max_connections\"}} {}\n\
         steerdns_tcp_refused_total{{cap=\"max_per_network\"}} {}",
        rrl.dropped.load(Ordering::Relaxed),
        rrl.slipped.load(Ordering::Relaxed),
        tcp.open.load(Ordering::Relaxed),
        tcp.accepted.load(Ordering::Relaxed),
        tcp.refused_total.load(Ordering::Relaxed),
        tcp.refused_network.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP steerdns_http_refused_total HTTP connections closed at once: [http] max_connections reached.\n\
         # TYPE steerdns_http_refused_total counter\n\
         steerdns_http_refused_total{{listener=\"public\"}} {}\n\
         steerdns_http_refused_total{{listener=\"admin\"}} {}\n\
         # HELP steerdns_http_timeouts_total HTTP requests answered 408: not complete within [http] request_timeout_ms.\n\
         # TYPE steerdns_http_timeouts_total counter\n\
         steerdns_http_timeouts_total{{listener=\"public\"}} {}\n\
         steerdns_http_timeouts_total{{listener=\"admin\"}} {}",
        http.public.refused.load(Ordering::Relaxed),
        http.admin.refused.load(Ordering::Relaxed),
        http.public.timed_out.load(Ordering::Relaxed),
        http.admin.timed_out.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP steerdns_http_rate_limited_total HTTP requests answered 429 by [http.rate_limit], by listener and by the limit reached: the client network's requests, or its failed authentications (admin).\n\
         # TYPE steerdns_http_rate_limited_total counter"
    );
    for (listener, stats) in [("public", &http.public), ("admin", &http.admin)] {
        for reason in Reason::ALL {
            if listener == "public" && reason == Reason::AuthFailures {
                continue;
            }
            let counter = match reason {
                Reason::Requests => &stats.limited_requests,
                Reason::AuthFailures => &stats.limited_auth,
            };
            let _ = writeln!(
                out,
                "steerdns_http_rate_limited_total{{listener=\"{listener}\",reason=\"{}\"}} {}",
                reason.label(),
                counter.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP steerdns_rum_resolver_map_size Resolvers located as their users (resolver mapping).\n\
         # TYPE steerdns_rum_resolver_map_size gauge\n\
         steerdns_rum_resolver_map_size {}",
        snapshot.resolver_map.len()
    );
    if let Some(rum) = &snapshot.rum {
        let log = rum.log.stats();
        let _ = writeln!(
            out,
            "# HELP steerdns_rum_nonce_queries_total Queries for RUM nonce names, by outcome: logged, or dropped because the log was full.\n\
             # TYPE steerdns_rum_nonce_queries_total counter\n\
             steerdns_rum_nonce_queries_total{{outcome=\"logged\"}} {}\n\
             steerdns_rum_nonce_queries_total{{outcome=\"dropped\"}} {}",
            log.recorded, log.dropped
        );
    }
    if let Some(rum) = &rum {
        let c = &rum.counters;
        let _ = writeln!(
            out,
            "# HELP steerdns_rum_beacons_accepted_total RUM beacons accepted.\n\
             # TYPE steerdns_rum_beacons_accepted_total counter\n\
             steerdns_rum_beacons_accepted_total {}\n\
             # HELP steerdns_rum_sessions_total Measured page views recorded for the resolver map.\n\
             # TYPE steerdns_rum_sessions_total counter\n\
             steerdns_rum_sessions_total {}\n\
             # HELP steerdns_rum_init_total Resolver-mapping fetches of <nonce>.<rum zone>.\n\
             # TYPE steerdns_rum_init_total counter\n\
             steerdns_rum_init_total {}\n\
             # HELP steerdns_rum_beacons_rejected_total RUM beacons refused, by reason.\n\
             # TYPE steerdns_rum_beacons_rejected_total counter",
            c.accepted.load(Ordering::Relaxed),
            c.sessions.load(Ordering::Relaxed),
            c.inits.load(Ordering::Relaxed),
        );
        for reason in Reject::ALL {
            let _ = writeln!(
                out,
                "steerdns_rum_beacons_rejected_total{{reason=\"{}\"}} {}",
                reason.label(),
                rum.rejected(reason)
            );
        }
    }
    {
        let rum = snapshot.perf.rum();
        let now = std::time::SystemTime::now();
        let held = rum
            .held_out
            .keys()
            .filter(|(t, r)| rum.is_held_out(t, r, now))
            .count();
        let _ = writeln!(
            out,
            "# HELP steerdns_rum_windows (target, region) RUM windows the serving snapshot was compiled with.\n\
             # TYPE steerdns_rum_windows gauge\n\
             steerdns_rum_windows {}\n\
             # HELP steerdns_rum_held_out Targets out in a region because its users fail to fetch them.\n\
             # TYPE steerdns_rum_held_out gauge\n\
             steerdns_rum_held_out {held}",
            rum.buckets.len(),
        );
    }
    let _ = writeln!(
        out,
        "# HELP steerdns_target_health Health of each reported target (1 for its current state).\n\
         # TYPE steerdns_target_health gauge"
    );
    for (target, h) in snapshot.health.iter() {
        let target = target.replace(['\\', '"', '\n'], "_");
        for state in [
            health::State::Up,
            health::State::Down,
            health::State::Unknown,
        ] {
            let _ = writeln!(
                out,
                "steerdns_target_health{{target=\"{target}\",state=\"{state}\",forced=\"{}\"}} {}",
                h.forced,
                u8::from(h.state == state)
            );
        }
    }
    out
}
